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
    /// Median over the timed steps, as `bench/steps_baselines.py` reports
    /// PyTorch's and Keras's steps.
    pub seconds_per_step: f64,
    pub images_per_second: f64,
}

/// Runs `fedsynth bench steps`.
pub fn bench_steps(args: BenchStepsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.iters == 0 {
        anyhow::bail!("invalid --iters 0: time at least 1 step");
    }
    if args.gan_batch < 2 || !args.gan_batch.is_multiple_of(2) {
        anyhow::bail!(
            "invalid --gan-batch {}: use an even number of at least 2 (half real, half generated images), such as 128",
            args.gan_batch
        );
    }
    if args.classifier_batch == 0 {
        anyhow::bail!("invalid --classifier-batch 0: use at least 1, such as 32");
    }
    let device = global.backend().device()?;
    let threads = crate::backend::configure_threads(global.threads())?;
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
        "GAN step (batch {}):        median {:.4} s/step, {:.1} images/s",
        args.gan_batch, gan_timing.seconds_per_step, gan_timing.images_per_second
    );
    println!(
        "classifier step (batch {}): median {:.4} s/step, {:.1} images/s",
        args.classifier_batch,
        classifier_timing.seconds_per_step,
        classifier_timing.images_per_second
    );
    Ok(())
}

/// Times `iters` calls of `step` after `warmup` untimed ones, and returns
/// the median.
fn time_steps(
    warmup: usize,
    iters: usize,
    batch: usize,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<StepTiming> {
    for _ in 0..warmup {
        step()?;
    }
    let mut seconds = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        step()?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    let seconds_per_step = median(&mut seconds);
    Ok(StepTiming {
        seconds_per_step,
        images_per_second: batch as f64 / seconds_per_step,
    })
}

/// Returns the median of `values`, the mean of the middle two for an even
/// count. `values` must not be empty.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_count() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn median_of_even_count() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
