//! Weight loading (GGUF or Hugging Face safetensors) and the projections built from them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use super::ModelError;
use super::config::{Architecture, ModelConfig, RopeScaling};
use crate::llm::gguf::{GgufMetadata, read_content};

/// One block of output rows of a projection.
enum Weight {
    /// Quantized rows `[out, in']` (`in'` may be zero-padded past the input width, see
    /// [`cpu_layout`]), plus a dequantized f32 copy (transposed, as `Dense`) made on first use
    /// by a large batch when candle has no fast batched kernel for the type.
    Quantized {
        q: Arc<QTensor>,
        /// Whether candle runs this weight through its repacked (tiled, VNNI) kernels, which
        /// beat the dense f32 GEMM at every batch size we measured.
        repacked: bool,
        dense: OnceLock<Tensor>,
    },
    /// Float weights stored transposed, `[in, out]` contiguous. With `x [rows, in]` times this,
    /// gemm reads the weight along its unit stride and does not repack it on every call;
    /// `x.matmul(&w.t())` on `[out, in]` storage spent about 40% of a batch-8 decode step
    /// packing the weight.
    Dense(Tensor),
}

/// `[out, in]` as the transposed contiguous layout `Weight::Dense` keeps.
fn transposed(w: &Tensor) -> candle_core::Result<Tensor> {
    w.t()?.contiguous()
}

impl Weight {
    fn quantized(q: QTensor, device: &Device) -> candle_core::Result<Weight> {
        let (q, repacked) = if device.is_cpu() {
            cpu_layout(q)?
        } else {
            (q, false)
        };
        Ok(Weight::Quantized {
            q: Arc::new(q),
            repacked,
            dense: OnceLock::new(),
        })
    }

    fn rows(&self) -> usize {
        match self {
            Weight::Quantized { q, .. } => q.shape().dims()[0],
            Weight::Dense(t) => t.dims()[1],
        }
    }

    fn forward(&self, x: &Tensor, dense_rows: Option<usize>) -> candle_core::Result<Tensor> {
        match self {
            Weight::Quantized { q, repacked, dense } => {
                let (_, k) = q.shape().dims2()?;
                let (rows, width) = x.dims2()?;
                // Without a repacked kernel, candle's quantized CPU matmul costs about the same
                // per activation row whatever the batch, while a dense f32 GEMM amortizes the
                // weight reads over the rows: past a few rows the dequantized copy wins.
                if !repacked && dense_rows.is_some_and(|min| rows >= min) {
                    let w = match dense.get() {
                        Some(w) => w,
                        None => {
                            let full = q.dequantize(&q.device())?.narrow(1, 0, width)?;
                            let w = transposed(&full)?;
                            dense.get_or_init(|| w)
                        }
                    };
                    return x.matmul(w);
                }
                if k > width {
                    x.pad_with_zeros(1, 0, k - width)?
                        .apply_op1_no_bwd(q.as_ref())
                } else {
                    x.apply_op1_no_bwd(q.as_ref())
                }
            }
            Weight::Dense(w) if w.dtype() == x.dtype() => x.matmul(w),
            Weight::Dense(w) => x.to_dtype(w.dtype())?.matmul(w)?.to_dtype(DType::F32),
        }
    }
}

/// Block types for which candle 0.11 has only a scalar CPU dot product (no AVX/NEON kernel, no
/// repacked layout). Measured on SmolLM2-135M Q4_1 (2-core AVX-512 VM): the scalar Q4_1 kernel
/// took about half of a decode step, so such weights are requantized to Q8_0 at load, whose
/// kernels are vectorized; Q8_0 keeps more precision than the source type, so the model's
/// outputs barely move.
const SLOW_ON_CPU: [GgmlDType; 4] = [
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
    GgmlDType::Q8_1,
];

