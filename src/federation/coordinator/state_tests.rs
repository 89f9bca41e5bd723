use super::*;
use crate::data::{CLASS_COUNT, IMAGE_BYTES};

fn manifest(sites: usize, min_sites: usize) -> Manifest {
    let mut manifest = Manifest::default();
    manifest.sites.count = sites;
    manifest.coordinator.min_sites = min_sites;
    manifest.coordinator.join_timeout_s = 10;
    manifest.coordinator.train_timeout_s = 100;
    manifest.coordinator.upload_timeout_s = 20;
    manifest.coordinator.heartbeat_timeout_s = 30;
    manifest.synthetic.samples_per_site = 8;
    manifest
}

fn kind(task: &pb::Task) -> pb::TaskKind {
    task.kind()
}

fn upload(site_id: &str, upload_id: &str, images: usize) -> UploadBuffer {
    let header = pb::UploadHeader {
        site_id: site_id.into(),
        upload_id: upload_id.into(),
        image_count: images as u32,
        image_bytes: IMAGE_BYTES as u32,
        class_count: CLASS_COUNT as u32,
    };
    let mut buffer = UploadBuffer::new(header, 8).unwrap();
    buffer
        .push(pb::UploadChunk {
            images: vec![1; images * IMAGE_BYTES],
            probabilities: vec![0.1; images * CLASS_COUNT],
        })
        .unwrap();
    buffer.finish().unwrap()
}

fn audit() -> AcceptedAudit {
    AcceptedAudit {
        summary: None,
        real_label_histogram: vec![1; CLASS_COUNT],
        images_sampled: 4,
        images_dropped: 0,
    }
}

/// Brings a joined site from its train task to a completed release.
fn complete(state: &mut RunState, id: &str, now: Instant) {
    let train = state.poll(id, pb::TaskKind::Unspecified, now).unwrap();
    assert_eq!(kind(&train), pb::TaskKind::Train);
    let up = state.poll(id, pb::TaskKind::Train, now).unwrap();
    assert_eq!(kind(&up), pb::TaskKind::Upload);
    state.commit_upload(upload(id, "u-1", 4), now).unwrap();
    state.submit_audit(id, audit(), now).unwrap();
}

#[test]
fn starts_training_once_every_site_joins() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(2, 2), t0);
    state.join(0, t0).unwrap();
    state.tick(t0);
    assert!(matches!(state.phase(), RunPhase::Join { .. }));
    state.join(1, t0).unwrap();
    state.tick(t0);
    assert!(matches!(state.phase(), RunPhase::Train { .. }));
}

#[test]
fn fails_at_join_deadline_with_too_few_sites() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(3, 2), t0);
    state.join(0, t0).unwrap();
    state.tick(t0 + Duration::from_secs(11));
    assert_eq!(state.phase(), &RunPhase::Finished);
    let Some(Outcome::Failed(reason)) = state.outcome() else {
        panic!("expected a failed outcome, got {:?}", state.outcome());
    };
    assert_eq!(reason, "only 1 of 2 expected sites joined within 10s");
}

#[test]
fn starts_at_join_deadline_with_min_sites() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(3, 2), t0);
    state.join(0, t0).unwrap();
    state.join(2, t0).unwrap();
    state.tick(t0 + Duration::from_secs(5));
    assert!(matches!(state.phase(), RunPhase::Join { .. }));
    state.tick(t0 + Duration::from_secs(10));
    assert!(matches!(state.phase(), RunPhase::Train { .. }));
}

#[test]
fn rejects_bad_joins() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(2, 1), t0);
    state.join(0, t0).unwrap();
    let taken = state.join(0, t0).unwrap_err();
    assert_eq!(taken, Rejection::ShardTaken(0));
    let out_of_range = state.join(2, t0).unwrap_err();
    assert_eq!(
        out_of_range,
        Rejection::ShardOutOfRange { index: 2, last: 1 }
    );
    state.join(1, t0).unwrap();
    state.tick(t0);
    let late = state.join(1, t0).unwrap_err();
    assert_eq!(late.code(), tonic::Code::FailedPrecondition);
}

#[test]
fn rejects_unknown_site_ids() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(1, 1), t0);
    let err = state
        .poll("site-9-ghost", pb::TaskKind::Unspecified, t0)
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[test]
fn aggregates_after_every_site_completes() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(2, 2), t0);
    let a = state.join(0, t0).unwrap();
    let b = state.join(1, t0).unwrap();
    state.tick(t0);
    complete(&mut state, &a, t0);
    state.tick(t0);
    assert!(matches!(state.phase(), RunPhase::Train { .. }));
    complete(&mut state, &b, t0);
    state.tick(t0);
    assert_eq!(state.phase(), &RunPhase::Aggregate);
    let waiting = state.poll(&a, pb::TaskKind::Unspecified, t0).unwrap();
    assert_eq!(kind(&waiting), pb::TaskKind::Wait);
    state.finish(Outcome::Completed, t0);
    let done = state.poll(&a, pb::TaskKind::Unspecified, t0).unwrap();
    assert_eq!(kind(&done), pb::TaskKind::Done);
    assert!(!state.all_informed());
    state.poll(&b, pb::TaskKind::Unspecified, t0).unwrap();
    assert!(state.all_informed());
    let names: Vec<&str> = state.timings().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["join", "train", "aggregate"]);
}

