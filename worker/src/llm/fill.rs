//! The LLM fill of a shard's text columns.
//!
//! The network has drawn every row; in a text column it drew either one of the column's
//! frequent values or `other` (the long tail). For every row with a cell to write, the LLM
//! generates one JSON object holding the row's context columns (the text columns' neighbours in
//! the network, whose values are fixed: forced tokens) and the cells to write (generated under
//! the column's schema). The prompt is an instruction plus exemplar rows:
//!
//! - `synthetic` (default): earlier synthetic rows of the same shard, first rows the network
//!   completed on its own, then rows the LLM completed in earlier windows. No real record
//!   reaches a prompt, so the DP guarantee of the model carries over to the text.
//! - `none`: the instruction alone.
//!
//! Rows are processed in windows; every row of a window shares the prompt (instruction and
//! exemplars), so its key/value cache is computed once per window and shared by all rows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use candle_core::Device;
use chimera_core::model::{Exemplars, LlmFill, Model, TextRules};
use chimera_core::plan::ShardPlan;
use chimera_core::rng;
use chimera_core::schema::{Role, ValueKind};
use chimera_core::spec::DEFAULT_TEXT_MAX_LENGTH;
use serde_json::{Map, Value as Json};

use super::chat::{ChatMessage, ChatTemplate};
use super::constrain::{ConstraintError, ConstraintFactory, FieldSchema, FieldType, FieldValue};
use super::engine::{Engine, EngineError, EngineStats, Request};
use super::model::{LanguageModel, ModelError};
use super::tokenizer::{ChimeraTokenizer, TokenizerError, load_tokenizer};
use crate::sample::{BATCH_ROWS, SampledShard};

/// Exemplar rows shown in a prompt (Amalgam shows 3 reference records).
pub const EXEMPLARS: usize = 3;
/// Context tokens a prompt leaves for the row it asks for.
pub const ROW_TOKENS: usize = 768;
/// Nearest real rows shown with `knn-real` (HARMONIC uses k = 5).
pub const KNN: usize = 5;
/// Real rows kept for `knn-real` matching at most (evenly spaced over the table).
pub const MAX_REAL_ROWS: usize = 20_000;
/// Context columns per row at most: the text columns' closest neighbours in the network.
pub const MAX_CONTEXT: usize = 8;

/// Why a shard's text could not be filled.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("{}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Model(#[from] Box<ModelError>),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Constraint(#[from] ConstraintError),
    #[error(transparent)]
    Engine(#[from] Box<EngineError>),
    #[error("column `{column}`: {message}")]
    Column { column: String, message: String },
    #[error("prompt: {0}")]
    Prompt(String),
    #[error(
        "the model's text columns need an LLM ({model}); pass --llm with the path of that model"
    )]
    NoLlm { model: String },
    #[error(
        "knn-real exemplars need the real rows, which this worker does not have (pass --real-input)"
    )]
    KnnRealUnavailable,
}

/// A loaded language model with its tokenizer and constraint compiler; shared by the shards
/// a worker fills.
pub struct LlmRuntime {
    pub model: LanguageModel,
    pub tokenizer: ChimeraTokenizer,
    pub constraints: ConstraintFactory,
    pub chat: ChatTemplate,
    pub path: PathBuf,
}

impl std::fmt::Debug for LlmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmRuntime")
            .field("path", &self.path)
            .field("config", self.model.config())
            .finish()
    }
}

