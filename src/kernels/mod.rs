//! Faster CPU kernels for the reference models' convolutions and LeakyReLU:
//! im2col and `gemm` for the forward pass and both gradients, registered as
//! a burn backend extension with its own backward step. They apply only to f32
//! tensors on the flex device, with groups and dilation 1; anything else
//! (wgpu, other dtypes, other layer settings) runs burn's own layer.

mod allocator;
#[cfg(target_arch = "x86_64")]
mod direct;
mod extension;
/// Other architectures have no direct kernels, so the im2col path runs.
#[cfg(not(target_arch = "x86_64"))]
mod direct {
    use super::im2col::ConvGeometry;

    pub fn available() -> bool {
        false
    }

    pub fn forward(_: &ConvGeometry, _: &[f32], _: &[f32], _: Option<&[f32]>) -> Option<Vec<f32>> {
        None
    }

    pub fn input_grad(_: &ConvGeometry, _: &[f32], _: &[f32]) -> Option<Vec<f32>> {
        None
    }

    pub fn weight_grad(_: &ConvGeometry, _: &[f32], _: &[f32]) -> Option<Vec<f32>> {
        None
    }
}
pub mod im2col;
pub mod norm;
pub mod optim;
pub mod sparse;

pub use allocator::keep_freed_memory;

use burn::backend::{Dispatch, DispatchDevice};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Dropout, PaddingConfig2d};
use burn::tensor::{DType, Device, Distribution, Tensor};

use extension::FastConv;
use im2col::ConvGeometry;

/// Tells whether tensors on `device` run on burn's flex CPU backend.
fn is_flex(device: &Device) -> bool {
    matches!(
        device.clone().inner().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

/// Applies `conv` to `x` like `Conv2d::forward`, through the custom kernels
/// where they apply.
///
/// # Shapes
///
/// - `x`: `[batch, channels_in, height, width]`
/// - output: `[batch, channels_out, height_out, width_out]`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(bias) = &conv.bias else {
        return conv.forward(x);
    };
    let plain = conv.groups == 1 && conv.dilation == [1, 1];
    if !plain || x.dtype() != DType::F32 || !is_flex(&x.device()) {
        return conv.forward(x);
    }
    let [batch, in_channels, height, width] = x.dims();
    let [out_channels, _, kh, kw] = conv.weight.dims();
    let ((top, bottom), (left, right)) = padding(&conv.padding, [height, width], conv);
    let out = |size: usize, k: usize, s: usize, pad: usize| (size + pad).saturating_sub(k) / s + 1;
    let geometry = ConvGeometry {
        batch,
        in_channels,
        in_size: [height, width],
        out_channels,
        out_size: [
            out(height, kh, conv.stride[0], top + bottom),
            out(width, kw, conv.stride[1], left + right),
        ],
        kernel: [kh, kw],
        stride: conv.stride,
        pad_begin: [top, left],
    };
    let output = <Dispatch as FastConv>::fast_conv2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        geometry,
    );
    Tensor::from_dispatch(output)
}

/// Computes the (top, bottom) and (left, right) zero padding of `conv` on
/// an input of `size`, as `Conv2d::forward` does.
fn padding(
    config: &PaddingConfig2d,
    size: [usize; 2],
    conv: &Conv2d,
) -> ((usize, usize), (usize, usize)) {
    let same = |axis: usize| {
        let (k, s) = (conv.kernel_size[axis], conv.stride[axis]);
        let out = size[axis].div_ceil(s);
        let total = ((out.max(1) - 1) * s + k).saturating_sub(size[axis]);
        (total / 2, total - total / 2)
    };
    match config {
        PaddingConfig2d::Valid => ((0, 0), (0, 0)),
        PaddingConfig2d::Same => (same(0), same(1)),
        PaddingConfig2d::Explicit(top, left, bottom, right) => ((*top, *bottom), (*left, *right)),
    }
}

