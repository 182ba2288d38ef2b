//! Reading input tables: a path or URL in, an Arrow schema and a re-runnable
//! stream of record batches out, through a DataFusion `SessionContext`.
//!
//! - Parquet (one file or a directory of files) is read by DataFusion.
//! - CSV is read by this module (module `csv` says why): the
//!   dialect is sniffed from the first 64 KiB (decompressed when gzip), types
//!   are inferred from the first [`ReadOptions::infer_rows`] data rows, and
//!   the file is exposed as a streaming table whose every scan parses the
//!   file afresh on a blocking thread, a bounded number of batches ahead.
//!
//! Types are fixed when the table is opened. A later value that does not
//! parse as its column's type stops the scan with [`ReadError::TypeConflict`]
//! naming the line, column and value; declare the type in
//! [`ReadOptions::column_types`] (or raise `infer_rows`) to read such a file.
//! NaN and infinities in numeric columns are [`ReadError::NonFinite`].
//!
//! Errors met while a stream runs arrive as `DataFusionError::External`;
//! [`ReadError::from_datafusion`] recovers the `ReadError`.

mod csv;
mod error;
mod infer;
mod location;
mod parquet;
mod sniff;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

pub use error::ReadError;
pub use sniff::{CsvDialect, DEFAULT_NULL_TOKENS};

use location::{Entry, Location};

/// Rows per record batch unless the caller says otherwise.
pub const DEFAULT_BATCH_ROWS: usize = 65_536;
/// Data rows sampled for CSV type inference unless the caller says otherwise.
pub const DEFAULT_INFER_ROWS: usize = 10_000;
/// Bytes read to recognise Parquet by its magic number.
const PARQUET_MAGIC: &[u8; 4] = b"PAR1";
/// Suffixes that name a format (and are stripped from the table name).
const CSV_SUFFIXES: [&str; 6] = [".csv", ".tsv", ".txt", ".data", ".test", ".gz"];
const PARQUET_SUFFIXES: [&str; 2] = [".parquet", ".pq"];

/// How to read a table; every `None` is sniffed or defaulted.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// File format; by default from the extension, else from the content.
    pub format: Option<Format>,
    /// CSV field separator, instead of sniffing among `,` `;` `|` tab.
    pub delimiter: Option<u8>,
    /// Whether the first CSV row (after any preamble) is a header.
    pub has_header: Option<bool>,
    /// Values read as missing instead of [`DEFAULT_NULL_TOKENS`]; an empty
    /// field is always missing.
    pub null_tokens: Option<Vec<String>>,
    /// Column names for a headerless CSV file, or to rename a header's.
    pub column_names: Option<Vec<String>>,
    /// Whether CSV text values are trimmed, instead of sniffing for padding.
    pub trim: Option<bool>,
    /// CSV column types by (final) name, instead of inferring them: Boolean,
    /// Int64, Float64, Date32, Timestamp(Microsecond, None) or Utf8.
    pub column_types: Vec<(String, DataType)>,
    /// Data rows read at open to infer CSV column types.
    pub infer_rows: usize,
    /// object_store options, e.g. `("aws_endpoint", "http://127.0.0.1:9000")`;
    /// they override the `AWS_*`/`GOOGLE_*`/`AZURE_*` environment variables.
    pub storage_options: Vec<(String, String)>,
    /// Rows per record batch.
    pub batch_rows: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            delimiter: None,
            has_header: None,
            null_tokens: None,
            column_names: None,
            trim: None,
            column_types: Vec::new(),
            infer_rows: DEFAULT_INFER_ROWS,
            storage_options: Vec::new(),
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

/// The Arrow types a spec declares for CSV columns (`type:`), for [`ReadOptions::column_types`].
pub fn declared_types(
    columns: &std::collections::BTreeMap<String, chimera_core::spec::ColumnSpec>,
) -> Result<Vec<(String, DataType)>, chimera_core::CoreError> {
    let mut types = Vec::new();
    for (name, c) in columns {
        let Some(t) = &c.read_type else { continue };
        let dt = match t.as_str() {
            "Utf8" => DataType::Utf8,
            "Int64" => DataType::Int64,
            "Float64" => DataType::Float64,
            "Boolean" => DataType::Boolean,
            "Date32" => DataType::Date32,
            "Timestamp" => DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            other => {
                return Err(chimera_core::CoreError::Spec(format!(
                    "column `{name}`: type must be one of {}, got `{other}`",
                    chimera_core::spec::READ_TYPES.join(", ")
                )));
            }
        };
        types.push((name.clone(), dt));
    }
    Ok(types)
}

