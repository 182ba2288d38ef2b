//! Why a storage call failed, naming the path or URL (never its credentials), and whether a retry can help.

use std::error::Error as _;
use std::io;

use object_store::client::{HttpError, HttpErrorKind};
use parquet::errors::ParquetError;

use crate::manifest::MANIFEST_FORMAT;

/// Why reading or writing the output failed; every variant names the path or URL in its display form.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The output URL or path cannot be used.
    #[error("invalid output location {location}: {detail}")]
    InvalidLocation { location: String, detail: String },
    /// The output holds a finished run and overwriting was not asked for.
    #[error(
        "{location} already holds a finished chimera run (it has _SUCCESS); pass --overwrite to replace it or choose another output folder"
    )]
    AlreadyComplete { location: String },
    /// A `_SUCCESS` marker without a manifest: another tool's output, left alone.
    #[error(
        "{location} has a _SUCCESS marker but no _manifest.json, so it is not a chimera run; remove _SUCCESS or choose another output folder"
    )]
    ForeignMarker { location: String },
    /// An object-store call failed.
    #[error("object store error on {path}")]
    Store {
        path: String,
        source: object_store::Error,
    },
    /// A local file-system call failed.
    #[error("I/O error on {path}")]
    Io { path: String, source: io::Error },
    /// Encoding a Parquet part failed.
    #[error("cannot write Parquet file {path}")]
    Parquet { path: String, source: ParquetError },
    /// Encoding a part stopped with a panic or was cancelled.
    #[error("encoding {path} did not finish")]
    Task {
        path: String,
        source: tokio::task::JoinError,
    },
    /// A manifest could not be serialised or parsed.
    #[error("invalid manifest {path}")]
    Manifest {
        path: String,
        source: serde_json::Error,
    },
    /// A manifest parsed but names something chimera would not write.
    #[error("invalid manifest {path}: {detail}")]
    InvalidManifest { path: String, detail: String },
    /// A manifest was written by an incompatible chimera.
    #[error("manifest {path} has format {found:?}; this chimera reads {MANIFEST_FORMAT:?}")]
    UnsupportedManifest { path: String, found: String },
    /// A table name cannot be used as a folder name inside the output.
    #[error("table name {table:?} cannot be an output folder: {reason}")]
    InvalidTable { table: String, reason: &'static str },
    /// A part description does not match the path it names.
    #[error("part {path} does not match its description: {detail}")]
    InvalidPart { path: String, detail: String },
    /// A part to commit or finish is not in storage.
    #[error("part {path} is missing")]
    PartNotFound { path: String },
    /// A part in storage is not the size that was written.
    #[error("part {path} is {found} bytes in storage but {expected} bytes were written")]
    PartSizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
}

impl StorageError {
    /// Whether trying the same call again can help (a transient network or store error, an I/O timeout).
    pub fn retryable(&self) -> bool {
        match self {
            StorageError::Store { source, .. } => store_error_is_transient(source),
            StorageError::Io { source, .. } => io_kind_is_transient(source.kind()),
            StorageError::InvalidLocation { .. }
            | StorageError::AlreadyComplete { .. }
            | StorageError::ForeignMarker { .. }
            | StorageError::Parquet { .. }
            | StorageError::Task { .. }
            | StorageError::Manifest { .. }
            | StorageError::InvalidManifest { .. }
            | StorageError::UnsupportedManifest { .. }
            | StorageError::InvalidTable { .. }
            | StorageError::InvalidPart { .. }
            | StorageError::PartNotFound { .. }
            | StorageError::PartSizeMismatch { .. } => false,
        }
    }
}

/// Network failures and 5xx answers reach us as `Generic` once object_store's own retries are spent;
/// answers that say the request itself is wrong have their own variants.
fn store_error_is_transient(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    let store = match error {
        E::Generic { store, .. } => *store,
        _ => return false,
    };
    let mut cause = error.source();
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            return !matches!(http.kind(), HttpErrorKind::Decode);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io_kind_is_transient(io.kind());
        }
        cause = e.source();
    }
    // The local store and URL parsing fail the same way every time; a remote store's
    // generic error is a server or network failure that outlasted the client's retries.
    !matches!(store, "LocalFileSystem" | "URL" | "parse_url")
}

fn io_kind_is_transient(kind: io::ErrorKind) -> bool {
    use io::ErrorKind as K;
    matches!(
        kind,
        K::TimedOut
            | K::Interrupted
            | K::WouldBlock
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(e: object_store::Error) -> StorageError {
        StorageError::Store {
            path: "s3://bucket/out/x".into(),
            source: e,
        }
    }

    #[test]
    fn transient_errors_are_retryable() {
        let timeout = StorageError::Io {
            path: "/out".into(),
            source: io::Error::new(io::ErrorKind::TimedOut, "slow disk"),
        };
        assert!(timeout.retryable());
        let server = store_error(object_store::Error::Generic {
            store: "S3",
            source: "503 Slow Down".into(),
        });
        assert!(server.retryable());
        let reset = store_error(object_store::Error::Generic {
            store: "S3",
            source: Box::new(HttpError::new(
                HttpErrorKind::Connect,
                io::Error::from(io::ErrorKind::ConnectionRefused),
            )),
        });
        assert!(reset.retryable());
    }

    #[test]
    fn permanent_errors_are_not_retryable() {
        let cases = [
            store_error(object_store::Error::NotFound {
                path: "out/x".into(),
                source: "gone".into(),
            }),
            store_error(object_store::Error::PermissionDenied {
                path: "out/x".into(),
                source: "denied".into(),
            }),
            store_error(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(io::Error::from(io::ErrorKind::PermissionDenied)),
            }),
            StorageError::Io {
                path: "/out".into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            StorageError::PartNotFound {
                path: "/out/t/part-00000.parquet".into(),
            },
            StorageError::PartSizeMismatch {
                path: "/out/t/part-00000.parquet".into(),
                expected: 1,
                found: 2,
            },
            StorageError::InvalidLocation {
                location: "nosuch://x".into(),
                detail: "unknown scheme".into(),
            },
            StorageError::UnsupportedManifest {
                path: "/out/_manifest.json".into(),
                found: "chimera-manifest/9".into(),
            },
            StorageError::AlreadyComplete {
                location: "/out".into(),
            },
        ];
        for e in cases {
            assert!(!e.retryable(), "{e:?}");
        }
    }
}
