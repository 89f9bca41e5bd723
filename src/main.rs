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
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise. burn logs
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
