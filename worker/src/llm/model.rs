//! Our own decoder-only transformer forward (llama, qwen2, qwen3) over a *ragged batch*: every
//! sequence brings its own KV cache (optionally starting with a shared, frozen prompt prefix)
//! and any number of new tokens, so one call can mix prefill chunks and single-token decodes.
//!
//! All new tokens of all sequences are flattened into one `[T, hidden]` activation matrix, so
//! embeddings, norms, the Q/K/V/O projections, the SwiGLU MLP and the LM head read every weight
//! once per call for the whole batch. Attention is the only per-sequence part: it runs in plain
//! Rust on the CPU (RoPE, causal softmax over prefix ++ own cache ++ new tokens, GQA by head
//! groups) with rayon over (sequence, head).
//!
//! Threads on the CPU: the quantized matmuls and the attention share candle's barrier pool
//! (`candle_core::utils::barrier_pool`, `CANDLE_NUM_THREADS`), and candle's element-wise ops
//! use rayon (`RAYON_NUM_THREADS`); both default to all cores. On a machine shared with other
//! busy processes, their spin-waiting threads lose much time to each other: measured on a
//! 2-core VM during parallel compiles, a decode step was 2-5x slower and very uneven with two
//! threads than with `CANDLE_NUM_THREADS=1 RAYON_NUM_THREADS=1`, while on the idle VM two
//! threads were 1.5-2x faster. Size both to the cores the process really owns.
//!
//! Weights come from a GGUF file (quantized or float tensors) or a Hugging Face directory
//! (`config.json` + `model*.safetensors`). The `Device` is a parameter: on a GPU the projections
//! and MLP run there, while attention copies q/k/v to host memory; a fast GPU path would need a
//! paged-attention kernel over per-sequence caches kept in device memory (see `attention`).

mod attention;
mod cache;
mod config;
mod weights;

use std::path::Path;

use candle_core::{DType, Device, Tensor};

pub use cache::{KvCache, SharedPrefix};
pub use config::{Architecture, ModelConfig, RopeScaling, RopeStyle};
pub use error::ModelError;

use attention::{AttentionGeometry, RopeTable};
use weights::{Linear, ModelWeights};

mod error {
    use std::path::PathBuf;

    use crate::llm::gguf::GgufError;

    /// Why a model could not be loaded, written or run. Load errors name the file and the key or
    /// tensor at fault.
    #[derive(Debug, thiserror::Error)]
    pub enum ModelError {
        /// A file or directory could not be read.
        #[error("cannot read {}: {source}", file.display())]
        Io {
            file: PathBuf,
            source: std::io::Error,
        },
        /// GGUF metadata could not be read or a key is missing or invalid.
        #[error(transparent)]
        Gguf(Box<GgufError>),
        /// `config.json` is not valid JSON.
        #[error("{}: not valid JSON: {source}", file.display())]
        Json {
            file: PathBuf,
            source: serde_json::Error,
        },
        /// A required configuration key is absent.
        #[error("{}: `{key}` is missing", file.display())]
        MissingKey { file: PathBuf, key: String },
        /// A configuration key holds a value of the wrong type or range.
        #[error("{}: `{key}` is invalid: {reason}", file.display())]
        BadKey {
            file: PathBuf,
            key: String,
            reason: String,
        },
        /// A configuration value names a feature this module does not implement.
        #[error("{}: `{key}` = {value} is not supported ({reason})", file.display())]
        Unsupported {
            file: PathBuf,
            key: String,
            value: String,
            reason: String,
        },
        /// A required weight tensor is absent.
        #[error("{}: tensor `{tensor}` is missing", file.display())]
        MissingTensor { file: PathBuf, tensor: String },
        /// A weight tensor does not have the shape the configuration implies.
        #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", file.display())]
        TensorShape {
            file: PathBuf,
            tensor: String,
            expected: Vec<usize>,
            found: Vec<usize>,
        },
        /// A weight tensor could not be read, converted or quantized.
        #[error("{}: tensor `{tensor}`: {source}", file.display())]
        Tensor {
            file: PathBuf,
            tensor: String,
            source: Box<candle_core::Error>,
        },
        /// The path is neither a `.gguf` file nor a directory with `config.json`.
        #[error(
            "{}: not a model (expected a .gguf file or a directory with config.json and model*.safetensors)",
            file.display()
        )]
        UnknownFormat { file: PathBuf },
        /// A step of a batch cannot run (empty, bad token id, foreign cache, context overflow).
        #[error("step {step}: {reason}")]
        BadStep { step: usize, reason: String },
        /// A tensor operation of the forward pass failed.
        #[error("forward pass, {stage}{}: {source}", layer.map(|l| format!(" (layer {l})")).unwrap_or_default())]
        Forward {
            stage: &'static str,
            layer: Option<usize>,
            source: Box<candle_core::Error>,
        },
        /// A file of a generated model could not be written.
        #[error("cannot write {}: {reason}", file.display())]
        Write { file: PathBuf, reason: String },
    }

    impl From<GgufError> for ModelError {
        fn from(e: GgufError) -> Self {
            ModelError::Gguf(Box::new(e))
        }
    }
}

