//! Adamax, the infinity-norm variant of Adam, with Keras semantics, as a burn
//! [`Optimizer`]: the first moment is bias-corrected, the infinity norm is
//! not, and epsilon is added to the norm.

use burn::config::Config;
use burn::optim::{LearningRate, ModuleOptimizer, Optimizer, RecordState, StateSink, StateSource};
use burn::store::burn_pack::Scalar;
use burn::tensor::{Device, Tensor};

use crate::kernels::{self, optim::AdamaxStep, optim::Update};

/// Adamax hyper-parameters; the defaults are Keras'.
#[derive(Config, Debug)]
pub struct AdamaxConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the infinity norm.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the infinity norm before dividing.
    #[config(default = 1e-7)]
    pub epsilon: f32,
}

impl AdamaxConfig {
    /// Builds the per-parameter optimizer.
    pub fn build(&self) -> Adamax {
        Adamax {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
        }
    }

    /// Builds an optimizer for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        ModuleOptimizer::from(self.build())
    }
}

/// The Adamax update rule for one parameter tensor.
#[derive(Clone, Debug)]
pub struct Adamax {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
}

/// Per-parameter Adamax state.
#[derive(Clone)]
pub struct AdamaxState<const D: usize> {
    /// Steps taken, starting at 1 after the first update.
    pub time: usize,
    /// Exponential moving average of the gradient.
    pub moment: Tensor<D>,
    /// Exponentially weighted infinity norm of the gradient.
    pub norm: Tensor<D>,
}

impl Optimizer for Adamax {
    type State<const D: usize> = AdamaxState<D>;

    /// Applies, with t counted from 1:
    /// m = b1 * m + (1 - b1) * g; u = max(b2 * u, |g|);
    /// param -= lr / (1 - b1^t) * m / (u + eps).
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moment, norm) = match state {
            Some(state) => (state.time + 1, state.moment, state.norm),
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let bias_correction = 1.0 - (self.beta_1 as f64).powi(time as i32);
        let step = AdamaxStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            step_size: (lr / bias_correction) as f32,
        };
        let (tensor, moment, norm) =
            kernels::optimizer_update(tensor, grad, moment, norm, Update::Adamax(step));
        let state = AdamaxState { time, moment, norm };
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.moment = state.moment.to_device(device);
        state.norm = state.norm.to_device(device);
        state
    }
}

