//! A language model as a reviewer of synthetic records, for `chimera eval`:
//!
//! - **Judge** (Amalgam): the model reads `k` real reference records and one candidate and
//!   answers a score from 1 (clearly artificial) to 5 (indistinguishable); the answer's next
//!   token after `{"score":` is restricted to the five scores, so every candidate gets one,
//!   with the expected score beside it.
//! - **Perplexity** (HARMONIC's DLT): the model's perplexity on each record's text, computed by
//!   teacher forcing, many records per forward pass.

use super::chat::ChatMessage;
use super::children::common_prefix;
use super::fill::{FillError, LlmRuntime};
use super::model::{KvCache, Step};

/// Scores records 1..=5 against real references with one model.
pub struct Judge<'r> {
    runtime: &'r LlmRuntime,
    /// Prompts read in one forward pass at most.
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

    /// The token ids that spell each score 1..=5 as the answer's next token (`"4"`, `" 4"`).
    fn score_tokens(&self) -> Result<[Vec<u32>; 5], FillError> {
        let tokenizer = &self.runtime.tokenizer.tokenizer;
        let mut out: [Vec<u32>; 5] = Default::default();
        for (d, ids) in out.iter_mut().enumerate() {
            for text in [format!("{}", d + 1), format!(" {}", d + 1)] {
                let enc = tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| FillError::Prompt(e.to_string()))?;
                if let [id] = enc.get_ids()
                    && !ids.contains(id)
                {
                    ids.push(*id);
                }
            }
            if ids.is_empty() {
                return Err(FillError::Prompt(format!(
                    "the judge's tokenizer spells the score {} with more than one token",
                    d + 1
                )));
            }
        }
        Ok(out)
    }

    /// Scores every candidate; `references[i]` are candidate `i`'s references, of which a
    /// prompt keeps as many as fit the model's context.
    ///
    /// The prompt ends with the start of the answer, `{"score":`, and one forward pass gives
    /// the next token's distribution; restricted to the tokens of 1..=5 and renormalised, its
    /// most likely score is the judge's answer (what constrained greedy decoding would write)
    /// and its mean the expected score, which still ranks records when a small judge gives
    /// every record the same answer.
    pub fn scores(
        &self,
        what: &str,
        candidates: &[String],
        references: &[Vec<String>],
    ) -> Result<Verdicts, FillError> {
        let context = self.runtime.model.config().context_length;
        let digits = self.score_tokens()?;
        let mut verdicts = Verdicts {
            scores: vec![0; candidates.len()],
            expected: vec![0.0; candidates.len()],
            fewest_references: references.iter().map(Vec::len).max().unwrap_or(0),
        };
        let indices: Vec<usize> = (0..candidates.len()).collect();
        for window in indices.chunks(self.max_batch) {
            let mut prompts = Vec::with_capacity(window.len());
            for &i in window {
                // Fewer references when the prompt would not fit the context.
                let mut k = references[i].len();
                let tokens = loop {
                    let text = self.prompt(what, &references[i][..k], &candidates[i])?;
                    let tokens = self.runtime.encode(&(text + ANSWER_START))?;
                    if tokens.len() < context {
                        break tokens;
                    }
                    if k == 0 {
                        return Err(FillError::Prompt(format!(
                            "the judge's prompt for record {i} needs {} tokens without any \
                             reference, more than the model's context of {context}",
                            tokens.len()
                        )));
                    }
                    k -= 1;
                };
                verdicts.fewest_references = verdicts.fewest_references.min(k);
                prompts.push(tokens);
            }
            // The shared start once, then every prompt's own tokens in one ragged batch.
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
            let mut caches: Vec<KvCache> = prompts.iter().map(|_| prefix.cache()).collect();
            let mut steps: Vec<Step<'_>> = caches
                .iter_mut()
                .zip(&prompts)
                .map(|(cache, tokens)| Step {
                    cache,
                    tokens: &tokens[common..],
                    want_logits: true,
                })
                .collect();
            let logits = self.runtime.model.forward(&mut steps).map_err(Box::new)?;
            for (&i, row) in window.iter().zip(&logits) {
                let (score, expected) = score_of(row, &digits);
                verdicts.scores[i] = score;
                verdicts.expected[i] = expected;
            }
        }
        Ok(verdicts)
    }
}

/// What the judge said of each candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    /// The most likely score, 1..=5.
    pub scores: Vec<u8>,
    /// The expected score under the judge's distribution over 1..=5.
    pub expected: Vec<f64>,
    /// The fewest references any prompt kept.
    pub fewest_references: usize,
}

/// The text the assistant's answer starts with: the score comes next.
const ANSWER_START: &str = "{\"score\":";

/// The most likely score and the expected score from next-token logits, restricted to the
/// tokens of each score (`digits[s - 1]`, summed) and renormalised.
fn score_of(logits: &[f32], digits: &[Vec<u32>; 5]) -> (u8, f64) {
    let max = digits
        .iter()
        .flatten()
        .map(|&t| logits[t as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    let mass: Vec<f64> = digits
        .iter()
        .map(|ids| {
            ids.iter()
                .map(|&t| f64::from(logits[t as usize] - max).exp())
                .sum()
        })
        .collect();
    let total: f64 = mass.iter().sum();
    let best = (0..5)
        .max_by(|&a, &b| mass[a].total_cmp(&mass[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let expected = mass
        .iter()
        .enumerate()
        .map(|(s, m)| (s + 1) as f64 * m / total)
        .sum();
    (best as u8 + 1, expected)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_of_restricts_and_renormalises() {
        // Vocabulary of 8; scores 1..=5 are tokens 1..=5, and token 7 also spells "5".
        let digits: [Vec<u32>; 5] = [vec![1], vec![2], vec![3], vec![4], vec![5, 7]];
        let mut logits = vec![0.0f32; 8];
        logits[0] = 50.0; // not a score: ignored
        logits[3] = 2.0_f32.ln(); // score 3 twice as likely as each other token
        let (best, expected) = score_of(&logits, &digits);
        assert_eq!(best, 3);
        // Masses 1, 1, 2, 1, 1 + 1: (1 + 2 + 6 + 4 + 10) / 7.
        assert!((expected - 23.0 / 7.0).abs() < 1e-9, "{expected}");
        // Ties go to the lower score.
        let (best, expected) = score_of(&[0.0; 8], &[vec![1], vec![2], vec![3], vec![4], vec![5]]);
        assert_eq!(best, 1);
        assert!((expected - 3.0).abs() < 1e-9);
    }
}
