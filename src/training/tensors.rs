//! Conversions between CIFAR-10 pixel bytes (CHW planes, 3,072 per image)
//! and image tensors, in the value range each model expects.

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::{IMAGE_BYTES, IMAGE_SIDE};

/// The value range that pixel bytes are mapped to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelScale {
    /// [-1, 1], the range of the generator's tanh output.
    Gan,
    /// [-0.5, 0.5], the classifier's input range.
    Classifier,
}

impl PixelScale {
    /// Maps one pixel byte into this range.
    pub fn apply(self, byte: u8) -> f32 {
        match self {
            PixelScale::Gan => byte as f32 / 127.5 - 1.0,
            PixelScale::Classifier => byte as f32 / 255.0 - 0.5,
        }
    }
}

/// Builds a `[N, 3, 32, 32]` tensor from `N * 3072` pixel bytes.
///
/// # Panics
///
/// Panics when `images.len()` is not a multiple of 3,072.
pub fn images_to_tensor(images: &[u8], device: &Device, scale: PixelScale) -> Tensor<4> {
    assert!(
        images.len().is_multiple_of(IMAGE_BYTES),
        "image bytes must be a multiple of {IMAGE_BYTES}, got {}",
        images.len()
    );
    let count = images.len() / IMAGE_BYTES;
    let values: Vec<f32> = images.iter().map(|&byte| scale.apply(byte)).collect();
    let data = TensorData::new(values, [count, 3, IMAGE_SIDE, IMAGE_SIDE]);
    Tensor::from_data(data, device)
}

/// Converts a `[N, 3, 32, 32]` tensor in [-1, 1] back to pixel bytes,
/// rounding to the nearest byte and clamping values outside the range.
pub fn tensor_to_images(t: Tensor<4>) -> Vec<u8> {
    let values: Vec<f32> = t
        .try_into_vec_as()
        .expect("image tensors hold floats that convert to f32");
    values
        .iter()
        .map(|&v| ((v + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_image(fill: u8) -> Vec<u8> {
        vec![fill; IMAGE_BYTES]
    }

    #[test]
    fn gan_scale_maps_bytes_to_unit_range() {
        assert_eq!(PixelScale::Gan.apply(0), -1.0);
        assert_eq!(PixelScale::Gan.apply(255), 1.0);
    }

    #[test]
    fn classifier_scale_maps_bytes_to_half_range() {
        assert_eq!(PixelScale::Classifier.apply(0), -0.5);
        assert_eq!(PixelScale::Classifier.apply(255), 0.5);
    }

    #[test]
    fn images_to_tensor_has_chw_shape() {
        let mut images = one_image(0);
        images.extend(one_image(255));
        let t = images_to_tensor(&images, &Device::flex(), PixelScale::Gan);
        assert_eq!(t.dims(), [2, 3, 32, 32]);
    }

    #[test]
    fn bytes_round_trip_through_gan_scale() {
        let images: Vec<u8> = (0..IMAGE_BYTES).map(|i| (i % 256) as u8).collect();
        let t = images_to_tensor(&images, &Device::flex(), PixelScale::Gan);
        assert_eq!(tensor_to_images(t), images);
    }

    #[test]
    fn tensor_to_images_clamps_out_of_range() {
        let data = TensorData::new(vec![-3.0f32, 3.0], [1, 1, 1, 2]);
        let t = Tensor::<4>::from_data(data, &Device::flex());
        assert_eq!(tensor_to_images(t), vec![0, 255]);
    }
}
