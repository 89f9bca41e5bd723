//! The signals that ask a process to stop cleanly: SIGINT (Ctrl-C) and, on
//! Unix, SIGTERM, which `kill`, `timeout`, systemd, Docker and Kubernetes
//! send.

use std::fmt;

use tokio::sync::watch;

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

/// A shared listener for SIGINT and SIGTERM. Its handlers are installed
/// once, when it is created, so a signal that arrives while the program is
/// between two waits is kept, not lost, and does not end the process by its
/// default action.
#[derive(Clone, Debug)]
pub struct StopListener {
    received: watch::Receiver<Option<StopSignal>>,
}

impl StopListener {
    /// Installs the handlers and starts listening. Must run inside a tokio
    /// runtime, which keeps the listening task.
    pub fn install() -> StopListener {
        let (sender, received) = watch::channel(None);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Creating the streams installs the handlers at once.
            let streams = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            );
            tokio::spawn(async move {
                let stop = match streams {
                    (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                        _ = interrupt.recv() => StopSignal::Interrupt,
                        _ = terminate.recv() => StopSignal::Terminate,
                    },
                    (interrupt, terminate) => {
                        if let Err(err) = &terminate {
                            tracing::warn!(error = %err, "failed to listen for SIGTERM; only Ctrl-C stops cleanly");
                        }
                        match interrupt {
                            Ok(mut interrupt) => {
                                interrupt.recv().await;
                                StopSignal::Interrupt
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "failed to listen for Ctrl-C");
                                std::future::pending().await
                            }
                        }
                    }
                };
                let _ = sender.send(Some(stop));
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = sender.send(Some(interrupt().await));
        });
        StopListener { received }
    }

    /// Waits until a stop signal has arrived, at any time since `install`,
    /// and returns it.
    pub async fn requested(&self) -> StopSignal {
        let mut received = self.received.clone();
        match received.wait_for(Option::is_some).await {
            Ok(signal) => signal.expect("wait_for returns only a received signal"),
            // The listening task ended without a signal: wait forever, so
            // that the caller's other work decides when to stop.
            Err(_) => std::future::pending().await,
        }
    }

    /// Returns the stop signal that has arrived, if any.
    pub fn received(&self) -> Option<StopSignal> {
        *self.received.borrow()
    }
}

/// Waits for Ctrl-C. If its handler cannot be installed, waits forever,
/// so that the caller's other work decides when to stop.
#[cfg(not(unix))]
async fn interrupt() -> StopSignal {
    if let Err(err) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %err, "failed to listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
    StopSignal::Interrupt
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn signal_before_wait_is_kept() {
        let listener = StopListener::install();
        assert_eq!(listener.received(), None);
        // SAFETY: raise(3) sends SIGTERM to this process, which the
        // listener's handler now receives in place of the default action.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        let first = tokio::time::timeout(Duration::from_secs(10), listener.requested()).await;
        assert_eq!(first.ok(), Some(StopSignal::Terminate));

        // A later wait, as between two phases of a run, returns the same signal.
        let second = tokio::time::timeout(Duration::from_secs(1), listener.requested()).await;
        assert_eq!(second.ok(), Some(StopSignal::Terminate));
        assert_eq!(listener.received(), Some(StopSignal::Terminate));
    }
}
