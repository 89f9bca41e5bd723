//! Builds the run report from the coordinator's final state.

use super::aggregate::label_histogram;
use super::state::{Outcome, RunState, SiteState};
use crate::data::IMAGE_BYTES;
use crate::report::{
    EpochRecord, Evaluation, PhaseTiming, RunReport, RunStatus, SiteReport, SiteStatus,
};

/// Images per site drawn in the report's sample grids.
pub const SAMPLE_IMAGES: usize = 64;

/// Parts of the report that the run state does not hold.
pub struct ReportInputs {
    pub run_id: String,
    pub started_at: String,
    pub class_names: Vec<String>,
    pub final_classifier: Option<Evaluation>,
    pub pooled_label_histogram: Vec<u64>,
}

/// Fills the run report from `state`, which must have finished.
pub fn build_report(state: &RunState, inputs: ReportInputs) -> RunReport {
    let status = match state.outcome() {
        Some(Outcome::Completed) => RunStatus::Completed,
        Some(Outcome::Failed(reason)) => RunStatus::Failed {
            reason: reason.clone(),
        },
        Some(Outcome::Interrupted(reason)) => RunStatus::Interrupted {
            reason: reason.clone(),
        },
        None => RunStatus::Failed {
            reason: "the run ended before reaching an outcome".into(),
        },
    };
    RunReport {
        run_id: inputs.run_id,
        status,
        started_at: inputs.started_at,
        finished_at: crate::report::utc_now(),
        manifest: state.manifest().clone(),
        class_names: inputs.class_names,
        sites: state.sites().iter().map(site_report).collect(),
        phases: state
            .timings()
            .iter()
            .map(|(name, seconds)| PhaseTiming {
                name: name.clone(),
                seconds: *seconds,
            })
            .collect(),
        final_classifier: inputs.final_classifier,
        centralised: None,
        agreement: None,
        pooled_label_histogram: inputs.pooled_label_histogram,
    }
}

fn site_report(site: &super::state::Site) -> SiteReport {
    let status = match &site.state {
        SiteState::Dropped { reason } => SiteStatus::Dropped {
            reason: reason.clone(),
        },
        SiteState::Completed => SiteStatus::Completed,
        _ => SiteStatus::Dropped {
            reason: "the run ended before this site completed".into(),
        },
    };
    let (synthetic_label_histogram, images_received, bytes_received) = match &site.upload {
        Some(upload) => (
            label_histogram(&upload.probabilities),
            (upload.images.len() / IMAGE_BYTES) as u64,
            upload.bytes,
        ),
        None => (Vec::new(), 0, 0),
    };
    let audit = site.audit.as_ref();
    SiteReport {
        site_id: site.id.clone(),
        shard_index: site.shard_index,
        status,
        real_label_histogram: audit
            .map(|a| a.real_label_histogram.clone())
            .unwrap_or_default(),
        synthetic_label_histogram,
        images_received,
        images_dropped_by_audit: audit.map(|a| a.images_dropped).unwrap_or(0),
        bytes_received,
        // The summary arrived as JSON; it fits the report's type when the
        // site ran the same version of the audit.
        audit: audit
            .and_then(|a| a.summary.clone())
            .and_then(|summary| serde_json::from_value(summary).ok()),
        epochs: site
            .epochs
            .iter()
            .map(|e| EpochRecord {
                phase: e.model.clone(),
                epoch: e.epoch,
                epochs: e.epochs,
                losses: e.losses.clone(),
                seconds: e.seconds,
                images_per_second: e.images_per_second,
            })
            .collect(),
    }
}

/// Returns the first [`SAMPLE_IMAGES`] images of each completed site.
pub fn samples(state: &RunState) -> Vec<(u32, Vec<u8>)> {
    let mut samples: Vec<(u32, Vec<u8>)> = state
        .sites()
        .iter()
        .filter_map(|site| {
            let upload = site.upload.as_ref()?;
            let len = upload.images.len().min(SAMPLE_IMAGES * IMAGE_BYTES);
            (len > 0).then(|| (site.shard_index, upload.images[..len].to_vec()))
        })
        .collect();
    samples.sort_by_key(|(shard, _)| *shard);
    samples
}
