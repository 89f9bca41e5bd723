//! Placeholder.
pub mod cli;
