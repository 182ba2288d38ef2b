//! A `tokenizers::Tokenizer` rebuilt from GGUF metadata (`tokenizer.ggml.*`), for models that
//! ship no `tokenizer.json`. Follows llama.cpp's reading of the same keys: `model` picks the
//! algorithm (only byte-level BPE, "gpt2", so far), `pre` picks the pre-tokenizer regex, control
//! tokens become special tokens that are never split.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{GgufError, GgufMetadata, IN_MEMORY, read_content};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_PAD: &str = "tokenizer.ggml.padding_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The `tokenizer.ggml.pre` values this module knows how to rebuild.
pub const KNOWN_PRE: &[&str] = &[
    "gpt2",
    "smollm",
    "starcoder",
    "refact",
    "llama-bpe",
    "qwen2",
];

/// Llama 3's split (digits in runs of at most three).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2/3's split (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Why a tokenizer could not be rebuilt from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// The file or one of its metadata keys could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// `tokenizer.ggml.model` names an algorithm other than byte-level BPE.
    #[error(
        "{}: tokenizer.ggml.model = {model:?} is not supported (only \"gpt2\", byte-level BPE)",
        file.display()
    )]
    UnsupportedModel { file: PathBuf, model: String },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this module does not know.
    #[error(
        "{}: tokenizer.ggml.pre = {pre:?} is not a known pre-tokenizer (known: {})",
        file.display(),
        KNOWN_PRE.join(", ")
    )]
    UnsupportedPre { file: PathBuf, pre: String },
    /// The `tokenizers` crate rejected the rebuilt parts.
    #[error("{}: cannot build the tokenizer: {source}", file.display())]
    Build {
        file: PathBuf,
        source: tokenizers::Error,
    },
}

