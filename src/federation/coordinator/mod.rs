//! The coordinator: serves the `Federation` service on a bound listener,
//! drives the run through its phases, trains c' on the pooled synthetic
//! images and writes the run folder. Sites pull all their work from it.

mod aggregate;
mod report;
mod run;
mod service;
pub mod state;

pub use aggregate::{PooledSet, argmax_labels, label_histogram, pool};
pub use run::{CoordinatorConfig, RunOutcome, bind, run, serve};
pub use service::{FederationService, HEARTBEAT_INTERVAL_S, SharedState};
