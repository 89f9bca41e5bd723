//! Generates the gRPC code from `proto/` with protox, a pure-Rust protobuf
//! compiler, so no system `protoc` is needed.

use std::io;

const PROTO: &str = "proto/fedsynth/v1/federation.proto";

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([PROTO], ["proto"]).map_err(io::Error::other)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)
}
