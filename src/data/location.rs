//! Finds the CIFAR-10 directory: the `--data` flag, then `FEDSYNTH_DATA`,
//! then the manifest's `data.dir`, then a per-user cache directory.
//!
//! Only the path is chosen here; `Cifar10::load` checks that it exists.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::data::cifar::DataError;

/// Environment variable that names the CIFAR-10 directory.
pub const DATA_ENV: &str = "FEDSYNTH_DATA";

/// Name of the directory that the official archive unpacks to.
pub const DATA_DIR_NAME: &str = "cifar-10-batches-bin";

/// Returns the CIFAR-10 directory to use.
///
/// `flag` is `--data DIR` and `manifest` is the manifest's `data.dir`. An
/// empty or unset `FEDSYNTH_DATA` counts as absent. An empty path from the
/// flag or the manifest is rejected.
pub fn resolve_data_dir(
    flag: Option<&Path>,
    manifest: Option<&Path>,
) -> Result<PathBuf, DataError> {
    let env = std::env::var_os(DATA_ENV);
    resolve_from(flag, env, manifest)
}

/// Returns the per-user default: `<cache dir>/fedsynth/cifar-10-batches-bin`.
///
/// The cache directory is `$XDG_CACHE_HOME` or `~/.cache` on Linux and the
/// platform's equivalent elsewhere. Where the platform has none (no home
/// directory), the path is `.cache/fedsynth/cifar-10-batches-bin` relative to
/// the working directory.
pub fn default_data_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("fedsynth")
        .join(DATA_DIR_NAME)
}

/// Applies the lookup order to explicit inputs, so tests need not change
/// the process environment.
fn resolve_from(
    flag: Option<&Path>,
    env: Option<OsString>,
    manifest: Option<&Path>,
) -> Result<PathBuf, DataError> {
    if let Some(dir) = flag {
        return chosen(dir.to_path_buf(), "--data");
    }
    if let Some(dir) = env.filter(|value| !value.is_empty()) {
        return chosen(PathBuf::from(dir), DATA_ENV);
    }
    if let Some(dir) = manifest {
        return chosen(dir.to_path_buf(), "manifest data.dir");
    }
    chosen(default_data_dir(), "the per-user cache directory")
}

fn chosen(dir: PathBuf, source: &'static str) -> Result<PathBuf, DataError> {
    if dir.as_os_str().is_empty() {
        return Err(DataError::EmptyDataPath { origin: source });
    }
    tracing::debug!(dir = %dir.display(), source, "chose the CIFAR-10 directory");
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_every_other_source() {
        let dir = resolve_from(
            Some(Path::new("/flag")),
            Some("/env".into()),
            Some(Path::new("/manifest")),
        )
        .unwrap();
        assert_eq!(dir, PathBuf::from("/flag"));
    }

    #[test]
    fn environment_wins_over_manifest() {
        let dir = resolve_from(None, Some("/env".into()), Some(Path::new("/manifest"))).unwrap();
        assert_eq!(dir, PathBuf::from("/env"));
    }

    #[test]
    fn empty_environment_counts_as_unset() {
        let dir = resolve_from(None, Some(OsString::new()), Some(Path::new("/manifest"))).unwrap();
        assert_eq!(dir, PathBuf::from("/manifest"));
    }

    #[test]
    fn manifest_wins_over_default() {
        let dir = resolve_from(None, None, Some(Path::new("/manifest"))).unwrap();
        assert_eq!(dir, PathBuf::from("/manifest"));
    }

    #[test]
    fn default_is_cache_directory() {
        let dir = resolve_from(None, None, None).unwrap();
        assert_eq!(dir, default_data_dir());
        assert!(
            dir.ends_with("fedsynth/cifar-10-batches-bin"),
            "{}",
            dir.display()
        );
    }

    #[test]
    fn empty_flag_is_rejected_by_source() {
        let err = resolve_from(Some(Path::new("")), None, None).unwrap_err();
        assert!(err.to_string().contains("--data"), "{err}");
    }

    #[test]
    fn empty_manifest_dir_is_rejected_by_source() {
        let err = resolve_from(None, None, Some(Path::new(""))).unwrap_err();
        assert!(err.to_string().contains("data.dir"), "{err}");
    }
}
