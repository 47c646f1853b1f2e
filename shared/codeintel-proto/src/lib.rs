//! The CodeIntel gRPC contracts (`codeintel.v1`), generated from `proto/codeintel/v1/*.proto`.
//! Re-exports `tonic` and `prost` so every crate uses the same versions.

pub use prost;
pub use tonic;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("codeintel.v1");
}

/// File descriptor set for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("codeintel_descriptor");

/// File descriptor set of `arrow.flight.protocol` (hydrate-svc's Flight service), for reflection.
pub const FLIGHT_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("flight_descriptor");
