//! The launch plan: what `fedsynth launch` decides before it starts a
//! process. It names the run folder, splits the CPU threads between the
//! sites and builds each child's command line. Nothing here starts a process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use crate::backend::available_cores;

/// File in the run folder where the coordinator writes its bound address.
pub const ADDRESS_FILE: &str = "coordinator.address";

/// Everything needed to start the coordinator and the sites of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchPlan {
    /// The `fedsynth` binary that every child runs.
    pub exe: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    /// CIFAR-10 directory passed to every child as `--data`, when known.
    pub data_dir: Option<PathBuf>,
    pub run_dir: PathBuf,
    /// Compute threads of the coordinator, which trains only after the
    /// sites are done and so gets all of `run.threads`.
    pub coordinator_threads: usize,
    /// Compute threads of each site, indexed by shard.
    pub site_threads: Vec<usize>,
}

impl LaunchPlan {
    /// Returns the path of the file where the coordinator writes its address.
    pub fn address_file(&self) -> PathBuf {
        self.run_dir.join(ADDRESS_FILE)
    }

    /// Returns the work directory of the site with shard `index`.
    pub fn site_dir(&self, index: usize) -> PathBuf {
        self.run_dir.join("sites").join(index.to_string())
    }

    /// Returns the arguments of the coordinator process.
    pub fn coordinator_args(&self) -> Vec<OsString> {
        let mut args = self.global_args(self.coordinator_threads);
        args.push("coordinator".into());
        args.push("--manifest".into());
        args.push(self.manifest_path.clone().into());
        args.push("--run-dir".into());
        args.push(self.run_dir.clone().into());
        args.push("--address-file".into());
        args.push(self.address_file().into());
        self.push_data(&mut args);
        args
    }

    /// Returns the arguments of the site process for shard `index`, dialling `address`
    /// (`HOST:PORT`, as the coordinator wrote it).
    pub fn site_args(&self, index: usize, address: &str) -> Vec<OsString> {
        let mut args = self.global_args(self.site_threads[index]);
        args.push("site".into());
        args.push("--coordinator".into());
        args.push(format!("http://{address}").into());
        args.push("--shard-index".into());
        args.push(index.to_string().into());
        args.push("--work-dir".into());
        args.push(self.site_dir(index).into());
        self.push_data(&mut args);
        args
    }

    fn global_args(&self, threads: usize) -> Vec<OsString> {
        vec![
            "--backend".into(),
            self.manifest.run.backend.to_string().into(),
            "--threads".into(),
            threads.to_string().into(),
        ]
    }

    fn push_data(&self, args: &mut Vec<OsString>) {
        if let Some(dir) = &self.data_dir {
            args.push("--data".into());
            args.push(dir.clone().into());
        }
    }
}

/// Splits `total` compute threads (0 means every core) between `sites`
/// processes, which run at the same time.
///
/// Every site gets at least one thread, so with more sites than threads
/// the machine is oversubscribed. The remainder goes to the first sites.
pub fn split_threads(total: usize, sites: usize) -> Vec<usize> {
    let total = if total == 0 { available_cores() } else { total };
    let base = (total / sites.max(1)).max(1);
    let extra = total.saturating_sub(base * sites);
    (0..sites)
        .map(|index| base + usize::from(index < extra))
        .collect()
}

/// Returns the run folder name `<name>-<YYYYMMDDTHHMMSSZ>` for `time`.
pub fn run_folder_name(name: &str, time: chrono::DateTime<chrono::Utc>) -> String {
    format!("{name}-{}", time.format("%Y%m%dT%H%M%SZ"))
}

/// Creates a fresh run folder `<out_dir>/<name>-<timestamp>` and returns
/// its absolute path. A folder that already exists is never reused: a
/// second run within the same second gets a `-2`, `-3`... suffix.
pub fn create_run_folder(
    out_dir: &Path,
    name: &str,
    time: chrono::DateTime<chrono::Utc>,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(out_dir)?;
    let out_dir = std::fs::canonicalize(out_dir)?;
    let base = run_folder_name(name, time);
    for attempt in 1..1000 {
        let folder = if attempt == 1 {
            base.clone()
        } else {
            format!("{base}-{attempt}")
        };
        let path = out_dir.join(folder);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "999 run folders named {base} already exist in {}",
        out_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn plan() -> LaunchPlan {
        LaunchPlan {
            exe: PathBuf::from("/bin/fedsynth"),
            manifest_path: PathBuf::from("/m/local.toml"),
            manifest: Manifest::default(),
            data_dir: Some(PathBuf::from("/data/cifar")),
            run_dir: PathBuf::from("/runs/r-1"),
            coordinator_threads: 4,
            site_threads: vec![2, 2],
        }
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn threads_split_evenly_with_remainder_first() {
        assert_eq!(split_threads(8, 2), vec![4, 4]);
        assert_eq!(split_threads(7, 3), vec![3, 2, 2]);
        assert_eq!(split_threads(2, 2), vec![1, 1]);
    }

    #[test]
    fn threads_give_every_site_at_least_one() {
        assert_eq!(split_threads(2, 3), vec![1, 1, 1]);
    }

    #[test]
    fn zero_threads_split_all_cores() {
        let split = split_threads(0, 2);
        assert_eq!(split.len(), 2);
        let cores = available_cores();
        assert_eq!(split.iter().sum::<usize>(), cores.max(2));
    }

    #[test]
    fn run_folder_name_has_utc_timestamp() {
        let time = chrono::Utc.with_ymd_and_hms(2026, 12, 4, 15, 2, 9).unwrap();
        assert_eq!(run_folder_name("local", time), "local-20261204T150209Z");
    }

    #[test]
    fn run_folder_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let time = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let first = create_run_folder(&dir.path().join("runs"), "r", time).unwrap();
        let second = create_run_folder(&dir.path().join("runs"), "r", time).unwrap();
        assert!(first.is_absolute());
        assert!(first.ends_with("r-20260102T030405Z"));
        assert!(second.ends_with("r-20260102T030405Z-2"));
    }

    #[test]
    fn coordinator_args_follow_the_process_contract() {
        let args = strings(plan().coordinator_args());
        let expected = [
            "--backend",
            "flex",
            "--threads",
            "4",
            "coordinator",
            "--manifest",
            "/m/local.toml",
            "--run-dir",
            "/runs/r-1",
            "--address-file",
            "/runs/r-1/coordinator.address",
            "--data",
            "/data/cifar",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn site_args_follow_the_process_contract() {
        let args = strings(plan().site_args(1, "127.0.0.1:5000"));
        let expected = [
            "--backend",
            "flex",
            "--threads",
            "2",
            "site",
            "--coordinator",
            "http://127.0.0.1:5000",
            "--shard-index",
            "1",
            "--work-dir",
            "/runs/r-1/sites/1",
            "--data",
            "/data/cifar",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn args_omit_data_when_unknown() {
        let mut plan = plan();
        plan.data_dir = None;
        let args = strings(plan.site_args(0, "127.0.0.1:1"));
        assert!(!args.contains(&"--data".to_string()));
    }
}
