//! The model's tokenizer, loaded from either of the two places models ship it:
//!
//! - a GGUF file's metadata (`tokenizer.ggml.*`): [`GgufTokenizer`] rebuilds a
//!   `tokenizers::Tokenizer` the way llama.cpp reads the same keys: `model` picks the algorithm
//!   (only byte-level BPE, "gpt2", so far), `pre` picks the pre-tokenizer regex, control tokens
//!   become special tokens that are never split;
//! - a Hugging Face model directory: `tokenizer.json`, `tokenizer_config.json` (chat template,
//!   BOS/EOS strings, `add_bos_token`) and `generation_config.json` (the stop ids).
//!
//! [`load_tokenizer`] picks by path and returns a [`ChimeraTokenizer`], which also knows the exact
//! bytes every token decodes to ([`ChimeraTokenizer::token_bytes`]), the vocabulary that
//! constrained decoding walks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::PrependScheme;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};
use tokenizers::{DecoderWrapper, normalizers};

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
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";

/// Texts of control tokens that end a turn or the text, which llama.cpp also treats as stops
/// when the metadata names only one EOS.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<|return|>",
    "</s>",
];

/// Files of a Hugging Face model directory.
const HF_TOKENIZER_JSON: &str = "tokenizer.json";
const HF_TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const HF_GENERATION_CONFIG: &str = "generation_config.json";
/// Newer `transformers` saves the chat template beside the config instead of inside it.
const HF_CHAT_TEMPLATE_JINJA: &str = "chat_template.jinja";

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
    /// The `tokenizers` crate rejected the rebuilt parts (or `tokenizer.json`).
    #[error("{}: cannot build the tokenizer: {source}", file.display())]
    Build {
        file: PathBuf,
        source: tokenizers::Error,
    },
    /// A file of a model directory could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// A JSON file of a model directory is not valid JSON.
    #[error("{}: not valid JSON: {source}", file.display())]
    Json {
        file: PathBuf,
        source: serde_json::Error,
    },
    /// A key of a model directory's JSON file has a value this module cannot use.
    #[error("{}: {key}: {reason}", file.display())]
    BadKey {
        file: PathBuf,
        key: String,
        reason: String,
    },
    /// The tokenizer's decoder is neither byte-level nor SentencePiece-style, so the bytes of its
    /// tokens are unknown.
    #[error(
        "{}: the decoder is neither ByteLevel nor Metaspace/ByteFallback; token bytes are unknown",
        file.display()
    )]
    UnsupportedDecoder { file: PathBuf },
    /// The path is neither a `.gguf` file nor a model directory with a `tokenizer.json`.
    #[error(
        "{}: expected a .gguf file or a directory with tokenizer.json",
        path.display()
    )]
    NotAModel { path: PathBuf },
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

/// How token strings map back to bytes, read from the tokenizer's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceBytes {
    /// GPT-2 byte-level BPE: every char of a token stands for one byte.
    ByteLevel,
    /// SentencePiece style: `space` stands for ' ', `<0xAB>` is a raw byte when `byte_fallback`.
    Metaspace { space: char, byte_fallback: bool },
}

/// A model's tokenizer with what prompting and constrained decoding need: the special ids, the
/// stop ids, the chat template, and the bytes of every token.
#[derive(Debug, Clone)]
pub struct ChimeraTokenizer {
    /// The tokenizer; special tokens are added tokens marked special.
    pub tokenizer: Tokenizer,
    /// Beginning-of-sequence id, if the model has one.
    pub bos: Option<u32>,
    /// Ids that end generation, the configured EOS first (e.g. `<|im_end|>`, `<|endoftext|>`).
    pub eos: Vec<u32>,
    /// Padding id, if the model names one.
    pub pad: Option<u32>,
    /// Whether a prompt starts with `bos` when the chat template does not write it itself.
    pub add_bos: bool,
    /// Ids of the special (control) tokens, ascending.
    pub special_ids: Vec<u32>,
    /// The Jinja chat template, unrendered; `None` when the model ships none.
    pub chat_template: Option<String>,
    /// The BOS token's text, as chat templates see it (`bos_token`).
    pub bos_token: Option<String>,
    /// The EOS token's text, as chat templates see it (`eos_token`).
    pub eos_token: Option<String>,
    /// The file or directory this was loaded from (errors name it).
    pub source: PathBuf,
    pieces: PieceBytes,
}

