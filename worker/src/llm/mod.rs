//! The worker's language model: GGUF reading, the tokenizer (from `tokenizer.json` or rebuilt
//! from GGUF metadata), the transformer forward over a ragged batch (`model`), schema
//! constraints on the output (`constrain`), the batched generation engine (`engine`), and the
//! fill of a shard's text columns (`fill`).

pub mod bench;
pub mod chat;
pub mod children;
pub mod constrain;
pub mod engine;
pub mod fill;
pub mod gguf;
pub mod judge;
pub mod model;
pub mod random;
pub mod tokenizer;

pub use candle_core;
pub use gguf::{GgufError, GgufMetadata};
pub use tokenizer::{GgufTokenizer, TokenizerError};
