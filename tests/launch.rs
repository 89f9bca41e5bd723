//! Whole runs with real processes on 127.0.0.1: `fedsynth launch` with a
//! coordinator and 2 sites, and a run of 3 sites, started one by one, in
//! which one site is killed while it trains. They read CIFAR-10 from
//! `FEDSYNTH_DATA` or from `../shared/cifar10/cifar-10-batches-bin`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fedsynth::report::{self, RunReport, RunStatus, SiteStatus};

const BIN: &str = env!("CARGO_BIN_EXE_fedsynth");
/// Upper bound on one whole tiny run on a shared 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

fn data_dir() -> PathBuf {
    match std::env::var_os("FEDSYNTH_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10/cifar-10-batches-bin")
        }
    }
}

/// Returns a tiny manifest: 300 images per site and one epoch per model,
/// except `gan_epochs` for the GAN.
fn tiny_manifest(out_dir: &Path, sites: usize, min_sites: usize, gan_epochs: usize) -> String {
    format!(
        r#"
[run]
name = "tiny"
out_dir = "{out}"
seed = 7
threads = 2

[data]
train_limit = {train_limit}
test_limit = 500

[coordinator]
address = "127.0.0.1:0"
min_sites = {min_sites}
join_timeout_s = 120
train_timeout_s = 600
upload_timeout_s = 120
heartbeat_timeout_s = 10
final_epochs = 1
centralised_baseline = true

[sites]
count = {sites}

[gan]
epochs = {gan_epochs}
batch_size = 32

[classifier]
epochs = 1

[synthetic]
samples_per_site = 64
chunk_images = 32

[audit]
k = 5
"#,
        out = out_dir.display(),
        train_limit = 300 * sites,
    )
}

/// Kills the child on drop, so a failed assert leaves no process behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child` with a deadline and returns its status and output.
fn wait_with_timeout(child: Child, timeout: Duration) -> Output {
    let mut guard = Guard(child);
    let mut stdout = guard.0.stdout.take().unwrap();
    let mut stderr = guard.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = guard.0.kill();
            panic!("process did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Runs `fedsynth launch MANIFEST --data DATA` to its end, as CI would.
fn launch(manifest: &Path, data: &Path, timeout: Duration) -> Output {
    launch_with(&[], manifest, data, timeout)
}

/// Runs `fedsynth GLOBAL... launch MANIFEST --data DATA` to its end, where
/// `global` contains options such as `--threads 1` that precede the command.
fn launch_with(global: &[&str], manifest: &Path, data: &Path, timeout: Duration) -> Output {
    let child = Command::new(BIN)
        .args(global)
        .arg("launch")
        .arg(manifest)
        .arg("--data")
        .arg(data)
        .env("CI", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_with_timeout(child, timeout)
}

fn only_run_folder(out_dir: &Path) -> PathBuf {
    let folders: Vec<PathBuf> = std::fs::read_dir(out_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(folders.len(), 1, "expected one run folder: {folders:?}");
    folders[0].clone()
}

fn assert_site_completed(report: &RunReport, shard: u32) {
    let site = report
        .sites
        .iter()
        .find(|site| site.shard_index == shard)
        .unwrap_or_else(|| panic!("no site with shard {shard}"));
    assert_eq!(site.status, SiteStatus::Completed, "shard {shard}");
    assert!(site.images_received > 0, "shard {shard} sent no image");
    assert!(site.bytes_received > 0, "shard {shard} sent no byte");
    assert!(site.audit.is_some(), "shard {shard} sent no audit");
}

#[test]
fn launch_runs_coordinator_and_two_sites() {
    let temp = tempfile::tempdir().unwrap();
    let out_dir = temp.path().join("runs");
    let manifest = temp.path().join("tiny.toml");
    std::fs::write(&manifest, tiny_manifest(&out_dir, 2, 2, 1)).unwrap();

    let output = launch(&manifest, &data_dir(), RUN_TIMEOUT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "launch failed:\n{stdout}\n{stderr}"
    );

    // The launcher merges the children's logs, each line with its prefix.
    for prefix in ["[coordinator] ", "[site-0] ", "[site-1] "] {
        assert!(stderr.contains(prefix), "no {prefix:?} lines in:\n{stderr}");
    }

    let run_dir = only_run_folder(&out_dir);
    let name = run_dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("tiny-"), "{name}");
    let printed = stdout.lines().last().unwrap_or_default();
    assert_eq!(Path::new(printed), run_dir.join("report.md"));

    let report = report::read_report(&run_dir).unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.sites.len(), 2);
    assert_site_completed(&report, 0);
    assert_site_completed(&report, 1);
    let final_eval = report.final_classifier.as_ref().expect("no c' evaluation");
    assert_eq!(final_eval.per_class_accuracy.len(), 10);
    assert_eq!(final_eval.count, 500);
    assert_eq!(report.pooled_label_histogram.len(), 10);

    // The centralised baseline c and its agreement with c'.
    let centralised = report.centralised.as_ref().expect("no c evaluation");
    assert_eq!(centralised.count, 500);
    let agreement = report.agreement.expect("no agreement");
    assert!((0.0..=1.0).contains(&agreement), "{agreement}");

    for file in [
        "report.md",
        "manifest.toml",
        "samples/site-0.png",
        "samples/site-1.png",
        "confusion.png",
        "label_histograms.png",
        "losses.png",
        "synthetic/pooled.bin",
        // The name `train-classifier --images synthetic/pooled.bin` reads.
        "synthetic/pooled.bin.labels.f32",
    ] {
        assert!(run_dir.join(file).is_file(), "missing {file}");
    }
    let markdown = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    assert!(markdown.contains("c' accuracy"));
    assert!(markdown.contains("c accuracy"));
}

/// Starts `fedsynth` with `args`, its stderr sent line by line to `lines`.
fn start(args: &[&str], name: &str, lines: mpsc::Sender<(String, String)>) -> Guard {
    let mut child = Command::new(BIN)
        .args(args)
        .env("CI", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let name = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send((name.clone(), line));
        }
    });
    Guard(child)
}