/// Loads the tokenizer of the model at `model_path`: a `.gguf` file (metadata) or a Hugging Face
/// model directory (`tokenizer.json` and its configs).
pub fn load_tokenizer(model_path: &Path) -> Result<ChimeraTokenizer, TokenizerError> {
    if model_path.is_dir() {
        return ChimeraTokenizer::from_hf_dir(model_path);
    }
    let is_gguf = model_path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
    if is_gguf {
        ChimeraTokenizer::from_gguf(model_path)
    } else {
        Err(TokenizerError::NotAModel {
            path: model_path.to_path_buf(),
        })
    }
}

impl From<GgufTokenizer> for ChimeraTokenizer {
    fn from(gguf: GgufTokenizer) -> Self {
        Self::from_gguf_parts(gguf, &[], Path::new(IN_MEMORY))
    }
}

impl ChimeraTokenizer {
    /// Reads a GGUF file's metadata: the rebuilt tokenizer plus the end-of-turn ids
    /// (`tokenizer.ggml.eot_token_id`, `eom_token_id`).
    pub fn from_gguf(path: &Path) -> Result<Self, TokenizerError> {
        let content = read_content(path)?;
        let meta = GgufMetadata::new(&content, path);
        let gguf = GgufTokenizer::build(meta)?;
        let n_tokens = gguf.tokenizer.get_vocab_size(true);
        let mut extra_stops = Vec::new();
        for key in [KEY_EOT, KEY_EOM] {
            if let Some(id) = meta.opt_u32(key)? {
                if id as usize >= n_tokens {
                    return Err(meta
                        .bad(
                            key,
                            format!("id {id} is outside the {n_tokens}-token vocabulary"),
                        )
                        .into());
                }
                extra_stops.push(id);
            }
        }
        Ok(Self::from_gguf_parts(gguf, &extra_stops, path))
    }

    fn from_gguf_parts(gguf: GgufTokenizer, extra_stops: &[u32], source: &Path) -> Self {
        let text = |id: Option<u32>| id.and_then(|i| gguf.tokenizer.id_to_token(i));
        let mut eos: Vec<u32> = gguf
            .eos
            .into_iter()
            .chain(extra_stops.iter().copied())
            .collect();
        for &id in &gguf.special_ids {
            if gguf
                .tokenizer
                .id_to_token(id)
                .is_some_and(|t| END_OF_GENERATION_TEXTS.contains(&t.as_str()))
            {
                eos.push(id);
            }
        }
        dedup_in_order(&mut eos);
        Self {
            bos_token: text(gguf.bos),
            eos_token: text(eos.first().copied()),
            tokenizer: gguf.tokenizer,
            bos: gguf.bos,
            eos,
            pad: gguf.pad,
            add_bos: gguf.add_bos,
            special_ids: gguf.special_ids,
            chat_template: gguf.chat_template,
            source: source.to_path_buf(),
            pieces: PieceBytes::ByteLevel,
        }
    }

    /// Wraps a `tokenizers::Tokenizer` with no configs: no BOS/EOS, no chat template; special
    /// ids are its added tokens marked special. `source` names it in errors.
    pub fn from_tokenizer(tokenizer: Tokenizer, source: &Path) -> Result<Self, TokenizerError> {
        let pieces = piece_bytes(&tokenizer).ok_or_else(|| TokenizerError::UnsupportedDecoder {
            file: source.to_path_buf(),
        })?;
        let mut special_ids: Vec<u32> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        special_ids.sort_unstable();
        Ok(Self {
            tokenizer,
            bos: None,
            eos: Vec::new(),
            pad: None,
            add_bos: false,
            special_ids,
            chat_template: None,
            bos_token: None,
            eos_token: None,
            source: source.to_path_buf(),
            pieces,
        })
    }

