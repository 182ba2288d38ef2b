//! The output writer: one Parquet part per shard attempt, then the manifest and `_SUCCESS`.
//!
//! Layout of a finished run:
//!
//! ```text
//! <root>/<table>/part-00000.parquet   one part per shard
//! <root>/_manifest.json
//! <root>/_SUCCESS                     written last, empty
//! ```
//!
//! Every file-system call lives in the small functions at the bottom of this
//! file so the writer can move onto `object_store` without touching the logic.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;

/// Marker of a finished run, written after the manifest.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// The run manifest.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// Where the manifest is written before it is renamed into place.
const MANIFEST_TEMP_FILE: &str = "._manifest.json.tmp";
/// Most rows in one Parquet row group (the parquet-rs default, pinned here).
pub const MAX_ROW_GROUP_ROWS: usize = 1024 * 1024;

const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";
const ATTEMPT_PREFIX: &str = ".attempt-";

/// Why writing the output failed; every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The folder holds a finished run and overwriting was not asked for.
    #[error(
        "{} already holds a finished chimera run (it has _SUCCESS); pass --overwrite to replace it or choose another output folder",
        .path.display()
    )]
    AlreadyComplete { path: PathBuf },
    /// A file-system call failed.
    #[error("I/O error on {}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Encoding a Parquet file failed.
    #[error("cannot write Parquet file {}", .path.display())]
    Parquet { path: PathBuf, source: ParquetError },
    /// A manifest could not be serialised or parsed.
    #[error("invalid manifest {}", .path.display())]
    Manifest {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A manifest was written by an incompatible chimera.
    #[error(
        "manifest {} has format {found:?}; this chimera reads {expected:?}",
        .path.display(),
        expected = crate::manifest::MANIFEST_FORMAT
    )]
    UnsupportedManifest { path: PathBuf, found: String },
    /// A table name cannot be used as a folder name inside the output.
    #[error("table name {table:?} cannot be an output folder: {reason}")]
    InvalidTable { table: String, reason: &'static str },
    /// A part listed for commit is not the file that was written.
    #[error(
        "part {} is {found} bytes on disk but {expected} bytes were written",
        .path.display()
    )]
    PartSizeMismatch {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
}

/// What the manifest records about one written part.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PartInfo {
    /// Path relative to the output root, e.g. `adult/part-00000.parquet`.
    pub path: String,
    /// Shard the rows belong to.
    pub shard: u32,
    /// Attempt that wrote the file.
    pub attempt: u32,
    /// Rows in the file.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// SHA-256 hex of the file bytes.
    pub sha256: String,
}

/// An output folder prepared for one run.
#[derive(Debug, Clone)]
pub struct OutputDir {
    root: PathBuf,
    props: WriterProperties,
}

impl OutputDir {
    /// Prepares `root` for a new run, clearing what an earlier chimera run left there.
    ///
    /// A finished run (`_SUCCESS` present) is refused unless `overwrite`. A
    /// finished or unfinished run (a `_manifest.json`) has its parts, manifest
    /// and marker removed; stray `.attempt-*` files in table folders are always
    /// removed. Files chimera did not write are kept.
    pub fn prepare(root: &Path, overwrite: bool) -> Result<OutputDir, OutputError> {
        ensure_dir(root)?;
        let success = root.join(SUCCESS_FILE);
        let manifest_path = root.join(MANIFEST_FILE);
        let finished = path_exists(&success)?;
        if finished && !overwrite {
            return Err(OutputError::AlreadyComplete {
                path: root.to_path_buf(),
            });
        }
        let old_manifest = if path_exists(&manifest_path)? {
            Some(Manifest::load(&manifest_path)?)
        } else {
            None
        };
        if let Some(old) = &old_manifest {
            // Refuse before deleting anything if the manifest names a folder outside root.
            for table in old.tables.keys() {
                validate_table_name(table)?;
            }
        }

        // Marker first, manifest last: a clean-up cut short is never read as a
        // finished run and can be redone from the manifest.
        if finished {
            tracing::info!(root = %root.display(), "overwriting a finished run");
            remove_file_if_exists(&success)?;
        }
        if let Some(old) = &old_manifest {
            if !finished {
                tracing::info!(root = %root.display(), "clearing an unfinished run");
            }
            for table in old.tables.keys() {
                clear_table_dir(&root.join(table))?;
            }
        }
        for dir in list_subdirs(root)? {
            remove_attempt_files(&dir)?;
        }
        remove_file_if_exists(&root.join(MANIFEST_TEMP_FILE))?;
        if old_manifest.is_some() {
            remove_file_if_exists(&manifest_path)?;
        }

        Ok(OutputDir {
            root: root.to_path_buf(),
            props: writer_properties(),
        })
    }