/// Candle's x86 repacked kernels handle Q8_0 only on VNNI CPUs; mirrors `repack_x86::level`,
/// including its override that forces the AVX2 kernels.
fn x86_q8_0_repack() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let forced_avx2 = std::env::var("MISTRALRS_FORCE_AVX2").as_deref() == Ok("1");
        !forced_avx2
            && ((is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
                || (is_x86_feature_detected!("avxvnni") && is_x86_feature_detected!("avx2")))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Candle's repacked x86 kernels need the input width to be a multiple of this...
const REPACK_K: usize = 256;
/// ... and the output rows a multiple of this.
const REPACK_N: usize = 16;

/// Turns a quantized weight into the form candle's CPU kernels run fastest, and says whether
/// that is a repacked kernel. Slow block types become Q8_0; on VNNI CPUs a Q8_0 weight whose
/// input width is not a multiple of 256 (SmolLM2: 576) gets zero blocks appended to each row,
/// so that the tiled VNNI kernel accepts it (the activations are zero-padded to match).
/// Measured on SmolLM2's LM head (49152 x 576) at 32 rows: 113 ms unpadded, 33 ms padded to
/// 768, 103 ms as a dense f32 GEMM.
fn cpu_layout(q: QTensor) -> candle_core::Result<(QTensor, bool)> {
    let q = if SLOW_ON_CPU.contains(&q.dtype()) {
        QTensor::quantize(&q.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
    } else {
        q
    };
    let (n, k) = q.shape().dims2()?;
    let repackable = n % REPACK_N == 0
        && match q.dtype() {
            GgmlDType::Q4K | GgmlDType::Q6K => cfg!(target_arch = "x86_64"),
            GgmlDType::Q8_0 => x86_q8_0_repack(),
            _ => false,
        };
    if !repackable {
        return Ok((q, false));
    }
    if k % REPACK_K == 0 {
        return Ok((q, true));
    }
    if q.dtype() != GgmlDType::Q8_0 {
        return Ok((q, false));
    }
    let padded_k = k.div_ceil(REPACK_K) * REPACK_K;
    let block = GgmlDType::Q8_0.type_size();
    let (row_bytes, pad_bytes) = (k / 32 * block, (padded_k - k) / 32 * block);
    let data = q.data()?;
    let mut bytes = Vec::with_capacity(n * (row_bytes + pad_bytes));
    for row in data.chunks_exact(row_bytes) {
        bytes.extend_from_slice(row);
        // An all-zero Q8_0 block is scale 0.0 (f16) and 32 zero quants.
        bytes.resize(bytes.len() + pad_bytes, 0);
    }
    let storage = QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, GgmlDType::Q8_0)?;
    Ok((QTensor::new(storage, (n, padded_k))?, true))
}

/// A projection `x W^T + b` whose output rows may come from several weight blocks (a fused
/// Q/K/V or gate/up whose parts could not be concatenated, e.g. mixed quantization types).
pub(crate) struct Linear {
    blocks: Vec<Weight>,
    bias: Option<Tensor>,
}

impl Linear {
    fn single(weight: Weight, bias: Option<Tensor>) -> Self {
        Linear {
            blocks: vec![weight],
            bias,
        }
    }

    /// `x`: `[rows, in]` f32; returns `[rows, out]` f32.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        dense_rows: Option<usize>,
    ) -> candle_core::Result<Tensor> {
        let y = match self.blocks.as_slice() {
            [w] => w.forward(x, dense_rows)?,
            blocks => {
                let outs = blocks
                    .iter()
                    .map(|w| w.forward(x, dense_rows))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&outs, 1)?
            }
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// Stacks the output rows of several projections over the same input into one, so the
    /// input is read (and, for quantized weights, quantized) once.
    fn fuse(parts: Vec<Linear>, device: &Device) -> candle_core::Result<Linear> {
        let any_bias = parts.iter().any(|p| p.bias.is_some());
        let mut biases = Vec::new();
        let mut blocks: Vec<Weight> = Vec::new();
        for part in parts {
            let rows: usize = part.blocks.iter().map(Weight::rows).sum();
            if any_bias {
                biases.push(match part.bias {
                    Some(b) => b,
                    None => Tensor::zeros(rows, DType::F32, device)?,
                });
            }
            for block in part.blocks {
                match (blocks.pop(), block) {
                    (
                        Some(Weight::Quantized { q: a, repacked, .. }),
                        Weight::Quantized { q: b, .. },
                    ) if device.is_cpu()
                        && a.dtype() == b.dtype()
                        && a.shape().dims()[1] == b.shape().dims()[1] =>
                    {
                        blocks.push(Weight::Quantized {
                            q: Arc::new(stack_quantized(&a, &b, device)?),
                            repacked,
                            dense: OnceLock::new(),
                        });
                    }
                    (Some(Weight::Dense(a)), Weight::Dense(b)) if a.dtype() == b.dtype() => {
                        blocks.push(Weight::Dense(Tensor::cat(&[a, b], 1)?));
                    }
                    (prev, block) => {
                        blocks.extend(prev);
                        blocks.push(block);
                    }
                }
            }
        }
        let bias = if any_bias {
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Ok(Linear { blocks, bias })
    }
}

/// Rows of `b` appended to rows of `a` (same type and width): quantized rows are whole blocks,
/// so the raw bytes concatenate.
fn stack_quantized(a: &QTensor, b: &QTensor, device: &Device) -> candle_core::Result<QTensor> {
    let (ra, cols) = a.shape().dims2()?;
    let (rb, _) = b.shape().dims2()?;
    let mut bytes = a.data()?.into_owned();
    bytes.extend_from_slice(&b.data()?);
    let storage = QStorage::from_data(Cow::Owned(bytes), device, a.dtype())?;
    QTensor::new(storage, (ra + rb, cols))
}

/// The token embedding table.
pub(crate) enum Embedding {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
}

impl Embedding {
    /// `ids`: `[rows]` u32; returns `[rows, hidden]` f32.
    pub(crate) fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Embedding::Quantized(q) => q.embedding(ids)?.to_dtype(DType::F32),
            Embedding::Dense(t) => t.index_select(ids, 0)?.to_dtype(DType::F32),
        }
    }

    /// The same table as an LM head (tied embeddings).
    fn as_linear(&self, device: &Device) -> candle_core::Result<Linear> {
        let weight = match self {
            // A copy on the CPU: the LM head may be padded for the kernels, the lookup table not.
            Embedding::Quantized(q) if device.is_cpu() => {
                let copy = QStorage::from_data(q.data()?, device, q.dtype())?;
                Weight::quantized(QTensor::new(copy, q.shape().clone())?, device)?
            }
            Embedding::Quantized(q) => Weight::Quantized {
                q: q.clone(),
                repacked: false,
                dense: OnceLock::new(),
            },
            Embedding::Dense(t) => Weight::Dense(transposed(t)?),
        };
        Ok(Linear::single(weight, None))
    }
}

