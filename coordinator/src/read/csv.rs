//! The CSV reader: sniffs and infers once when the table is opened, then
//! parses the file on a blocking thread into Arrow record batches each time
//! DataFusion scans it.
//!
//! DataFusion's own CSV reader is not used because it cannot trim the space
//! of `", "` separators (UCI Adult) or skip preamble lines, and its errors do
//! not name the line and column.

use std::io::{self, Cursor, Read};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{Field, Schema, SchemaRef};
use csv::{ByteRecord, StringRecord};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;

use super::infer::{
    ColumnEvidence, ColumnKind, is_non_finite, parse_bool, parse_date, parse_float, parse_int,
    parse_timestamp,
};
use super::location::{Location, decompressed};
use super::sniff::{
    CsvDialect, DEFAULT_NULL_TOKENS, NullTokens, detect_header, is_blank_bytes, sniff_layout,
};
use super::{ReadError, ReadOptions};

/// Bytes sniffed for the dialect.
const SAMPLE_BYTES: usize = 64 * 1024;
/// The sample grows up to this size when its rows are very long.
const MAX_SAMPLE_BYTES: usize = 8 * 1024 * 1024;
/// Row lines in the sample needed before it is considered representative.
const SAMPLE_MIN_LINES: usize = 3;
/// The csv parser's buffer.
const PARSE_BUFFER_BYTES: usize = 256 * 1024;
/// Record batches buffered between the parser thread and the consumer.
const BATCHES_IN_FLIGHT: usize = 2;

/// Everything needed to scan a CSV file again: where it is, its dialect and
/// the schema fixed when it was opened.
#[derive(Debug)]
pub(crate) struct CsvScan {
    pub file: String,
    pub location: Location,
    pub dialect: CsvDialect,
    pub schema: SchemaRef,
    pub kinds: Vec<ColumnKind>,
    pub batch_rows: usize,
    /// Data rows the types were inferred from (for error messages).
    pub inferred_from: usize,
}

/// Opens `location`, sniffs the dialect and infers the schema. Blocking.
pub(crate) fn analyse(
    file: &str,
    location: Location,
    opts: &ReadOptions,
) -> Result<CsvScan, ReadError> {
    let (raw, fetch) = location.open_raw(file)?;
    if let Some(fetch) = fetch {
        tokio::runtime::Handle::current().spawn(fetch);
    }
    let io_error = |source: io::Error| ReadError::Io {
        file: file.to_owned(),
        line: 0,
        source,
    };
    let (mut reader, gzip) = decompressed(raw).map_err(io_error)?;
    let (sample, complete) = read_sample(&mut reader).map_err(|(source, line)| ReadError::Io {
        file: file.to_owned(),
        line,
        source,
    })?;
    if complete && sample.iter().all(u8::is_ascii_whitespace) {
        return Err(ReadError::Empty {
            file: file.to_owned(),
        });
    }
    let layout = sniff_layout(&sample, complete, opts.delimiter);
    let null_tokens = opts.null_tokens.clone().unwrap_or_else(|| {
        DEFAULT_NULL_TOKENS
            .iter()
            .map(|token| (*token).to_owned())
            .collect()
    });
    let mut dialect = CsvDialect {
        delimiter: layout.delimiter,
        has_header: false,
        trim: opts.trim.unwrap_or(layout.trim),
        quote: b'"',
        null_tokens,
        preamble_lines: layout.preamble,
        gzip,
    };
    let nulls = NullTokens::new(&dialect.null_tokens);

    let replay: Box<dyn Read + Send> = Box::new(Cursor::new(sample).chain(reader));
    let mut rows = RowReader::new(replay, &dialect, layout.fields, file)?;
    let mut sample_rows: Vec<StringRecord> = Vec::new();
    let mut lines: Vec<u64> = Vec::new();
    while sample_rows.len() <= opts.infer_rows && rows.next()? {
        sample_rows.push(rows.record.clone());
        lines.push(rows.line);
    }
    let Some(first) = sample_rows.first() else {
        return Err(ReadError::Empty {
            file: file.to_owned(),
        });
    };
    dialect.has_header = opts
        .has_header
        .unwrap_or_else(|| detect_header(first, &sample_rows[1..], &nulls));
    let data_start = usize::from(dialect.has_header);
    if sample_rows.len() == data_start {
        return Err(ReadError::HeaderOnly {
            file: file.to_owned(),
            line: lines[0],
        });
    }
    let names = column_names(
        file,
        dialect.has_header.then_some(first),
        layout.fields,
        opts,
    )?;

    let mut evidence = vec![ColumnEvidence::default(); layout.fields];
    let data = &sample_rows[data_start..];
    let data_lines = &lines[data_start..];
    for (record, &line) in data.iter().zip(data_lines) {
        for (column, raw) in evidence.iter_mut().zip(record.iter()) {
            let value = raw.trim();
            if !nulls.is_null(value) {
                column.observe(value, line);
            }
        }
    }
    let mut kinds: Vec<ColumnKind> = evidence.iter().map(ColumnEvidence::kind).collect();
    for (name, data_type) in &opts.column_types {
        let Some(index) = names.iter().position(|candidate| candidate == name) else {
            return Err(ReadError::Columns {
                file: file.to_owned(),
                detail: format!(
                    "column_types names `{name}`, which is not a column (columns: {})",
                    names.join(", ")
                ),
            });
        };
        kinds[index] =
            ColumnKind::from_data_type(data_type).ok_or_else(|| ReadError::Unsupported {
                file: file.to_owned(),
                detail: format!(
                    "column `{name}`: CSV columns can be Boolean, Int64, Float64, Date32, \
                 Timestamp(Microsecond, None) or Utf8, not {data_type}"
                ),
            })?;
    }
    for (column, name) in evidence.iter().zip(&names) {
        // NaN makes an otherwise numeric column text; only a declared type says so.
        let declared = opts
            .column_types
            .iter()
            .any(|(declared, _)| declared == name);
        if declared {
            continue;
        }
        if let Some((line, value)) = column.non_finite_in_numbers() {
            return Err(ReadError::NonFinite {
                file: file.to_owned(),
                line: *line,
                column: name.clone(),
                value: value.clone(),
            });
        }
    }
    let fields: Vec<Field> = names
        .iter()
        .zip(&kinds)
        .map(|(name, kind)| Field::new(name, kind.data_type(), true))
        .collect();
    Ok(CsvScan {
        file: file.to_owned(),
        location,
        dialect,
        schema: Arc::new(Schema::new(fields)),
        kinds,
        batch_rows: opts.batch_rows.max(1),
        inferred_from: data.len(),
    })
}

