//! A stand-in for the classifier evaluation of `training::infer`, which is
//! still being written. Its serialised shape matches the real type, so
//! report files stay readable when the real type replaces it.

use serde::{Deserialize, Serialize};

// TODO: re-export `crate::training::infer::Evaluation` once training lands.
/// A classifier's scores on a labelled test set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub accuracy: f64,
    pub per_class_accuracy: Vec<f64>,
    /// Counts indexed `[true class][predicted class]`.
    pub confusion: Vec<Vec<u64>>,
    pub count: usize,
}
