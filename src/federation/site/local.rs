//! A site's local work, run on a blocking thread: load its shard, train
//! the DCGAN and c_k, sample and label synthetic images, audit them against
//! the shard and keep only those the release gate passes.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::{CLASS_COUNT, Cifar10, IMAGE_BYTES};
use crate::federation::pb;
use crate::federation::plan::{self, SiteData};
use crate::launch::manifest::Manifest;

/// One epoch summary, as a site reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochUpdate {
    pub epoch: usize,
    pub epochs: usize,
    pub losses: Vec<(String, f64)>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// What the local work reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Phase(pb::SitePhase),
    Epoch(pb::SitePhase, EpochUpdate),
}

/// The synthetic set a site releases, and the aggregates it reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Release {
    /// Generated images that passed the release gate, CIFAR-10 planes.
    pub images: Vec<u8>,
    /// c_k's soft labels of `images`, `CLASS_COUNT` per image.
    pub probabilities: Vec<f32>,
    /// Images sampled before the release gate.
    pub images_sampled: usize,
    /// Images the release gate withheld.
    pub images_dropped: usize,
    /// The audit summary as JSON, empty when the audit is disabled.
    pub audit_summary_json: String,
    /// Real training images per class in the shard.
    pub real_label_histogram: Vec<u64>,
}

impl Release {
    pub fn image_count(&self) -> usize {
        self.images.len() / IMAGE_BYTES
    }
}

/// Where a site finds its data and keeps its files.
#[derive(Clone, Debug)]
pub struct LocalPaths {
    pub data_dir: PathBuf,
    pub work_dir: PathBuf,
}

/// Loads the site's shard from the CIFAR-10 training split.
pub fn load_shard(
    data_dir: &Path,
    manifest: &Manifest,
    shard_index: usize,
) -> anyhow::Result<SiteData> {
    let cifar = Cifar10::load(data_dir).context("failed to load CIFAR-10 for the site's shard")?;
    let shard = plan::site_data(&cifar.train, manifest, shard_index)?;
    tracing::info!(
        shard = shard_index,
        train = shard.train.len(),
        holdout = shard.holdout.len(),
        "loaded shard"
    );
    Ok(shard)
}

/// Counts the shard's training images per class.
pub fn real_histogram(shard: &SiteData) -> Vec<u64> {
    let counts = shard.train.class_histogram();
    counts.iter().map(|&c| c as u64).collect::<Vec<_>>()[..CLASS_COUNT].to_vec()
}

/// Runs the whole local work and returns the release.
pub fn prepare_release(
    paths: &LocalPaths,
    manifest: &Manifest,
    shard_index: usize,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Release> {
    progress(Progress::Phase(pb::SitePhase::Loading));
    let shard = load_shard(&paths.data_dir, manifest, shard_index)?;
    let _histogram = real_histogram(&shard);
    // NOTE: the DCGAN, c_k, sampling and audit steps are wired in once the
    // training and privacy modules are merged.
    anyhow::bail!("local training is not built into this binary yet")
}
