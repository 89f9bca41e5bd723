//! The local commands that mirror the reference notebook on one node:
//! `train-gan`, `train-classifier`, `sample`, `evaluate` and
//! `bench steps`. They parse flags into the training configs and call the
//! library functions; nothing here trains by itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::checkpoint;
use super::infer::{self, argmax};
use super::{ClassifierTrainConfig, GanTrainConfig, TrainHooks, one_hot};
use crate::cli::GlobalArgs;
use crate::data::{CLASS_COUNT, Cifar10, IMAGE_BYTES, ImageSet, location};
use crate::fsutil;
use crate::models::{ClassifierConfig, DiscriminatorConfig, GeneratorConfig};

pub use super::bench::{BenchStepsArgs, bench_steps};

/// Images drawn in the grid of `fedsynth sample`: the first ones only, so
/// the picture stays a few megabytes whatever `--count` is.
const GRID_MAX_IMAGES: usize = 1024;

/// Source of the training images.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// CIFAR-10 directory (cifar-10-batches-bin); defaults to FEDSYNTH_DATA, then the user cache.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TrainGanArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Checkpoint directory, written after every epoch.
    #[arg(long, value_name = "DIR", default_value = "checkpoints/gan")]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out, which must contain one. --epochs
    /// counts the epochs already done.
    #[arg(long)]
    pub resume: bool,
    /// Epoch number to stop at.
    #[arg(long, default_value_t = 200)]
    pub epochs: usize,
    /// Images per step, even: half real and half generated for the discriminator.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Adam learning rate of both networks.
    #[arg(long, default_value_t = 2e-4)]
    pub learning_rate: f64,
    /// Adam beta1 of both networks.
    #[arg(long, default_value_t = 0.5)]
    pub beta1: f64,
    /// Length of the generator's latent vector.
    #[arg(long, default_value_t = 100)]
    pub latent_dim: usize,
    /// Seed of initialisation, shuffling, latent vectors and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct TrainClassifierArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Train on this CIFAR-10 record file (e.g. a sampled set) instead of the
    /// training split; soft labels are read from FILE.labels.f32 when present,
    /// else the label bytes are used.
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Checkpoint directory, written after every epoch.
    #[arg(long, value_name = "DIR", default_value = "checkpoints/classifier")]
    pub out: PathBuf,
    /// Continue from the checkpoint in --out, which must contain one. --epochs
    /// counts the epochs already done.
    #[arg(long)]
    pub resume: bool,
    /// Epoch number to stop at.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adamax learning rate of the first epoch.
    #[arg(long, default_value_t = 5e-3)]
    pub learning_rate: f64,
    /// Factor applied to the learning rate after every epoch.
    #[arg(long, default_value_t = 0.9)]
    pub lr_decay: f64,
    /// Seed of initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Generator checkpoint directory (from train-gan).
    #[arg(long, value_name = "DIR")]
    pub generator: PathBuf,
    /// Number of images to sample, at most 500,000.
    #[arg(long, default_value_t = 64)]
    pub count: usize,
    /// Seed of the latent vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output file in CIFAR-10 record format. Each label byte is the argmax
    /// of --classifier, or 0 without one.
    #[arg(long, value_name = "FILE", default_value = "samples.bin")]
    pub out: PathBuf,
    /// Classifier checkpoint directory that labels the samples; its soft
    /// labels go to FILE.labels.f32 (N x 10 little-endian f32, row-major).
    #[arg(long, value_name = "DIR")]
    pub classifier: Option<PathBuf>,
    /// PNG grid of the first 1,024 samples at most; defaults to FILE with a
    /// .png extension. The name must end in .png.
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
    /// Images per row of the grid.
    #[arg(long, default_value_t = 8)]
    pub columns: usize,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Classifier checkpoint directory (from train-classifier).
    #[arg(long, value_name = "DIR")]
    pub classifier: PathBuf,
    /// CIFAR-10 directory; defaults to FEDSYNTH_DATA, then the user cache.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Directory for evaluation.json and evaluation.txt; defaults to the checkpoint directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `fedsynth train-gan`.
