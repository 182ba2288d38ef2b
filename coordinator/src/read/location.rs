//! Where a table lives (a local path or an object-store URL), what is there
//! (a file or a directory), and blocking byte readers over it.

use std::future::Future;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;
use url::Url;

use super::ReadError;

/// Read buffer for files and decompression; large reads keep syscalls rare.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// Written first by some tools (Excel); not part of the first column's name.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";
/// Object-store chunks in flight between the fetch task and the parser.
const REMOTE_CHUNKS_IN_FLIGHT: usize = 8;

/// A parsed input: a local path or an object in a store.
#[derive(Debug, Clone)]
pub(crate) enum Location {
    Local(PathBuf),
    Remote {
        url: Url,
        store: Arc<dyn ObjectStore>,
        path: StorePath,
    },
}

/// What the location names.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    File {
        size: u64,
    },
    /// Data files inside it (hidden and `_`-prefixed files left out), sorted by path.
    Directory {
        files: Vec<DataFile>,
    },
}

/// One file of a directory table.
#[derive(Debug, Clone)]
pub(crate) struct DataFile {
    pub location: Location,
    pub size: u64,
}

impl Location {
    /// Parses a plain path, a `file://` URL or an object-store URL. Store
    /// options come from the `AWS_*`, `GOOGLE_*` and `AZURE_*` environment
    /// variables, then `options` (which win); see `chimera_storage::Location::parse`.
    pub(crate) fn parse(input: &str, options: &[(String, String)]) -> Result<Location, ReadError> {
        let invalid = |detail: String| ReadError::InvalidInput {
            input: input.to_owned(),
            detail,
        };
        let looks_like_url = input.split_once("://").is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+')
        });
        if !looks_like_url {
            if input.trim().is_empty() {
                return Err(invalid("empty path".into()));
            }
            let path = std::path::absolute(input).map_err(|e| invalid(e.to_string()))?;
            return Ok(Location::Local(path));
        }
        let url = Url::parse(input).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|()| invalid("not a local file URL".into()))?;
            return Ok(Location::Local(path));
        }
        // The same store construction as the output's: environment then options, bounded
        // retries (`retry_timeout`, `max_retries`), credentials kept out of messages.
        let remote =
            chimera_storage::Location::parse(input, options).map_err(|e| invalid(e.to_string()))?;
        Ok(Location::Remote {
            url,
            store: remote.store().clone(),
            path: remote.object_path(""),
        })
    }

    /// The last path segment: the file or directory name.
    pub(crate) fn last_segment(&self) -> String {
        match self {
            Location::Local(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::Remote { path, url, .. } => path
                .parts()
                .next_back()
                .map(|part| part.as_ref().to_owned())
                .or_else(|| url.host_str().map(str::to_owned))
                .unwrap_or_default(),
        }
    }

    /// The path or URL as DataFusion's listing table wants it; directories end in `/`.
    pub(crate) fn table_url(&self, directory: bool) -> String {
        let mut text = match self {
            Location::Local(path) => path.to_string_lossy().into_owned(),
            Location::Remote { url, .. } => url.to_string(),
        };
        if directory && !text.ends_with('/') {
            text.push('/');
        }
        text
    }

    /// Looks at what is there without reading data.
    pub(crate) async fn probe(&self, file: &str) -> Result<Entry, ReadError> {
        match self {
            Location::Local(path) => {
                let meta = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| local_error(file, e))?;
                if meta.is_file() {
                    return Ok(Entry::File { size: meta.len() });
                }
                let mut files = Vec::new();
                let mut dir = tokio::fs::read_dir(path)
                    .await
                    .map_err(|e| local_error(file, e))?;
                while let Some(item) = dir.next_entry().await.map_err(|e| local_error(file, e))? {
                    let name = item.file_name().to_string_lossy().into_owned();
                    let meta = item.metadata().await.map_err(|e| local_error(file, e))?;
                    if meta.is_file() && is_data_file_name(&name) {
                        files.push(DataFile {
                            location: Location::Local(item.path()),
                            size: meta.len(),
                        });
                    }
                }
                files.sort_by_key(|data| data.location.display());
                Ok(Entry::Directory { files })
            }
            Location::Remote { store, path, url } => {
                match store.head(path).await {
                    Ok(meta) => return Ok(Entry::File { size: meta.size }),
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(source) => {
                        return Err(ReadError::ObjectStore {
                            file: file.to_owned(),
                            source,
                        });
                    }
                }
                let prefix = (!path.as_ref().is_empty()).then_some(path);
                let mut listing = store.list(prefix);
                let mut files = Vec::new();
                while let Some(meta) = listing.next().await {
                    let meta = meta.map_err(|source| ReadError::ObjectStore {
                        file: file.to_owned(),
                        source,
                    })?;
                    if let Some(name) = meta.location.filename()
                        && is_data_file_name(name)
                    {
                        let mut child_url = url.clone();
                        child_url.set_path(&format!("/{}", meta.location));
                        let location = Location::Remote {
                            url: child_url,
                            store: Arc::clone(store),
                            path: meta.location,
                        };
                        files.push(DataFile {
                            location,
                            size: meta.size,
                        });
                    }
                }
                if files.is_empty() {
                    return Err(ReadError::NotFound {
                        file: file.to_owned(),
                    });
                }
                files.sort_by_key(|data| data.location.display());
                Ok(Entry::Directory { files })
            }
        }
    }

    /// The path or URL, for messages.
    pub(crate) fn display(&self) -> String {
        self.table_url(false)
    }

    /// The last `count` bytes of a file of `size` bytes (fewer if it is shorter).
    pub(crate) async fn tail_bytes(
        &self,
        file: &str,
        count: u64,
        size: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let start = size.saturating_sub(count);
        match self {
            Location::Local(path) => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut handle = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| local_error(file, e))?;
                let io_error = |source| ReadError::Io {
                    file: file.to_owned(),
                    line: 0,
                    source,
                };
                handle
                    .seek(io::SeekFrom::Start(start))
                    .await
                    .map_err(io_error)?;
                let mut buf = Vec::new();
                handle.read_to_end(&mut buf).await.map_err(io_error)?;
                Ok(buf)
            }
            Location::Remote { store, path, .. } => {
                if start == size {
                    return Ok(Vec::new());
                }
                let bytes = store.get_range(path, start..size).await.map_err(|source| {
                    ReadError::ObjectStore {
                        file: file.to_owned(),
                        source,
                    }
                })?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// The first bytes of a file (fewer if the file is shorter).
    pub(crate) async fn head_bytes(
        &self,
        file: &str,
        count: usize,
        size: u64,
    ) -> Result<Vec<u8>, ReadError> {
        let count = count.min(usize::try_from(size).unwrap_or(usize::MAX));
        match self {
            Location::Local(path) => {
                use tokio::io::AsyncReadExt;
                let handle = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| local_error(file, e))?;
                let mut buf = Vec::with_capacity(count);
                handle
                    .take(count as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|source| ReadError::Io {
                        file: file.to_owned(),
                        line: 1,
                        source,
                    })?;
                Ok(buf)
            }
            Location::Remote { store, path, .. } => {
                if count == 0 {
                    return Ok(Vec::new());
                }
                let bytes = store
                    .get_range(path, 0..count as u64)
                    .await
                    .map_err(|source| ReadError::ObjectStore {
                        file: file.to_owned(),
                        source,
                    })?;
                Ok(bytes.to_vec())
            }
        }
    }

    /// Opens the raw bytes for blocking reads. For a remote object this
    /// returns the fetch task too; the caller must spawn it on the runtime.
    pub(crate) fn open_raw(
        &self,
        file: &str,
    ) -> Result<(Box<dyn Read + Send>, Option<FetchTask>), ReadError> {
        match self {
            Location::Local(path) => {
                let handle = std::fs::File::open(path).map_err(|e| local_error(file, e))?;
                Ok((Box::new(handle), None))
            }
            Location::Remote { store, path, .. } => {
                let (reader, task) = remote_reader(Arc::clone(store), path.clone());
                Ok((Box::new(reader), Some(Box::pin(task))))
            }
        }
    }
}

