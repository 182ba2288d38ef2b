//! The output writer: attempt-scoped Parquet uploads, commits, the manifest, and `_SUCCESS` last.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sha2::{Digest, Sha256};

use crate::error::StorageError;
use crate::location::Location;
use crate::manifest::{Manifest, PartInfo};

/// Marker of a finished run, written after the manifest.
pub const SUCCESS_FILE: &str = "_SUCCESS";
/// The run manifest: progress while the run goes, the final manifest once finished.
pub const MANIFEST_FILE: &str = "_manifest.json";
/// The model the rows were sampled from.
pub const MODEL_FILE: &str = "_model.json";
/// Folder of attempt-scoped uploads, hidden from dataset readers by its `_`.
pub const ATTEMPTS_DIR: &str = "_attempts";
/// Most rows in one Parquet row group (the parquet-rs default, pinned here).
pub const MAX_ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Parts larger than this are uploaded in pieces rather than with one put.
pub const MULTIPART_THRESHOLD_BYTES: usize = 8 * 1024 * 1024;
/// Size of each multipart piece (S3 wants at least 5 MiB for all but the last).
pub const MULTIPART_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Multipart pieces uploaded at once.
const MULTIPART_PIECES_IN_FLIGHT: usize = 4;
/// Part sizes checked at once by `finish`.
const SIZE_CHECKS_IN_FLIGHT: usize = 16;

const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";

/// What an output prefix holds, as far as chimera is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputState {
    /// No chimera files (files of other tools may be there).
    Empty,
    /// A finished run: `_SUCCESS` and its manifest.
    Finished(Manifest),
    /// A run that did not finish: some of a manifest, a model, attempt uploads.
    Unfinished {
        manifest: Option<Manifest>,
        model: Option<Vec<u8>>,
    },
}

/// An output prefix and the Parquet settings every part is written with.
#[derive(Debug, Clone)]
pub struct Output {
    location: Location,
    props: Arc<WriterProperties>,
}

impl Output {
    /// The output at `loc`; nothing is read or written yet.
    pub fn new(loc: Location) -> Output {
        Output {
            location: loc,
            props: Arc::new(writer_properties()),
        }
    }

    /// Where the output lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Looks at `_SUCCESS`, `_manifest.json`, `_model.json` and `_attempts/`.
    pub async fn state(&self) -> Result<OutputState, StorageError> {
        let (success, manifest, model, attempts) = futures::try_join!(
            self.size_of(SUCCESS_FILE),
            self.read_manifest(),
            self.read_optional(MODEL_FILE),
            self.has_attempts(),
        )?;
        if success.is_some() {
            return match manifest {
                Some(m) => Ok(OutputState::Finished(m)),
                None => Err(StorageError::ForeignMarker {
                    location: self.location.display().to_owned(),
                }),
            };
        }
        if manifest.is_none() && model.is_none() && !attempts {
            return Ok(OutputState::Empty);
        }
        Ok(OutputState::Unfinished { manifest, model })
    }

    /// Makes the output ready for a new run: refuses a finished run unless
    /// `overwrite`, and clears what an earlier run left.
    pub async fn prepare(&self, overwrite: bool) -> Result<(), StorageError> {
        match self.state().await? {
            OutputState::Empty => Ok(()),
            OutputState::Finished(_) if !overwrite => Err(StorageError::AlreadyComplete {
                location: self.location.display().to_owned(),
            }),
            OutputState::Finished(_) => {
                tracing::info!(output = %self.location.display(), "overwriting a finished run");
                self.clear().await
            }
            OutputState::Unfinished { .. } => {
                tracing::info!(output = %self.location.display(), "clearing an unfinished run");
                self.clear().await
            }
        }
    }

