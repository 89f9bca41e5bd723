//! The CIFAR-10 classifier used for c, c_k and c': four 3x3 convolutions in
//! two pooled stages, then a 256-unit dense layer whose activations are also
//! the embedding of the privacy audit.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::kernels::{self, leaky_relu};

/// Sizes of the classifier. The defaults are the reference model.
#[derive(Config, Debug)]
pub struct ClassifierConfig {
    /// Channels of the input image.
    #[config(default = 3)]
    pub image_channels: usize,
    /// Side of the input image.
    #[config(default = 32)]
    pub image_side: usize,
    /// Output channels of the four convolutions.
    #[config(default = "[16, 32, 32, 64]")]
    pub channels: [usize; 4],
    /// Width of the penultimate dense layer (the embedding).
    #[config(default = 256)]
    pub hidden: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub classes: usize,
    /// Negative slope of every LeakyReLU.
    #[config(default = 0.1)]
    pub leaky_slope: f64,
    /// Drop probability after each pooled stage.
    #[config(default = 0.25)]
    pub conv_dropout: f64,
    /// Drop probability after the dense layer.
    #[config(default = 0.5)]
    pub dense_dropout: f64,
}

/// The classifier network; build it with [`ClassifierConfig::init`].
#[derive(Module, Debug)]
pub struct Classifier {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4: Conv2d,
    pool: MaxPool2d,
    conv_dropout: Dropout,
    dense: Linear,
    dense_dropout: Dropout,
    output: Linear,
    leaky_slope: f64,
}

impl ClassifierConfig {
    /// Initialises a classifier with fresh weights on `device`.
    pub fn init(&self, device: &Device) -> Classifier {
        let conv = |from: usize, to: usize| {
            Conv2dConfig::new([from, to], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device)
        };
        let [c1, c2, c3, c4] = self.channels;
        // Two 2x2 max pools halve the side twice, rounding down.
        let side = self.image_side / 4;
        Classifier {
            conv1: conv(self.image_channels, c1),
            conv2: conv(c1, c2),
            conv3: conv(c2, c3),
            conv4: conv(c3, c4),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            conv_dropout: DropoutConfig::new(self.conv_dropout).init(),
            dense: LinearConfig::new(c4 * side * side, self.hidden).init(device),
            dense_dropout: DropoutConfig::new(self.dense_dropout).init(),
            output: LinearConfig::new(self.hidden, self.classes).init(device),
            leaky_slope: self.leaky_slope,
        }
    }
}

impl Classifier {
    /// Computes class logits; softmax is left to the loss and to inference.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, 3, 32, 32]`, values in [-0.5, 0.5]
    /// - output: `[batch, 10]` logits
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        // [B, 256] -> [B, 10]
        let x = kernels::dropout(&self.dense_dropout, self.embed(x));
        self.output.forward(x)
    }

    /// Computes the penultimate activations, after the dense layer's LeakyReLU.
    ///
    /// # Shapes
    ///
    /// - `x`: `[batch, 3, 32, 32]`, values in [-0.5, 0.5]
    /// - output: `[batch, 256]`
    pub fn embed(&self, x: Tensor<4>) -> Tensor<2> {
        // [B, 3, 32, 32] -> [B, 16, 32, 32] -> [B, 32, 32, 32] -> [B, 32, 16, 16]
        let x = self.act(kernels::conv2d(&self.conv1, x));
        let x = self.act(kernels::conv2d(&self.conv2, x));
        let x = kernels::dropout(&self.conv_dropout, kernels::max_pool2d(&self.pool, x));

        // [B, 32, 16, 16] -> [B, 32, 16, 16] -> [B, 64, 16, 16] -> [B, 64, 8, 8]
        let x = self.act(kernels::conv2d(&self.conv3, x));
        let x = self.act(kernels::conv2d(&self.conv4, x));
        let x = kernels::dropout(&self.conv_dropout, kernels::max_pool2d(&self.pool, x));

        // [B, 64, 8, 8] -> [B, 4096] -> [B, 256]
        let x: Tensor<2> = x.flatten(1, 3);
        self.act(self.dense.forward(x))
    }

    fn act<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        leaky_relu(x, self.leaky_slope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::trainable_params;

    #[test]
    fn classifier_output_shape() {
        let device = Device::flex();
        let classifier = ClassifierConfig::new().init(&device);
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(classifier.forward(x).dims(), [2, 10]);
    }

    #[test]
    fn classifier_embedding_shape() {
        let device = Device::flex();
        let classifier = ClassifierConfig::new().init(&device);
        let x = Tensor::<4>::zeros([2, 3, 32, 32], &device);
        assert_eq!(classifier.embed(x).dims(), [2, 256]);
    }

    #[test]
    fn classifier_trainable_parameter_count() {
        // Conv 3x3 3->16:   3*3*3*16 + 16   =       448
        // Conv 3x3 16->32:  3*3*16*32 + 32  =     4,640
        // Conv 3x3 32->32:  3*3*32*32 + 32  =     9,248
        // Conv 3x3 32->64:  3*3*32*64 + 64  =    18,496
        // Linear 4096->256: 4096*256 + 256  = 1,048,832
        // Linear 256->10:   256*10 + 10     =     2,570
        let expected = 448 + 4_640 + 9_248 + 18_496 + 1_048_832 + 2_570;
        let classifier = ClassifierConfig::new().init(&Device::flex());
        assert_eq!(trainable_params(&classifier), expected);
    }
}
