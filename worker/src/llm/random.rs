//! Random-weight models of any size, written as GGUF or as a Hugging Face directory, with a
//! small byte-level BPE tokenizer and a ChatML template: fixtures for tests and benchmarks that
//! need a real model file but not a trained model.
//!
//! The same spec and seed give the same function in both formats: weights are drawn in one
//! canonical order, and the GGUF writer permutes llama's Q/K rows as llama.cpp's converter does
//! (so the loader's interleaved RoPE on GGUF equals the half-split RoPE on safetensors).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Cursor};
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::model::{Architecture, ModelError};
use super::tokenizer::GgufTokenizer;

/// The shape of a random model; the vocabulary is the built-in tokenizer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomModelSpec {
    pub architecture: Architecture,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub intermediate: usize,
    pub seed: u64,
    /// Whether the LM head is the token embedding (no `output.weight` / `lm_head.weight`).
    pub tie_embeddings: bool,
    /// Context length in tokens (the metadata's; no weights depend on it).
    pub context: usize,
}

impl RandomModelSpec {
    /// A two-layer model with grouped-query attention, small enough for debug-build tests.
    /// Qwen3's head width differs from `hidden / heads`, as in the real family; llama ties its
    /// embeddings, as SmolLM2 does.
    pub fn tiny(architecture: Architecture) -> Self {
        RandomModelSpec {
            architecture,
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: if architecture == Architecture::Qwen3 {
                32
            } else {
                16
            },
            intermediate: 128,
            seed: 7,
            tie_embeddings: architecture == Architecture::Llama,
            context: 8192,
        }
    }

    /// TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 key/value heads,
    /// intermediate 5632), with the small built-in vocabulary.
    pub fn llama_1b() -> Self {
        RandomModelSpec {
            architecture: Architecture::Llama,
            hidden: 2048,
            layers: 22,
            heads: 32,
            kv_heads: 4,
            head_dim: 64,
            intermediate: 5632,
            seed: 11,
            tie_embeddings: false,
            context: 2048,
        }
    }
}

/// The file layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomFormat {
    /// One `model.gguf` with tokenizer metadata (`tokenizer.ggml.*`, chat template).
    Gguf,
    /// A directory with `config.json`, `model.safetensors`, `tokenizer.json` and
    /// `tokenizer_config.json`.
    Safetensors,
}

/// How the matrices are stored (norms stay f32 in GGUF, as llama.cpp writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomDType {
    F32,
    F16,
    /// Safetensors only.
    BF16,
    /// GGUF only.
    Q8_0,
    /// GGUF only.
    Q4_1,
}

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const BOS: u32 = 1;
const EOS: u32 = 2;
const MERGES: usize = 200;

/// ChatML, as SmolLM2 and Qwen ship it.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// English text the built-in BPE merges are learnt from.
const CORPUS: &str = "The quick brown fox jumps over the lazy dog. The capital of France is Paris, \
and the capital of Germany is Berlin. A customer opened an account in the city and paid the \
invoice on time. The company reported that the product was shipped to the customer with a note. \
Please describe the person, the place and the reason in one short sentence. There is a house \
on the hill where the old teacher lives with her brother and their three cats. What is the \
name of the river that runs through the town? It is the longest river in the country. \
Synthetic data should look real but contain no real person: names, addresses, comments and \
descriptions are written to match the table, the column and the other values of the row.";

/// Writes a random model and its tokenizer into `dir` (created if needed); returns the path to
/// load: the `.gguf` file or the directory.
pub fn write_random_model(
    dir: &Path,
    spec: &RandomModelSpec,
    format: RandomFormat,
    dtype: RandomDType,
) -> Result<PathBuf, ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let vocab = BpeVocab::learn();
    let tensors = random_tensors(spec, vocab.tokens.len());
    match format {
        RandomFormat::Gguf => {
            let ggml = match dtype {
                RandomDType::F32 => GgmlDType::F32,
                RandomDType::F16 => GgmlDType::F16,
                RandomDType::Q8_0 => GgmlDType::Q8_0,
                RandomDType::Q4_1 => GgmlDType::Q4_1,
                RandomDType::BF16 => return Err(unsupported(dir, dtype, format)),
            };
            let path = dir.join("model.gguf");
            write_gguf(&path, spec, &vocab, tensors, ggml)?;
            Ok(path)
        }
        RandomFormat::Safetensors => {
            let dt = match dtype {
                RandomDType::F32 => DType::F32,
                RandomDType::F16 => DType::F16,
                RandomDType::BF16 => DType::BF16,
                RandomDType::Q8_0 | RandomDType::Q4_1 => {
                    return Err(unsupported(dir, dtype, format));
                }
            };
            write_safetensors(dir, spec, &vocab, tensors, dt)?;
            Ok(dir.to_path_buf())
        }
    }
}

