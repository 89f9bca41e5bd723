//! The centralised baseline c of a local run: a classifier trained on the
//! union of the real shards, evaluated on the same test split as c', and
//! compared with c' image by image. It runs only where every shard is on
//! this machine.

use super::plan::LaunchPlan;

/// Trains c, evaluates it, measures its agreement with c' and adds both to
/// the run folder of `plan`.
pub fn add_to_run(plan: &LaunchPlan) -> anyhow::Result<()> {
    // TODO: train c with `crate::training` once it lands on main.
    anyhow::bail!(
        "the centralised baseline needs the training module, which this build lacks; \
         set coordinator.centralised_baseline = false in {}",
        plan.manifest_path.display()
    )
}
