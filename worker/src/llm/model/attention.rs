//! RoPE and causal attention of a ragged batch, in plain Rust on host f32.
//!
//! Each sequence attends over its own positions only (shared prefix ++ own cache ++ its new
//! tokens), so the work is split into (sequence, head) jobs. They run on candle's CPU barrier
//! pool, the threads that also run the quantized matmuls: between two matmuls its workers spin
//! waiting for work, so handing them the attention costs microseconds, while a second pool
//! (rayon) would compete with those spinning threads for the same cores. A GPU version would
//! keep the caches in device memory (paged blocks) and replace `attend_layer` with a varlen /
//! paged attention kernel fed by per-sequence block tables; everything else already runs on the
//! model's device.

use std::sync::{Mutex, OnceLock};

use super::Step;
use super::cache::LayerKv;
use super::config::{ModelConfig, RopeScaling, RopeStyle};

/// Rows from which RoPE and the q/k norms are split across threads.
const PARALLEL_ROWS: usize = 64;
/// Multiply-adds from which attention is split across threads (tens of microseconds of work).
const PARALLEL_WORK: usize = 1 << 16;

/// The head layout of one attention layer.
pub(crate) struct AttentionGeometry {
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) style: RopeStyle,
    /// Epsilon of qwen3's per-head q/k RMSNorm.
    pub(crate) qk_norm_eps: f32,
}

impl AttentionGeometry {
    fn q_width(&self) -> usize {
        self.heads * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    fn row_width(&self) -> usize {
        self.q_width() + 2 * self.kv_width()
    }
}

/// RoPE's inverse frequencies `theta^(-2i/d)`, adjusted by the configured scaling.
pub(crate) fn inverse_frequencies(config: &ModelConfig) -> Vec<f64> {
    let d = config.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| config.rope_theta.powf(-((2 * i) as f64) / d as f64))
        .collect();
    match &config.rope_scaling {
        RopeScaling::None => base,
        RopeScaling::Linear(factor) => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Factors(factors) => base
            .iter()
            .zip(factors.iter().chain(std::iter::repeat(&1.0)))
            .map(|(f, k)| f / f64::from(*k))
            .collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_context,
        } => {
            let low_wavelen = original_context / low_freq_factor;
            let high_wavelen = original_context / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original_context / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// Cosines and sines of every row's position, `[rows][head_dim / 2]`, shared by all layers.
pub(crate) struct RopeTable {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub(crate) fn new(positions: &[usize], inv_freq: &[f64]) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in inv_freq {
                let (s, c) = (p as f64 * f).sin_cos();
                cos.push(c as f32);
                sin.push(s as f32);
            }
        }
        RopeTable { half, cos, sin }
    }

    fn row(&self, r: usize) -> (&[f32], &[f32]) {
        let range = r * self.half..(r + 1) * self.half;
        (&self.cos[range.clone()], &self.sin[range])
    }
}

fn rotate(x: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    match style {
        RopeStyle::Interleaved => {
            for (i, pair) in x.chunks_exact_mut(2).enumerate() {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * cos[i] - b * sin[i];
                pair[1] = a * sin[i] + b * cos[i];
            }
        }
        RopeStyle::HalfSplit => {
            let (lo, hi) = x.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (lo[i], hi[i]);
                lo[i] = a * cos[i] - b * sin[i];
                hi[i] = b * cos[i] + a * sin[i];
            }
        }
    }
}

fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (mean_sq + eps).sqrt();
    for (v, w) in x.iter_mut().zip(weight) {
        *v *= scale * w;
    }
}

