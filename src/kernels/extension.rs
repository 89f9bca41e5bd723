//! The custom convolution and LeakyReLU ops as a burn backend extension:
//! the flex implementation calls the kernels, and the autodiff implementation
//! records a backward step that calls them again. No other backend
//! implements the extension; `kernels::conv2d` never routes one here.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::{Shape, TensorData};
use rayon::prelude::*;

use super::allocator::zeros;
use super::im2col::{self, ConvGeometry};
use super::norm::{self, Activation, NormGeometry};
use super::optim::{self, Update};
use super::sparse;

/// Convolutions and LeakyReLU computed here instead of by burn-flex.
#[backend_extension(Flex, Autodiff)]
pub trait FastConv: Backend {
    /// `[B, Cin, H, W]` to `[B, Cout, Ho, Wo]`; `weight` is `[Cout, Cin, kh, kw]`.
    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// Maps the output `[B, Cout, Ho, Wo]` of the convolution `geometry`
    /// describes back to its input shape `[B, Cin, H, W]`.
    /// `weight` is `[Cout, Cin, kh, kw]`, burn's layout for a transposed
    /// convolution from Cout to Cin channels.
    fn fast_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        geometry: ConvGeometry,
    ) -> FloatTensor<Self>;

    /// `x` where it is at least 0, `slope * x` below, in one pass.
    fn fast_leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self>;

    /// Computes the hyperbolic tangent of each value on all threads. The
    /// backward step reads the output instead of computing the tangent again.
    fn fast_tanh(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Maximum over 2x2 windows with stride 2: `[B, C, H, W]` with even H
    /// and W to `[B, C, H / 2, W / 2]`.
    fn fast_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// Dropout of any shape: zeroes each value with probability `prob` and
    /// scales the rest by `1 / (1 - prob)`, with the mask that `seed` draws.
    fn fast_dropout(x: FloatTensor<Self>, prob: f32, seed: u32) -> FloatTensor<Self>;

    /// Batch normalization of `[B, C, H, W]` with its own batch statistics,
    /// like `burn::tensor::module::batch_norm_train`, followed by
    /// `activation` (LeakyReLU, or nothing with slope 1) in the same pass:
    /// the output, then the per-channel mean and biased variance, which
    /// carry no gradient.
    fn fast_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// Runs one optimizer update of a parameter with its gradient and two
    /// state tensors, and returns the new parameter and state, none of
    /// which carries a gradient.
    fn fast_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        rule: Update,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Borrows the values of a flex tensor, or copies them when its layout is strided.
fn values(tensor: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match tensor.as_slice::<f32>() {
        Some(slice) => std::borrow::Cow::Borrowed(slice),
        None => std::borrow::Cow::Owned(tensor.to_contiguous().as_slice::<f32>().unwrap().to_vec()),
    }
}

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, Shape::new(shape)))
}

fn input_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.batch, g.in_channels, g.in_size[0], g.in_size[1]]
}

fn output_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.batch, g.out_channels, g.out_size[0], g.out_size[1]]
}

fn weight_shape(g: &ConvGeometry) -> [usize; 4] {
    [g.out_channels, g.in_channels, g.kernel[0], g.kernel[1]]
}

fn conv_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    g: &ConvGeometry,
) -> FlexTensor {
    #[cfg(test)]
    FORWARD_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = im2col::forward(g, &values(x), &values(weight), Some(&values(bias)));
    tensor(out, output_shape(g))
}

fn transpose_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
    g: &ConvGeometry,
) -> FlexTensor {
    let mut out = im2col::input_grad(g, &values(x), &values(weight));
    let plane = g.in_size[0] * g.in_size[1];
    let bias = values(bias);
    out.par_chunks_exact_mut(g.input_len()).for_each(|image| {
        for (channel, b) in image.chunks_exact_mut(plane).zip(bias.iter()) {
            channel.iter_mut().for_each(|v| *v += b);
        }
    });
    tensor(out, input_shape(g))
}

