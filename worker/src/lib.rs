//! chimera-worker: samples shards from a model and decodes them to Arrow (`sample`), the worker
//! loop that leases shards from a coordinator and writes them to the output (`remote`), and the
//! LLM side (`llm`: so far the tokenizer rebuilt from GGUF metadata).

pub mod entities;
pub mod llm;
pub mod remote;
pub mod sample;