/// Dot product with independent accumulators so that it vectorizes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Runs one layer's attention for the whole batch. `qkv` is `[rows][q | k | v]` straight from
/// the fused projection; it gets q/k-normed (qwen3) and rotated in place, the new keys and
/// values are appended to each step's cache for `layer`, and the result is `[rows][heads *
/// head_dim]`, ready for the output projection.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_layer(
    g: &AttentionGeometry,
    rope: &RopeTable,
    q_norm: Option<&[f32]>,
    k_norm: Option<&[f32]>,
    qkv: &mut [f32],
    steps: &mut [Step<'_>],
    offsets: &[usize],
    layer: usize,
) -> Vec<f32> {
    let hd = g.head_dim;
    let (qw, kvw, rw) = (g.q_width(), g.kv_width(), g.row_width());
    let rows = qkv.len() / rw;

    let prepare = |(r, row): (usize, &mut [f32])| {
        let (cos, sin) = rope.row(r);
        let (q, rest) = row.split_at_mut(qw);
        let k = &mut rest[..kvw];
        for head in q.chunks_exact_mut(hd) {
            if let Some(w) = q_norm {
                rms_norm_in_place(head, w, g.qk_norm_eps);
            }
            rotate(head, cos, sin, g.style);
        }
        for head in k.chunks_exact_mut(hd) {
            if let Some(w) = k_norm {
                rms_norm_in_place(head, w, g.qk_norm_eps);
            }
            rotate(head, cos, sin, g.style);
        }
    };
    // Small batches stay on this thread: splitting them costs more than the work.
    if rows >= PARALLEL_ROWS {
        // One uncontended lock per row hands each thread its rows without `unsafe`.
        let rows: Vec<Mutex<&mut [f32]>> = qkv.chunks_mut(rw).map(Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(rows.len(), |range| {
            for r in range {
                if let Ok(mut row) = rows[r].lock() {
                    prepare((r, &mut **row));
                }
            }
        });
    } else {
        qkv.chunks_mut(rw).enumerate().for_each(prepare);
    }

    for (step, &off) in steps.iter_mut().zip(offsets) {
        for r in off..off + step.tokens.len() {
            let row = &qkv[r * rw..(r + 1) * rw];
            step.cache
                .append(layer, &row[qw..qw + kvw], &row[qw + kvw..]);
        }
    }

    let qkv: &[f32] = qkv;
    let steps: &[Step<'_>] = steps;
    let jobs: Vec<(usize, usize)> = (0..steps.len())
        .flat_map(|s| (0..g.heads).map(move |h| (s, h)))
        .collect();
    let group = g.heads / g.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // Multiply-adds of the score and value passes, to decide whether threads pay off.
    let work: usize = steps
        .iter()
        .map(|s| {
            let n = s.tokens.len();
            n * (s.cache.len() + n) * g.heads * hd * 2
        })
        .sum();
    let job = |&(s, h): &(usize, usize)| {
        let step = &steps[s];
        let n = step.tokens.len();
        let segs = step.cache.segments(layer);
        // Positions before this step's first token (the new ones are already appended).
        let total: usize = segs.iter().map(|l| l.keys.len() / kvw).sum();
        let past = total - n;
        let kv_off = (h / group) * hd;
        let queries = (0..n).map(|i| {
            let r = offsets[s] + i;
            &qkv[r * rw + h * hd..r * rw + (h + 1) * hd]
        });
        attend_head(queries, &segs, kvw, kv_off, hd, past, n, scale)
    };
    let results: Vec<Vec<f32>> = if work >= PARALLEL_WORK && jobs.len() > 1 {
        let slots: Vec<OnceLock<Vec<f32>>> = jobs.iter().map(|_| OnceLock::new()).collect();
        candle_core::utils::barrier_pool().execute_chunked(jobs.len(), |range| {
            for i in range {
                let _ = slots[i].set(job(&jobs[i]));
            }
        });
        slots
            .into_iter()
            .map(|s| s.into_inner().unwrap_or_default())
            .collect()
    } else {
        jobs.iter().map(job).collect()
    };

    let mut out = vec![0f32; rows * qw];
    for (&(s, h), res) in jobs.iter().zip(results) {
        for (i, head) in res.chunks_exact(hd).enumerate() {
            let r = offsets[s] + i;
            out[r * qw + h * hd..r * qw + (h + 1) * hd].copy_from_slice(head);
        }
    }
    out
}

/// Causal attention of one head of one sequence: query `i` (position `past + i`) attends to
/// positions `0..=past + i` across the segments. Returns `[n][head_dim]`.
#[allow(clippy::too_many_arguments)]
fn attend_head<'q>(
    queries: impl Iterator<Item = &'q [f32]>,
    segs: &[&LayerKv],
    kv_width: usize,
    kv_off: usize,
    hd: usize,
    past: usize,
    n: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![0f32; n * hd];
    let mut scores = Vec::with_capacity(past + n);
    for (i, q) in queries.enumerate() {
        let limit = past + i + 1;
        scores.clear();
        'keys: for seg in segs {
            for key in seg.keys.chunks_exact(kv_width) {
                if scores.len() == limit {
                    break 'keys;
                }
                scores.push(dot(q, &key[kv_off..kv_off + hd]) * scale);
            }
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        let o = &mut out[i * hd..(i + 1) * hd];
        let mut p = 0;
        'values: for seg in segs {
            for value in seg.values.chunks_exact(kv_width) {
                if p == limit {
                    break 'values;
                }
                let w = scores[p] / sum;
                for (acc, v) in o.iter_mut().zip(&value[kv_off..kv_off + hd]) {
                    *acc += w * v;
                }
                p += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_agree_up_to_the_pair_permutation() {
        // The interleaved rotation of a vector equals the half-split rotation of the same
        // vector with its pairs (i, i + d/2) moved to (2i, 2i + 1): llama.cpp's permutation.
        let d = 8;
        let half: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut inter = vec![0f32; d];
        for i in 0..d / 2 {
            inter[2 * i] = half[i];
            inter[2 * i + 1] = half[i + d / 2];
        }
        let table = RopeTable::new(&[5], &[1.0, 0.1, 0.01, 0.001]);
        let (cos, sin) = table.row(0);
        let mut a = half.clone();
        rotate(&mut a, cos, sin, RopeStyle::HalfSplit);
        let mut b = inter.clone();
        rotate(&mut b, cos, sin, RopeStyle::Interleaved);
        for i in 0..d / 2 {
            assert!((a[i] - b[2 * i]).abs() < 1e-6);
            assert!((a[i + d / 2] - b[2 * i + 1]).abs() < 1e-6);
        }
        // A rotation keeps the norm and changes the vector.
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>();
        assert!((norm(&a) - norm(&half)).abs() < 1e-5);
        assert!(a.iter().zip(&half).any(|(x, y)| (x - y).abs() > 1e-3));
    }

    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for n in [1, 7, 8, 9, 64, 67] {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-3, "n = {n}");
        }
    }

    #[test]
    fn single_position_attends_to_itself() {
        let seg = LayerKv {
            keys: vec![1.0, 2.0],
            values: vec![3.0, 4.0],
        };
        let q = [0.5f32, -0.5];
        let out = attend_head(std::iter::once(&q[..]), &[&seg], 2, 0, 2, 0, 1, 1.0);
        assert_eq!(out, vec![3.0, 4.0]);
    }
}