/// Forward passes of `fast_conv2d` so far, for tests to check which path ran.
#[cfg(test)]
pub(crate) static FORWARD_CALLS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Elements per rayon task of the element-wise kernels.
const CHUNK: usize = 1 << 14;

/// `out = values * (slope where sign < 0, else 1)`: LeakyReLU forward with
/// `sign` and `values` both the input, backward with `values` the output
/// gradient. The select form, unlike a branch, vectorizes, and a NaN input
/// stays NaN.
#[multiversion::multiversion(targets = "simd")]
fn leaky_slice(out: &mut [f32], sign: &[f32], values: &[f32], slope: f32) {
    for ((o, &s), &v) in out.iter_mut().zip(sign).zip(values) {
        let scale = if s < 0.0 { slope } else { 1.0 };
        *o = v * scale;
    }
}

/// Multiplies each of `values` by `slope` where `sign` is negative: the
/// in-place form of `leaky_slice`.
#[multiversion::multiversion(targets = "simd")]
fn leaky_in_place(values: &mut [f32], sign: &[f32], slope: f32) {
    for (v, &s) in values.iter_mut().zip(sign) {
        let scale = if s < 0.0 { slope } else { 1.0 };
        *v *= scale;
    }
}

/// Multiplies each negative value by `slope`: LeakyReLU in place.
#[multiversion::multiversion(targets = "simd")]
fn leaky_own_sign(values: &mut [f32], slope: f32) {
    for v in values.iter_mut() {
        let scale = if *v < 0.0 { slope } else { 1.0 };
        *v *= scale;
    }
}

/// Returns the values of `tensor` for writing in place when it is their only
/// owner and they are contiguous from its first element.
fn unique_values(tensor: &mut FlexTensor) -> Option<&mut [f32]> {
    let len = tensor.as_slice::<f32>()?.len();
    let storage = tensor.try_storage_mut::<f32>()?;
    (storage.len() == len).then_some(storage)
}

/// Returns `tensor` itself when its values can be written in place, or a
/// contiguous copy that can.
fn writable(mut tensor: FlexTensor) -> FlexTensor {
    if unique_values(&mut tensor).is_some() {
        return tensor;
    }
    let shape = tensor.layout().shape().clone();
    FlexTensor::from_data(TensorData::new(values(&tensor).into_owned(), shape))
}

fn update_apply(
    param: FlexTensor,
    grad: &FlexTensor,
    first: FlexTensor,
    second: FlexTensor,
    rule: Update,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (mut param, mut first, mut second) = (writable(param), writable(first), writable(second));
    optim::update(
        param.storage_mut::<f32>(),
        &values(grad),
        first.storage_mut::<f32>(),
        second.storage_mut::<f32>(),
        rule,
    );
    (param, first, second)
}

/// Computes LeakyReLU of `x`, written over `x` when nothing else shares its
/// buffer.
fn leaky_forward(mut x: FlexTensor, slope: f32) -> FlexTensor {
    if let Some(values) = unique_values(&mut x) {
        values
            .par_chunks_mut(CHUNK)
            .for_each(|chunk| leaky_own_sign(chunk, slope));
        return x;
    }
    let x_values = values(&x);
    let mut out = zeros(x_values.len());
    out.par_chunks_mut(CHUNK)
        .zip(x_values.par_chunks(CHUNK))
        .for_each(|(out, x)| leaky_slice(out, x, x, slope));
    FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

/// Replaces each value by its hyperbolic tangent.
fn tanh_slice(values: &mut [f32]) {
    values.iter_mut().for_each(|v| *v = v.tanh());
}

/// Writes `grad * (1 - y^2)`, the gradient through `y = tanh(x)`, over `grad`.
#[multiversion::multiversion(targets = "simd")]
fn tanh_grad_slice(grad: &mut [f32], y: &[f32]) {
    for (g, &y) in grad.iter_mut().zip(y) {
        *g *= 1.0 - y * y;
    }
}

/// Computes the tangent of `x`, written over `x` when nothing else shares
/// its buffer.
fn tanh_forward(mut x: FlexTensor) -> FlexTensor {
    if let Some(values) = unique_values(&mut x) {
        values.par_chunks_mut(CHUNK).for_each(tanh_slice);
        return x;
    }
    let mut out = values(&x).into_owned();
    out.par_chunks_mut(CHUNK).for_each(tanh_slice);
    FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let len = values.len();
    FlexTensor::from_data(TensorData::new(values, [len]))
}

fn norm_geometry(x: &FlexTensor) -> NormGeometry {
    let dims = x.layout().shape().dims::<4>();
    NormGeometry {
        batch: dims[0],
        channels: dims[1],
        plane: dims[2] * dims[3],
    }
}

fn norm_forward(
    x: &FlexTensor,
    (gamma, beta): (&FlexTensor, &FlexTensor),
    epsilon: f64,
    activation: Activation,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let g = norm_geometry(x);
    let (out, mean, variance) = norm::forward(
        &g,
        &values(x),
        (&values(gamma), &values(beta)),
        epsilon as f32,
        activation,
    );
    let out = FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()));
    (out, vector(mean), vector(variance))
}