/// The async half of a remote read: pulls chunks from the store into the reader.
pub(crate) type FetchTask = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

fn local_error(file: &str, error: io::Error) -> ReadError {
    if error.kind() == io::ErrorKind::NotFound {
        ReadError::NotFound {
            file: file.to_owned(),
        }
    } else {
        ReadError::Io {
            file: file.to_owned(),
            line: 0,
            source: error,
        }
    }
}

/// Leaves out markers (`_SUCCESS`), hidden files and temporary files.
fn is_data_file_name(name: &str) -> bool {
    !(name.starts_with('.') || name.starts_with('_') || name.ends_with(".tmp"))
}

/// Wraps raw bytes in a buffer and, when they start with the gzip magic,
/// a (multi-member) gzip decoder; drops a UTF-8 byte-order mark. Returns
/// whether it was gzip.
pub(crate) fn decompressed(raw: Box<dyn Read + Send>) -> io::Result<(Box<dyn Read + Send>, bool)> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, raw);
    let gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut text: Box<dyn BufRead + Send> = if gzip {
        let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, decoder))
    } else {
        Box::new(buffered)
    };
    if text.fill_buf()?.starts_with(UTF8_BOM) {
        text.consume(UTF8_BOM.len());
    }
    Ok((Box::new(text), gzip))
}