    /// Reads a Hugging Face model directory: `tokenizer.json` (required), `tokenizer_config.json`
    /// and `generation_config.json` (optional), and `chat_template.jinja` when the config holds
    /// no template.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let tokenizer_file = dir.join(HF_TOKENIZER_JSON);
        if !tokenizer_file.is_file() {
            return Err(TokenizerError::NotAModel {
                path: dir.to_path_buf(),
            });
        }
        let tokenizer =
            Tokenizer::from_file(&tokenizer_file).map_err(|source| TokenizerError::Build {
                file: tokenizer_file.clone(),
                source,
            })?;
        let mut tok = Self::from_tokenizer(tokenizer, &tokenizer_file)?;
        tok.source = dir.to_path_buf();

        let config_file = dir.join(HF_TOKENIZER_CONFIG);
        let config = read_optional_json(&config_file)?.unwrap_or_default();
        let token_field = |key: &str| -> Result<Option<String>, TokenizerError> {
            match config.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(bad_key(
                        &config_file,
                        key,
                        "object without a string \"content\"",
                    )),
                },
                Some(other) => Err(bad_key(
                    &config_file,
                    key,
                    format!("expected a string or {{\"content\": ..}}, found {other}"),
                )),
            }
        };
        let id_of = |key: &str, text: &str| {
            tok.tokenizer.token_to_id(text).ok_or_else(|| {
                bad_key(
                    &config_file,
                    key,
                    format!("{text:?} is not in the vocabulary"),
                )
            })
        };
        let bos_token = token_field("bos_token")?;
        let eos_token = token_field("eos_token")?;
        let pad_token = token_field("pad_token")?;
        let bos = bos_token
            .as_deref()
            .map(|t| id_of("bos_token", t))
            .transpose()?;
        let config_eos = eos_token
            .as_deref()
            .map(|t| id_of("eos_token", t))
            .transpose()?;
        let pad = pad_token
            .as_deref()
            .map(|t| id_of("pad_token", t))
            .transpose()?;
        let add_bos = match config.get("add_bos_token") {
            None | Some(serde_json::Value::Null) => {
                // No flag: whatever tokenizer.json's post-processor does.
                bos.is_some_and(|b| {
                    tok.tokenizer
                        .encode("a", true)
                        .is_ok_and(|e| e.get_ids().first() == Some(&b))
                })
            }
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad_key(
                    &config_file,
                    "add_bos_token",
                    format!("expected true or false, found {other}"),
                ));
            }
        };
        let mut chat_template = match config.get("chat_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // Several named templates: the "default" one, else the first.
            Some(serde_json::Value::Array(named)) => {
                let template_of = |v: &serde_json::Value| {
                    v.get("template")
                        .and_then(|t| t.as_str())
                        .map(str::to_owned)
                };
                let default = named
                    .iter()
                    .find(|v| v.get("name").and_then(|n| n.as_str()) == Some("default"));
                default
                    .or(named.first())
                    .map(|v| {
                        template_of(v).ok_or_else(|| {
                            bad_key(
                                &config_file,
                                "chat_template",
                                "entry without a \"template\"",
                            )
                        })
                    })
                    .transpose()?
            }
            Some(other) => {
                return Err(bad_key(
                    &config_file,
                    "chat_template",
                    format!("expected a string or a list, found {other}"),
                ));
            }
        };
        if chat_template.is_none() {
            let jinja = dir.join(HF_CHAT_TEMPLATE_JINJA);
            if jinja.is_file() {
                let text =
                    std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
                        file: jinja,
                        source,
                    })?;
                chat_template = Some(text);
            }
        }

        let generation_file = dir.join(HF_GENERATION_CONFIG);
        let generation = read_optional_json(&generation_file)?.unwrap_or_default();
        let vocab = tok.vocab_size();
        let check = |key: &str, v: &serde_json::Value| -> Result<u32, TokenizerError> {
            v.as_u64()
                .and_then(|i| u32::try_from(i).ok())
                .filter(|&i| (i as usize) < vocab)
                .ok_or_else(|| {
                    bad_key(
                        &generation_file,
                        key,
                        format!("{v} is not an id in the {vocab}-token vocabulary"),
                    )
                })
        };
        let generation_eos = match generation.get("eos_token_id") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .map(|v| check("eos_token_id", v))
                .collect::<Result<_, _>>()?,
            Some(v) => vec![check("eos_token_id", v)?],
        };
        let bos = match (bos, generation.get("bos_token_id")) {
            (Some(b), _) => Some(b),
            (None, Some(v)) if !v.is_null() => Some(check("bos_token_id", v)?),
            (None, _) => None,
        };

        let mut eos: Vec<u32> = config_eos.into_iter().chain(generation_eos).collect();
        dedup_in_order(&mut eos);
        let text = |id: Option<u32>| id.and_then(|i| tok.tokenizer.id_to_token(i));
        tok.bos_token = bos_token.or_else(|| text(bos));
        tok.eos_token = eos_token.or_else(|| text(eos.first().copied()));
        tok.bos = bos;
        tok.eos = eos;
        tok.pad = pad;
        tok.add_bos = add_bos;
        tok.chat_template = chat_template;
        Ok(tok)
    }

    /// Number of token ids (the model's embedding may have more rows; those ids decode to
    /// nothing).
    pub fn vocab_size(&self) -> usize {
        let added_max = self
            .tokenizer
            .get_added_tokens_decoder()
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0);
        self.tokenizer.get_vocab_size(true).max(added_max)
    }

    /// Ids whose bytes carry toktrie's special-token marker: the special ids and added tokens
    /// that look like `<...>`, so a grammar can never spell them by accident.
    fn marked_ids(&self) -> HashSet<u32> {
        let mut marked: HashSet<u32> = self.special_ids.iter().copied().collect();
        for (id, token) in self.tokenizer.get_added_tokens_decoder() {
            let c = &token.content;
            if token.special || (c.len() > 2 && c.starts_with('<') && c.ends_with('>')) {
                marked.insert(id);
            }
        }
        marked
    }

    /// The exact bytes each token id decodes to, indexed by id. Special tokens are their text
    /// behind toktrie's marker byte 0xFF (`TokTrie::SPECIAL_TOKEN_MARKER`); ids without a token
    /// are empty. This is the vocabulary llguidance's token trie is built from.
    pub fn token_bytes(&self) -> Vec<Vec<u8>> {
        let marked = self.marked_ids();
        (0..self.vocab_size())
            .map(|id| {
                let Ok(id) = u32::try_from(id) else {
                    return Vec::new();
                };
                let Some(piece) = self.tokenizer.id_to_token(id) else {
                    return Vec::new();
                };
                if marked.contains(&id) {
                    let mut bytes = Vec::with_capacity(piece.len() + 1);
                    bytes.push(SPECIAL_TOKEN_MARKER);
                    bytes.extend_from_slice(piece.as_bytes());
                    bytes
                } else {
                    piece_to_bytes(&piece, self.pieces)
                }
            })
            .collect()
    }

    /// A copy of the tokenizer that turns text into ids as the model would see that text in a
    /// longer prompt: special tokens' texts are plain text, no truncation or padding, and no
    /// space prepended by SentencePiece normalizers.
    pub fn text_encoder(&self) -> Tokenizer {
        let mut enc = self.tokenizer.clone();
        enc.set_encode_special_tokens(true);
        // Neither can fail in a way that matters: removing truncation always succeeds, and an
        // encoder that keeps its normalizer only loses canonical forcing (callers check that
        // ids spell their text).
        let _ = enc.with_truncation(None);
        enc.with_padding(None);
        if let Some(n) = enc.get_normalizer().cloned() {
            let _ = enc.with_normalizer(without_prepend(n));
        }
        if let Some(p) = enc.get_pre_tokenizer().cloned() {
            enc.with_pre_tokenizer(Some(never_prepend(p)));
        }
        enc
    }
}

