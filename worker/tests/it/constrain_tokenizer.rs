//! The unified tokenizer: loading from a Hugging Face directory and from GGUF, the stop ids,
//! and the token bytes llguidance's trie is built from.

use std::path::Path;

use chimera_worker::llm::tokenizer::{ChimeraTokenizer, TokenizerError, load_tokenizer};

use super::constrain_fixture::{TINY_SPECIALS, tiny_tokenizer};
use super::smollm2_gguf;

/// Every non-special token's bytes are what the tokenizer's own decoder makes of it (when
/// that is valid UTF-8 on its own; otherwise the lossy decode must agree where it can).
fn assert_bytes_match_decoder(tok: &ChimeraTokenizer) {
    let bytes = tok.token_bytes();
    assert_eq!(bytes.len(), tok.vocab_size());
    let mut checked = 0;
    for (id, b) in bytes.iter().enumerate() {
        let id = id as u32;
        if tok.special_ids.contains(&id) {
            assert_eq!(b[0], 0xff, "special {id} carries the marker");
            let text = tok.tokenizer.id_to_token(id).expect("special text");
            assert_eq!(&b[1..], text.as_bytes());
            continue;
        }
        let decoded = tok.tokenizer.decode(&[id], false).expect("decode");
        match std::str::from_utf8(b) {
            Ok(s) => {
                assert_eq!(s, decoded, "token {id}");
                checked += 1;
            }
            Err(_) => assert_eq!(String::from_utf8_lossy(b), decoded, "token {id}"),
        }
    }
    assert!(checked > bytes.len() / 2, "{checked} of {}", bytes.len());
}

#[test]
fn tiny_token_bytes_match_the_decoder() {
    let tok = tiny_tokenizer();
    assert_eq!(tok.special_ids, vec![0, 1, 2]);
    assert_bytes_match_decoder(&tok);
    let bytes = tok.token_bytes();
    let space = tok.tokenizer.token_to_id("Ġ").expect("space symbol");
    assert_eq!(bytes[space as usize], b" ");
    let e_acute = tok.tokenizer.token_to_id("Ã©").expect("é merge");
    assert_eq!(bytes[e_acute as usize], "é".as_bytes());
    let lone = tok.tokenizer.token_to_id("Ã").expect("byte C3");
    assert_eq!(bytes[lone as usize], [0xc3]);
}

/// Writes the tiny tokenizer as a Hugging Face model directory.
fn write_hf_dir(dir: &Path, config: &str, generation: Option<&str>) {
    let tok = tiny_tokenizer();
    tok.tokenizer
        .save(dir.join("tokenizer.json"), false)
        .expect("save tokenizer.json");
    std::fs::write(dir.join("tokenizer_config.json"), config).expect("write config");
    if let Some(g) = generation {
        std::fs::write(dir.join("generation_config.json"), g).expect("write generation");
    }
}

#[test]
fn hf_directory_loads_tokens_template_and_stop_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_hf_dir(
        dir.path(),
        r#"{
            "bos_token": {"content": "<|im_start|>", "lstrip": false},
            "eos_token": "<|im_end|>",
            "add_bos_token": false,
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"
        }"#,
        Some(r#"{"bos_token_id": 1, "eos_token_id": [2, 0]}"#),
    );
    let tok = load_tokenizer(dir.path()).expect("HF directory");
    assert_eq!(tok.bos, Some(1));
    assert_eq!(tok.eos, vec![2, 0]);
    assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(!tok.add_bos);
    assert_eq!(tok.special_ids, vec![0, 1, 2]);
    assert!(
        tok.chat_template
            .as_deref()
            .is_some_and(|t| t.contains("bos_token"))
    );
    assert_eq!(tok.token_bytes(), tiny_tokenizer().token_bytes());
    assert_bytes_match_decoder(&tok);

    // A single eos id in generation_config, a template in chat_template.jinja.
    let dir = tempfile::tempdir().expect("temp dir");
    write_hf_dir(
        dir.path(),
        r#"{"eos_token": "<|endoftext|>"}"#,
        Some(r#"{"eos_token_id": 2}"#),
    );
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{{ messages[0].content }}",
    )
    .expect("write template");
    let tok = load_tokenizer(dir.path()).expect("HF directory");
    assert_eq!(tok.eos, vec![0, 2]);
    assert_eq!(
        tok.chat_template.as_deref(),
        Some("{{ messages[0].content }}")
    );
    assert_eq!(tok.bos, None);
}

#[test]
fn hf_directory_errors_name_the_file_and_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_hf_dir(dir.path(), r#"{"eos_token": "<|nope|>"}"#, None);
    let err = load_tokenizer(dir.path())
        .expect_err("unknown eos")
        .to_string();
    assert!(
        err.contains("tokenizer_config.json")
            && err.contains("eos_token")
            && err.contains("<|nope|>"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    write_hf_dir(dir.path(), "{}", Some(r#"{"eos_token_id": [2, 99999]}"#));
    let err = load_tokenizer(dir.path())
        .expect_err("eos out of range")
        .to_string();
    assert!(
        err.contains("generation_config.json")
            && err.contains("eos_token_id")
            && err.contains("99999"),
        "{err}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    write_hf_dir(dir.path(), "{ not json", None);
    let err = load_tokenizer(dir.path()).expect_err("bad json");
    assert!(matches!(err, TokenizerError::Json { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer_config.json"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let err = load_tokenizer(dir.path()).expect_err("empty directory");
    assert!(matches!(err, TokenizerError::NotAModel { .. }), "{err}");
    let err = load_tokenizer(&dir.path().join("model.bin")).expect_err("not a model");
    assert!(err.to_string().contains("model.bin"), "{err}");
}

#[test]
fn tiny_specials_are_marked_for_the_trie() {
    let tok = tiny_tokenizer();
    let bytes = tok.token_bytes();
    for (id, s) in TINY_SPECIALS.iter().enumerate() {
        let mut want = vec![0xff];
        want.extend_from_slice(s.as_bytes());
        assert_eq!(bytes[id], want);
    }
}

#[test]
fn smollm2_gguf_loads_with_both_stop_ids() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = load_tokenizer(&path).expect("SmolLM2 tokenizer");
    assert_eq!(tok.vocab_size(), 49152);
    // <|im_end|> is the GGUF's eos; <|endoftext|> also ends generation.
    assert_eq!(tok.eos, vec![2, 0]);
    assert_eq!(tok.bos, Some(1));
    assert_eq!(tok.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token.as_deref(), Some("<|im_end|>"));
    assert_bytes_match_decoder(&tok);
    let bytes = tok.token_bytes();
    // "Ġworld" is " world"; the 17 control tokens carry the marker.
    assert_eq!(bytes[905], b" world");
    assert!((0..17).all(|i| bytes[i][0] == 0xff));
}
