//! One local run: starts the coordinator, waits for its address file,
//! starts the sites, forwards Ctrl-C and SIGTERM, and waits for every child. The
//! centralised baseline and the exit code are left to the caller.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::watch;

use super::children::{self, LineSink, Supervised};
use super::plan::LaunchPlan;
use crate::signals::StopListener;

/// How long the coordinator has to bind and write its address file.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the launcher looks for the address file.
const ADDRESS_POLL: Duration = Duration::from_millis(100);
/// How long sites have to exit by themselves once the coordinator is gone.
const SITE_EXIT_GRACE: Duration = Duration::from_secs(20);
/// How long a child has to exit after SIGINT before it is killed.
const SIGINT_GRACE: Duration = Duration::from_secs(10);

/// The end of a local run: the coordinator's exit status and whether
/// Ctrl-C or SIGTERM stopped it.
#[derive(Debug)]
pub struct LaunchOutcome {
    pub coordinator: ExitStatus,
    /// Whether Ctrl-C or SIGTERM to the launcher stopped the run.
    pub interrupted: bool,
}

/// Runs the coordinator and the sites of `plan` until the coordinator exits,
/// then waits for the sites, stopping those that do not exit by themselves.
pub async fn run_children(
    plan: &LaunchPlan,
    sink: LineSink,
    stop_signal: &StopListener,
) -> anyhow::Result<LaunchOutcome> {
    let (stop, stop_rx) = watch::channel(false);
    let coordinator = children::spawn(
        "coordinator",
        &plan.exe,
        &plan.coordinator_args(),
        sink.clone(),
        stop_rx.clone(),
        SIGINT_GRACE,
    )
    .with_context(|| format!("failed to start the coordinator {}", plan.exe.display()))?;
    tracing::info!(pid = coordinator.pid, "started coordinator");

    let address_file = plan.address_file();
    let address = tokio::select! {
        address = wait_for_address(&address_file, &coordinator) => Ok(address),
        signal = stop_signal.requested() => Err(signal),
    };
    let address = match address {
        Ok(Ok(Some(address))) => address,
        Ok(Ok(None)) => {
            let status = coordinator.wait().await?;
            bail!(
                "the coordinator exited ({status}) before writing its address to {}; \
                 see its [coordinator] lines above",
                address_file.display()
            );
        }
        Ok(Err(err)) => {
            let _ = stop.send(true);
            let _ = coordinator.wait().await;
            return Err(err);
        }
        Err(signal) => {
            tracing::warn!("interrupted by {signal} before the coordinator was ready; stopping it");
            let _ = stop.send(true);
            let status = coordinator.wait().await?;
            return Ok(LaunchOutcome {
                coordinator: status,
                interrupted: true,
            });
        }
    };
    tracing::info!(%address, "coordinator is listening");

    let mut sites = Vec::new();
    for index in 0..plan.site_threads.len() {
        let name = format!("site-{index}");
        let args = plan.site_args(index, &address);
        std::fs::create_dir_all(plan.site_dir(index))
            .with_context(|| format!("failed to create {}", plan.site_dir(index).display()))?;
        let site = children::spawn(
            &name,
            &plan.exe,
            &args,
            sink.clone(),
            stop_rx.clone(),
            SIGINT_GRACE,
        )
        .with_context(|| format!("failed to start {name}"))?;
        tracing::info!(
            pid = site.pid,
            threads = plan.site_threads[index],
            "started {name}"
        );
        sites.push(site);
    }

    let (status, interrupted) = wait_for_coordinator(coordinator, &stop, stop_signal).await?;
    tracing::info!(%status, "coordinator exited");
    let interrupted = stop_sites(sites, &stop, stop_signal).await || interrupted;
    Ok(LaunchOutcome {
        coordinator: status,
        interrupted,
    })
}

/// Waits for the coordinator; Ctrl-C or SIGTERM meanwhile stops every child.
async fn wait_for_coordinator(
    coordinator: Supervised,
    stop: &watch::Sender<bool>,
    stop_signal: &StopListener,
) -> anyhow::Result<(ExitStatus, bool)> {
    let name = coordinator.name.clone();
    let wait = coordinator.wait();
    tokio::pin!(wait);
    let finished = tokio::select! {
        status = &mut wait => Ok(status),
        signal = stop_signal.requested() => Err(signal),
    };
    let (status, interrupted) = match finished {
        Ok(status) => (status, false),
        Err(signal) => {
            tracing::warn!("interrupted by {signal}; forwarding SIGINT to every child");
            let _ = stop.send(true);
            (wait.await, true)
        }
    };
    let status = status.with_context(|| format!("failed to wait for {name}"))?;
    Ok((status, interrupted))
}

/// Gives the sites [`SITE_EXIT_GRACE`] to exit by themselves, then stops
/// the rest, and logs how each one ended. Ctrl-C or SIGTERM during the
/// grace period stops them at once; returns whether one came.
async fn stop_sites(
    sites: Vec<Supervised>,
    stop: &watch::Sender<bool>,
    stop_signal: &StopListener,
) -> bool {
    let deadline = Instant::now() + SITE_EXIT_GRACE;
    let mut interrupted = false;
    while Instant::now() < deadline && !sites.iter().all(Supervised::is_finished) {
        if let Some(signal) = stop_signal.received() {
            tracing::warn!("interrupted by {signal}; forwarding SIGINT to every site");
            interrupted = true;
            break;
        }
        tokio::time::sleep(ADDRESS_POLL).await;
    }
    if !interrupted && !sites.iter().all(Supervised::is_finished) {
        tracing::warn!(
            grace_s = SITE_EXIT_GRACE.as_secs(),
            "sites still running after the coordinator exited; stopping them"
        );
    }
    let _ = stop.send(true);
    for site in sites {
        let name = site.name.clone();
        match site.wait().await {
            Ok(status) if status.success() => tracing::info!("{name} exited"),
            Ok(status) => tracing::warn!(%status, "{name} exited with failure"),
            Err(err) => tracing::warn!(error = %err, "failed to wait for {name}"),
        }
    }
    interrupted
}

/// Waits until the coordinator has written `path` and returns the address
/// in it, or `None` when the coordinator exits first. Fails when reading
/// the file fails or the coordinator takes longer than [`ADDRESS_TIMEOUT`].
async fn wait_for_address(path: &Path, coordinator: &Supervised) -> anyhow::Result<Option<String>> {
    let started = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return Ok(Some(text.trim().to_string())),
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err).with_context(|| format!("failed to read {}", path.display()));
            }
        }
        if coordinator.is_finished() {
            return Ok(None);
        }
        if started.elapsed() > ADDRESS_TIMEOUT {
            bail!(
                "the coordinator wrote no address to {} within {} s",
                path.display(),
                ADDRESS_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(ADDRESS_POLL).await;
    }
}
