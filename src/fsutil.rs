//! Atomic file writes: a temporary file in the target's directory, then a
//! rename, so a reader never sees a half-written file and a failed write
//! leaves the previous file in place.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// Writes `bytes` to `path` atomically, creating parent directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |file| file.write_all(bytes))
}

/// Writes a file atomically through `fill`, which receives the temporary file.
///
/// The temporary file is removed when `fill` or the rename fails.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut fs::File) -> io::Result<()>,
{
    let _writing = WRITES
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let parent = parent_dir(path);
    fs::create_dir_all(&parent)?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        fill(&mut file)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Held shared by every atomic write and exclusively by [`freeze_writes`].
static WRITES: RwLock<()> = RwLock::new(());

/// Waits for the atomic writes in flight to finish, then blocks every later
/// one for the rest of the process, so a process that is shutting down can
/// exit without leaving a temporary file behind. Call it only right before
/// the process exits: a later write on any thread never returns.
pub fn freeze_writes() {
    let guard = WRITES
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    std::mem::forget(guard);
}

/// Removes, under `dir` and its subdirectories, the temporary files that
/// atomic writes of this process or of processes no longer running left
/// behind, for example when one was killed mid-write. Returns how many it
/// removed. Call it after [`freeze_writes`] so no write of this process is
/// in flight.
pub fn remove_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            removed += remove_temp_files(&path)?;
        } else if temp_owner(&entry.file_name().to_string_lossy()).is_some_and(writer_is_gone) {
            fs::remove_file(&path)?;
            tracing::debug!(path = %path.display(), "removed a temporary file of an interrupted write");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Returns the PID in a temporary file name made by [`temp_path`].
fn temp_owner(name: &str) -> Option<u32> {
    let (rest, counter) = name.strip_prefix('.')?.rsplit_once('.')?;
    let (rest, pid) = rest.rsplit_once('.')?;
    if !rest.ends_with(".tmp") || !counter.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Returns whether the writer `pid` can no longer finish its write: it is
/// this process (whose writes are frozen) or a process that no longer runs.
fn writer_is_gone(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    proc.is_dir() && !proc.join(pid.to_string()).exists()
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &json)
}

/// Fails when `path`, named by the command-line `flag`, exists and is not a
/// directory, so a command that writes into it stops before doing its work
/// rather than at its first write.
pub fn require_dir_target(path: &Path, flag: &str) -> io::Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!(
                "{flag} {} is a file, not a directory; pass a directory (it is created when missing)",
                path.display()
            ),
        ));
    }
    Ok(())
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Returns a sibling path unique to this process and call, so concurrent
/// writers of the same target never share a temporary file.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_string());
    parent_dir(path).join(format!(".{name}.tmp.{}.{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_temp_files_of_gone_writers() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("checkpoints/gan/resume");
        fs::create_dir_all(&nested).unwrap();
        let own = nested.join(format!(".state.json.tmp.{}.3", std::process::id()));
        // PIDs above the kernel's 2^22 limit never run.
        let dead = nested.join(".generator.bpk.tmp.4194999.0");
        let target = nested.join("state.json");
        for path in [&own, &dead, &target] {
            fs::write(path, b"x").unwrap();
        }
        assert_eq!(remove_temp_files(dir.path()).unwrap(), 2);
        assert!(!own.exists());
        assert!(!dead.exists());
        assert!(target.exists());
    }

    #[test]
    fn temp_owner_parses_temp_names_only() {
        let name = temp_path(Path::new("a/b.json"));
        let name = name.file_name().unwrap().to_string_lossy();
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        assert_eq!(temp_owner("b.json"), None);
        assert_eq!(temp_owner(".b.json.tmp.x.1"), None);
    }

    #[test]
    fn write_atomic_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
    }

    #[test]
    fn failed_fill_keeps_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file.txt");
        write_atomic(&path, b"kept").unwrap();
        let err = write_atomic_with(&path, |_| Err(io::Error::other("boom")));
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        let entries = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "temporary file left behind");
    }
}
