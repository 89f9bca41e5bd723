//! Stand-ins for two types that other modules are still writing: the
//! classifier evaluation (from `training::infer`) and the audit summary
//! (from `privacy::audit`). Their serialised shape matches the real types,
//! so report files stay readable when the real types replace these.

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

// TODO: re-export `crate::privacy::audit::AuditSummary` once privacy lands.
/// The aggregate statistics of one site's privacy audit.
pub type AuditSummary = serde_json::Value;
