//! Placeholder until the launcher lands.

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct LaunchArgs {}

pub fn launch(_args: LaunchArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
