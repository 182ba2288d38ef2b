//! chimera-worker: samples shards from a model and decodes them to Arrow (`sample`), and the
//! worker loop that leases shards from a coordinator and writes them to the output (`remote`).

pub mod remote;
pub mod sample;
