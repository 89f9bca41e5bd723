//! The DCGAN generator: a latent vector from N(0, 1) to a 3x32x32 image in
//! [-1, 1], through a dense layer and three stride-2 transposed convolutions.

use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::kernels::{self, leaky_relu};

/// Sizes of the generator. The defaults are the reference model.
#[derive(Config, Debug)]
pub struct GeneratorConfig {
    /// Length of the latent vector.
    #[config(default = 100)]
    pub latent_dim: usize,
    /// Side of the first feature map, which three stride-2 layers double to 32.
    #[config(default = 4)]
    pub start_side: usize,
    /// Channels of the first feature map and after each transposed convolution.
    #[config(default = "[128, 64, 32, 32]")]
    pub channels: [usize; 4],
    /// Kernel side of the transposed convolutions.
    #[config(default = 5)]
    pub kernel_size: usize,
    /// Kernel side of the last convolution, which maps to RGB.
    #[config(default = 3)]
    pub output_kernel_size: usize,
    /// Channels of the output image.
    #[config(default = 3)]
    pub image_channels: usize,
    /// Negative slope of every LeakyReLU.
    #[config(default = 0.2)]
    pub leaky_slope: f64,
    /// Weight of the current batch in the running statistics (Keras momentum 0.8).
    #[config(default = 0.2)]
    pub batch_norm_momentum: f64,
    /// Batch-norm epsilon (the Keras default).
    #[config(default = 1e-3)]
    pub batch_norm_epsilon: f64,
}

/// The generator network; build it with [`GeneratorConfig::init`].
#[derive(Module, Debug)]
pub struct Generator {
    project: Linear,
    up1: ConvTranspose2d,
    norm1: BatchNorm,
    up2: ConvTranspose2d,
    norm2: BatchNorm,
    up3: ConvTranspose2d,
    to_rgb: Conv2d,
    channels: usize,
    start_side: usize,
    leaky_slope: f64,
}

impl GeneratorConfig {
    /// Initialises a generator with fresh weights on `device`.
    ///
    /// # Panics
    ///
    /// Panics when the kernel side is even, since "same" sizes then need an
    /// asymmetric crop that transposed convolutions do not offer.
    pub fn init(&self, device: &Device) -> Generator {
        assert!(
            self.kernel_size % 2 == 1,
            "generator kernel_size must be odd, got {}",
            self.kernel_size
        );
        let [c0, c1, c2, c3] = self.channels;
        let norm = |features| {
            BatchNormConfig::new(features)
                .with_momentum(self.batch_norm_momentum)
                .with_epsilon(self.batch_norm_epsilon)
                .init(device)
        };
        Generator {
            project: LinearConfig::new(self.latent_dim, c0 * self.start_side * self.start_side)
                .init(device),
            up1: self.upsample(c0, c1, device),
            norm1: norm(c1),
            up2: self.upsample(c1, c2, device),
            norm2: norm(c2),
            up3: self.upsample(c2, c3, device),
            to_rgb: Conv2dConfig::new(
                [c3, self.image_channels],
                [self.output_kernel_size, self.output_kernel_size],
            )
            .with_padding(PaddingConfig2d::Same)
            .init(device),
            channels: c0,
            start_side: self.start_side,
            leaky_slope: self.leaky_slope,
        }
    }

    /// Builds a stride-2 transposed convolution with Keras "same" output size
    /// (side * 2): output = (side - 1) * 2 - 2 * pad + kernel + out_pad, so
    /// pad = (kernel - 1) / 2 and out_pad = 1 for an odd kernel.
    fn upsample(&self, from: usize, to: usize, device: &Device) -> ConvTranspose2d {
        let pad = (self.kernel_size - 1) / 2;
        ConvTranspose2dConfig::new([from, to], [self.kernel_size, self.kernel_size])
            .with_stride([2, 2])
            .with_padding([pad, pad])
            .with_padding_out([1, 1])
            .init(device)
    }
}

impl Generator {
    /// Maps latent vectors to images.
    ///
    /// # Shapes
    ///
    /// - `z`: `[batch, latent_dim]`
    /// - output: `[batch, 3, 32, 32]`, values in [-1, 1]
    pub fn forward(&self, z: Tensor<2>) -> Tensor<4> {
        let [batch, _] = z.dims();

        // [B, latent] -> [B, 2048] -> [B, 128, 4, 4]
        let x = leaky_relu(self.project.forward(z), self.leaky_slope);
        let x = x.reshape([batch, self.channels, self.start_side, self.start_side]);

        // [B, 128, 4, 4] -> [B, 64, 8, 8] -> [B, 32, 16, 16]
        let x = kernels::batch_norm(
            &self.norm1,
            leaky_relu(kernels::conv_transpose2d(&self.up1, x), self.leaky_slope),
        );
        let x = kernels::batch_norm(
            &self.norm2,
            leaky_relu(kernels::conv_transpose2d(&self.up2, x), self.leaky_slope),
        );

        // [B, 32, 16, 16] -> [B, 32, 32, 32] -> [B, 3, 32, 32]
        let x = leaky_relu(kernels::conv_transpose2d(&self.up3, x), self.leaky_slope);
        kernels::tanh(kernels::conv2d(&self.to_rgb, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::trainable_params;

    #[test]
    fn generator_output_shape() {
        let device = Device::flex();
        let generator = GeneratorConfig::new().init(&device);
        let z = Tensor::<2>::zeros([2, 100], &device);
        assert_eq!(generator.forward(z).dims(), [2, 3, 32, 32]);
    }

    #[test]
    fn generator_output_is_in_tanh_range() {
        let device = Device::flex();
        let generator = GeneratorConfig::new().init(&device);
        let z = Tensor::<2>::random(
            [4, 100],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let values: Vec<f32> = generator.forward(z).try_into_vec_as().unwrap();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
    }

    #[test]
    fn generator_trainable_parameter_count() {
        // Linear 100->2048:           100*2048 + 2048    = 206,848
        // ConvT 5x5 128->64:          5*5*128*64 + 64    = 204,864
        // BatchNorm 64 (gamma, beta): 2*64               =     128
        // ConvT 5x5 64->32:           5*5*64*32 + 32     =  51,232
        // BatchNorm 32:               2*32               =      64
        // ConvT 5x5 32->32:           5*5*32*32 + 32     =  25,632
        // Conv 3x3 32->3:             3*3*32*3 + 3       =     867
        let expected = 206_848 + 204_864 + 128 + 51_232 + 64 + 25_632 + 867;
        let generator = GeneratorConfig::new().init(&Device::flex());
        assert_eq!(trainable_params(&generator), expected);
    }
}
