//! Child processes of the launcher: each runs in its own process group,
//! has its stdout and stderr forwarded line by line with a `[name] `
//! prefix, and is stopped on request with SIGINT, then SIGKILL after a
//! grace period.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The stream a child wrote a line to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives every prefixed line of every child. It is shared by the
/// forwarding tasks of all children, so it must be callable from any thread.
pub type LineSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

/// Returns the sink that writes child lines to this process's own stdout
/// and stderr, one whole line per write so lines of two children never mix.
pub fn terminal_sink() -> LineSink {
    Arc::new(|stream, line| {
        let _ = match stream {
            Stream::Stdout => writeln!(io::stdout().lock(), "{line}"),
            Stream::Stderr => writeln!(io::stderr().lock(), "{line}"),
        };
    })
}

/// Returns `line` with the child's prefix, e.g. `[site-0] epoch 1/5`.
pub fn prefix_line(name: &str, line: &str) -> String {
    format!("[{name}] {line}")
}

/// A running child whose exit is awaited by a supervising task.
#[derive(Debug)]
pub struct Supervised {
    pub name: String,
    pub pid: u32,
    handle: JoinHandle<io::Result<ExitStatus>>,
}

impl Supervised {
    /// Waits for the child to exit and for all of its output to be forwarded.
    pub async fn wait(self) -> io::Result<ExitStatus> {
        self.handle
            .await
            .map_err(|err| io::Error::other(format!("supervisor of {} failed: {err}", self.name)))?
    }

    /// Returns whether the child has exited and its output is forwarded.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Starts `exe args` as the child `name`, in its own process group so a
/// Ctrl-C at the terminal reaches only the launcher, which forwards it.
///
/// When `stop` turns true, the child gets SIGINT, and SIGKILL if it is
/// still running `grace` later.
pub fn spawn(
    name: &str,
    exe: &Path,
    args: &[OsString],
    sink: LineSink,
    stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<Supervised> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // A launcher started in the background by a shell inherits SIGINT as
    // ignored, and so would its children, which then could not be stopped
    // by the forwarded SIGINT. Each child starts with the default action.
    // SAFETY: `signal` is async-signal-safe, as code between fork and exec
    // must be, and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::signal(libc::SIGINT, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| io::Error::other(format!("{name} exited before its id was read")))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let forwarders = [
        tokio::spawn(forward_lines(
            stdout,
            name.to_string(),
            Stream::Stdout,
            sink.clone(),
        )),
        tokio::spawn(forward_lines(
            stderr,
            name.to_string(),
            Stream::Stderr,
            sink,
        )),
    ];
    let task_name = name.to_string();
    let handle = tokio::spawn(async move {
        let status = supervise(&task_name, &mut child, stop, grace).await?;
        for forwarder in forwarders {
            let _ = forwarder.await;
        }
        Ok(status)
    });
    tracing::debug!(name, pid, "started child");
    Ok(Supervised {
        name: name.to_string(),
        pid,
        handle,
    })
}

/// Waits for `child` to exit, stopping it first when `stop` turns true.
async fn supervise(
    name: &str,
    child: &mut tokio::process::Child,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> io::Result<ExitStatus> {
    // Until `wait` returns, the child is not reaped, so its PID cannot be
    // reused and signalling it by PID is safe.
    if !*stop.borrow() {
        tokio::select! {
            status = child.wait() => return status,
            stopped = async { stop.wait_for(|stop| *stop).await.is_ok() } => {
                // A dropped sender can send no stop any more.
                if !stopped {
                    return child.wait().await;
                }
            }
        }
    }
    if let Some(pid) = child.id() {
        tracing::info!(name, pid, "sending SIGINT");
        if let Err(err) = send_signal(pid, libc::SIGINT) {
            tracing::warn!(name, pid, error = %err, "failed to send SIGINT");
        }
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(
                name,
                grace_s = grace.as_secs_f64(),
                "still running after SIGINT; killing it"
            );
            child.start_kill()?;
            child.wait().await
        }
    }
}

