//! chimera-coordinator: reads tables through DataFusion, profiles and counts them in streaming
//! passes, and fits the model.

pub mod error;
pub mod fit;
pub mod read;
pub mod values;

pub use error::FitError;
pub use fit::{NoProgress, Progress, fit_table};