/// On the CPU, quantized projections without a repacked candle kernel, over at least this
/// many rows, run as a dense f32 matmul against a once-dequantized copy of the weight.
/// Measured on SmolLM2-135M (Q8_0 after requantization, AVX2 kernels forced, 2-core AVX-512
/// VM, release): a decode step over B rows took 10 / 68 / 141 / 275 ms quantized and 34 / 102
/// / 118 / 166 ms dense for B = 1 / 8 / 16 / 32, so the crossover is between 8 and 16 rows.
/// Weights that candle repacks (Q4_K, Q6_K, Q8_0 on VNNI CPUs) always stay quantized: that
/// kernel beats the dense GEMM at every batch size.
pub const DEFAULT_DENSE_ROWS: usize = 16;

/// A loaded transformer; `forward` may be called from several threads with disjoint caches.
pub struct LanguageModel {
    config: ModelConfig,
    weights: ModelWeights,
    device: Device,
    inv_freq: Vec<f64>,
    dense_rows: Option<usize>,
}

/// One sequence's part of a ragged batch.
pub struct Step<'a> {
    /// The sequence's cache; the step's tokens are appended to it.
    pub cache: &'a mut KvCache,
    /// New tokens (at least one); their positions continue from `cache.len()`.
    pub tokens: &'a [u32],
    /// Whether to return the logits of the step's last token.
    pub want_logits: bool,
}

/// Where each step's tokens sit in the flattened batch.
struct BatchPlan {
    ids: Vec<u32>,
    positions: Vec<usize>,
    /// Row offset of each step's first token.
    offsets: Vec<usize>,
    /// Rows whose logits are wanted, in step order.
    logit_rows: Vec<u32>,
}

fn fwd(stage: &'static str, layer: Option<usize>) -> impl FnOnce(candle_core::Error) -> ModelError {
    move |source| ModelError::Forward {
        stage,
        layer,
        source: Box::new(source),
    }
}

impl LanguageModel {
    /// Loads a `.gguf` file, or a directory with `config.json` and `model*.safetensors`.
    pub fn load(path: &Path, device: &Device) -> Result<LanguageModel, ModelError> {
        let (config, weights) = if path.is_dir() {
            weights::load_safetensors_dir(path, device)?
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            weights::load_gguf(path, device)?
        } else {
            return Err(ModelError::UnknownFormat {
                file: path.to_path_buf(),
            });
        };
        let inv_freq = attention::inverse_frequencies(&config);
        Ok(LanguageModel {
            config,
            weights,
            device: device.clone(),
            inv_freq,
            dense_rows: device.is_cpu().then_some(DEFAULT_DENSE_ROWS),
        })
    }

    /// Sets from how many rows a quantized projection switches to a dequantized f32 matmul
    /// (`None`: never). Only meaningful on the CPU; the GPU kernels handle batches themselves.
    pub fn with_dense_rows(mut self, rows: Option<usize>) -> Self {
        self.dense_rows = rows;
        self
    }

