//! Why a table could not be read; every message names the file and, where it
//! helps, the 1-based physical line and the column.

use datafusion::error::DataFusionError;

/// A failure to open or read a table, named by cause.
#[derive(thiserror::Error, Debug)]
pub enum ReadError {
    /// The input is not a valid path or URL, or names an unsupported store.
    #[error("{input}: not a readable path or URL: {detail}")]
    InvalidInput { input: String, detail: String },

    /// Nothing exists at the path (file, object or prefix).
    #[error("{file}: no such file, directory or object")]
    NotFound { file: String },

    /// The file is 0 bytes, holds only whitespace, or the directory holds no data files.
    #[error("{file}: the table is empty (no rows)")]
    Empty { file: String },

    /// The file has a header row but no data rows.
    #[error("{file}: only a header (line {line}) and no data rows")]
    HeaderOnly { file: String, line: u64 },

    /// A row has a different number of fields from the table.
    #[error(
        "{file}: line {line} has {found} fields, expected {expected} (delimiter {delimiter:?}); \
         quote fields that contain the delimiter"
    )]
    Ragged {
        file: String,
        line: u64,
        found: usize,
        expected: usize,
        delimiter: char,
    },

    /// A field is not valid UTF-8.
    #[error(
        "{file}: line {line}, column {column}: bytes are not valid UTF-8; re-encode the file as UTF-8"
    )]
    Undecodable {
        file: String,
        line: u64,
        column: usize,
    },

    /// A value does not parse as the type inferred from the first rows.
    #[error(
        "{file}: line {line}, column `{column}`: value {value:?} is not {expected}, the type \
         inferred from the first {inferred_from} rows; declare the column's type (e.g. Utf8) \
         in the spec / ReadOptions::column_types, or raise ReadOptions::infer_rows"
    )]
    TypeConflict {
        file: String,
        line: u64,
        column: String,
        value: String,
        expected: String,
        inferred_from: usize,
    },

    /// A numeric column holds NaN or an infinity, which chimera cannot model.
    #[error(
        "{file}: line {line}, column `{column}`: non-finite number {value:?}; chimera cannot \
         model NaN or infinities, write missing values as an empty field"
    )]
    NonFinite {
        file: String,
        line: u64,
        column: String,
        value: String,
    },

    /// `column_names` (or `column_types`) does not fit the table's columns.
    #[error("{file}: {detail}")]
    Columns { file: String, detail: String },

    /// The Parquet file cannot be decoded.
    #[error("{file}: not a readable Parquet file: {detail}")]
    CorruptParquet { file: String, detail: String },

    /// The input is of a kind the reader does not handle.
    #[error("{file}: {detail}")]
    Unsupported { file: String, detail: String },

    /// A CSV syntax error other than the ones above.
    #[error("{file}: line {line}: {detail}")]
    Csv {
        file: String,
        line: u64,
        detail: String,
    },

    /// Reading bytes failed (including a corrupt gzip stream); `line` is 0
    /// when it failed before the first line.
    #[error("{file}: read failed{}: {source}", near_line(*.line))]
    Io {
        file: String,
        line: u64,
        #[source]
        source: std::io::Error,
    },

    /// The object store refused or failed a request.
    #[error("{file}: object store: {source}")]
    ObjectStore {
        file: String,
        #[source]
        source: object_store::Error,
    },

    /// DataFusion failed while planning or executing the scan.
    #[error("{file}: {source}")]
    DataFusion {
        file: String,
        #[source]
        source: DataFusionError,
    },
}

fn near_line(line: u64) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" near line {line}")
    }
}

impl ReadError {
    /// Recovers the `ReadError` a scan stream carried inside a `DataFusionError`
    /// (the CSV reader sends its errors through DataFusion as `External`), or
    /// wraps any other DataFusion error naming `file`.
    pub fn from_datafusion(file: &str, error: DataFusionError) -> ReadError {
        match unwrap_read_error(error) {
            Ok(read) => read,
            Err(source) => classify_datafusion(file, source),
        }
    }

    /// Turns this error into a `DataFusionError` that `from_datafusion` undoes.
    pub(crate) fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

fn unwrap_read_error(error: DataFusionError) -> Result<ReadError, DataFusionError> {
    match error {
        DataFusionError::External(boxed) => match boxed.downcast::<ReadError>() {
            Ok(read) => Ok(*read),
            Err(other) => Err(DataFusionError::External(other)),
        },
        DataFusionError::Context(context, inner) => unwrap_read_error(*inner)
            .map_err(|inner| DataFusionError::Context(context, Box::new(inner))),
        DataFusionError::Diagnostic(diagnostic, inner) => unwrap_read_error(*inner)
            .map_err(|inner| DataFusionError::Diagnostic(diagnostic, Box::new(inner))),
        DataFusionError::ArrowError(arrow, backtrace) => match *arrow {
            arrow::error::ArrowError::ExternalError(boxed) => match boxed.downcast::<ReadError>() {
                Ok(read) => Ok(*read),
                Err(other) => Err(DataFusionError::ArrowError(
                    Box::new(arrow::error::ArrowError::ExternalError(other)),
                    backtrace,
                )),
            },
            arrow => Err(DataFusionError::ArrowError(Box::new(arrow), backtrace)),
        },
        other => Err(other),
    }
}

/// Parquet decoding failures become `CorruptParquet`; the rest stay DataFusion errors.
fn classify_datafusion(file: &str, error: DataFusionError) -> ReadError {
    let root = error.find_root();
    if matches!(root, DataFusionError::ParquetError(_)) {
        return ReadError::CorruptParquet {
            file: file.to_owned(),
            detail: root.to_string(),
        };
    }
    if let DataFusionError::ObjectStore(store) = root
        && matches!(**store, object_store::Error::NotFound { .. })
    {
        return ReadError::NotFound {
            file: file.to_owned(),
        };
    }
    ReadError::DataFusion {
        file: file.to_owned(),
        source: error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_error_survives_a_trip_through_datafusion() {
        let original = ReadError::Ragged {
            file: "t.csv".into(),
            line: 7,
            found: 2,
            expected: 3,
            delimiter: ',',
        };
        let wrapped = DataFusionError::Context("scan".into(), Box::new(original.into_datafusion()));
        let back = ReadError::from_datafusion("t.csv", wrapped);
        assert!(
            matches!(
                back,
                ReadError::Ragged {
                    line: 7,
                    found: 2,
                    expected: 3,
                    ..
                }
            ),
            "{back}"
        );
        assert_eq!(
            back.to_string(),
            "t.csv: line 7 has 2 fields, expected 3 (delimiter ','); quote fields that contain the delimiter"
        );
    }
}