fn write_err(file: &Path, e: impl std::fmt::Display) -> ModelError {
    ModelError::Write {
        file: file.to_path_buf(),
        reason: e.to_string(),
    }
}

fn unsupported(dir: &Path, dtype: RandomDType, format: RandomFormat) -> ModelError {
    write_err(
        dir,
        format!("{dtype:?} weights cannot be written as {format:?}"),
    )
}

/// A random tensor with its Hugging Face name; `permute_heads` marks llama's q/k rows.
struct NamedTensor {
    hf_name: String,
    gguf_name: String,
    dims: Vec<usize>,
    data: Vec<f32>,
    permute_heads: Option<usize>,
}

fn random_tensors(spec: &RandomModelSpec, vocab: usize) -> Vec<NamedTensor> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut out = Vec::new();
    let mut push = |rng: &mut StdRng,
                    hf: String,
                    gguf: String,
                    dims: Vec<usize>,
                    init: Init,
                    permute_heads: Option<usize>| {
        let n: usize = dims.iter().product();
        let data = match init {
            Init::Uniform(a) => (0..n).map(|_| rng.random_range(-a..a)).collect(),
            Init::AroundOne => (0..n).map(|_| 1.0 + rng.random_range(-0.1..0.1)).collect(),
        };
        out.push(NamedTensor {
            hf_name: hf,
            gguf_name: gguf,
            dims,
            data,
            permute_heads,
        });
    };
    let fan_in = |n: usize| Init::Uniform((3.0 / n as f32).sqrt());
    let (h, hd) = (spec.hidden, spec.head_dim);
    let (q_out, kv_out) = (spec.heads * hd, spec.kv_heads * hd);
    let llama = spec.architecture == Architecture::Llama;
    push(
        &mut rng,
        "model.embed_tokens.weight".into(),
        "token_embd.weight".into(),
        vec![vocab, h],
        Init::Uniform(1.0),
        None,
    );
    for l in 0..spec.layers {
        let hf = |s: &str| format!("model.layers.{l}.{s}");
        let gg = |s: &str| format!("blk.{l}.{s}");
        let vec_init = Init::AroundOne;
        push(
            &mut rng,
            hf("input_layernorm.weight"),
            gg("attn_norm.weight"),
            vec![h],
            vec_init,
            None,
        );
        for (p, g, out_rows, heads) in [
            ("q", "attn_q", q_out, spec.heads),
            ("k", "attn_k", kv_out, spec.kv_heads),
            ("v", "attn_v", kv_out, 0),
        ] {
            let permute = (llama && heads > 0).then_some(heads);
            push(
                &mut rng,
                hf(&format!("self_attn.{p}_proj.weight")),
                gg(&format!("{g}.weight")),
                vec![out_rows, h],
                fan_in(h),
                permute,
            );
            if spec.architecture == Architecture::Qwen2 {
                push(
                    &mut rng,
                    hf(&format!("self_attn.{p}_proj.bias")),
                    gg(&format!("{g}.bias")),
                    vec![out_rows],
                    Init::Uniform(0.1),
                    None,
                );
            }
        }
        if spec.architecture == Architecture::Qwen3 {
            for (p, g) in [("q", "attn_q_norm"), ("k", "attn_k_norm")] {
                push(
                    &mut rng,
                    hf(&format!("self_attn.{p}_norm.weight")),
                    gg(&format!("{g}.weight")),
                    vec![hd],
                    vec_init,
                    None,
                );
            }
        }
        push(
            &mut rng,
            hf("self_attn.o_proj.weight"),
            gg("attn_output.weight"),
            vec![h, q_out],
            fan_in(q_out),
            None,
        );
        push(
            &mut rng,
            hf("post_attention_layernorm.weight"),
            gg("ffn_norm.weight"),
            vec![h],
            vec_init,
            None,
        );
        for (p, g) in [("gate", "ffn_gate"), ("up", "ffn_up")] {
            push(
                &mut rng,
                hf(&format!("mlp.{p}_proj.weight")),
                gg(&format!("{g}.weight")),
                vec![spec.intermediate, h],
                fan_in(h),
                None,
            );
        }
        push(
            &mut rng,
            hf("mlp.down_proj.weight"),
            gg("ffn_down.weight"),
            vec![h, spec.intermediate],
            fan_in(spec.intermediate),
            None,
        );
    }
    push(
        &mut rng,
        "model.norm.weight".into(),
        "output_norm.weight".into(),
        vec![h],
        Init::AroundOne,
        None,
    );
    if !spec.tie_embeddings {
        push(
            &mut rng,
            "lm_head.weight".into(),
            "output.weight".into(),
            vec![vocab, h],
            fan_in(h),
            None,
        );
    }
    out
}

