//! DCGAN training. One step at batch B updates the discriminator on B/2
//! real images labelled 1 and B/2 generated images labelled 0, then updates
//! the generator through the discriminator (its weights fixed) on B latent
//! vectors labelled 1. As in the reference notebook, an epoch is
//! ceil(N / B) steps, so it draws half of the N real images. The next
//! epoch reshuffles and draws a fresh half.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::StandardNormal;

use super::adam::FusedAdam;
use super::checkpoint::{self, DISCRIMINATOR, GENERATOR, TrainingState};
use super::losses::bce_with_logits;
use super::tensors::{PixelScale, images_to_tensor};
use super::{EpochSummary, TrainError, TrainHooks, epoch_rng};
use crate::data::{IMAGE_BYTES, ImageSet};
use crate::models::{Discriminator, DiscriminatorConfig, Generator, GeneratorConfig};

/// Settings of a GAN training run. The defaults are the reference run.
#[derive(Config, Debug)]
pub struct GanTrainConfig {
    /// Epoch number to stop at; a resumed run counts the epochs already done.
    #[config(default = 200)]
    pub epochs: usize,
    /// Images per step: half real, half generated for the discriminator.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Adam learning rate of both networks.
    #[config(default = 2e-4)]
    pub learning_rate: f64,
    /// Adam beta1 of both networks.
    #[config(default = 0.5)]
    pub beta1: f64,
    /// Seed of shuffling, latent vectors and dropout.
    #[config(default = 0)]
    pub seed: u64,
    /// Generator sizes.
    #[config(default = "GeneratorConfig::new()")]
    pub generator: GeneratorConfig,
    /// Discriminator sizes.
    #[config(default = "DiscriminatorConfig::new()")]
    pub discriminator: DiscriminatorConfig,
}

impl GanTrainConfig {
    /// Checks the settings against a training set of `images` images.
    pub fn validate(&self, images: usize) -> Result<(), TrainError> {
        self.validate_settings()?;
        if images == 0 {
            return Err(TrainError::InvalidInput(
                "the GAN training set is empty; give it at least one image".to_string(),
            ));
        }
        Ok(())
    }

    /// Checks the settings on their own, before any image is loaded.
    pub fn validate_settings(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(TrainError::InvalidConfig(
                "GAN epochs 0 trains nothing; give the epoch number to stop at, at least 1"
                    .to_string(),
            ));
        }
        if self.batch_size < 2 {
            return Err(TrainError::InvalidConfig(format!(
                "GAN batch_size {} is too small; it must be at least 2 (half real, half generated)",
                self.batch_size
            )));
        }
        if !self.batch_size.is_multiple_of(2) {
            return Err(TrainError::InvalidConfig(format!(
                "GAN batch_size {} is odd; it must be even (half real, half generated images), e.g. {}",
                self.batch_size,
                self.batch_size + 1
            )));
        }
        if self.generator.latent_dim == 0 {
            return Err(TrainError::InvalidConfig(
                "GAN latent_dim 0 leaves the generator no input; give at least 1".to_string(),
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(TrainError::InvalidConfig(format!(
                "GAN learning_rate {} must be a positive number",
                self.learning_rate
            )));
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return Err(TrainError::InvalidConfig(format!(
                "GAN beta1 {} must be in [0, 1)",
                self.beta1
            )));
        }
        Ok(())
    }
}

/// Trained GAN networks, on the plain (inference) device.
#[derive(Debug)]
pub struct GanModels {
    pub generator: Generator,
    pub discriminator: Discriminator,
    /// Epochs finished, including those before a resume.
    pub epochs_done: usize,
}

/// Mean losses of one GAN step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GanStepLosses {
    /// Discriminator loss, the mean of its real and fake halves.
    pub discriminator: f64,
    /// Generator loss.
    pub generator: f64,
}

/// The networks and optimizers of a GAN in training, on an autodiff device.
pub struct GanTrainer {
    pub generator: Generator,
    pub discriminator: Discriminator,
    generator_optimizer: ModuleOptimizer,
    discriminator_optimizer: ModuleOptimizer,
    learning_rate: f64,
    latent_dim: usize,
    device: Device,
}

