//! `fedsynth audit` (the privacy audit of a set of images against a CIFAR-10
//! training split) and `fedsynth bench knn` (speed of the raw search).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::audit::{self, AuditConfig, FeatureSpace};
use super::{input, knn};
use crate::cli::GlobalArgs;
use crate::data::cifar::{Cifar10, ImageSet};

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Images to audit: a CIFAR-10 record file or a directory of 32x32 RGB PNG files.
    #[arg(long)]
    pub synthetic: PathBuf,
    /// CIFAR-10 directory (cifar-10-batches-bin) whose training split the images may copy.
    #[arg(long)]
    pub train: PathBuf,
    /// Directory for audit.json, closest_pairs.png and dcr_histogram.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Share of the training split (its last images) held out as the real
    /// baseline instead of the test split.
    #[arg(long, conflicts_with = "holdout")]
    pub holdout_fraction: Option<f64>,
    /// CIFAR-10 record file of held-out real images, instead of the test split.
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    /// Feature space: `pixels` or `classifier:CHECKPOINT_DIR`.
    #[arg(long, default_value = "pixels")]
    pub features: FeatureArg,
    /// Neighbours in the nearest-neighbour ratio.
    #[arg(long, default_value_t = AuditConfig::default().k)]
    pub k: usize,
    /// Nearest-neighbour ratio below which an image is flagged, in (0, 1].
    #[arg(long, default_value_t = audit::DEFAULT_NN_RATIO_THRESHOLD)]
    pub threshold: f64,
    /// Use only the first N training images (after any holdout is carved off).
    #[arg(long)]
    pub limit_train: Option<usize>,
}

/// A `--features` value.
#[derive(Clone, Debug)]
pub struct FeatureArg(pub FeatureSpace);

impl FromStr for FeatureArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "pixels" {
            return Ok(FeatureArg(FeatureSpace::Pixels));
        }
        match text.strip_prefix("classifier:") {
            Some(dir) if !dir.is_empty() => Ok(FeatureArg(FeatureSpace::Classifier(dir.into()))),
            _ => Err(format!(
                "invalid feature space `{text}`; expected `pixels` or `classifier:CHECKPOINT_DIR`"
            )),
        }
    }
}

/// Runs `fedsynth audit`.
pub fn audit(args: AuditArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    crate::fsutil::require_dir_target(&args.out, "--out")?;
    let threads = crate::backend::configure_threads(global.threads())?;
    let device = global.backend().device()?;
    let synthetic = input::read_synthetic(&args.synthetic)
        .with_context(|| format!("failed to read --synthetic {}", args.synthetic.display()))?;
    let (train, holdout) = load_reference_sets(&args)?;
    let config = AuditConfig {
        k: args.k,
        nn_ratio_threshold: args.threshold,
        features: args.features.0.clone(),
        ..AuditConfig::default()
    };
    config.validate().context("invalid --k or --threshold")?;
    tracing::info!(threads, "searching on {threads} threads");

    let report =
        audit::run_audit(&synthetic, &train, &holdout, &config, &device).context("audit failed")?;
    report
        .write_outputs(&synthetic, &train, &args.out)
        .with_context(|| format!("failed to write audit outputs to {}", args.out.display()))?;
    print_summary(&report.summary());
    println!("audit written to {}", args.out.join("audit.json").display());
    Ok(())
}

/// Returns the training images and the held-out baseline chosen by the flags.
fn load_reference_sets(args: &AuditArgs) -> anyhow::Result<(ImageSet, ImageSet)> {
    let data = Cifar10::load(&args.train)
        .with_context(|| format!("failed to load --train {}", args.train.display()))?;
    let (mut train, holdout) = match (&args.holdout, args.holdout_fraction) {
        (Some(path), _) => {
            let holdout = ImageSet::read(path)
                .with_context(|| format!("failed to read --holdout {}", path.display()))?;
            (data.train, holdout)
        }
        (None, Some(fraction)) => {
            if !(fraction > 0.0 && fraction < 1.0) {
                bail!("--holdout-fraction {fraction} must be between 0 and 1, exclusive");
            }
            let keep = data.train.len() - (data.train.len() as f64 * fraction).round() as usize;
            let train_indices: Vec<usize> = (0..keep).collect();
            let holdout_indices: Vec<usize> = (keep..data.train.len()).collect();
            (
                data.train.select(&train_indices),
                data.train.select(&holdout_indices),
            )
        }
        (None, None) => (data.train, data.test),
    };
    if let Some(limit) = args.limit_train {
        if limit == 0 {
            bail!("--limit-train 0 leaves no training image; pass at least 1");
        }
        if limit > train.len() {
            bail!(
                "--limit-train {limit} requests more images than the {} training images left after any holdout; give at most {}, or drop --limit-train to use them all",
                train.len(),
                train.len()
            );
        }
        train = train.select(&(0..limit).collect::<Vec<_>>());
    }
    Ok((train, holdout))
}