/// A table file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

/// An opened table: registered in its own `SessionContext` under
/// [`TableSource::name`], with a fixed schema, scannable any number of times.
pub struct TableSource {
    ctx: SessionContext,
    name: String,
    input: String,
    format: Format,
    schema: SchemaRef,
    dialect: Option<CsvDialect>,
}

impl std::fmt::Debug for TableSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableSource")
            .field("name", &self.name)
            .field("input", &self.input)
            .field("format", &self.format)
            .field("schema", &self.schema)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl TableSource {
    /// The table's name, from the file or directory name without format suffixes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path or URL it was opened from.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The file format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The Arrow schema every batch has.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The CSV dialect that was sniffed and overridden; `None` for Parquet.
    pub fn dialect(&self) -> Option<&CsvDialect> {
        self.dialect.as_ref()
    }

    /// The DataFusion session the table is registered in, for queries over it.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// A fresh pass over all rows, in file order (partitions one after another).
    pub async fn stream(&self) -> Result<SendableRecordBatchStream, ReadError> {
        let to_error = |error| ReadError::from_datafusion(&self.input, error);
        let frame = self
            .ctx
            .table(TableReference::bare(self.name.as_str()))
            .await
            .map_err(to_error)?;
        let partitions = frame.execute_stream_partitioned().await.map_err(to_error)?;
        let rows = futures::stream::iter(partitions).flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }

    /// One line for logs, e.g. `adult: CSV, delimiter ',', no header,
    /// trimmed, 15 columns, skipped 1 preamble line`.
    pub fn describe(&self) -> String {
        let columns = self.schema.fields().len();
        let Some(dialect) = &self.dialect else {
            return format!("{}: Parquet, {columns} columns", self.name);
        };
        let mut line = format!(
            "{}: CSV{}, delimiter {:?}, {}",
            self.name,
            if dialect.gzip { " (gzip)" } else { "" },
            char::from(dialect.delimiter),
            if dialect.has_header {
                "header"
            } else {
                "no header"
            },
        );
        if dialect.trim {
            line.push_str(", trimmed");
        }
        line.push_str(&format!(", {columns} columns"));
        match dialect.preamble_lines {
            0 => {}
            1 => line.push_str(", skipped 1 preamble line"),
            n => line.push_str(&format!(", skipped {n} preamble lines")),
        }
        line
    }
}

/// The table name for a file or directory name: format suffixes stripped
/// (`adult.csv.gz` -> `adult`, `admissions/` -> `admissions`).
fn table_name(segment: &str) -> String {
    let mut name = segment.trim_end_matches('/');
    loop {
        let lower = name.to_ascii_lowercase();
        let suffix = CSV_SUFFIXES
            .iter()
            .chain(PARQUET_SUFFIXES.iter())
            .find(|suffix| lower.ends_with(*suffix) && lower.len() > suffix.len());
        match suffix {
            Some(suffix) => name = &name[..name.len() - suffix.len()],
            None => break,
        }
    }
    if name.is_empty() {
        "table".to_owned()
    } else {
        name.to_owned()
    }
}

/// The format a file name implies, if any.
fn format_from_name(segment: &str) -> Option<Format> {
    let lower = segment.to_ascii_lowercase();
    if PARQUET_SUFFIXES
        .iter()
        .any(|suffix| lower.ends_with(suffix))
    {
        Some(Format::Parquet)
    } else if CSV_SUFFIXES.iter().any(|suffix| lower.ends_with(suffix)) {
        Some(Format::Csv)
    } else {
        None
    }
}