/// Sends `signal` to the process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::other(format!("process id {pid} is out of range")))?;
    // SAFETY: kill(2) has no memory-safety preconditions; the caller makes
    // sure `pid` is a child that has not been reaped yet.
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Forwards every line of `reader` to `sink` with the prefix of `name`.
/// Bytes that are not UTF-8 are replaced rather than dropped.
pub async fn forward_lines<R: AsyncRead + Unpin>(
    reader: R,
    name: String,
    stream: Stream,
    sink: LineSink,
) {
    let mut reader = BufReader::new(reader);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                let line = text.trim_end_matches(['\n', '\r']);
                sink(stream, &prefix_line(&name, line));
            }
            Err(err) => {
                tracing::warn!(name, error = %err, "failed to read child output");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;

    type Lines = Arc<Mutex<Vec<(Stream, String)>>>;

    fn collecting_sink() -> (LineSink, Lines) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let store = lines.clone();
        let sink: LineSink = Arc::new(move |stream, line: &str| {
            store.lock().unwrap().push((stream, line.to_string()));
        });
        (sink, lines)
    }

    fn sh(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    #[test]
    fn prefix_line_puts_name_in_brackets() {
        assert_eq!(prefix_line("site-0", "epoch 1"), "[site-0] epoch 1");
    }

    #[tokio::test]
    async fn output_is_forwarded_with_prefix_per_stream() {
        let (sink, lines) = collecting_sink();
        let (_stop_tx, stop) = watch::channel(false);
        let script = "echo one; echo two >&2; printf 'no newline'";
        let child = spawn(
            "coordinator",
            Path::new("/bin/sh"),
            &sh(script),
            sink,
            stop,
            Duration::from_secs(1),
        )
        .unwrap();
        let status = child.wait().await.unwrap();
        assert!(status.success());
        let mut lines = lines.lock().unwrap().clone();
        lines.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            lines,
            vec![
                (Stream::Stdout, "[coordinator] no newline".to_string()),
                (Stream::Stdout, "[coordinator] one".to_string()),
                (Stream::Stderr, "[coordinator] two".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced_not_dropped() {
        let (sink, lines) = collecting_sink();
        let (_stop_tx, stop) = watch::channel(false);
        let child = spawn(
            "site-1",
            Path::new("/bin/sh"),
            &sh("printf 'a\\377b\\n'"),
            sink,
            stop,
            Duration::from_secs(1),
        )
        .unwrap();
        child.wait().await.unwrap();
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].1, "[site-1] a\u{fffd}b");
    }

    #[tokio::test]
    async fn stop_sends_sigint_to_child() {
        let (sink, _lines) = collecting_sink();
        let (stop_tx, stop) = watch::channel(false);
        let child = spawn(
            "sleeper",
            Path::new("/bin/sleep"),
            &["30".into()],
            sink,
            stop,
            Duration::from_secs(10),
        )
        .unwrap();
        let started = Instant::now();
        stop_tx.send(true).unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGINT));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn child_ignoring_sigint_is_killed_after_grace() {
        let (sink, _lines) = collecting_sink();
        let (stop_tx, stop) = watch::channel(false);
        let script = "trap '' INT; exec sleep 30";
        let child = spawn(
            "stubborn",
            Path::new("/bin/sh"),
            &sh(script),
            sink,
            stop,
            Duration::from_millis(300),
        )
        .unwrap();
        // Gives the shell time to install its trap before the stop.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        stop_tx.send(true).unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn stop_before_spawn_still_stops_child() {
        let (sink, _lines) = collecting_sink();
        let (stop_tx, stop) = watch::channel(false);
        stop_tx.send(true).unwrap();
        let child = spawn(
            "late",
            Path::new("/bin/sleep"),
            &["30".into()],
            sink,
            stop,
            Duration::from_secs(5),
        )
        .unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGINT));
    }

    #[test]
    fn send_signal_to_missing_process_fails() {
        // PID 0x3fffffff is above Linux's maximum PID, so no process has it.
        let err = send_signal(0x3fff_ffff, libc::SIGINT).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    }
}
