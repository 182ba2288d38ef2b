//! The model's shape and options, read from GGUF metadata or a Hugging Face `config.json`.

use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use super::ModelError;
use crate::llm::gguf::{GgufError, GgufMetadata};

/// The transformer families this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// Llama 2/3, SmolLM, TinyLlama, Mistral-style dense models without sliding windows.
    Llama,
    /// Qwen 2 / 2.5: biases on q/k/v.
    Qwen2,
    /// Qwen 3 (dense): per-head RMSNorm on q and k before RoPE, no biases.
    Qwen3,
}

impl Architecture {
    /// The name GGUF (`general.architecture`) and `config.json` (`model_type`) use.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            _ => return None,
        })
    }
}

/// Which dimensions RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)`: llama GGUF files, whose Q/K rows llama.cpp permuted at conversion.
    Interleaved,
    /// Pairs `(i, i + head_dim/2)` ("neox", `rotate_half`): Hugging Face weights, and qwen GGUF.
    HalfSplit,
}

/// How RoPE frequencies are adjusted for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by a factor (all frequencies divided by it).
    Linear(f64),
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_context: f64,
    },
    /// Per-frequency divisors (GGUF `rope_freqs.weight`, llama.cpp's freq factors).
    Factors(Vec<f32>),
}

/// The model's shape and options.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The transformer family.
    pub architecture: Architecture,
    /// Rows of the embedding and of the LM head.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of one head (not always `hidden / heads`, e.g. qwen3).
    pub head_dim: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate: usize,
    /// Longest sequence (prefix included) the model accepts.
    pub context_length: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub rms_eps: f64,
    /// Which dimensions RoPE pairs up.
    pub rope_style: RopeStyle,
    /// Long-context frequency adjustment.
    pub rope_scaling: RopeScaling,
    /// Whether the LM head is the token embedding.
    pub tie_embeddings: bool,
}