    /// Removes what a chimera run left: `_SUCCESS` first, the parts, everything under `_attempts/`,
    /// `_model.json`, and `_manifest.json` last (so a clear cut short can be redone from it).
    /// Files chimera did not write stay.
    ///
    /// Every `part-NNNNN.parquet` directly in a folder of a table the manifest
    /// names (or that has attempts) goes, listed or not: a part committed
    /// after the last manifest write must not survive into the next run.
    pub async fn clear(&self) -> Result<(), StorageError> {
        // Read and check the manifest before deleting anything.
        let manifest = self.read_manifest().await?;
        self.delete_if_exists(SUCCESS_FILE).await?;

        let mut tables: BTreeSet<String> = manifest
            .iter()
            .flat_map(|m| m.tables.keys().cloned())
            .collect();
        for table in self.attempt_tables().await? {
            tables.insert(table);
        }
        for table in &tables {
            let listing = self
                .store()
                .list_with_delimiter(Some(&self.location.object_path(table)))
                .await
                .map_err(self.store_error(table))?;
            let parts: Vec<Path> = listing
                .objects
                .into_iter()
                .map(|meta| meta.location)
                .filter(|path| path.filename().is_some_and(is_part_file_name))
                .collect();
            self.delete_all(parts, table).await?;
        }
        self.delete_attempts().await?;
        self.remove_empty_local_folders(tables.into_iter().collect())
            .await?;
        self.delete_if_exists(MODEL_FILE).await?;
        self.delete_if_exists(MANIFEST_FILE).await?;
        Ok(())
    }

    /// Writes `_model.json`.
    pub async fn write_model(&self, bytes: &[u8]) -> Result<(), StorageError> {
        self.put(MODEL_FILE, bytes.to_vec()).await
    }

