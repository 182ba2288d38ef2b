//! The coordinator–worker protocol, generated from `proto/chimera/v1/coordinator.proto`.

#![allow(clippy::all, clippy::unwrap_used, missing_docs)]

/// Version of the protocol this build speaks; a coordinator refuses workers of another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// Metadata key of the shared token.
pub const AUTHORIZATION: &str = "authorization";

pub mod v1 {
    tonic::include_proto!("chimera.v1");
}
