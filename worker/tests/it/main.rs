//! chimera-worker's integration tests (one binary).

#![allow(clippy::unwrap_used)]

mod constrain_chat;
mod constrain_fixture;
mod constrain_rows;
mod constrain_tokenizer;
mod constrain_values;
mod engine_random;
mod model_random;
mod model_reference;
mod model_smollm2;
mod smollm2_tokenizer;
