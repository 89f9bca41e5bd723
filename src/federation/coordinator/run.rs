//! The coordinator's lifecycle: bind, serve with an explicit shutdown,
//! tick the run state until it reaches the aggregate or finished phase,
//! aggregate, write the run folder, let the sites learn the outcome, stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use super::aggregate;
use super::report::{self, ReportInputs};
use super::service::{FederationService, SharedState};
use super::state::{Outcome, RunPhase, RunState};
use crate::data::{Cifar10, ImageSet};
use crate::federation::keepalive;
use crate::federation::pb::federation_server::FederationServer;
use crate::launch::manifest::Manifest;
use crate::report::{self as run_report, Evaluation, RunStatus};
use crate::signals::StopListener;

/// How often the control loop applies deadlines and timeouts.
const TICK: Duration = Duration::from_millis(200);
/// How long the coordinator keeps serving after the run ends, so sites can
/// poll once more and learn the outcome.
const INFORM_GRACE: Duration = Duration::from_secs(15);

/// A checked coordinator invocation.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub manifest: Manifest,
    pub run_dir: PathBuf,
    /// `HOST:PORT` to bind; port 0 picks a free port.
    pub address: String,
    /// File to which the bound address is written, for launchers.
    pub address_file: Option<PathBuf>,
    /// CIFAR-10 directory, for the test split that c' is evaluated on.
    pub data_dir: PathBuf,
}

/// Outcome of a coordinator run, with the path of the report it wrote.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub completed: bool,
    /// Whether Ctrl-C (SIGINT) or SIGTERM stopped the run, as its report records.
    pub interrupted: bool,
    pub reason: Option<String>,
    pub report_path: PathBuf,
}

/// Binds the gRPC listener.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(address).await {
        Ok(listener) => Ok(listener),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => Err(anyhow::anyhow!(
            "coordinator address {address} is already in use; stop the process that uses it, pick a free port or use port 0"
        )),
        Err(err) => Err(err).with_context(|| {
            format!("failed to bind coordinator address {address}; pick a free port or use port 0")
        }),
    }
}

/// Serves the federation service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: SharedState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(keepalive::INTERVAL))
        .http2_keepalive_timeout(Some(keepalive::TIMEOUT))
        .tcp_keepalive(Some(keepalive::INTERVAL))
        .add_service(FederationServer::new(FederationService::new(state)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("gRPC server failed")
}

/// Runs the whole coordinator and returns how the run ended.
pub async fn run(
    config: CoordinatorConfig,
    stop_signal: StopListener,
) -> anyhow::Result<RunOutcome> {
    let started_at = run_report::utc_now();
    // Bind before creating anything, so a busy port leaves no empty run folder.
    let listener = bind(&config.address).await?;
    std::fs::create_dir_all(&config.run_dir)
        .with_context(|| format!("failed to create run folder {}", config.run_dir.display()))?;
    let data_dir = config.data_dir.clone();
    let (test, class_names) = tokio::task::spawn_blocking(move || Cifar10::load_test(&data_dir))
        .await?
        .context("failed to load the CIFAR-10 test split for evaluating c'")?;
    let test = crate::federation::plan::test_split(test, &config.manifest.data)?;

    let address = listener.local_addr()?;
    info!(%address, "coordinator listening");
    if let Some(path) = &config.address_file {
        write_address(path, address)?;
    }

    let state: SharedState = Arc::new(Mutex::new(RunState::new(
        config.manifest.clone(),
        Instant::now(),
    )));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));

    info!(
        expected = config.manifest.sites.count,
        min_sites = config.manifest.coordinator.min_sites,
        timeout_s = config.manifest.coordinator.join_timeout_s,
        "waiting for sites to join"
    );
    let work = async {
        drive_until_aggregate(&state).await;
        aggregate_if_ready(&state, &config, &test).await
    };
    let (final_classifier, pooled_histogram) = tokio::select! {
        result = work => result,
        signal = stop_signal.requested() => {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            let reason = format!("{signal} during the {} phase", guard.phase_name());
            guard.finish(Outcome::Interrupted(reason), Instant::now());
            (None, Vec::new())
        }
    };

    let report = {
        let guard = state.lock().unwrap_or_else(|p| p.into_inner());
        let inputs = ReportInputs {
            run_id: run_id(&config),
            started_at,
            class_names,
            final_classifier,
            pooled_label_histogram: pooled_histogram,
        };
        let samples = report::samples(&guard);
        let report = report::build_report(&guard, inputs);
        run_report::write_run_folder(&config.run_dir, &report, &samples)
            .context("failed to write the run folder")?;
        report
    };
    let report_path = config.run_dir.join("report.json");
    info!(path = %report_path.display(), "wrote run report");

    if let RunStatus::Interrupted { reason } = report.status {
        // The sites are being stopped too, so no site waits for the outcome,
        // and a graceful server shutdown would wait on their connections.
        server.abort();
        info!("coordinator stopped after an interruption");
        return Ok(RunOutcome {
            completed: false,
            interrupted: true,
            reason: Some(reason),
            report_path,
        });
    }
    wait_until_informed(&state).await;
    let _ = stop.send(());
    server.await?.context("gRPC server stopped with an error")?;
    info!("coordinator stopped");

    let reason = match report.status {
        RunStatus::Completed => None,
        RunStatus::Failed { reason } | RunStatus::Interrupted { reason } => Some(reason),
    };
    Ok(RunOutcome {
        completed: reason.is_none(),
        interrupted: false,
        reason,
        report_path,
    })
}

