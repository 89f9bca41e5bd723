//! The feature spaces the audit searches in: raw pixels scaled to [0, 1]
//! (3,072 values per image), or the penultimate-layer embedding of a
//! classifier checkpoint (256 values per image).
//!
//! Training images enter with all their variants (see [`super::augment`]),
//! so a mirrored or shifted copy is found as the record it came from.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::augment::{self, VARIANTS};
use super::knn::{self, AugmentedImages, DenseRows, Neighbours};
use crate::data::cifar::IMAGE_BYTES;
use crate::training::{TrainError, checkpoint, infer};

/// The space in which distances between images are measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSpace {
    /// Pixels scaled to [0, 1], 3,072 values per image.
    #[default]
    Pixels,
    /// The 256-value penultimate-layer embedding of the classifier
    /// checkpoint in this directory.
    Classifier(PathBuf),
}

impl FeatureSpace {
    /// Short name for logs and summaries, without any path.
    pub fn name(&self) -> &'static str {
        match self {
            FeatureSpace::Pixels => "pixels",
            FeatureSpace::Classifier(_) => "classifier",
        }
    }
}

/// Errors while computing features.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(
        "failed to load the classifier checkpoint {path} for embedding features: {source}; pass a directory written by `fedsynth train-classifier`"
    )]
    Checkpoint {
        path: PathBuf,
        source: Box<TrainError>,
    },
}

/// Training records in a feature space, each with its variants.
pub enum TrainRows<'a> {
    /// CIFAR images; their variants are generated during the search.
    Pixels(Cow<'a, [u8]>),
    /// Embedded rows, `VARIANTS.len()` consecutive rows of `dim` per record.
    Embedded { rows: Cow<'a, [f32]>, dim: usize },
}

impl TrainRows<'_> {
    /// Number of records.
    pub fn records(&self) -> usize {
        match self {
            TrainRows::Pixels(images) => images.len() / IMAGE_BYTES,
            TrainRows::Embedded { rows, dim } => rows.len() / (dim * VARIANTS.len()),
        }
    }

    /// Returns the `k` nearest distinct records of each row of `queries`.
    pub fn search(&self, queries: &[f32], k: usize) -> Neighbours {
        match self {
            TrainRows::Pixels(images) => knn::search(queries, &AugmentedImages::new(images), k),
            TrainRows::Embedded { rows, dim } => {
                knn::search(queries, &DenseRows::new(rows, *dim, VARIANTS.len()), k)
            }
        }
    }

    /// Returns the records at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> TrainRows<'static> {
        match self {
            TrainRows::Pixels(images) => {
                let mut picked = Vec::with_capacity(indices.len() * IMAGE_BYTES);
                for &i in indices {
                    picked.extend_from_slice(&images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]);
                }
                TrainRows::Pixels(Cow::Owned(picked))
            }
            TrainRows::Embedded { rows, dim } => {
                let record = dim * VARIANTS.len();
                let mut picked = Vec::with_capacity(indices.len() * record);
                for &i in indices {
                    picked.extend_from_slice(&rows[i * record..(i + 1) * record]);
                }
                TrainRows::Embedded {
                    rows: Cow::Owned(picked),
                    dim: *dim,
                }
            }
        }
    }

    /// Returns the untransformed feature row of each record at `indices`.
    pub fn originals(&self, indices: &[usize]) -> Vec<f32> {
        match self {
            TrainRows::Pixels(images) => {
                let mut out = Vec::with_capacity(indices.len() * IMAGE_BYTES);
                for &i in indices {
                    out.extend(unit_pixels(&images[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]));
                }
                out
            }
            TrainRows::Embedded { rows, dim } => {
                let record = dim * VARIANTS.len();
                let mut out = Vec::with_capacity(indices.len() * dim);
                for &i in indices {
                    out.extend_from_slice(&rows[i * record..i * record + dim]);
                }
                out
            }
        }
    }
}

/// Synthetic, held-out and training images in one feature space.
pub struct Features<'a> {
    /// Values per feature row.
    pub dim: usize,
    pub synthetic: Vec<f32>,
    pub holdout: Vec<f32>,
    pub train: TrainRows<'a>,
}