fn pool_forward(x: &FlexTensor) -> (FlexTensor, Vec<u8>) {
    let [batch, channels, height, width] = x.layout().shape().dims::<4>();
    let (out, winners) = sparse::max_pool_forward(&values(x), height, width);
    (
        tensor(out, [batch, channels, height / 2, width / 2]),
        winners,
    )
}

fn dropout_apply(x: &FlexTensor, prob: f32, seed: u32) -> FlexTensor {
    let out = sparse::dropout(&values(x), prob, seed);
    FlexTensor::from_data(TensorData::new(out, x.layout().shape().clone()))
}

impl FastConv for Flex {
    fn fast_leaky_relu(x: FlexTensor, slope: f32) -> FlexTensor {
        leaky_forward(x, slope)
    }

    fn fast_tanh(x: FlexTensor) -> FlexTensor {
        tanh_forward(x)
    }

    fn fast_max_pool2x2(x: FlexTensor) -> FlexTensor {
        pool_forward(&x).0
    }

    fn fast_dropout(x: FlexTensor, prob: f32, seed: u32) -> FlexTensor {
        dropout_apply(&x, prob, seed)
    }

    fn fast_update(
        param: FlexTensor,
        grad: FlexTensor,
        first: FlexTensor,
        second: FlexTensor,
        rule: Update,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        update_apply(param, &grad, first, second, rule)
    }

    fn fast_batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
        activation: Activation,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        norm_forward(&x, (&gamma, &beta), epsilon, activation)
    }

    fn fast_conv2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        g: ConvGeometry,
    ) -> FlexTensor {
        conv_forward(&x, &weight, &bias, &g)
    }

    fn fast_conv_transpose2d(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        g: ConvGeometry,
    ) -> FlexTensor {
        transpose_forward(&x, &weight, &bias, &g)
    }
}

/// Backward step of `fast_conv2d`. The state is its input and weight.
#[derive(Debug)]
struct Conv2dBackward;

impl Backward<Flex, 3> for Conv2dBackward {
    type State = (FlexTensor, FlexTensor, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = values(&grad);
        let (x, weight, g) = ops.state;
        if let Some(node) = node_x {
            let dx = im2col::input_grad(&g, &grad, &values(&weight));
            grads.register::<Flex>(node.id, tensor(dx, input_shape(&g)));
        }
        if let Some(node) = node_weight {
            let dw = im2col::weight_grad(&g, &values(&x), &grad);
            grads.register::<Flex>(node.id, tensor(dw, weight_shape(&g)));
        }
        if let Some(node) = node_bias {
            let db = im2col::bias_grad(&grad, g.out_channels, g.positions());
            let db = FlexTensor::from_data(TensorData::new(db, [g.out_channels]));
            grads.register::<Flex>(node.id, db);
        }
    }
}

/// Backward step of `fast_conv_transpose2d`: the convolution of `geometry`
/// gives the input gradient, and its weight gradient with the roles of
/// input and output gradient swapped gives the weight gradient.
#[derive(Debug)]
struct ConvTranspose2dBackward;

