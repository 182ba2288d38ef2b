//! Generation speed: tokens per second when many sequences decode together, against
//! llama.cpp-style one-at-a-time generation, on the same model and device.
//!
//! Every sequence gets the same number of prompt tokens (deterministic pseudo-random ids) and
//! generates the same number of tokens greedily, without constraints: the model's cost alone.

use std::time::Instant;

use serde::Serialize;

use super::model::{KvCache, LanguageModel, ModelError, Step};

/// One measured setting.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Sequences decoded together (1 in the one-at-a-time row).
    pub batch: usize,
    /// Sequences generated in this row.
    pub sequences: usize,
    /// `batched` or `one-at-a-time`.
    pub mode: &'static str,
    /// Prompt tokens per second (all prompts of the row in one forward when batched).
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second.
    pub decode_tokens_per_s: f64,
    /// Decode throughput over the one-at-a-time row's.
    pub speedup: f64,
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
            if x > b.1 { (i, x) } else { b }
        })
        .0 as u32
}

fn prompt(vocab: usize, len: usize, seq: usize) -> Vec<u32> {
    (0..len)
        .map(|i| {
            let z = chimera_core::rng::mix64(((seq as u64) << 32) ^ i as u64);
            // Skip the first ids, where the control tokens usually live.
            (32 + z % (vocab as u64 - 32)) as u32
        })
        .collect()
}

/// Runs `sequences` sequences, `batch` at a time; returns (prefill seconds, decode seconds).
fn run(
    model: &LanguageModel,
    batch: usize,
    sequences: usize,
    prompt_len: usize,
    tokens: usize,
) -> Result<(f64, f64), ModelError> {
    let vocab = model.config().vocab_size;
    let (mut prefill, mut decode) = (0.0, 0.0);
    let mut start = 0;
    while start < sequences {
        let n = batch.min(sequences - start);
        let prompts: Vec<Vec<u32>> = (start..start + n)
            .map(|s| prompt(vocab, prompt_len, s))
            .collect();
        let mut caches: Vec<KvCache> = (0..n).map(|_| model.new_cache()).collect();
        let t = Instant::now();
        let logits = {
            let mut steps: Vec<Step<'_>> = caches
                .iter_mut()
                .zip(&prompts)
                .map(|(cache, p)| Step {
                    cache,
                    tokens: p,
                    want_logits: true,
                })
                .collect();
            model.forward(&mut steps)?
        };
        prefill += t.elapsed().as_secs_f64();
        let mut next: Vec<[u32; 1]> = logits.iter().map(|r| [argmax(r)]).collect();
        let t = Instant::now();
        for _ in 1..tokens {
            let logits = {
                let mut steps: Vec<Step<'_>> = caches
                    .iter_mut()
                    .zip(&next)
                    .map(|(cache, tok)| Step {
                        cache,
                        tokens: tok,
                        want_logits: true,
                    })
                    .collect();
                model.forward(&mut steps)?
            };
            next = logits.iter().map(|r| [argmax(r)]).collect();
        }
        decode += t.elapsed().as_secs_f64();
        start += n;
    }
    Ok((prefill, decode))
}

/// Measures each batch size, then one-at-a-time generation of as many sequences as the
/// largest batch; each batched row's speedup is against that one-at-a-time row.
pub fn bench(
    model: &LanguageModel,
    batches: &[usize],
    prompt_len: usize,
    tokens: usize,
) -> Result<Vec<BenchRow>, ModelError> {
    let tokens = tokens.max(2);
    let largest = batches.iter().copied().max().unwrap_or(1).max(1);
    // Warm-up: first calls allocate and, for quantized weights, may dequantize.
    run(model, largest.min(8), largest.min(8), prompt_len, 3)?;
    let decoded = |seqs: usize, secs: f64| (seqs * (tokens - 1)) as f64 / secs.max(1e-9);
    let one_seqs = largest.min(8);
    let (p1, d1) = run(model, 1, one_seqs, prompt_len, tokens)?;
    let base = decoded(one_seqs, d1);
    let mut rows = vec![BenchRow {
        batch: 1,
        sequences: one_seqs,
        mode: "one-at-a-time",
        prefill_tokens_per_s: (one_seqs * prompt_len) as f64 / p1.max(1e-9),
        decode_tokens_per_s: base,
        speedup: 1.0,
    }];
    for &b in batches {
        let b = b.max(1);
        let (p, d) = run(model, b, b, prompt_len, tokens)?;
        let rate = decoded(b, d);
        rows.push(BenchRow {
            batch: b,
            sequences: b,
            mode: "batched",
            prefill_tokens_per_s: (b * prompt_len) as f64 / p.max(1e-9),
            decode_tokens_per_s: rate,
            speedup: rate / base,
        });
    }
    Ok(rows)
}
