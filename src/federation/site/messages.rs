//! Every message a site sends, built in one place, so a test can inspect
//! exactly what leaves a site. Only [`upload_messages`] carries pixels,
//! and those are the generated images of a [`Release`].

use super::local::Release;
use crate::data::{CLASS_COUNT, IMAGE_BYTES};
use crate::federation::pb;
use crate::training::EpochSummary;

pub fn join_request(shard_index: u32) -> pb::JoinRequest {
    pb::JoinRequest { shard_index }
}

pub fn poll_request(site_id: &str, finished: pb::TaskKind) -> pb::PollTaskRequest {
    pb::PollTaskRequest {
        site_id: site_id.to_string(),
        finished: finished as i32,
    }
}

/// Builds a plain heartbeat naming the site's current phase.
pub fn heartbeat(site_id: &str, phase: pb::SitePhase) -> pb::ProgressReport {
    pb::ProgressReport {
        site_id: site_id.to_string(),
        phase: phase as i32,
        ..Default::default()
    }
}

/// Builds a heartbeat that closes an epoch, with its summary.
pub fn epoch_report(
    site_id: &str,
    phase: pb::SitePhase,
    update: &EpochSummary,
) -> pb::ProgressReport {
    pb::ProgressReport {
        site_id: site_id.to_string(),
        phase: phase as i32,
        epoch: update.epoch as u32,
        epochs: update.epochs as u32,
        losses: update
            .losses
            .iter()
            .map(|(name, value)| pb::Loss {
                name: name.clone(),
                value: *value,
            })
            .collect(),
        seconds: update.seconds,
        images_per_second: update.images_per_second,
    }
}

/// Builds the upload stream of a release: a header, then chunks of at most
/// `chunk_images` images with their soft labels.
pub fn upload_messages(
    site_id: &str,
    upload_id: &str,
    release: &Release,
    chunk_images: usize,
) -> Vec<pb::UploadMessage> {
    let header = pb::UploadHeader {
        site_id: site_id.to_string(),
        upload_id: upload_id.to_string(),
        image_count: release.image_count() as u32,
        image_bytes: IMAGE_BYTES as u32,
        class_count: CLASS_COUNT as u32,
    };
    let mut messages = vec![pb::UploadMessage {
        body: Some(pb::upload_message::Body::Header(header)),
    }];
    let chunk_images = chunk_images.max(1);
    let image_chunks = release.images.chunks(chunk_images * IMAGE_BYTES);
    let label_chunks = release.probabilities.chunks(chunk_images * CLASS_COUNT);
    for (images, probabilities) in image_chunks.zip(label_chunks) {
        let chunk = pb::UploadChunk {
            images: images.to_vec(),
            probabilities: probabilities.to_vec(),
        };
        messages.push(pb::UploadMessage {
            body: Some(pb::upload_message::Body::Chunk(chunk)),
        });
    }
    messages
}

/// Builds the audit submission of a release: aggregate numbers only.
pub fn audit_submission(site_id: &str, release: &Release) -> pb::AuditSubmission {
    pb::AuditSubmission {
        site_id: site_id.to_string(),
        summary_json: release.audit_summary_json.clone(),
        real_label_histogram: release.real_label_histogram.clone(),
        images_sampled: release.images_sampled as u32,
        images_dropped_by_audit: release.images_dropped as u32,
    }
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