/// The weights of one transformer block.
pub(crate) struct LayerWeights {
    pub(crate) attn_norm: Tensor,
    pub(crate) qkv: Linear,
    pub(crate) q_norm: Option<Vec<f32>>,
    pub(crate) k_norm: Option<Vec<f32>>,
    pub(crate) o: Linear,
    pub(crate) ffn_norm: Tensor,
    pub(crate) gate_up: Linear,
    pub(crate) down: Linear,
}

/// All weights of a model.
pub(crate) struct ModelWeights {
    pub(crate) embedding: Embedding,
    pub(crate) layers: Vec<LayerWeights>,
    pub(crate) final_norm: Tensor,
    pub(crate) lm_head: Linear,
}

#[derive(Clone, Copy)]
enum Format {
    Gguf,
    HuggingFace,
}

/// The tensors of a model, by name.
#[derive(Clone, Copy)]
enum Part {
    Embed,
    FinalNorm,
    Output,
    AttnNorm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
}

impl Format {
    fn name(self, part: Part, layer: usize) -> String {
        let (gguf, hf) = match part {
            Part::Embed => return self.pick("token_embd.weight", "model.embed_tokens.weight"),
            Part::FinalNorm => return self.pick("output_norm.weight", "model.norm.weight"),
            Part::Output => return self.pick("output.weight", "lm_head.weight"),
            Part::AttnNorm => ("attn_norm.weight", "input_layernorm.weight"),
            Part::Q => ("attn_q.weight", "self_attn.q_proj.weight"),
            Part::K => ("attn_k.weight", "self_attn.k_proj.weight"),
            Part::V => ("attn_v.weight", "self_attn.v_proj.weight"),
            Part::O => ("attn_output.weight", "self_attn.o_proj.weight"),
            Part::QBias => ("attn_q.bias", "self_attn.q_proj.bias"),
            Part::KBias => ("attn_k.bias", "self_attn.k_proj.bias"),
            Part::VBias => ("attn_v.bias", "self_attn.v_proj.bias"),
            Part::QNorm => ("attn_q_norm.weight", "self_attn.q_norm.weight"),
            Part::KNorm => ("attn_k_norm.weight", "self_attn.k_norm.weight"),
            Part::FfnNorm => ("ffn_norm.weight", "post_attention_layernorm.weight"),
            Part::Gate => ("ffn_gate.weight", "mlp.gate_proj.weight"),
            Part::Up => ("ffn_up.weight", "mlp.up_proj.weight"),
            Part::Down => ("ffn_down.weight", "mlp.down_proj.weight"),
        };
        match self {
            Format::Gguf => format!("blk.{layer}.{gguf}"),
            Format::HuggingFace => format!("model.layers.{layer}.{hf}"),
        }
    }