    /// Encodes the batches as Parquet in memory (on the blocking pool), computes the SHA-256, and uploads to
    /// `_attempts/<table>/part-<shard:05>-a<attempt>.parquet`: one put up to [`MULTIPART_THRESHOLD_BYTES`],
    /// a multipart upload in [`MULTIPART_CHUNK_BYTES`] pieces above it.
    #[tracing::instrument(level = "debug", skip(self, schema, batches), fields(rows, bytes))]
    pub async fn write_attempt(
        &self,
        table: &str,
        shard: u32,
        attempt: u32,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<PartInfo, StorageError> {
        validate_table_name(table)?;
        let relative = attempt_part_path(table, shard, attempt);
        let (schema, batches, props) = (schema.clone(), batches.to_vec(), self.props.clone());
        // Encoding is CPU work: keep it off the async workers.
        let encoded =
            tokio::task::spawn_blocking(move || encode_parquet(&schema, &batches, &props))
                .await
                .map_err(|source| StorageError::Task {
                    path: self.location.display_of(&relative),
                    source,
                })?
                .map_err(|source| StorageError::Parquet {
                    path: self.location.display_of(&relative),
                    source,
                })?;
        let span = tracing::Span::current();
        span.record("rows", encoded.rows);
        span.record("bytes", encoded.bytes.len());
        let part = PartInfo {
            path: relative.clone(),
            shard,
            attempt,
            rows: encoded.rows,
            bytes: encoded.bytes.len() as u64,
            sha256: encoded.sha256,
        };
        if encoded.bytes.len() > MULTIPART_THRESHOLD_BYTES {
            self.put_multipart(&relative, &encoded.bytes).await?;
        } else {
            self.put(&relative, encoded.bytes).await?;
        }
        tracing::debug!("attempt uploaded");
        Ok(part)
    }

    /// Checks the attempt object exists with `part.bytes` bytes, copies it to `<table>/part-<shard:05>.parquet`
    /// (overwriting an earlier commit of the shard), deletes the attempt, and returns the part at its final path.
    ///
    /// Write a manifest naming the table before the first commit, so that
    /// [`Output::clear`] finds parts committed after the last manifest write.
    #[tracing::instrument(level = "debug", skip_all, fields(part = %part.path, shard = part.shard, attempt = part.attempt))]
    pub async fn commit_part(&self, part: &PartInfo) -> Result<PartInfo, StorageError> {
        let table = attempt_table(part).ok_or_else(|| StorageError::InvalidPart {
            path: self.location.display_of(&part.path),
            detail: format!(
                "an attempt of shard {} attempt {} sits at _attempts/<table>/{}",
                part.shard,
                part.attempt,
                attempt_file_name(part.shard, part.attempt)
            ),
        })?;
        self.check_size(&part.path, part.bytes).await?;
        let committed = committed_part_path(table, part.shard);
        let from = self.location.object_path(&part.path);
        let to = self.location.object_path(&committed);
        self.store()
            .copy(&from, &to)
            .await
            .map_err(self.store_error(&committed))?;
        self.delete_if_exists(&part.path).await?;
        tracing::debug!("part committed");
        Ok(PartInfo {
            path: committed,
            ..part.clone()
        })
    }

    /// Deletes an attempt's object if present (a stale or failed attempt).
    pub async fn discard_attempt(
        &self,
        table: &str,
        shard: u32,
        attempt: u32,
    ) -> Result<(), StorageError> {
        validate_table_name(table)?;
        self.delete_if_exists(&attempt_part_path(table, shard, attempt))
            .await
    }

    /// Writes the manifest (progress) with one put: atomic on object stores, temp file and rename locally.
    pub async fn write_manifest(&self, m: &Manifest) -> Result<(), StorageError> {
        let json = m.to_json(&self.location.display_of(MANIFEST_FILE))?;
        self.put(MANIFEST_FILE, json).await
    }

    /// Checks every listed part is there with its size, deletes what is left under `_attempts/`,
    /// writes the manifest with `complete: true`, then `_SUCCESS` last (fsynced on a local folder).
    pub async fn finish(&self, m: &Manifest) -> Result<(), StorageError> {
        let parts: Vec<&PartInfo> = m.tables.values().flat_map(|t| &t.parts).collect();
        // Owned (path, size) pairs: a closure over borrowed parts makes this future not provably
        // `Send` for every lifetime, and callers spawn it.
        let sizes: Vec<(String, u64)> = parts.iter().map(|p| (p.path.clone(), p.bytes)).collect();
        futures::stream::iter(sizes)
            .map(|(path, bytes)| async move { self.check_size(&path, bytes).await })
            .buffer_unordered(SIZE_CHECKS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.delete_attempts().await?;
        let mut done = m.clone();
        done.complete = true;
        self.write_manifest(&done).await?;
        let mut durable: Vec<String> = parts.iter().map(|p| p.path.clone()).collect();
        durable.push(MANIFEST_FILE.to_owned());
        self.sync_local(durable).await?;
        self.put(SUCCESS_FILE, Vec::new()).await?;
        self.sync_local(vec![SUCCESS_FILE.to_owned()]).await?;
        tracing::info!(output = %self.location.display(), rows = done.total_rows(), "run finished");
        Ok(())
    }

    // ---- store calls ----

    fn store(&self) -> &Arc<dyn object_store::ObjectStore> {
        self.location.store()
    }

    fn store_error(&self, relative: &str) -> impl FnOnce(object_store::Error) -> StorageError {
        let path = self.location.display_of(relative);
        move |source| StorageError::Store { path, source }
    }

    async fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.store()
            .put(
                &self.location.object_path(relative),
                PutPayload::from(bytes),
            )
            .await
            .map_err(self.store_error(relative))?;
        Ok(())
    }

    /// Uploads in [`MULTIPART_CHUNK_BYTES`] pieces, a few at once; aborts the upload on failure.
    async fn put_multipart(&self, relative: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.location.object_path(relative);
        let mut upload = self
            .store()
            .put_multipart(&path)
            .await
            .map_err(self.store_error(relative))?;
        // Pieces are numbered when `put_part` is called, which the stream does in order.
        // Owned payloads: a closure over borrowed chunks would make the future not provably
        // `Send` for every lifetime, and callers spawn it.
        let payloads: Vec<PutPayload> = bytes
            .chunks(MULTIPART_CHUNK_BYTES)
            .map(|chunk| PutPayload::from(chunk.to_vec()))
            .collect();
        let pieces = futures::stream::iter(payloads)
            .map(|payload| upload.put_part(payload))
            .buffer_unordered(MULTIPART_PIECES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await;
        let result = match pieces {
            Ok(_) => upload.complete().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(source) = result {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(error = %abort, path = %self.location.display_of(relative), "could not abort a failed multipart upload");
            }
            return Err(StorageError::Store {
                path: self.location.display_of(relative),
                source,
            });
        }
        Ok(())
    }

    /// The object's bytes, or `None` when it is not there.
    async fn read_optional(&self, relative: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.location.object_path(relative);
        let result = match self.store().get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.store_error(relative)(source)),
        };
        let bytes = result.bytes().await.map_err(self.store_error(relative))?;
        Ok(Some(bytes.to_vec()))
    }