/// Ticks the run state until it aggregates or finishes.
async fn drive_until_aggregate(state: &SharedState) {
    let mut interval = tokio::time::interval(TICK);
    loop {
        interval.tick().await;
        let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
        guard.tick(Instant::now());
        if matches!(guard.phase(), RunPhase::Aggregate | RunPhase::Finished) {
            return;
        }
    }
}

/// Pools, saves and learns from the uploads when the run reached its
/// aggregate phase, then finishes the run state with the result.
async fn aggregate_if_ready(
    state: &SharedState,
    config: &CoordinatorConfig,
    test: &ImageSet,
) -> (Option<Evaluation>, Vec<u64>) {
    let pooled = {
        let guard = state.lock().unwrap_or_else(|p| p.into_inner());
        if guard.phase() != &RunPhase::Aggregate {
            return (None, Vec::new());
        }
        aggregate::pool(guard.sites())
    };
    let histogram = aggregate::label_histogram(&pooled.probabilities);
    info!(
        images = pooled.len(),
        ?histogram,
        "pooled synthetic images; training c'"
    );
    let (manifest, run_dir, test) = (
        config.manifest.clone(),
        config.run_dir.clone(),
        test.clone(),
    );
    let result = tokio::task::spawn_blocking(move || {
        aggregate::save_pooled(&run_dir, &pooled)?;
        aggregate::train_final_classifier(&pooled, &test, &manifest, &run_dir)
    })
    .await
    .context("c' training panicked")
    .and_then(|result| result);
    let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(evaluation) => {
            guard.finish(Outcome::Completed, Instant::now());
            (Some(evaluation), histogram)
        }
        Err(err) => {
            warn!(error = %format!("{err:#}"), "aggregation failed");
            let reason = format!("training c' failed: {err:#}");
            guard.finish(Outcome::Failed(reason), Instant::now());
            (None, histogram)
        }
    }
}

/// Keeps serving until every remaining site has polled the outcome, or the
/// grace period ends.
async fn wait_until_informed(state: &SharedState) {
    let deadline = Instant::now() + INFORM_GRACE;
    while Instant::now() < deadline {
        if state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .all_informed()
        {
            return;
        }
        tokio::time::sleep(TICK).await;
    }
    warn!("some sites did not poll for the outcome before the coordinator stopped");
}

fn run_id(config: &CoordinatorConfig) -> String {
    config
        .run_dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| config.manifest.run.name.clone())
}

fn write_address(path: &std::path::Path, address: SocketAddr) -> anyhow::Result<()> {
    crate::fsutil::write_atomic(path, address.to_string().as_bytes())
        .with_context(|| format!("failed to write the address file {}", path.display()))
}
