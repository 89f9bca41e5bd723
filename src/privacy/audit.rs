//! The privacy audit of a set of synthetic images against the training
//! images they were generated from, with held-out real images as the
//! baseline of what an unseen image looks like.
//!
//! [`run_audit`] returns the full [`AuditReport`], which stays where the
//! training data is (it names training indices). Only its [`AuditSummary`],
//! aggregate numbers and thresholds, is meant to be sent elsewhere.
//!
//! An image is flagged as a likely copy when its nearest-neighbour ratio is
//! below `nn_ratio_threshold` or its distance to the closest record is
//! below `near_duplicate_distance` (or 0).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use super::features::FeatureSpace;
use super::features::{self, FeatureError, Features};
use super::stats::{self, CellDistances, CopyingTest, DcrStats, Duplicates};
use super::{kmeans, nan_serde};
use crate::data::cifar::{IMAGE_BYTES, ImageSet};
use crate::imaging::{self, ImagingError};

/// Settings of one audit. Distances are L2 in the units of the feature space
/// (pixels in [0, 1] for [`FeatureSpace::Pixels`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// Neighbours in the nearest-neighbour ratio.
    pub k: usize,
    /// Ratios below this flag an image; see [`super::stats`] for how the
    /// default was chosen.
    pub nn_ratio_threshold: f64,
    /// Distances to the closest record below this count as near
    /// duplicates and flag the image. The default 1.0 in pixel space is a
    /// root-mean-square difference of about 4.6 of 255 levels per value.
    pub near_duplicate_distance: f64,
    pub features: FeatureSpace,
    /// Closest synthetic-training pairs kept for the report and picture.
    pub max_pairs: usize,
    /// k-means cells of the data-copying test.
    pub copying_cells: usize,
    /// Cells with fewer synthetic images are left out of C_T.
    pub min_synthetic_per_cell: usize,
    /// Training images k-means is fitted on (a seeded sample when more).
    pub kmeans_sample: usize,
    pub kmeans_iterations: usize,
    /// Seed of the k-means sample and seeding.
    pub seed: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            k: 50,
            nn_ratio_threshold: DEFAULT_NN_RATIO_THRESHOLD,
            near_duplicate_distance: 1.0,
            features: FeatureSpace::Pixels,
            max_pairs: 16,
            copying_cells: 10,
            min_synthetic_per_cell: 20,
            kmeans_sample: 10_000,
            kmeans_iterations: 10,
            seed: 0,
        }
    }
}

/// Default nearest-neighbour ratio threshold; see [`super::stats`].
pub const DEFAULT_NN_RATIO_THRESHOLD: f64 = 0.5;

impl AuditConfig {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), AuditError> {
        let invalid = |message: String| Err(AuditError::InvalidConfig(message));
        if self.k == 0 {
            return invalid("k is 0; the nearest-neighbour ratio needs k >= 1".into());
        }
        if !(self.nn_ratio_threshold > 0.0 && self.nn_ratio_threshold <= 1.0) {
            return invalid(format!(
                "nn_ratio_threshold {} is outside (0, 1]; a ratio never exceeds 1",
                self.nn_ratio_threshold
            ));
        }
        if !(self.near_duplicate_distance >= 0.0 && self.near_duplicate_distance.is_finite()) {
            return invalid(format!(
                "near_duplicate_distance {} must be a finite distance >= 0",
                self.near_duplicate_distance
            ));
        }
        Ok(())
    }
}

/// Errors of the audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("invalid audit config: {0}")]
    InvalidConfig(String),
    #[error(
        "synthetic images: {0} bytes is not a whole number of {IMAGE_BYTES}-byte 32x32 RGB images"
    )]
    SyntheticSize(usize),
    #[error("the training set is empty; the audit needs training images to compare against")]
    EmptyTrain,
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to draw {path}: {source}")]
    Picture { path: PathBuf, source: ImagingError },
}

/// Nearest-neighbour ratios of synthetic and held-out images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RatioStats {
    pub threshold: f64,
    #[serde(with = "nan_serde::number")]
    pub synthetic_median: f64,
    #[serde(with = "nan_serde::number")]
    pub holdout_median: f64,
    /// Synthetic images below the threshold.
    pub synthetic_below: usize,
    /// Share of held-out real images below the threshold: the test's
    /// false-positive rate on this data.
    #[serde(with = "nan_serde::number")]
    pub holdout_false_positive_rate: f64,
}

