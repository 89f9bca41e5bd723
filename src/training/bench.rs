//! `fedsynth bench steps`: wall time of one reference GAN step and one
//! classifier step on the chosen backend, on random pixel bytes (the
//! values do not change the amount of work).

use std::time::Instant;

use clap::Args;
use rand::RngExt;

use super::classifier::ClassifierTrainer;
use super::gan::GanTrainer;
use super::{ClassifierTrainConfig, GanTrainConfig, epoch_rng, one_hot};
use crate::cli::GlobalArgs;
use crate::data::IMAGE_BYTES;

#[derive(Debug, Args)]
pub struct BenchStepsArgs {
    /// Untimed steps run first, for allocations and caches to settle.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// GAN batch: half real and half generated images for the discriminator.
    #[arg(long, default_value_t = 128)]
    pub gan_batch: usize,
    /// Classifier batch.
    #[arg(long, default_value_t = 32)]
    pub classifier_batch: usize,
}

/// Seconds per step and images per second of one kind of step.
#[derive(Clone, Copy, Debug)]
pub struct StepTiming {
    pub seconds_per_step: f64,
    pub images_per_second: f64,
}

/// Runs `fedsynth bench steps`.
pub fn bench_steps(args: BenchStepsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.iters == 0 {
        anyhow::bail!("--iters must be at least 1");
    }
    if args.gan_batch < 2 || args.classifier_batch == 0 {
        anyhow::bail!("--gan-batch must be at least 2 and --classifier-batch at least 1");
    }
    let device = global.backend().device()?;
    let threads = crate::backend::configure_threads(global.threads);
    let mut rng = epoch_rng(0, 0);

    // GAN: the batch counts all B images, so B/2 real images go in per step.
    let config = GanTrainConfig::new().with_batch_size(args.gan_batch);
    let mut gan = GanTrainer::new(&config, &device);
    let real: Vec<u8> = (0..args.gan_batch / 2 * IMAGE_BYTES)
        .map(|_| rng.random())
        .collect();
    let mut latent_rng = epoch_rng(0, 1);
    let gan_timing = time_steps(args.warmup, args.iters, args.gan_batch, || {
        gan.step(&real, &mut latent_rng)
            .map(|_| ())
            .map_err(|name| anyhow::anyhow!("{name} loss is not finite"))
    })?;

    let config = ClassifierTrainConfig::new().with_batch_size(args.classifier_batch);
    let mut classifier = ClassifierTrainer::new(&config, &device);
    let images: Vec<u8> = (0..args.classifier_batch * IMAGE_BYTES)
        .map(|_| rng.random())
        .collect();
    let labels: Vec<u8> = (0..args.classifier_batch).map(|i| (i % 10) as u8).collect();
    let targets = one_hot(&labels);
    let classifier_timing = time_steps(args.warmup, args.iters, args.classifier_batch, || {
        classifier
            .step(&images, &targets, config.learning_rate)
            .map(|_| ())
            .ok_or_else(|| anyhow::anyhow!("classifier loss is not finite"))
    })?;

    println!(
        "backend {} with {threads} threads, {} warm-up and {} timed steps",
        global.backend(),
        args.warmup,
        args.iters
    );
    println!(
        "GAN step (batch {}):        {:.3} s/step, {:.1} images/s",
        args.gan_batch, gan_timing.seconds_per_step, gan_timing.images_per_second
    );
    println!(
        "classifier step (batch {}): {:.3} s/step, {:.1} images/s",
        args.classifier_batch,
        classifier_timing.seconds_per_step,
        classifier_timing.images_per_second
    );
    Ok(())
}

/// Times `iters` calls of `step` after `warmup` untimed ones.
fn time_steps(
    warmup: usize,
    iters: usize,
    batch: usize,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<StepTiming> {
    for _ in 0..warmup {
        step()?;
    }
    let started = Instant::now();
    for _ in 0..iters {
        step()?;
    }
    let seconds_per_step = started.elapsed().as_secs_f64() / iters as f64;
    Ok(StepTiming {
        seconds_per_step,
        images_per_second: batch as f64 / seconds_per_step,
    })
}
