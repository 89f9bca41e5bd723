//! The run as the coordinator tracks it: the phase, every site's state and
//! what each site has sent. A plain state machine with the clock passed in,
//! so its rules are tested without a network or a wall clock.
//!
//! Rules: the run starts training once every expected site has joined, or
//! at the join deadline with at least `min_sites`. A site is dropped when it
//! misses a deadline or goes silent for `heartbeat_timeout_s`; the run goes
//! on while at least `min_sites` remain, and aggregates once every remaining
//! site has both uploaded and submitted its audit.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::federation::pb;
use crate::federation::validate::{Rejection, UploadBuffer};
use crate::launch::manifest::Manifest;

/// Milliseconds a waiting site sleeps before it polls again.
pub const POLL_INTERVAL_MS: u32 = 500;

/// Phase of the whole run.
#[derive(Clone, Debug, PartialEq)]
pub enum RunPhase {
    Join { deadline: Instant },
    Train { deadline: Instant },
    Aggregate,
    Finished,
}

/// How the run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed,
    Failed(String),
    /// Stopped by Ctrl-C. The text names the phase it stopped in.
    Interrupted(String),
}

/// Where one site is in its work.
#[derive(Clone, Debug, PartialEq)]
pub enum SiteState {
    Joined,
    Training,
    Uploading { deadline: Instant },
    Completed,
    Dropped { reason: String },
}

/// One epoch summary a site reported.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochProgress {
    /// `gan` or `classifier`.
    pub model: String,
    pub epoch: usize,
    pub epochs: usize,
    pub losses: Vec<(String, f64)>,
    pub seconds: f64,
    pub images_per_second: f64,
}

/// The synthetic set of a site, as accepted.
#[derive(Clone, Debug)]
pub struct AcceptedUpload {
    pub upload_id: String,
    pub images: Vec<u8>,
    pub probabilities: Vec<f32>,
    pub bytes: u64,
}

/// The audit submission of a site, as accepted.
#[derive(Clone, Debug)]
pub struct AcceptedAudit {
    pub summary: Option<serde_json::Value>,
    pub real_label_histogram: Vec<u64>,
    pub images_sampled: u64,
    pub images_dropped: u64,
}

/// Everything the coordinator tracks about one site.
#[derive(Clone, Debug)]
pub struct Site {
    pub id: String,
    pub shard_index: u32,
    pub state: SiteState,
    pub last_seen: Instant,
    pub epochs: Vec<EpochProgress>,
    pub upload: Option<AcceptedUpload>,
    pub audit: Option<AcceptedAudit>,
    /// Whether the site has polled since the run finished and so received its outcome.
    pub informed: bool,
}

impl Site {
    fn is_active(&self) -> bool {
        !matches!(self.state, SiteState::Dropped { .. })
    }
}

/// Whether an upload should be read, or was accepted before.
#[derive(Debug, PartialEq)]
pub enum Admission {
    Fresh,
    Duplicate { accepted_images: u32 },
}

/// The coordinator's view of the run.
#[derive(Debug)]
pub struct RunState {
    manifest: Manifest,
    phase: RunPhase,
    outcome: Option<Outcome>,
    sites: Vec<Site>,
    phase_started: Instant,
    /// Seconds per finished phase, in order.
    timings: Vec<(String, f64)>,
    /// One instant and the wall-clock time at that instant, to turn
    /// deadlines into Unix milliseconds for the wire.
    origin: (Instant, SystemTime),
}

impl RunState {
    /// Starts a run in its join phase at `now`.
    pub fn new(manifest: Manifest, now: Instant) -> RunState {
        let deadline = now + secs(manifest.coordinator.join_timeout_s);
        RunState {
            manifest,
            phase: RunPhase::Join { deadline },
            outcome: None,
            sites: Vec::new(),
            phase_started: now,
            timings: Vec::new(),
            origin: (now, SystemTime::now()),
        }
    }