    /// Writes one shard's rows as `<table>/part-<shard:05>.parquet` via an attempt-scoped temp file.
    #[tracing::instrument(level = "debug", skip(self, schema, batches), fields(rows))]
    pub fn write_part(
        &self,
        table: &str,
        shard: u32,
        attempt: u32,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<PartInfo, OutputError> {
        validate_table_name(table)?;
        let dir = self.root.join(table);
        ensure_dir(&dir)?;
        let part_name = part_file_name(shard);
        let final_path = dir.join(&part_name);
        let temp_path = dir.join(attempt_file_name(attempt, shard));

        let written = encode_parquet(&temp_path, schema, batches, &self.props)
            .and_then(|written| rename_durably(&temp_path, &final_path).map(|()| written));
        let written = match written {
            Ok(written) => written,
            Err(err) => {
                if let Err(cleanup) = remove_file_if_exists(&temp_path) {
                    tracing::warn!(error = %cleanup, "could not remove a failed attempt's temp file");
                }
                return Err(err);
            }
        };
        tracing::Span::current().record("rows", written.rows);
        tracing::debug!(bytes = written.bytes, "part written");
        Ok(PartInfo {
            path: format!("{table}/{part_name}"),
            shard,
            attempt,
            rows: written.rows,
            bytes: written.bytes,
            sha256: written.sha256,
        })
    }

    /// Writes `_manifest.json`, then the empty `_SUCCESS` marker, last.
    ///
    /// Checks first that every listed part is on disk with the recorded size,
    /// so a run is never marked complete over a missing or truncated part.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), OutputError> {
        for part in manifest.tables.values().flat_map(|t| &t.parts) {
            let path = self.root.join(&part.path);
            let found = file_len(&path)?;
            if found != part.bytes {
                return Err(OutputError::PartSizeMismatch {
                    path,
                    expected: part.bytes,
                    found,
                });
            }
        }
        let manifest_path = self.root.join(MANIFEST_FILE);
        let mut json =
            serde_json::to_vec_pretty(manifest).map_err(|source| OutputError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        json.push(b'\n');
        write_file_durably(&self.root.join(MANIFEST_TEMP_FILE), &json)?;
        rename_durably(&self.root.join(MANIFEST_TEMP_FILE), &manifest_path)?;
        write_file_durably(&self.root.join(SUCCESS_FILE), &[])?;
        tracing::info!(root = %self.root.display(), rows = manifest.total_rows(), "run committed");
        Ok(())
    }

    /// The output folder.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Parquet settings shared by every part, built once per run.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("chimera {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Size, digest and row count of an encoded part.
struct WrittenPart {
    rows: u64,
    bytes: u64,
    sha256: String,
}

/// Encodes `batches` into a Parquet file at `path`, fsynced, hashing the bytes as they are written.
fn encode_parquet(
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    props: &WriterProperties,
) -> Result<WrittenPart, OutputError> {
    let parquet_err = |source| OutputError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let sink = DigestWriter::new(BufWriter::new(create_file(path)?));
    let mut writer =
        ArrowWriter::try_new(sink, schema.clone(), Some(props.clone())).map_err(parquet_err)?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(batch).map_err(parquet_err)?;
        rows += batch.num_rows() as u64;
    }
    // `into_inner` writes the footer and hands the sink back.
    let sink = writer.into_inner().map_err(parquet_err)?;
    let (buffered, hasher, bytes) = sink.into_parts();
    let file = buffered
        .into_inner()
        .map_err(|e| io_error(path)(e.into_error()))?;
    sync_file(&file, path)?;
    Ok(WrittenPart {
        rows,
        bytes,
        sha256: format!("{:x}", hasher.finalize()),
    })
}

/// A writer that hashes and counts the bytes it passes on, so a part is never read back to digest it.
struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> DigestWriter<W> {
    fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn into_parts(self) -> (W, Sha256, u64) {
        (self.inner, self.hasher, self.bytes)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Table names become folder names, so they must be one plain path component
/// that cannot collide with chimera's own `_`/`.` files.
fn validate_table_name(table: &str) -> Result<(), OutputError> {
    let reason = if table.is_empty() {
        Some("it is empty")
    } else if table.contains(['/', '\\', '\0']) {
        Some("it contains a path separator or NUL")
    } else if table.starts_with('.') || table.starts_with('_') {
        Some("names starting with '.' or '_' are reserved for chimera's own files")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(OutputError::InvalidTable {
            table: table.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

fn part_file_name(shard: u32) -> String {
    format!("{PART_PREFIX}{shard:05}{PART_SUFFIX}")
}

fn attempt_file_name(attempt: u32, shard: u32) -> String {
    format!("{ATTEMPT_PREFIX}{attempt}-{}", part_file_name(shard))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `part-<digits>.parquet`
fn is_part_file_name(name: &str) -> bool {
    name.strip_prefix(PART_PREFIX)
        .and_then(|rest| rest.strip_suffix(PART_SUFFIX))
        .is_some_and(all_digits)
}

/// `.attempt-<digits>-part-<digits>.parquet`
fn is_attempt_file_name(name: &str) -> bool {
    name.strip_prefix(ATTEMPT_PREFIX)
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(attempt, part)| all_digits(attempt) && is_part_file_name(part))
}

/// Removes chimera's parts and temp files from a table folder, and the folder once empty.
fn clear_table_dir(dir: &Path) -> Result<(), OutputError> {
    for name in list_file_names(dir)? {
        if is_part_file_name(&name) || is_attempt_file_name(&name) {
            remove_file_if_exists(&dir.join(name))?;
        }
    }
    if !remove_dir_if_empty(dir)? {
        tracing::warn!(dir = %dir.display(), "kept a table folder that holds files chimera did not write");
    }
    Ok(())
}

fn remove_attempt_files(dir: &Path) -> Result<(), OutputError> {
    for name in list_file_names(dir)? {
        if is_attempt_file_name(&name) {
            remove_file_if_exists(&dir.join(name))?;
        }
    }
    Ok(())
}

// ---- file-system calls; the only place that touches `std::fs` ----

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn ensure_dir(path: &Path) -> Result<(), OutputError> {
    fs::create_dir_all(path).map_err(io_error(path))
}

fn path_exists(path: &Path) -> Result<bool, OutputError> {
    path.try_exists().map_err(io_error(path))
}

fn file_len(path: &Path) -> Result<u64, OutputError> {
    Ok(fs::metadata(path).map_err(io_error(path))?.len())
}

/// Reads a whole file (used for the manifest).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, OutputError> {
    fs::read(path).map_err(io_error(path))
}

fn create_file(path: &Path) -> Result<File, OutputError> {
    File::create(path).map_err(io_error(path))
}

fn sync_file(file: &File, path: &Path) -> Result<(), OutputError> {
    file.sync_all().map_err(io_error(path))
}

/// Writes `bytes` to `path` and fsyncs the file and its folder.
fn write_file_durably(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut file = create_file(path)?;
    file.write_all(bytes).map_err(io_error(path))?;
    sync_file(&file, path)?;
    sync_parent_dir(path)
}

/// Renames `from` over `to` and fsyncs the folder so the rename survives a crash.
fn rename_durably(from: &Path, to: &Path) -> Result<(), OutputError> {
    fs::rename(from, to).map_err(io_error(to))?;
    sync_parent_dir(to)
}

fn sync_parent_dir(path: &Path) -> Result<(), OutputError> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn remove_file_if_exists(path: &Path) -> Result<(), OutputError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Removes `dir` if it is empty or missing; returns false if it still holds entries.
fn remove_dir_if_empty(dir: &Path) -> Result<bool, OutputError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) => Err(io_error(dir)(e)),
    }
}

/// Names of the plain files directly in `dir` (none if `dir` is missing).
fn list_file_names(dir: &Path) -> Result<Vec<String>, OutputError> {
    Ok(list_entries(dir)?
        .into_iter()
        .filter(|(_, kind)| kind.is_file())
        .map(|(name, _)| name)
        .collect())
}

/// Real folders directly in `dir`; symlinks are not followed.
fn list_subdirs(dir: &Path) -> Result<Vec<PathBuf>, OutputError> {
    Ok(list_entries(dir)?
        .into_iter()
        .filter(|(_, kind)| kind.is_dir())
        .map(|(name, _)| dir.join(name))
        .collect())
}

fn list_entries(dir: &Path) -> Result<Vec<(String, fs::FileType)>, OutputError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        let kind = entry.file_type().map_err(io_error(&entry.path()))?;
        // Names that are not UTF-8 cannot be chimera's.
        if let Ok(name) = entry.file_name().into_string() {
            out.push((name, kind));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::compute::concat_batches;
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;
    use crate::manifest::{ManifestPrivacy, ManifestTable, PrivacyMode};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("active", DataType::Boolean, true),
            Field::new("born", DataType::Date32, true),
            Field::new(
                "seen_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]))
    }

    /// `n` rows starting at id `start`, with a null in every nullable column every third row.
    fn batch(
        schema: &SchemaRef,
        start: i64,
        n: i64,
    ) -> Result<RecordBatch, arrow::error::ArrowError> {
        let ids: Vec<i64> = (start..start + n).collect();
        let some = |i: &i64| i % 3 != 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from_iter(
                ids.iter().map(|i| some(i).then_some(*i as f64 * 0.5)),
            )),
            Arc::new(StringArray::from_iter(
                ids.iter()
                    .map(|i| some(i).then(|| format!("name-{}", i % 4))),
            )),
            Arc::new(BooleanArray::from_iter(
                ids.iter().map(|i| some(i).then_some(i % 2 == 0)),
            )),
            Arc::new(Date32Array::from_iter(
                ids.iter().map(|i| some(i).then_some(18_000 + *i as i32)),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter(
                    ids.iter()
                        .map(|i| some(i).then_some(1_700_000_000_000_000 + i * 1_000_003)),
                )
                .with_timezone("UTC"),
            ),
        ];
        RecordBatch::try_new(schema.clone(), columns)
    }

    fn read_back(path: &Path) -> Result<(SchemaRef, Vec<RecordBatch>), Box<dyn std::error::Error>> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path)?)?;
        let schema = builder.schema().clone();
        let batches = builder.build()?.collect::<Result<Vec<_>, _>>()?;
        Ok((schema, batches))
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    fn names_in(dir: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn manifest_for(parts: Vec<PartInfo>, table: &str) -> Manifest {
        let mut manifest = Manifest::new(
            "cd".repeat(32),
            7,
            ManifestPrivacy {
                mode: PrivacyMode::None,
                epsilon: None,
                delta: None,
                notes: vec![],
            },
            100,
        );
        let mut t =
            ManifestTable::new(schema().fields().iter().map(|f| f.name().clone()).collect());
        for p in parts {
            t.push_part(p);
        }
        manifest.tables.insert(table.to_string(), t);
        manifest
    }

    /// A finished run with one table `adult` of two parts.
    fn finished_run(root: &Path) -> Result<Manifest, Box<dyn std::error::Error>> {
        let out = OutputDir::prepare(root, false)?;
        let schema = schema();
        let p0 = out.write_part("adult", 0, 0, &schema, &[batch(&schema, 0, 10)?])?;
        let p1 = out.write_part("adult", 1, 0, &schema, &[batch(&schema, 10, 10)?])?;
        let manifest = manifest_for(vec![p0, p1], "adult");
        out.commit(&manifest)?;
        Ok(manifest)
    }

    #[test]
    fn parts_round_trip_with_nulls_and_match_digest() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        let shard0 = vec![batch(&schema, 0, 50)?, batch(&schema, 50, 25)?];
        let shard1 = vec![batch(&schema, 1000, 40)?];

        let p0 = out.write_part("adult", 0, 3, &schema, &shard0)?;
        let p1 = out.write_part("adult", 1, 0, &schema, &shard1)?;

        assert_eq!(p0.path, "adult/part-00000.parquet");
        assert_eq!(p1.path, "adult/part-00001.parquet");
        assert_eq!((p0.shard, p0.attempt, p0.rows), (0, 3, 75));
        assert_eq!((p1.shard, p1.attempt, p1.rows), (1, 0, 40));

        for (part, expected) in [(&p0, &shard0), (&p1, &shard1)] {
            let path = dir.path().join(&part.path);
            let bytes = fs::read(&path)?;
            assert_eq!(part.bytes, bytes.len() as u64);
            assert_eq!(part.sha256, sha256_hex(&bytes));
            assert_eq!(part.sha256.len(), 64);

            let (read_schema, read) = read_back(&path)?;
            assert_eq!(read_schema, schema);
            let got = concat_batches(&schema, &read)?;
            let want = concat_batches(&schema, expected.iter())?;
            assert_eq!(got, want);
            assert!(got.column(1).null_count() > 0);
        }
        assert_ne!(p0.sha256, p1.sha256);
        Ok(())
    }

