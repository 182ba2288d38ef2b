//! A language model as a reviewer of synthetic records, for `chimera eval`:
//!
//! - **Judge** (Amalgam): the model reads `k` real reference records and one candidate and
//!   answers a score from 1 (clearly artificial) to 5 (indistinguishable); the answer is
//!   constrained to `{"score": 1..=5}` and decoded greedily, so every candidate gets a score.
//! - **Perplexity** (HARMONIC's DLT): the model's perplexity on each record's text, computed by
//!   teacher forcing, many records per forward pass.

use serde_json::Value;

use super::chat::ChatMessage;
use super::children::common_prefix;
use super::constrain::{FieldSchema, FieldType, FieldValue};
use super::engine::{Engine, Request, Sampling};
use super::fill::{FillError, LlmRuntime};
use super::model::{KvCache, Step};

/// Prompts prefilled and decoded together at most.
const WINDOW: usize = 64;

/// Scores records 1..=5 against real references with one model.
pub struct Judge<'r> {
    runtime: &'r LlmRuntime,
    /// Sequences decoded together at most.
    pub max_batch: usize,
}

impl<'r> Judge<'r> {
    pub fn new(runtime: &'r LlmRuntime, max_batch: usize) -> Self {
        Judge {
            runtime,
            max_batch: max_batch.max(1),
        }
    }

    /// The chat prompt that asks for one candidate's score.
    pub fn prompt(
        &self,
        what: &str,
        references: &[String],
        candidate: &str,
    ) -> Result<String, FillError> {
        let system = format!(
            "You review {what} for realism. You are shown real reference records and one \
             candidate record. Rate how realistic the candidate is: 1 = clearly artificial \
             (impossible or contradictory values), 3 = plausible but odd, 5 = indistinguishable \
             from the real records. Answer with JSON: {{\"score\": N}}."
        );
        let mut user = String::from("Real reference records:\n");
        for r in references {
            user.push_str(r);
            user.push('\n');
        }
        user.push_str("\nCandidate record:\n");
        user.push_str(candidate);
        self.runtime
            .chat
            .render(
                &[ChatMessage::system(system), ChatMessage::user(user)],
                true,
            )
            .map_err(|e| FillError::Prompt(e.to_string()))
    }

    /// One score in 1..=5 per candidate, and the fewest references any prompt kept;
    /// `references[i]` are candidate `i`'s references, of which each prompt keeps as many as
    /// fit the model's context.
    pub fn scores(
        &self,
        what: &str,
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<(Vec<u8>, usize), FillError> {
        let mut fewest = references.iter().map(Vec::len).max().unwrap_or(0);
        let context = self.runtime.model.config().context_length;
        let mut engine = Engine::new(&self.runtime.model, self.max_batch);
        engine.sampling = Sampling {
            temperature: 0.0,
            top_p: 1.0,
        };
        engine.max_tokens = 32;
        let score = FieldSchema {
            enum_values: Some((1..=5).map(|s| s.to_string()).collect()),
            ..FieldSchema::new("score", FieldType::Integer)
        };
        let mut out = vec![0u8; candidates.len()];
        let indices: Vec<usize> = (0..candidates.len()).collect();
        for window in indices.chunks(WINDOW) {
            let mut prompts = Vec::with_capacity(window.len());
            for &i in window {
                // Fewer references when the prompt would not fit the context.
                let mut k = references[i].len();
                let tokens = loop {
                    let tokens = self.runtime.encode(&self.prompt(
                        what,
                        &references[i][..k],
                        &candidates[i],
                    )?)?;
                    if tokens.len() + engine.max_tokens <= context {
                        break tokens;
                    }
                    if k == 0 {
                        return Err(FillError::Prompt(format!(
                            "the judge's prompt for record {i} needs {} tokens without any \
                             reference, more than the model's context of {context}",
                            tokens.len() + engine.max_tokens
                        )));
                    }
                    k -= 1;
                };
                fewest = fewest.min(k);
                prompts.push(tokens);
            }
            let common = common_prefix(&prompts);
            let mut cache = self.runtime.model.new_cache();
            if common > 0 {
                let mut steps = [Step {
                    cache: &mut cache,
                    tokens: &prompts[0][..common],
                    want_logits: false,
                }];
                self.runtime.model.forward(&mut steps).map_err(Box::new)?;
            }
            let prefix = cache.freeze();
            let mut requests = Vec::with_capacity(window.len());
            for tokens in &prompts {
                requests.push(Request {
                    suffix: tokens[common..].to_vec(),
                    constraint: self
                        .runtime
                        .constraints
                        .row(&[("score".to_owned(), FieldValue::Generate(score.clone()))])?,
                    seed: 0,
                });
            }
            let mut failed = None;
            engine
                .run(&prefix, requests, |c| {
                    let value = c.constraint.finish()?;
                    match value.get("score").and_then(Value::as_u64) {
                        Some(s @ 1..=5) => out[window[c.request]] = s as u8,
                        other => failed = Some(format!("{other:?}")),
                    }
                    Ok(())
                })
                .map_err(Box::new)?;
            if let Some(v) = failed {
                return Err(FillError::Prompt(format!(
                    "the judge answered a score outside 1..=5: {v}"
                )));
            }
        }
        Ok((out, fewest))
    }
}

/// The model's perplexity on each text: `exp` of the mean negative log-likelihood of its
/// tokens after the first (BOS included when the model wants one), `max_batch` texts per
/// forward pass.
pub fn perplexity(
    runtime: &LlmRuntime,
    texts: &[String],
    max_batch: usize,
) -> Result<Vec<f64>, FillError> {
    let context = runtime.model.config().context_length;
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(max_batch.max(1)) {
        let tokens: Vec<Vec<u32>> = batch
            .iter()
            .map(|t| {
                let mut ids = runtime.encode(t)?;
                ids.truncate(context);
                Ok(ids)
            })
            .collect::<Result<_, FillError>>()?;
        let mut caches: Vec<KvCache> = batch.iter().map(|_| runtime.model.new_cache()).collect();
        let mut nll = vec![0.0f64; batch.len()];
        let longest = tokens.iter().map(Vec::len).max().unwrap_or(0);
        for position in 0..longest.saturating_sub(1) {
            // Every text with a next token feeds its token at `position`.
            let live: Vec<usize> = (0..batch.len())
                .filter(|&i| position + 1 < tokens[i].len())
                .collect();
            let mut steps: Vec<Step<'_>> = caches
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| position + 1 < tokens[*i].len())
                .map(|(i, cache)| Step {
                    cache,
                    tokens: &tokens[i][position..=position],
                    want_logits: true,
                })
                .collect();
            let logits = runtime.model.forward(&mut steps).map_err(Box::new)?;
            for (&i, row) in live.iter().zip(&logits) {
                let next = tokens[i][position + 1] as usize;
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&l| f64::from(l - max).exp()).sum();
                let log_p = f64::from(row[next] - max) - sum.ln();
                nll[i] -= log_p;
            }
        }
        for (i, t) in tokens.iter().enumerate() {
            let predicted = t.len().saturating_sub(1).max(1);
            out.push((nll[i] / predicted as f64).exp());
        }
    }
    Ok(out)
}