/// toktrie's special-token marker byte (it can never start a valid UTF-8 sequence).
const SPECIAL_TOKEN_MARKER: u8 = 0xff;

fn dedup_in_order(ids: &mut Vec<u32>) {
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(*id));
}

fn bad_key(file: &Path, key: &str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::BadKey {
        file: file.to_path_buf(),
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// A JSON object file, `None` when the file does not exist.
fn read_optional_json(
    file: &Path,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, TokenizerError> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenizerError::Io {
                file: file.to_path_buf(),
                source,
            });
        }
    };
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(bad_key(file, "(top level)", "expected a JSON object")),
        Err(source) => Err(TokenizerError::Json {
            file: file.to_path_buf(),
            source,
        }),
    }
}

/// Reads the decoder to learn how token strings map to bytes; `None` when neither scheme
/// applies.
fn piece_bytes(tokenizer: &Tokenizer) -> Option<PieceBytes> {
    fn walk(d: &DecoderWrapper, byte_level: &mut bool, fallback: &mut bool, space: &mut char) {
        match d {
            DecoderWrapper::ByteLevel(_) => *byte_level = true,
            DecoderWrapper::ByteFallback(_) => *fallback = true,
            DecoderWrapper::Metaspace(m) => *space = m.get_replacement(),
            DecoderWrapper::Replace(r) => {
                // `Replace` keeps its pattern private; its serialized form shows it.
                if let Ok(v) = serde_json::to_value(r) {
                    let content = v.get("content").and_then(|c| c.as_str());
                    let pattern = v.pointer("/pattern/String").and_then(|p| p.as_str());
                    if let (Some(" "), Some(p)) = (content, pattern) {
                        let mut chars = p.chars();
                        if let (Some(c), None) = (chars.next(), chars.next()) {
                            *space = c;
                        }
                    }
                }
            }
            DecoderWrapper::Sequence(seq) => {
                for d in seq.get_decoders() {
                    walk(d, byte_level, fallback, space);
                }
            }
            _ => {}
        }
    }
    let (mut byte_level, mut fallback, mut space) = (false, false, ' ');
    walk(
        tokenizer.get_decoder()?,
        &mut byte_level,
        &mut fallback,
        &mut space,
    );
    if byte_level {
        Some(PieceBytes::ByteLevel)
    } else if fallback || space != ' ' {
        Some(PieceBytes::Metaspace {
            space,
            byte_fallback: fallback,
        })
    } else {
        None
    }
}

