//! The LLM writes the child rows of entities (Amalgam's method, one row per request, every
//! entity of a shard in the same batches).
//!
//! The sequence model has drawn each row. The values that shape the entity stay as the PGM drew
//! them, written as forced tokens: the row's counts of its own children. The LLM writes every
//! other modelled column of the row as one JSON object, constrained by the column's encoding
//! (a category from the modelled values, a number inside the modelled range, a time offset that
//! is never negative where order must hold), given the parent's row, the previous sibling's row,
//! the position, and exemplars: earlier completed rows of the same table in the shard
//! (`synthetic`, so no real record reaches a prompt) or none.

use std::collections::HashMap;
use std::sync::Arc;

use chimera_core::domain::{Encoding, Value};
use chimera_core::model::{Exemplars, Model};
use chimera_core::relational::{KEY_SEPARATOR, RealChild, RealEntities};
use chimera_core::rng;
use serde_json::{Map, Value as Json};

use super::chat::ChatMessage;
use super::constrain::{FieldSchema, FieldType, FieldValue};
use super::engine::{Engine, Request};
use super::fill::{EXEMPLARS, FillError, LlmRuntime, ROW_TOKENS};

/// Rows per prompt window: they share the instruction and exemplars (and its cache).
pub const WINDOW: usize = 128;

/// How a row column enters the LLM's object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Written by the LLM under the encoding of the model's column `c`.
    Write(usize),
    /// A row's place in time (`order_by` of the first sibling, or the gap after the previous):
    /// written, never empty, where the PGM drew a value, and left empty where it drew none.
    Order(usize),
    /// Kept as the PGM drew it (forced tokens).
    Keep,
    /// Not shown (identifiers, columns outside the network).
    Skip,
}

/// One row to write: what the prompt shows and what the object holds.
pub struct ChildRow<'m> {
    /// The parent's row and, after the first child, the previous sibling's row.
    pub parent: Map<String, Json>,
    pub previous: Option<Map<String, Json>>,
    /// Position among the siblings (from 0) and their number.
    pub position: u32,
    pub siblings: u32,
    /// The row as the PGM drew it, one value per row column.
    pub drawn: Vec<Value<'m>>,
}

/// Writes child rows of one table with a language model.
pub struct ChildWriter {
    pub runtime: Arc<LlmRuntime>,
    pub exemplars: Exemplars,
    /// Real child rows for `knn-real` exemplars, per table of the tree.
    pub real: Option<Arc<RealEntities>>,
    /// Sequences decoded together.
    pub max_batch: usize,
}

/// A value as JSON (numbers as numbers, whole ones as integers).
pub fn json_of(v: &Value<'_>) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Str(s) => Json::String(label(s)),
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Json::from(*x as i64),
        Value::Number(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
    }
}

/// A category as the LLM reads and writes it: the parts of a composite key joined by ` | `.
fn label(value: &str) -> String {
    value.replace(KEY_SEPARATOR, " | ")
}

/// The schema of a value the LLM writes in a column with encoding `enc`.
fn field_schema(name: &str, enc: &Encoding) -> FieldSchema {
    match enc {
        Encoding::Categorical(c) => {
            let mut s = FieldSchema::new(name, FieldType::String);
            s.enum_values = Some(c.values.iter().chain(&c.merged).map(|v| label(v)).collect());
            s.nullable = c.null;
            s
        }
        Encoding::Numeric(n) => {
            let ty = if n.integer {
                FieldType::Integer
            } else {
                FieldType::Number
            };
            let mut s = FieldSchema::new(name, ty);
            let lows = n
                .spikes
                .first()
                .copied()
                .into_iter()
                .chain(n.bins.first().map(|b| b.lo));
            let highs = n
                .spikes
                .last()
                .copied()
                .into_iter()
                .chain(n.bins.last().map(|b| b.hi));
            s.minimum = lows
                .reduce(f64::min)
                .map(|x| if n.integer { x.ceil() } else { x });
            s.maximum = highs
                .reduce(f64::max)
                .map(|x| if n.integer { x.floor() } else { x });
            s.nullable = n.null;
            s
        }
    }
}

