//! chimera-worker's integration tests (one binary).

mod constrain_chat;
mod constrain_fixture;
mod constrain_rows;
mod constrain_tokenizer;
mod constrain_values;
mod model_random;
mod model_smollm2;
mod smollm2_tokenizer;