/// A synthetic image and its nearest training record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClosestPair {
    pub synthetic: usize,
    pub train: usize,
    pub distance: f32,
}

/// Per synthetic image: its nearest record and the statistics on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticRecord {
    pub nearest_train: usize,
    pub dcr: f32,
    #[serde(with = "nan_serde::number")]
    pub nn_ratio: f64,
    pub flagged: bool,
}

/// Everything the audit found. Names training indices, so it stays local.
#[derive(Clone, Debug, Serialize)]
pub struct AuditReport {
    pub config: AuditConfig,
    pub synthetic_count: usize,
    pub train_count: usize,
    pub holdout_count: usize,
    /// Neighbours used, equal to `config.k`: the requested k, or the
    /// training count when that is smaller.
    pub k: usize,
    pub dcr: DcrStats,
    pub nn_ratio: RatioStats,
    pub copying: CopyingTest,
    pub duplicates: Duplicates,
    /// Indices into the synthetic images of those flagged as likely copies.
    pub flagged: Vec<usize>,
    /// The `max_pairs` synthetic images closest to a training record.
    pub closest_pairs: Vec<ClosestPair>,
    pub synthetic: Vec<SyntheticRecord>,
    /// DCR of each held-out image, for the histogram.
    #[serde(skip)]
    pub holdout_dcr: Vec<f64>,
    pub seconds: f64,
}

/// The aggregate numbers of an audit, safe to send off the site: counts,
/// medians, percentiles, C_T and thresholds, and no image, per-record
/// distance or training index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// `pixels` or `classifier`.
    pub feature_space: String,
    pub synthetic_count: usize,
    pub train_count: usize,
    pub holdout_count: usize,
    pub k: usize,
    pub nn_ratio_threshold: f64,
    pub near_duplicate_distance: f64,
    pub flagged_count: usize,
    #[serde(with = "nan_serde::number")]
    pub flagged_share: f64,
    pub dcr: DcrStats,
    #[serde(with = "nan_serde::number")]
    pub synthetic_nn_ratio_median: f64,
    #[serde(with = "nan_serde::number")]
    pub holdout_nn_ratio_median: f64,
    #[serde(with = "nan_serde::number")]
    pub holdout_false_positive_rate: f64,
    /// Data-copying statistic; negative means copying.
    #[serde(with = "nan_serde::number")]
    pub c_t: f64,
    pub copying_cells: usize,
    pub copying_cells_used: usize,
    pub exact_duplicates: usize,
    pub near_duplicates: usize,
    pub seconds: f64,
}

/// Audits `synthetic` (CHW bytes) against `train`, with `holdout` as the
/// baseline of unseen real images. `device` runs the classifier of
/// [`FeatureSpace::Classifier`].
///
/// An empty synthetic or holdout set gives NaN statistics and no flag; an
/// empty training set is an error.
pub fn run_audit(
    synthetic: &[u8],
    train: &ImageSet,
    holdout: &ImageSet,
    config: &AuditConfig,
    device: &Device,
) -> Result<AuditReport, AuditError> {
    config.validate()?;
    if !synthetic.len().is_multiple_of(IMAGE_BYTES) {
        return Err(AuditError::SyntheticSize(synthetic.len()));
    }
    if train.is_empty() {
        return Err(AuditError::EmptyTrain);
    }
    let config = &effective_config(config, train.len());
    let started = Instant::now();
    let synthetic_count = synthetic.len() / IMAGE_BYTES;
    tracing::info!(
        synthetic = synthetic_count,
        train = train.len(),
        holdout = holdout.len(),
        features = config.features.name(),
        "audit started"
    );
    let features = features::compute(
        &config.features,
        synthetic,
        &train.images,
        &holdout.images,
        device,
    )?;

    // Nearest training records of every synthetic and held-out image.
    let synthetic_neighbours = features.train.search(&features.synthetic, config.k);
    let holdout_neighbours = features.train.search(&features.holdout, config.k);
    let k = config.k;
    let synthetic_dcr = widen(&synthetic_neighbours.nearest_distances());
    let holdout_dcr = widen(&holdout_neighbours.nearest_distances());
    let synthetic_ratio = stats::nn_ratios(&synthetic_neighbours.distances, k);
    let holdout_ratio = stats::nn_ratios(&holdout_neighbours.distances, k);

    // Statistics over the two distance samples.
    let threshold = config.nn_ratio_threshold;
    let nn_ratio = RatioStats {
        threshold,
        synthetic_median: stats::median(&synthetic_ratio),
        holdout_median: stats::median(&holdout_ratio),
        synthetic_below: synthetic_ratio.iter().filter(|&&r| r < threshold).count(),
        holdout_false_positive_rate: stats::share_below(&holdout_ratio, threshold),
    };
    let dcr = stats::dcr_stats(&synthetic_dcr, &holdout_dcr);
    let duplicates = stats::duplicates(&synthetic_dcr, config.near_duplicate_distance);
    let copying = copying_test(&features, config);

    // Per-image flags and the closest pairs.
    let synthetic_records: Vec<SyntheticRecord> = (0..synthetic_count)
        .map(|i| {
            let dcr = synthetic_neighbours.distances_of(i)[0];
            let ratio = synthetic_ratio[i];
            let near = f64::from(dcr) < config.near_duplicate_distance || dcr == 0.0;
            SyntheticRecord {
                nearest_train: synthetic_neighbours.indices_of(i)[0] as usize,
                dcr,
                nn_ratio: ratio,
                flagged: ratio < threshold || near,
            }
        })
        .collect();
    let flagged: Vec<usize> = (0..synthetic_count)
        .filter(|&i| synthetic_records[i].flagged)
        .collect();
    let closest_pairs = closest_pairs(&synthetic_records, config.max_pairs);

    let report = AuditReport {
        config: config.clone(),
        synthetic_count,
        train_count: train.len(),
        holdout_count: holdout.len(),
        k,
        dcr,
        nn_ratio,
        copying,
        duplicates,
        flagged,
        closest_pairs,
        synthetic: synthetic_records,
        holdout_dcr,
        seconds: started.elapsed().as_secs_f64(),
    };
    tracing::info!(
        flagged = report.flagged.len(),
        synthetic = synthetic_count,
        dcr_median = report.dcr.synthetic_median,
        holdout_dcr_median = report.dcr.holdout_median,
        c_t = report.copying.c_t,
        seconds = report.seconds,
        "audit finished"
    );
    Ok(report)
}

