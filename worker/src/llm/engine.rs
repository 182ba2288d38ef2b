//! The batched generation engine: many constrained sequences decode together.
//!
//! - **One forward per step for the whole batch.** Each step, every sequence in flight hands the
//!   model the tokens it has not yet fed (a prompt suffix, a sampled token, the tokens the
//!   constraint forces after it) and [`LanguageModel::forward`] runs them as one ragged batch.
//! - **Shared prefix.** All requests of a call start from one [`SharedPrefix`] (the instruction
//!   and exemplars), computed once and referenced, not copied, by every sequence's cache.
//! - **Continuous batching.** A sequence leaves the batch the step it finishes and the next
//!   request joins in its place, so the batch stays full until the queue is empty.
//! - **Forced tokens are not generated.** Where the constraint allows only one continuation
//!   (JSON punctuation, keys, values the PGM fixed), those tokens are appended without asking the
//!   model for logits; they are fed in the next forward together with the sampled token.
//! - **Seeded per request.** Each request samples from its own ChaCha stream, so a request's
//!   output depends on its seed and prompt, not on which other requests share its batch (up to
//!   float rounding differences between batch shapes on some devices).
//!
//! The engine is synchronous and CPU-heavy: call it from a blocking thread, never from the
//! async runtime.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::constrain::{ConstraintError, RowConstraint};
use super::model::{KvCache, LanguageModel, ModelError, SharedPrefix, Step};

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] Box<ModelError>),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error("request {request}: no token after the shared prefix to take the first logits from")]
    EmptySuffix { request: usize },
    #[error(
        "request {request}: no complete value after {limit} tokens (the schema should bound it)"
    )]
    TooLong { request: usize, limit: usize },
    #[error(
        "request {request}: the prompt needs {needed} tokens but the model's context holds {context}"
    )]
    Context {
        request: usize,
        needed: usize,
        context: usize,
    },
}

/// How tokens are drawn from the masked logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f32,
    /// Nucleus: the smallest set of tokens whose probability reaches this is kept.
    pub top_p: f32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_p: 0.95,
        }
    }
}

/// One sequence to generate.
pub struct Request {
    /// Tokens after the shared prefix (may be empty).
    pub suffix: Vec<u32>,
    /// The schema the output must fit.
    pub constraint: RowConstraint,
    /// Seed of this request's sampling stream.
    pub seed: u64,
}

/// A finished sequence.
pub struct Completion {
    /// The request's position in the input.
    pub request: usize,
    /// The constraint, complete: `finish()` gives the values.
    pub constraint: RowConstraint,
    /// Tokens drawn from the model.
    pub sampled: usize,
    /// Tokens the constraint forced.
    pub forced: usize,
}

/// Counters of one [`Engine::run`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineStats {
    /// Forward passes.
    pub steps: usize,
    /// Tokens drawn from the model (each needed logits).
    pub sampled: usize,
    /// Tokens appended because the constraint allowed nothing else.
    pub forced: usize,
    /// Prompt tokens fed after the shared prefix.
    pub prompt: usize,
    /// Largest number of sequences in one forward.
    pub max_batch: usize,
}

/// Runs constrained requests in batches on one model.
pub struct Engine<'m> {
    model: &'m LanguageModel,
    /// Sequences in flight at most.
    pub max_batch: usize,
    /// Tokens a single request may generate (sampled + forced) before it is an error.
    pub max_tokens: usize,
    pub sampling: Sampling,
}

struct Active {
    request: usize,
    cache: KvCache,
    /// Tokens to feed in the next forward.
    pending: Vec<u32>,
    constraint: RowConstraint,
    rng: ChaCha8Rng,
    sampled: usize,
    forced: usize,
}

impl<'m> Engine<'m> {
    pub fn new(model: &'m LanguageModel, max_batch: usize) -> Self {
        Engine {
            model,
            max_batch: max_batch.max(1),
            max_tokens: 1024,
            sampling: Sampling::default(),
        }
    }