    /// The model's shape and options.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.layers, self.kv_width())
    }

    fn kv_width(&self) -> usize {
        self.config.kv_heads * self.config.head_dim
    }

    /// One forward pass over a ragged batch: every step appends its `tokens` (>= 1) to its own
    /// cache (positions continue from `cache.len()`); returns one logits row (`vocab_size`
    /// long) per step with `want_logits`, in order, for the last token of that step only.
    /// On error every cache is left as it was before the call.
    pub fn forward(&self, steps: &mut [Step<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let plan = self.plan(steps)?;
        let before: Vec<usize> = steps.iter().map(|s| s.cache.own_len()).collect();
        // Run on a rayon worker: candle's CPU ops (norms, element-wise maps, f32 GEMM) and our
        // attention call into rayon many times per layer, and each call from a thread outside
        // the pool is a cross-thread hand-off (a wake-up and a block). From inside the pool
        // they run inline or split by work stealing.
        let result = rayon::scope(|_| self.forward_planned(steps, &plan));
        match result {
            Ok(logits) => {
                for step in steps.iter_mut() {
                    let n = step.tokens.len();
                    step.cache.commit(n);
                }
                Ok(logits)
            }
            Err(e) => {
                for (step, len) in steps.iter_mut().zip(before) {
                    step.cache.truncate_own(len);
                }
                Err(e)
            }
        }
    }

    fn plan(&self, steps: &[Step<'_>]) -> Result<BatchPlan, ModelError> {
        let total: usize = steps.iter().map(|s| s.tokens.len()).sum();
        let mut plan = BatchPlan {
            ids: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            offsets: Vec::with_capacity(steps.len()),
            logit_rows: Vec::new(),
        };
        let vocab = self.config.vocab_size;
        for (i, step) in steps.iter().enumerate() {
            let bad = |reason: String| ModelError::BadStep { step: i, reason };
            if step.tokens.is_empty() {
                return Err(bad("no tokens".into()));
            }
            if !step.cache.fits(self.config.layers, self.kv_width()) {
                return Err(bad("the cache belongs to a model of another shape".into()));
            }
            if let Some(t) = step.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(bad(format!(
                    "token id {t} is outside the {vocab}-token vocabulary"
                )));
            }
            let start = step.cache.len();
            let end = start + step.tokens.len();
            if end > self.config.context_length {
                return Err(bad(format!(
                    "{end} tokens exceed the context length {}",
                    self.config.context_length
                )));
            }
            plan.offsets.push(plan.ids.len());
            plan.ids.extend_from_slice(step.tokens);
            plan.positions.extend(start..end);
            if step.want_logits {
                let row =
                    u32::try_from(plan.ids.len() - 1).map_err(|_| bad("batch too large".into()))?;
                plan.logit_rows.push(row);
            }
        }
        Ok(plan)
    }

    fn forward_planned(
        &self,
        steps: &mut [Step<'_>],
        plan: &BatchPlan,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let c = &self.config;
        let dev = &self.device;
        let t = plan.ids.len();
        let eps = c.rms_eps as f32;
        let rows = self.dense_rows;
        let geometry = AttentionGeometry {
            heads: c.heads,
            kv_heads: c.kv_heads,
            head_dim: c.head_dim,
            style: c.rope_style,
            qk_norm_eps: eps,
        };
        let rope = RopeTable::new(&plan.positions, &self.inv_freq);

        let ids = Tensor::from_vec(plan.ids.clone(), t, dev).map_err(fwd("token ids", None))?;
        let mut x = self
            .weights
            .embedding
            .forward(&ids)
            .map_err(fwd("embedding", None))?;

        for (l, layer) in self.weights.layers.iter().enumerate() {
            let at = Some(l);
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)
                .map_err(fwd("attention norm", at))?;
            let qkv = layer.qkv.forward(&h, rows).map_err(fwd("qkv", at))?;
            let mut qkv = to_host(&qkv).map_err(fwd("qkv to host", at))?;
            let attn = attention::attend_layer(
                &geometry,
                &rope,
                layer.q_norm.as_deref(),
                layer.k_norm.as_deref(),
                &mut qkv,
                steps,
                &plan.offsets,
                l,
            );
            let attn = Tensor::from_vec(attn, (t, c.heads * c.head_dim), dev)
                .map_err(fwd("attention to device", at))?;
            let o = layer.o.forward(&attn, rows).map_err(fwd("output", at))?;
            x = (x + o).map_err(fwd("residual", at))?;

            let h =
                candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps).map_err(fwd("mlp norm", at))?;
            let y = mlp(&layer.gate_up, &layer.down, c.intermediate, &h, rows)
                .map_err(fwd("mlp", at))?;
            x = (x + y).map_err(fwd("residual", at))?;
        }

        if plan.logit_rows.is_empty() {
            return Ok(Vec::new());
        }
        let n = plan.logit_rows.len();
        let idx = Tensor::from_vec(plan.logit_rows.clone(), n, dev).map_err(fwd("gather", None))?;
        let last = x.index_select(&idx, 0).map_err(fwd("gather", None))?;
        let last = candle_nn::ops::rms_norm(&last, &self.weights.final_norm, eps)
            .map_err(fwd("final norm", None))?;
        let logits = self
            .weights
            .lm_head
            .forward(&last, rows)
            .map_err(fwd("lm head", None))?;
        logits
            .to_dtype(DType::F32)
            .and_then(|l| l.to_vec2::<f32>())
            .map_err(fwd("logits to host", None))
    }
}

/// SwiGLU over a fused gate+up projection: `down(silu(gate(h)) * up(h))`.
fn mlp(
    gate_up: &Linear,
    down: &Linear,
    intermediate: usize,
    h: &Tensor,
    rows: Option<usize>,
) -> candle_core::Result<Tensor> {
    let gu = gate_up.forward(h, rows)?;
    let gate = gu.narrow(1, 0, intermediate)?;
    let up = gu.narrow(1, intermediate, intermediate)?;
    let act = (gate.silu()? * up)?;
    down.forward(&act, rows)
}

/// The tensor's elements as host f32, row-major.
fn to_host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("config", &self.config)
            .field("device", &self.device)
            .field("dense_rows", &self.dense_rows)
            .finish_non_exhaustive()
    }
}

// The engine moves caches between threads and shares the model across them.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<LanguageModel>();
    is_send_sync::<KvCache>();
    is_send_sync::<SharedPrefix>();
};
