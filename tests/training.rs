//! The local training commands, run as real processes on a small slice of
//! the real CIFAR-10 data: train, sample, label and evaluate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data_dir() -> PathBuf {
    std::env::var_os("FEDSYNTH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10/cifar-10-batches-bin")
        })
}

fn fedsynth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedsynth"))
        .args(["--threads", "2"])
        .args(args)
        .env("CI", "1")
        .output()
        .expect("the fedsynth binary runs")
}

/// Runs fedsynth with `args`, asserts that it fails, and returns its stderr.
fn failure(args: &[&str]) -> String {
    let output = fedsynth(args);
    assert!(!output.status.success(), "fedsynth {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn train_sample_and_evaluate_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let data = data_dir();
    let gan = work.path().join("gan");
    let clf = work.path().join("clf");
    let samples = work.path().join("samples.bin");

    let output = fedsynth(&[
        "train-gan",
        "--data",
        path(&data),
        "--limit",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        path(&gan),
    ]);
    assert_success(&output);
    assert!(gan.join("generator.safetensors").is_file());
    assert!(gan.join("generator.json").is_file());

    let output = fedsynth(&[
        "train-classifier",
        "--data",
        path(&data),
        "--limit",
        "64",
        "--epochs",
        "1",
        "--out",
        path(&clf),
    ]);
    assert_success(&output);
    assert!(clf.join("classifier.safetensors").is_file());

    let output = fedsynth(&[
        "sample",
        "--generator",
        path(&gan),
        "--classifier",
        path(&clf),
        "--count",
        "10",
        "--out",
        path(&samples),
    ]);
    assert_success(&output);
    let records = std::fs::read(&samples).unwrap();
    assert_eq!(records.len(), 10 * 3073);
    assert!(records.chunks(3073).all(|record| record[0] < 10));
    let labels = std::fs::read(work.path().join("samples.bin.labels.f32")).unwrap();
    assert_eq!(labels.len(), 10 * 10 * 4);
    let grid = std::fs::read(work.path().join("samples.png")).unwrap();
    assert_eq!(&grid[1..4], b"PNG");

    // A classifier trained on the sampled set with its soft labels.
    let synthetic_clf = work.path().join("synthetic-clf");
    let output = fedsynth(&[
        "train-classifier",
        "--images",
        path(&samples),
        "--epochs",
        "1",
        "--out",
        path(&synthetic_clf),
    ]);
    assert_success(&output);

    let output = fedsynth(&[
        "evaluate",
        "--data",
        path(&data),
        "--classifier",
        path(&clf),
        "--limit",
        "50",
    ]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("of 50 images"), "{stdout}");
    assert!(stdout.contains("airplane"), "{stdout}");
    let json = std::fs::read_to_string(clf.join("evaluation.json")).unwrap();
    let evaluation: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(evaluation["count"], 50);
    assert_eq!(evaluation["confusion"].as_array().unwrap().len(), 10);
}

#[test]
fn sample_without_checkpoint_names_the_file() {
    let work = tempfile::tempdir().unwrap();
    let stderr = failure(&["sample", "--generator", path(work.path()), "--count", "2"]);
    assert!(stderr.contains("generator.json"), "{stderr}");
    assert!(stderr.contains("train first"), "{stderr}");
}

#[test]
fn bench_steps_prints_images_per_second() {
    let output = fedsynth(&[
        "bench",
        "steps",
        "--warmup",
        "0",
        "--iters",
        "1",
        "--gan-batch",
        "4",
        "--classifier-batch",
        "4",
    ]);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("GAN step (batch 4)"), "{stdout}");
    assert!(stdout.contains("classifier step (batch 4)"), "{stdout}");
    assert!(stdout.contains("images/s"), "{stdout}");
}

#[test]
fn bench_steps_rejects_odd_gan_batch() {
    let stderr = failure(&["bench", "steps", "--gan-batch", "3"]);
    assert!(stderr.contains("--gan-batch 3"), "{stderr}");
    assert!(stderr.contains("even number"), "{stderr}");
}

