//! The tonic `Federation` service: decodes each request, checks it with
//! `validate`, applies it to the shared [`RunState`] and maps rejections to
//! their gRPC status. It keeps no state of its own.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::state::{AcceptedAudit, Admission, RunState};
use crate::federation::pb;
use crate::federation::validate::{self, Rejection, UploadBuffer};

/// Seconds between the heartbeats a site is asked to send.
pub const HEARTBEAT_INTERVAL_S: u32 = 5;

/// The run state shared by the service and the coordinator's control loop.
///
/// A std mutex, because every critical section is short and never awaits:
/// an upload is read and checked outside the lock and committed in one step.
pub type SharedState = Arc<Mutex<RunState>>;

/// The gRPC service over the shared run state.
#[derive(Clone)]
pub struct FederationService {
    state: SharedState,
}

impl FederationService {
    pub fn new(state: SharedState) -> FederationService {
        FederationService { state }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunState> {
        // A panic while holding the lock leaves a state that was valid
        // before the panicking call, so keep serving with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads and checks a whole upload stream without holding the lock.
    async fn read_upload(
        &self,
        mut stream: Streaming<pb::UploadMessage>,
    ) -> Result<Result<UploadBuffer, pb::UploadResponse>, Status> {
        let header = match stream.next().await {
            None => return Err(Rejection::MissingHeader.into()),
            Some(message) => match message?.body {
                Some(pb::upload_message::Body::Header(header)) => header,
                _ => return Err(Rejection::MisplacedHeader.into()),
            },
        };
        let max_images = {
            let state = self.lock();
            let admission = state.admit_upload(&header.site_id, &header.upload_id)?;
            if let Admission::Duplicate { accepted_images } = admission {
                debug!(site = %header.site_id, upload = %header.upload_id, "duplicate upload");
                return Ok(Err(pb::UploadResponse {
                    accepted_images,
                    duplicate: true,
                }));
            }
            state.manifest().synthetic.samples_per_site
        };
        let mut buffer = UploadBuffer::new(header, max_images)?;
        while let Some(message) = stream.next().await {
            match message?.body {
                Some(pb::upload_message::Body::Chunk(chunk)) => {
                    debug!(
                        site = %buffer.header.site_id,
                        images = chunk.images.len() / crate::data::IMAGE_BYTES,
                        "upload chunk"
                    );
                    buffer.push(chunk)?
                }
                _ => return Err(Rejection::MisplacedHeader.into()),
            }
        }
        Ok(Ok(buffer.finish()?))
    }
}

#[tonic::async_trait]
impl pb::federation_server::Federation for FederationService {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let shard_index = request.into_inner().shard_index;
        let mut state = self.lock();
        let site_id = state
            .join(shard_index, Instant::now())
            .map_err(|r| logged("Join", &format!("shard {shard_index}"), r.into()))?;
        Ok(Response::new(pb::JoinResponse {
            site_id,
            manifest_toml: state.manifest().to_toml(),
            heartbeat_interval_s: HEARTBEAT_INTERVAL_S,
        }))
    }

    async fn poll_task(
        &self,
        request: Request<pb::PollTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let request = request.into_inner();
        let finished = request.finished();
        let task = self
            .lock()
            .poll(&request.site_id, finished, Instant::now())
            .map_err(|r| logged("PollTask", &request.site_id, r.into()))?;
        debug!(site = %request.site_id, kind = ?task.kind(), "task");
        Ok(Response::new(task))
    }

    async fn report_progress(
        &self,
        request: Request<pb::ProgressReport>,
    ) -> Result<Response<pb::ProgressAck>, Status> {
        let report = request.into_inner();
        debug!(site = %report.site_id, phase = ?report.phase(), epoch = report.epoch, "progress");
        let ack = self
            .lock()
            .progress(&report, Instant::now())
            .map_err(|r| logged("ReportProgress", &report.site_id, r.into()))?;
        Ok(Response::new(ack))
    }

    async fn upload_synthetic(
        &self,
        request: Request<Streaming<pb::UploadMessage>>,
    ) -> Result<Response<pb::UploadResponse>, Status> {
        let buffer = match self.read_upload(request.into_inner()).await {
            Ok(Ok(buffer)) => buffer,
            Ok(Err(duplicate)) => return Ok(Response::new(duplicate)),
            Err(status) => return Err(logged("UploadSynthetic", "", status)),
        };
        let site = buffer.header.site_id.clone();
        let response = self
            .lock()
            .commit_upload(buffer, Instant::now())
            .map_err(|r| logged("UploadSynthetic", &site, r.into()))?;
        Ok(Response::new(response))
    }

    async fn submit_audit(
        &self,
        request: Request<pb::AuditSubmission>,
    ) -> Result<Response<pb::AuditAck>, Status> {
        let submission = request.into_inner();
        let site = submission.site_id.clone();
        let summary = validate::check_audit(&submission)
            .map_err(|r| logged("SubmitAudit", &site, r.into()))?;
        let audit = AcceptedAudit {
            summary,
            real_label_histogram: submission.real_label_histogram,
            images_sampled: submission.images_sampled.into(),
            images_dropped: submission.images_dropped_by_audit.into(),
        };
        self.lock()
            .submit_audit(&site, audit, Instant::now())
            .map_err(|r| logged("SubmitAudit", &site, r.into()))?;
        Ok(Response::new(pb::AuditAck {}))
    }
}

/// Logs a rejected request with its call and site, and passes it on.
fn logged(call: &str, site: &str, status: Status) -> Status {
    warn!(call, site, code = ?status.code(), message = status.message(), "rejected request");
    status
}