fn wait_for_file(path: &Path, timeout: Duration) -> String {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return text.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} was not written within {timeout:?}", path.display());
}

fn wait_for_exit(guard: &mut Guard, timeout: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < timeout,
            "process still running after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_completes_without_a_killed_site() {
    let temp = tempfile::tempdir().unwrap();
    let run_dir = temp.path().join("run");
    let manifest = temp.path().join("tiny.toml");
    let mut text = tiny_manifest(&temp.path().join("unused"), 3, 2, 3);
    text = text.replace(
        "centralised_baseline = true",
        "centralised_baseline = false",
    );
    std::fs::write(&manifest, text).unwrap();
    let address_file = temp.path().join("address");
    let data = data_dir();
    let data = data.to_str().unwrap();
    let (lines, received) = mpsc::channel();

    let mut coordinator = start(
        &[
            "--threads",
            "2",
            "coordinator",
            "--manifest",
            manifest.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
            "--address-file",
            address_file.to_str().unwrap(),
            "--data",
            data,
        ],
        "coordinator",
        lines.clone(),
    );
    let address = wait_for_file(&address_file, Duration::from_secs(60));
    let url = format!("http://{address}");
    let mut sites: Vec<Guard> = (0..3)
        .map(|index| {
            let shard = index.to_string();
            let work_dir = temp.path().join(format!("site-{index}"));
            start(
                &[
                    "--threads",
                    "1",
                    "site",
                    "--coordinator",
                    &url,
                    "--shard-index",
                    &shard,
                    "--work-dir",
                    work_dir.to_str().unwrap(),
                    "--data",
                    data,
                ],
                &format!("site-{index}"),
                lines.clone(),
            )
        })
        .collect();
    drop(lines);

    // Kills site 2 by its PID once it logs the end of its first of 3 GAN
    // epochs, so it dies in the middle of its local training.
    let started = Instant::now();
    let mut log = Vec::new();
    loop {
        let remaining = Duration::from_secs(300).saturating_sub(started.elapsed());
        let (name, line) = received
            .recv_timeout(remaining)
            .unwrap_or_else(|_| panic!("site-2 logged no GAN epoch; log:\n{}", log.join("\n")));
        let epoch_line = name == "site-2" && line.contains("GAN epoch 1/");
        log.push(format!("[{name}] {line}"));
        if epoch_line {
            break;
        }
    }
    let pid = sites[2].0.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    let status = wait_for_exit(&mut coordinator, RUN_TIMEOUT);
    let drain: Vec<String> = received
        .try_iter()
        .map(|(name, line)| format!("[{name}] {line}"))
        .collect();
    log.extend(drain);
    assert!(
        status.success(),
        "coordinator failed; log:\n{}",
        log.join("\n")
    );
    for (index, site) in sites.iter_mut().enumerate().take(2) {
        let status = wait_for_exit(site, Duration::from_secs(60));
        assert!(status.success(), "site-{index} failed");
    }

    let report = report::read_report(&run_dir).unwrap();
    assert_eq!(report.status, RunStatus::Completed);
    assert_eq!(report.sites.len(), 3);
    assert_site_completed(&report, 0);
    assert_site_completed(&report, 1);
    let killed = report.sites.iter().find(|s| s.shard_index == 2).unwrap();
    match &killed.status {
        SiteStatus::Dropped { reason } => assert!(!reason.is_empty()),
        other => panic!("killed site is {other:?}, not dropped"),
    }
    assert_eq!(killed.images_received, 0);
    assert!(report.final_classifier.is_some());
}

