//! The gRPC federation: the protocol types, message validation, the
//! coordinator and the site. Only the synthetic sharing mode is built; the
//! weights mode of FedAvg rounds has no messages yet.

pub mod cli;
pub mod coordinator;
pub mod plan;
pub mod site;
pub mod validate;

/// Code generated from `proto/fedsynth/v1/federation.proto`.
pub mod pb {
    tonic::include_proto!("fedsynth.v1");
}

/// HTTP/2 keepalive settings used by both ends, so a long local training
/// step never lets an idle connection drop.
pub mod keepalive {
    use std::time::Duration;

    /// Interval between HTTP/2 pings.
    pub const INTERVAL: Duration = Duration::from_secs(20);
    /// Time a ping may go unanswered before the connection counts as dead.
    pub const TIMEOUT: Duration = Duration::from_secs(20);
}
