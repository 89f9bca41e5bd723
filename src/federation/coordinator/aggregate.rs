//! The coordinator's work once uploads are in: pool the synthetic sets,
//! save them, train c' on the soft labels and evaluate it on the real test
//! split. Pooling and label counting are pure functions.

use std::path::Path;

use anyhow::Context;

use super::state::Site;
use crate::data::{CLASS_COUNT, IMAGE_BYTES, ImageSet};
use crate::federation::plan;
use crate::fsutil;
use crate::launch::manifest::Manifest;
use crate::report::Evaluation;
use crate::training::{TrainHooks, checkpoint, infer, train_classifier};

/// The synthetic images of every completed site, in shard order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PooledSet {
    pub images: Vec<u8>,
    /// `CLASS_COUNT` probabilities per image.
    pub probabilities: Vec<f32>,
}

impl PooledSet {
    pub fn len(&self) -> usize {
        self.images.len() / IMAGE_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

/// Concatenates the accepted uploads of `sites`, ordered by shard index.
pub fn pool(sites: &[Site]) -> PooledSet {
    let mut ordered: Vec<&Site> = sites.iter().filter(|s| s.upload.is_some()).collect();
    ordered.sort_by_key(|s| s.shard_index);
    let mut pooled = PooledSet::default();
    for site in ordered {
        let upload = site.upload.as_ref().expect("filtered on uploads");
        pooled.images.extend_from_slice(&upload.images);
        pooled
            .probabilities
            .extend_from_slice(&upload.probabilities);
    }
    pooled
}

/// Returns the class of highest probability of each row; ties go to the
/// lower class.
pub fn argmax_labels(probabilities: &[f32]) -> Vec<u8> {
    probabilities
        .chunks_exact(CLASS_COUNT)
        .map(|row| {
            let mut best = 0;
            for (class, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = class;
                }
            }
            best as u8
        })
        .collect()
}

/// Counts images per argmax class.
pub fn label_histogram(probabilities: &[f32]) -> Vec<u64> {
    let mut counts = vec![0u64; CLASS_COUNT];
    for label in argmax_labels(probabilities) {
        counts[label as usize] += 1;
    }
    counts
}

/// Writes the pooled set as `synthetic/pooled.bin` (CIFAR-10 records with
/// the argmax label) and `synthetic/pooled.bin.labels.f32` (little-endian
/// f32, `CLASS_COUNT` per image, in record order), the name beside a record
/// file where `fedsynth train-classifier --images` looks for soft labels.
pub fn save_pooled(run_dir: &Path, pooled: &PooledSet) -> anyhow::Result<()> {
    let set = ImageSet {
        images: pooled.images.clone(),
        labels: argmax_labels(&pooled.probabilities),
    };
    let dir = run_dir.join("synthetic");
    set.write(&dir.join("pooled.bin"))
        .context("failed to save the pooled synthetic set")?;
    let soft: Vec<u8> = pooled
        .probabilities
        .iter()
        .flat_map(|p| p.to_le_bytes())
        .collect();
    let path = dir.join("pooled.bin.labels.f32");
    fsutil::write_atomic(&path, &soft)
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Directory of the c' checkpoint inside the run folder.
pub const FINAL_CLASSIFIER_DIR: &str = "checkpoints/final_classifier";

/// Trains c' on the pooled set's soft labels, saves it under
/// [`FINAL_CLASSIFIER_DIR`] and evaluates it on `test`.
pub fn train_final_classifier(
    pooled: &PooledSet,
    test: &ImageSet,
    manifest: &Manifest,
    run_dir: &Path,
) -> anyhow::Result<Evaluation> {
    if pooled.is_empty() {
        anyhow::bail!("no synthetic image reached the coordinator, so c' cannot be trained");
    }
    let device = manifest.run.backend.device()?;
    let seed = plan::derived_seed(manifest.run.seed, FINAL_SEED, 0);
    let config = plan::classifier_config(manifest, manifest.coordinator.final_epochs, seed);
    let hooks = TrainHooks {
        progress_label: "c'".into(),
        ..TrainHooks::default()
    };
    let trained = train_classifier(
        &pooled.images,
        &pooled.probabilities,
        &config,
        &device,
        hooks,
    )
    .context("failed to train c' on the pooled synthetic images")?;
    let dir = run_dir.join(FINAL_CLASSIFIER_DIR);
    checkpoint::save_classifier(&dir, &trained.classifier, &config.model)
        .context("failed to save the c' checkpoint")?;
    let evaluation = infer::evaluate(&trained.classifier, test, &device);
    tracing::info!(
        accuracy = evaluation.accuracy,
        test_images = evaluation.count,
        "evaluated c' on the real test split"
    );
    Ok(Evaluation {
        accuracy: evaluation.accuracy,
        per_class_accuracy: evaluation.per_class_accuracy,
        confusion: evaluation.confusion,
        count: evaluation.count,
    })
}

/// Seed purpose of c', distinct from the sites' purposes.
const FINAL_SEED: u64 = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_picks_the_most_likely_class() {
        let mut rows = vec![0.0f32; 2 * CLASS_COUNT];
        rows[3] = 0.9;
        rows[CLASS_COUNT + 7] = 0.6;
        rows[CLASS_COUNT + 2] = 0.4;
        assert_eq!(argmax_labels(&rows), [3, 7]);
    }

    #[test]
    fn histogram_counts_argmax_classes() {
        let mut rows = vec![0.0f32; 3 * CLASS_COUNT];
        rows[1] = 1.0;
        rows[CLASS_COUNT + 1] = 1.0;
        rows[2 * CLASS_COUNT + 9] = 1.0;
        let histogram = label_histogram(&rows);
        assert_eq!(histogram[1], 2);
        assert_eq!(histogram[9], 1);
        assert_eq!(histogram.iter().sum::<u64>(), 3);
    }
}