/// The value the LLM wrote, in the model's terms (a category borrowed from its encoding).
fn value_of<'m>(enc: &'m Encoding, v: &Json) -> Value<'m> {
    match (enc, v) {
        (_, Json::Null) => Value::Null,
        (Encoding::Categorical(c), Json::String(s)) => c
            .values
            .iter()
            .chain(&c.merged)
            .find(|x| label(x) == *s)
            .map_or(Value::Null, |x| Value::Str(x.as_str())),
        (_, Json::Number(n)) => n.as_f64().map_or(Value::Null, Value::Number),
        _ => Value::Null,
    }
}

impl ChildWriter {
    /// Rewrites the `Write` columns of `rows` (in place); `names` are the row columns, `slots`
    /// say what each is, `model` is the sequence model whose encodings constrain the values.
    #[allow(clippy::too_many_arguments)]
    pub fn write<'m>(
        &self,
        table: &str,
        parent_table: &str,
        names: &[String],
        slots: &[Slot],
        model: &'m Model,
        rows: &mut [ChildRow<'m>],
        t: usize,
        seed: u64,
    ) -> Result<usize, FillError> {
        let runtime = &self.runtime;
        let real = match self.exemplars {
            Exemplars::KnnReal => Some(Nearest::new(
                self.real
                    .as_ref()
                    .and_then(|r| r.get(t))
                    .ok_or(FillError::KnnRealUnavailable)?,
            )),
            _ => None,
        };
        let mut engine = Engine::new(&runtime.model, self.max_batch);
        engine.max_tokens = 4096;
        let encodings: Vec<Option<&'m Encoding>> = slots
            .iter()
            .map(|s| match s {
                Slot::Write(c) | Slot::Order(c) => model.columns[*c].encoding.as_ref(),
                _ => None,
            })
            .collect();
        let object = |drawn: &[Value<'_>]| {
            let mut m = Map::new();
            for ((name, slot), v) in names.iter().zip(slots).zip(drawn) {
                if *slot != Slot::Skip {
                    m.insert(name.clone(), json_of(v));
                }
            }
            m
        };
        // Exemplars to start with: the first rows as the network drew them.
        let mut pool: Vec<Map<String, Json>> = match self.exemplars {
            Exemplars::Synthetic => rows
                .iter()
                .take(EXEMPLARS)
                .map(|r| object(&r.drawn))
                .collect(),
            _ => Vec::new(),
        };
        let mut sampled = 0;
        let mut start = 0;
        while start < rows.len() {
            let end = (start + WINDOW).min(rows.len());
            // Exemplars are dropped from the end while a prompt leaves less than ROW_TOKENS of
            // the model's context for the row.
            let context = runtime.model.config().context_length;
            // With knn-real, each row's exemplars are the real rows nearest its parent.
            let chosen: Vec<Vec<Map<String, Json>>> = match &real {
                Some(near) => rows[start..end]
                    .iter()
                    .enumerate()
                    .map(|(k, r)| {
                        near.rows(
                            &r.parent,
                            rng::derive_seed(seed, &[0x4B4E, (start + k) as u64]),
                        )
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut n = if real.is_some() { KNN } else { pool.len() };
            let prompts = loop {
                let shared = self.instruction(
                    table,
                    parent_table,
                    names,
                    slots,
                    &pool[..n.min(pool.len())],
                );
                let mut prompts = Vec::with_capacity(end - start);
                let mut longest = 0;
                for (k, r) in rows[start..end].iter().enumerate() {
                    let system = match chosen.get(k) {
                        Some(ex) => self.instruction(
                            table,
                            parent_table,
                            names,
                            slots,
                            &ex[..n.min(ex.len())],
                        ),
                        None => shared.clone(),
                    };
                    let tokens =
                        runtime.encode(&self.prompt(&system, table, parent_table, r)?)?;
                    longest = longest.max(tokens.len());
                    prompts.push(tokens);
                }
                if longest + ROW_TOKENS <= context {
                    break prompts;
                }
                if n == 0 {
                    return Err(FillError::Prompt(format!(
                        "a {table} prompt takes {longest} tokens; with {ROW_TOKENS} for the row that is more than the model's context of {context}"
                    )));
                }
                n -= 1;
            };
            let common = common_prefix(&prompts);
            let mut cache = runtime.model.new_cache();
            if common > 0 {
                let mut steps = [super::model::Step {
                    cache: &mut cache,
                    tokens: &prompts[0][..common],
                    want_logits: false,
                }];
                runtime.model.forward(&mut steps).map_err(Box::new)?;
            }
            let prefix = cache.freeze();
            let mut requests = Vec::with_capacity(end - start);
            for (k, (r, tokens)) in rows[start..end].iter().zip(&prompts).enumerate() {
                let mut spec: Vec<(String, FieldValue)> = Vec::new();
                for (j, (name, slot)) in names.iter().zip(slots).enumerate() {
                    match (slot, encodings[j]) {
                        (Slot::Write(_), Some(enc)) => {
                            spec.push((name.clone(), FieldValue::Generate(field_schema(name, enc))))
                        }
                        (Slot::Order(_), Some(enc)) if r.drawn[j] != Value::Null => {
                            let mut f = field_schema(name, enc);
                            f.nullable = false;
                            spec.push((name.clone(), FieldValue::Generate(f)));
                        }
                        (Slot::Skip, _) => {}
                        _ => spec.push((name.clone(), FieldValue::Fixed(json_of(&r.drawn[j])))),
                    }
                }
                requests.push(Request {
                    suffix: tokens[common..].to_vec(),
                    constraint: runtime.constraints.row(&spec)?,
                    seed: rng::derive_seed(seed, &[0xC41D, (start + k) as u64]),
                });
            }
            let mut done: Vec<(usize, Map<String, Json>)> = Vec::with_capacity(end - start);
            let stats = engine
                .run(&prefix, requests, |c| {
                    done.push((c.request, c.constraint.finish()?));
                    Ok(())
                })
                .map_err(Box::new)?;
            sampled += stats.sampled;
            done.sort_by_key(|d| d.0);
            for (k, values) in &done {
                let row = &mut rows[start + k];
                for (j, name) in names.iter().enumerate() {
                    if let Some(enc) = encodings[j] {
                        row.drawn[j] = value_of(enc, values.get(name).unwrap_or(&Json::Null));
                    }
                }
            }
            if self.exemplars == Exemplars::Synthetic {
                let fresh: Vec<Map<String, Json>> = done
                    .iter()
                    .rev()
                    .take(EXEMPLARS)
                    .map(|(k, _)| object(&rows[start + k].drawn))
                    .collect();
                pool = fresh.into_iter().rev().collect();
            }
            start = end;
        }
        Ok(sampled)
    }

    /// One row's chat prompt: the instruction (with exemplars), then the parent, the previous
    /// sibling and the position.
    fn prompt(
        &self,
        system: &str,
        table: &str,
        parent_table: &str,
        r: &ChildRow<'_>,
    ) -> Result<String, FillError> {
        let mut user = format!(
            "The {parent_table} row: {}\n",
            Json::Object(r.parent.clone())
        );
        match &r.previous {
            Some(p) => user.push_str(&format!(
                "The previous {table} row: {}\n",
                Json::Object(p.clone())
            )),
            None => user.push_str(&format!("It is the first {table} row.\n")),
        }
        user.push_str(&format!(
            "Write {table} row {} of {}.",
            r.position + 1,
            r.siblings
        ));
        self.runtime
            .chat
            .render(
                &[
                    ChatMessage::system(system.to_string()),
                    ChatMessage::user(user),
                ],
                true,
            )
            .map_err(|e| FillError::Prompt(e.to_string()))
    }

    fn instruction(
        &self,
        table: &str,
        parent_table: &str,
        names: &[String],
        slots: &[Slot],
        pool: &[Map<String, Json>],
    ) -> String {
        let columns: Vec<&str> = names
            .iter()
            .zip(slots)
            .filter(|(_, s)| **s != Slot::Skip)
            .map(|(n, _)| n.as_str())
            .collect();
        let mut s = format!(
            "You write realistic rows of the table `{table}`; each belongs to a `{parent_table}` \
             row and follows its previous sibling. A row is one JSON object with the columns {}. \
             Times are in days: a column `X~gap` is the time since the previous row, a column \
             declared after another is the time since that one. Columns starting with `#` count \
             the row's own child rows.",
            columns.join(", ")
        );
        if !pool.is_empty() {
            s.push_str("\nExample rows:\n");
            for e in pool {
                s.push_str(&Json::Object(e.clone()).to_string());
                s.push('\n');
            }
        }
        s
    }
}

/// Real child rows shown with `knn-real`: Amalgam matches on the parent's values, each matching
/// value weighted by its rarity (1 / how many real rows share it), and shows the best k = 3.
pub const KNN: usize = 3;

struct Nearest<'r> {
    real: &'r [RealChild],
    /// Per parent column: how many real rows have each value.
    counts: HashMap<String, HashMap<String, usize>>,
}

impl<'r> Nearest<'r> {
    fn new(real: &'r [RealChild]) -> Nearest<'r> {
        let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for r in real {
            for (k, v) in &r.parent {
                *counts
                    .entry(k.clone())
                    .or_default()
                    .entry(v.to_string())
                    .or_default() += 1;
            }
        }
        Nearest { real, counts }
    }

    /// The real rows whose parents best match `parent` (ties broken by `seed`).
    fn rows(&self, parent: &Map<String, Json>, seed: u64) -> Vec<Map<String, Json>> {
        let mut scored: Vec<(f64, u64, usize)> = self
            .real
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let score: f64 = parent
                    .iter()
                    .filter(|(k, v)| r.parent.get(*k) == Some(*v))
                    .map(|(k, v)| {
                        let n = self
                            .counts
                            .get(k)
                            .and_then(|c| c.get(&v.to_string()))
                            .copied()
                            .unwrap_or(1);
                        1.0 / n as f64
                    })
                    .sum();
                (score, rng::mix64(seed ^ i as u64), i)
            })
            .collect();
        let k = KNN.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        let order =
            |a: &(f64, u64, usize), b: &(f64, u64, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
        scored.sort_by(order);
        scored
            .into_iter()
            .map(|(_, _, i)| self.real[i].row.clone())
            .collect()
    }
}

/// Length of the prefix every prompt shares, leaving each at least one token of its own (the
/// first logits come from a row's last fed token).
pub fn common_prefix<P: AsRef<[u32]>>(prompts: &[P]) -> usize {
    let Some(first) = prompts.first().map(AsRef::as_ref) else {
        return 0;
    };
    let mut common = prompts
        .iter()
        .map(|p| p.as_ref().len())
        .min()
        .unwrap_or(0)
        .saturating_sub(1);
    for p in &prompts[1..] {
        common = common.min(
            first
                .iter()
                .zip(p.as_ref())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(parent: &[(&str, &str)], row: &str) -> RealChild {
        RealChild {
            parent: parent
                .iter()
                .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
                .collect(),
            row: [("id".to_string(), Json::String(row.to_string()))]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn rare_matches_outweigh_common_ones() {
        // Four real rows share the common value `x`; one has the rare value `r`.
        let real = vec![
            child(&[("a", "x"), ("b", "s")], "common-1"),
            child(&[("a", "x"), ("b", "s")], "common-2"),
            child(&[("a", "x"), ("b", "s")], "common-3"),
            child(&[("a", "y"), ("b", "r")], "rare"),
            child(&[("a", "x"), ("b", "s")], "common-4"),
        ];
        let near = Nearest::new(&real);
        let parent: Map<String, Json> = [("a", "x"), ("b", "r")]
            .iter()
            .map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect();
        let rows = near.rows(&parent, 7);
        assert_eq!(rows.len(), KNN);
        assert_eq!(rows[0]["id"], "rare", "{rows:?}");
        // Same seed, same choice among the tied common rows; another seed may differ.
        assert_eq!(rows, near.rows(&parent, 7));
    }
}
