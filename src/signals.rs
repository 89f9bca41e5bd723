//! The signals that ask a process to stop cleanly: SIGINT (Ctrl-C) and, on
//! Unix, SIGTERM, which `kill`, `timeout`, systemd, Docker and Kubernetes
//! send.

use std::fmt;

/// A signal that asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT, from Ctrl-C on a terminal or from `kill -INT`.
    Interrupt,
    /// SIGTERM, from `kill`, `timeout` or a service manager.
    Terminate,
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopSignal::Interrupt => f.write_str("Ctrl-C (SIGINT)"),
            StopSignal::Terminate => f.write_str("SIGTERM"),
        }
    }
}

/// Waits until the process receives SIGINT or SIGTERM and returns which
/// came first. Must run inside a tokio runtime. Once called, the handlers
/// stay installed for the rest of the process, so later signals of these
/// kinds no longer end it by their default action.
pub async fn stop_requested() -> StopSignal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                signal = interrupt() => signal,
                _ = terminate.recv() => StopSignal::Terminate,
            },
            Err(err) => {
                tracing::warn!(error = %err, "failed to listen for SIGTERM; only Ctrl-C stops cleanly");
                interrupt().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        interrupt().await
    }
}

/// Waits for Ctrl-C. If its handler cannot be installed, waits forever,
/// so that the caller's other work decides when to stop.
async fn interrupt() -> StopSignal {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %err, "failed to listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
    StopSignal::Interrupt
}
