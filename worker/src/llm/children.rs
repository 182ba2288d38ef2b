//! The LLM writes whole entities as nested JSON (Amalgam's method), many entities of a shard
//! in the same batches.
//!
//! The PGM has drawn every row of the entity: the root row, how many child rows each row has,
//! and a first draft of each child row. The LLM then writes the entity's child rows as one JSON
//! object, `{"admissions":[{..., "#transfers":2, "transfers":[{...},{...}], ...}]}`, under a
//! grammar built from the child tables: each array has exactly the number of rows the PGM drew
//! (the count is also written, as forced tokens), categories are enums of the modelled values,
//! numbers stay in the modelled ranges, and time offsets are never negative where order must
//! hold. Times are written as offsets in days (from the previous sibling, from the parent's
//! anchor, or from another column of the row): that keeps every datetime order by
//! construction, where absolute datetime strings could only be checked after the fact.
//!
//! The prompt shows the root row, the tables' columns and exemplar rows of each child table:
//! earlier completed rows of the shard (`synthetic`, so no real record reaches a prompt), none,
//! or Amalgam's rarity-weighted nearest real rows (`knn-real`, k = 3). An entity too long for
//! the model's context is written in several requests, each holding whole top-level rows with
//! their descendants, each shown the last top-level row written before it.

use std::collections::HashMap;
use std::sync::Arc;

use chimera_core::domain::{Encoding, Value};
use chimera_core::model::Exemplars;
use chimera_core::relational::{KEY_SEPARATOR, RealChild, RealEntities};
use chimera_core::rng;
use serde_json::{Map, Value as Json};

use super::chat::ChatMessage;
use super::constrain::{FieldSchema, FieldType, FieldValue};
use super::engine::{Engine, Request};
use super::fill::{EXEMPLARS, FillError, LlmRuntime};

/// Entities per prompt window: they share the instruction and exemplars (and its cache).
pub const WINDOW: usize = 128;

/// How a row column enters the LLM's object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot<'m> {
    /// Written by the LLM under this encoding.
    Write(&'m Encoding),
    /// A row's place in time (`order_by` of the first sibling, or the gap after the previous):
    /// written, never empty, where the PGM drew a value, and left empty where it drew none.
    Order(&'m Encoding),
    /// Kept as the PGM drew it (forced tokens; the root row is shown in the prompt instead).
    Keep,
    /// Not shown (identifiers, columns outside the network).
    Skip,
}

/// One row of an entity: what each column is to the LLM, its values (as drawn, then as
/// written), and its child rows per child table of its table.
pub struct Node<'s, 'm> {
    pub slots: &'s [Slot<'m>],
    pub values: Vec<Value<'m>>,
    pub children: Vec<Vec<Node<'s, 'm>>>,
}

/// The entity's tables as the LLM names them, in the tree's order (the root first).
pub struct Layout {
    /// Per table: its name, its row columns, and its child tables (indices into this list).
    pub tables: Vec<(String, Vec<String>, Vec<usize>)>,
    /// Per table: values only a parent's last child may hold, by column (`last_when`).
    pub last_when: Vec<std::collections::BTreeMap<String, String>>,
    /// Per table: values a parent's last child must hold, by column (`last_is`).
    pub last_is: Vec<std::collections::BTreeMap<String, String>>,
    /// Per table: (place of the parent's column in the parent's row, column, value): the first
    /// child writes the value exactly where the parent's column is set (`first_where`).
    pub first_where: Vec<Vec<(usize, String, String)>>,
    /// Per table: (column, condition column, value) by their places in the row: the column
    /// is written empty where the condition column (kept as drawn) holds the value
    /// (`empty_when`).
    pub empty_when: Vec<Vec<(usize, usize, String)>>,
    /// Per table: the places of its `required` columns, never written empty (except where
    /// their `empty_when` holds).
    pub required: Vec<Vec<usize>>,
}

