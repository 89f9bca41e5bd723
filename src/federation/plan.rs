//! Selection of the real images each process of a run uses, derived only from the
//! manifest and its seed, so the coordinator, every site and the launcher's
//! centralised baseline agree without exchanging any index.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::ImageSet;
use crate::data::partition::{PartitionSpec, partition};
use crate::launch::manifest::{DataSection, Manifest};
use crate::models::GeneratorConfig;
use crate::training::{ClassifierTrainConfig, GanTrainConfig};

/// Errors while selecting a site's shard.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("shard index {index} is out of range; the manifest has {count} sites (0 to {last})", last = count - 1)]
    ShardIndex { index: usize, count: usize },
    #[error(
        "data.{key} = {limit} requests more images than the {available} of the CIFAR-10 {split} split; give at most {available}, or remove the key to use them all"
    )]
    LimitAboveAvailable {
        key: &'static str,
        split: &'static str,
        limit: usize,
        available: usize,
    },
    #[error("failed to partition the training split: {0}")]
    Partition(#[from] crate::data::partition::PartitionError),
}

/// One site's private images: what it trains on and its audit baseline.
#[derive(Clone, Debug, Default)]
pub struct SiteData {
    pub train: ImageSet,
    pub holdout: ImageSet,
}

/// Returns the training images the run partitions: all of them, or the
/// seeded random subset of `data.train_limit` images.
/// Fails when the limit exceeds the split's size.
pub fn training_pool(
    train: &ImageSet,
    data: &DataSection,
    seed: u64,
) -> Result<ImageSet, PlanError> {
    check_limit("train_limit", "training", data.train_limit, train.len())?;
    Ok(match data.train_limit {
        Some(limit) if limit < train.len() => {
            let mut indices: Vec<usize> = (0..train.len()).collect();
            indices.shuffle(&mut StdRng::seed_from_u64(seed));
            indices.truncate(limit);
            indices.sort_unstable();
            train.select(&indices)
        }
        _ => train.clone(),
    })
}

/// Returns the test images c' is evaluated on: the first `data.test_limit`
/// of the test split, or all of it. Fails when the limit exceeds the
/// split's size.
pub fn test_split(test: ImageSet, data: &DataSection) -> Result<ImageSet, PlanError> {
    check_limit("test_limit", "test", data.test_limit, test.len())?;
    Ok(match data.test_limit {
        Some(limit) if limit < test.len() => {
            let indices: Vec<usize> = (0..limit).collect();
            test.select(&indices)
        }
        _ => test,
    })
}

fn check_limit(
    key: &'static str,
    split: &'static str,
    limit: Option<usize>,
    available: usize,
) -> Result<(), PlanError> {
    match limit {
        Some(limit) if limit > available => Err(PlanError::LimitAboveAvailable {
            key,
            split,
            limit,
            available,
        }),
        _ => Ok(()),
    }
}

