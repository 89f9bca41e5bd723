//! `fedsynth launch MANIFEST`: runs a whole federation on this machine, the
//! coordinator and each site as a child process of this same binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::children;
use super::manifest::Manifest;
use super::plan::{self, LaunchPlan};
use crate::cli::GlobalArgs;
use crate::report;
use crate::signals::StopListener;

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Deploy manifest (TOML) describing the run, e.g. deploy/local.toml.
    pub manifest: PathBuf,
    /// CIFAR-10 directory (cifar-10-batches-bin), passed to every process.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Parent directory of the run folder; overrides the manifest's `run.out_dir`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs the launch command. It fails when the coordinator fails, so the
/// exit code is 0 exactly when the run completed.
pub fn launch(args: LaunchArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    let stop = {
        let _context = runtime.enter();
        StopListener::install()
    };
    let plan = build_plan(&args, global)?;
    tracing::info!(
        run_dir = %plan.run_dir.display(),
        sites = plan.site_threads.len(),
        coordinator_threads = plan.coordinator_threads,
        site_threads = ?plan.site_threads,
        "launching run"
    );
    let sink = children::terminal_sink();
    let outcome = runtime.block_on(super::run::run_children(&plan, sink, &stop))?;

    let report_md = plan.run_dir.join(report::REPORT_MD);
    if outcome.interrupted {
        // The coordinator records the interruption in its report.
        if report_md.is_file() {
            println!("{}", report_md.display());
        }
        bail!(
            "interrupted; the run folder {} may be incomplete",
            plan.run_dir.display()
        );
    }
    if !outcome.coordinator.success() {
        if report_md.is_file() {
            println!("{}", report_md.display());
        }
        bail!(
            "the coordinator failed ({}); see {}",
            outcome.coordinator,
            plan.run_dir.display()
        );
    }
    if plan.manifest.coordinator.centralised_baseline {
        run_baseline(runtime, &plan, &stop)?;
    }
    tracing::info!(report = %report_md.display(), "run completed");
    println!("{}", report_md.display());
    Ok(())
}

/// Trains the centralised baseline on a blocking thread, so Ctrl-C and
/// SIGTERM still work: the runtime's signal handlers, once installed, stay
/// for the whole process, and only an async task can wait for them.
fn run_baseline(
    runtime: tokio::runtime::Runtime,
    plan: &LaunchPlan,
    stop: &StopListener,
) -> anyhow::Result<()> {
    let task_plan = plan.clone();
    let finished = runtime.block_on(async {
        let task = tokio::task::spawn_blocking(move || super::baseline::add_to_run(&task_plan));
        tokio::select! {
            joined = task => Ok(joined),
            signal = stop.requested() => Err(signal),
        }
    });
    let joined = match finished {
        Ok(joined) => joined,
        Err(signal) => {
            // The training thread cannot be cancelled; it ends with the process.
            runtime.shutdown_background();
            bail!(
                "interrupted by {signal} while training the centralised baseline; {} has no c",
                plan.run_dir.join(report::REPORT_MD).display()
            );
        }
    };
    joined
        .context("the centralised baseline task panicked")?
        .context("failed to train the centralised baseline c")
}

/// Validates the arguments and the manifest and creates the run folder.
fn build_plan(args: &LaunchArgs, global: &GlobalArgs) -> anyhow::Result<LaunchPlan> {
    let mut manifest = Manifest::load(&args.manifest)?;
    global.override_backend(&mut manifest)?;
    let manifest_path = std::fs::canonicalize(&args.manifest)
        .with_context(|| format!("failed to resolve {}", args.manifest.display()))?;
    let exe = std::env::current_exe().context("failed to find the fedsynth binary")?;
    let data_dir = Some(data_dir(
        args.data.as_deref(),
        manifest.data.dir.as_deref(),
    )?);
    // `--threads`, when given, overrides the manifest, as `--backend` does.
    let total_threads = global.threads.unwrap_or(manifest.run.threads);
    let site_threads = plan::split_threads(total_threads, manifest.sites.count);
    if total_threads != 0 && total_threads < manifest.sites.count {
        tracing::warn!(
            threads = total_threads,
            sites = manifest.sites.count,
            "fewer threads than sites; each site still gets one, so the sites run {} threads in all",
            manifest.sites.count
        );
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| manifest.run.out_dir.clone());
    let run_dir = plan::create_run_folder(&out_dir, &manifest.run.name, chrono::Utc::now())
        .with_context(|| format!("failed to create a run folder in {}", out_dir.display()))?;
    Ok(LaunchPlan {
        exe,
        manifest_path,
        manifest,
        data_dir,
        run_dir,
        coordinator_threads: total_threads,
        site_threads,
    })
}

/// Resolves the CIFAR-10 directory that every child gets as `--data`,
/// made absolute so it does not depend on a child's working directory.
/// A directory without the release fails here, before the run folder exists.
fn data_dir(flag: Option<&Path>, manifest: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = crate::data::location::resolve_data_dir(flag, manifest)?;
    crate::data::cifar::Cifar10::check(&dir)?;
    std::path::absolute(&dir)
        .with_context(|| format!("failed to resolve the data directory {}", dir.display()))
}