/// Returns `config` with `k` cut to the `train_count` training images, so
/// the report contains the one k that was used. A cut is logged at warn.
fn effective_config(config: &AuditConfig, train_count: usize) -> AuditConfig {
    let mut config = config.clone();
    if config.k > train_count {
        tracing::warn!(
            requested = config.k,
            used = train_count,
            "audit k {} is more than the {train_count} training images; using k = {train_count}",
            config.k
        );
        config.k = train_count;
    }
    config
}

impl AuditReport {
    /// Returns the aggregate numbers of this report.
    pub fn summary(&self) -> AuditSummary {
        let flagged_share = if self.synthetic_count == 0 {
            f64::NAN
        } else {
            self.flagged.len() as f64 / self.synthetic_count as f64
        };
        AuditSummary {
            feature_space: self.config.features.name().to_string(),
            synthetic_count: self.synthetic_count,
            train_count: self.train_count,
            holdout_count: self.holdout_count,
            k: self.k,
            nn_ratio_threshold: self.config.nn_ratio_threshold,
            near_duplicate_distance: self.config.near_duplicate_distance,
            flagged_count: self.flagged.len(),
            flagged_share,
            dcr: self.dcr.clone(),
            synthetic_nn_ratio_median: self.nn_ratio.synthetic_median,
            holdout_nn_ratio_median: self.nn_ratio.holdout_median,
            holdout_false_positive_rate: self.nn_ratio.holdout_false_positive_rate,
            c_t: self.copying.c_t,
            copying_cells: self.copying.cells,
            copying_cells_used: self.copying.cells_used,
            exact_duplicates: self.duplicates.exact,
            near_duplicates: self.duplicates.near,
            seconds: self.seconds,
        }
    }

    /// Writes `audit.json`, `closest_pairs.png` (each synthetic image beside
    /// its nearest training image) and `dcr_histogram.png` into `out_dir`,
    /// each atomically. `synthetic` and `train` are the audited images. A
    /// picture with nothing to draw (no synthetic image) is not written.
    pub fn write_outputs(
        &self,
        synthetic: &[u8],
        train: &ImageSet,
        out_dir: &Path,
    ) -> Result<(), AuditError> {
        let json = out_dir.join("audit.json");
        crate::fsutil::write_json_atomic(&json, self)
            .map_err(|source| AuditError::Write { path: json, source })?;

        self.write_pairs(synthetic, train, &out_dir.join("closest_pairs.png"))?;
        self.write_histogram(&out_dir.join("dcr_histogram.png"))
    }

