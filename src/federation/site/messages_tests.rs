//! What leaves a site: every message type, built by the functions the site
//! uses, from a real shard and real generator samples.

use std::collections::HashSet;

use burn::tensor::Device;
use prost::Message;

use super::*;
use crate::data::ImageSet;
use crate::models::{ClassifierConfig, GeneratorConfig};
use crate::privacy::audit::{AuditConfig, run_audit};
use crate::training::infer::{predict_proba, sample_images};
use crate::training::test_data;

/// gRPC's default limit on one received message.
const GRPC_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

/// A release as the site builds it, from an untrained generator and
/// classifier, audited against `shard`.
fn release_from(shard: &ImageSet, holdout: &ImageSet, count: usize) -> Release {
    let device = Device::flex();
    let generator = GeneratorConfig::new().init(&device);
    let classifier = ClassifierConfig::new().init(&device);
    let images = sample_images(&generator, count, 100, 11, &device);
    let probabilities = predict_proba(&classifier, &images, &device);
    let config = AuditConfig {
        k: 5,
        ..AuditConfig::default()
    };
    let audit = run_audit(&images, shard, holdout, &config, &device).unwrap();
    Release {
        images,
        probabilities,
        images_sampled: count,
        images_dropped: 0,
        audit_summary_json: serde_json::to_string(&audit.summary()).unwrap(),
        real_label_histogram: shard.class_histogram().iter().map(|&c| c as u64).collect(),
    }
}

fn upload_images(messages: &[pb::UploadMessage]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .filter_map(|m| match &m.body {
            Some(pb::upload_message::Body::Chunk(chunk)) => Some(chunk.images.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn no_message_carries_a_shard_image() {
    let real = test_data::train_images(220);
    let shard = real.select(&(0..200).collect::<Vec<_>>());
    let holdout = real.select(&(200..220).collect::<Vec<_>>());
    let release = release_from(&shard, &holdout, 40);
    let site = "site-0-abcdef12";

    // Messages without an image field must be too small to hold one image.
    let epoch = EpochSummary {
        epoch: 1,
        epochs: 2,
        losses: vec![("discriminator".into(), 0.6), ("generator".into(), 1.2)],
        seconds: 3.0,
        images_per_second: 90.0,
    };
    let small = [
        join_request(0).encoded_len(),
        poll_request(site, pb::TaskKind::Train).encoded_len(),
        heartbeat(site, pb::SitePhase::TrainingGan).encoded_len(),
        epoch_report(site, pb::SitePhase::TrainingGan, &epoch).encoded_len(),
        audit_submission(site, &release).encoded_len(),
    ];
    for (index, len) in small.into_iter().enumerate() {
        assert!(len < IMAGE_BYTES, "message {index} is {len} bytes");
    }

    // The upload's pixels are exactly the sampled synthetic images.
    let messages = upload_messages(site, "upload-1", &release, 16);
    let uploaded: Vec<u8> = upload_images(&messages).concat();
    assert_eq!(uploaded, release.images);
    let shard_images: HashSet<&[u8]> = shard.images.chunks(IMAGE_BYTES).collect();
    for (index, image) in uploaded.chunks(IMAGE_BYTES).enumerate() {
        assert!(
            !shard_images.contains(image),
            "uploaded image {index} is a shard image"
        );
    }
}

#[test]
fn upload_header_first_labels_kept() {
    let release = Release {
        images: vec![9; 5 * IMAGE_BYTES],
        probabilities: vec![0.1; 5 * CLASS_COUNT],
        images_sampled: 5,
        ..Release::default()
    };
    let messages = upload_messages("site-1", "upload-7", &release, 2);
    assert_eq!(messages.len(), 4, "a header and chunks of 2, 2 and 1");
    let Some(pb::upload_message::Body::Header(header)) = &messages[0].body else {
        panic!("the first message must be the header");
    };
    assert_eq!(header.upload_id, "upload-7");
    assert_eq!(header.image_count, 5);
    let labels: usize = messages
        .iter()
        .filter_map(|m| match &m.body {
            Some(pb::upload_message::Body::Chunk(chunk)) => Some(chunk.probabilities.len()),
            _ => None,
        })
        .sum();
    assert_eq!(labels, 5 * CLASS_COUNT);
}

#[test]
fn largest_allowed_chunk_stays_under_the_grpc_limit() {
    // 1,024 images is the most `synthetic.chunk_images` allows.
    let release = Release {
        images: vec![255; 1024 * IMAGE_BYTES],
        probabilities: vec![0.1; 1024 * CLASS_COUNT],
        images_sampled: 1024,
        ..Release::default()
    };
    let messages = upload_messages("site-0", "upload-1", &release, 1024);
    assert_eq!(messages.len(), 2);
    for message in &messages {
        let len = message.encoded_len();
        assert!(len < GRPC_MESSAGE_LIMIT, "{len} bytes");
    }
}