    async fn read_manifest(&self) -> Result<Option<Manifest>, StorageError> {
        match self.read_optional(MANIFEST_FILE).await? {
            Some(bytes) => {
                Manifest::from_json(&bytes, &self.location.display_of(MANIFEST_FILE)).map(Some)
            }
            None => Ok(None),
        }
    }

    /// The object's size, or `None` when it is not there.
    async fn size_of(&self, relative: &str) -> Result<Option<u64>, StorageError> {
        match self
            .store()
            .head(&self.location.object_path(relative))
            .await
        {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(self.store_error(relative)(source)),
        }
    }

    /// Refuses a part that is missing or not the size that was written.
    async fn check_size(&self, relative: &str, expected: u64) -> Result<(), StorageError> {
        match self.size_of(relative).await? {
            None => Err(StorageError::PartNotFound {
                path: self.location.display_of(relative),
            }),
            Some(found) if found != expected => Err(StorageError::PartSizeMismatch {
                path: self.location.display_of(relative),
                expected,
                found,
            }),
            Some(_) => Ok(()),
        }
    }

    async fn delete_if_exists(&self, relative: &str) -> Result<(), StorageError> {
        match self
            .store()
            .delete(&self.location.object_path(relative))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.store_error(relative)(source)),
        }
    }

    /// Deletes `paths` in batches where the store can; `context` names them in errors.
    async fn delete_all(&self, paths: Vec<Path>, context: &str) -> Result<(), StorageError> {
        if paths.is_empty() {
            return Ok(());
        }
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut deleted = self.store().delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => return Err(self.store_error(context)(source)),
            }
        }
        Ok(())
    }

    /// Every object under `relative`, at any depth.
    async fn list_all(&self, relative: &str) -> Result<Vec<Path>, StorageError> {
        self.store()
            .list(Some(&self.location.object_path(relative)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(self.store_error(relative))
    }

    async fn has_attempts(&self) -> Result<bool, StorageError> {
        let mut listing = self
            .store()
            .list(Some(&self.location.object_path(ATTEMPTS_DIR)));
        match listing.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(source)) => Err(self.store_error(ATTEMPTS_DIR)(source)),
        }
    }

    /// Table names that have a folder under `_attempts/`.
    async fn attempt_tables(&self) -> Result<Vec<String>, StorageError> {
        let mut tables = BTreeSet::new();
        for path in self.list_all(ATTEMPTS_DIR).await? {
            if let Some(parts) = self.location.relative(&path)
                && let [_, table, _] = parts.as_slice()
                && validate_table_name(table).is_ok()
            {
                tables.insert(table.clone());
            }
        }
        Ok(tables.into_iter().collect())
    }

    async fn delete_attempts(&self) -> Result<(), StorageError> {
        let leftovers = self.list_all(ATTEMPTS_DIR).await?;
        if !leftovers.is_empty() {
            tracing::debug!(count = leftovers.len(), "removing attempt uploads");
        }
        self.delete_all(leftovers, ATTEMPTS_DIR).await?;
        self.remove_empty_local_folders(vec![ATTEMPTS_DIR.to_owned()])
            .await
    }

    /// Fsyncs local files and their folders, so `_SUCCESS` never outlives the data after a crash.
    /// Object stores make a put durable before they answer.
    /// On a local folder, removes each of `relatives` and the folders under it that hold no
    /// file, deepest first; a folder with a file in it stays. Object stores have no folders.
    async fn remove_empty_local_folders(&self, relatives: Vec<String>) -> Result<(), StorageError> {
        self.on_local_root(move |root| {
            for relative in &relatives {
                remove_if_empty(&root.join(relative))?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `work` on the blocking pool with the local folder's path; nothing on an object store.
    async fn on_local_root(
        &self,
        work: impl FnOnce(PathBuf) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), StorageError> {
        let Some(root) = self.location.local_root().map(PathBuf::from) else {
            return Ok(());
        };
        let display = self.location.display().to_owned();
        tokio::task::spawn_blocking(move || work(root))
            .await
            .map_err(|source| StorageError::Task {
                path: display,
                source,
            })?
    }

    async fn sync_local(&self, relatives: Vec<String>) -> Result<(), StorageError> {
        self.on_local_root(move |root| {
            let io_error = |path: &std::path::Path| {
                let path = path.display().to_string();
                move |source| StorageError::Io { path, source }
            };
            let mut folders = BTreeSet::from([root.clone()]);
            for relative in &relatives {
                let path = root.join(relative);
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(io_error(&path))?;
                if let Some(parent) = path.parent() {
                    folders.insert(parent.to_path_buf());
                }
            }
            #[cfg(unix)]
            for folder in &folders {
                std::fs::File::open(folder)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(folder))?;
            }
            Ok(())
        })
        .await
    }
}

/// Parquet settings shared by every part, built once per output.
fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("chimera {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An encoded part: its bytes, digest and row count.
struct EncodedPart {
    bytes: Vec<u8>,
    rows: u64,
    sha256: String,
}

fn encode_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    props: &WriterProperties,
) -> Result<EncodedPart, ParquetError> {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema.clone(), Some(props.clone()))?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(batch)?;
        rows += batch.num_rows() as u64;
    }
    writer.close()?;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    Ok(EncodedPart {
        bytes,
        rows,
        sha256,
    })
}

