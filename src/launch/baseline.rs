//! The centralised baseline c of a local run: a classifier trained on the
//! union of the real training shards, evaluated on the same test split as
//! c', and compared with c' image by image. It runs only where every shard
//! is on this machine, after the coordinator has written the run folder.
//!
//! c trains for `coordinator.final_epochs` epochs with the manifest's
//! classifier settings, the same budget as c', so the two differ only in
//! their training images: real shards for c, pooled synthetic images for c'.

use std::time::Instant;

use anyhow::Context;

use super::plan::LaunchPlan;
use crate::data::{CLASS_COUNT, Cifar10, ImageSet};
use crate::federation::plan::{classifier_config, derived_seed, site_data, test_split};
use crate::launch::manifest::Manifest;
use crate::report;
use crate::training::infer::{self, Evaluation};
use crate::training::{ClassifierTrainConfig, TrainHooks, checkpoint, one_hot, train_classifier};

/// Folder of the run where the coordinator saves c'.
pub const FINAL_CLASSIFIER_DIR: &str = "checkpoints/final_classifier";
/// Folder of the run where the launcher saves c.
pub const CENTRALISED_CLASSIFIER_DIR: &str = "checkpoints/centralised_classifier";

/// Trains c, evaluates it, measures its agreement with c' and adds both to
/// the run folder of `plan`.
pub fn add_to_run(plan: &LaunchPlan) -> anyhow::Result<()> {
    let started = Instant::now();
    let manifest = &plan.manifest;
    crate::backend::configure_threads(plan.coordinator_threads)?;
    let device = manifest.run.backend.device()?;
    let data_dir = plan
        .data_dir
        .as_deref()
        .context("no CIFAR-10 directory for the centralised baseline; pass --data DIR")?;
    let cifar = Cifar10::load(data_dir)?;
    let union = union_of_shards(&cifar.train, manifest)?;
    let test = test_split(cifar.test, &manifest.data)?;
    tracing::info!(
        train = union.len(),
        test = test.len(),
        epochs = manifest.coordinator.final_epochs,
        "training the centralised baseline c"
    );

    let config = centralised_config(manifest);
    let hooks = TrainHooks {
        progress_label: "centralised c".into(),
        ..TrainHooks::default()
    };
    let trained = train_classifier(
        &union.images,
        &one_hot(&union.labels),
        &config,
        &device,
        hooks,
    )?;
    let c_dir = plan.run_dir.join(CENTRALISED_CLASSIFIER_DIR);
    checkpoint::save_classifier(&c_dir, &trained.classifier, &config.model)?;

    let c_predictions = predictions(&trained.classifier, &test, &device);
    let c_prime_dir = plan.run_dir.join(FINAL_CLASSIFIER_DIR);
    let (c_prime, _) = checkpoint::load_classifier(&c_prime_dir, &device)
        .with_context(|| format!("failed to load c' from {}", c_prime_dir.display()))?;
    let c_prime_predictions = predictions(&c_prime, &test, &device);
    let evaluation = Evaluation::from_predictions(&test.labels, &c_predictions);
    let agreement = report::agreement(&c_predictions, &c_prime_predictions).with_context(|| {
        format!(
            "c and c' predicted {} and {} test images",
            c_predictions.len(),
            c_prime_predictions.len()
        )
    })?;
    tracing::info!(
        accuracy = evaluation.accuracy,
        agreement,
        seconds = started.elapsed().as_secs_f64(),
        "centralised baseline c done"
    );
    report::add_centralised_baseline(
        &plan.run_dir,
        evaluation,
        agreement,
        started.elapsed().as_secs_f64(),
    )?;
    Ok(())
}

/// Returns the training images of every shard together, the holdouts left
/// out as they are at the sites.
pub fn union_of_shards(train: &ImageSet, manifest: &Manifest) -> anyhow::Result<ImageSet> {
    let mut union = ImageSet::default();
    for shard in 0..manifest.sites.count {
        let data = site_data(train, manifest, shard)
            .with_context(|| format!("failed to select shard {shard}"))?;
        union.extend(&data.train);
    }
    Ok(union)
}

/// Purpose tag of c's seed, so c shuffles unlike c' and the sites.
const CENTRALISED_SEED: u64 = 0x63_656e_7472;

/// Returns the manifest's classifier settings with `coordinator.final_epochs`.
pub fn centralised_config(manifest: &Manifest) -> ClassifierTrainConfig {
    let seed = derived_seed(manifest.run.seed, CENTRALISED_SEED, 0);
    classifier_config(manifest, manifest.coordinator.final_epochs, seed)
}

fn predictions(
    classifier: &crate::models::Classifier,
    test: &ImageSet,
    device: &burn::tensor::Device,
) -> Vec<usize> {
    infer::predict_proba(classifier, &test.images, device)
        .chunks(CLASS_COUNT)
        .map(infer::argmax)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_BYTES;

    fn image_set(count: usize) -> ImageSet {
        ImageSet {
            images: (0..count * IMAGE_BYTES)
                .map(|i| (i / IMAGE_BYTES) as u8)
                .collect(),
            labels: (0..count).map(|i| (i % CLASS_COUNT) as u8).collect(),
        }
    }

    #[test]
    fn config_takes_final_epochs_and_classifier_settings() {
        let mut manifest = Manifest::default();
        manifest.coordinator.final_epochs = 3;
        manifest.classifier.batch_size = 16;
        manifest.classifier.learning_rate = 0.01;
        manifest.run.seed = 9;
        let config = centralised_config(&manifest);
        assert_eq!(config.epochs, 3);
        assert_eq!(config.batch_size, 16);
        assert_eq!(config.learning_rate, 0.01);
        assert_eq!(config.lr_decay, manifest.classifier.lr_decay);
        assert_ne!(config.seed, centralised_config(&Manifest::default()).seed);
    }

    #[test]
    fn union_holds_every_shard_without_holdouts() {
        let mut manifest = Manifest::default();
        manifest.sites.count = 3;
        manifest.data.holdout_fraction = 0.1;
        let train = image_set(200);
        let union = union_of_shards(&train, &manifest).unwrap();
        let holdouts: usize = (0..3)
            .map(|shard| site_data(&train, &manifest, shard).unwrap().holdout.len())
            .sum();
        assert!(holdouts > 0);
        assert_eq!(union.len() + holdouts, 200);
        // Each image's first byte is its index, so distinct bytes mean no
        // image is counted twice.
        let mut firsts: Vec<u8> = (0..union.len()).map(|i| union.image(i)[0]).collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert_eq!(firsts.len(), union.len());
    }
}
