//! Which real images each process of a run uses, derived only from the
//! manifest and its seed, so the coordinator, every site and the launcher's
//! centralised baseline agree without exchanging any index.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::ImageSet;
use crate::launch::manifest::{DataSection, Manifest};

/// Errors while selecting a site's shard.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("shard index {index} is out of range; the manifest has {count} sites (0 to {last})", last = count - 1)]
    ShardIndex { index: usize, count: usize },
    #[error("failed to partition the training split: {0}")]
    Partition(String),
}

/// One site's private images: what it trains on and its audit baseline.
#[derive(Clone, Debug, Default)]
pub struct SiteData {
    pub train: ImageSet,
    pub holdout: ImageSet,
}

/// Returns the training images the run partitions: all of them, or the
/// seeded random subset of `data.train_limit` images.
pub fn training_pool(train: &ImageSet, data: &DataSection, seed: u64) -> ImageSet {
    match data.train_limit {
        Some(limit) if limit < train.len() => {
            let mut indices: Vec<usize> = (0..train.len()).collect();
            indices.shuffle(&mut StdRng::seed_from_u64(seed));
            indices.truncate(limit);
            indices.sort_unstable();
            train.select(&indices)
        }
        _ => train.clone(),
    }
}

/// Returns the test images c' is evaluated on: the first `data.test_limit`
/// of the test split, or all of it.
pub fn test_split(test: ImageSet, data: &DataSection) -> ImageSet {
    match data.test_limit {
        Some(limit) if limit < test.len() => {
            let indices: Vec<usize> = (0..limit).collect();
            test.select(&indices)
        }
        _ => test,
    }
}

/// Picks the CIFAR-10 directory: `--data`, then `FEDSYNTH_DATA`, then the
/// plan's `data.dir`.
pub fn data_dir(flag: Option<&Path>, manifest: &Manifest) -> anyhow::Result<PathBuf> {
    // NOTE: replaced by `crate::data::location::resolve_data_dir` once the
    // data lookup module is merged.
    if let Some(flag) = flag {
        return Ok(flag.to_path_buf());
    }
    if let Some(env) = std::env::var_os("FEDSYNTH_DATA") {
        return Ok(PathBuf::from(env));
    }
    manifest.data.dir.clone().ok_or_else(|| {
        anyhow::anyhow!("no CIFAR-10 directory given; pass --data DIR or set FEDSYNTH_DATA")
    })
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
    let pool = training_pool(train, &manifest.data, manifest.run.seed);
    let (train_indices, holdout_indices) = partition_shard(&pool, manifest, shard_index)?;
    Ok(SiteData {
        train: pool.select(&train_indices),
        holdout: pool.select(&holdout_indices),
    })
}

/// Returns the train and holdout indices of one shard of `pool`.
fn partition_shard(
    _pool: &ImageSet,
    _manifest: &Manifest,
    _shard_index: usize,
) -> Result<(Vec<usize>, Vec<usize>), PlanError> {
    // NOTE: replaced by `crate::data::partition::partition` once the
    // partitioning module is merged.
    Err(PlanError::Partition(
        "partitioning is not built into this binary yet".into(),
    ))
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
        let first = training_pool(&train, &data, 7);
        let again = training_pool(&train, &data, 7);
        let other = training_pool(&train, &data, 8);
        assert_eq!(first.len(), 10);
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn no_train_limit_keeps_every_image() {
        let train = numbered(20);
        let pool = training_pool(&train, &DataSection::default(), 1);
        assert_eq!(pool, train);
    }

    #[test]
    fn test_limit_cuts_the_test_split() {
        let data = DataSection {
            test_limit: Some(5),
            ..DataSection::default()
        };
        assert_eq!(test_split(numbered(20), &data).len(), 5);
        assert_eq!(test_split(numbered(3), &data).len(), 3);
    }

    #[test]
    fn rejects_shard_index_beyond_site_count() {
        let manifest = Manifest::default();
        let err = site_data(&numbered(10), &manifest, 2).unwrap_err();
        assert!(matches!(err, PlanError::ShardIndex { index: 2, count: 2 }));
    }
}