/// Writes the child rows of entities with a language model.
pub struct ChildWriter {
    pub runtime: Arc<LlmRuntime>,
    pub exemplars: Exemplars,
    /// Real child rows for `knn-real` exemplars, per table of the tree.
    pub real: Option<Arc<RealEntities>>,
    /// Sequences decoded together.
    pub max_batch: usize,
}

/// Share of the context an estimate of a request's output may fill: written values may take
/// more tokens than the PGM's draft of them.
const OUTPUT_MARGIN: f64 = 1.25;

/// A value as the LLM reads it (numbers as numbers, whole ones as integers, others to
/// [`SHOWN_DIGITS`] decimals). Only written values are read back, so the rounding never
/// changes a value the PGM drew.
fn json_of(v: &Value<'_>) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Str(s) => Json::String(label(s)),
        Value::Number(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Json::from(*x as i64),
        Value::Number(x) => {
            let scale = 10f64.powi(SHOWN_DIGITS);
            serde_json::Number::from_f64((x * scale).round() / scale)
                .map_or(Json::Null, Json::Number)
        }
    }
}

/// Decimals of a fractional number in prompts and forced text (for days, about 9 seconds).
const SHOWN_DIGITS: i32 = 4;

/// Whether a drawn value is `text` as a spec writes it (a category, or a number such as `0`).
pub(crate) fn shown_as(v: &Value<'_>, text: &str) -> bool {
    match v {
        Value::Null => false,
        Value::Str(s) => *s == text,
        Value::Number(x) => text.trim().parse::<f64>().is_ok_and(|y| y == *x),
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

/// Takes `value` out of what a field may hold: a category from its enum, a number at an end
/// of its range (the next value the column has becomes the end). A value inside a range, or
/// the only one, stays.
fn exclude(f: &mut FieldSchema, enc: &Encoding, value: &str) {
    match enc {
        Encoding::Categorical(_) => {
            if let Some(values) = &mut f.enum_values
                && values.len() > 1
            {
                values.retain(|v| *v != label(value));
            }
        }
        Encoding::Numeric(n) => {
            let Ok(x) = value.trim().parse::<f64>() else {
                return;
            };
            if !n.bins.is_empty() || n.spikes.len() < 2 {
                return;
            }
            if f.maximum == Some(x) {
                f.maximum = n.spikes.iter().rev().find(|&&s| s < x).copied();
            } else if f.minimum == Some(x) {
                f.minimum = n.spikes.iter().find(|&&s| s > x).copied();
            }
        }
    }
}

/// Leaves `value` the field's only choice (a one-value enum; a number's two ends at it), not
/// empty.
fn only_value(f: &mut FieldSchema, enc: &Encoding, value: &str) {
    f.nullable = false;
    match enc {
        Encoding::Categorical(_) => f.enum_values = Some(vec![label(value)]),
        Encoding::Numeric(_) => {
            if let Ok(x) = value.trim().parse::<f64>() {
                (f.minimum, f.maximum) = (Some(x), Some(x));
            }
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

/// A request's share of an entity: whole top-level rows, per child table of the root (its
/// index among the root's children) a range of positions.
type Chunk = Vec<(usize, std::ops::Range<usize>)>;

impl ChildWriter {
    /// Rewrites the `Write` and `Order` columns of every child row of `entities` (root rows,
    /// in place); returns the number of sampled tokens.
    pub fn write<'m>(
        &self,
        layout: &Layout,
        entities: &mut [Node<'_, 'm>],
        seed: u64,
    ) -> Result<usize, FillError> {
        let runtime = &self.runtime;
        let context = runtime.model.config().context_length;
        let tables = &layout.tables;
        let nearest: Option<Vec<Nearest<'_>>> = match self.exemplars {
            Exemplars::KnnReal => {
                let real = self.real.as_ref().ok_or(FillError::KnnRealUnavailable)?;
                Some(
                    (0..tables.len())
                        .map(|t| Nearest::new(real.get(t).map_or(&[][..], Vec::as_slice)))
                        .collect(),
                )
            }
            _ => None,
        };
        // Exemplars to start with: the first rows of each table as the network drew them.
        let mut pool: Vec<Vec<Map<String, Json>>> = vec![Vec::new(); tables.len()];
        if self.exemplars == Exemplars::Synthetic {
            for e in entities.iter() {
                collect_rows(layout, 0, e, &mut pool);
                if pool.iter().skip(1).all(|p| p.len() >= EXEMPLARS) {
                    break;
                }
            }
            for p in &mut pool {
                p.truncate(EXEMPLARS);
            }
        }
        // Each entity's requests: whole top-level rows, as many as fit half the context.
        let cap = (context as f64 / (2.0 * OUTPUT_MARGIN)) as usize;
        let mut chunks: Vec<Vec<Chunk>> = Vec::with_capacity(entities.len());
        for e in entities.iter() {
            let mut items = Vec::new();
            for (c, &ct) in tables[0].2.iter().enumerate() {
                for (k, row) in e.children[c].iter().enumerate() {
                    let text = Json::Object(draft(layout, ct, row, true)).to_string();
                    items.push((c, k, runtime.count_tokens(&text)?));
                }
            }
            let mut mine: Vec<Chunk> = Vec::new();
            let mut used = usize::MAX;
            for (c, k, n) in items {
                if used.saturating_add(n) > cap {
                    mine.push(Vec::new());
                    used = 0;
                }
                used += n;
                let chunk = mine.last_mut().expect("a chunk was opened");
                match chunk.last_mut() {
                    Some((lc, range)) if *lc == c => range.end = k + 1,
                    _ => chunk.push((c, k..k + 1)),
                }
            }
            chunks.push(mine);
        }
        let mut engine = Engine::new(&runtime.model, self.max_batch);
        engine.max_tokens = context;
        let rounds = chunks.iter().map(Vec::len).max().unwrap_or(0);
        let mut sampled = 0;
        for r in 0..rounds {
            let todo: Vec<usize> = (0..entities.len())
                .filter(|&e| chunks[e].len() > r)
                .collect();
            for window in todo.chunks(WINDOW) {
                // With knn-real, each entity's exemplars are the real rows nearest its own.
                let chosen: Vec<Vec<Vec<Map<String, Json>>>> = match &nearest {
                    Some(near) => window
                        .iter()
                        .map(|&e| {
                            let firsts = first_rows(layout, &entities[e]);
                            (0..tables.len())
                                .map(|t| match (&firsts[t], t) {
                                    (Some(parent), t) if t > 0 => near[t].rows(
                                        parent,
                                        rng::derive_seed(seed, &[0x4B4E, e as u64, t as u64]),
                                    ),
                                    _ => Vec::new(),
                                })
                                .collect()
                        })
                        .collect(),
                    None => Vec::new(),
                };
                let mut n = if nearest.is_some() { KNN } else { EXEMPLARS };
                let prompts = loop {
                    let shared = self.instruction(layout, &pool, n);
                    let mut prompts = Vec::with_capacity(window.len());
                    let mut over = None;
                    for (w, &e) in window.iter().enumerate() {
                        let system = match chosen.get(w) {
                            Some(ex) => self.instruction(layout, ex, n),
                            None => shared.clone(),
                        };
                        let user = request_text(layout, &entities[e], &chunks[e][r], r > 0);
                        let tokens = runtime.encode(&self.render(system, user)?)?;
                        let out: usize = chunks[e][r]
                            .iter()
                            .flat_map(|(c, range)| {
                                let ct = tables[0].2[*c];
                                entities[e].children[*c][range.clone()]
                                    .iter()
                                    .map(move |row| (ct, row))
                            })
                            .map(|(ct, row)| {
                                let text = Json::Object(draft(layout, ct, row, true)).to_string();
                                runtime.count_tokens(&text)
                            })
                            .sum::<Result<usize, FillError>>()?;
                        let needed = tokens.len() + (out as f64 * OUTPUT_MARGIN) as usize;
                        if needed > context {
                            over = Some((e, needed));
                        }
                        prompts.push(tokens);
                    }
                    match over {
                        None => break prompts,
                        Some((e, needed)) if n == 0 => {
                            let (c, _) = &chunks[e][r][0];
                            return Err(FillError::Prompt(format!(
                                "one `{}` row with its child rows needs about {needed} tokens of prompt and output, more than the model's context of {context}; lower `max_children` of the tables below it",
                                tables[tables[0].2[*c]].0,
                            )));
                        }
                        Some(_) => n -= 1,
                    }
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
                let mut requests = Vec::with_capacity(window.len());
                for (&e, tokens) in window.iter().zip(&prompts) {
                    let fields = chunks[e][r]
                        .iter()
                        .map(|(c, range)| {
                            let ct = tables[0].2[*c];
                            let all = &entities[e].children[*c];
                            let rows = all[range.clone()]
                                .iter()
                                .enumerate()
                                .map(|(i, row)| {
                                    let last = range.start + i + 1 == all.len();
                                    grammar_fields(layout, ct, row, last, None)
                                })
                                .collect();
                            (tables[ct].0.clone(), FieldValue::Objects(rows))
                        })
                        .collect::<Vec<_>>();
                    requests.push(Request {
                        suffix: tokens[common..].to_vec(),
                        constraint: runtime.constraints.row(&fields)?,
                        seed: rng::derive_seed(seed, &[0xC41D, e as u64, r as u64]),
                    });
                }
                let mut done: Vec<(usize, Map<String, Json>)> = Vec::with_capacity(window.len());
                let stats = engine
                    .run(&prefix, requests, |c| {
                        done.push((c.request, c.constraint.finish()?));
                        Ok(())
                    })
                    .map_err(Box::new)?;
                sampled += stats.sampled;
                done.sort_by_key(|d| d.0);
                let mut fresh: Vec<Vec<Map<String, Json>>> = vec![Vec::new(); tables.len()];
                for (w, written) in &done {
                    let e = window[*w];
                    for (c, range) in &chunks[e][r] {
                        let ct = tables[0].2[*c];
                        let objects = written.get(&tables[ct].0).and_then(Json::as_array);
                        let rows = &mut entities[e].children[*c][range.clone()];
                        for (row, object) in rows.iter_mut().zip(objects.into_iter().flatten()) {
                            read_back(layout, ct, row, object);
                            if self.exemplars == Exemplars::Synthetic {
                                collect_rows(layout, ct, row, &mut fresh);
                            }
                        }
                    }
                }
                for (p, f) in pool.iter_mut().zip(fresh) {
                    if !f.is_empty() {
                        *p = f[f.len().saturating_sub(EXEMPLARS)..].to_vec();
                    }
                }
            }
        }
        Ok(sampled)
    }

    /// The chat prompt of one request.
    fn render(&self, system: String, user: String) -> Result<String, FillError> {
        let prompt = self
            .runtime
            .chat
            .render(
                &[ChatMessage::system(system), ChatMessage::user(user)],
                true,
            )
            .map_err(|e| FillError::Prompt(e.to_string()))?;
        tracing::debug!(?prompt, "LLM entity prompt");
        Ok(prompt)
    }

    /// The instruction: the entity's tables and columns, and up to `n` exemplar rows per
    /// child table.
    fn instruction(&self, layout: &Layout, pool: &[Vec<Map<String, Json>>], n: usize) -> String {
        let tables = &layout.tables;
        let mut s = format!(
            "You write realistic records of the table `{}` with their child rows, as one JSON \
             object. Each child table's rows are an array of objects under the key of the \
             table: the top-level keys hold the `{}` row's children; a row's own children follow \
             its columns. A column `#x` gives how many rows the array `x` holds. Times are in \
             days: a column `X~gap` is the time since the previous row, a column declared after \
             another is the time since that one.\nThe child tables:\n",
            tables[0].0, tables[0].0
        );
        for (t, (name, columns, _)) in tables.iter().enumerate().skip(1) {
            let parent = tables
                .iter()
                .position(|(_, _, ch)| ch.contains(&t))
                .map_or(tables[0].0.as_str(), |p| tables[p].0.as_str());
            s.push_str(&format!(
                "- `{name}` (rows under a `{parent}` row): {}\n",
                columns.join(", ")
            ));
        }
        for (t, rows) in pool.iter().enumerate().skip(1) {
            if n > 0 && !rows.is_empty() {
                s.push_str(&format!("Example `{}` rows:\n", tables[t].0));
                for r in rows.iter().take(n) {
                    s.push_str(&Json::Object(r.clone()).to_string());
                    s.push('\n');
                }
            }
        }
        s
    }
}

/// The user's message for one request: the root row, the top-level row written before (when
/// this is not the entity's first request) and what to write.
fn request_text(layout: &Layout, entity: &Node<'_, '_>, chunk: &Chunk, later: bool) -> String {
    let tables = &layout.tables;
    let root = &tables[0].0;
    let shown: Map<String, Json> = draft(layout, 0, entity, false)
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect();
    let mut s = format!("The `{root}` row: {}\n", Json::Object(shown));
    if later && let Some((c, range)) = chunk.first() {
        let ct = tables[0].2[*c];
        let before = match range.start {
            0 => (*c > 0).then(|| (tables[0].2[*c - 1], entity.children[*c - 1].last())),
            k => Some((ct, entity.children[*c].get(k - 1))),
        };
        if let Some((bt, Some(row))) = before {
            s.push_str(&format!(
                "Its earlier rows are written; the last `{}` row: {}\n",
                tables[bt].0,
                Json::Object(draft(layout, bt, row, false))
            ));
        }
    }
    let parts: Vec<String> = chunk
        .iter()
        .map(|(c, range)| {
            let ct = tables[0].2[*c];
            let total = entity.children[*c].len();
            if range.len() == total {
                format!("its {total} `{}` rows", tables[ct].0)
            } else {
                format!(
                    "`{}` rows {} to {} of {total}",
                    tables[ct].0,
                    range.start + 1,
                    range.end
                )
            }
        })
        .collect();
    s.push_str(&format!(
        "Write {}, each with its own child rows.",
        parts.join(" and ")
    ));
    s
}

/// A row as drafted (or written so far): its shown columns and, if `nested`, its child rows.
fn draft(layout: &Layout, t: usize, row: &Node<'_, '_>, nested: bool) -> Map<String, Json> {
    let (_, columns, children) = &layout.tables[t];
    let mut m = Map::new();
    for ((name, slot), v) in columns.iter().zip(row.slots).zip(&row.values) {
        if *slot != Slot::Skip {
            m.insert(name.clone(), json_of(v));
        }
    }
    if nested {
        for (&ct, rows) in children.iter().zip(&row.children) {
            let rows = rows
                .iter()
                .map(|r| Json::Object(draft(layout, ct, r, true)));
            m.insert(layout.tables[ct].0.clone(), Json::Array(rows.collect()));
        }
    }
    m
}

/// The grammar's fields of a row of table `t`, its child rows nested. A row that is not its
/// parent's last child may not write a `last_when` value; the last child writes its `last_is`
/// value. A first child (`first_of`: its parent's row, for the first child of a table below
/// the root's children) writes its `first_where` value exactly where the parent's column is
/// set.
fn grammar_fields(
    layout: &Layout,
    t: usize,
    row: &Node<'_, '_>,
    last: bool,
    first_of: Option<&Node<'_, '_>>,
) -> Vec<(String, FieldValue)> {
    let (_, columns, children) = &layout.tables[t];
    let mut fields = Vec::new();
    let empty = |j: usize| {
        layout.empty_when[t]
            .iter()
            .any(|(c, q, value)| *c == j && shown_as(&row.values[*q], value))
    };
    for (j, ((name, slot), v)) in columns.iter().zip(row.slots).zip(&row.values).enumerate() {
        let field = match slot {
            Slot::Skip => continue,
            Slot::Keep => FieldValue::Fixed(json_of(v)),
            Slot::Write(_) | Slot::Order(_) if empty(j) => FieldValue::Fixed(Json::Null),
            Slot::Write(enc) => {
                let mut f = field_schema(name, enc);
                if let Some(value) = layout.last_when[t].get(name).filter(|_| !last) {
                    exclude(&mut f, enc, value);
                }
                if let Some(value) = layout.last_is[t].get(name).filter(|_| last) {
                    only_value(&mut f, enc, value);
                }
                for (q, _, value) in (layout.first_where[t].iter()).filter(|(_, c, _)| c == name) {
                    match first_of.map(|p| p.values[*q] != Value::Null) {
                        Some(true) => only_value(&mut f, enc, value),
                        Some(false) => exclude(&mut f, enc, value),
                        None => {}
                    }
                }
                if layout.required[t].contains(&j) {
                    f.nullable = false;
                }
                FieldValue::Generate(f)
            }
            Slot::Order(enc) if *v != Value::Null => {
                let mut f = field_schema(name, enc);
                f.nullable = false;
                FieldValue::Generate(f)
            }
            Slot::Order(_) => FieldValue::Fixed(Json::Null),
        };
        fields.push((name.clone(), field));
    }
    for (&ct, rows) in children.iter().zip(&row.children) {
        let n = rows.len();
        let rows = rows
            .iter()
            .enumerate()
            .map(|(k, r)| grammar_fields(layout, ct, r, k + 1 == n, (k == 0).then_some(row)))
            .collect();
        fields.push((layout.tables[ct].0.clone(), FieldValue::Objects(rows)));
    }
    fields
}

/// Takes the values the LLM wrote for a row of table `t` and its child rows.
fn read_back<'m>(layout: &Layout, t: usize, row: &mut Node<'_, 'm>, written: &Json) {
    let (_, columns, children) = &layout.tables[t];
    for (j, name) in columns.iter().enumerate() {
        if let Slot::Write(enc) | Slot::Order(enc) = row.slots[j] {
            row.values[j] = value_of(enc, written.get(name).unwrap_or(&Json::Null));
        }
    }
    for (&ct, rows) in children.iter().zip(&mut row.children) {
        let objects = written.get(&layout.tables[ct].0).and_then(Json::as_array);
        for (r, o) in rows.iter_mut().zip(objects.into_iter().flatten()) {
            read_back(layout, ct, r, o);
        }
    }
}

/// Appends the rows of `row`'s subtree (itself a row of table `t`) to `pool`, per table, as
/// flat objects, keeping at most [`EXEMPLARS`] per table.
fn collect_rows(
    layout: &Layout,
    t: usize,
    row: &Node<'_, '_>,
    pool: &mut [Vec<Map<String, Json>>],
) {
    if t > 0 && pool[t].len() < EXEMPLARS * 64 {
        pool[t].push(draft(layout, t, row, false));
    }
    for (&ct, rows) in layout.tables[t].2.iter().zip(&row.children) {
        for r in rows {
            collect_rows(layout, ct, r, pool);
        }
    }
}

/// Per table, the entity's first row of the table's parent (the root for the root's children),
/// as shown: what `knn-real` matches real rows on.
fn first_rows(layout: &Layout, entity: &Node<'_, '_>) -> Vec<Option<Map<String, Json>>> {
    let tables = &layout.tables;
    let mut firsts: Vec<Option<Map<String, Json>>> = vec![None; tables.len()];
    fn walk(
        layout: &Layout,
        t: usize,
        row: &Node<'_, '_>,
        firsts: &mut Vec<Option<Map<String, Json>>>,
    ) {
        let shown: Map<String, Json> = draft(layout, t, row, false)
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        for (&ct, rows) in layout.tables[t].2.iter().zip(&row.children) {
            if firsts[ct].is_none() {
                firsts[ct] = Some(shown.clone());
            }
            for r in rows {
                walk(layout, ct, r, firsts);
            }
        }
    }
    walk(layout, 0, entity, &mut firsts);
    firsts
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
