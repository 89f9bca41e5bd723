//! A site's local work, run on a blocking thread: load its shard, train
//! the DCGAN and c_k, sample and label synthetic images, audit them against
//! the shard and keep only those the release gate passes.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::data::{CLASS_COUNT, Cifar10, IMAGE_BYTES};
use crate::federation::pb;
use crate::federation::plan::{self, SiteData};
use crate::launch::manifest::Manifest;
use crate::privacy::audit::{AuditConfig, run_audit};
use crate::training::infer::{predict_proba, sample_images};
use crate::training::{EpochSummary, TrainHooks, one_hot, train_classifier, train_gan};

/// Progress event of the local work.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Phase(pb::SitePhase),
    Epoch(pb::SitePhase, EpochSummary),
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

/// Directories of a site: its CIFAR-10 data and its own files.
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
    shard
        .train
        .class_histogram()
        .iter()
        .map(|&c| c as u64)
        .collect()
}

/// Seed purposes, so each random choice of a site has its own stream.
const GAN_SEED: u64 = 1;
const CLASSIFIER_SEED: u64 = 2;
const SAMPLE_SEED: u64 = 3;
const AUDIT_SEED: u64 = 4;

/// Runs the whole local work and returns the release.
pub fn prepare_release(
    paths: &LocalPaths,
    manifest: &Manifest,
    shard_index: usize,
    progress: &mut dyn FnMut(Progress),
) -> anyhow::Result<Release> {
    let device = manifest.run.backend.device()?;
    let seed = |purpose| plan::derived_seed(manifest.run.seed, purpose, shard_index);
    progress(Progress::Phase(pb::SitePhase::Loading));
    let shard = load_shard(&paths.data_dir, manifest, shard_index)?;

    progress(Progress::Phase(pb::SitePhase::TrainingGan));
    let gan_config = plan::gan_config(manifest, seed(GAN_SEED));
    let mut on_gan_epoch = |summary: &EpochSummary| {
        progress(Progress::Epoch(pb::SitePhase::TrainingGan, summary.clone()))
    };
    let gan = train_gan(
        &shard.train,
        &gan_config,
        &device,
        hooks(paths, "gan", shard_index, &mut on_gan_epoch),
    )
    .context("failed to train the site's DCGAN")?;

    progress(Progress::Phase(pb::SitePhase::TrainingClassifier));
    let classifier_config =
        plan::classifier_config(manifest, manifest.classifier.epochs, seed(CLASSIFIER_SEED));
    let mut on_classifier_epoch = |summary: &EpochSummary| {
        progress(Progress::Epoch(
            pb::SitePhase::TrainingClassifier,
            summary.clone(),
        ))
    };
    let classifier = train_classifier(
        &shard.train.images,
        &one_hot(&shard.train.labels),
        &classifier_config,
        &device,
        hooks(paths, "classifier", shard_index, &mut on_classifier_epoch),
    )
    .context("failed to train the site's classifier c_k")?
    .classifier;

    progress(Progress::Phase(pb::SitePhase::Sampling));
    let count = manifest.synthetic.samples_per_site;
    let images = sample_images(
        &gan.generator,
        count,
        manifest.gan.latent_dim,
        seed(SAMPLE_SEED),
        &device,
    );
    let probabilities = predict_proba(&classifier, &images, &device);

    progress(Progress::Phase(pb::SitePhase::Auditing));
    let (flagged, audit_summary_json) =
        audit(paths, manifest, &shard, &images, seed(AUDIT_SEED), &device)?;
    let gate = manifest.audit.enabled && manifest.audit.release_gate;
    let withheld: &[usize] = if gate { &flagged } else { &[] };
    let (images, probabilities) = withhold(&images, &probabilities, withheld);
    Ok(Release {
        images,
        probabilities,
        images_sampled: count,
        images_dropped: withheld.len(),
        audit_summary_json,
        real_label_histogram: real_histogram(&shard),
    })
}

fn hooks<'a>(
    paths: &LocalPaths,
    model: &str,
    shard_index: usize,
    on_epoch: &'a mut dyn FnMut(&EpochSummary),
) -> TrainHooks<'a> {
    TrainHooks {
        checkpoint_dir: Some(paths.work_dir.join("checkpoints").join(model)),
        resume: false,
        on_epoch: Some(on_epoch),
        progress_label: format!("site-{shard_index} {model}"),
    }
}

/// Audits the samples against the shard, keeping the full report in the
/// work dir, and returns the flagged indices and the summary as JSON.
fn audit(
    paths: &LocalPaths,
    manifest: &Manifest,
    shard: &SiteData,
    images: &[u8],
    seed: u64,
    device: &burn::tensor::Device,
) -> anyhow::Result<(Vec<usize>, String)> {
    if !manifest.audit.enabled {
        return Ok((Vec::new(), String::new()));
    }
    let config = AuditConfig {
        k: manifest.audit.k,
        nn_ratio_threshold: manifest.audit.nn_ratio_threshold,
        seed,
        ..AuditConfig::default()
    };
    let report = run_audit(images, &shard.train, &shard.holdout, &config, device)
        .context("the privacy audit failed")?;
    report
        .write_outputs(images, &shard.train, &paths.work_dir.join("audit"))
        .context("failed to write the site's audit outputs")?;
    let summary = serde_json::to_string(&report.summary())?;
    Ok((report.flagged, summary))
}

/// Returns the images and soft labels without the rows in `withheld`.
pub fn withhold(images: &[u8], probabilities: &[f32], withheld: &[usize]) -> (Vec<u8>, Vec<f32>) {
    let withheld: std::collections::HashSet<usize> = withheld.iter().copied().collect();
    let mut kept_images = Vec::with_capacity(images.len());
    let mut kept_probabilities = Vec::with_capacity(probabilities.len());
    let rows = images
        .chunks_exact(IMAGE_BYTES)
        .zip(probabilities.chunks_exact(CLASS_COUNT));
    for (index, (image, label)) in rows.enumerate() {
        if !withheld.contains(&index) {
            kept_images.extend_from_slice(image);
            kept_probabilities.extend_from_slice(label);
        }
    }
    (kept_images, kept_probabilities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withhold_drops_exactly_the_flagged_rows() {
        let images: Vec<u8> = (0..3).flat_map(|i| vec![i as u8; IMAGE_BYTES]).collect();
        let probabilities: Vec<f32> = (0..3).flat_map(|i| vec![i as f32; CLASS_COUNT]).collect();
        let (kept, labels) = withhold(&images, &probabilities, &[1]);
        assert_eq!(kept.len(), 2 * IMAGE_BYTES);
        assert_eq!(kept[0], 0);
        assert_eq!(kept[IMAGE_BYTES], 2);
        assert_eq!(labels[CLASS_COUNT], 2.0);
    }
}
