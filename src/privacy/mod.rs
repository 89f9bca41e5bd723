//! The privacy audit: exact nearest-neighbour search of released images
//! against the private training images, and the leakage statistics built on
//! it. Nothing here sends data anywhere; `AuditSummary` is the only part
//! meant to leave a site.

pub mod audit;
pub mod augment;
pub mod cli;
pub mod features;
pub mod input;
pub mod kmeans;
pub mod knn;
mod nan_serde;
pub mod stats;
