//! Downloads the official CIFAR-10 binary release, checks its MD5 and
//! unpacks it.
//!
//! Everything is written into a hidden staging directory beside the target
//! and renamed into place only after the archive's sum and contents check
//! out, so a failed download leaves no partial `cifar-10-batches-bin`.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::data::cifar::{Cifar10, DataError, META_FILE, TEST_FILE, TRAIN_FILES};
use crate::data::location::DATA_DIR_NAME;
use crate::progress;

/// Address of the official CIFAR-10 binary release.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of that archive, as published beside it.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

/// Prefix of staging directory names, after the target's own name.
const STAGING_MARK: &str = ".download-";

/// A failed download.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("invalid MD5 `{value}`: expected 32 hexadecimal digits")]
    InvalidMd5 { value: String },
    #[error("{0} exists but is not a complete CIFAR-10 directory; remove it or pass another --dir")]
    IncompleteTarget(PathBuf),
    #[error("request to {url} failed: {source}")]
    Request { url: String, source: ureq::Error },
    #[error("request to {url} failed with HTTP status {status}; check the URL")]
    Status { url: String, status: u16 },
    #[error("failed to receive {url}: {source}")]
    Receive { url: String, source: io::Error },
    #[error(
        "MD5 mismatch for {url}: expected {expected}, received {actual}; the download is corrupt or the URL serves another file"
    )]
    Md5Mismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("failed to unpack {archive}: {source}")]
    Unpack { archive: PathBuf, source: io::Error },
    #[error(
        "archive from {url} has no {DATA_DIR_NAME} directory; pass the CIFAR-10 binary release"
    )]
    MissingDataDir { url: String },
    #[error("unpacked archive is not a valid CIFAR-10 release: {0}")]
    InvalidRelease(#[source] DataError),
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Source, expected sum and target directory of a download.
#[derive(Clone, Debug)]
pub struct DownloadRequest {
    pub url: String,
    /// Expected MD5 of the archive, in hexadecimal.
    pub md5: String,
    /// The final `cifar-10-batches-bin` directory.
    pub dir: PathBuf,
}

/// The result of a successful [`download`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// The archive was fetched, checked and unpacked into the target.
    Downloaded { bytes: u64, md5: String },
    /// The target already contained every file of the release.
    AlreadyPresent,
}

/// Fetches the archive at `request.url`, checks its MD5, unpacks it and
/// renames its `cifar-10-batches-bin` directory to `request.dir`.
pub fn download(request: &DownloadRequest) -> Result<DownloadOutcome, DownloadError> {
    let expected = normalise_md5(&request.md5)?;
    if request.dir.exists() {
        if is_complete(&request.dir) {
            return Ok(DownloadOutcome::AlreadyPresent);
        }
        return Err(DownloadError::IncompleteTarget(request.dir.clone()));
    }
    let parent = parent_dir(&request.dir);
    fs::create_dir_all(&parent).map_err(|source| io_error("create", &parent, source))?;
    remove_stale_staging(&request.dir);
    let staging = Staging::create(&request.dir)?;

    // Fetch into the staging directory, hashing while writing.
    let archive = staging.path.join("cifar-10-binary.tar.gz");
    let (bytes, actual) = fetch(&request.url, &archive)?;
    if actual != expected {
        return Err(DownloadError::Md5Mismatch {
            url: request.url.clone(),
            expected,
            actual,
        });
    }
    tracing::info!(bytes, md5 = %actual, "download complete and MD5 matches");

    // Unpack and check the release before it becomes visible.
    let unpacked = staging.path.join("unpacked");
    unpack(&archive, &unpacked)?;
    let release = unpacked.join(DATA_DIR_NAME);
    if !release.is_dir() {
        return Err(DownloadError::MissingDataDir {
            url: request.url.clone(),
        });
    }
    let data = Cifar10::load(&release).map_err(DownloadError::InvalidRelease)?;
    tracing::info!(
        train = data.train.len(),
        test = data.test.len(),
        "unpacked archive is a valid CIFAR-10 release"
    );

    // A rename within one directory is atomic, and it fails rather than
    // merging when another process created the target meanwhile.
    fs::rename(&release, &request.dir)
        .map_err(|source| io_error("move the release to", &request.dir, source))?;
    Ok(DownloadOutcome::Downloaded { bytes, md5: actual })
}

/// Whether `dir` contains every file of the CIFAR-10 binary release.
pub fn is_complete(dir: &Path) -> bool {
    let mut names = TRAIN_FILES.iter().copied().chain([TEST_FILE, META_FILE]);
    names.all(|name| dir.join(name).is_file())
}

