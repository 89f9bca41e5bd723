//! The image variants that count as the same record in the audit: the
//! original, its horizontal mirror, and one-pixel shifts in four directions.
//!
//! Shifts are edge-replicated: the row or column that moves in is a copy of
//! the border row or column it replaces, never black.
//!
//! NOTE: a copy shifted with a black (zero-filled) border differs from the
//! edge-replicated variant by a whole border row, about as much as two
//! distinct images differ. The audit therefore flags only some of those
//! copies: 34 of 50 in one run on 3,000 CIFAR-10 training images.

use crate::data::cifar::{IMAGE_BYTES, IMAGE_SIDE};

/// One of the transformed copies of a training image that the audit treats
/// as the image itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Original,
    Mirror,
    /// Content moved one pixel to the right; column 0 is repeated.
    ShiftRight,
    /// Content moved one pixel to the left; the last column is repeated.
    ShiftLeft,
    /// Content moved one pixel down; row 0 is repeated.
    ShiftDown,
    /// Content moved one pixel up; the last row is repeated.
    ShiftUp,
}

/// Every variant, in the order the augmented reference rows use.
pub const VARIANTS: [Variant; 6] = [
    Variant::Original,
    Variant::Mirror,
    Variant::ShiftRight,
    Variant::ShiftLeft,
    Variant::ShiftDown,
    Variant::ShiftUp,
];

impl Variant {
    /// Returns the source pixel `(y, x)` that lands at `(y, x)` in the variant.
    fn source(self, y: usize, x: usize) -> (usize, usize) {
        let last = IMAGE_SIDE - 1;
        match self {
            Variant::Original => (y, x),
            Variant::Mirror => (y, last - x),
            Variant::ShiftRight => (y, x.saturating_sub(1)),
            Variant::ShiftLeft => (y, (x + 1).min(last)),
            Variant::ShiftDown => (y.saturating_sub(1), x),
            Variant::ShiftUp => ((y + 1).min(last), x),
        }
    }
}

/// Writes `variant` of one CHW image into `out`, mapping each pixel through `map`.
fn write_mapped<T>(image: &[u8], variant: Variant, out: &mut [T], map: impl Fn(u8) -> T) {
    assert_eq!(image.len(), IMAGE_BYTES, "an image has {IMAGE_BYTES} bytes");
    assert_eq!(
        out.len(),
        IMAGE_BYTES,
        "an output image has {IMAGE_BYTES} values"
    );
    let plane = IMAGE_SIDE * IMAGE_SIDE;
    for channel in 0..3 {
        let base = channel * plane;
        for y in 0..IMAGE_SIDE {
            for x in 0..IMAGE_SIDE {
                let (sy, sx) = variant.source(y, x);
                out[base + y * IMAGE_SIDE + x] = map(image[base + sy * IMAGE_SIDE + sx]);
            }
        }
    }
}

/// Returns `variant` of one CHW image as bytes.
pub fn variant_bytes(image: &[u8], variant: Variant) -> Vec<u8> {
    let mut out = vec![0u8; IMAGE_BYTES];
    write_mapped(image, variant, &mut out, |value| value);
    out
}

/// Writes `variant` of one CHW image into `out` as pixels scaled to [0, 1].
pub fn write_variant_unit(image: &[u8], variant: Variant, out: &mut [f32]) {
    write_mapped(image, variant, out, |value| f32::from(value) / 255.0);
}

/// Returns every variant of every image, record-major: the rows of image `i`
/// are `i * VARIANTS.len()..(i + 1) * VARIANTS.len()`.
pub fn augment_bytes(images: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(images.len() * VARIANTS.len());
    for image in images.chunks_exact(IMAGE_BYTES) {
        for variant in VARIANTS {
            out.extend_from_slice(&variant_bytes(image, variant));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Vec<u8> {
        (0..IMAGE_BYTES).map(|i| (i % 251) as u8).collect()
    }

    fn pixel(image: &[u8], channel: usize, y: usize, x: usize) -> u8 {
        image[channel * IMAGE_SIDE * IMAGE_SIDE + y * IMAGE_SIDE + x]
    }

    #[test]
    fn original_is_identity() {
        let image = ramp();
        assert_eq!(variant_bytes(&image, Variant::Original), image);
    }

    #[test]
    fn mirror_reverses_columns() {
        let image = ramp();
        let mirrored = variant_bytes(&image, Variant::Mirror);
        assert_eq!(pixel(&mirrored, 2, 5, 0), pixel(&image, 2, 5, 31));
        assert_eq!(pixel(&mirrored, 0, 0, 31), pixel(&image, 0, 0, 0));
        assert_eq!(variant_bytes(&mirrored, Variant::Mirror), image);
    }

    #[test]
    fn shift_right_replicates_first_column() {
        let image = ramp();
        let shifted = variant_bytes(&image, Variant::ShiftRight);
        assert_eq!(pixel(&shifted, 1, 7, 10), pixel(&image, 1, 7, 9));
        assert_eq!(pixel(&shifted, 1, 7, 0), pixel(&image, 1, 7, 0));
    }

    #[test]
    fn shift_up_replicates_last_row() {
        let image = ramp();
        let shifted = variant_bytes(&image, Variant::ShiftUp);
        assert_eq!(pixel(&shifted, 0, 3, 4), pixel(&image, 0, 4, 4));
        assert_eq!(pixel(&shifted, 0, 31, 4), pixel(&image, 0, 31, 4));
    }

    #[test]
    fn augment_is_record_major() {
        let mut images = ramp();
        images.extend(vec![9u8; IMAGE_BYTES]);
        let augmented = augment_bytes(&images);
        assert_eq!(augmented.len(), 12 * IMAGE_BYTES);
        assert_eq!(&augmented[..IMAGE_BYTES], &images[..IMAGE_BYTES]);
        assert!(augmented[6 * IMAGE_BYTES..].iter().all(|&v| v == 9));
    }
}