/// Returns the PID in a launcher line such as `... started site-0 pid=42 ...`.
fn started_pid(line: &str) -> Option<libc::pid_t> {
    if line.starts_with('[') || !line.contains(" started ") {
        return None;
    }
    let rest = &line[line.find("pid=")? + 4..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn launch_forwards_ctrl_c_to_children() {
    check_stop_forwarding(libc::SIGINT, false);
}

/// A launcher started in the background by a shell inherits SIGINT as
/// ignored; its children must still stop at the forwarded SIGINT.
#[test]
fn launch_started_ignoring_sigint_stops_children() {
    check_stop_forwarding(libc::SIGINT, true);
}

/// `kill`, `timeout` and service managers send SIGTERM, which stops the
/// run as Ctrl-C does.
#[test]
fn launch_forwards_sigterm_to_children() {
    check_stop_forwarding(libc::SIGTERM, false);
}

/// Sends `signal` to a launcher whose sites are training, and checks that
/// every child stops and the coordinator writes an interrupted report.
fn check_stop_forwarding(signal: libc::c_int, ignore_sigint: bool) {
    let temp = tempfile::tempdir().unwrap();
    let manifest = temp.path().join("long.toml");
    // Enough GAN epochs that the run is still training when SIGINT comes.
    std::fs::write(
        &manifest,
        tiny_manifest(&temp.path().join("runs"), 2, 2, 50),
    )
    .unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("launch")
        .arg(&manifest)
        .arg("--data")
        .arg(data_dir())
        .env("CI", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if ignore_sigint {
        use std::os::unix::process::CommandExt;
        // SAFETY: signal(2) is async-signal-safe, as code after fork must be.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let stdout_text = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let mut launcher = Guard(child);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });

    // Waits until both sites train, noting each child's PID on the way.
    let mut pids = Vec::new();
    let mut training = 0;
    let mut log = Vec::new();
    let started = Instant::now();
    while training < 2 {
        let remaining = Duration::from_secs(120).saturating_sub(started.elapsed());
        let line = received
            .recv_timeout(remaining)
            .unwrap_or_else(|_| panic!("sites did not start training; log:\n{}", log.join("\n")));
        pids.extend(started_pid(&line));
        if line.starts_with("[site-") && line.contains("training GAN") {
            training += 1;
        }
        log.push(line);
    }
    assert_eq!(
        pids.len(),
        3,
        "expected 3 child PIDs; log:\n{}",
        log.join("\n")
    );

    let launcher_pid = launcher.0.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(launcher_pid, signal) }, 0);
    let status = wait_for_exit(&mut launcher, Duration::from_secs(60));
    assert!(!status.success(), "an interrupted launch must fail");
    let rest: Vec<String> = received.try_iter().collect();
    log.extend(rest);
    let forwarded = log.iter().filter(|l| l.contains("sending SIGINT")).count();
    assert_eq!(forwarded, 3, "log:\n{}", log.join("\n"));
    let killed = log.iter().filter(|l| l.contains("killing it")).count();
    assert_eq!(
        killed,
        0,
        "a child ignored SIGINT; log:\n{}",
        log.join("\n")
    );
    for pid in pids {
        // Signal 0 only checks whether the process still exists.
        // SAFETY: kill(2) with signal 0 delivers nothing.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} outlived the launcher");
    }

    let run_dir = only_run_folder(&temp.path().join("runs"));
    let report = report::read_report(&run_dir)
        .unwrap_or_else(|err| panic!("no report after Ctrl-C: {err}; log:\n{}", log.join("\n")));
    assert!(
        matches!(&report.status, RunStatus::Interrupted { reason } if reason.contains("train")),
        "{:?}",
        report.status
    );
    let temps = temp_files(&run_dir);
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    // As after a completed run, the last line on stdout names report.md.
    let stdout = stdout_text.join().unwrap();
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        Path::new(last),
        run_dir.join("report.md"),
        "stdout:\n{stdout}"
    );
}

/// Lists the files under `dir` whose names mark an unfinished atomic write.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(temp_files(&path));
        } else if path.to_string_lossy().contains(".tmp.") {
            found.push(path);
        }
    }
    found
}