/// Reads the first `SAMPLE_BYTES`, more while the sample holds fewer than
/// `SAMPLE_MIN_LINES` lines. Returns whether the whole input was read.
/// A failure carries the line it happened on.
fn read_sample(reader: &mut dyn Read) -> Result<(Vec<u8>, bool), (io::Error, u64)> {
    let mut sample = Vec::with_capacity(SAMPLE_BYTES);
    let mut limit = SAMPLE_BYTES;
    loop {
        let wanted = (limit - sample.len()) as u64;
        let got = match Read::take(&mut *reader, wanted).read_to_end(&mut sample) {
            Ok(got) => got,
            Err(error) => {
                let line = sample.iter().filter(|&&byte| byte == b'\n').count() as u64 + 1;
                return Err((error, line));
            }
        };
        if got < wanted as usize {
            return Ok((sample, true));
        }
        let lines = sample.iter().filter(|&&byte| byte == b'\n').count();
        if lines >= SAMPLE_MIN_LINES || limit >= MAX_SAMPLE_BYTES {
            return Ok((sample, false));
        }
        limit = (limit * 2).min(MAX_SAMPLE_BYTES);
    }
}

/// Column names from the header (trimmed; blanks become `column_i`), from
/// `column_names`, or `column_1..n`; duplicates get `_2`, `_3` suffixes.
fn column_names(
    file: &str,
    header: Option<&StringRecord>,
    columns: usize,
    opts: &ReadOptions,
) -> Result<Vec<String>, ReadError> {
    let mut names: Vec<String> = match (&opts.column_names, header) {
        (Some(given), _) if given.len() != columns => {
            return Err(ReadError::Columns {
                file: file.to_owned(),
                detail: format!(
                    "column_names gives {} names but the table has {columns} columns",
                    given.len()
                ),
            });
        }
        (Some(given), _) => given.iter().map(|name| name.trim().to_owned()).collect(),
        (None, Some(header)) => header.iter().map(|name| name.trim().to_owned()).collect(),
        (None, None) => vec![String::new(); columns],
    };
    for (index, name) in names.iter_mut().enumerate() {
        if name.is_empty() {
            *name = format!("column_{}", index + 1);
        }
    }
    let mut taken = std::collections::HashSet::new();
    for name in &mut names {
        if !taken.insert(name.clone()) {
            let mut suffix = 2;
            while taken.contains(&format!("{name}_{suffix}")) {
                suffix += 1;
            }
            *name = format!("{name}_{suffix}");
            taken.insert(name.clone());
        }
    }
    Ok(names)
}