impl Backward<Flex, 3> for ConvTranspose2dBackward {
    type State = (FlexTensor, FlexTensor, ConvGeometry);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let grad = values(&grad);
        let (x, weight, g) = ops.state;
        match (node_x, node_weight) {
            (Some(node_x), Some(node_weight)) => {
                let (dx, dw) =
                    im2col::forward_and_weight_grad(&g, &grad, &values(&weight), &values(&x));
                grads.register::<Flex>(node_x.id, tensor(dx, output_shape(&g)));
                grads.register::<Flex>(node_weight.id, tensor(dw, weight_shape(&g)));
            }
            (Some(node), None) => {
                let dx = im2col::forward(&g, &grad, &values(&weight), None);
                grads.register::<Flex>(node.id, tensor(dx, output_shape(&g)));
            }
            (None, Some(node)) => {
                let dw = im2col::weight_grad(&g, &grad, &values(&x));
                grads.register::<Flex>(node.id, tensor(dw, weight_shape(&g)));
            }
            (None, None) => {}
        }
        if let Some(node) = node_bias {
            // The bias is per channel of the transposed output, the conv input.
            let plane = g.in_size[0] * g.in_size[1];
            let db = im2col::bias_grad(&grad, g.in_channels, plane);
            let db = FlexTensor::from_data(TensorData::new(db, [g.in_channels]));
            grads.register::<Flex>(node.id, db);
        }
    }
}

/// Backward step of `fast_batch_norm_train`. The state is its input, gamma
/// and beta, the batch statistics, epsilon and the activation.
#[derive(Debug)]
struct BatchNormBackward;

/// The forward-pass values that `BatchNormBackward` keeps.
type NormState = (
    FlexTensor,
    [FlexTensor; 2],
    [FlexTensor; 2],
    f64,
    Activation,
);

impl Backward<Flex, 3> for BatchNormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, [gamma, beta], [mean, variance], epsilon, activation) = ops.state;
        let g = norm_geometry(&x);
        let (dx, dgamma, dbeta) = norm::backward(
            &g,
            (&values(&x), &values(&grad)),
            (&values(&gamma), &values(&beta)),
            (&values(&mean), &values(&variance)),
            epsilon as f32,
            activation,
        );
        if let Some(node) = node_x {
            let dx = FlexTensor::from_data(TensorData::new(dx, x.layout().shape().clone()));
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vector(dgamma));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vector(dbeta));
        }
    }
}

/// Backward step of `fast_max_pool2x2`. The state is the input shape and
/// the winning position of each window.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = ([usize; 4], Vec<u8>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let (shape, winners) = ops.state;
        let dx = sparse::max_pool_backward(&values(&grad), &winners, shape[2], shape[3]);
        grads.register::<Flex>(node.id, tensor(dx, shape));
    }
}

/// Backward step of `fast_dropout`: the same mask on the output gradient.
/// The state is the probability and the seed.
#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = (f32, u32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let (prob, seed) = ops.state;
        grads.register::<Flex>(node.id, dropout_apply(&grad, prob, seed));
    }
}

/// Backward step of `fast_leaky_relu`. The state is a tensor with the sign
/// of its input (the input, or the output for a positive slope) and the slope.
#[derive(Debug)]
struct LeakyReluBackward;

impl Backward<Flex, 1> for LeakyReluBackward {
    type State = (FlexTensor, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let (x, slope) = ops.state;
        let mut grad = grad;
        let x_values = values(&x);
        if let Some(dx) = unique_values(&mut grad).filter(|dx| dx.len() == x_values.len()) {
            dx.par_chunks_mut(CHUNK)
                .zip(x_values.par_chunks(CHUNK))
                .for_each(|(dx, x)| leaky_in_place(dx, x, slope));
            grads.register::<Flex>(node.id, grad);
            return;
        }
        let grad_values = values(&grad);
        let mut dx = zeros(x_values.len());
        dx.par_chunks_mut(CHUNK)
            .zip(
                x_values
                    .par_chunks(CHUNK)
                    .zip(grad_values.par_chunks(CHUNK)),
            )
            .for_each(|(dx, (x, g))| leaky_slice(dx, x, g, slope));
        let dx = FlexTensor::from_data(TensorData::new(dx, x.layout().shape().clone()));
        grads.register::<Flex>(node.id, dx);
    }
}

