//! The run report's shape, kept here until the report module lands; the
//! coordinator fills it and writes `report.json` and `manifest.toml`.
//!
//! NOTE: this mirrors `crate::report`'s `RunReport` field for field and is
//! replaced by it, with `write_run_folder`, once that module is merged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::launch::manifest::Manifest;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: String,
    pub manifest: Manifest,
    pub class_names: Vec<String>,
    pub sites: Vec<SiteReport>,
    pub phases: Vec<PhaseTiming>,
    pub final_classifier: Option<serde_json::Value>,
    pub centralised: Option<serde_json::Value>,
    pub agreement: Option<f64>,
    pub pooled_label_histogram: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    Failed { reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    pub site_id: String,
    pub shard_index: u32,
    pub status: SiteStatus,
    pub real_label_histogram: Vec<u64>,
    pub synthetic_label_histogram: Vec<u64>,
    pub images_received: u64,
    pub images_dropped_by_audit: u64,
    pub bytes_received: u64,
    pub audit: Option<serde_json::Value>,
    pub epochs: Vec<EpochRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SiteStatus {
    Completed,
    Dropped { reason: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub name: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub phase: String,
    pub epoch: usize,
    pub epochs: usize,
    pub losses: Vec<(String, f64)>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// Returns the current time as RFC 3339 UTC with whole seconds.
pub fn utc_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `report.json` and `manifest.toml` into `dir`, atomically.
pub fn write_run_folder(
    dir: &Path,
    report: &RunReport,
    _samples: &[(u32, Vec<u8>)],
) -> std::io::Result<()> {
    fsutil::write_json_atomic(&dir.join("report.json"), report)?;
    fsutil::write_atomic(
        &dir.join("manifest.toml"),
        report.manifest.to_toml().as_bytes(),
    )
}