/// Computes the features of the three image sets (CHW bytes) in `space`.
pub fn compute<'a>(
    space: &FeatureSpace,
    synthetic: &[u8],
    train: &'a [u8],
    holdout: &[u8],
    device: &Device,
) -> Result<Features<'a>, FeatureError> {
    match space {
        FeatureSpace::Pixels => Ok(Features {
            dim: IMAGE_BYTES,
            synthetic: unit_pixels(synthetic),
            holdout: unit_pixels(holdout),
            train: TrainRows::Pixels(Cow::Borrowed(train)),
        }),
        FeatureSpace::Classifier(checkpoint) => {
            classifier_features(checkpoint, synthetic, train, holdout, device)
        }
    }
}

/// Scales CHW bytes to [0, 1].
pub fn unit_pixels(images: &[u8]) -> Vec<f32> {
    images.iter().map(|&v| f32::from(v) / 255.0).collect()
}

/// Training images embedded per chunk, so only one chunk of variants is
/// held as bytes at a time.
const EMBED_CHUNK: usize = 1024;

fn classifier_features(
    checkpoint: &Path,
    synthetic: &[u8],
    train: &[u8],
    holdout: &[u8],
    device: &Device,
) -> Result<Features<'static>, FeatureError> {
    let (classifier, config) =
        checkpoint::load_classifier(checkpoint, device).map_err(|source| {
            FeatureError::Checkpoint {
                path: checkpoint.to_path_buf(),
                source: Box::new(source),
            }
        })?;
    let dim = config.hidden;
    let embed = |images: &[u8]| infer::embed_images(&classifier, images, device);

    // Every training image is embedded with all its variants, record-major,
    // which is the row layout `TrainRows::Embedded` expects.
    let records = train.len() / IMAGE_BYTES;
    let mut rows = Vec::with_capacity(records * VARIANTS.len() * dim);
    let bar = crate::progress::bar(records as u64, "embed");
    for chunk in train.chunks(EMBED_CHUNK * IMAGE_BYTES) {
        rows.extend(embed(&augment::augment_bytes(chunk)));
        bar.inc((chunk.len() / IMAGE_BYTES) as u64);
    }
    bar.finish_and_clear();
    Ok(Features {
        dim,
        synthetic: embed(synthetic),
        holdout: embed(holdout),
        train: TrainRows::Embedded {
            rows: Cow::Owned(rows),
            dim,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::classifier::ClassifierConfig;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn random_images(count: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count * IMAGE_BYTES)
            .map(|_| rng.random::<u8>())
            .collect()
    }

    #[test]
    fn pixel_features_scale_to_unit_range() {
        let features = compute(
            &FeatureSpace::Pixels,
            &[0, 255],
            &[],
            &[51],
            &Device::flex(),
        );
        let features = features.unwrap();
        assert_eq!(features.synthetic, vec![0.0, 1.0]);
        assert_eq!(features.holdout, vec![0.2]);
    }

    #[test]
    fn classifier_features_embed_every_variant() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let config = ClassifierConfig::new();
        let classifier = config.init(&device);
        checkpoint::save_classifier(dir.path(), &classifier, &config).unwrap();

        let train = random_images(3, 1);
        let copy = augment::variant_bytes(
            &train[IMAGE_BYTES..2 * IMAGE_BYTES],
            augment::Variant::Mirror,
        );
        let space = FeatureSpace::Classifier(dir.path().to_path_buf());
        let features = compute(&space, &copy, &train, &random_images(2, 2), &device).unwrap();
        assert_eq!(features.dim, 256);
        assert_eq!(features.synthetic.len(), 256);
        assert_eq!(features.holdout.len(), 2 * 256);
        assert_eq!(features.train.records(), 3);

        let nearest = features.train.search(&features.synthetic, 1);
        assert_eq!(nearest.indices, vec![1]);
        assert!(nearest.distances[0] < 1e-3, "{:?}", nearest.distances);
    }

    #[test]
    fn rejects_missing_classifier_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let space = FeatureSpace::Classifier(dir.path().join("absent"));
        let train = random_images(1, 0);
        let result = compute(&space, &[], &train, &[], &Device::flex());
        let err = result
            .err()
            .expect("a missing checkpoint is an error")
            .to_string();
        assert!(err.contains("absent"), "{err}");
        assert!(err.contains("train-classifier"), "{err}");
    }
}