    #[test]
    fn parts_use_snappy_dictionary_and_statistics() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        let part = out.write_part("t", 0, 0, &schema, &[batch(&schema, 0, 30)?])?;
        let reader = SerializedFileReader::new(File::open(dir.path().join(&part.path))?)?;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 30);
        assert!(
            meta.file_metadata()
                .created_by()
                .is_some_and(|s| s.starts_with("chimera "))
        );
        let row_group = meta.row_group(0);
        for column in row_group.columns() {
            assert_eq!(column.compression(), Compression::SNAPPY);
            assert!(column.statistics().is_some(), "{:?}", column.column_path());
        }
        // The low-cardinality name column is dictionary encoded.
        let name = row_group.column(2);
        assert!(name.dictionary_page_offset().is_some());
        assert_eq!(
            out.props.max_row_group_row_count(),
            Some(MAX_ROW_GROUP_ROWS)
        );
        Ok(())
    }

    #[test]
    fn no_attempt_file_remains_after_write_or_failure() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        out.write_part("adult", 4, 2, &schema, &[batch(&schema, 0, 5)?])?;
        assert_eq!(names_in(&dir.path().join("adult"))?, ["part-00004.parquet"]);

        // A batch whose schema differs from the declared one fails the write.
        let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let bad = RecordBatch::try_new(other, vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
        let err = out.write_part("adult", 5, 0, &schema, &[bad]).err();
        assert!(
            matches!(&err, Some(OutputError::Parquet { path, .. }) if path.ends_with(".attempt-0-part-00005.parquet")),
            "{err:?}"
        );
        assert_eq!(names_in(&dir.path().join("adult"))?, ["part-00004.parquet"]);
        Ok(())
    }

    #[test]
    fn zero_batches_make_a_valid_empty_part() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        let part = out.write_part("empty", 0, 0, &schema, &[])?;
        assert_eq!(part.rows, 0);
        let path = dir.path().join(&part.path);
        assert_eq!(part.bytes, fs::metadata(&path)?.len());
        let (read_schema, batches) = read_back(&path)?;
        assert_eq!(read_schema, schema);
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
        Ok(())
    }

    #[test]
    fn commit_writes_manifest_then_success() -> TestResult {
        let dir = tempfile::tempdir()?;
        let manifest = finished_run(dir.path())?;
        assert_eq!(
            names_in(dir.path())?,
            ["_SUCCESS", "_manifest.json", "adult"]
        );
        assert_eq!(fs::metadata(dir.path().join(SUCCESS_FILE))?.len(), 0);
        let loaded = Manifest::load(&dir.path().join(MANIFEST_FILE))?;
        assert_eq!(loaded, manifest);
        assert_eq!(loaded.total_rows(), 20);
        let text = fs::read_to_string(dir.path().join(MANIFEST_FILE))?;
        assert!(
            text.contains("\n  \"format\""),
            "pretty JSON expected: {text}"
        );
        Ok(())
    }

    #[test]
    fn commit_refuses_missing_or_wrong_size_parts() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        let part = out.write_part("adult", 0, 0, &schema, &[batch(&schema, 0, 5)?])?;

        let mut wrong = part.clone();
        wrong.bytes += 1;
        let err = out.commit(&manifest_for(vec![wrong], "adult")).err();
        assert!(
            matches!(err, Some(OutputError::PartSizeMismatch { .. })),
            "{err:?}"
        );

        let mut missing = part;
        missing.path = "adult/part-00009.parquet".into();
        let err = out.commit(&manifest_for(vec![missing], "adult")).err();
        assert!(matches!(err, Some(OutputError::Io { .. })), "{err:?}");

        assert!(!dir.path().join(SUCCESS_FILE).exists());
        assert!(!dir.path().join(MANIFEST_FILE).exists());
        Ok(())
    }

    #[test]
    fn finished_run_is_refused_without_overwrite() -> TestResult {
        let dir = tempfile::tempdir()?;
        finished_run(dir.path())?;
        let err = OutputDir::prepare(dir.path(), false).err();
        assert!(
            matches!(&err, Some(OutputError::AlreadyComplete { path }) if path == dir.path()),
            "{err:?}"
        );
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("--overwrite"), "{message}");
        // Nothing was touched.
        assert_eq!(
            names_in(dir.path())?,
            ["_SUCCESS", "_manifest.json", "adult"]
        );
        assert_eq!(names_in(&dir.path().join("adult"))?.len(), 2);
        Ok(())
    }

    #[test]
    fn overwrite_clears_only_chimera_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        finished_run(dir.path())?;
        let root = dir.path();
        fs::write(root.join("notes.txt"), "mine")?;
        fs::create_dir(root.join("other"))?;
        fs::write(
            root.join("other/part-00000.parquet"),
            "not chimera's folder",
        )?;
        // A user's file inside a chimera table folder survives, and so does the folder.
        fs::write(root.join("adult/README"), "keep")?;
        fs::write(root.join("adult/.attempt-7-part-00003.parquet"), "stale")?;

        let out = OutputDir::prepare(root, true)?;
        assert_eq!(out.root(), root);
        assert_eq!(names_in(root)?, ["adult", "notes.txt", "other"]);
        assert_eq!(names_in(&root.join("adult"))?, ["README"]);
        assert_eq!(fs::read_to_string(root.join("notes.txt"))?, "mine");
        assert_eq!(names_in(&root.join("other"))?, ["part-00000.parquet"]);

        // The folder is usable for a new run afterwards.
        finished_run_again(&out)?;
        assert!(root.join(SUCCESS_FILE).exists());
        Ok(())
    }

    fn finished_run_again(out: &OutputDir) -> TestResult {
        let schema = schema();
        let p = out.write_part("adult", 0, 1, &schema, &[batch(&schema, 0, 3)?])?;
        out.commit(&manifest_for(vec![p], "adult"))?;
        Ok(())
    }

    #[test]
    fn overwrite_removes_table_folders_left_empty() -> TestResult {
        let dir = tempfile::tempdir()?;
        finished_run(dir.path())?;
        OutputDir::prepare(dir.path(), true)?;
        assert!(names_in(dir.path())?.is_empty());
        Ok(())
    }

    #[test]
    fn unfinished_run_is_cleared_without_overwrite() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        finished_run(root)?;
        // Crash between the manifest and the marker.
        fs::remove_file(root.join(SUCCESS_FILE))?;
        fs::write(root.join("notes.txt"), "mine")?;

        OutputDir::prepare(root, false)?;
        assert_eq!(names_in(root)?, ["notes.txt"]);
        Ok(())
    }

    #[test]
    fn stray_attempt_files_are_removed_even_without_a_manifest() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        fs::create_dir(root.join("adult"))?;
        fs::write(root.join("adult/.attempt-2-part-00001.parquet"), "partial")?;
        fs::write(root.join("adult/.attempt-x-part-00001.parquet"), "not ours")?;
        fs::write(root.join(MANIFEST_TEMP_FILE), "{")?;

        OutputDir::prepare(root, false)?;
        assert_eq!(names_in(root)?, ["adult"]);
        assert_eq!(
            names_in(&root.join("adult"))?,
            [".attempt-x-part-00001.parquet"]
        );
        Ok(())
    }

    #[test]
    fn manifest_naming_a_folder_outside_root_deletes_nothing() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("out");
        fs::create_dir_all(dir.path().join("victim"))?;
        fs::write(dir.path().join("victim/part-00000.parquet"), "precious")?;
        fs::create_dir_all(&root)?;
        let manifest = manifest_for(vec![], "../victim");
        fs::write(root.join(MANIFEST_FILE), serde_json::to_vec(&manifest)?)?;
        fs::write(root.join(SUCCESS_FILE), "")?;

        let err = OutputDir::prepare(&root, true).err();
        assert!(
            matches!(err, Some(OutputError::InvalidTable { .. })),
            "{err:?}"
        );
        assert!(dir.path().join("victim/part-00000.parquet").exists());
        assert!(root.join(SUCCESS_FILE).exists());
        Ok(())
    }

    #[test]
    fn prepare_creates_missing_root() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("a/b/out");
        let out = OutputDir::prepare(&root, false)?;
        assert!(root.is_dir());
        assert_eq!(out.root(), root);
        Ok(())
    }

    #[test]
    fn table_names_must_be_plain_folder_names() -> TestResult {
        let dir = tempfile::tempdir()?;
        let out = OutputDir::prepare(dir.path(), false)?;
        let schema = schema();
        for bad in ["", "..", "../x", "a/b", "a\\b", "_SUCCESS", ".hidden"] {
            let err = out.write_part(bad, 0, 0, &schema, &[]).err();
            assert!(
                matches!(err, Some(OutputError::InvalidTable { .. })),
                "{bad:?}: {err:?}"
            );
        }
        assert!(names_in(dir.path())?.is_empty());
        out.write_part("admissions-2024 v2", 0, 0, &schema, &[])?;
        Ok(())
    }

    #[test]
    fn file_name_patterns() {
        assert_eq!(part_file_name(7), "part-00007.parquet");
        assert_eq!(part_file_name(123_456), "part-123456.parquet");
        assert_eq!(attempt_file_name(3, 7), ".attempt-3-part-00007.parquet");
        assert!(is_part_file_name("part-00007.parquet"));
        assert!(!is_part_file_name("part-.parquet"));
        assert!(!is_part_file_name("part-0000a.parquet"));
        assert!(!is_part_file_name("part-00007.parquet.bak"));
        assert!(is_attempt_file_name(".attempt-3-part-00007.parquet"));
        assert!(!is_attempt_file_name(".attempt--part-00007.parquet"));
        assert!(!is_attempt_file_name(".attempt-3-notes.txt"));
    }
}
