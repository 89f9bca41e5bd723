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

/// Sizes the global rayon pool that the `flex` backend computes on.
///
/// `threads == 0` means one thread per logical core. The pool can be sized
/// once per process; later calls keep the first size and return `Ok`.
pub fn configure_threads(threads: usize) -> usize {
    let count = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(count)
        .thread_name(|i| format!("fedsynth-compute-{i}"))
        .build_global();
    if built.is_err() {
        tracing::debug!("rayon pool already built; keeping its size");
    }
    rayon::current_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_is_always_compiled() {
        assert!(BackendKind::Flex.is_compiled());
        assert!(BackendKind::Flex.device().is_ok());
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn missing_wgpu_names_the_feature() {
        let err = BackendKind::Wgpu.device().unwrap_err().to_string();
        assert!(err.contains("--features wgpu"), "{err}");
    }
}
