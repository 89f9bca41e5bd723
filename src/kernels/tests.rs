//! The custom kernels against burn's own layers: the same outputs and the
//! same gradients of input, weight and bias, up to float tolerance.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::MaxPool2dConfig;
use burn::nn::{BatchNorm, BatchNormConfig, DropoutConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};

use super::{
    batch_norm, batch_norm_leaky_relu, conv_transpose2d, conv2d, dropout, leaky_relu, max_pool2d,
    tanh,
};

/// Largest absolute difference between two tensors, relative to the
/// largest magnitude in `expected`.
fn relative_error<const D: usize>(actual: Tensor<D>, expected: Tensor<D>) -> f32 {
    let actual: Vec<f32> = actual.try_into_vec_as().unwrap();
    let expected: Vec<f32> = expected.try_into_vec_as().unwrap();
    assert_eq!(actual.len(), expected.len(), "tensor sizes differ");
    let scale = expected.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = actual
        .iter()
        .zip(&expected)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

/// Output and gradients of one layer application on an autodiff device.
struct Pass {
    output: Tensor<4>,
    input_grad: Tensor<4>,
    weight_grad: Tensor<4>,
    bias_grad: Tensor<1>,
}

/// Runs `apply` on `x`, backpropagates a fixed random projection of the
/// output, and collects the gradients of `x` and of the layer's weights.
fn pass(
    x: &Tensor<4>,
    weight: &Param<Tensor<4>>,
    bias: &Param<Tensor<1>>,
    apply: impl Fn(Tensor<4>) -> Tensor<4>,
) -> Pass {
    let x = x.clone().require_grad();
    let output = apply(x.clone());
    let projection = pseudo_random(output.dims(), 7, &output.device());
    let grads = (output.clone() * projection).sum().backward();
    Pass {
        output: output.inner(),
        input_grad: x.grad(&grads).expect("input gradient"),
        weight_grad: weight.grad(&grads).expect("weight gradient"),
        bias_grad: bias.grad(&grads).expect("bias gradient"),
    }
}

fn assert_same(ours: Pass, burns: Pass) {
    let tolerance = 1e-4;
    let output = relative_error(ours.output, burns.output);
    assert!(output < tolerance, "output differs by {output}");
    let input = relative_error(ours.input_grad, burns.input_grad);
    assert!(input < tolerance, "input gradient differs by {input}");
    let weight = relative_error(ours.weight_grad, burns.weight_grad);
    assert!(weight < tolerance, "weight gradient differs by {weight}");
    let bias = relative_error(ours.bias_grad, burns.bias_grad);
    assert!(bias < tolerance, "bias gradient differs by {bias}");
}

fn input(shape: [usize; 4], device: &Device) -> Tensor<4> {
    pseudo_random(shape, 3, device)
}

/// Values in [-1, 1) from a fixed hash of the index and `salt`. Unlike the
/// device's seeded generator, tests running in parallel cannot change them.
fn pseudo_random(shape: [usize; 4], salt: u64, device: &Device) -> Tensor<4> {
    let len = shape.iter().product::<usize>() as u64;
    let values: Vec<f32> = (0..len)
        .map(|i| {
            let h = (i ^ salt << 32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn check_conv(config: Conv2dConfig, shape: [usize; 4]) {
    let device = Device::flex().autodiff();
    let x = input(shape, &device);
    let conv: Conv2d = config.init(&device);
    let bias = conv.bias.clone().unwrap();
    let ours = pass(&x, &conv.weight, &bias, |x| conv2d(&conv, x));
    let burns = pass(&x, &conv.weight, &bias, |x| conv.forward(x));
    assert_same(ours, burns);
}

fn check_transpose(config: ConvTranspose2dConfig, shape: [usize; 4]) {
    let device = Device::flex().autodiff();
    let x = input(shape, &device);
    let conv: ConvTranspose2d = config.init(&device);
    let bias = conv.bias.clone().unwrap();
    let ours = pass(&x, &conv.weight, &bias, |x| conv_transpose2d(&conv, x));
    let burns = pass(&x, &conv.weight, &bias, |x| conv.forward(x));
    assert_same(ours, burns);
}

#[test]
fn conv2d_stride_one_same_matches_burn() {
    let config = Conv2dConfig::new([3, 8], [5, 5]).with_padding(PaddingConfig2d::Same);
    check_conv(config, [2, 3, 12, 12]);
}

#[test]
fn conv2d_stride_two_asymmetric_same_matches_burn() {
    // Keras "same" at stride 2 pads one row above and two below.
    let config = Conv2dConfig::new([4, 6], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Same);
    check_conv(config, [3, 4, 16, 16]);
}

#[test]
fn conv2d_three_by_three_same_matches_burn() {
    let config = Conv2dConfig::new([5, 7], [3, 3]).with_padding(PaddingConfig2d::Same);
    check_conv(config, [2, 5, 9, 9]);
}

#[test]
fn conv2d_many_channels_matches_burn() {
    let config = Conv2dConfig::new([8, 9], [3, 3]).with_padding(PaddingConfig2d::Same);
    check_conv(config, [2, 8, 9, 9]);
}

#[test]
fn conv2d_many_channels_valid_matches_burn() {
    let config = Conv2dConfig::new([9, 8], [5, 5]);
    check_conv(config, [2, 9, 8, 8]);
}

#[test]
fn conv2d_valid_padding_matches_burn() {
    let config = Conv2dConfig::new([2, 3], [3, 3]);
    check_conv(config, [2, 2, 7, 7]);
}

// On CPUs with AVX-512, these two take the direct kernels: stride 1, at most
// 4 channels on one side, and 16 or 32 output columns.
#[test]
fn conv2d_direct_narrow_input_matches_burn() {
    let config = Conv2dConfig::new([3, 8], [5, 5]).with_padding(PaddingConfig2d::Same);
    check_conv(config, [2, 3, 16, 16]);
}

#[test]
fn conv2d_direct_narrow_output_matches_burn() {
    let config = Conv2dConfig::new([8, 3], [3, 3]).with_padding(PaddingConfig2d::Same);
    check_conv(config, [2, 8, 6, 32]);
}

#[test]
fn conv_transpose2d_doubling_matches_burn() {
    // The generator's upsampling: 5x5, stride 2, padding 2, output padding 1.
    let config = ConvTranspose2dConfig::new([6, 4], [5, 5])
        .with_stride([2, 2])
        .with_padding([2, 2])
        .with_padding_out([1, 1]);
    check_transpose(config, [3, 6, 4, 4]);
}

#[test]
fn conv_transpose2d_stride_one_matches_burn() {
    let config = ConvTranspose2dConfig::new([3, 5], [3, 3]).with_padding([1, 1]);
    check_transpose(config, [2, 3, 6, 6]);
}

#[test]
fn conv2d_without_autodiff_matches_burn() {
    let device = Device::flex();
    let x = input([2, 3, 10, 10], &device);
    let conv: Conv2d = Conv2dConfig::new([3, 4], [5, 5])
        .with_stride([2, 2])
        .with_padding(PaddingConfig2d::Same)
        .init(&device);
    let error = relative_error(conv2d(&conv, x.clone()), conv.forward(x));
    assert!(error < 1e-4, "output differs by {error}");
}

#[test]
fn dilated_conv2d_falls_back_to_burn() {
    let device = Device::flex();
    let x = input([1, 2, 9, 9], &device);
    let conv: Conv2d = Conv2dConfig::new([2, 3], [3, 3])
        .with_dilation([2, 2])
        .init(&device);
    let ours = conv2d(&conv, x.clone());
    assert_eq!(ours.dims(), [1, 3, 5, 5]);
    let error = relative_error(ours, conv.forward(x));
    assert_eq!(error, 0.0);
}

/// LeakyReLU of `x * 2`, a fresh tensor that the kernel may overwrite, and
/// the input gradient of `sum(y^2)`, ours or burn's.
fn leaky_of_fresh(x: &Tensor<4>, slope: f64, ours: bool) -> (Tensor<4>, Tensor<4>) {
    let x = x.clone().require_grad();
    let fresh = x.clone().mul_scalar(2.0);
    let y = if ours {
        leaky_relu(fresh, slope)
    } else {
        burn::tensor::activation::leaky_relu(fresh, slope)
    };
    let grads = (y.clone() * y.clone()).sum().backward();
    (y.inner(), x.grad(&grads).expect("input gradient"))
}

#[test]
fn leaky_relu_in_place_matches_burn() {
    let device = Device::flex().autodiff();
    let x = input([2, 3, 5, 5], &device);
    for slope in [0.2, 0.0, -0.5] {
        let (ours, our_grad) = leaky_of_fresh(&x, slope, true);
        let (burns, burn_grad) = leaky_of_fresh(&x, slope, false);
        assert_eq!(relative_error(ours, burns), 0.0, "output, slope {slope}");
        let error = relative_error(our_grad, burn_grad);
        assert!(error < 1e-6, "gradient differs by {error}, slope {slope}");
    }
}

#[test]
fn leaky_relu_keeps_shared_input() {
    let device = Device::flex();
    let x = input([2, 3, 5, 5], &device).mul_scalar(1.0);
    let before: Vec<f32> = x.clone().try_into_vec_as().unwrap();
    let _ = leaky_relu(x.clone(), 0.2);
    let after: Vec<f32> = x.try_into_vec_as().unwrap();
    assert_eq!(before, after);
}

#[test]
fn tanh_matches_burn_with_gradient() {
    let device = Device::flex().autodiff();
    let x = input([2, 3, 5, 5], &device).mul_scalar(3.0);
    let run = |ours: bool| {
        let x = x.clone().require_grad();
        // `x * 1` is a fresh tensor, which the kernel overwrites in place.
        let fresh = x.clone().mul_scalar(1.0);
        let y = if ours {
            tanh(fresh)
        } else {
            burn::tensor::activation::tanh(fresh)
        };
        let grads = (y.clone() * y.clone()).sum().backward();
        (y.inner(), x.grad(&grads).expect("input gradient"))
    };
    let (ours, our_grad) = run(true);
    let (burns, burn_grad) = run(false);
    let output = relative_error(ours, burns);
    assert!(output < 1e-6, "output differs by {output}");
    let gradient = relative_error(our_grad, burn_grad);
    assert!(gradient < 1e-5, "gradient differs by {gradient}");
}

#[test]
fn tanh_keeps_shared_input() {
    let device = Device::flex();
    let x = input([2, 3, 5, 5], &device).mul_scalar(1.0);
    let before: Vec<f32> = x.clone().try_into_vec_as().unwrap();
    let y: Vec<f32> = tanh(x.clone()).try_into_vec_as().unwrap();
    let after: Vec<f32> = x.try_into_vec_as().unwrap();
    assert_eq!(before, after);
    assert!(
        y.iter()
            .zip(&before)
            .all(|(y, x)| (y - x.tanh()).abs() < 1e-7)
    );
}

#[test]
fn leaky_relu_matches_burn_with_gradient() {
    let device = Device::flex().autodiff();
    let x = input([2, 3, 5, 5], &device);
    let run = |ours: bool| {
        let x = x.clone().require_grad();
        let y = if ours {
            leaky_relu(x.clone(), 0.2)
        } else {
            burn::tensor::activation::leaky_relu(x.clone(), 0.2)
        };
        let grads = (y.clone() * y.clone()).sum().backward();
        (y.inner(), x.grad(&grads).expect("input gradient"))
    };
    let (ours, our_grad) = run(true);
    let (burns, burn_grad) = run(false);
    assert_eq!(relative_error(ours, burns), 0.0);
    assert!(relative_error(our_grad, burn_grad) < 1e-6);
}

#[test]
fn conv2d_on_flex_runs_the_custom_kernel() {
    use std::sync::atomic::Ordering;
    let device = Device::flex();
    let conv: Conv2d = Conv2dConfig::new([2, 3], [3, 3]).init(&device);
    let before = super::extension::FORWARD_CALLS.load(Ordering::Relaxed);
    let _ = conv2d(&conv, input([1, 2, 6, 6], &device));
    let after = super::extension::FORWARD_CALLS.load(Ordering::Relaxed);
    assert!(after > before, "conv2d did not reach the custom kernel");
}

/// Output, input gradient, gamma and beta gradients and running statistics
/// of one training-mode batch norm step, followed by LeakyReLU when
/// `leaky_slope` is given.
fn norm_pass(ours: bool, x: &Tensor<4>, leaky_slope: Option<f64>) -> [Vec<f32>; 6] {
    let device = x.device();
    let norm: BatchNorm = BatchNormConfig::new(x.dims()[1])
        .with_momentum(0.2)
        .with_epsilon(1e-3)
        .init(&device);
    // Gamma and beta away from their defaults of one and zero.
    let gamma = pseudo_random([1, 1, 1, x.dims()[1]], 11, &device).reshape([x.dims()[1]]);
    let norm = BatchNorm {
        gamma: Param::from_tensor(gamma.add_scalar(1.5)),
        ..norm
    };
    let x = x.clone().require_grad();
    let y = match (ours, leaky_slope) {
        (true, None) => batch_norm(&norm, x.clone()),
        (true, Some(slope)) => batch_norm_leaky_relu(&norm, x.clone(), slope),
        (false, None) => norm.forward(x.clone()),
        (false, Some(slope)) => {
            burn::tensor::activation::leaky_relu(norm.forward(x.clone()), slope)
        }
    };
    let projection = pseudo_random(y.dims(), 5, &device);
    let grads = (y.clone() * projection).sum().backward();
    let vec = |t: Tensor<4>| -> Vec<f32> { t.inner().try_into_vec_as().unwrap() };
    let vec1 = |t: Tensor<1>| -> Vec<f32> { t.try_into_vec_as().unwrap() };
    [
        vec(y),
        vec(x.grad(&grads).expect("input gradient")),
        vec1(norm.gamma.grad(&grads).expect("gamma gradient")),
        vec1(norm.beta.grad(&grads).expect("beta gradient")),
        vec1(norm.running_mean.value()),
        vec1(norm.running_var.value()),
    ]
}

#[test]
fn batch_norm_matches_burn_with_gradients() {
    check_norm(None);
}

#[test]
fn batch_norm_leaky_relu_matches_burn_with_gradients() {
    check_norm(Some(0.2));
}

/// Compares `norm_pass` of the fused kernels with burn's layers.
fn check_norm(leaky_slope: Option<f64>) {
    let device = Device::flex().autodiff();
    // A mean far from zero checks the shifted sums of the statistics.
    let x = input([3, 4, 5, 6], &device).mul_scalar(2.0).add_scalar(3.0);
    let names = [
        "output",
        "input gradient",
        "gamma gradient",
        "beta gradient",
    ];
    let names = names
        .into_iter()
        .chain(["running mean", "running variance"]);
    let ours = norm_pass(true, &x, leaky_slope);
    let burns = norm_pass(false, &x, leaky_slope);
    if leaky_slope.is_some() {
        let negative = ours[0].iter().filter(|&&v| v < 0.0).count();
        assert!(negative > 0, "no value took the negative slope");
    }
    for ((name, a), b) in names.zip(&ours).zip(&burns) {
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff / scale < 1e-4, "{name} differs by {}", diff / scale);
    }
}

#[test]
fn max_pool_matches_burn_with_gradient() {
    let device = Device::flex().autodiff();
    let x = input([2, 3, 6, 8], &device);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let run = |ours: bool| {
        let x = x.clone().require_grad();
        let y = if ours {
            max_pool2d(&pool, x.clone())
        } else {
            pool.forward(x.clone())
        };
        let projection = pseudo_random(y.dims(), 9, &device);
        let grads = (y.clone() * projection).sum().backward();
        (y.inner(), x.grad(&grads).expect("input gradient"))
    };
    let (ours, our_grad) = run(true);
    let (burns, burn_grad) = run(false);
    assert_eq!(ours.dims(), [2, 3, 3, 4]);
    assert_eq!(relative_error(ours, burns), 0.0);
    assert_eq!(relative_error(our_grad, burn_grad), 0.0);
}

#[test]
fn max_pool_odd_size_uses_burn() {
    let device = Device::flex();
    let x = input([1, 2, 5, 5], &device);
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let ours = max_pool2d(&pool, x.clone());
    assert_eq!(ours.dims(), [1, 2, 2, 2]);
    assert_eq!(relative_error(ours, pool.forward(x)), 0.0);
}

#[test]
fn dropout_gradient_uses_forward_mask() {
    let device = Device::flex().autodiff();
    let x = input([4, 8, 6, 6], &device).add_scalar(2.0).require_grad();
    let layer = DropoutConfig::new(0.4).init();
    let y = dropout(&layer, x.clone());
    let grads = y.clone().sum().backward();
    let y: Vec<f32> = y.inner().try_into_vec_as().unwrap();
    let x_values: Vec<f32> = x.clone().inner().try_into_vec_as().unwrap();
    let dx: Vec<f32> = x.grad(&grads).unwrap().try_into_vec_as().unwrap();
    let scale = 1.0 / 0.6;
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f32 / y.len() as f32;
    assert!((dropped - 0.4).abs() < 0.05, "dropped {dropped}");
    for ((&out, &v), &d) in y.iter().zip(&x_values).zip(&dx) {
        let expected = if out == 0.0 { 0.0 } else { scale };
        assert!((d - expected).abs() < 1e-5, "gradient {d} for output {out}");
        assert!(
            out == 0.0 || (out - v * scale).abs() < 1e-5,
            "output {out} for {v}"
        );
    }
}

#[test]
fn dropout_outside_training_is_identity() {
    let device = Device::flex();
    let x = input([2, 3, 4, 4], &device);
    let layer = DropoutConfig::new(0.5).init();
    assert_eq!(relative_error(dropout(&layer, x.clone()), x), 0.0);
}

#[test]
fn fused_adamax_matches_tensor_ops() {
    let device = Device::flex();
    let [param, grad, moment] = [1, 2, 3].map(|salt| pseudo_random([2, 3, 4, 5], salt, &device));
    let norm = pseudo_random([2, 3, 4, 5], 4, &device).abs();
    let step = super::optim::AdamaxStep {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
        step_size: 0.005,
    };

    let before: Vec<f32> = param.clone().try_into_vec_as().unwrap();
    let (new_param, new_moment, new_norm) = super::optimizer_update(
        param.clone(),
        grad.clone(),
        moment.clone(),
        norm.clone(),
        super::optim::Update::Adamax(step),
    );

    let expected_moment = moment.mul_scalar(0.9).add(grad.clone().mul_scalar(0.1));
    let expected_norm = norm.mul_scalar(0.999).max_pair(grad.abs());
    let delta = expected_moment
        .clone()
        .div(expected_norm.clone().add_scalar(1e-7))
        .mul_scalar(0.005);

    assert!(relative_error(new_moment, expected_moment) < 1e-6, "moment");
    assert!(relative_error(new_norm, expected_norm) < 1e-6, "norm");
    assert!(
        relative_error(new_param, param.clone() - delta) < 1e-6,
        "parameter"
    );
    // The caller still owns `param`, so the update must not write over it.
    let after: Vec<f32> = param.try_into_vec_as().unwrap();
    assert_eq!(before, after);
}

#[test]
fn fused_updates_match_tensor_op_fallback() {
    let device = Device::flex();
    let [param, grad, first] = [5, 6, 7].map(|salt| pseudo_random([3, 4, 5, 6], salt, &device));
    let second = pseudo_random([3, 4, 5, 6], 8, &device).abs();
    let rules = [
        super::optim::Update::Adam(super::optim::AdamStep {
            beta_1: 0.5,
            beta_2: 0.999,
            epsilon: 1e-7,
            scale: 1.3,
            learning_rate: 2e-4,
        }),
        super::optim::Update::Adamax(super::optim::AdamaxStep {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            step_size: 5e-3,
        }),
    ];
    for rule in rules {
        let inputs = || (param.clone(), grad.clone(), first.clone(), second.clone());
        let (p, g, f, s) = inputs();
        let fused = super::optimizer_update(p, g, f, s, rule);
        let (p, g, f, s) = inputs();
        let ops = super::update_with_tensor_ops(p, g, f, s, rule);
        assert!(relative_error(fused.0, ops.0) < 1e-6, "parameter, {rule:?}");
        assert!(
            relative_error(fused.1, ops.1) < 1e-6,
            "first state, {rule:?}"
        );
        assert!(
            relative_error(fused.2, ops.2) < 1e-6,
            "second state, {rule:?}"
        );
    }
}
