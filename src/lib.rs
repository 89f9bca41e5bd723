//! fedsynth: federated learning by synthetic data.
//!
//! Sites train a DCGAN and a classifier on private CIFAR-10 shards and send
//! only audited synthetic images to a coordinator over gRPC. The coordinator
//! trains a classifier on the pooled synthetic images and evaluates it on the
//! real test split.
//!
//! Layout, one module per concern:
//!
//! - [`backend`]: the compute backends compiled in and the thread pool.
//! - [`cli`]: the command line as typed by the user, and its dispatch.
//! - [`data`]: the CIFAR-10 binary format, download, lookup and partitioning.
//! - [`imaging`]: PNG sample grids and plots.
//! - [`models`]: the reference generator, discriminator and classifier.
//! - [`kernels`]: faster CPU convolutions for the models on the flex backend.
//! - [`training`]: GAN and classifier training, Adamax, checkpoints, sampling.
//! - [`privacy`]: nearest-neighbour search and the leakage audit.
//! - [`federation`]: the gRPC protocol, the coordinator and the site.
//! - [`launch`]: deploy manifests and the one-machine launcher.
//! - [`report`]: the run folder, `report.json` and `report.md`.
//! - [`fsutil`]: atomic file writes.
//! - [`progress`]: progress bars that stay quiet off a terminal.
//! - [`signals`]: waiting for SIGINT or SIGTERM to stop cleanly.

pub mod backend;
pub mod cli;
pub mod data;
pub mod federation;
pub mod fsutil;
pub mod imaging;
pub mod kernels;
pub mod launch;
pub mod models;
pub mod privacy;
pub mod progress;
pub mod report;
pub mod signals;
pub mod training;
