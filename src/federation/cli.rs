//! The `coordinator` and `site` commands: flags, their checks, and the
//! tokio runtime each command runs on.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::GlobalArgs;
use crate::federation::{coordinator, plan, site};
use crate::launch::manifest::Manifest;
use crate::signals::StopListener;

#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// Deploy manifest (TOML) describing the run.
    #[arg(long)]
    pub manifest: PathBuf,
    /// Run folder to write the report, checkpoints and synthetic sets into.
    #[arg(long)]
    pub run_dir: PathBuf,
    /// Address to serve on, HOST:PORT; defaults to the manifest's
    /// `coordinator.address`. Port 0 picks a free port.
    #[arg(long)]
    pub address: Option<String>,
    /// File to write the bound address (HOST:PORT) to, atomically.
    #[arg(long)]
    pub address_file: Option<PathBuf>,
    /// CIFAR-10 directory (cifar-10-batches-bin), for the test split.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SiteArgs {
    /// Coordinator URL, http://HOST:PORT.
    #[arg(long)]
    pub coordinator: String,
    /// Index of the shard this site holds, from 0.
    #[arg(long)]
    pub shard_index: u32,
    /// CIFAR-10 directory (cifar-10-batches-bin) holding the training split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Directory for the site's own files; defaults to `site-<shard>`.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// Runs the coordinator; fails when the run fails.
pub fn coordinator(args: CoordinatorArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let stop = {
        let _context = runtime.enter();
        StopListener::install()
    };
    let mut manifest = Manifest::load(&args.manifest)?;
    global.override_backend(&mut manifest)?;
    let threads = crate::backend::configure_threads(global.threads())?;
    tracing::debug!(threads, "compute threads");
    let config = coordinator::CoordinatorConfig {
        address: args
            .address
            .unwrap_or_else(|| manifest.coordinator.address.clone()),
        data_dir: plan::data_dir(args.data.as_deref(), &manifest)?,
        run_dir: args.run_dir,
        address_file: args.address_file,
        manifest,
    };
    let run_dir = config.run_dir.clone();
    let outcome = runtime.block_on(coordinator::run(config, stop))?;
    if outcome.interrupted {
        // c' may still be training on a blocking thread, which ends with the process.
        runtime.shutdown_background();
        stop_writes(&run_dir);
        println!("{}", outcome.report_path.display());
        bail!(
            "interrupted; the report {} records the run as interrupted",
            outcome.report_path.display()
        );
    }
    println!("{}", outcome.report_path.display());
    match outcome.reason {
        None => Ok(()),
        Some(reason) => bail!("run failed: {reason}"),
    }
}

/// Runs one site until the coordinator reports the run done.
pub fn site(args: SiteArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let threads = crate::backend::configure_threads(global.threads())?;
    tracing::debug!(threads, "compute threads");
    let work_dir = args
        .work_dir
        .unwrap_or_else(|| PathBuf::from(format!("site-{}", args.shard_index)));
    // Temporary files of an earlier site process that was killed mid-write.
    let stale = crate::fsutil::remove_temp_files(&work_dir)
        .with_context(|| format!("failed to clean {}", work_dir.display()))?;
    if stale > 0 {
        tracing::info!(count = stale, dir = %work_dir.display(), "removed temporary files of an interrupted run");
    }
    let config = site::SiteConfig {
        coordinator: args.coordinator,
        shard_index: args.shard_index,
        data_flag: args.data,
        backend: global.backend,
        work_dir: work_dir.clone(),
    };
    let runtime = runtime()?;
    let stop = {
        let _context = runtime.enter();
        StopListener::install()
    };
    let finished = runtime.block_on(async {
        tokio::select! {
            result = site::run(config) => Ok(result),
            signal = stop.requested() => Err(signal),
        }
    });
    match finished {
        Ok(result) => result,
        Err(signal) => {
            tracing::warn!("interrupted by {signal}; stopping");
            // Local training cannot be cancelled, so it ends with the process.
            runtime.shutdown_background();
            stop_writes(&work_dir);
            bail!(
                "interrupted by {signal}; {} contains the last finished checkpoints",
                work_dir.display()
            )
        }
    }
}

/// Lets the atomic writes in flight finish, blocks new ones, and removes
/// temporary files left under `dir`, so the process can exit cleanly.
fn stop_writes(dir: &std::path::Path) {
    crate::fsutil::freeze_writes();
    match crate::fsutil::remove_temp_files(dir) {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, dir = %dir.display(), "removed temporary files"),
        Err(err) => {
            tracing::warn!(error = %err, dir = %dir.display(), "failed to remove temporary files")
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")
}