/// Runs `fedsynth bench steps` with `FEDSYNTH_THREADS` set to `threads`,
/// asserts that it fails, and returns its stderr.
fn threads_failure(threads: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fedsynth"))
        .args(["bench", "steps"])
        .env("FEDSYNTH_THREADS", threads)
        .env("CI", "1")
        .output()
        .expect("the fedsynth binary runs");
    assert!(!output.status.success(), "threads {threads} accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn threads_above_limit_rejected() {
    let stderr = threads_failure("100000");
    assert!(stderr.contains("`100000`"), "{stderr}");
    assert!(stderr.contains("at most 1024"), "{stderr}");
}

#[test]
fn negative_threads_rejected() {
    let stderr = threads_failure("-1");
    assert!(stderr.contains("`-1`"), "{stderr}");
    assert!(stderr.contains("0 for every core"), "{stderr}");
}

#[test]
fn gan_resume_without_checkpoint_fails() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("no-checkpoint-here");
    let stderr = failure(&[
        "train-gan",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--resume",
        "--out",
        path(&out),
    ]);
    assert!(stderr.contains(path(&out)), "{stderr}");
    assert!(stderr.contains("no checkpoint found"), "{stderr}");
    assert!(stderr.contains("drop --resume"), "{stderr}");
    assert!(!out.join("generator.safetensors").exists());
}

#[test]
fn classifier_resume_without_checkpoint_fails() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("empty");
    std::fs::create_dir(&out).unwrap();
    let stderr = failure(&[
        "train-classifier",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--resume",
        "--out",
        path(&out),
    ]);
    assert!(stderr.contains(path(&out)), "{stderr}");
    assert!(stderr.contains("no checkpoint found"), "{stderr}");
    assert!(!out.join("classifier.safetensors").exists());
}

#[test]
fn gan_rejects_odd_batch_size() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("gan");
    let stderr = failure(&[
        "train-gan",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--out",
        path(&out),
    ]);
    assert!(stderr.contains("batch_size 3 is odd"), "{stderr}");
    assert!(stderr.contains("half real, half generated"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn training_rejects_file_as_out() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("samples.bin");
    std::fs::write(&file, b"records").unwrap();
    for command in ["train-gan", "train-classifier"] {
        let stderr = failure(&[
            command,
            "--data",
            path(&data_dir()),
            "--limit",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            path(&file),
        ]);
        assert!(stderr.contains("is a file, not a directory"), "{stderr}");
        assert!(stderr.contains(path(&file)), "{stderr}");
        assert!(!stderr.contains("epoch 1/1"), "{stderr}");
        assert_eq!(std::fs::read(&file).unwrap(), b"records");
    }
}

#[test]
fn evaluate_and_audit_reject_a_file_as_out() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("report.txt");
    std::fs::write(&file, b"notes").unwrap();
    let missing = work.path().join("missing");
    let evaluate = failure(&[
        "evaluate",
        "--classifier",
        path(&missing),
        "--out",
        path(&file),
    ]);
    assert!(
        evaluate.contains("is a file, not a directory"),
        "{evaluate}"
    );
    let audit = failure(&[
        "audit",
        "--synthetic",
        path(&missing),
        "--train",
        path(&data_dir()),
        "--out",
        path(&file),
    ]);
    assert!(audit.contains("is a file, not a directory"), "{audit}");
    assert_eq!(std::fs::read(&file).unwrap(), b"notes");
}

#[test]
fn resume_with_no_epoch_left_warns() {
    let work = tempfile::tempdir().unwrap();
    let gan = work.path().join("gan");
    tiny_generator(&gan);
    let output = fedsynth(&[
        "train-gan",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--resume",
        "--out",
        path(&gan),
    ]);
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has trained through epoch 1"), "{stderr}");
    assert!(stderr.contains("pass --epochs 2 or more"), "{stderr}");
}