    pub fn phase(&self) -> &RunPhase {
        &self.phase
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Seconds per finished phase, in order.
    pub fn timings(&self) -> &[(String, f64)] {
        &self.timings
    }

    /// Whether every site still in the run has learnt how it ended.
    pub fn all_informed(&self) -> bool {
        self.sites
            .iter()
            .filter(|s| s.is_active())
            .all(|s| s.informed)
    }

    /// Registers a site for `shard_index` and returns its new id.
    pub fn join(&mut self, shard_index: u32, now: Instant) -> Result<String, Rejection> {
        if !matches!(self.phase, RunPhase::Join { .. }) {
            return Err(Rejection::WrongPhase {
                what: "join",
                why: "the run has already started; start sites before the join deadline".into(),
            });
        }
        let count = self.manifest.sites.count as u32;
        if shard_index >= count {
            return Err(Rejection::ShardOutOfRange {
                index: shard_index,
                last: count - 1,
            });
        }
        let taken = self
            .sites
            .iter()
            .any(|s| s.shard_index == shard_index && s.is_active());
        if taken {
            return Err(Rejection::ShardTaken(shard_index));
        }
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let id = format!("site-{shard_index}-{}", &suffix[..8]);
        info!(site = %id, shard = shard_index, "site joined");
        self.sites.push(Site {
            id: id.clone(),
            shard_index,
            state: SiteState::Joined,
            last_seen: now,
            epochs: Vec::new(),
            upload: None,
            audit: None,
            informed: false,
        });
        Ok(id)
    }

    /// Returns the site's next task and advances its state; `finished` is
    /// the task the site reports as done.
    pub fn poll(
        &mut self,
        site_id: &str,
        finished: pb::TaskKind,
        now: Instant,
    ) -> Result<pb::Task, Rejection> {
        let upload_timeout = secs(self.manifest.coordinator.upload_timeout_s);
        let phase = self.phase.clone();
        let outcome = self.outcome.clone();
        let origin = self.origin;
        let site = self.site_mut(site_id)?;
        site.last_seen = now;
        if let SiteState::Dropped { reason } = &site.state {
            let message = format!("site {} was dropped: {reason}", site.id);
            site.informed = true;
            return Ok(task(pb::TaskKind::Abort, &phase, None, message, origin));
        }
        let task = match phase {
            RunPhase::Join { .. } => wait(&phase, origin),
            RunPhase::Train { deadline } => match site.state {
                SiteState::Joined => {
                    site.state = SiteState::Training;
                    info!(site = %site.id, "site starts training");
                    task(pb::TaskKind::Train, &phase, Some(deadline), "", origin)
                }
                SiteState::Training if finished == pb::TaskKind::Train => {
                    let upload_deadline = now + upload_timeout;
                    site.state = SiteState::Uploading {
                        deadline: upload_deadline,
                    };
                    info!(site = %site.id, "site finished training and starts its upload");
                    task(
                        pb::TaskKind::Upload,
                        &phase,
                        Some(upload_deadline),
                        "",
                        origin,
                    )
                }
                SiteState::Training => {
                    task(pb::TaskKind::Train, &phase, Some(deadline), "", origin)
                }
                SiteState::Uploading { deadline } => {
                    task(pb::TaskKind::Upload, &phase, Some(deadline), "", origin)
                }
                SiteState::Completed | SiteState::Dropped { .. } => wait(&phase, origin),
            },
            RunPhase::Aggregate => wait(&phase, origin),
            RunPhase::Finished => {
                site.informed = true;
                match (outcome, &site.state) {
                    (Some(Outcome::Completed), SiteState::Completed) => {
                        task(pb::TaskKind::Done, &phase, None, "", origin)
                    }
                    (Some(Outcome::Failed(reason) | Outcome::Interrupted(reason)), _) => {
                        task(pb::TaskKind::Abort, &phase, None, reason, origin)
                    }
                    _ => task(
                        pb::TaskKind::Abort,
                        &phase,
                        None,
                        "the run ended before this site completed",
                        origin,
                    ),
                }
            }
        };
        Ok(task)
    }

    /// Records a heartbeat and, when it closes an epoch, its summary.
    pub fn progress(
        &mut self,
        report: &pb::ProgressReport,
        now: Instant,
    ) -> Result<pb::ProgressAck, Rejection> {
        let finished = matches!(self.phase, RunPhase::Finished);
        let site = self.site_mut(&report.site_id)?;
        site.last_seen = now;
        if let SiteState::Dropped { reason } = &site.state {
            return Ok(pb::ProgressAck {
                stop: true,
                message: format!("site {} was dropped: {reason}", site.id),
            });
        }
        if report.epoch > 0 {
            let model = match report.phase() {
                pb::SitePhase::TrainingClassifier => "classifier",
                _ => "gan",
            };
            let summary = EpochProgress {
                model: model.into(),
                epoch: report.epoch as usize,
                epochs: report.epochs as usize,
                losses: report
                    .losses
                    .iter()
                    .map(|l| (l.name.clone(), l.value))
                    .collect(),
                seconds: report.seconds,
                images_per_second: report.images_per_second,
            };
            info!(
                site = %site.id,
                model,
                epoch = summary.epoch,
                epochs = summary.epochs,
                losses = ?summary.losses,
                "site finished an epoch"
            );
            site.epochs.push(summary);
        }
        Ok(pb::ProgressAck {
            stop: finished,
            message: String::new(),
        })
    }

    /// Decides whether an upload with `upload_id` may be read for the site.
    pub fn admit_upload(&self, site_id: &str, upload_id: &str) -> Result<Admission, Rejection> {
        let site = self.site(site_id)?;
        if let SiteState::Dropped { reason } = &site.state {
            return Err(dropped(site, reason));
        }
        if let Some(upload) = site.upload.as_ref().filter(|u| u.upload_id == upload_id) {
            return Ok(Admission::Duplicate {
                accepted_images: (upload.images.len() / crate::data::IMAGE_BYTES) as u32,
            });
        }
        if site.upload.is_some() {
            return Err(Rejection::WrongPhase {
                what: "upload",
                why: format!(
                    "site {} has already uploaded its synthetic set, so its upload phase is over",
                    site.id
                ),
            });
        }
        match (&self.phase, &site.state) {
            (RunPhase::Train { .. }, SiteState::Uploading { .. }) => Ok(Admission::Fresh),
            (RunPhase::Train { .. }, _) => Err(Rejection::WrongPhase {
                what: "upload",
                why: format!(
                    "site {} has no upload task; report the finished TRAIN task with PollTask first",
                    site.id
                ),
            }),
            _ => Err(Rejection::WrongPhase {
                what: "upload",
                why: "the upload phase of this run is over".into(),
            }),
        }
    }

    /// Stores a complete, checked upload, and returns the accepted count.
    pub fn commit_upload(
        &mut self,
        buffer: UploadBuffer,
        now: Instant,
    ) -> Result<pb::UploadResponse, Rejection> {
        let header = &buffer.header;
        if let Admission::Duplicate { accepted_images } =
            self.admit_upload(&header.site_id, &header.upload_id)?
        {
            return Ok(pb::UploadResponse {
                accepted_images,
                duplicate: true,
            });
        }
        let accepted_images = buffer.received() as u32;
        let site = self.site_mut(&buffer.header.site_id)?;
        site.last_seen = now;
        info!(
            site = %site.id,
            upload = %buffer.header.upload_id,
            images = accepted_images,
            bytes = buffer.bytes,
            "accepted synthetic upload"
        );
        site.upload = Some(AcceptedUpload {
            upload_id: buffer.header.upload_id,
            images: buffer.images,
            probabilities: buffer.probabilities,
            bytes: buffer.bytes,
        });
        complete_if_ready(site);
        Ok(pb::UploadResponse {
            accepted_images,
            duplicate: false,
        })
    }

    /// Stores a checked audit submission.
    pub fn submit_audit(
        &mut self,
        site_id: &str,
        audit: AcceptedAudit,
        now: Instant,
    ) -> Result<(), Rejection> {
        let in_train = matches!(self.phase, RunPhase::Train { .. });
        let site = self.site_mut(site_id)?;
        site.last_seen = now;
        if let SiteState::Dropped { reason } = &site.state {
            return Err(dropped(site, reason));
        }
        if !in_train || !matches!(site.state, SiteState::Uploading { .. }) {
            return Err(Rejection::WrongPhase {
                what: "audit summary",
                why: format!("site {} is not in its upload phase", site.id),
            });
        }
        info!(
            site = %site.id,
            sampled = audit.images_sampled,
            dropped_by_audit = audit.images_dropped,
            "accepted audit summary"
        );
        site.audit = Some(audit);
        complete_if_ready(site);
        Ok(())
    }

    /// Applies deadlines and heartbeat timeouts at `now`, and moves the run
    /// to its next phase when its rules require it.
    pub fn tick(&mut self, now: Instant) {
        match self.phase.clone() {
            RunPhase::Join { deadline } => self.tick_join(deadline, now),
            RunPhase::Train { deadline } => self.tick_train(deadline, now),
            RunPhase::Aggregate | RunPhase::Finished => {}
        }
    }

    fn tick_join(&mut self, deadline: Instant, now: Instant) {
        self.drop_silent(now);
        let joined = self.active_count();
        let expected = self.manifest.sites.count;
        let min_sites = self.manifest.coordinator.min_sites;
        if joined >= expected || (now >= deadline && joined >= min_sites) {
            info!(joined, expected, "join phase over; sites start training");
            let deadline = now + secs(self.manifest.coordinator.train_timeout_s);
            self.enter(RunPhase::Train { deadline }, "join", now);
        } else if now >= deadline {
            let timeout = self.manifest.coordinator.join_timeout_s;
            self.fail(
                format!("only {joined} of {min_sites} expected sites joined within {timeout}s"),
                now,
            );
        }
    }

    fn tick_train(&mut self, deadline: Instant, now: Instant) {
        self.drop_silent(now);
        for site in self.sites.iter_mut() {
            let reason = match site.state {
                SiteState::Joined | SiteState::Training if now >= deadline => format!(
                    "missed the training deadline of {}s",
                    self.manifest.coordinator.train_timeout_s
                ),
                SiteState::Uploading { deadline } if now >= deadline => format!(
                    "missed its upload deadline of {}s",
                    self.manifest.coordinator.upload_timeout_s
                ),
                _ => continue,
            };
            drop_site(site, reason);
        }
        let remaining = self.active_count();
        let min_sites = self.manifest.coordinator.min_sites;
        if remaining < min_sites {
            self.fail(
                format!("only {remaining} sites remain, fewer than min_sites = {min_sites}"),
                now,
            );
        } else if self
            .sites
            .iter()
            .filter(|s| s.is_active())
            .all(|s| s.state == SiteState::Completed)
        {
            info!(
                sites = remaining,
                "every remaining site has uploaded; aggregating"
            );
            self.enter(RunPhase::Aggregate, "train", now);
        }
    }

    /// Returns the name of the current phase, as in the report's timings.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            RunPhase::Join { .. } => "join",
            RunPhase::Train { .. } => "train",
            RunPhase::Aggregate => "aggregate",
            RunPhase::Finished => "finished",
        }
    }

    /// Ends the run after aggregation, or with a failure at any phase.
    pub fn finish(&mut self, outcome: Outcome, now: Instant) {
        let name = match self.phase {
            RunPhase::Join { .. } => "join",
            RunPhase::Train { .. } => "train",
            RunPhase::Aggregate => "aggregate",
            RunPhase::Finished => return,
        };
        match &outcome {
            Outcome::Completed => info!("run completed"),
            Outcome::Failed(reason) => warn!(%reason, "run failed"),
            Outcome::Interrupted(reason) => warn!(%reason, "run interrupted"),
        }
        self.outcome = Some(outcome);
        self.enter(RunPhase::Finished, name, now);
    }

    fn fail(&mut self, reason: String, now: Instant) {
        self.finish(Outcome::Failed(reason), now);
    }

    fn enter(&mut self, phase: RunPhase, finished_name: &str, now: Instant) {
        let seconds = (now - self.phase_started).as_secs_f64();
        self.timings.push((finished_name.to_string(), seconds));
        self.phase_started = now;
        self.phase = phase;
    }

    fn drop_silent(&mut self, now: Instant) {
        let timeout = secs(self.manifest.coordinator.heartbeat_timeout_s);
        for site in self.sites.iter_mut() {
            let waiting = matches!(site.state, SiteState::Completed | SiteState::Dropped { .. });
            if !waiting && now.duration_since(site.last_seen) > timeout {
                let reason = format!("no heartbeat for {}s", timeout.as_secs());
                drop_site(site, reason);
            }
        }
    }

    fn active_count(&self) -> usize {
        self.sites.iter().filter(|s| s.is_active()).count()
    }

    fn site(&self, site_id: &str) -> Result<&Site, Rejection> {
        self.sites
            .iter()
            .find(|s| s.id == site_id)
            .ok_or_else(|| Rejection::UnknownSite(site_id.to_string()))
    }

    fn site_mut(&mut self, site_id: &str) -> Result<&mut Site, Rejection> {
        self.sites
            .iter_mut()
            .find(|s| s.id == site_id)
            .ok_or_else(|| Rejection::UnknownSite(site_id.to_string()))
    }
}