impl LlmRuntime {
    /// Loads a `.gguf` file or a Hugging Face model folder on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<LlmRuntime, FillError> {
        let model = LanguageModel::load(path, device).map_err(Box::new)?;
        let tokenizer = load_tokenizer(path)?;
        let constraints = ConstraintFactory::new(&tokenizer)?;
        let chat = ChatTemplate::for_tokenizer(&tokenizer)
            .map_err(|e| FillError::Prompt(format!("{}: chat template: {e}", path.display())))?;
        Ok(LlmRuntime {
            model,
            tokenizer,
            constraints,
            chat,
            path: path.to_path_buf(),
        })
    }

    /// Token ids of a rendered prompt (with BOS in front when the model wants it).
    /// Tokens of `text` (no special tokens added): a length estimate.
    pub(crate) fn count_tokens(&self, text: &str) -> Result<usize, FillError> {
        let enc = self
            .tokenizer
            .tokenizer
            .encode(text, false)
            .map_err(|e| FillError::Prompt(e.to_string()))?;
        Ok(enc.len())
    }

    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, FillError> {
        let enc = self
            .tokenizer
            .tokenizer
            .encode(text, false)
            .map_err(|e| FillError::Prompt(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.chat.needs_bos(&self.tokenizer, text)
            && let Some(bos) = self.tokenizer.bos
        {
            ids.push(bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }
}

/// What one shard's fill did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FillStats {
    /// Rows with at least one cell written by the LLM.
    pub rows: usize,
    /// Cells written.
    pub cells: usize,
    pub engine: EngineStats,
    pub seconds: f64,
}

/// Fills the text cells of sampled shards of one model.
pub struct Filler {
    runtime: Arc<LlmRuntime>,
    model: Arc<Model>,
    fill: LlmFill,
    /// Columns in each row object, in table order: the LLM columns and their context columns.
    fields: Vec<usize>,
    /// Sequences decoded together.
    pub max_batch: usize,
    /// Rows per prompt window (its exemplars are fixed).
    pub window: usize,
    /// Real rows for `knn-real` exemplars.
    real: Option<RealRows>,
}

impl Filler {
    pub fn new(runtime: Arc<LlmRuntime>, model: Arc<Model>) -> Result<Filler, FillError> {
        let Some(fill) = model.llm.clone() else {
            return Err(FillError::Prompt(
                "the model has no LLM fill settings".into(),
            ));
        };
        let fields = row_fields(&model);
        Ok(Filler {
            runtime,
            model,
            fill,
            fields,
            max_batch: 32,
            window: 128,
            real: None,
        })
    }

    /// Gives the real rows `knn-real` exemplars are chosen from (at most [`MAX_REAL_ROWS`],
    /// evenly spaced, are kept).
    pub fn with_real_rows(mut self, batches: &[RecordBatch]) -> Result<Filler, FillError> {
        self.real = Some(RealRows::new(&self.model, &self.fields, batches)?);
        Ok(self)
    }

    /// Writes the shard's text cells; returns the completed batches.
    pub fn fill(
        &self,
        shard: &ShardPlan,
        sampled: SampledShard,
    ) -> Result<(Vec<RecordBatch>, FillStats), FillError> {
        let started = Instant::now();
        let SampledShard { batches, fill } = sampled;
        // Rows to write, with their columns.
        let mut todo: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        let mut cells = 0;
        for (c, rows) in &fill {
            for &r in rows {
                todo.entry(r).or_default().push(*c);
                cells += 1;
            }
        }
        let mut stats = FillStats {
            rows: todo.len(),
            cells,
            ..FillStats::default()
        };
        if todo.is_empty() {
            return Ok((batches, stats));
        }
        let formatters = Formatters::new(&batches)?;
        // Exemplars to start with: the shard's first rows as the network drew them (their text
        // cells hold released frequent values, or the value `other` decodes to).
        let mut pool: Vec<Map<String, Json>> = Vec::new();
        if self.fill.exemplars == Exemplars::Synthetic {
            for r in 0..(EXEMPLARS as u64).min(shard.rows) {
                pool.push(self.row_object(&formatters, r as usize, &[])?);
            }
        }
        let rows: Vec<(u32, Vec<usize>)> = todo.into_iter().collect();
        let mut written: BTreeMap<usize, BTreeMap<u32, Json>> = BTreeMap::new();
        let mut engine = Engine::new(&self.runtime.model, self.max_batch);
        engine.max_tokens = 4096;
        for window in rows.chunks(self.window.max(1)) {
            // Each row's prompt: one for the whole window, or one per row (knn-real exemplars).
            let mut prompts: Vec<Arc<Vec<u32>>> = Vec::with_capacity(window.len());
            let mut objects = Vec::with_capacity(window.len());
            let shared = match self.fill.exemplars {
                Exemplars::KnnReal => None,
                _ => Some(Arc::new(self.encode_prompt(&pool)?)),
            };
            for (row, columns) in window {
                let object = self.row_object(&formatters, *row as usize, columns)?;
                let tokens = match &shared {
                    Some(t) => t.clone(),
                    None => {
                        let real = self.real.as_ref().ok_or(FillError::KnnRealUnavailable)?;
                        let mut rng = rng::stream(shard.seed, &[0x4B4E, *row as u64]);
                        let exemplars = real.nearest(&object, KNN, &mut rng);
                        Arc::new(self.encode_prompt(&exemplars)?)
                    }
                };
                prompts.push(tokens);
                objects.push(object);
            }
            // The longest common prefix is computed once and shared.
            let common = super::children::common_prefix(
                &prompts.iter().map(|p| p.as_slice()).collect::<Vec<_>>(),
            );
            let mut cache = self.runtime.model.new_cache();
            if common > 0 {
                let mut steps = [super::model::Step {
                    cache: &mut cache,
                    tokens: &prompts[0][..common],
                    want_logits: false,
                }];
                self.runtime.model.forward(&mut steps).map_err(Box::new)?;
            }
            let prefix = cache.freeze();
            let mut requests = Vec::with_capacity(window.len());
            for (((row, columns), object), tokens) in window.iter().zip(&objects).zip(&prompts) {
                let mut spec: Vec<(String, FieldValue)> = Vec::new();
                for &c in &self.fields {
                    let name = &self.model.columns[c].schema.name;
                    if columns.contains(&c) {
                        spec.push((name.clone(), FieldValue::Generate(self.schema(c))));
                    } else if let Some(v) = object.get(name) {
                        spec.push((name.clone(), FieldValue::Fixed(v.clone())));
                    }
                }
                requests.push(Request {
                    suffix: tokens[common..].to_vec(),
                    constraint: self.runtime.constraints.row(&spec)?,
                    seed: rng::mix64(shard.seed ^ rng::mix64(0x11A5_0000 + *row as u64)),
                });
            }
            let mut done: Vec<(usize, Map<String, Json>)> = Vec::with_capacity(window.len());
            let s = engine
                .run(&prefix, requests, |c| {
                    let values = c.constraint.finish()?;
                    done.push((c.request, values));
                    Ok(())
                })
                .map_err(Box::new)?;
            add_stats(&mut stats.engine, &s);
            done.sort_by_key(|d| d.0);
            for (k, values) in &done {
                let (row, columns) = &window[*k];
                for &c in columns {
                    let name = &self.model.columns[c].schema.name;
                    let v = values.get(name).cloned().unwrap_or(Json::Null);
                    written.entry(c).or_default().insert(*row, v);
                }
            }
            if self.fill.exemplars == Exemplars::Synthetic {
                let mut next: Vec<Map<String, Json>> = done
                    .iter()
                    .rev()
                    .take(EXEMPLARS)
                    .map(|(_, values)| self.complete(values))
                    .collect();
                next.reverse();
                for old in pool.iter().rev() {
                    if next.len() >= EXEMPLARS {
                        break;
                    }
                    next.insert(0, old.clone());
                }
                pool = next;
            }
        }
        let batches = self.apply(batches, &written)?;
        stats.seconds = started.elapsed().as_secs_f64();
        Ok((batches, stats))
    }

    /// An exemplar object: only the row's fields, in order.
    fn complete(&self, values: &Map<String, Json>) -> Map<String, Json> {
        let mut out = Map::new();
        for &c in &self.fields {
            let name = &self.model.columns[c].schema.name;
            if let Some(v) = values.get(name) {
                out.insert(name.clone(), v.clone());
            }
        }
        out
    }

    /// The row's fields as JSON, leaving out the cells the LLM writes.
    fn row_object(
        &self,
        f: &Formatters,
        row: usize,
        skip: &[usize],
    ) -> Result<Map<String, Json>, FillError> {
        let mut out = Map::new();
        for &c in &self.fields {
            if skip.contains(&c) {
                continue;
            }
            let col = &self.model.columns[c];
            out.insert(col.schema.name.clone(), f.json(c, col.schema.kind, row));
        }
        Ok(out)
    }

    fn schema(&self, c: usize) -> FieldSchema {
        let col = &self.model.columns[c];
        let rules = self
            .fill
            .columns
            .get(&col.schema.name)
            .cloned()
            .unwrap_or_default();
        let ty = match col.schema.kind {
            ValueKind::String => FieldType::String,
            ValueKind::Integer => FieldType::Integer,
            ValueKind::Float => FieldType::Number,
            ValueKind::Boolean => FieldType::Boolean,
            ValueKind::Date => FieldType::Date,
            ValueKind::Timestamp => FieldType::DateTime,
        };
        let string = ty == FieldType::String;
        FieldSchema {
            name: col.schema.name.clone(),
            ty,
            // The network drew a non-null code for every cell the LLM writes.
            nullable: false,
            enum_values: None,
            pattern: rules.pattern.clone().filter(|_| string),
            min_length: string.then_some(1),
            max_length: string.then_some(rules.max_length.unwrap_or(DEFAULT_TEXT_MAX_LENGTH)),
            minimum: None,
            maximum: None,
        }
    }

    /// A prompt's tokens (its text is logged at debug level). Exemplars are dropped from the end
    /// while the prompt leaves less than [`ROW_TOKENS`] of the model's context for the row.
    fn encode_prompt(&self, exemplars: &[Map<String, Json>]) -> Result<Vec<u32>, FillError> {
        let context = self.runtime.model.config().context_length;
        let mut n = exemplars.len();
        loop {
            let prompt = self.prompt(&exemplars[..n])?;
            let tokens = self.runtime.encode(&prompt)?;
            if tokens.len() + ROW_TOKENS <= context || n == 0 {
                tracing::debug!(tokens = tokens.len(), exemplars = n, ?prompt, "LLM prompt");
                return Ok(tokens);
            }
            n -= 1;
        }
    }

    /// The chat prompt: instruction, exemplar rows, request for one more row.
    fn prompt(&self, exemplars: &[Map<String, Json>]) -> Result<String, FillError> {
        let names: Vec<String> = self
            .fields
            .iter()
            .map(|&c| {
                let col = &self.model.columns[c];
                let rules: Option<&TextRules> = self.fill.columns.get(&col.schema.name);
                match rules.and_then(|r| r.description.as_deref()) {
                    Some(d) => format!("{} ({d})", col.schema.name),
                    None => col.schema.name.clone(),
                }
            })
            .collect();
        let template = self.fill.instruction.as_deref().unwrap_or(
            "You write realistic rows of the table `{table}`. A row is one JSON object with the \
             columns {columns}. Every value must be plausible given the other values of its row.",
        );
        let instruction = template
            .replace("{table}", &self.model.table)
            .replace("{columns}", &names.join(", "));
        let mut user = String::new();
        if exemplars.is_empty() {
            user.push_str("Write one row.");
        } else {
            user.push_str("Example rows:\n");
            for e in exemplars {
                user.push_str(&Json::Object(e.clone()).to_string());
                user.push('\n');
            }
            user.push_str("Write one more row.");
        }
        let messages = [ChatMessage::system(instruction), ChatMessage::user(user)];
        self.runtime
            .chat
            .render(&messages, true)
            .map_err(|e| FillError::Prompt(e.to_string()))
    }

    /// Replaces the written cells in the batches.
    fn apply(
        &self,
        batches: Vec<RecordBatch>,
        written: &BTreeMap<usize, BTreeMap<u32, Json>>,
    ) -> Result<Vec<RecordBatch>, FillError> {
        let mut out = Vec::with_capacity(batches.len());
        for (b, batch) in batches.into_iter().enumerate() {
            let first = (b * BATCH_ROWS) as u32;
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            for (&c, cells) in written {
                let here: Vec<(usize, &Json)> = cells
                    .range(first..first + batch.num_rows() as u32)
                    .map(|(&r, v)| ((r - first) as usize, v))
                    .collect();
                if here.is_empty() {
                    continue;
                }
                columns[c] = self.replace(c, &columns[c], &here)?;
            }
            let batch =
                RecordBatch::try_new(batch.schema(), columns).map_err(|e| FillError::Column {
                    column: String::new(),
                    message: e.to_string(),
                })?;
            out.push(batch);
        }
        Ok(out)
    }

    /// One column with some cells replaced: through Utf8, cast back to the column's type.
    fn replace(
        &self,
        c: usize,
        array: &ArrayRef,
        cells: &[(usize, &Json)],
    ) -> Result<ArrayRef, FillError> {
        let name = &self.model.columns[c].schema.name;
        let err = |message: String| FillError::Column {
            column: name.clone(),
            message,
        };
        let target = array.data_type().clone();
        let text = cast(array, &DataType::Utf8).map_err(|e| err(e.to_string()))?;
        let text = text
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| err("not castable to text".into()))?;
        let mut values: Vec<Option<String>> = text.iter().map(|v| v.map(str::to_string)).collect();
        for &(i, v) in cells {
            values[i] = match v {
                Json::Null => None,
                Json::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
        }
        let replaced: ArrayRef = Arc::new(StringArray::from(values));
        let back = cast(&replaced, &target).map_err(|e| err(e.to_string()))?;
        if back.null_count() != replaced.null_count() {
            return Err(err(format!(
                "a written value does not parse as {target} (a constraint bug)"
            )));
        }
        Ok(back)
    }
}

fn add_stats(total: &mut EngineStats, s: &EngineStats) {
    total.steps += s.steps;
    total.sampled += s.sampled;
    total.forced += s.forced;
    total.prompt += s.prompt;
    total.max_batch = total.max_batch.max(s.max_batch);
}

/// The columns of a row object, in table order: every LLM column, and up to [`MAX_CONTEXT`]
/// context columns, nearest first: the LLM columns' parents and children in the network.
pub fn row_fields(model: &Model) -> Vec<usize> {
    let llm: BTreeSet<usize> = model.llm_columns().into_iter().collect();
    let attr_of: BTreeMap<usize, usize> = model
        .attributes
        .iter()
        .enumerate()
        .map(|(a, &c)| (c, a))
        .collect();
    let llm_attrs: BTreeSet<usize> = llm.iter().filter_map(|c| attr_of.get(c).copied()).collect();
    let mut context: Vec<usize> = Vec::new();
    let push = |a: usize, context: &mut Vec<usize>| {
        let c = model.attributes[a];
        if !llm.contains(&c) && !context.contains(&c) {
            context.push(c);
        }
    };
    for n in &model.network.nodes {
        if llm_attrs.contains(&n.child) {
            for &p in &n.parents {
                push(p, &mut context);
            }
        }
    }
    for n in &model.network.nodes {
        if n.parents.iter().any(|p| llm_attrs.contains(p)) {
            push(n.child, &mut context);
        }
    }
    // Then any other modelled column, in table order, until the budget is used.
    for (c, col) in model.columns.iter().enumerate() {
        if col.encoding.is_some()
            && col.role != Role::Identifier
            && let Some(&a) = attr_of.get(&c)
        {
            push(a, &mut context);
        }
    }
    context.truncate(MAX_CONTEXT);
    let mut fields: Vec<usize> = context.into_iter().chain(llm).collect();
    fields.sort_unstable();
    fields
}

/// Real rows for `knn-real` exemplars: the row fields as JSON, and per field a scale for the
/// distance (numbers: their range; everything else: equal or not).
struct RealRows {
    rows: Vec<Map<String, Json>>,
    /// (name, range of numbers or None).
    fields: Vec<(String, Option<f64>)>,
}

impl RealRows {
    fn new(
        model: &Model,
        fields: &[usize],
        batches: &[RecordBatch],
    ) -> Result<RealRows, FillError> {
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        let step = total.div_ceil(MAX_REAL_ROWS).max(1);
        let mut rows = Vec::new();
        for b in batches {
            let mut cols = Vec::new();
            for &c in fields {
                let col = &model.columns[c];
                let array =
                    b.column_by_name(&col.schema.name)
                        .ok_or_else(|| FillError::Column {
                            column: col.schema.name.clone(),
                            message: "not in the real table given for knn-real exemplars".into(),
                        })?;
                cols.push((col, array.clone()));
            }
            for i in (0..b.num_rows()).filter(|i| i % step == 0) {
                let mut m = Map::new();
                for (col, array) in &cols {
                    m.insert(
                        col.schema.name.clone(),
                        json_cell(array, col.schema.kind, i),
                    );
                }
                rows.push(m);
            }
        }
        let fields = fields
            .iter()
            .map(|&c| {
                let name = model.columns[c].schema.name.clone();
                let nums: Vec<f64> = rows.iter().filter_map(|r| r.get(&name)?.as_f64()).collect();
                let range = (!nums.is_empty()).then(|| {
                    let lo = nums.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = nums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    (hi - lo).max(1e-12)
                });
                (name, range.filter(|r| r.is_finite()))
            })
            .collect();
        Ok(RealRows { rows, fields })
    }

    /// The k real rows nearest to `row` on the fields it has (Gower-style distance), each with
    /// its keys in a random order (HARMONIC permutes the feature order).
    fn nearest(
        &self,
        row: &Map<String, Json>,
        k: usize,
        rng: &mut impl rand::Rng,
    ) -> Vec<Map<String, Json>> {
        let distance = |r: &Map<String, Json>| -> f64 {
            let mut d = 0.0;
            for (name, range) in &self.fields {
                let Some(a) = row.get(name) else { continue };
                let b = r.get(name).unwrap_or(&Json::Null);
                d += match (a.as_f64(), b.as_f64(), range) {
                    (Some(x), Some(y), Some(range)) => ((x - y).abs() / range).min(1.0),
                    _ => (a != b) as u8 as f64,
                };
            }
            d
        };
        let mut scored: Vec<(f64, usize)> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (distance(r), i))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .map(|(_, i)| {
                let mut keys: Vec<&String> = self.rows[i].keys().collect();
                for j in (1..keys.len()).rev() {
                    keys.swap(j, rng.random_range(0..=j));
                }
                keys.into_iter()
                    .map(|key| (key.clone(), self.rows[i][key].clone()))
                    .collect()
            })
            .collect()
    }
}

/// One cell as JSON: numbers as numbers, timestamps with a space, the rest as text.
fn json_cell(array: &ArrayRef, kind: ValueKind, row: usize) -> Json {
    if array.is_null(row) {
        return Json::Null;
    }
    let options = FormatOptions::default();
    let Ok(f) = ArrayFormatter::try_new(array.as_ref(), &options) else {
        return Json::Null;
    };
    let text = f.value(row).to_string();
    match kind {
        ValueKind::Integer => text
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or(Json::String(text)),
        ValueKind::Float => match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Json::from(x),
            _ => Json::String(text),
        },
        ValueKind::Boolean => Json::Bool(text == "true"),
        ValueKind::Timestamp => Json::String(text.replace('T', " ")),
        _ => Json::String(text),
    }
}

/// Cell values of the sampled batches as JSON.
struct Formatters {
    batches: Vec<RecordBatch>,
}

impl Formatters {
    fn new(batches: &[RecordBatch]) -> Result<Formatters, FillError> {
        Ok(Formatters {
            batches: batches.to_vec(),
        })
    }

    fn json(&self, c: usize, kind: ValueKind, row: usize) -> Json {
        let (b, i) = (row / BATCH_ROWS, row % BATCH_ROWS);
        match self.batches.get(b) {
            Some(batch) => json_cell(batch.column(c), kind, i),
            None => Json::Null,
        }
    }
}