#[test]
fn launch_fails_when_coordinator_fails() {
    let temp = tempfile::tempdir().unwrap();
    let manifest = temp.path().join("tiny.toml");
    std::fs::write(&manifest, tiny_manifest(&temp.path().join("runs"), 2, 2, 1)).unwrap();
    // Every file is present, so the launcher's check passes, but the test
    // batch is truncated, so the coordinator fails when it loads it.
    let broken = temp.path().join("no-cifar-here");
    std::fs::create_dir(&broken).unwrap();
    std::fs::copy(
        data_dir().join("batches.meta.txt"),
        broken.join("batches.meta.txt"),
    )
    .unwrap();
    for name in fedsynth::data::cifar::TRAIN_FILES
        .iter()
        .chain(&["test_batch.bin"])
    {
        std::fs::write(broken.join(name), [0u8]).unwrap();
    }
    let output = launch(&manifest, &broken, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "launch succeeded:\n{stderr}");
    assert!(stderr.contains("[coordinator] "), "{stderr}");
    assert!(stderr.contains("no-cifar-here"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{last}");
    assert!(last.contains("coordinator"), "{last}");
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn launch_backend_flag_overrides_manifest() {
    let temp = tempfile::tempdir().unwrap();
    let manifest = temp.path().join("tiny.toml");
    std::fs::write(&manifest, tiny_manifest(&temp.path().join("runs"), 2, 2, 1)).unwrap();
    let flags = ["--backend", "wgpu"];
    let output = launch_with(&flags, &manifest, &data_dir(), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "launch ran without wgpu:\n{stderr}"
    );
    assert!(stderr.contains("run.backend"), "{stderr}");
    assert!(stderr.contains("--features wgpu"), "{stderr}");
    assert!(
        !stderr.contains("[coordinator]"),
        "a child started:\n{stderr}"
    );
}

#[test]
fn launch_threads_flag_overrides_manifest() {
    let temp = tempfile::tempdir().unwrap();
    let out_dir = temp.path().join("runs");
    let manifest = temp.path().join("tiny.toml");
    // The manifest sets 2 threads and the flag 1, which is fewer than sites.
    std::fs::write(&manifest, tiny_manifest(&out_dir, 2, 2, 1)).unwrap();
    let flags = ["--threads", "1"];
    let output = launch_with(&flags, &manifest, &data_dir(), Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "launch failed:\n{stderr}");
    assert!(stderr.contains("coordinator_threads=1"), "{stderr}");
    assert!(stderr.contains("site_threads=[1, 1]"), "{stderr}");
    assert!(stderr.contains("fewer threads than sites"), "{stderr}");
}

#[test]
fn launch_rejects_too_small_shards() {
    let temp = tempfile::tempdir().unwrap();
    let out_dir = temp.path().join("runs");
    let manifest = temp.path().join("tiny.toml");
    let text = tiny_manifest(&out_dir, 2, 2, 1).replace("train_limit = 600", "train_limit = 3");
    std::fs::write(&manifest, text).unwrap();
    let output = launch(&manifest, &data_dir(), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "launch succeeded:\n{stderr}");
    assert!(stderr.contains("`data.train_limit` = 3"), "{stderr}");
    assert!(stderr.contains("with 2 sites"), "{stderr}");
    assert!(
        stderr.contains("fewer than the 32 of one batch"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "a run folder was created");
}

#[test]
fn launch_rejects_missing_data_before_run_folder() {
    let temp = tempfile::tempdir().unwrap();
    let out_dir = temp.path().join("runs");
    let manifest = temp.path().join("tiny.toml");
    std::fs::write(&manifest, tiny_manifest(&out_dir, 2, 2, 1)).unwrap();
    let missing = temp.path().join("no-such-data");
    let output = launch(&manifest, &missing, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "launch succeeded:\n{stderr}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
    assert!(!out_dir.exists(), "a run folder was created");
}