#[test]
fn duplicate_upload_id_is_not_counted_twice() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(1, 1), t0);
    let id = state.join(0, t0).unwrap();
    state.tick(t0);
    state.poll(&id, pb::TaskKind::Unspecified, t0).unwrap();
    state.poll(&id, pb::TaskKind::Train, t0).unwrap();
    let first = state.commit_upload(upload(&id, "u-1", 4), t0).unwrap();
    assert_eq!(first.accepted_images, 4);
    assert!(!first.duplicate);
    let again = state.commit_upload(upload(&id, "u-1", 4), t0).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.accepted_images, 4);
    let stored = state.sites()[0].upload.as_ref().unwrap();
    assert_eq!(stored.images.len(), 4 * IMAGE_BYTES);
}

#[test]
fn rejects_uploads_outside_the_upload_phase() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(1, 1), t0);
    let id = state.join(0, t0).unwrap();
    let early = state.admit_upload(&id, "u-1").unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);
    state.tick(t0);
    state.poll(&id, pb::TaskKind::Unspecified, t0).unwrap();
    let before_task = state.admit_upload(&id, "u-1").unwrap_err();
    assert_eq!(before_task.code(), tonic::Code::FailedPrecondition);
    state.poll(&id, pb::TaskKind::Train, t0).unwrap();
    state.commit_upload(upload(&id, "u-1", 2), t0).unwrap();
    let second = state.admit_upload(&id, "u-2").unwrap_err();
    assert_eq!(second.code(), tonic::Code::FailedPrecondition);
}

#[test]
fn drops_silent_site_and_goes_on_with_min_sites() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(2, 1), t0);
    let a = state.join(0, t0).unwrap();
    let b = state.join(1, t0).unwrap();
    state.tick(t0);
    state.poll(&b, pb::TaskKind::Unspecified, t0).unwrap();
    let later = t0 + Duration::from_secs(25);
    complete(&mut state, &a, later);
    state.tick(t0 + Duration::from_secs(31));
    let SiteState::Dropped { reason } = &state.sites()[1].state else {
        panic!("site b should be dropped: {:?}", state.sites()[1].state);
    };
    assert_eq!(reason, "no heartbeat for 30s");
    assert_eq!(state.phase(), &RunPhase::Aggregate);
    let abort = state.poll(&b, pb::TaskKind::Unspecified, later).unwrap();
    assert_eq!(kind(&abort), pb::TaskKind::Abort);
}

#[test]
fn fails_when_too_few_sites_remain() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(2, 2), t0);
    let a = state.join(0, t0).unwrap();
    state.join(1, t0).unwrap();
    state.tick(t0);
    state.poll(&a, pb::TaskKind::Unspecified, t0).unwrap();
    let upload_task = state
        .poll(&a, pb::TaskKind::Train, t0 + Duration::from_secs(10))
        .unwrap();
    assert!(upload_task.deadline_unix_ms > 0);
    state.tick(t0 + Duration::from_secs(31));
    assert_eq!(state.phase(), &RunPhase::Finished);
    let Some(Outcome::Failed(reason)) = state.outcome() else {
        panic!("expected a failed outcome");
    };
    assert!(reason.contains("fewer than min_sites = 2"), "{reason}");
}

#[test]
fn drops_site_that_misses_its_upload_deadline() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(1, 1), t0);
    let id = state.join(0, t0).unwrap();
    state.tick(t0);
    state.poll(&id, pb::TaskKind::Unspecified, t0).unwrap();
    state.poll(&id, pb::TaskKind::Train, t0).unwrap();
    let heartbeat = pb::ProgressReport {
        site_id: id.clone(),
        ..Default::default()
    };
    state
        .progress(&heartbeat, t0 + Duration::from_secs(19))
        .unwrap();
    state.tick(t0 + Duration::from_secs(21));
    assert!(matches!(state.sites()[0].state, SiteState::Dropped { .. }));
    let ack = state
        .progress(&heartbeat, t0 + Duration::from_secs(22))
        .unwrap();
    assert!(ack.stop);
}

#[test]
fn records_epoch_summaries_from_progress() {
    let t0 = Instant::now();
    let mut state = RunState::new(manifest(1, 1), t0);
    let id = state.join(0, t0).unwrap();
    let report = pb::ProgressReport {
        site_id: id,
        phase: pb::SitePhase::TrainingClassifier as i32,
        epoch: 1,
        epochs: 2,
        losses: vec![pb::Loss {
            name: "loss".into(),
            value: 1.5,
        }],
        seconds: 3.0,
        images_per_second: 100.0,
    };
    state.progress(&report, t0).unwrap();
    let epochs = &state.sites()[0].epochs;
    assert_eq!(epochs.len(), 1);
    assert_eq!(epochs[0].model, "classifier");
    assert_eq!(epochs[0].losses, [("loss".to_string(), 1.5)]);
}
