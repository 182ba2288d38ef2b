//! Why an evaluation could not be made.

use std::fmt;

use arrow::error::ArrowError;

/// Which of the evaluated tables a problem was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableRole {
    /// The real training table.
    Real,
    /// The synthetic table.
    Synthetic,
    /// The real held-out table used for ML efficacy.
    Test,
}

impl fmt::Display for TableRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableRole::Real => "real",
            TableRole::Synthetic => "synthetic",
            TableRole::Test => "test",
        })
    }
}

/// An evaluation that could not be made; every variant names the table and column at fault.
#[derive(thiserror::Error, Debug)]
pub enum EvalError {
    /// A table has no rows.
    #[error("the {table} table has no rows")]
    Empty {
        /// The table without rows.
        table: TableRole,
    },
    /// A column of the real table is absent from another table (or from one of its batches).
    #[error("column `{column}` of the real table is missing from the {table} table")]
    MissingColumn {
        /// The missing column.
        column: String,
        /// The table it is missing from.
        table: TableRole,
    },
    /// A column is numeric in one table and categorical in another.
    #[error(
        "column `{column}` is {expected} in the real table but has type {found} in the {table} table"
    )]
    TypeMismatch {
        /// The column.
        column: String,
        /// The table whose type disagrees with the real table.
        table: TableRole,
        /// The kind of the column in the real table: `numeric` or `categorical`.
        expected: &'static str,
        /// The Arrow type found in `table`.
        found: String,
    },
    /// A column has an Arrow type the metrics do not cover (binary, list, struct, ...).
    #[error(
        "column `{column}` of the {table} table has type {data_type}, which cannot be evaluated"
    )]
    UnsupportedType {
        /// The column.
        column: String,
        /// The table holding it.
        table: TableRole,
        /// Its Arrow type.
        data_type: String,
    },
    /// The ML-efficacy target cannot be used.
    #[error("target column `{target}`: {reason}")]
    Target {
        /// The target column.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Arrow could not convert a column's values.
    #[error("column `{column}` of the {table} table could not be converted: {source}")]
    Arrow {
        /// The column.
        column: String,
        /// The table holding it.
        table: TableRole,
        /// Arrow's error.
        #[source]
        source: ArrowError,
    },
    /// The gradient-boosting model could not be trained.
    #[error("training the ML-efficacy model on the {table} table failed: {reason}")]
    Model {
        /// The training table.
        table: TableRole,
        /// The trainer's message.
        reason: String,
    },
    /// A relational evaluation's tables do not fit its links or rules.
    #[error("{message}")]
    Relational {
        /// What is wrong, naming the table and column.
        message: String,
    },
}
