//! The run folder of one federated run: `report.json` (machine-readable),
//! `report.md` (for a person), the manifest that produced the run, and its
//! pictures. The coordinator fills a [`RunReport`] and calls
//! [`write_run_folder`]; the launcher later adds the centralised baseline
//! with [`add_centralised_baseline`]. Checkpoints and synthetic sets are
//! written by their owners, not here.

mod markdown;
mod pictures;
mod stats;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::launch::manifest::Manifest;

pub use crate::privacy::audit::AuditSummary;
pub use crate::training::infer::Evaluation;
pub use markdown::render_markdown;
pub use stats::{ClassBalance, agreement, argmax_histogram, label_histogram};

/// File names inside a run folder.
pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const MANIFEST_TOML: &str = "manifest.toml";

/// Errors while writing or reading a run folder.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "failed to read {path}: {source}; is this a run folder written by `fedsynth coordinator`?"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid run report {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("failed to draw {path}: {message}")]
    Picture { path: PathBuf, message: String },
    #[error("no samples for shard {shard}: {len} bytes is not a whole number of 3072-byte images")]
    Samples { shard: u32, len: usize },
}

/// Everything known about one run, as stored in `report.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    /// RFC 3339 UTC, as written by [`utc_now`].
    pub started_at: String,
    pub finished_at: String,
    pub manifest: Manifest,
    pub class_names: Vec<String>,
    pub sites: Vec<SiteReport>,
    pub phases: Vec<PhaseTiming>,
    /// c', trained on the pooled synthetic images, on the real test split.
    pub final_classifier: Option<Evaluation>,
    /// c, trained on the union of the real shards, on the same test split.
    pub centralised: Option<Evaluation>,
    /// Share of test images on which c and c' predict the same class.
    pub agreement: Option<f64>,
    /// Classes of the pooled synthetic images (argmax of their soft labels).
    pub pooled_label_histogram: Vec<u64>,
}

/// The outcome of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunStatus {
    Completed,
    Failed {
        reason: String,
    },
    /// Stopped by Ctrl-C (SIGINT) or SIGTERM before the run reached an outcome.
    Interrupted {
        reason: String,
    },
}

/// One site's part in the run, as seen by the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteReport {
    pub site_id: String,
    pub shard_index: u32,
    pub status: SiteStatus,
    /// Classes of the site's real training shard, as it reported them.
    pub real_label_histogram: Vec<u64>,
    /// Classes of the synthetic images received (argmax of the soft labels).
    pub synthetic_label_histogram: Vec<u64>,
    pub images_received: u64,
    pub images_dropped_by_audit: u64,
    pub bytes_received: u64,
    /// Aggregate statistics of the site's privacy audit, with no per-image data.
    pub audit: Option<AuditSummary>,
    /// Progress reports received, in order, drawn as loss curves.
    pub epochs: Vec<EpochRecord>,
}

/// The outcome of one site: stayed to the end, or dropped with a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SiteStatus {
    Completed,
    Dropped { reason: String },
}

/// Wall time of one phase of the run (join, train, upload, final, ...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub name: String,
    pub seconds: f64,
}

/// One epoch summary that a site reported while training.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The model trained: `gan` or `classifier`.
    pub phase: String,
    /// 1-based epoch number.
    pub epoch: usize,
    pub epochs: usize,
    /// Named mean losses of the epoch, e.g. `("d_loss", 0.61)`.
    pub losses: Vec<(String, f64)>,
    pub seconds: f64,
    pub images_per_second: f64,
}

impl SiteReport {
    /// Creates the report of a site that has joined and sent nothing yet.
    pub fn new(site_id: impl Into<String>, shard_index: u32) -> SiteReport {
        SiteReport {
            site_id: site_id.into(),
            shard_index,
            status: SiteStatus::Completed,
            real_label_histogram: Vec::new(),
            synthetic_label_histogram: Vec::new(),
            images_received: 0,
            images_dropped_by_audit: 0,
            bytes_received: 0,
            audit: None,
            epochs: Vec::new(),
        }
    }
}

impl RunReport {
    /// Seconds between `started_at` and `finished_at`, when both parse.
    pub fn wall_seconds(&self) -> Option<f64> {
        let start = chrono::DateTime::parse_from_rfc3339(&self.started_at).ok()?;
        let end = chrono::DateTime::parse_from_rfc3339(&self.finished_at).ok()?;
        Some((end - start).num_milliseconds() as f64 / 1000.0)
    }

    /// Sites that stayed to the end.
    pub fn completed_sites(&self) -> usize {
        self.sites
            .iter()
            .filter(|site| site.status == SiteStatus::Completed)
            .count()
    }
}

/// Returns the current time as RFC 3339 UTC with whole seconds.
pub fn utc_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes the run folder `dir`: `report.json`, `report.md`, `manifest.toml`,
/// `samples/site-<shard>.png` for each entry of `samples` (CHW image bytes),
/// `confusion.png`, `label_histograms.png` and `losses.png`.
///
/// Every file is written atomically. The text files come first, so a
/// failure while drawing leaves a readable report behind.
pub fn write_run_folder(
    dir: &Path,
    report: &RunReport,
    samples: &[(u32, Vec<u8>)],
) -> Result<(), ReportError> {
    write_text_files(dir, report)?;
    for (shard, images) in samples {
        let path = dir.join("samples").join(format!("site-{shard}.png"));
        pictures::write_samples(*shard, images, &path)?;
    }
    pictures::write_charts(dir, report)?;
    tracing::info!(dir = %dir.display(), "wrote run folder");
    Ok(())
}

/// Reads `report.json` from a run folder.
pub fn read_report(dir: &Path) -> Result<RunReport, ReportError> {
    let path = dir.join(REPORT_JSON);
    let bytes = std::fs::read(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ReportError::Parse { path, source })
}

/// Adds the centralised classifier c and its agreement with c' to the run
/// folder `dir`, and rewrites `report.json`, `report.md` and the charts.
/// The run now finishes with c, so `finished_at` moves to the present.
pub fn add_centralised_baseline(
    dir: &Path,
    centralised: Evaluation,
    agreement: f64,
    seconds: f64,
) -> Result<RunReport, ReportError> {
    let mut report = read_report(dir)?;
    report.centralised = Some(centralised);
    report.agreement = Some(agreement);
    report.phases.push(PhaseTiming {
        name: "centralised_baseline".into(),
        seconds,
    });
    report.finished_at = utc_now();
    write_text_files(dir, &report)?;
    pictures::write_charts(dir, &report)?;
    Ok(report)
}

fn write_text_files(dir: &Path, report: &RunReport) -> Result<(), ReportError> {
    write(&dir.join(REPORT_JSON), |path| {
        fsutil::write_json_atomic(path, report)
    })?;
    write(&dir.join(REPORT_MD), |path| {
        fsutil::write_atomic(path, render_markdown(report).as_bytes())
    })?;
    write(&dir.join(MANIFEST_TOML), |path| {
        fsutil::write_atomic(path, report.manifest.to_toml().as_bytes())
    })
}

fn write(path: &Path, f: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<(), ReportError> {
    f(path).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
