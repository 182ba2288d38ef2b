//! chimera-core: pure computation. Schema and roles, encoding, the private Bayesian network,
//! privacy accounting and the model artifact. No I/O, no async runtime.

pub mod bayesnet;
pub mod domain;
pub mod error;
pub mod fit;
pub mod grid;
pub mod idformat;
pub mod model;
pub mod plan;
pub mod privacy;
pub mod profile;
pub mod relational;
pub mod rng;
pub mod schema;
pub mod spec;

pub use error::{CoreError, Result};