/// The bytes of one (non-special) token string.
fn piece_to_bytes(piece: &str, scheme: PieceBytes) -> Vec<u8> {
    match scheme {
        // As the ByteLevel decoder does: a token with a char outside the table (an added
        // token's raw text) is its UTF-8.
        PieceBytes::ByteLevel => piece
            .chars()
            .map(byte_level_char_to_byte)
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_else(|| piece.as_bytes().to_vec()),
        PieceBytes::Metaspace {
            space,
            byte_fallback,
        } => {
            if byte_fallback
                && let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>'))
                && hex.len() == 2
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                return vec![b];
            }
            piece.replace(space, " ").into_bytes()
        }
    }
}

/// GPT-2's byte-to-unicode table, inverted: printable Latin-1 bytes stand for themselves, the
/// other 68 bytes (controls, space, DEL, NBSP, soft hyphen) for U+0100.. in byte order.
fn byte_level_char_to_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    match code {
        0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff => u8::try_from(code).ok(),
        0x100..=0x143 => {
            let n = code - 0x100;
            let byte = match n {
                0..=0x20 => n,                  // 0x00..=0x20
                0x21..=0x42 => n - 0x21 + 0x7f, // 0x7f..=0xa0
                _ => 0xad,
            };
            u8::try_from(byte).ok()
        }
        _ => None,
    }
}

fn without_prepend(n: NormalizerWrapper) -> Option<NormalizerWrapper> {
    match n {
        NormalizerWrapper::Prepend(_) => None,
        NormalizerWrapper::Sequence(seq) => {
            let kept: Vec<_> = seq
                .as_ref()
                .iter()
                .cloned()
                .filter_map(without_prepend)
                .collect();
            (!kept.is_empty()).then(|| normalizers::Sequence::new(kept).into())
        }
        other => Some(other),
    }
}

fn never_prepend(p: PreTokenizerWrapper) -> PreTokenizerWrapper {
    match p {
        PreTokenizerWrapper::Metaspace(mut m) => {
            m.set_prepend_scheme(PrependScheme::Never);
            PreTokenizerWrapper::Metaspace(m)
        }
        PreTokenizerWrapper::Sequence(seq) => {
            Sequence::new(seq.as_ref().iter().cloned().map(never_prepend).collect()).into()
        }
        other => other,
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