/// Opens the table at `input` (a path, `file://` or object-store URL):
/// detects the format, sniffs and infers a CSV file's dialect and schema, and
/// registers it in a new `SessionContext`.
pub async fn open_table(input: &str, opts: &ReadOptions) -> Result<TableSource, ReadError> {
    let file = input;
    let location = Location::parse(input, &opts.storage_options)?;
    let entry = location.probe(file).await?;
    let segment = location.last_segment();
    let name = table_name(&segment);
    let format = match &entry {
        Entry::Directory { files } if files.is_empty() => {
            return Err(ReadError::Empty {
                file: file.to_owned(),
            });
        }
        Entry::Directory { files } => match opts.format {
            Some(Format::Csv) => {
                return Err(ReadError::Unsupported {
                    file: file.to_owned(),
                    detail: "a directory of CSV files is not supported; pass one file".into(),
                });
            }
            Some(Format::Parquet) => Format::Parquet,
            None if !parquet::directory_extension(files).is_empty() => Format::Parquet,
            None => {
                return Err(ReadError::Unsupported {
                    file: file.to_owned(),
                    detail: format!(
                        "the directory holds no .parquet files (found {}); pass one CSV file",
                        files
                            .iter()
                            .take(5)
                            .map(|data| data.location.last_segment())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        },
        Entry::File { size: 0 } => {
            return Err(ReadError::Empty {
                file: file.to_owned(),
            });
        }
        Entry::File { size } => match opts.format.or_else(|| format_from_name(&segment)) {
            Some(format) => format,
            None => {
                let magic = location
                    .head_bytes(file, PARQUET_MAGIC.len(), *size)
                    .await?;
                if magic == PARQUET_MAGIC {
                    Format::Parquet
                } else {
                    Format::Csv
                }
            }
        },
    };

    let mut config = SessionConfig::new().with_batch_size(opts.batch_rows.max(1));
    // Plain Utf8 strings, as the CSV reader produces, rather than Utf8View.
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    if let Location::Remote { url, store, .. } = &location {
        ctx.register_object_store(url, Arc::clone(store));
    }

    let mut dialect = None;
    match format {
        Format::Parquet => parquet::register(&ctx, &name, file, &location, &entry).await?,
        Format::Csv => {
            let (owned_file, owned_opts) = (file.to_owned(), opts.clone());
            let scan = tokio::task::spawn_blocking(move || {
                csv::analyse(&owned_file, location, &owned_opts)
            })
            .await
            .map_err(|error| ReadError::DataFusion {
                file: file.to_owned(),
                source: datafusion::error::DataFusionError::ExecutionJoin(Box::new(error)),
            })??;
            dialect = Some(scan.dialect.clone());
            let schema = Arc::clone(&scan.schema);
            let partition = Arc::new(csv::CsvPartition::new(Arc::new(scan)));
            let table = StreamingTable::try_new(schema, vec![partition])
                .map_err(|error| ReadError::from_datafusion(file, error))?;
            ctx.register_table(TableReference::bare(name.as_str()), Arc::new(table))
                .map_err(|error| ReadError::from_datafusion(file, error))?;
        }
    }
    let frame = ctx
        .table(TableReference::bare(name.as_str()))
        .await
        .map_err(|error| ReadError::from_datafusion(file, error))?;
    let schema = Arc::clone(frame.schema().inner());
    let source = TableSource {
        ctx,
        name,
        input: input.to_owned(),
        format,
        schema,
        dialect,
    };
    tracing::info!(table = %source.name, input, "{}", source.describe());
    Ok(source)
}

impl TableSource {
    /// A table held in memory (e.g. the flattened rows of a relational fit), registered as
    /// `name`; `input` says where it came from, for messages.
    pub fn from_batches(
        name: &str,
        input: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<TableSource, ReadError> {
        let to_error = |error| ReadError::from_datafusion(input, error);
        let table = datafusion::datasource::MemTable::try_new(schema.clone(), vec![batches])
            .map_err(to_error)?;
        let ctx = SessionContext::new();
        ctx.register_table(TableReference::bare(name), Arc::new(table))
            .map_err(to_error)?;
        Ok(TableSource {
            ctx,
            name: name.to_owned(),
            input: input.to_owned(),
            format: Format::Parquet,
            schema,
            dialect: None,
        })
    }
}

/// Opens the table and reads every batch into memory (for evaluation and tests).
pub async fn read_all(
    input: &str,
    opts: &ReadOptions,
) -> Result<(TableSource, Vec<RecordBatch>), ReadError> {
    let source = open_table(input, opts).await?;
    let mut stream = source.stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch.map_err(|error| ReadError::from_datafusion(input, error))?);
    }
    Ok((source, batches))
}
