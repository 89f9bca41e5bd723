//! `fedsynth data`: placeholder until the data commands land.

use clap::Subcommand;

use crate::cli::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download the official CIFAR-10 binary release.
    Download,
}

pub fn run(_command: DataCommand, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("`fedsynth data` is not built yet")
}