/// Applies `conv` to `x` like `ConvTranspose2d::forward`, through the
/// custom kernels where they apply.
///
/// # Shapes
///
/// - `x`: `[batch, channels_in, height, width]`
/// - output: `[batch, channels_out, height_out, width_out]`
pub fn conv_transpose2d(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let Some(bias) = &conv.bias else {
        return conv.forward(x);
    };
    let plain = conv.groups == 1 && conv.dilation == [1, 1];
    // An output padding of a stride or more adds rows no input reaches; the
    // geometry below assumes it does not.
    let fits = (0..2).all(|axis| conv.padding_out[axis] < conv.stride[axis].max(1));
    if !plain || !fits || x.dtype() != DType::F32 || !is_flex(&x.device()) {
        return conv.forward(x);
    }

    let [batch, in_channels, height, width] = x.dims();
    let [_, out_channels, kh, kw] = conv.weight.dims();
    let big = |size: usize, axis: usize, k: usize| {
        ((size - 1) * conv.stride[axis] + k + conv.padding_out[axis])
            .checked_sub(2 * conv.padding[axis])
    };
    let (Some(out_h), Some(out_w)) = (big(height, 0, kh), big(width, 1, kw)) else {
        return conv.forward(x);
    };

    // The convolution whose input gradient this transposed convolution is:
    // from the big output back to the small input.
    let geometry = ConvGeometry {
        batch,
        in_channels: out_channels,
        in_size: [out_h, out_w],
        out_channels: in_channels,
        out_size: [height, width],
        kernel: [kh, kw],
        stride: conv.stride,
        pad_begin: conv.padding,
    };
    let output = <Dispatch as FastConv>::fast_conv_transpose2d(
        x.into_dispatch(),
        conv.weight.val().into_dispatch(),
        bias.val().into_dispatch(),
        geometry,
    );
    Tensor::from_dispatch(output)
}

/// Applies `norm` to `x` like `BatchNorm::forward`. In training (on an
/// autodiff device, with the layer's training flag on) the batch statistics
/// and the gradients come from the fused kernels where they apply, and the
/// running statistics are updated as burn updates them.
///
/// # Shapes
///
/// - `x`: `[batch, channels, height, width]`
/// - output: the same
pub fn batch_norm(norm: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
    batch_norm_then(norm, x, None)
}

/// Applies `norm` to `x` like [`batch_norm`], then LeakyReLU with
/// `negative_slope` like [`leaky_relu`]. In training on the flex device
/// both run as one fused op, which saves a pass over the activations each
/// way.
///
/// # Shapes
///
/// - `x`: `[batch, channels, height, width]`
/// - output: the same
pub fn batch_norm_leaky_relu(norm: &BatchNorm, x: Tensor<4>, negative_slope: f64) -> Tensor<4> {
    batch_norm_then(norm, x, Some(negative_slope))
}

/// Runs [`batch_norm`], followed by LeakyReLU when `leaky_slope` is given.
fn batch_norm_then(norm: &BatchNorm, x: Tensor<4>, leaky_slope: Option<f64>) -> Tensor<4> {
    let device = x.device();
    let training = device.is_autodiff() && norm.training.is_enabled();
    if !training || x.dtype() != DType::F32 || !is_flex(&device) {
        let output = norm.forward(x);
        return match leaky_slope {
            Some(slope) => leaky_relu(output, slope),
            None => output,
        };
    }
    let activation = leaky_slope.map_or(norm::Activation::IDENTITY, |slope| norm::Activation {
        slope: slope as f32,
    });
    let (output, mean, variance) = <Dispatch as FastConv>::fast_batch_norm_train(
        x.into_dispatch(),
        norm.gamma.val().into_dispatch(),
        norm.beta.val().into_dispatch(),
        norm.epsilon,
        activation,
    );
    let (mean, variance): (Tensor<1>, Tensor<1>) =
        (Tensor::from_dispatch(mean), Tensor::from_dispatch(variance));
    let momentum = norm.momentum;
    let update = |running: Tensor<1>, batch: Tensor<1>| {
        let running = running.to_device(&device).mul_scalar(1.0 - momentum);
        running.add(batch.detach().mul_scalar(momentum)).detach()
    };
    norm.running_mean
        .update(update(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(update(norm.running_var.value_sync(), variance));
    Tensor::from_dispatch(output)
}

/// Applies `pool` to `x` like `MaxPool2d::forward`, through the custom
/// kernel for 2x2 windows with stride 2 on even sizes.
///
/// # Shapes
///
/// - `x`: `[batch, channels, height, width]`
/// - output: `[batch, channels, height / 2, width / 2]`
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, height, width] = x.dims();
    let plain = pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && matches!(pool.padding, PaddingConfig2d::Valid);
    let even = height % 2 == 0 && width % 2 == 0;
    if !plain || !even || x.dtype() != DType::F32 || !is_flex(&x.device()) {
        return pool.forward(x);
    }
    let output = <Dispatch as FastConv>::fast_max_pool2x2(x.into_dispatch());
    Tensor::from_dispatch(output)
}

