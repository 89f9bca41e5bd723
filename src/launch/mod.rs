//! Deploy manifests and the one-machine launcher, which starts the
//! coordinator and the sites of a manifest as child processes of the same
//! binary on 127.0.0.1.

mod baseline;
pub mod children;
pub mod cli;
pub mod manifest;
pub mod plan;
pub mod run;
