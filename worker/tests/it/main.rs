//! chimera-worker's integration tests (one binary).

mod smollm2_tokenizer;