#[derive(Clone, Copy)]
enum Init {
    Uniform(f32),
    AroundOne,
}

/// llama.cpp's conversion of llama Q/K rows: within each head, row `i` of the first half goes
/// to `2i` and row `i` of the second half to `2i + 1`, so that interleaved RoPE pairs match
/// Hugging Face's half-split pairs.
fn permute_for_interleaved(data: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0f32; data.len()];
    for head in 0..heads {
        for i in 0..hd / 2 {
            for (src, dst) in [(i, 2 * i), (i + hd / 2, 2 * i + 1)] {
                let s = (head * hd + src) * cols;
                let d = (head * hd + dst) * cols;
                out[d..d + cols].copy_from_slice(&data[s..s + cols]);
            }
        }
    }
    out
}

fn write_gguf(
    path: &Path,
    spec: &RandomModelSpec,
    vocab: &BpeVocab,
    tensors: Vec<NamedTensor>,
    ggml: GgmlDType,
) -> Result<(), ModelError> {
    let block = ggml.block_size();
    let mut qtensors = Vec::with_capacity(tensors.len());
    for t in tensors {
        let matrix = t.dims.len() == 2;
        let data = match (t.permute_heads, t.dims.as_slice()) {
            (Some(heads), &[rows, cols]) => permute_for_interleaved(&t.data, rows, cols, heads),
            _ => t.data,
        };
        if matrix && t.dims[1] % block != 0 {
            return Err(write_err(
                path,
                format!(
                    "tensor {} has rows of {} values, not a multiple of the {ggml:?} block ({block})",
                    t.gguf_name, t.dims[1]
                ),
            ));
        }
        let dtype = if matrix { ggml } else { GgmlDType::F32 };
        let q = Tensor::from_vec(data, t.dims.clone(), &Device::Cpu)
            .and_then(|x| QTensor::quantize(&x, dtype))
            .map_err(|e| write_err(path, format!("tensor {}: {e}", t.gguf_name)))?;
        qtensors.push((t.gguf_name, q));
    }
    let arch = spec.architecture.name();
    let u32v = |n: usize| Value::U32(n as u32);
    let (eps, theta) = rope_defaults(spec.architecture);
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            "general.name".into(),
            Value::String(format!("chimera-random-{arch}")),
        ),
        (format!("{arch}.block_count"), u32v(spec.layers)),
        (format!("{arch}.context_length"), u32v(spec.context)),
        (format!("{arch}.embedding_length"), u32v(spec.hidden)),
        (
            format!("{arch}.feed_forward_length"),
            u32v(spec.intermediate),
        ),
        (format!("{arch}.attention.head_count"), u32v(spec.heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            u32v(spec.kv_heads),
        ),
        (format!("{arch}.attention.key_length"), u32v(spec.head_dim)),
        (
            format!("{arch}.attention.value_length"),
            u32v(spec.head_dim),
        ),
        (
            format!("{arch}.attention.layer_norm_rms_epsilon"),
            Value::F32(eps as f32),
        ),
        (format!("{arch}.rope.freq_base"), Value::F32(theta as f32)),
        (format!("{arch}.rope.dimension_count"), u32v(spec.head_dim)),
        (format!("{arch}.vocab_size"), u32v(vocab.tokens.len())),
    ];
    metadata.extend(vocab.gguf_metadata());
    let meta_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> =
        qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let file = File::create(path).map_err(|e| write_err(path, e))?;
    let mut w = BufWriter::new(file);
    gguf_file::write(&mut w, &meta_refs, &tensor_refs).map_err(|e| write_err(path, e))?;
    std::io::Write::flush(&mut w).map_err(|e| write_err(path, e))
}

