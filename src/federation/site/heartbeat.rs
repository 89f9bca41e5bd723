//! The heartbeat task: forwards the local work's epoch summaries and sends
//! a plain heartbeat at a fixed interval, so the coordinator keeps the site
//! in the run even through a long epoch.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tonic::transport::Channel;
use tracing::{debug, warn};

use super::local::Progress;
use super::messages;
use crate::federation::pb::{self, federation_client::FederationClient};

/// Sends heartbeats until `progress` closes; returns the coordinator's
/// message when it asked the site to stop.
pub async fn run(
    client: FederationClient<Channel>,
    site_id: String,
    mut progress: UnboundedReceiver<Progress>,
    interval: Duration,
) -> Option<String> {
    let mut ticker = tokio::time::interval(interval);
    let mut phase = pb::SitePhase::Loading;
    let mut stop = None;
    loop {
        let report = tokio::select! {
            update = progress.recv() => match update {
                None => return stop,
                Some(Progress::Phase(next)) => {
                    phase = next;
                    messages::heartbeat(&site_id, phase)
                }
                Some(Progress::Epoch(next, update)) => {
                    phase = next;
                    messages::epoch_report(&site_id, phase, &update)
                }
            },
            _ = ticker.tick() => messages::heartbeat(&site_id, phase),
        };
        match send(&client, report).await {
            Ok(ack) if ack.stop && stop.is_none() => {
                warn!(site = %site_id, message = %ack.message, "coordinator asked this site to stop");
                stop = Some(ack.message);
            }
            Ok(_) => {}
            // A lost heartbeat is not fatal: the next one may get through
            // before the coordinator's heartbeat timeout.
            Err(status) => {
                warn!(site = %site_id, code = ?status.code(), message = status.message(), "heartbeat failed")
            }
        }
    }
}

async fn send(
    client: &FederationClient<Channel>,
    report: pb::ProgressReport,
) -> Result<pb::ProgressAck, tonic::Status> {
    debug!(phase = ?report.phase(), epoch = report.epoch, "heartbeat");
    let mut client = client.clone();
    let response = tokio::time::timeout(Duration::from_secs(10), client.report_progress(report))
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("heartbeat timed out after 10s"))??;
    Ok(response.into_inner())
}