/// Applies `dropout` to `x` like `Dropout::forward`: the identity outside
/// training, and in training one fused pass each way on the flex device.
/// The mask's seed comes from the device's generator, so seeding the device
/// makes the masks repeat.
pub fn dropout<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let training = device.is_autodiff() && dropout.training.is_enabled();
    if !training || dropout.prob == 0.0 || x.dtype() != DType::F32 || !is_flex(&device) {
        return dropout.forward(x);
    }
    let draws: Vec<f32> = Tensor::<1>::random([2], Distribution::Default, &device)
        .try_into_vec_as()
        .expect("a random f32 tensor reads back as f32");
    let seed = draws[0].to_bits() ^ draws[1].to_bits().rotate_left(16);
    let output = <Dispatch as FastConv>::fast_dropout(x.into_dispatch(), dropout.prob as f32, seed);
    Tensor::from_dispatch(output)
}

/// LeakyReLU like `burn::tensor::activation::leaky_relu`, in one pass
/// forward and one backward on the flex device instead of burn's mask ops.
pub fn leaky_relu<const D: usize>(x: Tensor<D>, negative_slope: f64) -> Tensor<D> {
    if x.dtype() != DType::F32 || !is_flex(&x.device()) {
        return burn::tensor::activation::leaky_relu(x, negative_slope);
    }
    let output = <Dispatch as FastConv>::fast_leaky_relu(x.into_dispatch(), negative_slope as f32);
    Tensor::from_dispatch(output)
}

/// Runs one optimizer update of `param` and returns the new parameter and
/// its two state tensors (Adam: first and second moment, Adamax: first
/// moment and infinity norm). On the flex device with f32 values the update
/// is one fused pass, which writes over the tensors that nothing else
/// shares. Elsewhere it runs the same formula as tensor ops.
pub fn optimizer_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    first: Tensor<D>,
    second: Tensor<D>,
    rule: optim::Update,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let tensors = [&param, &grad, &first, &second];
    if tensors
        .iter()
        .any(|t| t.dtype() != DType::F32 || !is_flex(&t.device()))
    {
        return update_with_tensor_ops(param, grad, first, second, rule);
    }
    let [param, grad, first, second] = [param, grad, first, second].map(Tensor::into_dispatch);
    let (param, first, second) =
        <Dispatch as FastConv>::fast_update(param, grad, first, second, rule);
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(first),
        Tensor::from_dispatch(second),
    )
}

/// Runs `optimizer_update` as tensor ops, for devices without the fused kernel.
fn update_with_tensor_ops<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    first: Tensor<D>,
    second: Tensor<D>,
    rule: optim::Update,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let beta_1 = match rule {
        optim::Update::Adam(step) => step.beta_1,
        optim::Update::Adamax(step) => step.beta_1,
    };
    let moment = first
        .mul_scalar(beta_1)
        .add(grad.clone().mul_scalar(1.0 - beta_1));
    match rule {
        optim::Update::Adam(step) => {
            let second = second
                .mul_scalar(step.beta_2)
                .add(grad.square().mul_scalar(1.0 - step.beta_2));
            let delta = moment
                .clone()
                .mul_scalar(step.scale)
                .div(second.clone().sqrt().add_scalar(step.epsilon))
                .mul_scalar(step.learning_rate);
            (param - delta, moment, second)
        }
        optim::Update::Adamax(step) => {
            let norm = second.mul_scalar(step.beta_2).max_pair(grad.abs());
            let delta = moment
                .clone()
                .div(norm.clone().add_scalar(step.epsilon))
                .mul_scalar(step.step_size);
            (param - delta, moment, norm)
        }
    }
}

/// Applies `tanh` to `x` through the custom kernel where it applies.
pub fn tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() != DType::F32 || !is_flex(&x.device()) {
        return burn::tensor::activation::tanh(x);
    }
    Tensor::from_dispatch(<Dispatch as FastConv>::fast_tanh(x.into_dispatch()))
}

#[cfg(test)]
mod tests;