/// RMSNorm epsilon and RoPE base as each family's configs set them.
fn rope_defaults(arch: Architecture) -> (f64, f64) {
    match arch {
        Architecture::Llama => (1e-5, 10_000.0),
        Architecture::Qwen2 | Architecture::Qwen3 => (1e-6, 1_000_000.0),
    }
}

fn write_safetensors(
    dir: &Path,
    spec: &RandomModelSpec,
    vocab: &BpeVocab,
    tensors: Vec<NamedTensor>,
    dtype: DType,
) -> Result<(), ModelError> {
    let weights_path = dir.join("model.safetensors");
    let mut map = HashMap::new();
    for t in tensors {
        let x = Tensor::from_vec(t.data, t.dims, &Device::Cpu)
            .and_then(|x| x.to_dtype(dtype))
            .map_err(|e| write_err(&weights_path, format!("tensor {}: {e}", t.hf_name)))?;
        map.insert(t.hf_name, x);
    }
    candle_core::safetensors::save(&map, &weights_path).map_err(|e| write_err(&weights_path, e))?;

    let (eps, theta) = rope_defaults(spec.architecture);
    let arch = spec.architecture.name();
    let class = match spec.architecture {
        Architecture::Llama => "LlamaForCausalLM",
        Architecture::Qwen2 => "Qwen2ForCausalLM",
        Architecture::Qwen3 => "Qwen3ForCausalLM",
    };
    let config = serde_json::json!({
        "architectures": [class],
        "model_type": arch,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": spec.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": spec.context,
        "rms_norm_eps": eps,
        "rope_theta": theta,
        "rope_scaling": null,
        "vocab_size": vocab.tokens.len(),
        "tie_word_embeddings": spec.tie_embeddings,
        "attention_bias": spec.architecture == Architecture::Qwen2,
        "bos_token_id": BOS,
        "eos_token_id": EOS,
        "torch_dtype": match dtype {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            _ => "float32",
        },
    });
    write_json(&dir.join("config.json"), &config)?;

    let tok_path = dir.join("tokenizer.json");
    let tokenizer = vocab.tokenizer().map_err(|e| write_err(&tok_path, e))?;
    tokenizer
        .tokenizer
        .save(&tok_path, false)
        .map_err(|e| write_err(&tok_path, e))?;
    let tok_config = serde_json::json!({
        "chat_template": CHAT_TEMPLATE,
        "bos_token": SPECIALS[BOS as usize],
        "eos_token": SPECIALS[EOS as usize],
        "pad_token": SPECIALS[EOS as usize],
        "add_bos_token": false,
        "model_max_length": spec.context,
        "tokenizer_class": "GPT2Tokenizer",
    });
    write_json(&dir.join("tokenizer_config.json"), &tok_config)
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| write_err(path, e))?;
    std::fs::write(path, text).map_err(|e| write_err(path, e))
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut out = ['\0'; 256];
    let mut extra = 0;
    for (b, slot) in out.iter_mut().enumerate() {
        let b = b as u32;
        let code = if printable(b) {
            b
        } else {
            extra += 1;
            255 + extra
        };
        *slot = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    out
}

/// The random models' tokenizer, for tests that need a real one but no model.
#[cfg(test)]
pub(crate) fn tokenizer() -> Result<GgufTokenizer, String> {
    BpeVocab::learn().tokenizer()
}

/// The built-in tokenizer: control tokens, the 256 byte symbols, and merges learnt greedily
/// from [`CORPUS`].
struct BpeVocab {
    tokens: Vec<String>,
    merges: Vec<String>,
}