/// A tokenizer rebuilt from a GGUF file, with the ids and template a prompt builder needs.
#[derive(Debug, Clone)]
pub struct GgufTokenizer {
    /// The rebuilt tokenizer; control tokens are special added tokens.
    pub tokenizer: Tokenizer,
    /// Beginning-of-sequence id (`tokenizer.ggml.bos_token_id`).
    pub bos: Option<u32>,
    /// End-of-sequence id (`tokenizer.ggml.eos_token_id`).
    pub eos: Option<u32>,
    /// Padding id (`tokenizer.ggml.padding_token_id`).
    pub pad: Option<u32>,
    /// Whether `encode(.., true)` prepends `bos` (`tokenizer.ggml.add_bos_token`, default off).
    pub add_bos: bool,
    /// Ids of the control (special) tokens, ascending.
    pub special_ids: Vec<u32>,
    /// The Jinja chat template (`tokenizer.chat_template`), unrendered.
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    /// Reads a GGUF file's metadata and rebuilds its tokenizer.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let content = read_content(path)?;
        Self::build(GgufMetadata::new(&content, path))
    }

    /// Rebuilds the tokenizer from already parsed GGUF content.
    pub fn from_content(content: &Content) -> Result<Self, TokenizerError> {
        Self::build(GgufMetadata::new(content, Path::new(IN_MEMORY)))
    }

    /// Rebuilds the tokenizer from metadata whose errors name their file.
    pub fn build(meta: GgufMetadata<'_>) -> Result<Self, TokenizerError> {
        let file = meta.file();
        let model = meta.string(KEY_MODEL)?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel {
                file: file.to_path_buf(),
                model: model.to_owned(),
            });
        }
        // Required: without it llama.cpp guesses ("default") and warns of degraded output.
        let pre = meta.string(KEY_PRE)?;
        let build_err = |source| TokenizerError::Build {
            file: file.to_path_buf(),
            source,
        };
        let (pre_tokenizer, ignore_merges) = pre_tokenizer_for(pre)
            .ok_or_else(|| TokenizerError::UnsupportedPre {
                file: file.to_path_buf(),
                pre: pre.to_owned(),
            })?
            .map_err(build_err)?;

        let tokens = meta.string_array(KEY_TOKENS)?;
        let n_tokens = tokens.len();
        let token_types = match meta.get(KEY_TOKEN_TYPE) {
            Some(_) => meta.int_array(KEY_TOKEN_TYPE)?,
            None => vec![1; n_tokens],
        };
        if token_types.len() != n_tokens {
            return Err(meta
                .bad(
                    KEY_TOKEN_TYPE,
                    format!("{} entries for {n_tokens} tokens", token_types.len()),
                )
                .into());
        }
        let mut vocab = Vocab::default();
        for (id, token) in tokens.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| meta.bad(KEY_TOKENS, "too many tokens"))?;
            // A repeated string keeps its first id, as llama.cpp's text-to-token map does.
            vocab.entry((*token).to_owned()).or_insert(id);
        }
        let merges = meta
            .string_array(KEY_MERGES)?
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| meta.bad(KEY_MERGES, format!("merge {i} ({m:?}) has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(build_err)?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        let mut special_ids = Vec::new();
        let mut specials = Vec::new();
        let mut user_defined = Vec::new();
        for (id, (token, ty)) in tokens.iter().zip(&token_types).enumerate() {
            match *ty {
                TOKEN_TYPE_CONTROL => {
                    special_ids.push(
                        u32::try_from(id).map_err(|_| meta.bad(KEY_TOKENS, "too many tokens"))?,
                    );
                    specials.push(AddedToken::from(*token, true));
                }
                // User-defined tokens are stored as raw text and matched before the regex split.
                TOKEN_TYPE_USER_DEFINED => {
                    user_defined.push(AddedToken::from(*token, false).normalized(false));
                }
                _ => {}
            }
        }
        tokenizer.add_special_tokens(specials).map_err(build_err)?;
        tokenizer.add_tokens(user_defined).map_err(build_err)?;

        let check_id = |key: &str, id: Option<u32>| match id {
            Some(i) if i as usize >= n_tokens => Err(meta.bad(
                key,
                format!("id {i} is outside the {n_tokens}-token vocabulary"),
            )),
            _ => Ok(id),
        };
        let bos = check_id(KEY_BOS, meta.opt_u32(KEY_BOS)?)?;
        let eos = check_id(KEY_EOS, meta.opt_u32(KEY_EOS)?)?;
        let pad = check_id(KEY_PAD, meta.opt_u32(KEY_PAD)?)?;
        let add_bos = meta.opt_bool(KEY_ADD_BOS)?.unwrap_or(false);
        if add_bos {
            let bos_id =
                bos.ok_or_else(|| meta.bad(KEY_ADD_BOS, format!("set but {KEY_BOS} is missing")))?;
            let bos_text = tokens[bos_id as usize];
            if bos_text.is_empty()
                || bos_text.contains(char::is_whitespace)
                || bos_text.contains(':')
            {
                return Err(meta
                    .bad(
                        KEY_BOS,
                        format!("token {bos_text:?} cannot be used in a template"),
                    )
                    .into());
            }
            let processor = TemplateProcessing::builder()
                .try_single(format!("{bos_text} $A"))
                .map_err(|e| build_err(e.into()))?
                .try_pair(format!("{bos_text} $A {bos_text}:1 $B:1"))
                .map_err(|e| build_err(e.into()))?
                .special_tokens(vec![(bos_text, bos_id)])
                .build()
                .map_err(|e| build_err(e.into()))?;
            tokenizer.with_post_processor(Some(processor));
        }
        let chat_template = meta.opt_string(KEY_CHAT_TEMPLATE)?.map(str::to_owned);

        Ok(Self {
            tokenizer,
            bos,
            eos,
            pad,
            add_bos,
            special_ids,
            chat_template,
        })
    }
}

