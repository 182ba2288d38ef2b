//! Decode throughput of the batched transformer forward.
//!
//! ```text
//! cargo run --release --example llm_forward -- MODEL [--steps N] [--batches 1,8,32]
//!     [--dense-rows none|N[,..]] [--prompt-tokens 40] [--cuda]
//! cargo run --release --example llm_forward -- --random llama-1b|tiny [--format gguf|safetensors]
//!     [--dtype q4_1|q8_0|f16|f32|bf16] ...
//! ```
//! MODEL is a `.gguf` file or a Hugging Face directory. For every batch size B, B sequences
//! with a prompt of `--prompt-tokens` tokens are prefilled in one forward call, then decoded
//! `--steps` tokens each (greedy), all B in one call per step. Batch 1 is one-at-a-time
//! generation; the speed-up column compares each batch with it.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use chimera_worker::llm::model::{Architecture, LanguageModel, Step};
use chimera_worker::llm::random::{RandomDType, RandomFormat, RandomModelSpec, write_random_model};

struct Args {
    model: Option<PathBuf>,
    random: Option<String>,
    format: RandomFormat,
    dtype: RandomDType,
    steps: usize,
    batches: Vec<usize>,
    dense_rows: Vec<Option<usize>>,
    prompt_tokens: usize,
    cuda: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: None,
        random: None,
        format: RandomFormat::Gguf,
        dtype: RandomDType::Q4_1,
        steps: 16,
        batches: vec![1, 8, 32],
        dense_rows: vec![Some(chimera_worker::llm::model::DEFAULT_DENSE_ROWS)],
        prompt_tokens: 40,
        cuda: false,
    };
    let mut it = std::env::args().skip(1);
    let list = |s: String| -> Result<Vec<usize>, String> {
        s.split(',')
            .map(|x| x.trim().parse().map_err(|e| format!("{x}: {e}")))
            .collect()
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--steps" => args.steps = value()?.parse().map_err(|e| format!("--steps: {e}"))?,
            "--prompt-tokens" => {
                args.prompt_tokens = value()?
                    .parse()
                    .map_err(|e| format!("--prompt-tokens: {e}"))?
            }
            "--batches" => args.batches = list(value()?)?,
            "--dense-rows" => {
                args.dense_rows = value()?
                    .split(',')
                    .map(|x| match x.trim() {
                        "none" => Ok(None),
                        n => n.parse().map(Some).map_err(|e| format!("{n}: {e}")),
                    })
                    .collect::<Result<_, String>>()?
            }
            "--random" => args.random = Some(value()?),
            "--format" => {
                args.format = match value()?.as_str() {
                    "gguf" => RandomFormat::Gguf,
                    "safetensors" => RandomFormat::Safetensors,
                    f => return Err(format!("unknown format {f}")),
                }
            }
            "--dtype" => {
                args.dtype = match value()?.as_str() {
                    "f32" => RandomDType::F32,
                    "f16" => RandomDType::F16,
                    "bf16" => RandomDType::BF16,
                    "q8_0" => RandomDType::Q8_0,
                    "q4_1" => RandomDType::Q4_1,
                    d => return Err(format!("unknown dtype {d}")),
                }
            }
            "--cuda" => args.cuda = true,
            path if !path.starts_with("--") => args.model = Some(PathBuf::from(path)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if args.model.is_none() && args.random.is_none() {
        return Err("give a model path or --random llama-1b|tiny".into());
    }
    Ok(args)
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let device = if args.cuda {
        Device::cuda_if_available(0)?
    } else {
        Device::Cpu
    };
    let _tmp;
    let path = match (&args.model, &args.random) {
        (Some(p), _) => p.clone(),
        (None, Some(kind)) => {
            let spec = match kind.as_str() {
                "llama-1b" => RandomModelSpec::llama_1b(),
                "tiny" => RandomModelSpec::tiny(Architecture::Llama),
                k => return Err(format!("unknown random model {k}").into()),
            };
            let dir = tempfile::tempdir()?;
            let t = Instant::now();
            let p = write_random_model(dir.path(), &spec, args.format, args.dtype)?;
            eprintln!("wrote random {kind} in {:.1}s", t.elapsed().as_secs_f64());
            _tmp = dir;
            p
        }
        (None, None) => unreachable!("checked by parse_args"),
    };
    let t = Instant::now();
    let base = LanguageModel::load(&path, &device)?;
    println!(
        "model {} on {:?}: {:?}, loaded in {:.2}s",
        path.display(),
        device,
        base.config(),
        t.elapsed().as_secs_f64()
    );
    let vocab = base.config().vocab_size as u32;
    let prompt = |seq: usize| -> Vec<u32> {
        (0..args.prompt_tokens as u32)
            .map(|i| 20 + (seq as u32 * 7919 + i * 104_729) % (vocab - 20))
            .collect()
    };
    let mut model = base;
    for &dense in &args.dense_rows {
        model = model.with_dense_rows(dense);
        println!("\ndense rows from: {dense:?}");
        println!("batch  prefill tok/s  decode tok/s  ms/step (median, best)  speed-up");
        // Warm-up: the first large batch dequantizes the weights once.
        run(&model, 2, 2, &prompt)?;
        let mut single = None;
        for &b in &args.batches {
            let r = run(&model, b, args.steps, &prompt)?;
            let decode = b as f64 * 1000.0 / r.median_ms;
            let base_tps = *single.get_or_insert(decode);
            println!(
                "{b:>5}  {:>13.1}  {decode:>12.1}  {:>10.1}, {:>8.1}  {:>7.2}x",
                r.prefill_tps,
                r.median_ms,
                r.best_ms,
                decode / base_tps
            );
        }
    }
    Ok(())
}

struct Timing {
    prefill_tps: f64,
    /// Median and fastest decode step; on a shared machine the fastest is the closest to the
    /// uncontended speed.
    median_ms: f64,
    best_ms: f64,
}

/// Prefill `batch` prompts in one call, then decode `steps` tokens each.
fn run(
    model: &LanguageModel,
    batch: usize,
    steps: usize,
    prompt: &dyn Fn(usize) -> Vec<u32>,
) -> Result<Timing, Box<dyn std::error::Error>> {
    let mut caches: Vec<_> = (0..batch).map(|_| model.new_cache()).collect();
    let prompts: Vec<Vec<u32>> = (0..batch).map(prompt).collect();
    let t = Instant::now();
    let logits = {
        let mut s: Vec<Step<'_>> = caches
            .iter_mut()
            .zip(&prompts)
            .map(|(cache, tokens)| Step {
                cache,
                tokens,
                want_logits: true,
            })
            .collect();
        model.forward(&mut s)?
    };
    let prefill_s = t.elapsed().as_secs_f64();
    let mut next: Vec<[u32; 1]> = logits.iter().map(|l| [argmax(l)]).collect();
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        let mut s: Vec<Step<'_>> = caches
            .iter_mut()
            .zip(&next)
            .map(|(cache, tokens)| Step {
                cache,
                tokens,
                want_logits: true,
            })
            .collect();
        let logits = model.forward(&mut s)?;
        next = logits.iter().map(|l| [argmax(l)]).collect();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let prefill_tokens: usize = prompts.iter().map(Vec::len).sum();
    Ok(Timing {
        prefill_tps: prefill_tokens as f64 / prefill_s,
        median_ms: times.get(times.len() / 2).copied().unwrap_or(f64::NAN),
        best_ms: times.first().copied().unwrap_or(f64::NAN),
    })
}
