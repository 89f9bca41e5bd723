//! The CIFAR-10 binary record format.
//!
//! A record is one label byte (0-9) followed by 1,024 red, 1,024 green and
//! 1,024 blue bytes, each plane row-major. The official release has five
//! training batches, one test batch and `batches.meta.txt` with the class
//! names. Synthetic sets are written in the same format.

use std::fs;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// Side of a CIFAR-10 image in pixels.
pub const IMAGE_SIDE: usize = 32;
/// Bytes of one image: 3 planes of 32 x 32.
pub const IMAGE_BYTES: usize = 3 * IMAGE_SIDE * IMAGE_SIDE;
/// Bytes of one record: the label byte and the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Number of classes.
pub const CLASS_COUNT: usize = 10;

/// File names of the five training batches, in order.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// File name of the test batch.
pub const TEST_FILE: &str = "test_batch.bin";
/// File name of the class names, one per line.
pub const META_FILE: &str = "batches.meta.txt";

/// Errors while reading or writing CIFAR-10 files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "CIFAR-10 directory {0} not found; pass --data DIR, set FEDSYNTH_DATA, or run `fedsynth data download`"
    )]
    MissingDir(PathBuf),
    #[error(
        "{0} is a file, not a directory; pass the CIFAR-10 directory (cifar-10-batches-bin) that holds data_batch_1.bin to data_batch_5.bin, test_batch.bin and batches.meta.txt"
    )]
    NotADirectory(PathBuf),
    #[error(
        "CIFAR-10 file {0} not found; the directory must hold the official cifar-10-batches-bin files (run `fedsynth data download` for a fresh copy)"
    )]
    MissingFile(PathBuf),
    #[error(
        "{path}: size {size} bytes is not a whole number of {RECORD_BYTES}-byte records; the file is truncated or not in the CIFAR-10 binary format, so replace it"
    )]
    BadSize { path: PathBuf, size: u64 },
    #[error(
        "{path}: record {index} has label {label}, expected 0-9; the file is corrupt, so replace it"
    )]
    BadLabel {
        path: PathBuf,
        index: usize,
        label: u8,
    },
    #[error(
        "{path}: found {found} class names, expected {CLASS_COUNT}; the meta file must list one class name per line"
    )]
    BadMeta { path: PathBuf, found: usize },
    #[error(
        "the CIFAR-10 directory from {origin} is an empty path; give a directory such as ~/.cache/fedsynth/cifar-10-batches-bin"
    )]
    EmptyDataPath { origin: &'static str },
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A set of images with one hard label each, in CIFAR-10 record layout.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageSet {
    /// `len() * IMAGE_BYTES` bytes: per image, the R, G and B planes.
    pub images: Vec<u8>,
    /// One label in `0..CLASS_COUNT` per image.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set contains no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixel bytes of image `index`.
    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * IMAGE_BYTES..(index + 1) * IMAGE_BYTES]
    }

    /// Returns the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let mut images = Vec::with_capacity(indices.len() * IMAGE_BYTES);
        let mut labels = Vec::with_capacity(indices.len());
        for &index in indices {
            images.extend_from_slice(self.image(index));
            labels.push(self.labels[index]);
        }
        ImageSet { images, labels }
    }

    /// Appends every image of `other`.
    pub fn extend(&mut self, other: &ImageSet) {
        self.images.extend_from_slice(&other.images);
        self.labels.extend_from_slice(&other.labels);
    }

    /// Number of images per class.
    pub fn class_histogram(&self) -> [usize; CLASS_COUNT] {
        let mut counts = [0; CLASS_COUNT];
        for &label in &self.labels {
            counts[label as usize] += 1;
        }
        counts
    }

    /// Parses records from `bytes`; `path` names the source in errors.
    pub fn from_records(path: &Path, bytes: &[u8]) -> Result<ImageSet, DataError> {
        if !bytes.len().is_multiple_of(RECORD_BYTES) {
            return Err(DataError::BadSize {
                path: path.to_path_buf(),
                size: bytes.len() as u64,
            });
        }
        let count = bytes.len() / RECORD_BYTES;
        let mut set = ImageSet {
            images: Vec::with_capacity(count * IMAGE_BYTES),
            labels: Vec::with_capacity(count),
        };
        for (index, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let label = record[0];
            if label as usize >= CLASS_COUNT {
                return Err(DataError::BadLabel {
                    path: path.to_path_buf(),
                    index,
                    label,
                });
            }
            set.labels.push(label);
            set.images.extend_from_slice(&record[1..]);
        }
        Ok(set)
    }

    /// Serialises the set as CIFAR-10 records.
    pub fn to_records(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.len() * RECORD_BYTES);
        for index in 0..self.len() {
            bytes.push(self.labels[index]);
            bytes.extend_from_slice(self.image(index));
        }
        bytes
    }

    /// Reads one record file.
    pub fn read(path: &Path) -> Result<ImageSet, DataError> {
        let bytes = fs::read(path).map_err(|source| read_error(path, source))?;
        ImageSet::from_records(path, &bytes)
    }

    /// Writes the set as one record file, atomically.
    pub fn write(&self, path: &Path) -> Result<(), DataError> {
        fsutil::write_atomic(path, &self.to_records()).map_err(|source| DataError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The CIFAR-10 release: the training split, the test split and class names.
#[derive(Clone, Debug)]
pub struct Cifar10 {
    pub train: ImageSet,
    pub test: ImageSet,
    pub class_names: Vec<String>,
}

impl Cifar10 {
    /// Reads the official binary layout from `dir`.
    pub fn load(dir: &Path) -> Result<Cifar10, DataError> {
        existing_dir(dir)?;
        let class_names = read_class_names(dir)?;
        let mut train = ImageSet::default();
        for name in TRAIN_FILES {
            train.extend(&ImageSet::read(&existing_file(dir, name)?)?);
        }
        let test = ImageSet::read(&existing_file(dir, TEST_FILE)?)?;
        Ok(Cifar10 {
            train,
            test,
            class_names,
        })
    }

    /// Checks that `dir` holds every file of the release and valid class
    /// names, without reading the image batches.
    pub fn check(dir: &Path) -> Result<(), DataError> {
        existing_dir(dir)?;
        read_class_names(dir)?;
        for name in TRAIN_FILES.iter().chain([&TEST_FILE]) {
            existing_file(dir, name)?;
        }
        Ok(())
    }

    /// Reads only the test split and the class names from `dir`.
    pub fn load_test(dir: &Path) -> Result<(ImageSet, Vec<String>), DataError> {
        existing_dir(dir)?;
        let class_names = read_class_names(dir)?;
        let test = ImageSet::read(&existing_file(dir, TEST_FILE)?)?;
        Ok((test, class_names))
    }
}

/// Checks that `dir` is a directory, telling a file apart from nothing.
fn existing_dir(dir: &Path) -> Result<(), DataError> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        return Err(DataError::NotADirectory(dir.to_path_buf()));
    }
    Err(DataError::MissingDir(dir.to_path_buf()))
}

/// Reads `batches.meta.txt`, which must list exactly ten non-empty names.
pub fn read_class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let path = existing_file(dir, META_FILE)?;
    let text = fs::read_to_string(&path).map_err(|source| read_error(&path, source))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != CLASS_COUNT {
        return Err(DataError::BadMeta {
            path,
            found: names.len(),
        });
    }
    Ok(names)
}

fn existing_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::MissingFile(path))
    }
}

fn read_error(path: &Path, source: std::io::Error) -> DataError {
    DataError::Read {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
#[path = "cifar_tests.rs"]
mod tests;
