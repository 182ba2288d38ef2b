//! The worker's language model. So far: reading GGUF files and rebuilding the tokenizer from
//! their metadata (the SmolLM2 GGUF ships no `tokenizer.json`).

pub mod gguf;
pub mod tokenizer;

pub use gguf::{GgufError, GgufMetadata};
pub use tokenizer::{GgufTokenizer, TokenizerError};
