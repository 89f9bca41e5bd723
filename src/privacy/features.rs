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
        "classifier features from {0} are not available in this build; audit with pixel features instead"
    )]
    ClassifierUnavailable(PathBuf),
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

fn classifier_features<'a>(
    checkpoint: &Path,
    _synthetic: &[u8],
    _train: &'a [u8],
    _holdout: &[u8],
    _device: &Device,
) -> Result<Features<'a>, FeatureError> {
    // TODO: embed with `training::checkpoint::load_classifier` and
    // `training::infer::embed_images` (train rows through
    // `augment::augment_bytes`) once the training module provides them.
    let _ = augment::augment_bytes;
    Err(FeatureError::ClassifierUnavailable(
        checkpoint.to_path_buf(),
    ))
}
