//! The DCGAN discriminator: a 3x32x32 image in [-1, 1] to one real-vs-fake
//! logit. The sigmoid is left to the loss, which takes logits so that it
//! stays finite when the discriminator is confident.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::prelude::*;

use crate::kernels;

/// Sizes of the discriminator. The defaults are the reference model.
#[derive(Config, Debug)]
pub struct DiscriminatorConfig {
    /// Channels of the input image.
    #[config(default = 3)]
    pub image_channels: usize,
    /// Side of the input image.
    #[config(default = 32)]
    pub image_side: usize,
    /// Output channels of the stride-1 convolution and the three stride-2 ones.
    #[config(default = "[32, 32, 64, 128]")]
    pub channels: [usize; 4],
    /// Kernel side of every convolution.
    #[config(default = 5)]
    pub kernel_size: usize,
    /// Negative slope of every LeakyReLU.
    #[config(default = 0.2)]
    pub leaky_slope: f64,
    /// Drop probability before the output layer.
    #[config(default = 0.4)]
    pub dropout: f64,
    /// Weight of the current batch in the running statistics (Keras momentum 0.8).
    #[config(default = 0.2)]
    pub batch_norm_momentum: f64,
    /// Batch-norm epsilon (the Keras default).
    #[config(default = 1e-3)]
    pub batch_norm_epsilon: f64,
}

/// One convolution, its batch norm and the activation after it.
#[derive(Module, Debug)]
struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
}

/// The discriminator network; build it with [`DiscriminatorConfig::init`].
#[derive(Module, Debug)]
pub struct Discriminator {
    blocks: Vec<ConvBlock>,
    dropout: Dropout,
    output: Linear,
    leaky_slope: f64,
}

impl DiscriminatorConfig {
    /// Initialises a discriminator with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Discriminator {
        let strides = [1, 2, 2, 2];
        let mut input = self.image_channels;
        let mut blocks = Vec::with_capacity(strides.len());
        for (&channels, stride) in self.channels.iter().zip(strides) {
            blocks.push(ConvBlock {
                conv: Conv2dConfig::new([input, channels], [self.kernel_size, self.kernel_size])
                    .with_stride([stride, stride])
                    .with_padding(PaddingConfig2d::Same)
                    .init(device),
                norm: BatchNormConfig::new(channels)
                    .with_momentum(self.batch_norm_momentum)
                    .with_epsilon(self.batch_norm_epsilon)
                    .init(device),
            });
            input = channels;
        }
        // "Same" padding with stride 2 gives ceil(side / 2), three times.
        let side = self.image_side.div_ceil(2).div_ceil(2).div_ceil(2);
        Discriminator {
            blocks,
            dropout: DropoutConfig::new(self.dropout).init(),
            output: LinearConfig::new(input * side * side, 1).init(device),
            leaky_slope: self.leaky_slope,
        }
    }
}

impl Discriminator {
    /// Scores images; a positive logit means "real".
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, 3, 32, 32]`, values in [-1, 1]
    /// - output: `[batch, 1]` logits
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // [B, 3, 32, 32] -> [B, 32, 32, 32] -> [B, 32, 16, 16]
        //   -> [B, 64, 8, 8] -> [B, 128, 4, 4]
        let mut x = x;
        for block in &self.blocks {
            let convolved = kernels::conv2d(&block.conv, x);
            x = kernels::batch_norm_leaky_relu(&block.norm, convolved, self.leaky_slope);
        }

        // [B, 128, 4, 4] -> [B, 2048] -> [B, 1]
        let x: Tensor<2> = x.flatten(1, 3);
        self.output.forward(kernels::dropout(&self.dropout, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::trainable_params;

    #[test]
    fn discriminator_output_shape() {
        let device = Device::flex();
        let discriminator = DiscriminatorConfig::new().init(&device);
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(discriminator.forward(x).dims(), [2, 1]);
    }

    #[test]
    fn discriminator_trainable_parameter_count() {
        // Conv 5x5 3->32:    5*5*3*32 + 32    =   2,432; BatchNorm 32:  64
        // Conv 5x5 32->32:   5*5*32*32 + 32   =  25,632; BatchNorm 32:  64
        // Conv 5x5 32->64:   5*5*32*64 + 64   =  51,264; BatchNorm 64: 128
        // Conv 5x5 64->128:  5*5*64*128 + 128 = 204,928; BatchNorm 128: 256
        // Linear 2048->1:    2048 + 1         =   2,049
        let expected = 2_432 + 64 + 25_632 + 64 + 51_264 + 128 + 204_928 + 256 + 2_049;
        let discriminator = DiscriminatorConfig::new().init(&Device::flex());
        assert_eq!(trainable_params(&discriminator), expected);
    }
}