pub fn train_gan(args: TrainGanArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let config = GanTrainConfig::new()
        .with_epochs(args.epochs)
        .with_batch_size(args.batch_size)
        .with_learning_rate(args.learning_rate)
        .with_beta1(args.beta1)
        .with_seed(args.seed)
        .with_generator(GeneratorConfig::new().with_latent_dim(args.latent_dim))
        .with_discriminator(DiscriminatorConfig::new());
    config
        .validate_settings()
        .context("invalid train-gan flags")?;
    fsutil::require_dir_target(&args.out, "--out")?;
    require_resume_checkpoint(args.resume, &args.out)?;
    if args.resume {
        require_same_latent_dim(&args.out, args.latent_dim)?;
    }
    warn_when_resume_is_done(args.resume, &args.out, args.epochs)?;
    let device = global.backend().device()?;
    let threads = crate::backend::configure_threads(global.threads())?;
    let images = load_training_split(&args.data)?;
    tracing::info!(backend = %global.backend(), threads, images = images.len(), out = %args.out.display(), "train-gan");
    let hooks = TrainHooks {
        checkpoint_dir: Some(args.out.clone()),
        resume: args.resume,
        on_epoch: None,
        progress_label: "gan".to_string(),
    };
    let models =
        super::train_gan(&images, &config, &device, hooks).context("GAN training failed")?;
    // With no epoch left to run (a resume that is already done) nothing was
    // written, so write the checkpoint of the returned models too.
    checkpoint::save_generator(&args.out, &models.generator, &config.generator)?;
    tracing::info!(epochs_done = models.epochs_done, out = %args.out.display(), "generator saved");
    Ok(())
}

/// Runs `fedsynth train-classifier`.
pub fn train_classifier(args: TrainClassifierArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let config = ClassifierTrainConfig::new()
        .with_epochs(args.epochs)
        .with_batch_size(args.batch_size)
        .with_learning_rate(args.learning_rate)
        .with_lr_decay(args.lr_decay)
        .with_seed(args.seed)
        .with_model(ClassifierConfig::new());
    config
        .validate()
        .context("invalid train-classifier flags")?;
    fsutil::require_dir_target(&args.out, "--out")?;
    require_resume_checkpoint(args.resume, &args.out)?;
    warn_when_resume_is_done(args.resume, &args.out, args.epochs)?;
    let device = global.backend().device()?;
    let threads = crate::backend::configure_threads(global.threads())?;
    let (images, targets) = match &args.images {
        Some(path) => load_record_file(path, args.data.limit)?,
        None => {
            let set = load_training_split(&args.data)?;
            let targets = one_hot(&set.labels);
            (set.images, targets)
        }
    };
    tracing::info!(backend = %global.backend(), threads, images = images.len() / IMAGE_BYTES, out = %args.out.display(), "train-classifier");
    let hooks = TrainHooks {
        checkpoint_dir: Some(args.out.clone()),
        resume: args.resume,
        on_epoch: None,
        progress_label: "classifier".to_string(),
    };
    let trained = super::train_classifier(&images, &targets, &config, &device, hooks)
        .context("classifier training failed")?;
    checkpoint::save_classifier(&args.out, &trained.classifier, &config.model)?;
    tracing::info!(epochs_done = trained.epochs_done, out = %args.out.display(), "classifier saved");
    Ok(())
}

