//! The `fedsynth` binary: parses the command line, sets up logging, runs the
//! command, and prints any error once with its cause chain.
//!
//! Exit codes: 0 on success, 1 on any error, 2 on a command-line usage error
//! (from clap).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = fedsynth::cli::Cli::parse();
    init_logging();
    fedsynth::kernels::keep_freed_memory();
    match fedsynth::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Joins an error and its causes with ": " and leaves out a cause whose text
/// the message before it already contains. Library errors embed their source
/// in their own message, so `{err:#}` would print that source twice.
fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for cause in err.chain() {
        let message = cause.to_string();
        if !previous.is_empty() && previous.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
        previous = message;
    }
    text
}

/// Logs to stderr at `info` unless `RUST_LOG` sets another filter. burn logs
/// through the `log` crate, which the subscriber's `tracing-log` bridge picks up.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use anyhow::Context;
    use fedsynth::data::cifar::ImageSet;

    #[test]
    fn error_chain_skips_repeated_cause() {
        let path = std::env::temp_dir().join("fedsynth-no-such-records.bin");
        let err = ImageSet::read(&path)
            .context("failed to read --images")
            .unwrap_err();
        let text = error_chain(&err);
        let cause = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
        assert!(text.starts_with("failed to read --images: "), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
    }

    #[test]
    fn error_chain_keeps_new_cause() {
        let err = anyhow::anyhow!("connection refused").context("failed to reach the coordinator");
        assert_eq!(
            error_chain(&err),
            "failed to reach the coordinator: connection refused"
        );
    }
}