/// Rows of the table proper: preamble skipped, blank lines skipped, each row
/// checked for its field count and UTF-8.
struct RowReader<R: Read> {
    reader: csv::Reader<R>,
    record: StringRecord,
    /// 1-based physical line where `record` starts.
    line: u64,
    fields: usize,
    delimiter: u8,
    file: String,
}

impl<R: Read> RowReader<R> {
    fn new(
        input: R,
        dialect: &CsvDialect,
        fields: usize,
        file: &str,
    ) -> Result<RowReader<R>, ReadError> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(dialect.delimiter)
            .quote(dialect.quote)
            .double_quote(true)
            .buffer_capacity(PARSE_BUFFER_BYTES)
            .from_reader(input);
        let mut rows = RowReader {
            reader,
            record: StringRecord::new(),
            line: 0,
            fields,
            delimiter: dialect.delimiter,
            file: file.to_owned(),
        };
        let mut skipped = 0;
        let mut bytes = ByteRecord::new();
        while skipped < dialect.preamble_lines {
            match rows.reader.read_byte_record(&mut bytes) {
                Ok(true) if is_blank_bytes(&bytes) => {}
                Ok(true) => skipped += 1,
                Ok(false) => break,
                Err(error) => return Err(rows.csv_error(error)),
            }
        }
        Ok(rows)
    }

    /// Loads the next row into `self.record`; false at the end.
    fn next(&mut self) -> Result<bool, ReadError> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return Ok(false),
                Ok(true) => {}
                Err(error) => return Err(self.csv_error(error)),
            }
            let before = self
                .record
                .position()
                .map_or(self.line + 1, csv::Position::line);
            let after = self.reader.position().line();
            self.line = if after <= before + 1 {
                before
            } else {
                let inside = self
                    .record
                    .as_slice()
                    .bytes()
                    .filter(|&byte| byte == b'\n')
                    .count();
                start_line(before, after, inside as u64)
            };
            let found = self.record.len();
            if found == self.fields {
                return Ok(true);
            }
            let blank = found == 1 && self.record[0].trim().is_empty();
            if !blank {
                return Err(ReadError::Ragged {
                    file: self.file.clone(),
                    line: self.line,
                    found,
                    expected: self.fields,
                    delimiter: char::from(self.delimiter),
                });
            }
        }
    }

    fn csv_error(&self, error: csv::Error) -> ReadError {
        let before = error.position().map_or(self.line + 1, csv::Position::line);
        let line = start_line(before, self.reader.position().line(), 0);
        match error.into_kind() {
            csv::ErrorKind::Utf8 { err, .. } => ReadError::Undecodable {
                file: self.file.clone(),
                line,
                column: err.field() + 1,
            },
            csv::ErrorKind::Io(source) => ReadError::Io {
                file: self.file.clone(),
                line,
                source,
            },
            other => ReadError::Csv {
                file: self.file.clone(),
                line,
                detail: format!("{other:?}"),
            },
        }
    }
}

/// The physical line a record starts on. The csv crate positions a record
/// where the previous one ended, before any blank lines it skips; so count
/// back from where the record ended (`after`, one line past its terminator)
/// over the newlines inside its quoted fields. A last record without a
/// terminator ends on its own line, hence the floor at `before`.
fn start_line(before: u64, after: u64, newlines_inside: u64) -> u64 {
    after.saturating_sub(1 + newlines_inside).max(before)
}

/// One column's values under construction.
enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Date32(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Utf8(StringBuilder),
}

impl ColumnBuilder {
    fn new(kind: ColumnKind, rows: usize) -> ColumnBuilder {
        match kind {
            ColumnKind::Boolean => ColumnBuilder::Boolean(BooleanBuilder::with_capacity(rows)),
            ColumnKind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            ColumnKind::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            ColumnKind::Date32 => ColumnBuilder::Date32(Date32Builder::with_capacity(rows)),
            ColumnKind::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows))
            }
            ColumnKind::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
        }
    }

    fn append_null(&mut self) {
        match self {
            ColumnBuilder::Boolean(builder) => builder.append_null(),
            ColumnBuilder::Int64(builder) => builder.append_null(),
            ColumnBuilder::Float64(builder) => builder.append_null(),
            ColumnBuilder::Date32(builder) => builder.append_null(),
            ColumnBuilder::Timestamp(builder) => builder.append_null(),
            ColumnBuilder::Utf8(builder) => builder.append_null(),
        }
    }

    /// Appends a non-missing value; false when it does not parse.
    #[inline]
    fn append(&mut self, raw: &str, trimmed: &str, trim: bool) -> bool {
        match self {
            ColumnBuilder::Utf8(builder) => {
                builder.append_value(if trim { trimmed } else { raw });
                return true;
            }
            ColumnBuilder::Int64(builder) => {
                parse_int(trimmed).map(|value| builder.append_value(value))
            }
            ColumnBuilder::Float64(builder) => {
                parse_float(trimmed).map(|value| builder.append_value(value))
            }
            ColumnBuilder::Boolean(builder) => {
                parse_bool(trimmed).map(|value| builder.append_value(value))
            }
            ColumnBuilder::Date32(builder) => {
                parse_date(trimmed).map(|value| builder.append_value(value))
            }
            ColumnBuilder::Timestamp(builder) => parse_timestamp(trimmed)
                .or_else(|| parse_date(trimmed).map(|days| i64::from(days) * 86_400_000_000))
                .map(|value| builder.append_value(value)),
        }
        .is_some()
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Int64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Float64(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Date32(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Timestamp(builder) => Arc::new(builder.finish()),
            ColumnBuilder::Utf8(builder) => Arc::new(builder.finish()),
        }
    }
}

