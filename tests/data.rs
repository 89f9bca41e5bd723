//! `fedsynth data download` and `fedsynth data info` through the binary,
//! against an HTTP server on 127.0.0.1 that each test starts itself.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fedsynth::data::cifar::{META_FILE, TEST_FILE, TRAIN_FILES};
use fedsynth::data::{CLASS_COUNT, IMAGE_BYTES, ImageSet};
use md5::{Digest, Md5};

const CLASS_NAMES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// `count` records with labels cycling from `first`.
fn records(count: usize, first: usize) -> Vec<u8> {
    let mut set = ImageSet::default();
    for i in 0..count {
        set.labels.push(((first + i) % CLASS_COUNT) as u8);
        set.images.extend(std::iter::repeat_n(i as u8, IMAGE_BYTES));
    }
    set.to_records()
}

/// Builds a gzip-compressed tar in the layout of the official release, with
/// `per_file` records in each training batch and 10 in the test batch.
fn release_archive(per_file: usize) -> Vec<u8> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let path = format!("cifar-10-batches-bin/{name}");
        tar.append_data(&mut header, path, bytes).unwrap();
    };
    for (index, name) in TRAIN_FILES.iter().enumerate() {
        add(name, &records(per_file, index));
    }
    add(TEST_FILE, &records(10, 0));
    add(META_FILE, CLASS_NAMES.as_bytes());
    add("readme.html", b"<html></html>");
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Serves `body` with `status` to one connection on 127.0.0.1, then stops.
/// The server gives up after 20 seconds without a connection.
fn serve_once(status: &'static str, body: Vec<u8>) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(err) => panic!("accept failed: {err}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        read_request_head(&mut stream);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
            body.len()
        );
        // The client may hang up early on an error status, so write errors
        // are not failures of the test.
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
    });
    (address, handle)
}

fn read_request_head(stream: &mut std::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
}

/// Runs `fedsynth data download --dir DIR --url URL [--md5 MD5]`.
fn download(dir: &Path, url: &str, md5: Option<&str>) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["data", "download", "--dir", dir, "--url", url];
    if let Some(md5) = md5 {
        args.extend(["--md5", md5]);
    }
    fedsynth(&args)
}

/// Runs the binary with no proxy settings, so requests to 127.0.0.1 go
/// straight to the test server.
fn fedsynth(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fedsynth"));
    for name in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    command
        .env_remove("FEDSYNTH_DATA")
        .env("CI", "true")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Names in `dir`, sorted, to check that nothing was left behind.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn download_unpacks_checked_release() {
    let archive = release_archive(3);
    let md5 = md5_hex(&archive);
    let (address, server) = serve_once("200 OK", archive);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cache/cifar-10-batches-bin");
    let url = format!("http://{address}/cifar-10-binary.tar.gz");

    let output = download(&dir, &url, Some(&md5));
    server.join().unwrap();
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("unpacked CIFAR-10"),
        "{}",
        text(&output.stdout)
    );
    for name in TRAIN_FILES.iter().chain(&[TEST_FILE, META_FILE]) {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    assert_eq!(
        entries(&root.path().join("cache")),
        vec!["cifar-10-batches-bin"]
    );
}

#[test]
fn download_rejects_md5_mismatch_and_leaves_nothing() {
    let archive = release_archive(2);
    let actual = md5_hex(&archive);
    let expected = "0123456789abcdef0123456789abcdef";
    let (address, server) = serve_once("200 OK", archive);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    let url = format!("http://{address}/cifar-10-binary.tar.gz");

    let output = download(&dir, &url, Some(expected));
    server.join().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "a corrupt download succeeded");
    assert!(stderr.contains("MD5 mismatch"), "{stderr}");
    assert!(stderr.contains(expected), "expected sum missing: {stderr}");
    assert!(stderr.contains(&actual), "received sum missing: {stderr}");
    assert!(
        entries(root.path()).is_empty(),
        "left behind: {:?}",
        entries(root.path())
    );
}

#[test]
fn download_reports_http_error_status() {
    let (address, server) = serve_once("404 Not Found", b"missing".to_vec());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    let url = format!("http://{address}/absent.tar.gz");

    let output = download(&dir, &url, None);
    server.join().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("HTTP status 404"), "{stderr}");
    assert!(
        entries(root.path()).is_empty(),
        "left behind: {:?}",
        entries(root.path())
    );
}

#[test]
fn download_rejects_archive_without_release() {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gzip);
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_cksum();
    tar.append_data(&mut header, "other/file.txt", &b"hello"[..])
        .unwrap();
    let archive = tar.into_inner().unwrap().finish().unwrap();
    let md5 = md5_hex(&archive);
    let (address, server) = serve_once("200 OK", archive);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    let url = format!("http://{address}/other.tar.gz");

    let output = download(&dir, &url, Some(&md5));
    server.join().unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("has no cifar-10-batches-bin directory"),
        "{stderr}"
    );
    assert!(
        entries(root.path()).is_empty(),
        "left behind: {:?}",
        entries(root.path())
    );
}

#[test]
fn download_skips_complete_target() {
    let archive = release_archive(1);
    let md5 = md5_hex(&archive);
    let (address, server) = serve_once("200 OK", archive);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    let url = format!("http://{address}/cifar-10-binary.tar.gz");
    let first = download(&dir, &url, Some(&md5));
    server.join().unwrap();
    assert!(first.status.success(), "stderr: {}", text(&first.stderr));

    // No server runs now, so a second request would fail.
    let again = download(&dir, &url, Some(&md5));
    assert!(again.status.success(), "stderr: {}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("already present"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn download_rejects_incomplete_target() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    let output = download(&dir, "http://127.0.0.1:9/x", None);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("not a complete CIFAR-10 directory"),
        "{stderr}"
    );
}

#[test]
fn download_rejects_invalid_md5_flag() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    // The MD5 is checked before any request, and the URL stays on loopback.
    let url = "http://127.0.0.1:9/x";
    let output = download(&dir, url, Some("xyz"));
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("invalid MD5 `xyz`"), "{stderr}");
}

#[test]
fn info_prints_counts_and_histogram() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&dir).unwrap();
    for (index, name) in TRAIN_FILES.iter().enumerate() {
        std::fs::write(dir.join(name), records(10, index)).unwrap();
    }
    std::fs::write(dir.join(TEST_FILE), records(20, 0)).unwrap();
    std::fs::write(dir.join(META_FILE), CLASS_NAMES).unwrap();

    let output = fedsynth(&["data", "info", "--data", dir.to_str().unwrap()]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(
        stdout.contains(&format!("directory: {}", dir.display())),
        "{stdout}"
    );
    assert!(stdout.contains("training images: 50"), "{stdout}");
    assert!(stdout.contains("test images: 20"), "{stdout}");
    let airplane = stdout
        .lines()
        .find(|line| line.starts_with("airplane"))
        .unwrap();
    assert_eq!(
        airplane.split_whitespace().collect::<Vec<_>>(),
        ["airplane", "5", "2"]
    );
}

#[test]
fn info_names_missing_directory_and_fix() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nowhere");
    let output = fedsynth(&["data", "info", "--data", dir.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(stderr.contains("fedsynth data download"), "{stderr}");
}

#[test]
fn info_rejects_file_as_data_directory() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("data_batch_1.bin");
    std::fs::write(&file, records(1, 0)).unwrap();
    let output = fedsynth(&["data", "info", "--data", file.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    assert!(stderr.contains("cifar-10-batches-bin"), "{stderr}");
    assert!(!stderr.contains("not found"), "{stderr}");
}