    fn pick(self, gguf: &str, hf: &str) -> String {
        match self {
            Format::Gguf => gguf.to_owned(),
            Format::HuggingFace => hf.to_owned(),
        }
    }
}

/// A tensor as stored: quantized blocks or floats.
enum Stored {
    Quantized(QTensor),
    Float(Tensor),
}

/// Where tensors are read from.
enum Source {
    Gguf {
        content: Content,
        reader: BufReader<File>,
    },
    Safetensors(HashMap<String, Tensor>),
}

/// Reads named tensors, checks their shapes and converts them for the forward pass.
struct Loader<'a> {
    source: Source,
    format: Format,
    file: PathBuf,
    device: &'a Device,
}

impl Loader<'_> {
    fn tensor_err(&self, tensor: &str) -> impl FnOnce(candle_core::Error) -> ModelError + use<> {
        let file = self.file.clone();
        let tensor = tensor.to_owned();
        move |source| ModelError::Tensor {
            file,
            tensor,
            source: Box::new(source),
        }
    }

    fn has(&self, name: &str) -> bool {
        match &self.source {
            Source::Gguf { content, .. } => content.tensor_infos.contains_key(name),
            Source::Safetensors(map) => map.contains_key(name),
        }
    }

    fn shape_of(&self, name: &str) -> Option<Vec<usize>> {
        match &self.source {
            Source::Gguf { content, .. } => content
                .tensor_infos
                .get(name)
                .map(|i| i.shape.dims().to_vec()),
            Source::Safetensors(map) => map.get(name).map(|t| t.dims().to_vec()),
        }
    }

    fn take(&mut self, name: &str, expected: &[usize]) -> Result<Option<Stored>, ModelError> {
        let Some(found) = self.shape_of(name) else {
            return Ok(None);
        };
        if found != expected {
            return Err(ModelError::TensorShape {
                file: self.file.clone(),
                tensor: name.to_owned(),
                expected: expected.to_vec(),
                found,
            });
        }
        let err = self.tensor_err(name);
        let stored = match &mut self.source {
            Source::Gguf { content, reader } => {
                let q = content.tensor(reader, name, self.device).map_err(err)?;
                match q.dtype() {
                    GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 => {
                        let err = self.tensor_err(name);
                        Stored::Float(q.dequantize(self.device).map_err(err)?)
                    }
                    _ => Stored::Quantized(q),
                }
            }
            Source::Safetensors(map) => match map.remove(name) {
                Some(t) => Stored::Float(t),
                None => return Ok(None),
            },
        };
        Ok(Some(stored))
    }

    fn required(&mut self, name: &str, expected: &[usize]) -> Result<Stored, ModelError> {
        self.take(name, expected)?
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.file.clone(),
                tensor: name.to_owned(),
            })
    }

    /// A float tensor for the matmul: f32 on the CPU (candle's fastest GEMM there), the stored
    /// half precision on a GPU.
    fn matmul_float(&self, t: Tensor, name: &str) -> Result<Tensor, ModelError> {
        let dtype = if self.device.is_cpu() || t.dtype() == DType::F64 {
            DType::F32
        } else {
            t.dtype()
        };
        t.to_dtype(dtype)
            .and_then(|t| t.to_device(self.device))
            .map_err(self.tensor_err(name))
    }

    fn f32_vector(&mut self, name: &str, len: usize) -> Result<Option<Tensor>, ModelError> {
        let Some(stored) = self.take(name, &[len])? else {
            return Ok(None);
        };
        let err = self.tensor_err(name);
        let t = match stored {
            Stored::Float(t) => t,
            Stored::Quantized(q) => q.dequantize(self.device).map_err(self.tensor_err(name))?,
        };
        t.to_dtype(DType::F32)
            .and_then(|t| t.to_device(self.device))
            .map(Some)
            .map_err(err)
    }

    fn norm(&mut self, part: Part, layer: usize, len: usize) -> Result<Tensor, ModelError> {
        let name = self.format.name(part, layer);
        self.f32_vector(&name, len)?
            .ok_or_else(|| ModelError::MissingTensor {
                file: self.file.clone(),
                tensor: name,
            })
    }

    fn host_vector(
        &mut self,
        part: Part,
        layer: usize,
        len: usize,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let name = self.format.name(part, layer);
        let Some(t) = self.f32_vector(&name, len)? else {
            return Ok(None);
        };
        t.to_vec1::<f32>().map(Some).map_err(self.tensor_err(&name))
    }

    fn weight(&mut self, name: &str, out: usize, inp: usize) -> Result<Weight, ModelError> {
        Ok(match self.required(name, &[out, inp])? {
            Stored::Quantized(q) => {
                Weight::quantized(q, self.device).map_err(self.tensor_err(name))?
            }
            Stored::Float(t) => {
                let t = self.matmul_float(t, name)?;
                Weight::Dense(transposed(&t).map_err(self.tensor_err(name))?)
            }
        })
    }

    fn linear(
        &mut self,
        part: Part,
        bias: Option<Part>,
        layer: usize,
        out: usize,
        inp: usize,
    ) -> Result<Linear, ModelError> {
        let weight = self.weight(&self.format.name(part, layer), out, inp)?;
        let bias = match bias {
            Some(b) => self.f32_vector(&self.format.name(b, layer), out)?,
            None => None,
        };
        Ok(Linear::single(weight, bias))
    }

    fn fuse(&self, parts: Vec<Linear>, what: &str) -> Result<Linear, ModelError> {
        Linear::fuse(parts, self.device).map_err(self.tensor_err(what))
    }

    fn load(mut self, config: &ModelConfig) -> Result<ModelWeights, ModelError> {
        let c = config;
        let embed_name = self.format.name(Part::Embed, 0);
        let embedding = match self.required(&embed_name, &[c.vocab_size, c.hidden])? {
            Stored::Quantized(q) => Embedding::Quantized(Arc::new(q)),
            Stored::Float(t) => Embedding::Dense(self.matmul_float(t, &embed_name)?),
        };
        let q_out = c.heads * c.head_dim;
        let kv_out = c.kv_heads * c.head_dim;
        let mut layers = Vec::with_capacity(c.layers);
        for l in 0..c.layers {
            let q = self.linear(Part::Q, Some(Part::QBias), l, q_out, c.hidden)?;
            let k = self.linear(Part::K, Some(Part::KBias), l, kv_out, c.hidden)?;
            let v = self.linear(Part::V, Some(Part::VBias), l, kv_out, c.hidden)?;
            let qkv = self.fuse(vec![q, k, v], &format!("layer {l} q/k/v"))?;
            let gate = self.linear(Part::Gate, None, l, c.intermediate, c.hidden)?;
            let up = self.linear(Part::Up, None, l, c.intermediate, c.hidden)?;
            let gate_up = self.fuse(vec![gate, up], &format!("layer {l} gate/up"))?;
            let (q_norm, k_norm) = if c.architecture == Architecture::Qwen3 {
                let qn = self.host_vector(Part::QNorm, l, c.head_dim)?;
                let kn = self.host_vector(Part::KNorm, l, c.head_dim)?;
                let need = |v: Option<Vec<f32>>, part: Part| {
                    v.ok_or_else(|| ModelError::MissingTensor {
                        file: self.file.clone(),
                        tensor: self.format.name(part, l),
                    })
                };
                (Some(need(qn, Part::QNorm)?), Some(need(kn, Part::KNorm)?))
            } else {
                (None, None)
            };
            layers.push(LayerWeights {
                attn_norm: self.norm(Part::AttnNorm, l, c.hidden)?,
                qkv,
                q_norm,
                k_norm,
                o: self.linear(Part::O, None, l, c.hidden, q_out)?,
                ffn_norm: self.norm(Part::FfnNorm, l, c.hidden)?,
                gate_up,
                down: self.linear(Part::Down, None, l, c.hidden, c.intermediate)?,
            });
        }
        let final_norm = self.norm(Part::FinalNorm, 0, c.hidden)?;
        let output = self.format.name(Part::Output, 0);
        let lm_head = if c.tie_embeddings && !self.has(&output) {
            embedding
                .as_linear(self.device)
                .map_err(self.tensor_err(&embed_name))?
        } else {
            Linear::single(self.weight(&output, c.vocab_size, c.hidden)?, None)
        };
        Ok(ModelWeights {
            embedding,
            layers,
            final_norm,
            lm_head,
        })
    }
}