/// Backward step of `fast_tanh`. The state is its output.
#[derive(Debug)]
struct TanhBackward;

impl Backward<Flex, 1> for TanhBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else {
            return;
        };
        let y = values(&ops.state);
        let mut grad = match grad.as_slice::<f32>() {
            Some(_) => grad,
            None => grad.to_contiguous(),
        };
        // `storage_mut` copies the gradient first when another tensor shares it.
        let dx = grad.storage_mut::<f32>();
        dx.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK))
            .for_each(|(dx, y)| tanh_grad_slice(dx, y));
        grads.register::<Flex>(node.id, grad);
    }
}

/// Records `step` as the backward step of `output`, whose inputs are
/// `parents`. The step keeps `state` only when a parent needs a gradient.
fn record<S, C, const N: usize>(
    step: S,
    parents: [NodeGuard; N],
    state: S::State,
    output: FlexTensor,
) -> FloatTensor<Autodiff<Flex, C>>
where
    S: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    match step.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

impl<C: CheckpointStrategy> FastConv for Autodiff<Flex, C> {
    fn fast_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let shape = x.layout().shape().dims::<4>();
        let (output, winners) = pool_forward(&x);
        record::<_, C, _>(MaxPoolBackward, [x_node], (shape, winners), output)
    }

    fn fast_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        rule: Update,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [param, grad, first, second] = [param, grad, first, second].map(|t| t.into_parts().0);
        let (param, first, second) = update_apply(param, &grad, first, second, rule);
        let leaf = FloatTensor::<Self>::new;
        (leaf(param), leaf(first), leaf(second))
    }

    fn fast_dropout(x: FloatTensor<Self>, prob: f32, seed: u32) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let output = dropout_apply(&x, prob, seed);
        record::<_, C, _>(DropoutBackward, [x_node], (prob, seed), output)
    }

    fn fast_batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        activation: Activation,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (x, x_node) = x.into_parts();
        let (gamma, gamma_node) = gamma.into_parts();
        let (beta, beta_node) = beta.into_parts();
        let (output, mean, variance) = norm_forward(&x, (&gamma, &beta), epsilon, activation);
        let statistics = (mean.clone(), variance.clone());
        let output = record::<_, C, _>(
            BatchNormBackward,
            [x_node, gamma_node, beta_node],
            (x, [gamma, beta], [mean, variance], epsilon, activation),
            output,
        );
        let (mean, variance) = statistics;
        let leaf = FloatTensor::<Self>::new;
        (output, leaf(mean), leaf(variance))
    }

    fn fast_leaky_relu(x: FloatTensor<Self>, slope: f32) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        // With a positive slope the output has the sign of the input, so the
        // backward step can read the output and the input can be overwritten.
        let input = (slope <= 0.0 || slope.is_nan()).then(|| x.clone());
        let output = leaky_forward(x, slope);
        let sign = input.unwrap_or_else(|| output.clone());
        record::<_, C, _>(LeakyReluBackward, [x_node], (sign, slope), output)
    }

    fn fast_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let output = tanh_forward(x);
        record::<_, C, _>(TanhBackward, [x_node], output.clone(), output)
    }

    fn fast_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let output = conv_forward(&x, &weight, &bias, &g);
        record::<_, C, _>(
            Conv2dBackward,
            [x_node, weight_node, bias_node],
            (x, weight, g),
            output,
        )
    }

    fn fast_conv_transpose2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        g: ConvGeometry,
    ) -> FloatTensor<Self> {
        let (x, x_node) = x.into_parts();
        let (weight, weight_node) = weight.into_parts();
        let (bias, bias_node) = bias.into_parts();
        let output = transpose_forward(&x, &weight, &bias, &g);
        record::<_, C, _>(
            ConvTranspose2dBackward,
            [x_node, weight_node, bias_node],
            (x, weight, g),
            output,
        )
    }
}
