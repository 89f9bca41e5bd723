//! Classifier training with Adamax and an exponentially decayed learning
//! rate, against probability targets: one-hot rows for real labels, soft
//! labels for synthetic sets.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::RngExt;
use rand::seq::SliceRandom;

use super::adamax::AdamaxConfig;
use super::checkpoint::{self, CLASSIFIER, TrainingState};
use super::gan::finite_scalar;
use super::losses::soft_cross_entropy;
use super::tensors::{PixelScale, images_to_tensor};
use super::{EpochSummary, TrainError, TrainHooks, epoch_rng};
use crate::data::{CLASS_COUNT, IMAGE_BYTES};
use crate::models::{Classifier, ClassifierConfig};

/// Settings of a classifier training run. The defaults are the reference run.
#[derive(Config, Debug)]
pub struct ClassifierTrainConfig {
    /// Epoch number to stop at; a resumed run counts the epochs already done.
    #[config(default = 10)]
    pub epochs: usize,
    /// Images per step.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Adamax learning rate of the first epoch.
    #[config(default = 5e-3)]
    pub learning_rate: f64,
    /// Factor applied to the learning rate after every epoch.
    #[config(default = 0.9)]
    pub lr_decay: f64,
    /// Seed of shuffling and dropout.
    #[config(default = 0)]
    pub seed: u64,
    /// Classifier sizes.
    #[config(default = "ClassifierConfig::new()")]
    pub model: ClassifierConfig,
}

impl ClassifierTrainConfig {
    /// Learning rate of `epoch` (counted from 1).
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        self.learning_rate * self.lr_decay.powi(epoch as i32 - 1)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(TrainError::InvalidConfig(
                "classifier epochs 0 trains nothing; give the epoch number to stop at, at least 1"
                    .to_string(),
            ));
        }
        if self.batch_size == 0 {
            return Err(TrainError::InvalidConfig(
                "classifier batch_size must be at least 1".to_string(),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(TrainError::InvalidConfig(format!(
                "classifier learning_rate {} must be a positive number",
                self.learning_rate
            )));
        }
        if !(self.lr_decay.is_finite() && self.lr_decay > 0.0) {
            return Err(TrainError::InvalidConfig(format!(
                "classifier lr_decay {} must be a positive number",
                self.lr_decay
            )));
        }
        Ok(())
    }
}

/// A trained classifier, on the plain (inference) device.
#[derive(Debug)]
pub struct TrainedClassifier {
    pub classifier: Classifier,
    /// Epochs finished, including those before a resume.
    pub epochs_done: usize,
}

/// One-hot probability rows (10 per label) for hard labels.
pub fn one_hot(labels: &[u8]) -> Vec<f32> {
    let mut targets = vec![0.0; labels.len() * CLASS_COUNT];
    for (row, &label) in labels.iter().enumerate() {
        targets[row * CLASS_COUNT + label as usize] = 1.0;
    }
    targets
}

/// The classifier and its optimizer in training, on an autodiff device.
pub struct ClassifierTrainer {
    pub classifier: Classifier,
    optimizer: ModuleOptimizer,
    device: Device,
}

impl ClassifierTrainer {
    /// Builds a fresh classifier on the autodiff version of `device`.
    pub fn new(config: &ClassifierTrainConfig, device: &Device) -> ClassifierTrainer {
        let device = device.clone().autodiff();
        ClassifierTrainer {
            classifier: config.model.init(&device),
            optimizer: AdamaxConfig::new().init(),
            device,
        }
    }

    /// Runs one step on pixel bytes `images` and their probability rows.
    /// Returns `None` when the loss is not finite, before updating.
    pub fn step(&mut self, images: &[u8], targets: &[f32], learning_rate: f64) -> Option<f64> {
        let count = images.len() / IMAGE_BYTES;
        let x = images_to_tensor(images, &self.device, PixelScale::Classifier);
        let targets = Tensor::<2>::from_data(
            TensorData::new(targets.to_vec(), [count, CLASS_COUNT]),
            &self.device,
        );
        let loss = soft_cross_entropy(self.classifier.forward(x), targets);
        let value = finite_scalar(&loss)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.classifier);
        self.classifier = self
            .optimizer
            .step(learning_rate, self.classifier.clone(), grads);
        Some(value)
    }

    fn save(
        &self,
        dir: &Path,
        config: &ClassifierTrainConfig,
        epochs_done: usize,
    ) -> Result<(), TrainError> {
        checkpoint::save_model(dir, CLASSIFIER, &self.classifier, &config.model)?;
        checkpoint::save_resume_model(dir, CLASSIFIER, &self.classifier, &self.optimizer)?;
        checkpoint::save_state(dir, &TrainingState { epochs_done })
    }

    fn restore(&mut self, dir: &Path) -> Result<(), TrainError> {
        let (classifier, optimizer) = checkpoint::load_resume_model(
            dir,
            CLASSIFIER,
            self.classifier.clone(),
            self.optimizer.clone(),
        )?;
        self.classifier = classifier;
        self.optimizer = optimizer;
        Ok(())
    }
}

