//! chimera-coordinator: reads tables through DataFusion, profiles and counts them in streaming
//! passes, fits the model, and runs the sampling job: shard plan, leases, the gRPC service and
//! the manifest commits.

pub mod entities;
pub mod error;
pub mod fit;
pub mod job;
pub mod leases;
pub mod read;
pub mod service;
pub mod values;

pub use error::FitError;
pub use fit::{NoProgress, Progress, fit_table};