fn complete_if_ready(site: &mut Site) {
    if site.upload.is_some() && site.audit.is_some() {
        site.state = SiteState::Completed;
        info!(site = %site.id, "site completed its release");
    }
}

fn drop_site(site: &mut Site, reason: String) {
    warn!(site = %site.id, shard = site.shard_index, %reason, "dropping site");
    site.state = SiteState::Dropped { reason };
    // The audit summary is part of a release, so a partial release is not pooled.
    site.upload = None;
    site.audit = None;
}

fn dropped(site: &Site, reason: &str) -> Rejection {
    Rejection::SiteDropped {
        site: site.id.clone(),
        reason: reason.to_string(),
    }
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn wire_phase(phase: &RunPhase) -> pb::Phase {
    match phase {
        RunPhase::Join { .. } => pb::Phase::Join,
        RunPhase::Train { .. } => pb::Phase::Train,
        RunPhase::Aggregate => pb::Phase::Aggregate,
        RunPhase::Finished => pb::Phase::Finished,
    }
}

fn unix_ms(instant: Instant, origin: (Instant, SystemTime)) -> i64 {
    let wall = origin.1 + instant.saturating_duration_since(origin.0);
    wall.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn wait(phase: &RunPhase, origin: (Instant, SystemTime)) -> pb::Task {
    let mut task = task(pb::TaskKind::Wait, phase, None, "", origin);
    task.retry_after_ms = POLL_INTERVAL_MS;
    task
}

fn task(
    kind: pb::TaskKind,
    phase: &RunPhase,
    deadline: Option<Instant>,
    message: impl Into<String>,
    origin: (Instant, SystemTime),
) -> pb::Task {
    pb::Task {
        kind: kind as i32,
        phase: wire_phase(phase) as i32,
        round: 1,
        deadline_unix_ms: deadline.map(|d| unix_ms(d, origin)).unwrap_or(0),
        retry_after_ms: 0,
        message: message.into(),
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
