//! Placeholder until the federation commands land.

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct CoordinatorArgs {}
#[derive(Debug, Args)]
pub struct SiteArgs {}

pub fn coordinator(_args: CoordinatorArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn site(_args: SiteArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