    /// Draws each closest pair; skipped when there is no synthetic image.
    fn write_pairs(
        &self,
        synthetic: &[u8],
        train: &ImageSet,
        path: &Path,
    ) -> Result<(), AuditError> {
        if self.closest_pairs.is_empty() {
            tracing::info!(path = %path.display(), "no synthetic image, so no pairs picture");
            return Ok(());
        }
        let mut left = Vec::with_capacity(self.closest_pairs.len() * IMAGE_BYTES);
        let mut right = Vec::with_capacity(self.closest_pairs.len() * IMAGE_BYTES);
        let mut captions = Vec::with_capacity(self.closest_pairs.len());
        for pair in &self.closest_pairs {
            left.extend_from_slice(&synthetic[pair.synthetic * IMAGE_BYTES..][..IMAGE_BYTES]);
            right.extend_from_slice(train.image(pair.train));
            captions.push(format!(
                "synthetic {} / train {}: L2 {:.3}",
                pair.synthetic, pair.train, pair.distance
            ));
        }
        imaging::write_pairs_png(&left, &right, &captions, path).map_err(|source| {
            AuditError::Picture {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Draws both DCR distributions, leaving out non-finite values and empty
    /// series; skipped when both are empty.
    fn write_histogram(&self, path: &Path) -> Result<(), AuditError> {
        let finite = |values: &mut dyn Iterator<Item = f64>| -> Vec<f64> {
            values.filter(|v| v.is_finite()).collect()
        };
        let synthetic = finite(&mut self.synthetic.iter().map(|r| f64::from(r.dcr)));
        let holdout = finite(&mut self.holdout_dcr.iter().copied());
        let series: Vec<(&str, Vec<f64>)> = [("synthetic", synthetic), ("holdout", holdout)]
            .into_iter()
            .filter(|(_, values)| !values.is_empty())
            .collect();
        if series.is_empty() {
            tracing::info!(path = %path.display(), "no finite distance, so no histogram");
            return Ok(());
        }
        let title = "distance to closest training record";
        imaging::write_histogram_png(title, &series, 40, path).map_err(|source| {
            AuditError::Picture {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Runs the data-copying test in k-means cells of the training features.
fn copying_test(features: &Features, config: &AuditConfig) -> CopyingTest {
    let train_count = features.train.records();
    let sample = sample_indices(train_count, config.kmeans_sample, config.seed);
    let model = kmeans::fit(
        &features.train.originals(&sample),
        features.dim,
        config.copying_cells,
        config.kmeans_iterations,
        config.seed,
    );

    // Assign training records in chunks, so the pixel rows never all exist at once.
    let mut train_cells = Vec::with_capacity(train_count);
    let all: Vec<usize> = (0..train_count).collect();
    for chunk in all.chunks(4096) {
        train_cells.extend(model.assign(&features.train.originals(chunk)));
    }
    let synthetic_cells = model.assign(&features.synthetic);
    let holdout_cells = model.assign(&features.holdout);

    let dim = features.dim;
    let cells: Vec<CellDistances> = (0..model.cells())
        .map(|cell| {
            let members: Vec<usize> = (0..train_count)
                .filter(|&i| train_cells[i] == cell)
                .collect();
            let cell_train = features.train.subset(&members);
            let nearest = |rows: &[f32], assigned: &[usize]| -> Vec<f64> {
                let picked = pick_rows(rows, dim, assigned, cell);
                widen(&cell_train.search(&picked, 1).nearest_distances())
            };
            CellDistances {
                synthetic: nearest(&features.synthetic, &synthetic_cells),
                holdout: nearest(&features.holdout, &holdout_cells),
            }
        })
        .collect();
    stats::copying_test(&cells, config.min_synthetic_per_cell)
}

/// Returns the rows of `rows` whose entry in `assigned` is `cell`.
fn pick_rows(rows: &[f32], dim: usize, assigned: &[usize], cell: usize) -> Vec<f32> {
    rows.chunks_exact(dim)
        .zip(assigned)
        .filter(|(_, c)| **c == cell)
        .flat_map(|(row, _)| row.iter().copied())
        .collect()
}

/// Returns `count.min(limit)` indices in `0..count`: all of them, or a
/// seeded sample in ascending order.
fn sample_indices(count: usize, limit: usize, seed: u64) -> Vec<usize> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut indices: Vec<usize> = (0..count).collect();
    if count > limit {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        indices.shuffle(&mut rng);
        indices.truncate(limit);
        indices.sort_unstable();
    }
    indices
}

fn closest_pairs(records: &[SyntheticRecord], max_pairs: usize) -> Vec<ClosestPair> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| records[a].dcr.total_cmp(&records[b].dcr).then(a.cmp(&b)));
    order
        .into_iter()
        .take(max_pairs)
        .map(|i| ClosestPair {
            synthetic: i,
            train: records[i].nearest_train,
            distance: records[i].dcr,
        })
        .collect()
}

fn widen(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(values: &[u8]) -> ImageSet {
        let mut set = ImageSet::default();
        for &value in values {
            set.images.extend(vec![value; IMAGE_BYTES]);
            set.labels.push(0);
        }
        set
    }

    fn audit(synthetic: &[u8], train: &ImageSet, holdout: &ImageSet) -> AuditReport {
        run_audit(
            synthetic,
            train,
            holdout,
            &AuditConfig::default(),
            &Device::flex(),
        )
        .unwrap()
    }

    #[test]
    fn rejects_partial_synthetic_image() {
        let err = run_audit(
            &[0u8; 100],
            &images(&[1]),
            &images(&[2]),
            &AuditConfig::default(),
            &Device::flex(),
        )
        .unwrap_err();
        assert!(matches!(err, AuditError::SyntheticSize(100)), "{err}");
    }

    #[test]
    fn rejects_empty_training_set() {
        let err = run_audit(
            &[],
            &ImageSet::default(),
            &images(&[2]),
            &AuditConfig::default(),
            &Device::flex(),
        )
        .unwrap_err();
        assert!(matches!(err, AuditError::EmptyTrain), "{err}");
    }

    #[test]
    fn rejects_zero_k() {
        let config = AuditConfig {
            k: 0,
            ..AuditConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("k is 0"), "{err}");
    }

    #[test]
    fn rejects_threshold_above_one() {
        let config = AuditConfig {
            nn_ratio_threshold: 1.5,
            ..AuditConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn empty_synthetic_set_gives_nan_statistics() {
        let report = audit(&[], &images(&[10, 20, 30]), &images(&[40]));
        assert!(report.flagged.is_empty());
        assert!(report.dcr.synthetic_median.is_nan());
        assert!(report.copying.c_t.is_nan());
        assert!(report.summary().flagged_share.is_nan());
    }

    #[test]
    fn empty_holdout_gives_nan_baseline() {
        let synthetic = images(&[10]).images;
        let report = audit(&synthetic, &images(&[10, 20]), &ImageSet::default());
        assert!(report.dcr.holdout_p5.is_nan());
        assert!(report.nn_ratio.holdout_false_positive_rate.is_nan());
        assert_eq!(report.flagged, vec![0]);
    }

    #[test]
    fn identical_images_are_exact_duplicates() {
        let all = images(&[7, 7, 7, 7]);
        let report = audit(&all.images, &all, &all);
        assert_eq!(report.duplicates.exact, 4);
        assert!(report.synthetic[0].nn_ratio.is_nan());
        assert_eq!(report.flagged, vec![0, 1, 2, 3]);
    }

    #[test]
    fn fewer_training_images_than_k_caps_k() {
        let report = audit(&images(&[5]).images, &images(&[0, 50, 100]), &images(&[60]));
        assert_eq!(report.k, 3);
        assert_eq!(report.synthetic[0].nearest_train, 0);
    }

    #[test]
    fn capped_k_is_one_value_in_json() {
        let report = audit(&images(&[5]).images, &images(&[0, 50, 100]), &images(&[60]));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["k"], 3);
        assert_eq!(json["config"]["k"], 3);
        assert_eq!(report.summary().k, 3);
    }

    #[test]
    fn summary_of_empty_audit_round_trips() {
        let summary = audit(&[], &images(&[1]), &ImageSet::default()).summary();
        let json = serde_json::to_string(&summary).unwrap();
        let back: AuditSummary = serde_json::from_str(&json).unwrap();
        assert!(back.c_t.is_nan());
        assert_eq!(back.train_count, 1);
    }

    #[test]
    fn write_outputs_of_empty_audit_writes_only_json() {
        let report = audit(&[], &images(&[1]), &ImageSet::default());
        let dir = tempfile::tempdir().unwrap();
        report
            .write_outputs(&[], &images(&[1]), dir.path())
            .unwrap();
        assert!(dir.path().join("audit.json").is_file());
        assert!(!dir.path().join("closest_pairs.png").exists());
        assert!(!dir.path().join("dcr_histogram.png").exists());
    }
}