/// Loads a GGUF file: configuration from its metadata, tensors into memory.
pub(crate) fn load_gguf(
    path: &Path,
    device: &Device,
) -> Result<(ModelConfig, ModelWeights), ModelError> {
    let content = read_content(path)?;
    let meta = GgufMetadata::new(&content, path);
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|i| i.shape.dims().first().copied());
    let mut config = ModelConfig::from_gguf(&meta, vocab)?;
    config.tie_embeddings = !content.tensor_infos.contains_key("output.weight");
    let file = File::open(path).map_err(|source| ModelError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let mut loader = Loader {
        source: Source::Gguf {
            content,
            reader: BufReader::new(file),
        },
        format: Format::Gguf,
        file: path.to_path_buf(),
        device,
    };
    const FREQS: &str = "rope_freqs.weight";
    if loader.has(FREQS) {
        let t = loader
            .f32_vector(FREQS, config.head_dim / 2)?
            .map(|t| t.to_vec1::<f32>())
            .transpose()
            .map_err(loader.tensor_err(FREQS))?;
        if let Some(factors) = t {
            config.rope_scaling = RopeScaling::Factors(factors);
        }
    }
    let weights = loader.load(&config)?;
    Ok((config, weights))
}

/// Loads a Hugging Face directory: `config.json` and every `model*.safetensors`, read into
/// memory (no mmap: the workspace forbids `unsafe`).
pub(crate) fn load_safetensors_dir(
    dir: &Path,
    device: &Device,
) -> Result<(ModelConfig, ModelWeights), ModelError> {
    let config_path = dir.join("config.json");
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| ModelError::Io { file, source }
    };
    let text = std::fs::read_to_string(&config_path).map_err(io(&config_path))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            file: config_path.clone(),
            source,
        })?;
    let config = ModelConfig::from_hf_json(&json, &config_path)?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("model") && n.ends_with(".safetensors"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ModelError::UnknownFormat {
            file: dir.to_path_buf(),
        });
    }
    let mut tensors = HashMap::new();
    for f in &files {
        let bytes = std::fs::read(f).map_err(io(f))?;
        // Loaded on the CPU first; each weight moves to the device once converted.
        let map =
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|source| {
                ModelError::Tensor {
                    file: f.clone(),
                    tensor: "*".into(),
                    source: Box::new(source),
                }
            })?;
        tensors.extend(map);
    }
    let loader = Loader {
        source: Source::Safetensors(tensors),
        format: Format::HuggingFace,
        file: dir.to_path_buf(),
        device,
    };
    let weights = loader.load(&config)?;
    Ok((config, weights))
}
