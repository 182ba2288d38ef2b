//! chimera-worker: samples shards from a model, decodes them to Arrow and writes Parquet.

pub mod manifest;
pub mod output;
pub mod sample;