impl GanTrainer {
    /// Builds fresh networks on the autodiff version of `device`.
    pub fn new(config: &GanTrainConfig, device: &Device) -> GanTrainer {
        let device = device.clone().autodiff();
        // NOTE: burn's flex backend keeps one process-wide generator, so
        // initial weights and dropout masks repeat across runs only when no
        // other training runs concurrently in the same process.
        device.seed(config.seed);
        let adam = FusedAdam {
            beta_1: config.beta1 as f32,
            beta_2: 0.999,
            epsilon: 1e-7,
        };
        GanTrainer {
            generator: config.generator.init(&device),
            discriminator: config.discriminator.init(&device),
            generator_optimizer: adam.init(),
            discriminator_optimizer: adam.init(),
            learning_rate: config.learning_rate,
            latent_dim: config.generator.latent_dim,
            device,
        }
    }

    /// Runs one step on `real` (pixel bytes of the real half-batch).
    ///
    /// Returns the name of the loss that was not finite as the error, before
    /// the update it would have poisoned.
    pub fn step(&mut self, real: &[u8], rng: &mut StdRng) -> Result<GanStepLosses, &'static str> {
        let count = real.len() / IMAGE_BYTES;

        // Discriminator: real half labelled 1, generated half labelled 0. Each
        // half gets its own forward pass, so batch norm normalises one kind at
        // a time.
        let real = images_to_tensor(real, &self.device, PixelScale::Gan);
        let fake = self.generator.forward(self.latent(count, rng)).detach();
        let loss_real = bce_with_logits(self.discriminator.forward(real), 1.0);
        let loss_fake = bce_with_logits(self.discriminator.forward(fake), 0.0);
        let loss_d = (loss_real + loss_fake).mul_scalar(0.5);
        let discriminator_loss = finite_scalar(&loss_d).ok_or("discriminator")?;
        let grads = GradientsParams::from_grads(loss_d.backward(), &self.discriminator);
        self.discriminator = self.discriminator_optimizer.step(
            self.learning_rate,
            self.discriminator.clone(),
            grads,
        );

        // Generator: through a copy of the discriminator whose weights need no
        // gradient, on twice as many latent vectors, labelled 1.
        let critic = self.discriminator.clone().no_grad();
        let generated = self.generator.forward(self.latent(2 * count, rng));
        let loss_g = bce_with_logits(critic.forward(generated), 1.0);
        let generator_loss = finite_scalar(&loss_g).ok_or("generator")?;
        let grads = GradientsParams::from_grads(loss_g.backward(), &self.generator);
        self.generator =
            self.generator_optimizer
                .step(self.learning_rate, self.generator.clone(), grads);

        Ok(GanStepLosses {
            discriminator: discriminator_loss,
            generator: generator_loss,
        })
    }

    fn latent(&self, count: usize, rng: &mut StdRng) -> Tensor<2> {
        let values: Vec<f32> = (0..count * self.latent_dim)
            .map(|_| rng.sample(StandardNormal))
            .collect();
        Tensor::from_data(
            TensorData::new(values, [count, self.latent_dim]),
            &self.device,
        )
    }

    fn save(
        &self,
        dir: &std::path::Path,
        config: &GanTrainConfig,
        epochs_done: usize,
    ) -> Result<(), TrainError> {
        checkpoint::save_model(dir, GENERATOR, &self.generator, &config.generator)?;
        checkpoint::save_model(
            dir,
            DISCRIMINATOR,
            &self.discriminator,
            &config.discriminator,
        )?;
        checkpoint::save_resume_model(dir, GENERATOR, &self.generator, &self.generator_optimizer)?;
        checkpoint::save_resume_model(
            dir,
            DISCRIMINATOR,
            &self.discriminator,
            &self.discriminator_optimizer,
        )?;
        checkpoint::save_state(dir, &TrainingState { epochs_done })
    }

    fn restore(&mut self, dir: &std::path::Path) -> Result<(), TrainError> {
        let (generator, optimizer) = checkpoint::load_resume_model(
            dir,
            GENERATOR,
            self.generator.clone(),
            self.generator_optimizer.clone(),
        )?;
        let (discriminator, d_optimizer) = checkpoint::load_resume_model(
            dir,
            DISCRIMINATOR,
            self.discriminator.clone(),
            self.discriminator_optimizer.clone(),
        )?;
        self.generator = generator;
        self.generator_optimizer = optimizer;
        self.discriminator = discriminator;
        self.discriminator_optimizer = d_optimizer;
        Ok(())
    }
}