/// Runs `fedsynth sample`.
pub fn sample(args: SampleArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    if args.count > infer::MAX_SAMPLES {
        bail!(
            "invalid --count {}: one `fedsynth sample` call samples at most {} images, which it keeps in memory; sample in several calls with different --seed values",
            args.count,
            infer::MAX_SAMPLES
        );
    }
    if args.columns == 0 {
        bail!("--columns must be at least 1");
    }
    let grid = grid_path(&args)?;
    let device = global.backend().device()?;
    crate::backend::configure_threads(global.threads())?;
    let (generator, config) = checkpoint::load_generator(&args.generator, &device)?;
    let images = infer::sample_images(
        &generator,
        args.count,
        config.latent_dim,
        args.seed,
        &device,
    );

    let labels = match &args.classifier {
        Some(dir) => {
            let (classifier, _) = checkpoint::load_classifier(dir, &device)?;
            let probabilities = infer::predict_proba(&classifier, &images, &device);
            let path = soft_labels_path(&args.out);
            write_soft_labels(&path, &probabilities)?;
            tracing::info!(path = %path.display(), "soft labels written");
            probabilities
                .chunks(CLASS_COUNT)
                .map(|row| argmax(row) as u8)
                .collect()
        }
        None => vec![0; args.count],
    };
    let set = ImageSet { images, labels };
    set.write(&args.out)?;

    let grid_bytes = args.count.min(GRID_MAX_IMAGES) * IMAGE_BYTES;
    crate::imaging::write_grid_png(&set.images[..grid_bytes], args.columns, &grid)
        .with_context(|| format!("failed to write the sample grid {}", grid.display()))?;
    tracing::info!(count = args.count, out = %args.out.display(), grid = %grid.display(), "samples written");
    Ok(())
}

/// Runs `fedsynth evaluate`.
pub fn evaluate(args: EvaluateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        fsutil::require_dir_target(out, "--out")?;
    }
    let device = global.backend().device()?;
    crate::backend::configure_threads(global.threads())?;
    let (classifier, _) = checkpoint::load_classifier(&args.classifier, &device)?;
    let dir = location::resolve_data_dir(args.data.as_deref(), None)?;
    let (mut test, class_names) = Cifar10::load_test(&dir)?;
    if let Some(limit) = args.limit {
        test = first_images(&test, limit, "--limit", "the test split")?;
    }
    let evaluation = infer::evaluate(&classifier, &test, &device);
    let text = evaluation.to_text(&class_names);

    let out = args.out.unwrap_or_else(|| args.classifier.clone());
    let json_path = out.join("evaluation.json");
    fsutil::write_json_atomic(&json_path, &evaluation)
        .with_context(|| format!("failed to write {}", json_path.display()))?;
    let text_path = out.join("evaluation.txt");
    fsutil::write_atomic(&text_path, text.as_bytes())
        .with_context(|| format!("failed to write {}", text_path.display()))?;
    print!("{text}");
    tracing::info!(accuracy = evaluation.accuracy, count = evaluation.count, out = %out.display(), "evaluation written");
    Ok(())
}

/// Returns the grid's path: `--grid`, else `--out` with a .png extension.
/// The grid is always PNG, so any other extension is rejected.
fn grid_path(args: &SampleArgs) -> anyhow::Result<PathBuf> {
    let grid = args
        .grid
        .clone()
        .unwrap_or_else(|| args.out.with_extension("png"));
    let is_png = grid
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "--grid {}: the sample grid is written as PNG, so its name must end in .png, e.g. {}",
            grid.display(),
            grid.with_extension("png").display()
        );
    }
    if grid == args.out {
        bail!(
            "--out {} would be overwritten by the sample grid; give the records another extension, such as .bin, or pass --grid",
            args.out.display()
        );
    }
    Ok(grid)
}

/// Path of the soft labels written beside a record file: `FILE.labels.f32`.
pub fn soft_labels_path(records: &Path) -> PathBuf {
    let mut name = records.as_os_str().to_owned();
    name.push(".labels.f32");
    PathBuf::from(name)
}

/// Writes probabilities as little-endian f32, atomically.
pub fn write_soft_labels(path: &Path, probabilities: &[f32]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = probabilities.iter().flat_map(|p| p.to_le_bytes()).collect();
    fsutil::write_atomic(path, &bytes)
        .with_context(|| format!("failed to write {}", path.display()))
}

