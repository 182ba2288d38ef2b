//! The core crate's error type: every variant names the cause and, where one exists, the column.

use thiserror::Error;

/// Why a computation in `chimera-core` could not proceed.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The user's settings are invalid (epsilon, rows, spec values).
    #[error("invalid setting: {0}")]
    Config(String),
    /// The spec is malformed or names something the table does not have.
    #[error("spec: {0}")]
    Spec(String),
    /// The data cannot be modelled as it is (e.g. a column that is entirely null).
    #[error("table `{table}`, column `{column}`: {message}")]
    Column {
        table: String,
        column: String,
        message: String,
    },
    /// The table as a whole cannot be modelled (e.g. no rows).
    #[error("table `{table}`: {message}")]
    Table { table: String, message: String },
    /// A model artifact could not be read or does not match this version.
    #[error("model: {0}")]
    Model(String),
    /// A bug: an invariant inside chimera did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for the core crate.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;
