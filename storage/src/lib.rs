//! chimera-storage: the run output on a local folder or an object store.
//!
//! Layout of an output prefix:
//!
//! ```text
//! <root>/_model.json                                the model the rows were sampled from
//! <root>/_attempts/<table>/part-00007-a3.parquet    a worker's upload (shard 7, attempt 3)
//! <root>/<table>/part-00007.parquet                 committed part (copied from the attempt)
//! <root>/_manifest.json                             progress, then the final manifest
//! <root>/_SUCCESS                                   empty, written last
//! ```
//!
//! Spark, DuckDB, Polars and pyarrow datasets skip `_`-prefixed names, so a
//! reader of `<root>/<table>/` never sees attempts. A shard is done only when
//! the coordinator commits it, and a run is complete only once `_SUCCESS` is
//! there, which [`Output::finish`] writes after checking every part.

mod error;
mod location;
mod manifest;
mod output;

pub use error::StorageError;
pub use location::Location;
pub use manifest::{
    MANIFEST_FORMAT, Manifest, ManifestPrivacy, ManifestTable, PartInfo, PrivacyMode,
};
pub use output::{
    ATTEMPTS_DIR, MANIFEST_FILE, MAX_ROW_GROUP_ROWS, MODEL_FILE, MULTIPART_CHUNK_BYTES,
    MULTIPART_THRESHOLD_BYTES, Output, OutputState, SUCCESS_FILE, attempt_part_path,
    committed_part_path,
};