/// Table names become folder names, so they must be one plain path component that
/// object stores keep as it is and that cannot collide with chimera's own `_`/`.` files.
pub(crate) fn validate_table_name(table: &str) -> Result<(), StorageError> {
    // object_store percent-encodes these in a path segment, so the folder would not bear the table's name.
    const RESERVED: &[char] = &[
        '/', '\\', '{', '}', '^', '%', '`', '[', ']', '"', '<', '>', '~', '#', '|', '*', '?',
    ];
    let reason = if table.is_empty() {
        Some("it is empty")
    } else if table.contains(RESERVED) || table.chars().any(char::is_control) {
        Some(
            r#"it contains a path separator, a control character or one of \ { } ^ % ` [ ] " < > ~ # | * ?"#,
        )
    } else if table.starts_with('.') || table.starts_with('_') {
        Some("names starting with '.' or '_' are reserved for chimera's own files")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::InvalidTable {
            table: table.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Removes `folder` and every folder below it that holds no file, deepest first; whether
/// `folder` is gone is returned. A missing folder counts as removed; a file keeps its folders.
fn remove_if_empty(folder: &std::path::Path) -> Result<bool, StorageError> {
    let io_error = |source| StorageError::Io {
        path: folder.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(false),
        Err(e) => return Err(io_error(e)),
    };
    let mut empty = true;
    for entry in entries {
        let entry = entry.map_err(io_error)?;
        let is_folder = entry.file_type().map_err(io_error)?.is_dir();
        if !(is_folder && remove_if_empty(&entry.path())?) {
            empty = false;
        }
    }
    if !empty {
        return Ok(false);
    }
    match std::fs::remove_dir(folder) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        // A file written since the listing keeps the folder.
        Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(false),
        Err(e) => Err(io_error(e)),
    }
}

/// `<table>/part-<shard:05>.parquet`: where a committed part lives, relative to the output root.
pub fn committed_part_path(table: &str, shard: u32) -> String {
    format!("{table}/{PART_PREFIX}{shard:05}{PART_SUFFIX}")
}

/// `_attempts/<table>/part-<shard:05>-a<attempt>.parquet`: where an attempt uploads, relative to the output root.
pub fn attempt_part_path(table: &str, shard: u32, attempt: u32) -> String {
    format!(
        "{ATTEMPTS_DIR}/{table}/{}",
        attempt_file_name(shard, attempt)
    )
}

fn attempt_file_name(shard: u32, attempt: u32) -> String {
    format!("{PART_PREFIX}{shard:05}-a{attempt}{PART_SUFFIX}")
}

/// The table of an attempt's part, when its path is exactly the one its shard and attempt upload to.
fn attempt_table(part: &PartInfo) -> Option<&str> {
    let (table, _) = part
        .path
        .strip_prefix(ATTEMPTS_DIR)?
        .strip_prefix('/')?
        .split_once('/')?;
    (validate_table_name(table).is_ok()
        && part.path == attempt_part_path(table, part.shard, part.attempt))
    .then_some(table)
}

/// `part-<digits>.parquet`
fn is_part_file_name(name: &str) -> bool {
    name.strip_prefix(PART_PREFIX)
        .and_then(|rest| rest.strip_suffix(PART_SUFFIX))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(path: &str, shard: u32, attempt: u32) -> PartInfo {
        PartInfo {
            path: path.into(),
            shard,
            attempt,
            rows: 0,
            bytes: 0,
            sha256: String::new(),
        }
    }

    #[test]
    fn path_patterns() {
        assert_eq!(committed_part_path("adult", 7), "adult/part-00007.parquet");
        assert_eq!(committed_part_path("t", 123_456), "t/part-123456.parquet");
        assert_eq!(
            attempt_part_path("adult", 7, 3),
            "_attempts/adult/part-00007-a3.parquet"
        );
        assert!(is_part_file_name("part-00007.parquet"));
        assert!(!is_part_file_name("part-.parquet"));
        assert!(!is_part_file_name("part-0000a.parquet"));
        assert!(!is_part_file_name("part-00007.parquet.bak"));
        assert!(!is_part_file_name("part-00007-a3.parquet"));
    }

    #[test]
    fn attempt_table_requires_the_exact_attempt_path() {
        let ok = attempt("_attempts/adult/part-00007-a3.parquet", 7, 3);
        assert_eq!(attempt_table(&ok), Some("adult"));
        for (path, shard, n) in [
            ("_attempts/adult/part-00007-a3.parquet", 7, 4),
            ("_attempts/adult/part-00007-a3.parquet", 8, 3),
            ("adult/part-00007.parquet", 7, 3),
            ("_attempts/../part-00007-a3.parquet", 7, 3),
            ("_attempts/a/b/part-00007-a3.parquet", 7, 3),
            ("_attempts/_x/part-00007-a3.parquet", 7, 3),
        ] {
            assert_eq!(attempt_table(&attempt(path, shard, n)), None, "{path}");
        }
    }

    #[test]
    fn table_names_must_be_plain_folder_names() {
        for bad in [
            "", "..", "../x", "a/b", "a\\b", "_SUCCESS", ".hidden", "a%20b", "x#1", "t\n",
        ] {
            assert!(
                matches!(
                    validate_table_name(bad),
                    Err(StorageError::InvalidTable { .. })
                ),
                "{bad:?}"
            );
        }
        for good in [
            "adult",
            "admissions-2024 v2",
            "adult_2000",
            "données",
            "a.b",
        ] {
            assert!(validate_table_name(good).is_ok(), "{good:?}");
        }
    }
}