fn print_summary(summary: &audit::AuditSummary) {
    println!(
        "audited {} images against {} training images ({} features, k = {})",
        summary.synthetic_count, summary.train_count, summary.feature_space, summary.k
    );
    println!(
        "flagged: {} ({:.2}%), exact duplicates {}, near duplicates {}",
        summary.flagged_count,
        100.0 * summary.flagged_share,
        summary.exact_duplicates,
        summary.near_duplicates
    );
    println!(
        "DCR median: synthetic {:.3}, holdout {:.3}; 5th percentile: synthetic {:.3}, holdout {:.3}",
        summary.dcr.synthetic_median,
        summary.dcr.holdout_median,
        summary.dcr.synthetic_p5,
        summary.dcr.holdout_p5
    );
    println!(
        "synthetic below the holdout's 5th percentile: {:.2}%",
        100.0 * summary.dcr.synthetic_share_below_holdout_p5
    );
    println!(
        "nn ratio median: synthetic {:.3}, holdout {:.3}; holdout below {}: {:.2}%",
        summary.synthetic_nn_ratio_median,
        summary.holdout_nn_ratio_median,
        summary.nn_ratio_threshold,
        100.0 * summary.holdout_false_positive_rate
    );
    println!(
        "data-copying C_T {:.3} over {} of {} cells (negative means copying)",
        summary.c_t, summary.copying_cells_used, summary.copying_cells
    );
}

#[derive(Debug, Args)]
pub struct BenchKnnArgs {
    /// Query rows.
    #[arg(long, default_value_t = 10_000)]
    pub queries: usize,
    /// Reference rows.
    #[arg(long, default_value_t = 10_000)]
    pub references: usize,
    /// Values per row (3,072 for CIFAR pixels).
    #[arg(long, default_value_t = 3072)]
    pub dim: usize,
    /// Neighbours per query.
    #[arg(long, default_value_t = 50)]
    pub k: usize,
    /// Timed runs; the best is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Seed of the uniform random rows.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs `fedsynth bench knn`: GFLOP/s (2 * queries * references * dim
/// flops) of the exact search on uniform random rows in [0, 1).
pub fn bench_knn(args: BenchKnnArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let sizes = [args.queries, args.references, args.dim, args.k, args.repeat];
    if sizes.contains(&0) {
        bail!("--queries, --references, --dim, --k and --repeat must all be at least 1");
    }
    let threads = crate::backend::configure_threads(global.threads())?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut rows =
        |count: usize| -> Vec<f32> { (0..count * args.dim).map(|_| rng.random::<f32>()).collect() };
    let queries = rows(args.queries);
    let references = rows(args.references);

    // One untimed run warms the caches and the thread pool.
    knn::knn(&queries[..args.dim], &references, args.dim, args.k);
    let mut best = f64::INFINITY;
    for _ in 0..args.repeat {
        let started = Instant::now();
        let found = knn::knn(&queries, &references, args.dim, args.k);
        best = best.min(started.elapsed().as_secs_f64());
        std::hint::black_box(found);
    }
    let flops = 2.0 * args.queries as f64 * args.references as f64 * args.dim as f64;
    println!(
        "fedsynth knn: {} x {} x {}, k = {}, {} threads: {:.3} s, {:.1} GFLOP/s",
        args.queries,
        args.references,
        args.dim,
        args.k,
        threads,
        best,
        flops / best / 1e9
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_arg_parses_both_spaces() {
        let pixels: FeatureArg = "pixels".parse().unwrap();
        assert_eq!(pixels.0, FeatureSpace::Pixels);
        let classifier: FeatureArg = "classifier:/tmp/ckpt".parse().unwrap();
        assert_eq!(classifier.0, FeatureSpace::Classifier("/tmp/ckpt".into()));
    }

    #[test]
    fn bench_knn_rejects_zero_k() {
        let args = BenchKnnArgs {
            queries: 4,
            references: 4,
            dim: 2,
            k: 0,
            repeat: 1,
            seed: 0,
        };
        let global = GlobalArgs {
            backend: None,
            threads: Some(1),
        };
        let err = bench_knn(args, &global).unwrap_err().to_string();
        assert!(err.contains("--k"), "{err}");
        assert!(err.contains("at least 1"), "{err}");
    }

    fn audit_args(out: &std::path::Path, synthetic: PathBuf) -> AuditArgs {
        AuditArgs {
            synthetic,
            train: crate::training::test_data::data_dir(),
            out: out.to_path_buf(),
            holdout_fraction: None,
            holdout: None,
            features: FeatureArg(FeatureSpace::Pixels),
            k: 5,
            threshold: audit::DEFAULT_NN_RATIO_THRESHOLD,
            limit_train: Some(100),
        }
    }

    #[test]
    fn rejects_limit_train_above_train_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut args = audit_args(dir.path(), dir.path().join("unused.bin"));
        args.holdout_fraction = Some(0.5);
        args.limit_train = Some(99_999_999);
        let err = format!("{:#}", load_reference_sets(&args).unwrap_err());
        assert!(err.contains("--limit-train 99999999"), "{err}");
        assert!(err.contains("the 25000 training images"), "{err}");
    }

    #[test]
    fn audit_json_has_one_capped_k() {
        let dir = tempfile::tempdir().unwrap();
        let synthetic = dir.path().join("synthetic.bin");
        crate::training::test_data::test_images(4)
            .write(&synthetic)
            .unwrap();
        let mut args = audit_args(&dir.path().join("out"), synthetic.clone());
        args.holdout = Some(synthetic);
        args.k = 1000;
        let global = GlobalArgs {
            backend: None,
            threads: Some(1),
        };
        audit(args, &global).unwrap();
        let text = std::fs::read_to_string(dir.path().join("out/audit.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["k"], 100);
        assert_eq!(json["config"]["k"], 100);
    }

    #[test]
    fn feature_arg_rejects_unknown_space() {
        let err = "embedding".parse::<FeatureArg>().unwrap_err();
        assert!(err.contains("expected `pixels`"), "{err}");
        assert!("classifier:".parse::<FeatureArg>().is_err());
    }
}
