//! Dialling the coordinator and retrying calls that failed for a transient
//! reason, both with exponential backoff.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::warn;

use crate::federation::keepalive;
use crate::federation::pb::federation_client::FederationClient;

/// Exponential backoff: the delay doubles after each attempt up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    delay: Duration,
    max: Duration,
    attempts_left: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration, attempts: u32) -> Backoff {
        Backoff {
            delay: first,
            max,
            attempts_left: attempts,
        }
    }

    /// Returns the delay before the next attempt, or `None` when the
    /// attempts are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts_left == 0 {
            return None;
        }
        self.attempts_left -= 1;
        let delay = self.delay;
        self.delay = (self.delay * 2).min(self.max);
        Some(delay)
    }
}

/// Backoff for dialling: about two minutes in all, for a coordinator that
/// is still starting.
fn connect_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5), 30)
}

/// Backoff for one call: about a minute in all.
fn call_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(5), 15)
}

/// Whether a failed call may succeed when repeated unchanged.
pub fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
    )
}

/// Dials `url` with retries, with HTTP/2 keepalives on the channel.
pub async fn connect(url: &str) -> anyhow::Result<FederationClient<Channel>> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .ok()
        .filter(|endpoint| has_http_scheme(endpoint.uri()))
        .with_context(|| format!("invalid coordinator URL {url}; expected http://HOST:PORT"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(keepalive::INTERVAL)
        .keep_alive_timeout(keepalive::TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_keepalive(Some(keepalive::INTERVAL));
    let mut backoff = connect_backoff();
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(FederationClient::new(channel)),
            Err(err) => match backoff.next_delay() {
                Some(delay) => {
                    warn!(%url, error = %with_causes(&err), retry_in_ms = delay.as_millis() as u64, "failed to reach the coordinator; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
                    return Err(err).with_context(|| {
                        format!("failed to reach the coordinator at {url}; is it running?")
                    });
                }
            },
        }
    }
}

/// Checks that `uri` has an http or https scheme and a host. Without them
/// every dial fails the same way, so a retry would only delay the error.
fn has_http_scheme(uri: &tonic::codegen::http::Uri) -> bool {
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
}

/// Formats an error followed by each of its causes. A tonic transport
/// error's own text is only "transport error", and the reason (connection
/// refused, no route, TLS) is in its sources. A cause whose text the one
/// before it already contains is left out.
fn with_causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut previous = text.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !previous.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        previous = message;
        source = cause.source();
    }
    text
}

/// Runs `call` until it succeeds, fails for a lasting reason, or the
/// retries are used up. `what` names the call in logs.
pub async fn with_retries<T, F, Fut>(what: &str, mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut backoff = call_backoff();
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(status) if is_transient(&status) => match backoff.next_delay() {
                Some(delay) => {
                    warn!(call = what, code = ?status.code(), message = status.message(), retry_in_ms = delay.as_millis() as u64, "call failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(status),
            },
            Err(status) => return Err(status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_max() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300), 4);
        let delays: Vec<u64> = std::iter::from_fn(|| backoff.next_delay())
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 300, 300]);
    }

    #[test]
    fn only_transient_codes_are_retried() {
        assert!(is_transient(&Status::unavailable("down")));
        assert!(!is_transient(&Status::invalid_argument("bad")));
        assert!(!is_transient(&Status::failed_precondition("late")));
    }

    #[tokio::test]
    async fn rejects_url_without_scheme() {
        let started = std::time::Instant::now();
        let err = connect("127.0.0.1:50051").await.unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:50051"), "{err}");
        assert!(err.contains("expected http://HOST:PORT"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn dial_error_names_refused_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let err = Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap_err();
        let text = with_causes(&err);
        assert!(text.starts_with("transport error: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert_eq!(text.matches("tcp connect error").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let mut calls = 0;
        let result = with_retries("test", || {
            calls += 1;
            let attempt = calls;
            async move {
                if attempt < 3 {
                    Err(Status::unavailable("not yet"))
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);
    }

    #[tokio::test]
    async fn does_not_retry_lasting_failures() {
        let mut calls = 0;
        let result: Result<(), Status> = with_retries("test", || {
            calls += 1;
            async { Err(Status::invalid_argument("bad")) }
        })
        .await;
        assert_eq!(result.unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(calls, 1);
    }
}