/// Trains a DCGAN on `images` and returns the networks on the plain device.
///
/// With `hooks.checkpoint_dir` a checkpoint is written after every epoch.
/// With `hooks.resume` too, training continues from the checkpoint found
/// there, and `config.epochs` counts the epochs already done.
pub fn train_gan(
    images: &ImageSet,
    config: &GanTrainConfig,
    device: &Device,
    mut hooks: TrainHooks,
) -> Result<GanModels, TrainError> {
    config.validate(images.len())?;
    let mut trainer = GanTrainer::new(config, device);
    let mut epochs_done = 0;
    if let (true, Some(dir)) = (hooks.resume, hooks.checkpoint_dir.as_deref())
        && let Some(state) = checkpoint::load_state(dir)?
    {
        trainer.restore(dir)?;
        epochs_done = state.epochs_done;
        tracing::info!(dir = %dir.display(), epochs_done, "resumed GAN training from checkpoint");
    }

    let real_per_step = config.batch_size / 2;
    let steps = images.len().div_ceil(config.batch_size);
    if images.len() < real_per_step {
        tracing::warn!(
            images = images.len(),
            batch_size = config.batch_size,
            "fewer images than the real half of one batch, so every epoch is one short step; lower --batch-size or use more images"
        );
    }
    tracing::info!(
        images = images.len(),
        steps_per_epoch = steps,
        batch_size = config.batch_size,
        from_epoch = epochs_done + 1,
        to_epoch = config.epochs,
        "training GAN"
    );
    for epoch in epochs_done + 1..=config.epochs {
        let started = Instant::now();
        let mut rng = epoch_rng(config.seed, epoch);
        trainer.device.seed(rng.random());
        let mut order: Vec<usize> = (0..images.len()).collect();
        order.shuffle(&mut rng);

        let bar = crate::progress::bar(steps as u64, hooks.progress_label.clone());
        let (mut d_total, mut g_total) = (0.0, 0.0);
        for (step, indices) in order.chunks(real_per_step).take(steps).enumerate() {
            let real = images.select(indices).images;
            let losses =
                trainer
                    .step(&real, &mut rng)
                    .map_err(|loss_name| TrainError::NonFinite {
                        epoch,
                        step: step + 1,
                        loss_name: loss_name.to_string(),
                    })?;
            d_total += losses.discriminator;
            g_total += losses.generator;
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
            losses: vec![
                ("discriminator".to_string(), d_total / steps as f64),
                ("generator".to_string(), g_total / steps as f64),
            ],
            seconds,
            images_per_second: (steps * config.batch_size) as f64 / seconds,
        };
        tracing::info!(
            "GAN epoch {}/{}: d_loss {:.4}, g_loss {:.4}, {:.1} s, {:.0} images/s",
            epoch,
            config.epochs,
            summary.losses[0].1,
            summary.losses[1].1,
            seconds,
            summary.images_per_second
        );
        if let Some(on_epoch) = hooks.on_epoch.as_mut() {
            on_epoch(&summary);
        }
    }

    Ok(GanModels {
        generator: trainer.generator.valid(),
        discriminator: trainer.discriminator.valid(),
        epochs_done,
    })
}

