//! Fused optimizer updates: one parallel pass over each parameter and its
//! state, where the update as tensor ops takes ten passes on one thread.

use rayon::prelude::*;

/// Values per rayon task.
const CHUNK: usize = 1 << 14;

/// One update rule with its scalars for the current step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Update {
    Adam(AdamStep),
    Adamax(AdamaxStep),
}

/// The scalars of one Adam update, as burn's `Adam` computes it without
/// weight decay or AMSGrad.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub beta_1: f32,
    pub beta_2: f32,
    /// Epsilon times the square root of the second moment's bias correction.
    pub epsilon: f32,
    /// Square root of the second moment's bias correction over the first's.
    pub scale: f32,
    pub learning_rate: f32,
}

/// The scalars of one Adamax update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxStep {
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// Learning rate over the first moment's bias correction.
    pub step_size: f32,
}

/// Applies one update in place to `param` and its two state buffers (Adam:
/// first and second moment, Adamax: first moment and infinity norm). A
/// first step starts from zero state.
pub fn update(
    param: &mut [f32],
    grad: &[f32],
    first: &mut [f32],
    second: &mut [f32],
    rule: Update,
) {
    assert_eq!(param.len(), grad.len(), "optimizer gradient size");
    assert_eq!(param.len(), first.len(), "optimizer state size");
    assert_eq!(param.len(), second.len(), "optimizer state size");
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(first.par_chunks_mut(CHUNK))
        .zip(second.par_chunks_mut(CHUNK))
        .for_each(|(((param, grad), first), second)| match rule {
            Update::Adam(step) => adam_chunk(param, grad, first, second, step),
            Update::Adamax(step) => adamax_chunk(param, grad, first, second, step),
        });
}

/// Runs Adam on one chunk, in the order of operations of burn's `Adam` so
/// that both give the same values.
#[multiversion::multiversion(targets = "simd")]
fn adam_chunk(
    param: &mut [f32],
    grad: &[f32],
    moment: &mut [f32],
    second: &mut [f32],
    step: AdamStep,
) {
    let values = param.iter_mut().zip(grad).zip(moment).zip(second);
    for (((p, &g), m), v) in values {
        *m = *m * step.beta_1 + g * (1.0 - step.beta_1);
        *v = *v * step.beta_2 + g * g * (1.0 - step.beta_2);
        *p -= *m * step.scale / (v.sqrt() + step.epsilon) * step.learning_rate;
    }
}

/// Runs Adamax on one chunk, in the order of operations of the tensor-op
/// version so that both give the same values.
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
