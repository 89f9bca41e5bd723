//! CIFAR-10 in its official binary layout: reading and writing record files,
//! locating the data directory, downloading the release, and partitioning the
//! training split into site shards.

pub mod cifar;
pub mod download;
pub mod location;
pub mod partition;

pub use cifar::{CLASS_COUNT, Cifar10, DataError, IMAGE_BYTES, IMAGE_SIDE, ImageSet, RECORD_BYTES};
pub mod cli;
