//! Deploy manifests and the one-machine launcher.
pub mod cli;
pub mod manifest;
