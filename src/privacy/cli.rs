//! Placeholder until the audit commands land.

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct AuditArgs {}
#[derive(Debug, Args)]
pub struct BenchKnnArgs {}

pub fn audit(_args: AuditArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn bench_knn(_args: BenchKnnArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
