//! Placeholder until the local training commands land.

use clap::Args;

use crate::cli::GlobalArgs;

#[derive(Debug, Args)]
pub struct TrainGanArgs {}
#[derive(Debug, Args)]
pub struct TrainClassifierArgs {}
#[derive(Debug, Args)]
pub struct SampleArgs {}
#[derive(Debug, Args)]
pub struct EvaluateArgs {}
#[derive(Debug, Args)]
pub struct BenchStepsArgs {}

pub fn train_gan(_args: TrainGanArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn train_classifier(_args: TrainClassifierArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn sample(_args: SampleArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn evaluate(_args: EvaluateArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
pub fn bench_steps(_args: BenchStepsArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
