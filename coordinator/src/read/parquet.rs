//! Parquet tables: DataFusion's own listing table over one file or a directory.

use datafusion::common::TableReference;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::ReadError;
use super::location::{DataFile, Entry, Location};

/// Trailer of every Parquet file: 4-byte metadata length, then the magic.
const FOOTER_BYTES: u64 = 8;
const MAGIC: &[u8] = b"PAR1";

/// The extension selecting data files in a directory: `.parquet`, else
/// `.pq`, else (when the caller insisted on Parquet) every file.
pub(crate) fn directory_extension(files: &[DataFile]) -> &'static str {
    let has = |suffix: &str| {
        files.iter().any(|data| {
            data.location
                .last_segment()
                .to_ascii_lowercase()
                .ends_with(suffix)
        })
    };
    if has(".parquet") {
        ".parquet"
    } else if has(".pq") {
        ".pq"
    } else {
        ""
    }
}

/// Registers the file or directory as table `name` in `ctx`.
pub(crate) async fn register(
    ctx: &SessionContext,
    name: &str,
    file: &str,
    location: &Location,
    entry: &Entry,
) -> Result<(), ReadError> {
    let (table_url, extension) = match entry {
        // A single file is read whatever its name ends with.
        Entry::File { size } => {
            check_footer(location, *size).await?;
            (location.table_url(false), "")
        }
        Entry::Directory { files } => {
            let extension = directory_extension(files);
            for data in files {
                if data
                    .location
                    .last_segment()
                    .to_ascii_lowercase()
                    .ends_with(extension)
                {
                    check_footer(&data.location, data.size).await?;
                }
            }
            (location.table_url(true), extension)
        }
    };
    let options = ParquetReadOptions {
        file_extension: extension,
        ..Default::default()
    };
    ctx.register_parquet(TableReference::bare(name), table_url, options)
        .await
        .map_err(|error| match ReadError::from_datafusion(file, error) {
            // Schema inference reads every footer; failing there means a bad file.
            ReadError::DataFusion { file, source } => ReadError::CorruptParquet {
                file,
                detail: source.to_string(),
            },
            other => other,
        })
}

/// Checks the trailer before DataFusion reads the footer: the parquet crate
/// can panic (rather than fail) on a footer length larger than the file.
async fn check_footer(location: &Location, size: u64) -> Result<(), ReadError> {
    let file = location.display();
    let corrupt = |detail: String| ReadError::CorruptParquet {
        file: file.clone(),
        detail,
    };
    if size < MAGIC.len() as u64 + FOOTER_BYTES {
        return Err(corrupt(format!("only {size} bytes, too short for Parquet")));
    }
    let tail = location.tail_bytes(&file, FOOTER_BYTES, size).await?;
    if tail.len() != FOOTER_BYTES as usize || &tail[4..] != MAGIC {
        return Err(corrupt(
            "no PAR1 magic at the end (not Parquet, or truncated)".into(),
        ));
    }
    let metadata_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if metadata_len + FOOTER_BYTES + MAGIC.len() as u64 > size {
        return Err(corrupt(format!(
            "footer metadata of {metadata_len} bytes does not fit in the {size}-byte file"
        )));
    }
    Ok(())
}
