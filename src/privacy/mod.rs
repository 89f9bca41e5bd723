//! The privacy audit: exact nearest-neighbour search of released images
//! against the private training images, and the leakage statistics built on
//! it. Nothing here sends data anywhere; `AuditSummary` is the only part
//! meant to leave a site.

pub mod augment;
pub mod cli;
pub mod knn;
