//! Protocol-level tests against a real `fedsynth coordinator` process on
//! 127.0.0.1 (port 0), driven by a test client built from the library's
//! generated gRPC types, and by real `fedsynth site` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fedsynth::federation::pb::{self, federation_client::FederationClient};
use tonic::Code;
use tonic::transport::Channel;

const IMAGE_BYTES: usize = 3072;
const CLASSES: usize = 10;
/// Limit for a phase change that needs no training.
const SHORT: Duration = Duration::from_secs(60);
/// Limit for a tiny run's local training and c'.
const LONG: Duration = Duration::from_secs(300);

fn data_dir() -> PathBuf {
    std::env::var_os("FEDSYNTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10/cifar-10-batches-bin")
        })
}

/// Writes a tiny run's manifest; `coordinator` lines go into the `[coordinator]` section.
fn write_manifest(dir: &Path, sites: usize, min_sites: usize, coordinator: &str) -> PathBuf {
    let text = format!(
        r#"
[run]
name = "federation-test"
seed = 3

[data]
train_limit = 600
test_limit = 500

[sites]
count = {sites}

[coordinator]
address = "127.0.0.1:0"
min_sites = {min_sites}
final_epochs = 1
{coordinator}

[gan]
epochs = 1
batch_size = 32

[classifier]
epochs = 1

[synthetic]
samples_per_site = 64
chunk_images = 16

[audit]
k = 5
"#
    );
    let path = dir.join("manifest.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A child process that is killed when the test ends, pass or fail.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, for at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], log: PathBuf) -> Process {
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fedsynth"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("FEDSYNTH_THREADS", "1")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .expect("failed to start fedsynth");
    Process { child, log }
}

/// Starts a coordinator and returns it with its `http://` address.
fn start_coordinator(dir: &Path, manifest: &Path) -> (Process, String) {
    let address_file = dir.join("address");
    let run_dir = dir.join("run");
    let data = data_dir();
    let args = [
        "coordinator",
        "--manifest",
        manifest.to_str().unwrap(),
        "--run-dir",
        run_dir.to_str().unwrap(),
        "--address-file",
        address_file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ];
    let mut process = spawn(&args, dir.join("coordinator.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !address_file.exists() {
        if let Some(status) = process.child.try_wait().unwrap() {
            panic!("coordinator exited with {status}:\n{}", process.log_text());
        }
        assert!(Instant::now() < deadline, "no address file within 30s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let address = std::fs::read_to_string(&address_file).unwrap();
    (process, format!("http://{}", address.trim()))
}

fn start_site(dir: &Path, url: &str, shard: u32) -> Process {
    let data = data_dir();
    let work_dir = dir.join(format!("site-{shard}"));
    let shard = shard.to_string();
    let args = [
        "site",
        "--coordinator",
        url,
        "--shard-index",
        &shard,
        "--data",
        data.to_str().unwrap(),
        "--work-dir",
        work_dir.to_str().unwrap(),
    ];
    spawn(&args, dir.join(format!("site-{shard}.log")))
}

async fn client(url: &str) -> FederationClient<Channel> {
    FederationClient::connect(url.to_string()).await.unwrap()
}

/// Polls until the task is not WAIT, for at most `limit`.
async fn poll_until(
    client: &mut FederationClient<Channel>,
    site_id: &str,
    finished: pb::TaskKind,
    limit: Duration,
) -> pb::Task {
    let deadline = Instant::now() + limit;
    loop {
        let request = pb::PollTaskRequest {
            site_id: site_id.into(),
            finished: finished as i32,
        };
        let task = client.poll_task(request).await.unwrap().into_inner();
        if task.kind() != pb::TaskKind::Wait {
            return task;
        }
        assert!(Instant::now() < deadline, "still waiting after {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn header(site_id: &str, upload_id: &str, count: u32) -> pb::UploadHeader {
    pb::UploadHeader {
        site_id: site_id.into(),
        upload_id: upload_id.into(),
        image_count: count,
        image_bytes: IMAGE_BYTES as u32,
        class_count: CLASSES as u32,
    }
}

fn uniform_chunk(images: usize) -> pb::UploadChunk {
    pb::UploadChunk {
        images: (0..images * IMAGE_BYTES).map(|i| (i % 251) as u8).collect(),
        probabilities: vec![0.1; images * CLASSES],
    }
}

fn stream(header: pb::UploadHeader, chunks: Vec<pb::UploadChunk>) -> Vec<pb::UploadMessage> {
    let mut messages = vec![pb::UploadMessage {
        body: Some(pb::upload_message::Body::Header(header)),
    }];
    messages.extend(chunks.into_iter().map(|chunk| pb::UploadMessage {
        body: Some(pb::upload_message::Body::Chunk(chunk)),
    }));
    messages
}

async fn upload(
    client: &mut FederationClient<Channel>,
    messages: Vec<pb::UploadMessage>,
) -> Result<pb::UploadResponse, tonic::Status> {
    client
        .upload_synthetic(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

fn read_report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("run/report.json")).expect("report.json missing");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_uploads_rejected_then_site_completes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(
        dir.path(),
        2,
        1,
        "join_timeout_s = 60\ntrain_timeout_s = 600\nupload_timeout_s = 120\nheartbeat_timeout_s = 20",
    );
    let (mut coordinator, url) = start_coordinator(dir.path(), &manifest);
    let mut client = client(&url).await;

    // The test client joins for shard 0; the real site takes shard 1.
    let join = client
        .join(pb::JoinRequest { shard_index: 0 })
        .await
        .unwrap()
        .into_inner();
    let id = join.site_id.clone();
    assert!(join.manifest_toml.contains("samples_per_site = 64"));
    let mut site = start_site(dir.path(), &url, 1);

    let train = poll_until(&mut client, &id, pb::TaskKind::Unspecified, SHORT).await;
    assert_eq!(train.kind(), pb::TaskKind::Train);
    let early = upload(
        &mut client,
        stream(header(&id, "early", 1), vec![uniform_chunk(1)]),
    )
    .await;
    assert_eq!(early.unwrap_err().code(), Code::FailedPrecondition);
    let task = poll_until(&mut client, &id, pb::TaskKind::Train, SHORT).await;
    assert_eq!(task.kind(), pb::TaskKind::Upload);
    assert!(task.deadline_unix_ms > 0);

    // Wrong image byte size, in the header and in a chunk.
    let mut wrong_size = header(&id, "u-bytes", 2);
    wrong_size.image_bytes = 3000;
    let err = upload(&mut client, stream(wrong_size, vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let mut partial = uniform_chunk(1);
    partial.images.truncate(IMAGE_BYTES - 1);
    let err = upload(
        &mut client,
        stream(header(&id, "u-partial", 1), vec![partial]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    // NaN and non-normalised probabilities.
    let mut nan = uniform_chunk(2);
    nan.probabilities[CLASSES + 4] = f32::NAN;
    let err = upload(&mut client, stream(header(&id, "u-nan", 2), vec![nan]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let mut unnormalised = uniform_chunk(2);
    unnormalised.probabilities[0] = 0.5;
    let err = upload(
        &mut client,
        stream(header(&id, "u-sum", 2), vec![unnormalised]),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());

    // More images than announced.
    let chunks = vec![uniform_chunk(2), uniform_chunk(1)];
    let err = upload(&mut client, stream(header(&id, "u-more", 2), chunks))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{}", err.message());

    // An unknown site id.
    let err = upload(
        &mut client,
        stream(
            header("site-7-unknown", "u-ghost", 1),
            vec![uniform_chunk(1)],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());

    // The coordinator kept running: a good upload is accepted whole.
    let good = || {
        stream(
            header(&id, "u-good", 4),
            vec![uniform_chunk(3), uniform_chunk(1)],
        )
    };
    let accepted = upload(&mut client, good()).await.unwrap();
    assert_eq!(accepted.accepted_images, 4);
    assert!(!accepted.duplicate);
    let again = upload(&mut client, good()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.accepted_images, 4);
    let audit = pb::AuditSubmission {
        site_id: id.clone(),
        summary_json: r#"{"flagged": 0}"#.into(),
        real_label_histogram: vec![30; CLASSES],
        images_sampled: 4,
        images_dropped_by_audit: 0,
    };
    client.submit_audit(audit).await.unwrap();

    // An upload after the site's upload phase is over.
    let late = upload(
        &mut client,
        stream(header(&id, "u-late", 1), vec![uniform_chunk(1)]),
    )
    .await
    .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition, "{}", late.message());

    // The real site trains and uploads, and the coordinator reports the run done.
    let done = poll_until(&mut client, &id, pb::TaskKind::Unspecified, LONG).await;
    assert_eq!(done.kind(), pb::TaskKind::Done, "{}", done.message);
    let site_status = site.wait_exit(Duration::from_secs(60));
    assert!(site_status.success(), "site failed:\n{}", site.log_text());
    let status = coordinator.wait_exit(Duration::from_secs(60));
    assert!(
        status.success(),
        "coordinator failed:\n{}",
        coordinator.log_text()
    );

    let report = read_report(dir.path());
    assert_eq!(report["status"]["state"], "completed");
    let sites = report["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 2);
    let test_site = sites.iter().find(|s| s["shard_index"] == 0).unwrap();
    assert_eq!(test_site["images_received"], 4, "duplicate counted twice");
    let real_site = sites.iter().find(|s| s["shard_index"] == 1).unwrap();
    assert_eq!(real_site["status"]["state"], "completed");
    assert!(real_site["images_received"].as_u64().unwrap() > 0);
    assert!(report["final_classifier"]["accuracy"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_sites_fail_join_phase() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), 3, 2, "join_timeout_s = 2");
    let started = Instant::now();
    let (mut coordinator, url) = start_coordinator(dir.path(), &manifest);
    let mut client = client(&url).await;
    let join = client
        .join(pb::JoinRequest { shard_index: 0 })
        .await
        .unwrap()
        .into_inner();

    let task = poll_until(&mut client, &join.site_id, pb::TaskKind::Unspecified, SHORT).await;
    assert_eq!(task.kind(), pb::TaskKind::Abort);
    let status = coordinator.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "coordinator should fail");
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = coordinator.log_text();
    let message = "only 1 of 2 expected sites joined within 2s";
    assert!(log.contains(message), "log lacks {message:?}:\n{log}");
    assert!(task.message.contains(message), "{}", task.message);

    let report = read_report(dir.path());
    assert_eq!(report["status"]["state"], "failed");
    let reason = report["status"]["reason"].as_str().unwrap();
    assert!(reason.contains(message), "{reason}");
}

#[test]
fn busy_port_leaves_no_run_folder() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), 1, 1, "");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let run_dir = dir.path().join("run");
    let data = data_dir();
    let output = Command::new(env!("CARGO_BIN_EXE_fedsynth"))
        .args(["coordinator", "--manifest"])
        .arg(&manifest)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--address", &address, "--data"])
        .arg(&data)
        .env("FEDSYNTH_THREADS", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&address), "{stderr}");
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(
        !run_dir.exists(),
        "the failed start left {}",
        run_dir.display()
    );
    drop(busy);
}

#[test]
fn coordinator_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), 2, 2, "join_timeout_s = 120");
    let (mut coordinator, _url) = start_coordinator(dir.path(), &manifest);
    let pid = coordinator.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = coordinator.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "an interrupted coordinator must fail");

    let report = read_report(dir.path());
    assert_eq!(report["status"]["state"], "interrupted");
    let reason = report["status"]["reason"].as_str().unwrap();
    assert!(reason.contains("SIGTERM"), "{reason}");
    assert!(reason.contains("join phase"), "{reason}");
}
