//! The coordinator's error type.

use chimera_core::CoreError;
use thiserror::Error;

use crate::read::ReadError;

/// Why a fit could not finish.
#[derive(Debug, Error)]
pub enum FitError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error(
        "table `{table}`, column `{column}`, row {row}: {value} is not a finite number; chimera cannot model NaN or infinity (use an empty value for missing)"
    )]
    NonFinite {
        table: String,
        column: String,
        row: u64,
        value: f64,
    },
    #[error("table `{table}`, column `{column}`: type {data_type} is not supported")]
    UnsupportedType {
        table: String,
        column: String,
        data_type: String,
    },
    #[error("table `{table}`, column `{column}`: {source}")]
    Arrow {
        table: String,
        column: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("table `{table}`: reading failed: {message}")]
    Stream { table: String, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}