/// A blocking `Read` fed with object-store chunks by an async task, so the
/// CSV parser can run on a blocking thread while the download streams.
struct ChunkReader<B> {
    rx: mpsc::Receiver<object_store::Result<B>>,
    chunk: Option<B>,
    pos: usize,
}

impl<B: AsRef<[u8]>> Read for ChunkReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.chunk {
                let rest = &chunk.as_ref()[self.pos..];
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => return Ok(0),
            }
        }
    }
}

fn remote_reader(
    store: Arc<dyn ObjectStore>,
    path: StorePath,
) -> (
    impl Read + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, rx) = mpsc::channel(REMOTE_CHUNKS_IN_FLIGHT);
    let task = async move {
        let mut chunks = match store.get(&path).await {
            Ok(result) => result.into_stream(),
            Err(error) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
        };
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            // A closed channel means the reader was dropped: stop downloading.
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
    };
    (
        ChunkReader {
            rx,
            chunk: None,
            pos: 0,
        },
        task,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        let Ok(Location::Local(path)) = Location::parse("data/x.csv", &[]) else {
            panic!("relative path");
        };
        assert!(path.is_absolute() && path.ends_with("data/x.csv"));
        let Ok(Location::Local(path)) = Location::parse("file:///tmp/a%20b.csv", &[]) else {
            panic!("file URL");
        };
        assert_eq!(path, PathBuf::from("/tmp/a b.csv"));
        let options = vec![
            ("aws_endpoint".to_owned(), "http://127.0.0.1:9".to_owned()),
            ("aws_allow_http".to_owned(), "true".to_owned()),
        ];
        let Ok(remote) = Location::parse("s3://bucket/dir/part-0.parquet", &options) else {
            panic!("s3 URL");
        };
        assert_eq!(remote.last_segment(), "part-0.parquet");
        assert_eq!(remote.table_url(false), "s3://bucket/dir/part-0.parquet");
        assert!(matches!(
            Location::parse("nosuch://x/y", &[]),
            Err(ReadError::InvalidInput { .. })
        ));
    }

    #[test]
    fn chunk_reader_concatenates_chunks() {
        let (tx, rx) = mpsc::channel(4);
        for chunk in [b"ab".to_vec(), Vec::new(), b"cde".to_vec()] {
            tx.try_send(Ok(chunk)).expect("channel has room");
        }
        drop(tx);
        let mut reader = ChunkReader {
            rx,
            chunk: None,
            pos: 0,
        };
        let mut out = String::new();
        reader.read_to_string(&mut out).expect("chunks are UTF-8");
        assert_eq!(out, "abcde");
    }
}