impl CsvScan {
    /// Parses the whole file, handing each batch to `emit`, which returns
    /// false to stop early (the consumer went away). Blocking.
    fn scan(&self, mut emit: impl FnMut(RecordBatch) -> bool) -> Result<(), ReadError> {
        let (raw, fetch) = self.location.open_raw(&self.file)?;
        if let Some(fetch) = fetch {
            tokio::runtime::Handle::current().spawn(fetch);
        }
        let (input, _) = decompressed(raw).map_err(|source| ReadError::Io {
            file: self.file.clone(),
            line: 0,
            source,
        })?;
        let mut rows = RowReader::new(input, &self.dialect, self.kinds.len(), &self.file)?;
        if self.dialect.has_header {
            rows.next()?;
        }
        let nulls = NullTokens::new(&self.dialect.null_tokens);
        let trim = self.dialect.trim;
        let mut columns: Vec<ColumnBuilder> = self
            .kinds
            .iter()
            .map(|&kind| ColumnBuilder::new(kind, self.batch_rows))
            .collect();
        let mut buffered = 0;
        while rows.next()? {
            for (index, (raw, column)) in rows.record.iter().zip(columns.iter_mut()).enumerate() {
                let trimmed = raw.trim();
                if nulls.is_null(trimmed) {
                    column.append_null();
                } else if !column.append(raw, trimmed, trim) {
                    return Err(self.conflict(rows.line, index, trimmed));
                }
            }
            buffered += 1;
            if buffered == self.batch_rows {
                buffered = 0;
                if !emit(self.batch(&mut columns)?) {
                    return Ok(());
                }
            }
        }
        if buffered > 0 {
            emit(self.batch(&mut columns)?);
        }
        Ok(())
    }

    fn batch(&self, columns: &mut [ColumnBuilder]) -> Result<RecordBatch, ReadError> {
        let arrays = columns.iter_mut().map(ColumnBuilder::finish).collect();
        RecordBatch::try_new(Arc::clone(&self.schema), arrays).map_err(|error| {
            ReadError::DataFusion {
                file: self.file.clone(),
                source: error.into(),
            }
        })
    }

    fn conflict(&self, line: u64, index: usize, value: &str) -> ReadError {
        let column = self.schema.field(index).name().clone();
        let kind = self.kinds[index];
        if matches!(kind, ColumnKind::Int64 | ColumnKind::Float64) && is_non_finite(value) {
            return ReadError::NonFinite {
                file: self.file.clone(),
                line,
                column,
                value: value.to_owned(),
            };
        }
        ReadError::TypeConflict {
            file: self.file.clone(),
            line,
            column,
            value: value.to_owned(),
            expected: kind.data_type().to_string(),
            inferred_from: self.inferred_from,
        }
    }
}

/// The CSV file as one DataFusion partition; each `execute` is a fresh pass.
#[derive(Debug)]
pub(crate) struct CsvPartition {
    scan: Arc<CsvScan>,
}

impl CsvPartition {
    pub(crate) fn new(scan: Arc<CsvScan>) -> CsvPartition {
        CsvPartition { scan }
    }
}

impl PartitionStream for CsvPartition {
    fn schema(&self) -> &SchemaRef {
        &self.scan.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder =
            RecordBatchReceiverStreamBuilder::new(Arc::clone(&self.scan.schema), BATCHES_IN_FLIGHT);
        let tx = builder.tx();
        let scan = Arc::clone(&self.scan);
        builder.spawn_blocking(move || {
            // Errors travel in order after the batches before them; a closed
            // channel means the consumer stopped, which is not an error.
            let result = scan.scan(|batch| tx.blocking_send(Ok(batch)).is_ok());
            if let Err(error) = result {
                let _ = tx.blocking_send(Err(error.into_datafusion()));
            }
            Ok(())
        });
        builder.build()
    }
}