/// Returns a seed for one purpose of one process, derived from the run
/// seed so every process draws from its own random stream.
pub fn derived_seed(run_seed: u64, purpose: u64, shard_index: usize) -> u64 {
    let mixed = run_seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    mixed ^ (shard_index as u64 + 1).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// Builds the local DCGAN's settings from the manifest's `[gan]` section.
pub fn gan_config(manifest: &Manifest, seed: u64) -> GanTrainConfig {
    let gan = &manifest.gan;
    GanTrainConfig::new()
        .with_epochs(gan.epochs)
        .with_batch_size(gan.batch_size)
        .with_learning_rate(gan.learning_rate)
        .with_beta1(gan.beta1)
        .with_seed(seed)
        .with_generator(GeneratorConfig::new().with_latent_dim(gan.latent_dim))
}

/// Builds a classifier's settings from the manifest's `[classifier]` section,
/// trained for `epochs` (c_k uses `classifier.epochs`, c' uses
/// `coordinator.final_epochs`).
pub fn classifier_config(manifest: &Manifest, epochs: usize, seed: u64) -> ClassifierTrainConfig {
    let classifier = &manifest.classifier;
    ClassifierTrainConfig::new()
        .with_epochs(epochs)
        .with_batch_size(classifier.batch_size)
        .with_learning_rate(classifier.learning_rate)
        .with_lr_decay(classifier.lr_decay)
        .with_seed(seed)
}

/// Picks the CIFAR-10 directory: `--data`, then `FEDSYNTH_DATA`, then the
/// plan's `data.dir`, then the per-user cache directory.
pub fn data_dir(
    flag: Option<&Path>,
    manifest: &Manifest,
) -> Result<PathBuf, crate::data::DataError> {
    crate::data::location::resolve_data_dir(flag, manifest.data.dir.as_deref())
}

/// Selects the shard of site `shard_index` from the full training split.
pub fn site_data(
    train: &ImageSet,
    manifest: &Manifest,
    shard_index: usize,
) -> Result<SiteData, PlanError> {
    let count = manifest.sites.count;
    if shard_index >= count {
        return Err(PlanError::ShardIndex {
            index: shard_index,
            count,
        });
    }
    let pool = training_pool(train, &manifest.data, manifest.run.seed)?;
    let (train_indices, holdout_indices) = partition_shard(&pool, manifest, shard_index)?;
    Ok(SiteData {
        train: pool.select(&train_indices),
        holdout: pool.select(&holdout_indices),
    })
}

/// Returns the train and holdout indices of one shard of `pool`.
fn partition_shard(
    pool: &ImageSet,
    manifest: &Manifest,
    shard_index: usize,
) -> Result<(Vec<usize>, Vec<usize>), PlanError> {
    let spec =
        PartitionSpec::from_manifest(&manifest.data, manifest.sites.count, manifest.run.seed);
    let mut shards = partition(&pool.labels, &spec)?;
    let shard = shards.swap_remove(shard_index);
    Ok((shard.train, shard.holdout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_BYTES;

    fn numbered(count: usize) -> ImageSet {
        let mut set = ImageSet::default();
        for i in 0..count {
            set.images.extend(std::iter::repeat_n(i as u8, IMAGE_BYTES));
            set.labels.push((i % 10) as u8);
        }
        set
    }

    #[test]
    fn train_limit_takes_a_seeded_subset() {
        let train = numbered(100);
        let data = DataSection {
            train_limit: Some(10),
            ..DataSection::default()
        };
        let first = training_pool(&train, &data, 7).unwrap();
        let again = training_pool(&train, &data, 7).unwrap();
        let other = training_pool(&train, &data, 8).unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn no_train_limit_keeps_every_image() {
        let train = numbered(20);
        let pool = training_pool(&train, &DataSection::default(), 1).unwrap();
        assert_eq!(pool, train);
    }

    #[test]
    fn test_limit_cuts_the_test_split() {
        let data = DataSection {
            test_limit: Some(5),
            ..DataSection::default()
        };
        assert_eq!(test_split(numbered(20), &data).unwrap().len(), 5);
        assert_eq!(test_split(numbered(5), &data).unwrap().len(), 5);
    }

    #[test]
    fn rejects_train_limit_above_split() {
        let data = DataSection {
            train_limit: Some(99_999_999),
            ..DataSection::default()
        };
        let err = training_pool(&numbered(20), &data, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data.train_limit = 99999999"), "{err}");
        assert!(
            err.contains("the 20 of the CIFAR-10 training split"),
            "{err}"
        );
    }

    #[test]
    fn rejects_test_limit_above_split() {
        let data = DataSection {
            test_limit: Some(6),
            ..DataSection::default()
        };
        let err = test_split(numbered(5), &data).unwrap_err().to_string();
        assert!(err.contains("data.test_limit = 6"), "{err}");
        assert!(err.contains("the 5 of the CIFAR-10 test split"), "{err}");
    }

    #[test]
    fn shards_of_all_sites_cover_the_pool_once() {
        let mut manifest = Manifest::default();
        manifest.sites.count = 3;
        manifest.data.train_limit = Some(60);
        manifest.data.holdout_fraction = 0.1;
        let train = numbered(200);
        let shards: Vec<SiteData> = (0..3)
            .map(|i| site_data(&train, &manifest, i).unwrap())
            .collect();
        let total: usize = shards.iter().map(|s| s.train.len() + s.holdout.len()).sum();
        assert_eq!(total, 60);
        for shard in &shards {
            assert!(!shard.holdout.is_empty());
        }
        let again = site_data(&train, &manifest, 1).unwrap();
        assert_eq!(again.train, shards[1].train);
    }

    #[test]
    fn configs_follow_the_manifest() {
        let mut manifest = Manifest::default();
        manifest.gan.epochs = 3;
        manifest.gan.latent_dim = 64;
        manifest.classifier.batch_size = 16;
        let gan = gan_config(&manifest, 5);
        assert_eq!(gan.epochs, 3);
        assert_eq!(gan.generator.latent_dim, 64);
        assert_eq!(gan.seed, 5);
        let classifier = classifier_config(&manifest, 7, 9);
        assert_eq!(classifier.epochs, 7);
        assert_eq!(classifier.batch_size, 16);
    }

    #[test]
    fn derived_seeds_differ_by_purpose_and_shard() {
        let seeds = [
            derived_seed(42, 1, 0),
            derived_seed(42, 1, 1),
            derived_seed(42, 2, 0),
        ];
        assert_ne!(seeds[0], seeds[1]);
        assert_ne!(seeds[0], seeds[2]);
        assert_eq!(seeds[0], derived_seed(42, 1, 0));
    }

    #[test]
    fn rejects_shard_index_beyond_site_count() {
        let manifest = Manifest::default();
        let err = site_data(&numbered(10), &manifest, 2).unwrap_err();
        assert!(matches!(err, PlanError::ShardIndex { index: 2, count: 2 }));
    }
}
