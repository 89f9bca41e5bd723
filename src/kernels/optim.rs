//! Fused optimizer updates: one parallel pass over each parameter and its
//! state, where the update as tensor ops takes ten passes on one thread.

use rayon::prelude::*;

/// Values per rayon task.
const CHUNK: usize = 1 << 14;

/// The scalars of one Adamax update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// Learning rate over the first moment's bias correction.
    pub step_size: f32,
}

/// Applies one Adamax update in place: the first moment and the infinity
/// norm take `grad` in, and `param` moves by `step_size * moment / (norm +
/// epsilon)`. A first step starts from a zero moment and norm.
pub fn adamax(
    param: &mut [f32],
    grad: &[f32],
    moment: &mut [f32],
    norm: &mut [f32],
    step: AdamaxStep,
) {
    assert_eq!(param.len(), grad.len(), "Adamax gradient size");
    assert_eq!(param.len(), moment.len(), "Adamax moment size");
    assert_eq!(param.len(), norm.len(), "Adamax norm size");
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(moment.par_chunks_mut(CHUNK))
        .zip(norm.par_chunks_mut(CHUNK))
        .for_each(|(((param, grad), moment), norm)| adamax_chunk(param, grad, moment, norm, step));
}

/// Runs `adamax` on one chunk, in the order of operations of the
/// element-wise version so that both give the same values.
#[multiversion::multiversion(targets = "simd")]
fn adamax_chunk(
    param: &mut [f32],
    grad: &[f32],
    moment: &mut [f32],
    norm: &mut [f32],
    step: AdamaxStep,
) {
    let values = param.iter_mut().zip(grad).zip(moment).zip(norm);
    for (((p, &g), m), u) in values {
        *m = *m * step.beta_1 + g * (1.0 - step.beta_1);
        *u = (*u * step.beta_2).max(g.abs());
        *p -= *m / (*u + step.epsilon) * step.step_size;
    }
}