    /// Generates every request, starting each from `prefix`, at most `max_batch` at a time.
    /// Completions are handed to `done` as they finish (not in request order).
    pub fn run(
        &self,
        prefix: &SharedPrefix,
        requests: impl IntoIterator<Item = Request>,
        mut done: impl FnMut(Completion) -> Result<(), EngineError>,
    ) -> Result<EngineStats, EngineError> {
        let context = self.model.config().context_length;
        let mut queue = requests.into_iter().enumerate();
        let mut active: Vec<Active> = Vec::with_capacity(self.max_batch);
        let mut stats = EngineStats::default();
        loop {
            // Continuous batching: fill free places from the queue.
            while active.len() < self.max_batch {
                let Some((i, r)) = queue.next() else { break };
                if prefix.len() + r.suffix.len() >= context {
                    return Err(EngineError::Context {
                        request: i,
                        needed: prefix.len() + r.suffix.len(),
                        context,
                    });
                }
                let mut seq = Active {
                    request: i,
                    cache: prefix.cache(),
                    pending: r.suffix,
                    constraint: r.constraint,
                    rng: ChaCha8Rng::seed_from_u64(r.seed),
                    sampled: 0,
                    forced: 0,
                };
                stats.prompt += seq.pending.len();
                force(&mut seq)?;
                if seq.constraint.is_done() {
                    stats.forced += seq.forced;
                    done(completion(seq))?;
                } else if seq.pending.is_empty() {
                    // The first logits come from the last fed token: keep at least the prompt's
                    // last token out of the shared prefix.
                    return Err(EngineError::EmptySuffix { request: i });
                } else {
                    active.push(seq);
                }
            }
            if active.is_empty() {
                return Ok(stats);
            }
            stats.max_batch = stats.max_batch.max(active.len());
            let logits = {
                let mut steps: Vec<Step<'_>> = active
                    .iter_mut()
                    .map(|a| Step {
                        cache: &mut a.cache,
                        tokens: &a.pending,
                        want_logits: true,
                    })
                    .collect();
                self.model.forward(&mut steps).map_err(Box::new)?
            };
            stats.steps += 1;
            // Masks, sampling and forced tokens per sequence, in parallel (each owns its state).
            let sampling = self.sampling;
            let max_tokens = self.max_tokens;
            let finished: Vec<bool> = active
                .par_iter_mut()
                .zip(logits.into_par_iter())
                .map(|(seq, mut row)| -> Result<bool, EngineError> {
                    seq.pending.clear();
                    seq.constraint.mask_logits(&mut row)?;
                    let token = sample(&row, sampling, &mut seq.rng);
                    seq.constraint.commit(&[token])?;
                    seq.sampled += 1;
                    seq.pending.push(token);
                    if !seq.constraint.is_done() {
                        force(seq)?;
                    }
                    if seq.constraint.is_done() {
                        return Ok(true);
                    }
                    if seq.cache.len() + seq.pending.len() >= context
                        || seq.sampled + seq.forced >= max_tokens
                    {
                        return Err(EngineError::TooLong {
                            request: seq.request,
                            limit: max_tokens.min(context),
                        });
                    }
                    Ok(false)
                })
                .collect::<Result<_, _>>()?;
            let finished: Vec<usize> = finished
                .iter()
                .enumerate()
                .filter(|(_, f)| **f)
                .map(|(k, _)| k)
                .collect();
            // Leave in reverse so indices stay valid; order of `done` calls is deterministic.
            for k in finished.into_iter().rev() {
                let seq = active.swap_remove(k);
                stats.sampled += seq.sampled;
                stats.forced += seq.forced;
                done(completion(seq))?;
            }
        }
    }
}

/// Appends the tokens the constraint forces now to the sequence's pending tokens.
fn force(seq: &mut Active) -> Result<(), EngineError> {
    let forced = seq.constraint.forced_tokens()?;
    if !forced.is_empty() {
        seq.constraint.commit(&forced)?;
        seq.forced += forced.len();
        seq.pending.extend_from_slice(&forced);
    }
    Ok(())
}

fn completion(seq: Active) -> Completion {
    Completion {
        request: seq.request,
        constraint: seq.constraint,
        sampled: seq.sampled,
        forced: seq.forced,
    }
}

/// Draws a token from masked logits (-inf = not allowed) with temperature and nucleus sampling.
pub fn sample(logits: &[f32], s: Sampling, rng: &mut impl Rng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0 as u32
    };
    if s.temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return argmax();
    }
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, x)| x.is_finite())
        .map(|(i, &x)| (i as u32, ((x - max) / s.temperature).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0.0;
    let mut cut = probs.len();
    for (i, p) in probs.iter().enumerate() {
        kept += p.1;
        if kept >= s.top_p * total {
            cut = i + 1;
            break;
        }
    }
    probs.truncate(cut);
    let mut u = rng.random::<f32>() * kept;
    for &(id, p) in &probs {
        if u < p {
            return id;
        }
        u -= p;
    }
    probs.last().map_or_else(argmax, |p| p.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_respects_the_mask_and_the_seed() {
        let mut logits = vec![f32::NEG_INFINITY; 10];
        logits[3] = 0.5;
        logits[7] = 0.4;
        let s = Sampling::default();
        let draws = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..200)
                .map(|_| sample(&logits, s, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draws(1);
        assert!(a.iter().all(|&t| t == 3 || t == 7));
        assert!(a.contains(&3) && a.contains(&7));
        assert_eq!(a, draws(1));
        assert_ne!(a, draws(2));
        let greedy = Sampling {
            temperature: 0.0,
            top_p: 1.0,
        };
        assert_eq!(
            sample(&logits, greedy, &mut ChaCha8Rng::seed_from_u64(0)),
            3
        );
    }

    #[test]
    fn nucleus_drops_the_tail() {
        let mut logits = vec![-20.0f32; 50];
        logits[0] = 10.0;
        let s = Sampling {
            temperature: 1.0,
            top_p: 0.9,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        assert!((0..500).all(|_| sample(&logits, s, &mut rng) == 0));
    }
}
