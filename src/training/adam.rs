//! Adam with the update of burn's `Adam` without weight decay or AMSGrad,
//! run as one fused pass per parameter. Its state is burn's `AdamState`, so
//! checkpoints keep burn's record layout.

use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::kernels::{self, optim::AdamStep, optim::Update};

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct FusedAdam {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl FusedAdam {
    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moment, second) = match state {
            Some(state) => {
                let momentum = state.momentum;
                (momentum.time + 1, momentum.moment_1, momentum.moment_2)
            }
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let correction = (1.0 - self.beta_2.powi(time as i32)).sqrt();
        let step = AdamStep {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon * correction,
            scale: correction / (1.0 - self.beta_1.powi(time as i32)),
            learning_rate: lr as f32,
        };
        let (tensor, moment, second) =
            kernels::optimizer_update(tensor, grad, moment, second, Update::Adam(step));
        let momentum = AdaptiveMomentumState::new(time, moment, second);
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum.moment_1 = state.momentum.moment_1.to_device(device);
        state.momentum.moment_2 = state.momentum.moment_2.to_device(device);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::AdamConfig;
    use burn::tensor::TensorData;

    fn tensor(values: &[f32]) -> Tensor<1> {
        Tensor::from_data(TensorData::from(values), &Device::flex())
    }

    /// Runs three steps of `optimizer` on fixed gradients.
    fn run<O: Optimizer>(optimizer: &O) -> Vec<f32> {
        let grads = [[0.5f32, -1.0, 0.0], [0.1, 2.0, -0.2], [-0.3, 0.0, 4.0]];
        let mut param = tensor(&[1.0, -2.0, 0.5]);
        let mut state = None;
        for grad in &grads {
            let (next, next_state) = optimizer.step(2e-4, param, tensor(grad), state);
            param = next;
            state = next_state;
        }
        param.try_into_vec_as().unwrap()
    }

    #[test]
    fn fused_adam_matches_burn_adam() {
        let fused = FusedAdam {
            beta_1: 0.5,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        let burns = AdamConfig::new()
            .with_beta_1(0.5)
            .with_beta_2(0.999)
            .with_epsilon(1e-7)
            .build();
        let (ours, expected) = (run(&fused), run(&burns));
        for (a, b) in ours.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-7, "{ours:?} != {expected:?}");
        }
    }
}
