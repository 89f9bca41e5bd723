use std::path::{Path, PathBuf};

use super::*;

const CLASS_NAMES: &str = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";

/// `count` records whose label is `(first + i) % 10` and whose pixels are
/// all `i`, so tests can tell records apart.
fn records(count: usize, first: usize) -> ImageSet {
    let mut set = ImageSet::default();
    for i in 0..count {
        set.labels.push(((first + i) % CLASS_COUNT) as u8);
        set.images.extend(std::iter::repeat_n(i as u8, IMAGE_BYTES));
    }
    set
}

/// Writes a small release: `per_file` records in each training batch and
/// `test` records in the test batch.
fn write_release(dir: &Path, per_file: usize, test: usize) {
    for (index, name) in TRAIN_FILES.iter().enumerate() {
        records(per_file, index).write(&dir.join(name)).unwrap();
    }
    records(test, 7).write(&dir.join(TEST_FILE)).unwrap();
    fs::write(dir.join(META_FILE), CLASS_NAMES).unwrap();
}

fn release() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_release(dir.path(), 4, 3);
    dir
}

#[test]
fn load_reads_small_release() {
    let dir = release();
    let data = Cifar10::load(dir.path()).unwrap();
    assert_eq!(data.train.len(), 20);
    assert_eq!(data.test.len(), 3);
    assert_eq!(data.train.images.len(), 20 * IMAGE_BYTES);
    assert_eq!(data.class_names.len(), CLASS_COUNT);
    assert_eq!(data.class_names[9], "truck");
}

#[test]
fn load_keeps_batch_order() {
    let dir = release();
    let data = Cifar10::load(dir.path()).unwrap();
    // Batch k starts with label k, and pixels restart at 0 in each batch.
    let first_labels: Vec<u8> = (0..5).map(|batch| data.train.labels[batch * 4]).collect();
    assert_eq!(first_labels, vec![0, 1, 2, 3, 4]);
    assert!(data.train.image(5).iter().all(|&p| p == 1));
    assert_eq!(data.test.labels, vec![7, 8, 9]);
}

#[test]
fn load_test_reads_only_test_split() {
    let dir = release();
    fs::remove_file(dir.path().join(TRAIN_FILES[0])).unwrap();
    let (test, names) = Cifar10::load_test(dir.path()).unwrap();
    assert_eq!(test.len(), 3);
    assert_eq!(names.len(), CLASS_COUNT);
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("set.bin");
    let set = records(6, 3);
    set.write(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 6 * RECORD_BYTES as u64);
    assert_eq!(ImageSet::read(&path).unwrap(), set);
}

#[test]
fn rejects_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    let err = Cifar10::load(&missing).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingDir(path) if *path == missing),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("absent"), "{message}");
    assert!(message.contains("fedsynth data download"), "{message}");
}

#[test]
fn rejects_missing_batch_file() {
    let dir = release();
    let path = dir.path().join("data_batch_3.bin");
    fs::remove_file(&path).unwrap();
    let err = Cifar10::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingFile(p) if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("data_batch_3.bin"), "{err}");
}

#[test]
fn rejects_missing_meta_file() {
    let dir = release();
    fs::remove_file(dir.path().join(META_FILE)).unwrap();
    let err = Cifar10::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains(META_FILE), "{err}");
}

#[test]
fn rejects_truncated_batch_file() {
    let dir = release();
    let path = dir.path().join("data_batch_2.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    fs::write(&path, &bytes).unwrap();
    let err = Cifar10::load(dir.path()).unwrap_err();
    let size = bytes.len() as u64;
    assert!(
        matches!(&err, DataError::BadSize { path: p, size: s } if *p == path && *s == size),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("data_batch_2.bin"), "{message}");
    assert!(message.contains(&size.to_string()), "{message}");
    assert!(message.contains("3073-byte records"), "{message}");
}

#[test]
fn rejects_label_above_nine() {
    let dir = release();
    let path = dir.path().join(TEST_FILE);
    let mut bytes = fs::read(&path).unwrap();
    bytes[2 * RECORD_BYTES] = 10;
    fs::write(&path, &bytes).unwrap();
    let err = Cifar10::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::BadLabel { path: p, index: 2, label: 10 } if *p == path),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("test_batch.bin"), "{message}");
    assert!(message.contains("record 2"), "{message}");
}

#[test]
fn rejects_meta_with_wrong_class_count() {
    let dir = release();
    let path = dir.path().join(META_FILE);
    fs::write(&path, "airplane\nautomobile\nbird\n\n").unwrap();
    let err = Cifar10::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, DataError::BadMeta { path: p, found: 3 } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("found 3 class names"), "{err}");
}

#[test]
fn select_returns_images_in_given_order() {
    let set = records(5, 0);
    let picked = set.select(&[4, 1]);
    assert_eq!(picked.labels, vec![4, 1]);
    assert!(picked.image(0).iter().all(|&p| p == 4));
    assert!(picked.image(1).iter().all(|&p| p == 1));
}

/// Returns the shared copy of the official release, when this checkout has one.
fn shared_release() -> Option<PathBuf> {
    let dir = std::env::var_os("FEDSYNTH_DATA")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/cifar10/cifar-10-batches-bin")
        });
    dir.is_dir().then_some(dir)
}

#[test]
fn shared_release_has_official_counts() {
    let Some(dir) = shared_release() else {
        eprintln!("skipped: no CIFAR-10 copy at FEDSYNTH_DATA or ../shared");
        return;
    };
    let data = Cifar10::load(&dir).unwrap();
    assert_eq!(data.train.len(), 50_000);
    assert_eq!(data.test.len(), 10_000);
    assert_eq!(data.train.class_histogram(), [5_000; CLASS_COUNT]);
    assert_eq!(data.test.class_histogram(), [1_000; CLASS_COUNT]);
    assert_eq!(data.class_names[0], "airplane");
    assert_eq!(data.class_names[9], "truck");
}