impl BpeVocab {
    fn learn() -> Self {
        let chars = byte_chars();
        let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        tokens.extend(chars.iter().map(char::to_string));
        let mut known: HashSet<String> = tokens.iter().cloned().collect();
        // Words as GPT-2 pre-tokenizes them, roughly: a leading space belongs to the word.
        let mut words: Vec<Vec<String>> = CORPUS
            .split(' ')
            .enumerate()
            .map(|(i, w)| {
                let text = if i == 0 {
                    w.to_owned()
                } else {
                    format!(" {w}")
                };
                text.bytes()
                    .map(|b| chars[b as usize].to_string())
                    .collect()
            })
            .collect();
        let mut merges = Vec::new();
        while merges.len() < MERGES {
            let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
            for w in &words {
                for pair in w.windows(2) {
                    *counts.entry((&pair[0], &pair[1])).or_default() += 1;
                }
            }
            // Most frequent pair; ties broken by the pair itself, for determinism.
            let Some(((a, b), _)) = counts
                .into_iter()
                .max_by(|(p1, c1), (p2, c2)| c1.cmp(c2).then_with(|| p2.cmp(p1)))
            else {
                break;
            };
            let (a, b) = (a.to_owned(), b.to_owned());
            let joined = format!("{a}{b}");
            for w in &mut words {
                let mut i = 0;
                while i + 1 < w.len() {
                    if w[i] == a && w[i + 1] == b {
                        w[i] = joined.clone();
                        w.remove(i + 1);
                    }
                    i += 1;
                }
            }
            merges.push(format!("{a} {b}"));
            if known.insert(joined.clone()) {
                tokens.push(joined);
            }
        }
        BpeVocab { tokens, merges }
    }

    fn gguf_metadata(&self) -> Vec<(String, Value)> {
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let types = (0..self.tokens.len())
            .map(|i| Value::I32(if i < SPECIALS.len() { 3 } else { 1 }))
            .collect();
        vec![
            ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
            ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
            ("tokenizer.ggml.tokens".into(), strings(&self.tokens)),
            ("tokenizer.ggml.merges".into(), strings(&self.merges)),
            ("tokenizer.ggml.token_type".into(), Value::Array(types)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(BOS)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(EOS)),
            ("tokenizer.ggml.padding_token_id".into(), Value::U32(EOS)),
            ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
            (
                "tokenizer.chat_template".into(),
                Value::String(CHAT_TEMPLATE.into()),
            ),
        ]
    }

    /// The same tokenizer as the GGUF metadata describes, rebuilt by the GGUF reader itself.
    fn tokenizer(&self) -> Result<GgufTokenizer, String> {
        let metadata = self.gguf_metadata();
        let refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut bytes = Cursor::new(Vec::new());
        gguf_file::write(&mut bytes, &refs, &[]).map_err(|e| e.to_string())?;
        bytes.set_position(0);
        let content = Content::read(&mut bytes).map_err(|e| e.to_string())?;
        GgufTokenizer::from_content(&content).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_chars_are_distinct_and_printable() {
        let chars = byte_chars();
        let set: HashSet<char> = chars.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
    }

    #[test]
    fn learnt_vocabulary_tokenizes_and_round_trips() {
        let vocab = BpeVocab::learn();
        assert_eq!(vocab.merges.len(), MERGES);
        let tok = vocab.tokenizer().expect("tokenizer");
        assert_eq!(tok.tokenizer.get_vocab_size(true), vocab.tokens.len());
        assert_eq!((tok.bos, tok.eos), (Some(BOS), Some(EOS)));
        let text = "<|im_start|>user\nThe capital of France?<|im_end|>\n";
        let enc = tok.tokenizer.encode(text, false).expect("encode");
        let ids = enc.get_ids();
        assert_eq!(ids[0], BOS);
        // Merges make common words shorter than their bytes.
        assert!(ids.len() < text.len() / 2, "{} tokens", ids.len());
        let back = tok.tokenizer.decode(ids, false).expect("decode");
        assert_eq!(back, text);
    }

    #[test]
    fn permutation_moves_half_pairs_together() {
        // One head of width 4, one column: rows [0, 1, 2, 3] become [0, 2, 1, 3].
        let out = permute_for_interleaved(&[0.0, 1.0, 2.0, 3.0], 4, 1, 1);
        assert_eq!(out, vec![0.0, 2.0, 1.0, 3.0]);
    }
}