/// Trains a classifier on pixel bytes `images` against `targets`, N * 10
/// probabilities (one-hot for hard labels, soft labels for synthetic sets),
/// with cross-entropy against them.
///
/// Checkpointing and resuming work as in [`super::train_gan`].
pub fn train_classifier(
    images: &[u8],
    targets: &[f32],
    config: &ClassifierTrainConfig,
    device: &Device,
    mut hooks: TrainHooks,
) -> Result<TrainedClassifier, TrainError> {
    config.validate()?;
    let count = validate_inputs(images, targets)?;
    let mut trainer = ClassifierTrainer::new(config, device);
    let mut epochs_done = 0;
    if let (true, Some(dir)) = (hooks.resume, hooks.checkpoint_dir.as_deref())
        && let Some(state) = checkpoint::load_state(dir)?
    {
        trainer.restore(dir)?;
        epochs_done = state.epochs_done;
        tracing::info!(dir = %dir.display(), epochs_done, "resumed classifier training from checkpoint");
    }

    let steps = count.div_ceil(config.batch_size);
    if count < config.batch_size {
        tracing::warn!(
            images = count,
            batch_size = config.batch_size,
            "fewer images than one batch, so every epoch is one short batch; lower --batch-size or use more images"
        );
    }
    tracing::info!(
        images = count,
        steps_per_epoch = steps,
        batch_size = config.batch_size,
        from_epoch = epochs_done + 1,
        to_epoch = config.epochs,
        "training classifier"
    );
    let mut batch_images = Vec::with_capacity(config.batch_size * IMAGE_BYTES);
    let mut batch_targets = Vec::with_capacity(config.batch_size * CLASS_COUNT);
    for epoch in epochs_done + 1..=config.epochs {
        let started = Instant::now();
        let learning_rate = config.learning_rate_at(epoch);
        let mut rng = epoch_rng(config.seed, epoch);
        trainer.device.seed(rng.random());
        let mut order: Vec<usize> = (0..count).collect();
        order.shuffle(&mut rng);

        let bar = crate::progress::bar(steps as u64, hooks.progress_label.clone());
        let mut total = 0.0;
        for (step, indices) in order.chunks(config.batch_size).enumerate() {
            batch_images.clear();
            batch_targets.clear();
            for &index in indices {
                batch_images.extend_from_slice(&images[index * IMAGE_BYTES..][..IMAGE_BYTES]);
                batch_targets.extend_from_slice(&targets[index * CLASS_COUNT..][..CLASS_COUNT]);
            }
            total += trainer
                .step(&batch_images, &batch_targets, learning_rate)
                .ok_or_else(|| TrainError::NonFinite {
                    epoch,
                    step: step + 1,
                    loss_name: "cross_entropy".to_string(),
                })?;
            bar.inc(1);
        }
        bar.finish_and_clear();

        if let Some(dir) = hooks.checkpoint_dir.as_deref() {
            trainer.save(dir, config, epoch)?;
        }
        epochs_done = epoch;
        let seconds = started.elapsed().as_secs_f64();
        let summary = EpochSummary {
            epoch,
            epochs: config.epochs,
            losses: vec![("cross_entropy".to_string(), total / steps as f64)],
            seconds,
            images_per_second: count as f64 / seconds,
        };
        tracing::info!(
            "classifier epoch {}/{}: loss {:.4}, lr {:.2e}, {:.1} s, {:.0} images/s",
            epoch,
            config.epochs,
            summary.losses[0].1,
            learning_rate,
            seconds,
            summary.images_per_second
        );
        if let Some(on_epoch) = hooks.on_epoch.as_mut() {
            on_epoch(&summary);
        }
    }

    Ok(TrainedClassifier {
        classifier: trainer.classifier.valid(),
        epochs_done,
    })
}