/// The pre-tokenizer for a `tokenizer.ggml.pre` value and whether BPE takes whole words found
/// in the vocabulary as they are (llama.cpp's `ignore_merges`, Llama 3 only); `None` for an
/// unknown value.
fn pre_tokenizer_for(pre: &str) -> Option<tokenizers::Result<(PreTokenizerWrapper, bool)>> {
    // GPT-2 style: ByteLevel applies GPT-2's regex itself; no prefix space, as in the HF originals.
    let byte_level_gpt2 = || ByteLevel::new(false, true, true);
    // Custom regex first, then byte-level mapping without its own split.
    let split_then_bytes = |regex: &str, trim_offsets: bool| -> tokenizers::Result<_> {
        let split = Split::new(
            SplitPattern::Regex(regex.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )?;
        Ok(PreTokenizerWrapper::from(Sequence::new(vec![
            split.into(),
            ByteLevel::new(false, trim_offsets, false).into(),
        ])))
    };
    Some(match pre {
        "gpt2" => Ok((byte_level_gpt2().into(), false)),
        // StarCoder family: every digit is its own pre-token, then GPT-2.
        "smollm" | "starcoder" | "refact" => Ok((
            Sequence::new(vec![Digits::new(true).into(), byte_level_gpt2().into()]).into(),
            false,
        )),
        "llama-bpe" => split_then_bytes(LLAMA3_REGEX, true).map(|p| (p, true)),
        "qwen2" => split_then_bytes(QWEN2_REGEX, false).map(|p| (p, false)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use candle_core::quantized::gguf_file::{self, Value};

    use super::*;

    const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    const MERGES: [&str; 9] = [
        "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d",
    ];

    /// Metadata of a tiny byte-level BPE: three control tokens, the 256 byte symbols, and the
    /// merges that spell "hello" and "Ġworld".
    fn tiny_metadata(pre: &str) -> Vec<(String, Value)> {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.extend(alphabet.iter().map(char::to_string));
        tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
        let types: Vec<Value> = (0..tokens.len())
            .map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 }))
            .collect();
        let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
        vec![
            (KEY_MODEL.into(), Value::String("gpt2".into())),
            (KEY_PRE.into(), Value::String(pre.into())),
            (KEY_TOKENS.into(), strings(tokens)),
            (
                KEY_MERGES.into(),
                strings(MERGES.iter().map(|m| m.to_string()).collect()),
            ),
            (KEY_TOKEN_TYPE.into(), Value::Array(types)),
            (KEY_BOS.into(), Value::U32(1)),
            (KEY_EOS.into(), Value::U32(2)),
            (KEY_PAD.into(), Value::U32(0)),
            (
                KEY_CHAT_TEMPLATE.into(),
                Value::String("{{ '<|im_start|>' + message['content'] }}".into()),
            ),
        ]
    }

    /// Writes the metadata as a real GGUF file (no tensors) into memory.
    fn gguf_bytes(metadata: &[(String, Value)]) -> Vec<u8> {
        let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &refs, &[]).expect("write gguf");
        out.into_inner()
    }

    fn tiny(metadata: &[(String, Value)]) -> Result<GgufTokenizer, TokenizerError> {
        let content = Content::read(&mut Cursor::new(gguf_bytes(metadata))).expect("read gguf");
        GgufTokenizer::from_content(&content)
    }

    fn encode(tok: &GgufTokenizer, text: &str) -> Vec<u32> {
        tok.tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    fn id(tok: &GgufTokenizer, token: &str) -> u32 {
        tok.tokenizer.token_to_id(token).expect("token in vocab")
    }

    #[test]
    fn round_trips_ascii_and_non_ascii_text() {
        for pre in KNOWN_PRE {
            let tok = tiny(&tiny_metadata(pre)).expect("tokenizer");
            for text in [
                "hello world",
                "  leading spaces, tabs\tand\nnew lines  ",
                "café crème brûlée",
                "中文 and 日本語",
                "emoji 🙂👍🏽 and a flag 🇫🇷",
                "digits 2026 and 3.14159",
            ] {
                let ids = encode(&tok, text);
                let back = tok.tokenizer.decode(&ids, false).expect("decode");
                assert_eq!(back, text, "pre {pre}");
            }
        }
    }

    #[test]
    fn merges_build_whole_words() {
        let tok = tiny(&tiny_metadata("smollm")).expect("tokenizer");
        assert_eq!(
            encode(&tok, "hello world"),
            vec![id(&tok, "hello"), id(&tok, "Ġworld")]
        );
        // A non-ASCII character is its UTF-8 bytes, one byte symbol each (é = C3 A9).
        assert_eq!(encode(&tok, "é"), vec![id(&tok, "Ã"), id(&tok, "©")]);
    }

    #[test]
    fn smollm_splits_digits_one_by_one() {
        let tok = tiny(&tiny_metadata("smollm")).expect("tokenizer");
        let pieces = tok.tokenizer.encode("2026", false).expect("encode");
        assert_eq!(pieces.get_tokens(), ["2", "0", "2", "6"]);
    }

    #[test]
    fn llama3_and_qwen2_split_digits_their_own_way() {
        let pieces = |pre: &str| {
            let tok = tiny(&tiny_metadata(pre)).expect("tokenizer");
            let enc = tok.tokenizer.encode("1234567", false).expect("encode");
            enc.get_tokens().to_vec()
        };
        assert_eq!(pieces("llama-bpe"), ["1", "2", "3", "4", "5", "6", "7"]);
        assert_eq!(pieces("qwen2"), ["1", "2", "3", "4", "5", "6", "7"]);
        let words = |pre: &str| {
            let tok = tiny(&tiny_metadata(pre)).expect("tokenizer");
            let enc = tok.tokenizer.encode("1234567", false).expect("encode");
            enc.get_word_ids().to_vec()
        };
        // Runs of at most three digits for Llama 3, single digits for Qwen 2.
        assert_eq!(
            words("llama-bpe"),
            [
                Some(0),
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(1),
                Some(2)
            ]
        );
        assert_eq!(words("qwen2"), (0..7).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn control_tokens_are_single_special_ids() {
        let tok = tiny(&tiny_metadata("smollm")).expect("tokenizer");
        assert_eq!(tok.special_ids, vec![0, 1, 2]);
        let ids = encode(&tok, "<|im_start|>hello<|im_end|>");
        assert_eq!(ids, vec![1, id(&tok, "hello"), 2]);
        let plain = tok.tokenizer.decode(&ids, true).expect("decode");
        assert_eq!(plain, "hello");
        assert_eq!((tok.bos, tok.eos, tok.pad), (Some(1), Some(2), Some(0)));
        assert!(!tok.add_bos);
        assert!(
            tok.chat_template
                .as_deref()
                .is_some_and(|t| t.contains("<|im_start|>"))
        );
    }

    #[test]
    fn add_bos_token_prepends_bos() {
        let mut meta = tiny_metadata("smollm");
        meta.push((KEY_ADD_BOS.into(), Value::Bool(true)));
        let tok = tiny(&meta).expect("tokenizer");
        let with = tok.tokenizer.encode("hello", true).expect("encode");
        assert_eq!(with.get_ids(), [1, id(&tok, "hello")]);
        assert_eq!(encode(&tok, "hello"), vec![id(&tok, "hello")]);
    }

    #[test]
    fn missing_key_names_the_key() {
        for key in [KEY_MODEL, KEY_PRE, KEY_TOKENS, KEY_MERGES] {
            let meta: Vec<_> = tiny_metadata("smollm")
                .into_iter()
                .filter(|(k, _)| k != key)
                .collect();
            let err = tiny(&meta).expect_err("missing key").to_string();
            assert!(err.contains(key) && err.contains(IN_MEMORY), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut meta = tiny_metadata("smollm");
        meta.retain(|(k, _)| k != KEY_EOS);
        meta.push((KEY_EOS.into(), Value::U32(1_000_000)));
        let err = tiny(&meta).expect_err("bad eos").to_string();
        assert!(err.contains(KEY_EOS) && err.contains("outside"), "{err}");

        let mut meta = tiny_metadata("smollm");
        meta.retain(|(k, _)| k != KEY_MERGES);
        meta.push((
            KEY_MERGES.into(),
            Value::Array(vec![Value::String("nospace".into())]),
        ));
        let err = tiny(&meta).expect_err("bad merge").to_string();
        assert!(err.contains(KEY_MERGES) && err.contains("nospace"), "{err}");
    }

    #[test]
    fn unknown_pre_and_model_are_named() {
        let err = tiny(&tiny_metadata("mystery-pre")).expect_err("unknown pre");
        assert!(matches!(err, TokenizerError::UnsupportedPre { .. }));
        assert!(err.to_string().contains("mystery-pre"), "{err}");

        let mut meta = tiny_metadata("smollm");
        meta.retain(|(k, _)| k != KEY_MODEL);
        meta.push((KEY_MODEL.into(), Value::String("llama".into())));
        let err = tiny(&meta).expect_err("unsupported model").to_string();
        assert!(err.contains("\"llama\""), "{err}");
    }

    #[test]
    fn from_gguf_reads_a_file_and_names_it_in_errors() {
        let dir = std::env::temp_dir().join(format!("chimera-gguf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("tiny.gguf");
        std::fs::write(&good, gguf_bytes(&tiny_metadata("gpt2"))).expect("write");
        let tok = GgufTokenizer::from_gguf(&good).expect("tokenizer from file");
        assert_eq!(tok.tokenizer.get_vocab_size(true), 3 + 256 + MERGES.len());

        let mut meta = tiny_metadata("gpt2");
        meta.retain(|(k, _)| k != KEY_TOKENS);
        let bad = dir.join("no-tokens.gguf");
        std::fs::write(&bad, gguf_bytes(&meta)).expect("write");
        let err = GgufTokenizer::from_gguf(&bad)
            .expect_err("missing tokens")
            .to_string();
        assert!(
            err.contains("no-tokens.gguf") && err.contains(KEY_TOKENS),
            "{err}"
        );

        let absent = dir.join("absent.gguf");
        let err = GgufTokenizer::from_gguf(&absent)
            .expect_err("no file")
            .to_string();
        assert!(err.contains("absent.gguf"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