#[test]
fn resume_with_other_latent_dim_fails() {
    let work = tempfile::tempdir().unwrap();
    let gan = work.path().join("gan");
    tiny_generator(&gan);
    let stderr = failure(&[
        "train-gan",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--latent-dim",
        "50",
        "--resume",
        "--out",
        path(&gan),
    ]);
    assert!(stderr.contains("--latent-dim 100, not 50"), "{stderr}");
    assert!(stderr.contains("pass --latent-dim 100"), "{stderr}");
}

#[test]
fn classifier_warns_when_batch_exceeds_images() {
    let work = tempfile::tempdir().unwrap();
    let output = fedsynth(&[
        "train-classifier",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        path(&work.path().join("classifier")),
    ]);
    assert_success(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("fewer images than one batch"), "{stderr}");
    assert!(stderr.contains("batch_size=16"), "{stderr}");
}

/// Trains a one-epoch generator on 8 images into `dir` for the sample tests.
fn tiny_generator(dir: &Path) {
    let output = fedsynth(&[
        "train-gan",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        path(dir),
    ]);
    assert_success(&output);
}

#[test]
fn sample_rejects_count_above_bound() {
    let work = tempfile::tempdir().unwrap();
    let gan = work.path().join("gan");
    tiny_generator(&gan);
    let out = work.path().join("samples.bin");
    let output = fedsynth(&[
        "sample",
        "--generator",
        path(&gan),
        "--count",
        "1000000000",
        "--out",
        path(&out),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "killed by a signal or aborted"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--count 1000000000"), "{stderr}");
    assert!(stderr.contains("500000"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn sample_grid_caps_image_count() {
    let work = tempfile::tempdir().unwrap();
    let gan = work.path().join("gan");
    tiny_generator(&gan);
    let out = work.path().join("many.bin");
    let output = fedsynth(&[
        "sample",
        "--generator",
        path(&gan),
        "--count",
        "1100",
        "--columns",
        "32",
        "--out",
        path(&out),
    ]);
    assert_success(&output);
    assert_eq!(std::fs::read(&out).unwrap().len(), 1100 * 3073);
    let grid = std::fs::read(work.path().join("many.png")).unwrap();
    // The PNG header stores the height at bytes 20..24: 32 rows of 66 pixels
    // plus the last gap for 1,024 images in 32 columns.
    let height = u32::from_be_bytes([grid[20], grid[21], grid[22], grid[23]]);
    assert_eq!(height, 32 * 66 + 2);
}

#[test]
fn sample_rejects_non_png_grid() {
    let work = tempfile::tempdir().unwrap();
    let gan = work.path().join("gan");
    tiny_generator(&gan);
    let grid = work.path().join("x.jpg");
    let stderr = failure(&[
        "sample",
        "--generator",
        path(&gan),
        "--count",
        "2",
        "--out",
        path(&work.path().join("s.bin")),
        "--grid",
        path(&grid),
    ]);
    assert!(stderr.contains("x.jpg"), "{stderr}");
    assert!(stderr.contains("must end in .png"), "{stderr}");
    assert!(!grid.exists());
}

#[test]
fn rejects_limit_above_training_split() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("clf");
    let stderr = failure(&[
        "train-classifier",
        "--data",
        path(&data_dir()),
        "--limit",
        "99999999",
        "--epochs",
        "1",
        "--out",
        path(&out),
    ]);
    assert!(stderr.contains("--limit 99999999"), "{stderr}");
    assert!(
        stderr.contains("the 50000 in the training split"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn evaluate_rejects_limit_above_test_split() {
    let work = tempfile::tempdir().unwrap();
    let clf = work.path().join("clf");
    let output = fedsynth(&[
        "train-classifier",
        "--data",
        path(&data_dir()),
        "--limit",
        "8",
        "--epochs",
        "1",
        "--out",
        path(&clf),
    ]);
    assert_success(&output);
    let stderr = failure(&[
        "evaluate",
        "--data",
        path(&data_dir()),
        "--classifier",
        path(&clf),
        "--limit",
        "10001",
    ]);
    assert!(stderr.contains("--limit 10001"), "{stderr}");
    assert!(stderr.contains("the 10000 in the test split"), "{stderr}");
}