impl ModelConfig {
    /// Checks the relations between the sizes; `file` names errors.
    pub(crate) fn validate(&self, file: &Path) -> Result<(), ModelError> {
        let bad = |key: &str, reason: String| ModelError::BadKey {
            file: file.to_path_buf(),
            key: key.to_owned(),
            reason,
        };
        for (key, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("intermediate", self.intermediate),
            ("context_length", self.context_length),
        ] {
            if v == 0 {
                return Err(bad(key, "must be positive".into()));
            }
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                format!("{} is not a positive even number", self.head_dim),
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(bad(
                "kv_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.heads, self.kv_heads
                ),
            ));
        }
        if !is_positive(self.rope_theta) || !is_positive(self.rms_eps) {
            return Err(bad(
                "rope_theta/rms_eps",
                format!("{} and {} must be positive", self.rope_theta, self.rms_eps),
            ));
        }
        Ok(())
    }

    /// Reads the configuration from GGUF metadata (`general.architecture` then `<arch>.*`).
    /// The vocabulary size comes from `<arch>.vocab_size` or, if absent, from the caller.
    pub(crate) fn from_gguf(
        meta: &GgufMetadata<'_>,
        vocab_from_tensor: Option<usize>,
    ) -> Result<Self, ModelError> {
        let arch_name = meta.string("general.architecture")?;
        let file = meta.file();
        let architecture =
            Architecture::from_name(arch_name).ok_or_else(|| ModelError::Unsupported {
                file: file.to_path_buf(),
                key: "general.architecture".into(),
                value: format!("{arch_name:?}"),
                reason: "supported: llama, qwen2, qwen3".into(),
            })?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let hidden = gguf_usize(meta, &key("embedding_length"))?;
        let heads = gguf_usize(meta, &key("attention.head_count"))?;
        let kv_heads = gguf_opt_usize(meta, &key("attention.head_count_kv"))?.unwrap_or(heads);
        let head_dim = match gguf_opt_usize(meta, &key("attention.key_length"))? {
            Some(d) => d,
            None => {
                if heads == 0 || !hidden.is_multiple_of(heads) {
                    return Err(meta
                        .bad(
                            &key("attention.head_count"),
                            format!("{heads} heads do not divide the embedding length {hidden}"),
                        )
                        .into());
                }
                hidden / heads
            }
        };
        if let Some(v) = gguf_opt_usize(meta, &key("attention.value_length"))?
            && v != head_dim
        {
            return Err(ModelError::Unsupported {
                file: file.to_path_buf(),
                key: key("attention.value_length"),
                value: v.to_string(),
                reason: format!("differs from the key length {head_dim}"),
            });
        }
        if let Some(d) = gguf_opt_usize(meta, &key("rope.dimension_count"))?
            && d != head_dim
        {
            return Err(ModelError::Unsupported {
                file: file.to_path_buf(),
                key: key("rope.dimension_count"),
                value: d.to_string(),
                reason: format!("partial rotary embeddings (head dim {head_dim})"),
            });
        }
        let rope_scaling = match meta.opt_string(&key("rope.scaling.type"))? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => {
                let factor = gguf_opt_f64(meta, &key("rope.scaling.factor"))?.unwrap_or(1.0);
                if !is_positive(factor) {
                    return Err(meta
                        .bad(
                            &key("rope.scaling.factor"),
                            format!("{factor} is not positive"),
                        )
                        .into());
                }
                RopeScaling::Linear(factor)
            }
            Some(other) => {
                return Err(ModelError::Unsupported {
                    file: file.to_path_buf(),
                    key: key("rope.scaling.type"),
                    value: format!("{other:?}"),
                    reason: "supported: none, linear".into(),
                });
            }
        };
        let vocab_size = match gguf_opt_usize(meta, &key("vocab_size"))? {
            Some(v) => v,
            None => vocab_from_tensor.ok_or_else(|| GgufError::MissingKey {
                file: file.to_path_buf(),
                key: key("vocab_size"),
            })?,
        };
        let config = ModelConfig {
            architecture,
            vocab_size,
            hidden,
            layers: gguf_usize(meta, &key("block_count"))?,
            heads,
            kv_heads,
            head_dim,
            intermediate: gguf_usize(meta, &key("feed_forward_length"))?,
            context_length: gguf_usize(meta, &key("context_length"))?,
            rope_theta: gguf_opt_f64(meta, &key("rope.freq_base"))?.unwrap_or(10_000.0),
            rms_eps: gguf_f64(meta, &key("attention.layer_norm_rms_epsilon"))?,
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Interleaved,
                Architecture::Qwen2 | Architecture::Qwen3 => RopeStyle::HalfSplit,
            },
            rope_scaling,
            // Decided by the loader from the presence of `output.weight`.
            tie_embeddings: false,
        };
        config.validate(file)?;
        Ok(config)
    }

    /// Reads a Hugging Face `config.json` (already parsed); `file` names errors.
    pub(crate) fn from_hf_json(json: &Json, file: &Path) -> Result<Self, ModelError> {
        let cfg = HfConfig { json, file };
        let model_type = cfg.string("model_type")?;
        let architecture = Architecture::from_name(model_type).ok_or_else(|| {
            cfg.unsupported(
                "model_type",
                format!("{model_type:?}"),
                "supported: llama, qwen2, qwen3",
            )
        })?;
        if let Some(act) = cfg.opt_string("hidden_act")?
            && act != "silu"
        {
            return Err(cfg.unsupported("hidden_act", format!("{act:?}"), "only silu (SwiGLU)"));
        }
        for flag in ["mlp_bias", "use_sliding_window"] {
            if cfg.opt_bool(flag)? == Some(true) {
                return Err(cfg.unsupported(flag, "true".into(), "not implemented"));
            }
        }
        let hidden = cfg.usize("hidden_size")?;
        let heads = cfg.usize("num_attention_heads")?;
        let kv_heads = cfg.opt_usize("num_key_value_heads")?.unwrap_or(heads);
        let head_dim = match cfg.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if heads == 0 || !hidden.is_multiple_of(heads) {
                    return Err(cfg.bad(
                        "num_attention_heads",
                        format!("{heads} heads do not divide hidden_size {hidden}"),
                    ));
                }
                hidden / heads
            }
        };
        let config = ModelConfig {
            architecture,
            vocab_size: cfg.usize("vocab_size")?,
            hidden,
            layers: cfg.usize("num_hidden_layers")?,
            heads,
            kv_heads,
            head_dim,
            intermediate: cfg.usize("intermediate_size")?,
            context_length: cfg.usize("max_position_embeddings")?,
            rope_theta: cfg.opt_f64("rope_theta")?.unwrap_or(10_000.0),
            rms_eps: cfg.f64("rms_norm_eps")?,
            // Hugging Face checkpoints rotate half-split pairs for every family.
            rope_style: RopeStyle::HalfSplit,
            rope_scaling: cfg.rope_scaling()?,
            tie_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
        };
        config.validate(file)?;
        Ok(config)
    }
}

/// False for NaN too.
fn is_positive(x: f64) -> bool {
    x > 0.0
}

fn gguf_opt_usize(meta: &GgufMetadata<'_>, key: &str) -> Result<Option<usize>, GgufError> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    let n: i128 = match *v {
        Value::U8(n) => n.into(),
        Value::I8(n) => n.into(),
        Value::U16(n) => n.into(),
        Value::I16(n) => n.into(),
        Value::U32(n) => n.into(),
        Value::I32(n) => n.into(),
        Value::U64(n) => n.into(),
        Value::I64(n) => n.into(),
        ref other => {
            return Err(meta.bad(key, format!("not an integer ({:?})", other.value_type())));
        }
    };
    usize::try_from(n)
        .map(Some)
        .map_err(|_| meta.bad(key, format!("{n} is not a valid size")))
}

fn gguf_usize(meta: &GgufMetadata<'_>, key: &str) -> Result<usize, GgufError> {
    gguf_opt_usize(meta, key)?.ok_or_else(|| GgufError::MissingKey {
        file: meta.file().to_path_buf(),
        key: key.to_owned(),
    })
}

