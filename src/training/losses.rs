//! The two training losses, written on logits so they stay finite however
//! confident the model is.

use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;

/// Mean binary cross-entropy of sigmoid(`logits`) against a constant
/// `target` (1 for real, 0 for fake), via the stable form
/// max(x, 0) - x * y + ln(1 + exp(-|x|)).
pub fn bce_with_logits(logits: Tensor<2>, target: f32) -> Tensor<1> {
    let positive = logits.clone().clamp_min(0.0);
    let softplus = logits.clone().abs().neg().exp().log1p();
    (positive - logits.mul_scalar(target) + softplus).mean()
}

/// Mean cross-entropy of softmax(`logits`) against probability rows `targets`.
///
/// # Shapes
///
/// - `logits`, `targets`: `[batch, classes]`
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let per_class = log_softmax(logits, 1).mul(targets);
    per_class.sum().neg().div_scalar(batch as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn scalar(t: Tensor<1>) -> f32 {
        t.into_scalar()
    }

    #[test]
    fn bce_matches_definition() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0], [2, 1]), &device);
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let expected = -((sigmoid(0.5)).ln() + (sigmoid(-1.0)).ln()) / 2.0;
        assert!((scalar(bce_with_logits(logits, 1.0)) - expected).abs() < 1e-6);
    }

    #[test]
    fn bce_is_finite_for_huge_logits() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![1e4f32, -1e4], [2, 1]), &device);
        let loss = scalar(bce_with_logits(logits, 0.0));
        assert!(loss.is_finite());
        assert!((loss - 5e3).abs() < 1.0);
    }

    #[test]
    fn soft_cross_entropy_of_one_hot_target() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0], [1, 2]), &device);
        let targets = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
        let expected = -(2f32.exp() / (2f32.exp() + 1.0)).ln();
        assert!((scalar(soft_cross_entropy(logits, targets)) - expected).abs() < 1e-6);
    }
}