/// Reads a one-element loss, or `None` when it is NaN or infinite.
pub(crate) fn finite_scalar(loss: &Tensor<1>) -> Option<f64> {
    let value: f32 = loss.clone().into_scalar();
    value.is_finite().then_some(value as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::trainable_params;
    use crate::training::checkpoint;
    use crate::training::infer::sample_images;
    use crate::training::test_data::train_images;

    fn tiny_config(epochs: usize) -> GanTrainConfig {
        GanTrainConfig::new()
            .with_epochs(epochs)
            .with_batch_size(16)
            .with_seed(7)
    }

    fn weights(module: &impl Module) -> Vec<u8> {
        checkpoint::module_to_bytes(module).unwrap()
    }

    #[test]
    fn gan_step_updates_both_networks() {
        let device = Device::flex();
        let config = tiny_config(1);
        let mut trainer = GanTrainer::new(&config, &device);
        let generator_before = weights(&trainer.generator);
        let discriminator_before = weights(&trainer.discriminator);
        let real = train_images(8).images;
        let mut rng = epoch_rng(1, 1);
        let losses = trainer.step(&real, &mut rng).unwrap();
        assert!(losses.discriminator.is_finite());
        assert!(losses.generator.is_finite());
        assert!(weights(&trainer.generator) != generator_before);
        assert!(weights(&trainer.discriminator) != discriminator_before);
    }

    #[test]
    fn critic_copy_keeps_discriminator_trainable() {
        let device = Device::flex();
        let mut trainer = GanTrainer::new(&tiny_config(1), &device);
        let real = train_images(4).images;
        let mut rng = epoch_rng(1, 1);
        trainer.step(&real, &mut rng).unwrap();
        let before = weights(&trainer.discriminator);
        trainer.step(&real, &mut rng).unwrap();
        assert!(weights(&trainer.discriminator) != before);
        assert_eq!(
            trainable_params(&trainer.discriminator),
            trainable_params(&DiscriminatorConfig::new().init(&device))
        );
    }

    #[test]
    fn train_gan_reports_each_epoch() {
        let images = train_images(24);
        let mut summaries = Vec::new();
        let mut record = |summary: &EpochSummary| summaries.push(summary.clone());
        let hooks = TrainHooks {
            on_epoch: Some(&mut record),
            ..TrainHooks::default()
        };
        let models = train_gan(&images, &tiny_config(2), &Device::flex(), hooks).unwrap();
        assert_eq!(models.epochs_done, 2);
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[1].epoch, 2);
        assert_eq!(summaries[1].epochs, 2);
        assert_eq!(summaries[0].losses.len(), 2);
        assert!(summaries[0].losses.iter().all(|(_, loss)| loss.is_finite()));
        assert!(summaries[0].images_per_second > 0.0);
    }

    #[test]
    fn resume_restores_weights_and_carries_epoch_count() {
        let images = train_images(16);
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let mut epochs_seen = Vec::new();
        let mut record = |summary: &EpochSummary| epochs_seen.push(summary.epoch);
        fn hooks<'a>(
            dir: &std::path::Path,
            on_epoch: Option<&'a mut dyn FnMut(&EpochSummary)>,
        ) -> TrainHooks<'a> {
            TrainHooks {
                checkpoint_dir: Some(dir.to_path_buf()),
                resume: true,
                on_epoch,
                ..TrainHooks::default()
            }
        }

        let first = train_gan(&images, &tiny_config(1), &device, hooks(dir.path(), None)).unwrap();
        let (saved, _) = checkpoint::load_generator(dir.path(), &device).unwrap();
        let first_samples = sample_images(&first.generator, 2, 100, 3, &device);
        assert!(first_samples == sample_images(&saved, 2, 100, 3, &device));

        // Epoch 1 is done, so asking for 1 epoch trains nothing more.
        let again = train_gan(&images, &tiny_config(1), &device, hooks(dir.path(), None)).unwrap();
        assert_eq!(again.epochs_done, 1);
        assert!(first_samples == sample_images(&again.generator, 2, 100, 3, &device));

        let resumed = train_gan(
            &images,
            &tiny_config(3),
            &device,
            hooks(dir.path(), Some(&mut record)),
        )
        .unwrap();
        assert_eq!(resumed.epochs_done, 3);
        assert_eq!(epochs_seen, vec![2, 3]);
        assert!(first_samples != sample_images(&resumed.generator, 2, 100, 3, &device));
        let state = checkpoint::load_state(dir.path()).unwrap().unwrap();
        assert_eq!(state.epochs_done, 3);
    }

    #[test]
    fn rejects_batch_size_below_two() {
        let err = tiny_config(1).with_batch_size(1).validate(10).unwrap_err();
        assert!(err.to_string().contains("batch_size 1"), "{err}");
    }

    #[test]
    fn rejects_odd_batch_size() {
        let err = tiny_config(1).with_batch_size(3).validate(10).unwrap_err();
        assert!(err.to_string().contains("batch_size 3 is odd"), "{err}");
    }

    #[test]
    fn rejects_zero_epochs() {
        let err = tiny_config(0).validate(10).unwrap_err();
        assert!(err.to_string().contains("epochs 0"), "{err}");
    }

    #[test]
    fn rejects_zero_latent_dim() {
        let config = tiny_config(1).with_generator(GeneratorConfig::new().with_latent_dim(0));
        let err = config.validate(10).unwrap_err();
        assert!(err.to_string().contains("latent_dim 0"), "{err}");
    }

    #[test]
    fn rejects_empty_image_set() {
        let err = train_gan(
            &ImageSet::default(),
            &tiny_config(1),
            &Device::flex(),
            TrainHooks::default(),
        )
        .unwrap_err();
        assert!(matches!(err, TrainError::InvalidInput(_)), "{err}");
    }

    #[test]
    fn nan_learning_rate_is_rejected() {
        let err = tiny_config(1)
            .with_learning_rate(f64::NAN)
            .validate(10)
            .unwrap_err();
        assert!(err.to_string().contains("learning_rate"), "{err}");
    }
}
