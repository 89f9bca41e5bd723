//! Training of the reference models on one node: pixel scaling, the Adamax
//! optimizer, the GAN and classifier loops, checkpoints and inference.
//! Nothing here talks to the network; the federation calls these functions.

pub mod adam;
pub mod adamax;
pub mod bench;
pub mod checkpoint;
pub mod classifier;
pub mod cli;
pub mod gan;
pub mod infer;
mod losses;
pub mod tensors;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use classifier::{ClassifierTrainConfig, TrainedClassifier, one_hot, train_classifier};
pub use gan::{GanModels, GanTrainConfig, train_gan};

/// Report of one finished epoch, for the log and for `TrainHooks::on_epoch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    /// Epoch number, counted from 1 and carried on across resumes.
    pub epoch: usize,
    /// Epoch number at which this training run stops.
    pub epochs: usize,
    /// Mean loss per named loss over the epoch's steps.
    pub losses: Vec<(String, f64)>,
    /// Wall time of the epoch.
    pub seconds: f64,
    /// Images per second: real and generated images for the GAN, real ones
    /// for the classifier.
    pub images_per_second: f64,
}

/// Optional side effects of a training run.
#[derive(Default)]
pub struct TrainHooks<'a> {
    /// Directory to write a checkpoint to at the end of every epoch.
    pub checkpoint_dir: Option<PathBuf>,
    /// Resume from the checkpoint in `checkpoint_dir` when one is there.
    pub resume: bool,
    /// Called after every epoch, after the checkpoint is written.
    pub on_epoch: Option<&'a mut dyn FnMut(&EpochSummary)>,
    /// Label of the per-epoch progress bar, e.g. "site-0 gan".
    pub progress_label: String,
}

/// Errors of training, checkpointing and their inputs.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "loss `{loss_name}` is not finite at epoch {epoch}, step {step}; training stopped and the last checkpoint of a finished epoch is kept. Lower the learning rate or check the input images"
    )]
    NonFinite {
        epoch: usize,
        step: usize,
        loss_name: String,
    },
    #[error("invalid training input: {0}")]
    InvalidInput(String),
    #[error("invalid training configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "checkpoint file {0} not found; train first (`fedsynth train-gan` or `fedsynth train-classifier`) or pass the directory that holds it"
    )]
    MissingCheckpoint(PathBuf),
    #[error("failed to read checkpoint file {path}: {message}")]
    ReadCheckpoint { path: PathBuf, message: String },
    #[error("failed to write checkpoint file {path}: {message}")]
    WriteCheckpoint { path: PathBuf, message: String },
    #[error("invalid serialized weights: {0}")]
    InvalidWeights(String),
}

/// Seeds an independent random stream for `epoch` of a run seeded by `seed`,
/// so a resumed run shuffles and samples exactly as an uninterrupted one.
pub(crate) fn epoch_rng(seed: u64, epoch: usize) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    let mixed = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    rand::rngs::StdRng::seed_from_u64(mixed)
}

#[cfg(test)]
pub(crate) mod test_data {
    //! Small slices of the real CIFAR-10 files for tests.

    use std::path::PathBuf;

    use crate::data::{ImageSet, cifar};

    /// Returns the CIFAR-10 directory: `FEDSYNTH_DATA`, else the shared copy
    /// beside the repository.
    pub fn data_dir() -> PathBuf {
        std::env::var_os("FEDSYNTH_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../shared/cifar10/cifar-10-batches-bin")
            })
    }

    /// Reads the first `count` images of the first training batch.
    pub fn train_images(count: usize) -> ImageSet {
        let set = ImageSet::read(&data_dir().join(cifar::TRAIN_FILES[0]))
            .expect("CIFAR-10 data present; set FEDSYNTH_DATA");
        set.select(&(0..count).collect::<Vec<_>>())
    }

    /// Reads the first `count` images of the test batch.
    pub fn test_images(count: usize) -> ImageSet {
        let set = ImageSet::read(&data_dir().join(cifar::TEST_FILE))
            .expect("CIFAR-10 data present; set FEDSYNTH_DATA");
        set.select(&(0..count).collect::<Vec<_>>())
    }
}