/// Written by hand because burn's derive only works inside burn-optim.
impl<const D: usize> RecordState for AdamaxState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "time", Scalar::from(self.time));
        out.push_tensor(prefix, "moment", self.moment.to_data());
        out.push_tensor(prefix, "norm", self.norm.to_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let time = usize::try_from(src.take_scalar(prefix, "time")?).ok()?;
        let moment = Tensor::from_data(src.take_tensor(prefix, "moment")?, device);
        let norm = Tensor::from_data(src.take_tensor(prefix, "norm")?, device);
        Some(AdamaxState { time, moment, norm })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn tensor(values: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::from(values), &Device::flex())
    }

    fn values(t: &Tensor<1>) -> Vec<f32> {
        t.clone().try_into_vec_as().unwrap()
    }

    fn assert_close(actual: &[f32], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((*a as f64 - e).abs() < 1e-6, "{actual:?} != {expected:?}");
        }
    }

    /// Runs Adamax on `[1.0, -2.0]` with the gradients below, lr 0.01.
    fn run_steps(steps: usize) -> Vec<f32> {
        let grads = [[0.5f32, -1.0], [0.1, 2.0], [-0.3, 0.0]];
        let optimizer = AdamaxConfig::new().build();
        let mut param = tensor(&[1.0, -2.0]);
        let mut state = None;
        for grad in grads.iter().take(steps) {
            let (next, next_state) = optimizer.step(0.01, param, tensor(grad), state);
            param = next;
            state = next_state;
        }
        values(&param)
    }

    #[test]
    fn first_step_moves_by_learning_rate() {
        // t=1: m = 0.1 * g, u = |g|, step = 0.01 / 0.1 * m / (u + 1e-7) = 0.01 * sign(g).
        let expected = [
            1.0 - 0.01 * 0.5 / (0.5 + 1e-7),
            -2.0 + 0.01 * 1.0 / (1.0 + 1e-7),
        ];
        assert_close(&run_steps(1), &expected);
    }

    #[test]
    fn three_steps_match_hand_computation() {
        // Element 0: g = 0.5, 0.1, -0.3.
        //   t=1: m = 0.05, u = 0.5, p = 1 - 0.01/0.1 * 0.05/0.5 = 0.99
        //   t=2: m = 0.045 + 0.01 = 0.055, u = max(0.4995, 0.1) = 0.4995,
        //        p = 0.99 - 0.01/0.19 * 0.055/0.4995
        //   t=3: m = 0.0495 - 0.03 = 0.0195, u = max(0.4990005, 0.3) = 0.4990005,
        //        p -= 0.01/0.271 * 0.0195/0.4990005
        // Element 1: g = -1, 2, 0.
        //   t=1: m = -0.1, u = 1, p = -2 + 0.01 = -1.99
        //   t=2: m = -0.09 + 0.2 = 0.11, u = max(0.999, 2) = 2,
        //        p = -1.99 - 0.01/0.19 * 0.11/2
        //   t=3: m = 0.099, u = max(1.998, 0) = 1.998, p -= 0.01/0.271 * 0.099/1.998
        let eps = 1e-7;
        let mut p0 = 1.0 - 0.01 / 0.1 * 0.05 / (0.5 + eps);
        p0 -= 0.01 / 0.19 * 0.055 / (0.4995 + eps);
        p0 -= 0.01 / 0.271 * 0.0195 / (0.4990005 + eps);
        let mut p1 = -2.0 + 0.01 / 0.1 * 0.1 / (1.0 + eps);
        p1 -= 0.01 / 0.19 * 0.11 / (2.0 + eps);
        p1 -= 0.01 / 0.271 * 0.099 / (1.998 + eps);
        assert_close(&run_steps(3), &[p0, p1]);
    }

    #[test]
    fn state_round_trips_through_record() {
        let state = AdamaxState::<1> {
            time: 7,
            moment: tensor(&[0.25, -0.5]),
            norm: tensor(&[1.5, 2.0]),
        };
        let mut sink = StateSink::default();
        state.state_flatten("p", &mut sink);
        let mut source = StateSource::new(sink.scalars.into_iter().collect());
        for (name, data) in sink.tensors {
            source.insert_tensor(name, data);
        }
        let restored = AdamaxState::<1>::state_unflatten("p", &mut source, &Device::flex())
            .expect("all leaves present");
        assert_eq!(restored.time, 7);
        assert_eq!(values(&restored.moment), vec![0.25, -0.5]);
        assert_eq!(values(&restored.norm), vec![1.5, 2.0]);
    }

    /// Builds a 2 -> 1 linear layer on autodiff, weights 0.5 and bias 0.
    fn linear() -> burn::nn::Linear {
        use burn::module::Param;
        let device = Device::flex().autodiff();
        burn::nn::Linear {
            weight: Param::from_data(TensorData::from([[0.5f32], [0.5]]), &device),
            bias: Some(Param::from_data(TensorData::from([0.0f32]), &device)),
        }
    }

    /// Steps `model` once on the loss sum(model(x)), whose weight gradient is `x`.
    fn module_step(
        optimizer: &mut ModuleOptimizer,
        model: burn::nn::Linear,
        x: [f32; 2],
    ) -> burn::nn::Linear {
        use burn::optim::GradientsParams;
        let device = model.weight.val().device();
        let x = Tensor::<2>::from_data(TensorData::from([x]), &device);
        let grads = model.forward(x).sum().backward();
        let grads = GradientsParams::from_grads(grads, &model);
        optimizer.step(0.01, model, grads)
    }

    #[test]
    fn module_optimizer_applies_first_step() {
        // Gradients: weight [1, 2], bias 1. Step 1 moves each by
        // lr * g / (|g| + eps), i.e. 0.01 apiece.
        let mut optimizer = AdamaxConfig::new().init();
        let model = module_step(&mut optimizer, linear(), [1.0, 2.0]);
        let weight: Vec<f32> = model.weight.val().try_into_vec_as().unwrap();
        let bias: Vec<f32> = model.bias.unwrap().val().try_into_vec_as().unwrap();
        assert_close(&weight, &[0.49, 0.49]);
        assert_close(&bias, &[-0.01]);
    }

    #[test]
    fn module_optimizer_state_survives_bytes() {
        let mut original = AdamaxConfig::new().init();
        let model = module_step(&mut original, linear(), [1.0, 2.0]);
        let bytes = original.into_bytes().unwrap();
        let mut restored = AdamaxConfig::new().init().from_bytes(bytes).unwrap();

        // A different second gradient, so a lost state would show: a fresh
        // optimizer would move each weight by 0.01, a restored one by less.
        let expected = module_step(&mut original, model.clone(), [-0.5, 3.0]);
        let actual = module_step(&mut restored, model, [-0.5, 3.0]);
        let expected: Vec<f32> = expected.weight.val().try_into_vec_as().unwrap();
        let actual: Vec<f32> = actual.weight.val().try_into_vec_as().unwrap();
        assert_eq!(expected, actual);
        // m = 0.09 * [1, 2] + 0.1 * [-0.5, 3], u = max(0.999 * [1, 2], [0.5, 3]).
        let step = |m: f64, u: f64| 0.01 / 0.19 * m / (u + 1e-7);
        assert_close(&actual, &[0.49 - step(0.04, 0.999), 0.49 - step(0.48, 3.0)]);
    }
}
