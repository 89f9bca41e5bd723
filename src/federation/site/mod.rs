//! The site: dials the coordinator, joins, and pulls its tasks. Training
//! runs on a blocking thread while a background task sends heartbeats;
//! the release is streamed in chunks under one upload id, reused on retry.

pub mod client;
mod heartbeat;
pub mod local;
pub mod messages;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tonic::transport::Channel;
use tracing::info;

use crate::federation::pb::{self, federation_client::FederationClient};
use crate::launch::manifest::Manifest;
use client::with_retries;
use local::{LocalPaths, Release};

/// A checked site invocation.
#[derive(Clone, Debug)]
pub struct SiteConfig {
    /// Coordinator URL, `http://HOST:PORT`.
    pub coordinator: String,
    pub shard_index: u32,
    /// `--data`, when given; otherwise the usual lookup applies.
    pub data_flag: Option<PathBuf>,
    /// `--backend`, when given; otherwise the run plan's `run.backend`.
    pub backend: Option<crate::backend::BackendKind>,
    /// Directory for the site's own files.
    pub work_dir: PathBuf,
}

/// A joined site: its id, the run plan and its channel.
struct Session {
    client: FederationClient<Channel>,
    site_id: String,
    manifest: Manifest,
    heartbeat_interval: Duration,
}

/// Runs a site until the coordinator reports the run done.
pub async fn run(config: SiteConfig) -> anyhow::Result<()> {
    let session = join(&config).await?;
    let mut finished = pb::TaskKind::Unspecified;
    let mut release: Option<Release> = None;
    let mut released = false;
    loop {
        let task = poll(&session, finished).await?;
        finished = pb::TaskKind::Unspecified;
        match task.kind() {
            pb::TaskKind::Wait => {
                let pause = u64::from(task.retry_after_ms.max(100));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            pb::TaskKind::Train => {
                if release.is_none() {
                    info!(site = %session.site_id, "training");
                    release = Some(train(&session, &config).await?);
                }
                finished = pb::TaskKind::Train;
            }
            pb::TaskKind::Upload => {
                let release = release
                    .as_ref()
                    .context("coordinator sent an upload task before training")?;
                if !released {
                    upload(&session, release).await?;
                    released = true;
                }
            }
            pb::TaskKind::Done => {
                info!(site = %session.site_id, "coordinator reports the run done");
                return Ok(());
            }
            pb::TaskKind::Abort => bail!("coordinator ended this site: {}", task.message),
            pb::TaskKind::Unspecified => bail!("coordinator sent a task of unknown kind"),
        }
    }
}

async fn join(config: &SiteConfig) -> anyhow::Result<Session> {
    let client = client::connect(&config.coordinator).await?;
    let request = messages::join_request(config.shard_index);
    let response = with_retries("Join", || {
        let mut client = client.clone();
        async move { client.join(request).await }
    })
    .await
    .with_context(|| {
        format!(
            "coordinator rejected the join of shard {}",
            config.shard_index
        )
    })?
    .into_inner();
    let mut manifest = Manifest::parse(std::path::Path::new("<run plan>"), &response.manifest_toml)
        .context("coordinator sent an invalid run plan")?;
    if let Some(backend) = config.backend {
        manifest.run.backend = backend;
    }
    info!(site = %response.site_id, shard = config.shard_index, "joined the run");
    Ok(Session {
        client,
        site_id: response.site_id,
        manifest,
        heartbeat_interval: Duration::from_secs(response.heartbeat_interval_s.max(1).into()),
    })
}

async fn poll(session: &Session, finished: pb::TaskKind) -> anyhow::Result<pb::Task> {
    let request = messages::poll_request(&session.site_id, finished);
    let task = with_retries("PollTask", || {
        let mut client = session.client.clone();
        let request = request.clone();
        async move { client.poll_task(request).await }
    })
    .await
    .context("failed to poll the coordinator for a task")?;
    Ok(task.into_inner())
}

/// Runs the local work on a blocking thread with heartbeats alongside.
async fn train(session: &Session, config: &SiteConfig) -> anyhow::Result<Release> {
    let data_dir =
        crate::federation::plan::data_dir(config.data_flag.as_deref(), &session.manifest)?;
    let paths = LocalPaths {
        data_dir,
        work_dir: config.work_dir.clone(),
    };
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let heartbeats = tokio::spawn(heartbeat::run(
        session.client.clone(),
        session.site_id.clone(),
        receiver,
        session.heartbeat_interval,
    ));
    let manifest = session.manifest.clone();
    let shard_index = config.shard_index as usize;
    let work = tokio::task::spawn_blocking(move || {
        let mut report = |progress| {
            // The receiver outlives the work unless the heartbeat task
            // panicked, and then no heartbeat can carry the progress.
            let _ = sender.send(progress);
        };
        local::prepare_release(&paths, &manifest, shard_index, &mut report)
    });
    let release = work.await.context("local training panicked");
    let stop = heartbeats.await.unwrap_or_default();
    let release = release??;
    if let Some(message) = stop {
        bail!("coordinator stopped this site during training: {message}");
    }
    info!(
        site = %session.site_id,
        released = release.image_count(),
        withheld = release.images_dropped,
        "synthetic set ready"
    );
    Ok(release)
}

/// Streams the release under one upload id and submits the audit summary.
async fn upload(session: &Session, release: &Release) -> anyhow::Result<()> {
    let upload_id = format!("{}-{}", session.site_id, uuid::Uuid::new_v4().simple());
    let chunk_images = session.manifest.synthetic.chunk_images;
    let stream = messages::upload_messages(&session.site_id, &upload_id, release, chunk_images);
    let response = with_retries("UploadSynthetic", || {
        let mut client = session.client.clone();
        let stream = tokio_stream::iter(stream.clone());
        async move { client.upload_synthetic(stream).await }
    })
    .await
    .context("coordinator rejected the synthetic upload")?
    .into_inner();
    info!(
        site = %session.site_id,
        upload = %upload_id,
        accepted = response.accepted_images,
        duplicate = response.duplicate,
        "uploaded synthetic set"
    );
    let submission = messages::audit_submission(&session.site_id, release);
    with_retries("SubmitAudit", || {
        let mut client = session.client.clone();
        let submission = submission.clone();
        async move { client.submit_audit(submission).await }
    })
    .await
    .context("coordinator rejected the audit summary")?;
    Ok(())
}