fn gguf_opt_f64(meta: &GgufMetadata<'_>, key: &str) -> Result<Option<f64>, GgufError> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    Ok(Some(match *v {
        Value::F32(x) => x.into(),
        Value::F64(x) => x,
        Value::U32(n) => n.into(),
        Value::I32(n) => n.into(),
        ref other => {
            return Err(meta.bad(key, format!("not a number ({:?})", other.value_type())));
        }
    }))
}

fn gguf_f64(meta: &GgufMetadata<'_>, key: &str) -> Result<f64, GgufError> {
    gguf_opt_f64(meta, key)?.ok_or_else(|| GgufError::MissingKey {
        file: meta.file().to_path_buf(),
        key: key.to_owned(),
    })
}

/// Typed look-ups in `config.json` whose errors name the file and key.
struct HfConfig<'a> {
    json: &'a Json,
    file: &'a Path,
}

impl HfConfig<'_> {
    fn get(&self, key: &str) -> Option<&Json> {
        self.json.get(key).filter(|v| !v.is_null())
    }

    fn missing(&self, key: &str) -> ModelError {
        ModelError::MissingKey {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
        }
    }

    fn bad(&self, key: &str, reason: impl Into<String>) -> ModelError {
        ModelError::BadKey {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, key: &str, value: String, reason: &str) -> ModelError {
        ModelError::Unsupported {
            file: self.file.to_path_buf(),
            key: key.to_owned(),
            value,
            reason: reason.to_owned(),
        }
    }

    fn string(&self, key: &str) -> Result<&str, ModelError> {
        self.opt_string(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_string(&self, key: &str) -> Result<Option<&str>, ModelError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.bad(key, "not a string")))
            .transpose()
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, ModelError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(key, "not a boolean")))
            .transpose()
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>, ModelError> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| self.bad(key, format!("{v} is not a non-negative integer")))
            })
            .transpose()
    }

    fn usize(&self, key: &str) -> Result<usize, ModelError> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.bad(key, format!("{v} is not a number")))
            })
            .transpose()
    }

    fn f64(&self, key: &str) -> Result<f64, ModelError> {
        self.opt_f64(key)?.ok_or_else(|| self.missing(key))
    }

    fn rope_scaling(&self) -> Result<RopeScaling, ModelError> {
        const KEY: &str = "rope_scaling";
        let Some(scaling) = self.get(KEY) else {
            return Ok(RopeScaling::None);
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Json::as_str)
            .ok_or_else(|| self.bad(KEY, "has no string `rope_type`"))?;
        let number = |field: &str| {
            scaling
                .get(field)
                .and_then(Json::as_f64)
                .filter(|x| *x > 0.0)
                .ok_or_else(|| self.bad(&format!("{KEY}.{field}"), "missing or not positive"))
        };
        Ok(match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear(number("factor")?),
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_context: number("original_max_position_embeddings")?,
            },
            other => {
                return Err(self.unsupported(
                    &format!("{KEY}.rope_type"),
                    format!("{other:?}"),
                    "supported: default, linear, llama3",
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hf(json: &str) -> Result<ModelConfig, ModelError> {
        let v: Json = serde_json::from_str(json).expect("json");
        ModelConfig::from_hf_json(&v, Path::new("/models/x/config.json"))
    }

    const BASE: &str = r#""hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 128, "rms_norm_eps": 1e-5,
        "vocab_size": 300, "max_position_embeddings": 512"#;

    #[test]
    fn reads_a_llama_config() {
        let c = hf(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_theta": 500000.0}}"#
        ))
        .expect("config");
        assert_eq!(c.architecture, Architecture::Llama);
        assert_eq!((c.heads, c.kv_heads, c.head_dim), (4, 2, 16));
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.rope_style, RopeStyle::HalfSplit);
        assert!(!c.tie_embeddings);
    }

    #[test]
    fn unknown_model_type_and_scaling_name_file_and_key() {
        let err = hf(&format!(r#"{{"model_type": "gemma", {BASE}}}"#))
            .expect_err("gemma")
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("model_type") && err.contains("gemma"),
            "{err}"
        );
        let err = hf(&format!(
            r#"{{"model_type": "qwen2", {BASE}, "rope_scaling": {{"rope_type": "yarn", "factor": 4.0}}}}"#
        ))
        .expect_err("yarn")
        .to_string();
        assert!(
            err.contains("rope_scaling.rope_type") && err.contains("yarn"),
            "{err}"
        );
        let err = hf(r#"{"model_type": "qwen3", "hidden_size": 64}"#)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("num_attention_heads"), "{err}");
    }

    #[test]
    fn llama3_scaling_is_read() {
        let c = hf(&format!(
            r#"{{"model_type": "llama", {BASE}, "rope_scaling": {{"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}}}"#
        ))
        .expect("config");
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }
}
