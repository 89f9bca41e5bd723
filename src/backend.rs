//! The compute backends compiled into this binary, and the CPU thread pool.
//!
//! `flex` (burn's pure-Rust CPU backend) is always compiled in. `wgpu` is
//! compiled in by the cargo feature of the same name.

use std::fmt;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A compute backend that can be requested by `--backend` or a manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn's `flex` CPU backend.
    #[default]
    Flex,
    /// burn-wgpu on the best GPU adapter found; needs the `wgpu` cargo feature.
    Wgpu,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendKind::Flex => f.write_str("flex"),
            BackendKind::Wgpu => f.write_str("wgpu"),
        }
    }
}

/// Error for a backend that this binary cannot provide.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "backend `{0}` is not compiled into this binary; rebuild with `cargo build --release --features {0}`"
    )]
    NotCompiled(BackendKind),
}

impl BackendKind {
    /// Returns the inference device of this backend, without autodiff.
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            BackendKind::Flex => Ok(Device::flex()),
            BackendKind::Wgpu => wgpu_device(),
        }
    }

    /// Whether this binary was compiled with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            BackendKind::Flex => true,
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, BackendError> {
    Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, BackendError> {
    Err(BackendError::NotCompiled(BackendKind::Wgpu))
}

/// The largest `--threads` or `run.threads` accepted. More threads than
/// cores only slow training down, and tens of thousands of threads exhaust
/// the memory for their stacks before the first step.
pub const MAX_THREADS: usize = 1024;

/// Parses a `--threads` value: 0 for every core, or 1 to [`MAX_THREADS`].
pub fn parse_threads(value: &str) -> Result<usize, String> {
    let threads: usize = value.parse().map_err(|_| {
        format!("invalid thread count `{value}`: use 0 for every core, or a whole number from 1 to {MAX_THREADS}")
    })?;
    if threads > MAX_THREADS {
        return Err(format!(
            "invalid thread count `{value}`: at most {MAX_THREADS}; use 0 for every core"
        ));
    }
    Ok(threads)
}

/// Returns the logical cores of this machine, or 1 when they cannot be counted.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Sizes the global rayon pool that the `flex` backend computes on, and
/// returns its size.
///
/// `threads == 0` means one thread per logical core. The pool can be sized
/// once per process; later calls keep the first size. Fails when the
/// threads cannot be started.
pub fn configure_threads(threads: usize) -> anyhow::Result<usize> {
    let cores = available_cores();
    let count = if threads == 0 { cores } else { threads };
    if count > cores {
        tracing::warn!(
            threads = count,
            cores,
            "more compute threads than logical cores; they share the cores and each step runs slower. Pass --threads 0 for one per core"
        );
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(count)
        .thread_name(|i| format!("fedsynth-compute-{i}"))
        .build_global();
    if let Err(err) = built {
        // Only a failure to start the threads carries an I/O error as its
        // source; the other error means that the pool is already built.
        if std::error::Error::source(&err).is_some() {
            anyhow::bail!(
                "failed to start {count} compute threads: {err}; pass a smaller --threads"
            );
        }
        tracing::debug!("rayon pool already built; keeping its size");
    }
    Ok(rayon::current_num_threads())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_compiled() {
        assert!(BackendKind::Flex.is_compiled());
        assert!(BackendKind::Flex.device().is_ok());
    }

    #[test]
    fn parse_threads_accepts_zero_to_max() {
        assert_eq!(parse_threads("0"), Ok(0));
        assert_eq!(parse_threads("2"), Ok(2));
        assert_eq!(parse_threads("1024"), Ok(MAX_THREADS));
    }

    #[test]
    fn parse_threads_rejects_too_many() {
        let err = parse_threads("100000").unwrap_err();
        assert!(err.contains("`100000`"), "{err}");
        assert!(err.contains("at most 1024"), "{err}");
    }

    #[test]
    fn parse_threads_rejects_non_numbers() {
        let err = parse_threads("-1").unwrap_err();
        assert!(err.contains("`-1`"), "{err}");
        assert!(err.contains("0 for every core"), "{err}");
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn missing_wgpu_names_the_feature() {
        let err = BackendKind::Wgpu.device().unwrap_err().to_string();
        assert!(err.contains("--features wgpu"), "{err}");
    }
}