/// Checks and lowercases a hexadecimal MD5.
fn normalise_md5(value: &str) -> Result<String, DownloadError> {
    let trimmed = value.trim();
    if trimmed.len() != 32 || !trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DownloadError::InvalidMd5 {
            value: value.to_string(),
        });
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Streams `url` into `path` and returns the byte count and the MD5.
fn fetch(url: &str, path: &Path) -> Result<(u64, String), DownloadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .into();
    tracing::info!(url, "downloading CIFAR-10");
    let response = agent
        .get(url)
        .call()
        .map_err(|source| DownloadError::Request {
            url: url.to_string(),
            source,
        })?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(DownloadError::Status {
            url: url.to_string(),
            status,
        });
    }
    let length = response
        .headers()
        .get("content-length")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());

    let bar = progress::bytes_bar(length, "cifar-10");
    let mut reader = response.into_body().into_reader();
    let mut file = fs::File::create(path).map_err(|source| io_error("create", path, source))?;
    let mut hasher = Md5::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let read = reader
            .read(&mut buffer)
            .map_err(|source| DownloadError::Receive {
                url: url.to_string(),
                source,
            })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])
            .map_err(|source| io_error("write", path, source))?;
        total += read as u64;
        bar.inc(read as u64);
    }
    file.sync_all()
        .map_err(|source| io_error("write", path, source))?;
    bar.finish_and_clear();
    let md5 = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok((total, md5))
}

/// Unpacks the gzip-compressed tar at `archive` into `dest`.
///
/// The `tar` crate skips entries whose paths would leave `dest`.
fn unpack(archive: &Path, dest: &Path) -> Result<(), DownloadError> {
    let unpack_error = |source| DownloadError::Unpack {
        archive: archive.to_path_buf(),
        source,
    };
    let file = fs::File::open(archive).map_err(unpack_error)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    tar.set_preserve_permissions(false);
    tar.unpack(dest).map_err(unpack_error)
}

/// A hidden directory beside the target, removed on drop.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn create(target: &Path) -> Result<Staging, DownloadError> {
        let mut name = staging_prefix(target).into_os_string();
        name.push(std::process::id().to_string());
        let path = PathBuf::from(name);
        fs::create_dir(&path).map_err(|source| io_error("create", &path, source))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "failed to remove the staging directory");
        }
    }
}

/// `<parent>/.<target name>.download-`, to which the process id is appended.
fn staging_prefix(target: &Path) -> PathBuf {
    let name = format!(".{}{STAGING_MARK}", file_name(target));
    parent_dir(target).join(name)
}

/// Removes staging directories left by downloads whose process is gone,
/// for example after Ctrl-C, where no destructor runs.
///
/// NOTE: liveness is read from /proc, so on systems without it stale
/// staging directories stay until removed by hand.
fn remove_stale_staging(target: &Path) {
    let prefix = file_name(&staging_prefix(target));
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        let proc_dir = Path::new("/proc");
        if !proc_dir.is_dir() || proc_dir.join(pid).exists() {
            continue;
        }
        tracing::debug!(path = %entry.path().display(), "removing a stale staging directory");
        let _ = fs::remove_dir_all(entry.path());
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| DATA_DIR_NAME.to_string())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> DownloadError {
    DownloadError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_is_checked_and_lowercased() {
        let upper = CIFAR10_MD5.to_ascii_uppercase();
        assert_eq!(normalise_md5(&upper).unwrap(), CIFAR10_MD5);
        let short = normalise_md5("abc").unwrap_err();
        assert!(short.to_string().contains("`abc`"), "{short}");
        let not_hex = normalise_md5(&"g".repeat(32)).unwrap_err();
        assert!(
            matches!(not_hex, DownloadError::InvalidMd5 { .. }),
            "{not_hex}"
        );
    }

    #[test]
    fn staging_sits_beside_target_and_is_hidden() {
        let prefix = staging_prefix(Path::new("/cache/fedsynth/cifar-10-batches-bin"));
        assert_eq!(
            prefix,
            PathBuf::from("/cache/fedsynth/.cifar-10-batches-bin.download-")
        );
    }

    #[test]
    fn stale_staging_of_dead_process_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(DATA_DIR_NAME);
        // Linux process ids stay below 2^22, so this one never runs.
        let stale = dir.path().join(".cifar-10-batches-bin.download-4999999");
        let live = dir.path().join(format!(
            ".cifar-10-batches-bin.download-{}",
            std::process::id()
        ));
        fs::create_dir(&stale).unwrap();
        fs::create_dir(&live).unwrap();
        remove_stale_staging(&target);
        assert!(!stale.exists(), "stale staging directory kept");
        assert!(live.exists(), "live staging directory removed");
    }

    #[test]
    fn staging_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join(DATA_DIR_NAME);
        let path = {
            let staging = Staging::create(&target).unwrap();
            fs::write(staging.path.join("partial"), b"half").unwrap();
            staging.path.clone()
        };
        assert!(!path.exists());
    }
}
