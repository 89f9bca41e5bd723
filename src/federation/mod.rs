//! The gRPC federation: the protocol types, the coordinator and the site.

pub mod cli;

/// Code generated from `proto/fedsynth/v1/federation.proto`.
pub mod pb {
    tonic::include_proto!("fedsynth.v1");
}