/// Reads soft labels written by [`write_soft_labels`] for `count` images.
pub fn read_soft_labels(path: &Path, count: usize) -> anyhow::Result<Vec<f32>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let expected = count * CLASS_COUNT * 4;
    if bytes.len() != expected {
        bail!(
            "{}: {} bytes, expected {expected} ({count} images x {CLASS_COUNT} f32); the labels do not belong to the record file beside them",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Fails when the generator checkpoint in `dir` was built for another
/// latent size than `--latent-dim`, whose weights would not load.
fn require_same_latent_dim(dir: &Path, latent_dim: usize) -> anyhow::Result<()> {
    let saved: GeneratorConfig = checkpoint::load_config(dir, checkpoint::GENERATOR)?;
    if saved.latent_dim != latent_dim {
        anyhow::bail!(
            "--resume: the checkpoint in {} was trained with --latent-dim {}, not {latent_dim}; pass --latent-dim {} to continue it",
            dir.display(),
            saved.latent_dim,
            saved.latent_dim
        );
    }
    Ok(())
}

/// Fails when `--resume` is given but `dir` contains no finished checkpoint,
/// so a mistyped `--out` does not start a fresh training silently.
fn require_resume_checkpoint(resume: bool, dir: &Path) -> anyhow::Result<()> {
    if resume && checkpoint::load_state(dir)?.is_none() {
        bail!(
            "--resume: no checkpoint found in --out {}; pass the --out directory of an earlier run, or drop --resume to start a fresh training there",
            dir.display()
        );
    }
    Ok(())
}

/// Warns when `--resume` finds `epochs` or more epochs already done, since
/// the command then trains nothing and only rewrites the checkpoint.
fn warn_when_resume_is_done(resume: bool, dir: &Path, epochs: usize) -> anyhow::Result<()> {
    if !resume {
        return Ok(());
    }
    if let Some(state) = checkpoint::load_state(dir)?
        && state.epochs_done >= epochs
    {
        tracing::warn!(
            epochs_done = state.epochs_done,
            epochs,
            "--resume: the checkpoint in {} has trained through epoch {}, so --epochs {epochs} trains nothing; pass --epochs {} or more to continue",
            dir.display(),
            state.epochs_done,
            state.epochs_done + 1
        );
    }
    Ok(())
}

fn load_training_split(args: &DataArgs) -> anyhow::Result<ImageSet> {
    let dir = location::resolve_data_dir(args.data.as_deref(), None)?;
    let cifar = Cifar10::load(&dir)?;
    match args.limit {
        Some(limit) => first_images(&cifar.train, limit, "--limit", "the training split"),
        None => Ok(cifar.train),
    }
}

/// Reads a record file and its soft labels (or one-hot label bytes).
fn load_record_file(path: &Path, limit: Option<usize>) -> anyhow::Result<(Vec<u8>, Vec<f32>)> {
    let set = ImageSet::read(path)?;
    let labels_path = soft_labels_path(path);
    let mut targets = if labels_path.is_file() {
        read_soft_labels(&labels_path, set.len())?
    } else {
        one_hot(&set.labels)
    };
    if let Some(limit) = limit {
        check_limit(limit, set.len(), "--limit", &path.display().to_string())?;
    }
    let count = limit.unwrap_or(set.len());
    targets.truncate(count * CLASS_COUNT);
    let mut images = set.images;
    images.truncate(count * IMAGE_BYTES);
    Ok((images, targets))
}

fn first_images(
    set: &ImageSet,
    limit: usize,
    flag: &str,
    source: &str,
) -> anyhow::Result<ImageSet> {
    check_limit(limit, set.len(), flag, source)?;
    Ok(set.select(&(0..limit).collect::<Vec<_>>()))
}

/// Checks that `limit` selects between 1 and the `available` images of `source`.
fn check_limit(limit: usize, available: usize, flag: &str, source: &str) -> anyhow::Result<()> {
    if limit == 0 {
        bail!("{flag} 0 selects no image; give at least 1");
    }
    if limit > available {
        bail!(
            "{flag} {limit} requests more images than the {available} in {source}; give at most {available}, or drop {flag} to use them all"
        );
    }
    Ok(())
}