/// Checks that `images` and `targets` describe the same non-empty set of
/// images with finite, non-negative targets; returns the image count.
fn validate_inputs(images: &[u8], targets: &[f32]) -> Result<usize, TrainError> {
    if !images.len().is_multiple_of(IMAGE_BYTES) {
        return Err(TrainError::InvalidInput(format!(
            "{} image bytes is not a multiple of {IMAGE_BYTES} (one 3x32x32 image)",
            images.len()
        )));
    }
    let count = images.len() / IMAGE_BYTES;
    if count == 0 {
        return Err(TrainError::InvalidInput(
            "the classifier training set is empty; give it at least one image".to_string(),
        ));
    }
    if targets.len() != count * CLASS_COUNT {
        return Err(TrainError::InvalidInput(format!(
            "{} targets for {count} images; expected {CLASS_COUNT} probabilities per image ({})",
            targets.len(),
            count * CLASS_COUNT
        )));
    }
    if let Some(index) = targets.iter().position(|t| !t.is_finite() || *t < 0.0) {
        return Err(TrainError::InvalidInput(format!(
            "target {} of image {} is {}; targets must be finite probabilities",
            index % CLASS_COUNT,
            index / CLASS_COUNT,
            targets[index]
        )));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::infer::{evaluate, predict_proba};
    use crate::training::test_data::{test_images, train_images};

    fn tiny_config(epochs: usize) -> ClassifierTrainConfig {
        ClassifierTrainConfig::new()
            .with_epochs(epochs)
            .with_seed(5)
    }

    #[test]
    fn one_hot_sets_one_entry_per_row() {
        let targets = one_hot(&[2, 0]);
        assert_eq!(targets.len(), 20);
        assert_eq!(targets[2], 1.0);
        assert_eq!(targets[10], 1.0);
        assert_eq!(targets.iter().sum::<f32>(), 2.0);
    }

    #[test]
    fn learning_rate_decays_per_epoch() {
        let config = ClassifierTrainConfig::new();
        assert_eq!(config.learning_rate_at(1), 5e-3);
        assert!((config.learning_rate_at(3) - 5e-3 * 0.81).abs() < 1e-12);
    }

    #[test]
    fn rejects_zero_epochs() {
        let err = tiny_config(0).validate().unwrap_err();
        assert!(err.to_string().contains("epochs 0"), "{err}");
    }

    #[test]
    fn rejects_targets_of_wrong_length() {
        let images = train_images(2);
        let err = train_classifier(
            &images.images,
            &one_hot(&images.labels[..1]),
            &tiny_config(1),
            &Device::flex(),
            TrainHooks::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("10 targets for 2 images"), "{err}");
    }

    #[test]
    fn rejects_nan_target() {
        let images = train_images(1);
        let mut targets = one_hot(&images.labels);
        targets[3] = f32::NAN;
        let err = train_classifier(
            &images.images,
            &targets,
            &tiny_config(1),
            &Device::flex(),
            TrainHooks::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("target 3 of image 0"), "{err}");
    }

    #[test]
    fn huge_learning_rate_stops_with_non_finite_loss() {
        let images = train_images(64);
        let config = tiny_config(3).with_learning_rate(1e30);
        let err = train_classifier(
            &images.images,
            &one_hot(&images.labels),
            &config,
            &Device::flex(),
            TrainHooks::default(),
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::NonFinite { .. }), "{err}");
    }

    #[test]
    fn training_fits_a_small_set() {
        // 256 real images, 8 epochs: the training loss must fall clearly below
        // ln(10) = 2.30, the loss of a uniform guess, and the set be fitted
        // well above the 10% of chance.
        let images = train_images(256);
        let mut losses = Vec::new();
        let mut record = |summary: &EpochSummary| losses.push(summary.losses[0].1);
        let hooks = TrainHooks {
            on_epoch: Some(&mut record),
            ..TrainHooks::default()
        };
        let device = Device::flex();
        let trained = train_classifier(
            &images.images,
            &one_hot(&images.labels),
            &tiny_config(8),
            &device,
            hooks,
        )
        .unwrap();
        assert_eq!(trained.epochs_done, 8);
        assert_eq!(losses.len(), 8);
        assert!(losses[7] < losses[0], "losses {losses:?}");
        assert!(losses[7] < 2.0, "losses {losses:?}");

        let evaluation = evaluate(&trained.classifier, &images, &device);
        assert!(
            evaluation.accuracy > 0.3,
            "train accuracy {}",
            evaluation.accuracy
        );
        let test = test_images(20);
        let probabilities = predict_proba(&trained.classifier, &test.images, &device);
        assert_eq!(probabilities.len(), 200);
    }

    #[test]
    fn classifier_resume_carries_epoch_count() {
        let images = train_images(32);
        let targets = one_hot(&images.labels);
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let hooks = || TrainHooks {
            checkpoint_dir: Some(dir.path().to_path_buf()),
            resume: true,
            ..TrainHooks::default()
        };
        train_classifier(&images.images, &targets, &tiny_config(1), &device, hooks()).unwrap();
        let resumed =
            train_classifier(&images.images, &targets, &tiny_config(2), &device, hooks()).unwrap();
        assert_eq!(resumed.epochs_done, 2);
        let state = checkpoint::load_state(dir.path()).unwrap().unwrap();
        assert_eq!(state.epochs_done, 2);
        let (loaded, _) = checkpoint::load_classifier(dir.path(), &device).unwrap();
        let a = predict_proba(&resumed.classifier, &images.images, &device);
        let b = predict_proba(&loaded, &images.images, &device);
        assert!(a == b, "saved classifier differs from the returned one");
    }
}
