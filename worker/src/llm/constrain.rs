//! Schema-constrained decoding: every row the model writes is one compact JSON object whose
//! keys are the table's columns in order, whose fixed values (already sampled by the PGM) are
//! forced, and whose generated values fit their column schema.
//!
//! Design:
//! - [`RowGrammar`] turns a row's fields into a JSON Schema for llguidance: properties in
//!   order, all required, no others, no free whitespace (`x-guidance`). Fixed values are
//!   `const`, so llguidance's forced-token computation yields them without sampling. Every
//!   generated value's language is finite, so every row terminates: strings default to
//!   [`DEFAULT_MAX_STRING_CHARS`] characters and match a column `pattern` as a whole; integers
//!   stay within ±[`MAX_EXACT_INTEGER`]; numbers get both bounds (±[`DEFAULT_NUMBER_LIMIT`] by
//!   default, so no exponent) and `multipleOf` 10^-[`NUMBER_FRACTION_DIGITS`], which caps the
//!   fraction digits; dates are regexes of real calendar days. A row with a fixed value that a
//!   `const` cannot spell exactly (an integer beyond 2^53, which llguidance reads through an
//!   `f64`; a string with a control character that needs `\u`) is written in Lark instead:
//!   the same language with literal text, costing about a millisecond more to compile.
//! - [`ConstraintFactory`] is built once per model: the token trie from the tokenizer's token
//!   bytes, the stop ids, and llguidance's `ParserFactory` (with its token-set slices). It is
//!   `Send + Sync`; each row compiles its grammar through it ([`ConstraintFactory::row`],
//!   0.2–3 ms depending on the columns).
//! - [`RowConstraint`] is one sequence's state (`Send`, so a batch's masks can be computed on
//!   rayon threads): forced tokens → mask → commit, until [`RowConstraint::is_done`], then
//!   [`RowConstraint::finish`] parses the object. Nothing is cached here across steps; llguidance
//!   invalidates its own caches on every committed token.
//!
//! Forced text is tokenized canonically by the model's own tokenizer (special-token texts as
//! plain text), and llguidance keeps back the last forced token when a longer token could span
//! into the generated value (token healing), so the model sees tokenizations it was trained on.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::earley::SlicedBiasComputer;
use llguidance::{Matcher, ParserFactory};
use serde_json::{Map, Value};
use toktrie::{
    InferenceCapabilities, SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv,
};

use super::tokenizer::ChimeraTokenizer;

/// Longest generated string, in characters, when a column gives no `max_length`.
pub const DEFAULT_MAX_STRING_CHARS: usize = 64;
/// Digits after the decimal point of a generated number.
pub const NUMBER_FRACTION_DIGITS: u32 = 6;
/// Largest magnitude of a generated number, and the bound when a column gives none (at most
/// 16 integer digits: always finite, and near an `f64`'s precision).
pub const DEFAULT_NUMBER_LIMIT: f64 = 1e15;
/// Escapes a generated string may use: newline, carriage return, tab, quote, backslash. No
/// `\uXXXX`, so every character is written as itself.
const JSON_ALLOWED_ESCAPES: &str = "nrt\"\\";

/// 10^NUMBER_FRACTION_DIGITS: numbers are handled as integers in these units.
const NUMBER_SCALE: i128 = 10_i128.pow(NUMBER_FRACTION_DIGITS);

/// A column's type as the model writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON integer within ±[`MAX_EXACT_INTEGER`] (so it fits `i64` and `f64` exactly).
    Integer,
    /// A JSON number with at most [`NUMBER_FRACTION_DIGITS`] fraction digits and no exponent.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A string `YYYY-MM-DD` naming a real calendar day (leap years included).
    Date,
    /// A string `YYYY-MM-DD HH:MM:SS` (24-hour clock, no leap second).
    DateTime,
}

/// What a generated value must satisfy.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSchema {
    /// The column's name (for messages; the row's key is given beside the schema).
    pub name: String,
    /// The value's type.
    pub ty: FieldType,
    /// Whether `null` is allowed.
    pub nullable: bool,
    /// The only allowed values, written as text (`"12"` for an integer); overrides the other
    /// constraints.
    pub enum_values: Option<Vec<String>>,
    /// A regex the whole string must match (strings only; Rust regex syntax, `\d` and `\w`
    /// ASCII).
    pub pattern: Option<String>,
    /// Fewest characters (strings only).
    pub min_length: Option<usize>,
    /// Most characters (strings only; [`DEFAULT_MAX_STRING_CHARS`] when `None`).
    pub max_length: Option<usize>,
    /// Smallest value (integers and numbers).
    pub minimum: Option<f64>,
    /// Largest value (integers and numbers).
    pub maximum: Option<f64>,
}

impl FieldSchema {
    /// An unconstrained, non-nullable field of type `ty`.
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable: false,
            enum_values: None,
            pattern: None,
            min_length: None,
            max_length: None,
            minimum: None,
            maximum: None,
        }
    }
}

/// One field of a row: a value the PGM already chose, or one the model writes.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Written verbatim (forced tokens).
    Fixed(Value),
    /// Generated under the schema.
    Generate(FieldSchema),
    /// An array of exactly this many objects, each with its own fields (an entity's child
    /// rows: the PGM fixes how many, the grammar holds the model to it).
    Objects(Vec<Vec<(String, FieldValue)>>),
}

/// Why a row could not be constrained or its output not read.
#[derive(Debug, thiserror::Error)]
pub enum ConstraintError {
    /// The tokenizer cannot drive constrained decoding (e.g. it names no stop id).
    #[error("tokenizer unusable for constrained decoding: {0}")]
    Tokenizer(String),
    /// A column schema is contradictory or malformed.
    #[error("field {field:?}: {reason}")]
    Schema { field: String, reason: String },
    /// llguidance rejected the row grammar (e.g. a pattern it cannot compile).
    #[error("the row grammar does not compile: {0}")]
    Grammar(String),
    /// A committed token is not allowed by the grammar (a bug in the caller's loop).
    #[error("token rejected by the row grammar: {0}")]
    Rejected(String),
    /// `finish` was called before the object was complete.
    #[error("the row is not complete: {text:?}")]
    Incomplete { text: String },
    /// The finished text is not a JSON object (cannot happen unless llguidance is wrong).
    #[error("the row's output is not a JSON object ({reason}): {text:?}")]
    Output { text: String, reason: String },
}

/// A row's grammar for llguidance.
///
/// Normally a JSON Schema (llguidance reads one in tens of microseconds; its Lark front end
/// takes over a millisecond). Rows with a fixed value that a JSON Schema `const` cannot spell
/// exactly and in one way (an integer beyond ±2^53, a string with a control character other
/// than `\n`, `\r`, `\t`) are written in Lark instead: the same language, with literal text.
#[derive(Debug, Clone, PartialEq)]
pub struct RowGrammar {
    source: GrammarSource,
}

#[derive(Debug, Clone, PartialEq)]
enum GrammarSource {
    JsonSchema(Value),
    Lark(String),
}

impl RowGrammar {
    /// The grammar of one compact JSON object with `fields`' keys in order.
    pub fn new(fields: &[(String, FieldValue)]) -> Result<Self, ConstraintError> {
        check_keys(fields)?;
        let source = if fields_exact(fields) {
            GrammarSource::JsonSchema(row_schema(fields)?)
        } else {
            GrammarSource::Lark(row_lark(fields)?)
        };
        Ok(Self { source })
    }

    /// Whether the grammar is the Lark fallback.
    pub fn is_lark(&self) -> bool {
        matches!(self.source, GrammarSource::Lark(_))
    }

    /// The grammar's source text (a JSON Schema or Lark), for messages and tests.
    pub fn source(&self) -> String {
        match &self.source {
            GrammarSource::JsonSchema(schema) => json_text(schema),
            GrammarSource::Lark(lark) => lark.clone(),
        }
    }

    fn top_level(&self) -> TopLevelGrammar {
        match &self.source {
            GrammarSource::JsonSchema(schema) => TopLevelGrammar::from_json_schema(schema.clone()),
            GrammarSource::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        }
    }
}

/// Largest integer magnitude every JSON reader takes exactly (2^53 - 1, an `f64`'s exact
/// integers); generated integers stay within it, and JSON Schema `const` is exact only there.
pub const MAX_EXACT_INTEGER: i64 = (1 << 53) - 1;

/// Whether llguidance's JSON Schema `const` spells `v` exactly, in one way only: its numbers
/// pass through `f64`, and a string with a control character other than `\n`, `\r`, `\t` needs
/// `\u` escapes, which would also give every other character a second spelling.
fn const_is_exact(v: &Value) -> bool {
    match v {
        Value::String(s) => !has_unusual_control_char(s),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.unsigned_abs() <= MAX_EXACT_INTEGER.unsigned_abs(),
            (None, Some(_)) => false,
            // Floats are forced as Rust prints the same `f64`: the same value.
            (None, None) => true,
        },
        Value::Array(items) => items.iter().all(const_is_exact),
        Value::Object(map) => map
            .iter()
            .all(|(k, v)| !has_unusual_control_char(k) && const_is_exact(v)),
        Value::Null | Value::Bool(_) => true,
    }
}

/// Every object's keys are distinct (nested objects included).
fn check_keys(fields: &[(String, FieldValue)]) -> Result<(), ConstraintError> {
    let mut keys = std::collections::HashSet::new();
    for (key, value) in fields {
        if !keys.insert(key.as_str()) {
            return Err(ConstraintError::Schema {
                field: key.clone(),
                reason: "the key appears twice in the row".into(),
            });
        }
        if let FieldValue::Objects(items) = value {
            items.iter().try_for_each(|item| check_keys(item))?;
        }
    }
    Ok(())
}

/// Whether every fixed value (nested objects included) is exact as a JSON Schema `const`.
fn fields_exact(fields: &[(String, FieldValue)]) -> bool {
    fields.iter().all(|(_, v)| match v {
        FieldValue::Fixed(v) => const_is_exact(v),
        FieldValue::Generate(_) => true,
        FieldValue::Objects(items) => items.iter().all(|item| fields_exact(item)),
    })
}

/// The row as a JSON Schema: properties in order, all required, nothing else, no free
/// whitespace.
fn row_schema(fields: &[(String, FieldValue)]) -> Result<Value, ConstraintError> {
    let mut defs = Definitions::default();
    let mut schema = object_schema(fields, &mut defs)?;
    if !defs.schemas.is_empty() {
        schema["$defs"] = Value::Object(defs.schemas);
    }
    schema["x-guidance"] = serde_json::json!({
        "whitespace_flexible": false,
        "item_separator": ",",
        "key_separator": ":",
        "json_allowed_escapes": JSON_ALLOWED_ESCAPES,
    });
    Ok(schema)
}

/// The generated values' schemas of a row, each once: an entity's rows repeat the same few
/// (a diagnosis code's 1,474 values on each of 70 diagnoses), and written out each time they
/// overran the lexer's limit. A field refers to its schema by name.
#[derive(Default)]
struct Definitions {
    schemas: Map<String, Value>,
    by_text: std::collections::HashMap<String, String>,
}

impl Definitions {
    /// A reference to `schema`, defined on first use.
    fn reference(&mut self, schema: Value) -> Value {
        let n = self.by_text.len();
        let name = self
            .by_text
            .entry(json_text(&schema))
            .or_insert_with(|| format!("v{n}"))
            .clone();
        self.schemas.entry(name.clone()).or_insert(schema);
        serde_json::json!({ "$ref": format!("#/$defs/{name}") })
    }
}

/// One object: properties in order, all required, nothing else; arrays of objects have
/// exactly their number of items.
fn object_schema(
    fields: &[(String, FieldValue)],
    defs: &mut Definitions,
) -> Result<Value, ConstraintError> {
    let mut properties = Map::new();
    for (key, value) in fields {
        let schema = match value {
            FieldValue::Fixed(v) => serde_json::json!({ "const": v }),
            FieldValue::Generate(s) => defs.reference(value_schema(key, s)?),
            FieldValue::Objects(items) => {
                let items = items
                    .iter()
                    .map(|item| object_schema(item, defs))
                    .collect::<Result<Vec<_>, _>>()?;
                serde_json::json!({
                    "type": "array",
                    "minItems": items.len(),
                    "maxItems": items.len(),
                    "prefixItems": items,
                    "items": false,
                })
            }
        };
        properties.insert(key.clone(), schema);
    }
    let required: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
    Ok(serde_json::json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }))
}

fn has_unusual_control_char(s: &str) -> bool {
    s.chars()
        .any(|c| c < ' ' && !matches!(c, '\n' | '\r' | '\t'))
}

/// The JSON Schema of one generated field.
fn value_schema(key: &str, s: &FieldSchema) -> Result<Value, ConstraintError> {
    let bad = |reason: String| ConstraintError::Schema {
        field: key.to_owned(),
        reason,
    };
    if let Some(values) = &s.enum_values {
        let mut values = enum_values(s.ty, values).map_err(bad)?;
        if s.nullable {
            values.push(Value::Null);
        }
        return Ok(serde_json::json!({ "enum": values }));
    }
    let schema = match s.ty {
        FieldType::String => {
            let (min, max) = string_lengths(s).map_err(bad)?;
            let mut schema = serde_json::json!({ "type": "string", "maxLength": max });
            if min > 0 {
                schema["minLength"] = min.into();
            }
            if let Some(p) = &s.pattern {
                // JSON Schema patterns match anywhere; a column pattern describes the value.
                schema["pattern"] = format!("^(?:{p})$").into();
            }
            schema
        }
        FieldType::Integer => {
            let (lo, hi) = integer_bounds(s).map_err(bad)?;
            let range = |lo: i64, hi: i64| serde_json::json!({ "type": "integer", "minimum": lo, "maximum": hi });
            if lo < 0 && hi >= 0 {
                // One range across zero would allow "-0", which reads back as the float -0.0.
                serde_json::json!({ "anyOf": [range(lo, -1), range(0, hi)] })
            } else {
                range(lo, hi)
            }
        }
        FieldType::Number => {
            let (lo, hi) = number_bounds(s).map_err(bad)?;
            serde_json::json!({
                "type": "number",
                "minimum": lo,
                "maximum": hi,
                // With both bounds there is no exponent; `multipleOf` caps the fraction digits.
                "multipleOf": 1.0 / NUMBER_SCALE as f64,
            })
        }
        FieldType::Boolean => serde_json::json!({ "type": "boolean" }),
        FieldType::Date => {
            serde_json::json!({ "type": "string", "pattern": format!("^{DATE_REGEX}$") })
        }
        FieldType::DateTime => serde_json::json!({
            "type": "string",
            "pattern": format!("^{DATE_REGEX} {TIME_REGEX}$"),
        }),
    };
    Ok(if s.nullable {
        serde_json::json!({ "anyOf": [schema, { "type": "null" }] })
    } else {
        schema
    })
}

/// The row in Lark: literal text for keys, fixed values and the punctuation of nested
/// arrays, one rule per generated value.
fn row_lark(fields: &[(String, FieldValue)]) -> Result<String, ConstraintError> {
    let mut lark = Lark::default();
    lark.object(fields)?;
    let text = std::mem::take(&mut lark.text);
    lark.start.push(lark_literal(&text));
    Ok(format!("start: {}\n{}", lark.start.join(" "), lark.rules))
}

/// A Lark grammar being written: the start rule's items, the other rules, and literal text
/// not yet flushed into the start rule.
#[derive(Default)]
struct Lark {
    start: Vec<String>,
    rules: String,
    text: String,
    /// Each generated value's rule by its body, written once (as [`Definitions`]).
    by_body: std::collections::HashMap<String, String>,
}

impl Lark {
    fn object(&mut self, fields: &[(String, FieldValue)]) -> Result<(), ConstraintError> {
        self.text.push('{');
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(&json_text(&Value::String(key.clone())));
            self.text.push(':');
            match value {
                FieldValue::Fixed(v) => self.text.push_str(&json_text(v)),
                FieldValue::Generate(schema) => {
                    let text = std::mem::take(&mut self.text);
                    self.start.push(lark_literal(&text));
                    let body = value_rule(key, schema)?;
                    let n = self.by_body.len();
                    let rule = match self.by_body.entry(body) {
                        std::collections::hash_map::Entry::Occupied(e) => e.get().clone(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let rule = format!("f{n}");
                            self.rules.push_str(&format!("{rule}: {}\n", e.key()));
                            e.insert(rule).clone()
                        }
                    };
                    self.start.push(rule);
                }
                FieldValue::Objects(items) => {
                    self.text.push('[');
                    for (j, item) in items.iter().enumerate() {
                        if j > 0 {
                            self.text.push(',');
                        }
                        self.object(item)?;
                    }
                    self.text.push(']');
                }
            }
        }
        self.text.push('}');
        Ok(())
    }
}

/// Builds per-row constraints for one model's tokenizer.
pub struct ConstraintFactory {
    parsers: ParserFactory,
    tok_env: TokEnv,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory")
            .field("vocab_size", &self.vocab_size())
            .field("eos", &self.tok_env.tok_trie().eos_tokens())
            .finish()
    }
}

impl ConstraintFactory {
    /// Builds the token trie and llguidance's parser factory from the tokenizer.
    pub fn new(tok: &ChimeraTokenizer) -> Result<Self, ConstraintError> {
        let words = tok.token_bytes();
        let vocab_size = u32::try_from(words.len())
            .map_err(|_| ConstraintError::Tokenizer("vocabulary too large".into()))?;
        let Some(&first_eos) = tok.eos.first() else {
            return Err(ConstraintError::Tokenizer(
                "no end-of-sequence id (eos is empty)".into(),
            ));
        };
        let in_vocab = |id: Option<u32>| id.filter(|&i| i < vocab_size);
        if let Some(&bad) = tok.eos.iter().find(|&&e| e >= vocab_size) {
            return Err(ConstraintError::Tokenizer(format!(
                "eos id {bad} is outside the {vocab_size}-token vocabulary"
            )));
        }
        let info = TokRxInfo {
            vocab_size,
            tok_eos: first_eos,
            tok_bos: in_vocab(tok.bos),
            tok_pad: in_vocab(tok.pad),
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&tok.eos);
        let tok_env: TokEnv = Arc::new(TextTokEnv {
            trie,
            encoder: tok.text_encoder(),
        });
        let caps = InferenceCapabilities {
            ff_tokens: true,
            conditional_ff_tokens: false,
            backtrack: false,
            fork: false,
        };
        // The token-set slices (llguidance's defaults) cost ~0.1 ms per row to compile but make
        // masks inside strings about a third cheaper on a 49k vocabulary.
        let mut parsers = ParserFactory::new(&tok_env, caps, &SlicedBiasComputer::general_slices())
            .map_err(|e| ConstraintError::Tokenizer(format!("{e:#}")))?;
        // Errors come back as values; llguidance's own stderr logging is noise here.
        parsers.quiet();
        Ok(Self { parsers, tok_env })
    }

    /// Number of token ids the constraints know; logits beyond it are always masked.
    pub fn vocab_size(&self) -> usize {
        self.tok_env.tok_trie().vocab_size()
    }

    /// The constraint for one row with these fields, in this order.
    pub fn row(&self, fields: &[(String, FieldValue)]) -> Result<RowConstraint, ConstraintError> {
        self.constraint(&RowGrammar::new(fields)?)
    }

    /// The constraint for an already built grammar (build it once, use it for many sequences
    /// of the same row).
    pub fn constraint(&self, grammar: &RowGrammar) -> Result<RowConstraint, ConstraintError> {
        let parser = self
            .parsers
            .create_parser(grammar.top_level())
            .map_err(|e| ConstraintError::Grammar(format!("{e:#}")))?;
        Ok(RowConstraint {
            matcher: Matcher::new(Ok(parser)),
            tok_env: self.tok_env.clone(),
            tokens: Vec::new(),
        })
    }
}

/// One sequence's progress through its row grammar. Cloning is cheap and gives an independent
/// copy (e.g. several samples of one row).
#[derive(Clone)]
pub struct RowConstraint {
    matcher: Matcher,
    tok_env: TokEnv,
    tokens: Vec<u32>,
}

impl std::fmt::Debug for RowConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowConstraint")
            .field("text", &self.text())
            .field("done", &self.is_done())
            .finish()
    }
}

impl RowConstraint {
    /// Tokens that are forced now (may be empty); the engine appends them without sampling
    /// and then [`commit`](Self::commit)s them.
    pub fn forced_tokens(&mut self) -> Result<Vec<u32>, ConstraintError> {
        if self.matcher.is_stopped() {
            return self.check().map(|()| Vec::new());
        }
        let forced = self.matcher.compute_ff_tokens();
        self.check()?;
        Ok(forced)
    }

    /// The tokens allowed next, over [`ConstraintFactory::vocab_size`] ids; only the stop ids
    /// once the object is complete.
    pub fn allowed_tokens(&mut self) -> Result<SimpleVob, ConstraintError> {
        self.matcher
            .compute_mask_or_eos()
            .map_err(|e| self.rejected(e))
    }

    /// Sets disallowed logits to -inf in place. `logits` is the model's vocabulary, which may
    /// be longer than the tokenizer's; the extra ids are disallowed.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let allowed = self.allowed_tokens()?;
        apply_mask(&allowed, logits);
        Ok(())
    }

    /// Records tokens the engine appended (sampled or forced). Stop ids after the object is
    /// complete are accepted and ignored.
    pub fn commit(&mut self, tokens: &[u32]) -> Result<(), ConstraintError> {
        let eos = self.tok_env.tok_trie().eos_tokens();
        if self.matcher.is_stopped() {
            self.check()?;
            return match tokens.iter().find(|t| !eos.contains(t)) {
                None => Ok(()),
                Some(t) => Err(ConstraintError::Rejected(format!(
                    "token {t} after the row was complete"
                ))),
            };
        }
        self.matcher
            .consume_tokens(tokens)
            .map_err(|e| self.rejected(e))?;
        self.tokens
            .extend(tokens.iter().copied().filter(|t| !eos.contains(t)));
        Ok(())
    }

    /// Whether the object is complete (or the constraint failed; `finish` says which).
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The committed tokens, stop ids left out.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The text generated so far.
    pub fn text(&self) -> String {
        let bytes = self.tok_env.tok_trie().decode_ext(&self.tokens, false);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The finished row's values, keys in grammar order.
    pub fn finish(self) -> Result<Map<String, Value>, ConstraintError> {
        self.check()?;
        if !self.matcher.is_stopped() {
            return Err(ConstraintError::Incomplete { text: self.text() });
        }
        let bytes = self.tok_env.tok_trie().decode_ext(&self.tokens, false);
        serde_json::from_slice(&bytes).map_err(|e| ConstraintError::Output {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            reason: e.to_string(),
        })
    }

    fn check(&self) -> Result<(), ConstraintError> {
        match self.matcher.get_error() {
            Some(e) => Err(ConstraintError::Rejected(e)),
            None => Ok(()),
        }
    }

    fn rejected(&self, e: impl std::fmt::Display) -> ConstraintError {
        ConstraintError::Rejected(self.matcher.get_error().unwrap_or_else(|| e.to_string()))
    }
}

/// -inf for every logit whose id is not in `allowed` (ids past its end included).
fn apply_mask(allowed: &SimpleVob, logits: &mut [f32]) {
    let words = allowed.as_slice();
    let known = allowed.len().min(logits.len());
    for (w, chunk) in logits[..known].chunks_mut(32).enumerate() {
        let bits = words.get(w).copied().unwrap_or(0);
        if bits == u32::MAX {
            continue;
        }
        for (j, logit) in chunk.iter_mut().enumerate() {
            if bits & (1 << j) == 0 {
                *logit = f32::NEG_INFINITY;
            }
        }
    }
    logits[known..].fill(f32::NEG_INFINITY);
}

/// The token environment llguidance sees: the trie of token bytes, and the model's tokenizer
/// for forced text.
struct TextTokEnv {
    trie: TokTrie,
    encoder: tokenizers::Tokenizer,
}

impl TokenizerEnv for TextTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            // A normalizer could change the text; forced tokens must spell it exactly.
            match self.encoder.encode(text, false) {
                Ok(enc) if self.trie.decode_raw(enc.get_ids()) == text.as_bytes() => {
                    enc.get_ids().to_vec()
                }
                _ => self.trie.greedy_tokenize(text.as_bytes()),
            }
        })
    }
}

/// Compact JSON text of a value.
fn json_text(v: &Value) -> String {
    // Serializing a `Value` cannot fail (keys are strings, numbers finite).
    serde_json::to_string(v).unwrap_or_default()
}

/// A Lark string literal spelling `text` exactly (JSON string syntax; DEL escaped, which the
/// Lark lexer refuses raw).
fn lark_literal(text: &str) -> String {
    json_text(&Value::String(text.to_owned())).replace('\u{7f}', "\\u007f")
}

/// The body of the Lark rule for one generated field (the same language as
/// [`value_schema`]).
fn value_rule(key: &str, s: &FieldSchema) -> Result<String, ConstraintError> {
    let bad = |reason: String| ConstraintError::Schema {
        field: key.to_owned(),
        reason,
    };
    if let Some(values) = &s.enum_values {
        let mut alternatives: Vec<String> = enum_values(s.ty, values)
            .map_err(bad)?
            .iter()
            .map(|v| lark_literal(&json_text(v)))
            .collect();
        if s.nullable {
            alternatives.push(lark_literal("null"));
        }
        return Ok(alternatives.join(" | "));
    }
    let regex = match s.ty {
        FieldType::String => {
            // Strings keep llguidance's JSON quoting: a nested JSON Schema.
            let mut schema = value_schema(
                key,
                &FieldSchema {
                    nullable: false,
                    ..s.clone()
                },
            )?;
            schema["x-guidance"] =
                serde_json::json!({ "json_allowed_escapes": JSON_ALLOWED_ESCAPES });
            let null = if s.nullable { " | \"null\"" } else { "" };
            return Ok(format!("%json {}{null}", json_text(&schema)));
        }
        FieldType::Integer => {
            let (lo, hi) = integer_bounds(s).map_err(bad)?;
            int_range_regex(i128::from(lo), i128::from(hi))
        }
        FieldType::Number => {
            let (lo, hi) = number_bounds(s).map_err(bad)?;
            let (lo, hi) = number_units(lo, hi)
                .map_err(|()| bad("no number with the allowed digits in range".into()))?;
            decimal_range_regex(lo, hi)
        }
        FieldType::Boolean => "true|false".to_owned(),
        FieldType::Date => format!("\"{DATE_REGEX}\""),
        FieldType::DateTime => format!("\"{DATE_REGEX} {TIME_REGEX}\""),
    };
    let regex = if s.nullable {
        format!("(?:{regex})|null")
    } else {
        regex
    };
    Ok(format!("/{regex}/"))
}

/// A field's enum values as JSON values of its type.
fn enum_values(ty: FieldType, values: &[String]) -> Result<Vec<Value>, String> {
    if values.is_empty() {
        return Err("enum_values is empty".into());
    }
    values
        .iter()
        .map(|v| enum_value(ty, v).map_err(|reason| format!("enum value {v:?}: {reason}")))
        .collect()
}

fn enum_value(ty: FieldType, v: &str) -> Result<Value, String> {
    match ty {
        FieldType::String | FieldType::Date | FieldType::DateTime => Ok(Value::from(v)),
        FieldType::Integer => {
            let i: i64 = v
                .trim()
                .parse()
                .map_err(|e| format!("not an integer: {e}"))?;
            if i.unsigned_abs() > MAX_EXACT_INTEGER.unsigned_abs() {
                return Err(format!("beyond ±{MAX_EXACT_INTEGER}"));
            }
            Ok(Value::from(i))
        }
        FieldType::Number => {
            let x: f64 = v.trim().parse().map_err(|e| format!("not a number: {e}"))?;
            serde_json::Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| "not finite".to_owned())
        }
        FieldType::Boolean => match v.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("not true or false".to_owned()),
        },
    }
}

/// A string field's character bounds.
fn string_lengths(s: &FieldSchema) -> Result<(usize, usize), String> {
    let min = s.min_length.unwrap_or(0);
    let max = s.max_length.unwrap_or(DEFAULT_MAX_STRING_CHARS.max(min));
    if min > max {
        return Err(format!("min_length {min} > max_length {max}"));
    }
    Ok((min, max))
}

/// A calendar day `YYYY-MM-DD`, years 0001-9999: 31-day months, 30-day months, February to the
/// 28th, and February 29th of leap years (divisible by 4, centuries only by 400).
const DATE_REGEX: &str = concat!(
    "(?:(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-",
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])",
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)",
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    "|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)",
);
/// A time of day `HH:MM:SS`.
const TIME_REGEX: &str = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]";

/// An integer field's inclusive bounds: the schema's, rounded inwards, within
/// ±[`MAX_EXACT_INTEGER`].
fn integer_bounds(s: &FieldSchema) -> Result<(i64, i64), String> {
    let limit = MAX_EXACT_INTEGER as f64;
    let lo = match s.minimum {
        Some(m) if m.is_nan() => return Err("minimum is NaN".into()),
        Some(m) => m.ceil().max(-limit),
        None => -limit,
    };
    let hi = match s.maximum {
        Some(m) if m.is_nan() => return Err("maximum is NaN".into()),
        Some(m) => m.floor().min(limit),
        None => limit,
    };
    if lo > hi {
        return Err(format!(
            "no integer between minimum {:?} and maximum {:?}",
            s.minimum, s.maximum
        ));
    }
    // Both are integral and within ±2^53, so the conversions are exact.
    Ok((lo as i64, hi as i64))
}

/// A number field's inclusive bounds: the schema's, within ±[`DEFAULT_NUMBER_LIMIT`], checked
/// to hold a number with at most [`NUMBER_FRACTION_DIGITS`] fraction digits.
fn number_bounds(s: &FieldSchema) -> Result<(f64, f64), String> {
    let lo = match s.minimum {
        Some(m) if m.is_nan() => return Err("minimum is NaN".into()),
        Some(m) => m.max(-DEFAULT_NUMBER_LIMIT),
        None => -DEFAULT_NUMBER_LIMIT,
    };
    let hi = match s.maximum {
        Some(m) if m.is_nan() => return Err("maximum is NaN".into()),
        Some(m) => m.min(DEFAULT_NUMBER_LIMIT),
        None => DEFAULT_NUMBER_LIMIT,
    };
    number_units(lo, hi).map_err(|_| {
        format!(
            "no number with {NUMBER_FRACTION_DIGITS} fraction digits between minimum {:?} and \
             maximum {:?}",
            s.minimum, s.maximum
        )
    })?;
    Ok((lo, hi))
}

/// Bounds in units of 10^-NUMBER_FRACTION_DIGITS, rounded inwards so that every text in range
/// parses (as `f64`) within `[lo, hi]`.
fn number_units(lo: f64, hi: f64) -> Result<(i128, i128), ()> {
    let scale = NUMBER_SCALE as f64;
    let mut first = (lo * scale).ceil() as i128;
    // `lo * scale` rounds; step until the unit's value really is within the bound.
    while (first as f64) / scale < lo {
        first += 1;
    }
    let mut last = (hi * scale).floor() as i128;
    while (last as f64) / scale > hi {
        last -= 1;
    }
    if first > last {
        Err(())
    } else {
        Ok((first, last))
    }
}

/// Regex for the decimal texts (`-?`, no leading zeros, no `-0`) of the integers in
/// `[lo, hi]`.
fn int_range_regex(lo: i128, hi: i128) -> String {
    let mut alternatives = Vec::new();
    if lo < 0 {
        let magnitude = nonneg_range_regex(hi.min(-1).unsigned_abs(), lo.unsigned_abs());
        alternatives.push(format!("-(?:{magnitude})"));
    }
    if hi >= 0 {
        alternatives.push(nonneg_range_regex(
            lo.max(0).unsigned_abs(),
            hi.unsigned_abs(),
        ));
    }
    alternatives.join("|")
}

/// Regex for the texts of numbers in `[lo, hi]` (units of 10^-NUMBER_FRACTION_DIGITS): an
/// integer part, then optionally `.` and 1 to NUMBER_FRACTION_DIGITS digits; no exponent, no
/// `-0`.
fn decimal_range_regex(lo: i128, hi: i128) -> String {
    let mut alternatives = Vec::new();
    if lo < 0 {
        // Negative values have magnitude at least one unit, so "-0" and "-0.0" never appear.
        let magnitude = decimal_magnitude_regex(hi.min(-1).unsigned_abs(), lo.unsigned_abs());
        alternatives.push(format!("-(?:{magnitude})"));
    }
    if hi >= 0 {
        alternatives.push(decimal_magnitude_regex(
            lo.max(0).unsigned_abs(),
            hi.unsigned_abs(),
        ));
    }
    alternatives.join("|")
}

/// Regex for unsigned decimal texts whose value, in units, lies in `[a, b]`.
fn decimal_magnitude_regex(a: u128, b: u128) -> String {
    let scale = NUMBER_SCALE.unsigned_abs();
    let (ia, fa) = (a / scale, a % scale);
    let (ib, fb) = (b / scale, b % scale);
    let full = scale - 1;
    let mut alternatives = Vec::new();
    let with_fraction =
        |int: u128, lo: u128, hi: u128| format!("{int}\\.(?:{})", fraction_range_regex(lo, hi));
    if ia == ib {
        if fa == 0 {
            alternatives.push(ia.to_string());
        }
        alternatives.push(with_fraction(ia, fa, fb));
    } else {
        if fa == 0 {
            alternatives.push(ia.to_string());
        }
        alternatives.push(with_fraction(ia, fa, full));
        if ia + 1 < ib {
            alternatives.push(format!(
                "(?:{})(?:\\.[0-9]{{1,{NUMBER_FRACTION_DIGITS}}})?",
                nonneg_range_regex(ia + 1, ib - 1)
            ));
        }
        alternatives.push(ib.to_string());
        alternatives.push(with_fraction(ib, 0, fb));
    }
    alternatives.join("|")
}

/// Regex for 1 to NUMBER_FRACTION_DIGITS fraction digits whose value, padded with zeros to
/// NUMBER_FRACTION_DIGITS digits, lies in `[lo, hi]`.
fn fraction_range_regex(lo: u128, hi: u128) -> String {
    let digits = NUMBER_FRACTION_DIGITS;
    if lo == 0 && hi == NUMBER_SCALE.unsigned_abs() - 1 {
        return format!("[0-9]{{1,{digits}}}");
    }
    let mut alternatives = Vec::new();
    for width in 1..=digits {
        // A fraction of `width` digits f stands for f * 10^(digits - width) units.
        let unit = 10_u128.pow(digits - width);
        let (first, last) = (lo.div_ceil(unit), hi / unit);
        if first <= last {
            for seq in fixed_width_ranges(&to_digits(first, width), &to_digits(last, width)) {
                alternatives.push(render_classes(&seq));
            }
        }
    }
    alternatives.join("|")
}

/// Regex for the decimal texts (no leading zeros) of `[a, b]`.
fn nonneg_range_regex(a: u128, b: u128) -> String {
    let mut alternatives = Vec::new();
    let width_of = |x: u128| x.checked_ilog10().unwrap_or(0) + 1;
    for width in width_of(a)..=width_of(b) {
        let smallest = if width == 1 {
            0
        } else {
            10_u128.pow(width - 1)
        };
        let largest = 10_u128.pow(width) - 1;
        let (first, last) = (a.max(smallest), b.min(largest));
        if first <= last {
            for seq in fixed_width_ranges(&to_digits(first, width), &to_digits(last, width)) {
                alternatives.push(render_classes(&seq));
            }
        }
    }
    alternatives.join("|")
}

/// `x` as exactly `width` decimal digits (zero-padded).
fn to_digits(x: u128, width: u32) -> Vec<u8> {
    let mut digits = vec![0_u8; width as usize];
    let mut rest = x;
    for d in digits.iter_mut().rev() {
        *d = (rest % 10) as u8;
        rest /= 10;
    }
    digits
}

/// Digit-class sequences covering exactly the equal-width digit strings in `[lo, hi]`.
fn fixed_width_ranges(lo: &[u8], hi: &[u8]) -> Vec<Vec<(u8, u8)>> {
    let mut out = Vec::new();
    fixed_width_into(lo, hi, &mut Vec::new(), &mut out);
    out
}

fn fixed_width_into(
    lo: &[u8],
    hi: &[u8],
    prefix: &mut Vec<(u8, u8)>,
    out: &mut Vec<Vec<(u8, u8)>>,
) {
    let (Some(&l), Some(&h)) = (lo.first(), hi.first()) else {
        out.push(prefix.clone());
        return;
    };
    let (lo_rest, hi_rest) = (&lo[1..], &hi[1..]);
    let n = lo_rest.len();
    if l == h {
        prefix.push((l, l));
        fixed_width_into(lo_rest, hi_rest, prefix, out);
        prefix.pop();
        return;
    }
    let lo_is_floor = lo_rest.iter().all(|&d| d == 0);
    let hi_is_ceiling = hi_rest.iter().all(|&d| d == 9);
    let mut first = l;
    let mut last = h;
    if !lo_is_floor {
        prefix.push((l, l));
        fixed_width_into(lo_rest, &vec![9; n], prefix, out);
        prefix.pop();
        first = l + 1;
    }
    if !hi_is_ceiling {
        last = h - 1;
    }
    if first <= last {
        let mut seq = prefix.clone();
        seq.push((first, last));
        seq.extend(std::iter::repeat_n((0, 9), n));
        out.push(seq);
    }
    if !hi_is_ceiling {
        prefix.push((h, h));
        fixed_width_into(&vec![0; n], hi_rest, prefix, out);
        prefix.pop();
    }
}

/// A digit-class sequence as regex text, runs of one class as `{n}`.
fn render_classes(seq: &[(u8, u8)]) -> String {
    let class = |(a, b): (u8, u8)| match (a, b) {
        (a, b) if a == b => a.to_string(),
        (a, b) => format!("[{a}-{b}]"),
    };
    let mut text = String::new();
    let mut i = 0;
    while i < seq.len() {
        let run = seq[i..].iter().take_while(|&&c| c == seq[i]).count();
        text.push_str(&class(seq[i]));
        if run > 1 {
            text.push_str(&format!("{{{run}}}"));
        }
        i += run;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force oracle: does `text` (a full match of the alternatives, checked digit class
    /// by digit class) belong to the language? We test the regex generators by expanding
    /// small ranges through the same class sequences.
    fn matches_seq(text: &str, seq: &[(u8, u8)]) -> bool {
        text.len() == seq.len()
            && text
                .bytes()
                .zip(seq)
                .all(|(c, &(a, b))| c.is_ascii_digit() && (a..=b).contains(&(c - b'0')))
    }

    #[test]
    fn fixed_width_ranges_cover_exactly_the_range() {
        for (lo, hi) in [
            (0, 999),
            (17, 402),
            (100, 100),
            (99, 100),
            (0, 9),
            (5, 5),
            (120, 989),
        ] {
            let width = 3;
            let seqs = fixed_width_ranges(&to_digits(lo, width), &to_digits(hi, width));
            for x in 0..1000_u128 {
                let text: String = to_digits(x, width)
                    .iter()
                    .map(|d| (b'0' + d) as char)
                    .collect();
                let hits = seqs.iter().filter(|s| matches_seq(&text, s)).count();
                let inside = (lo..=hi).contains(&x);
                assert_eq!(hits, usize::from(inside), "{x} in [{lo}, {hi}]: {seqs:?}");
            }
        }
    }

    #[test]
    fn int_ranges_render_compactly() {
        assert_eq!(int_range_regex(0, 9), "[0-9]");
        assert_eq!(int_range_regex(10, 99), "[1-9][0-9]");
        assert_eq!(int_range_regex(-5, 5), "-(?:[1-5])|[0-5]");
        assert_eq!(int_range_regex(7, 7), "7");
        assert_eq!(
            nonneg_range_regex(0, 1000),
            "[0-9]|[1-9][0-9]|[1-9][0-9]{2}|10{3}"
        );
    }

    #[test]
    fn number_units_round_inwards() {
        let (lo, hi) = number_units(0.1, 0.3).expect("units");
        assert!(
            (lo as f64) / 1e6 >= 0.1 && (hi as f64) / 1e6 <= 0.3,
            "{lo} {hi}"
        );
        assert!(lo <= 100_001 && hi >= 299_999, "{lo} {hi}");
        assert_eq!(number_units(0.5, 0.5), Ok((500_000, 500_000)));
        assert!(number_units(0.6, 0.5).is_err());
        assert!(number_units(0.123_456_1, 0.123_456_9).is_err());
        let mut s = FieldSchema::new("x", FieldType::Number);
        s.minimum = Some(0.123_456_1);
        s.maximum = Some(0.123_456_9);
        assert!(number_bounds(&s).is_err());
    }

    fn fields(fixed: Value) -> Vec<(String, FieldValue)> {
        vec![
            ("id".to_owned(), FieldValue::Fixed(fixed)),
            (
                "name".to_owned(),
                FieldValue::Generate(FieldSchema::new("name", FieldType::String)),
            ),
            (
                "note\"".to_owned(),
                FieldValue::Fixed(Value::from("a\u{7f}b")),
            ),
        ]
    }

    #[test]
    fn rows_are_json_schemas_with_consts_in_order() {
        let g = RowGrammar::new(&fields(Value::from(7))).expect("grammar");
        assert!(!g.is_lark());
        let schema: Value = serde_json::from_str(&g.source()).expect("schema");
        let keys: Vec<&String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        assert_eq!(keys, ["id", "name", "note\""]);
        assert_eq!(schema["properties"]["id"], serde_json::json!({"const": 7}));
        assert_eq!(
            schema["required"],
            serde_json::json!(["id", "name", "note\""])
        );
        assert_eq!(schema["x-guidance"]["whitespace_flexible"], false);
    }

    #[test]
    fn big_fixed_integers_fall_back_to_lark_literals() {
        let g = RowGrammar::new(&fields(Value::from(i64::MIN))).expect("grammar");
        assert!(g.is_lark());
        let want =
            r#"start: "{\"id\":-9223372036854775808,\"name\":" f0 ",\"note\\\"\":\"a\u007fb\"}""#;
        assert!(g.source().starts_with(want), "{}", g.source());
        assert!(g.source().contains("f0: %json {"), "{}", g.source());
    }

    /// A patient's 70 diagnoses, each choosing among 1,500 codes, as an entity's grammar has
    /// them; `fixed` is the patient's id.
    fn diagnoses(fixed: Value) -> Vec<(String, FieldValue)> {
        let mut code = FieldSchema::new("icd_code", FieldType::String);
        code.enum_values = Some((0..1500).map(|i| format!("C{i:05}")).collect());
        let rows = (0..70)
            .map(|k| {
                vec![
                    ("seq_num".to_owned(), FieldValue::Fixed(Value::from(k + 1))),
                    ("icd_code".to_owned(), FieldValue::Generate(code.clone())),
                ]
            })
            .collect();
        vec![
            ("id".to_owned(), FieldValue::Fixed(fixed)),
            ("diagnoses".to_owned(), FieldValue::Objects(rows)),
        ]
    }

    #[test]
    fn a_value_schema_every_row_repeats_is_written_once_and_compiles() {
        // Written out on each row, 70 copies of the codes overran llguidance's lexer limit
        // ("initial lexer configuration (grammar) too big"), and the run stopped.
        let tok: crate::llm::tokenizer::ChimeraTokenizer =
            crate::llm::random::tokenizer().expect("tokenizer").into();
        let factory = ConstraintFactory::new(&tok).expect("factory");
        for (fixed, lark) in [(Value::from(7), false), (Value::from(i64::MIN), true)] {
            let g = RowGrammar::new(&diagnoses(fixed)).expect("grammar");
            assert_eq!(g.is_lark(), lark);
            let source = g.source();
            assert_eq!(source.matches("C01499").count(), 1, "{}", &source[..200]);
            let mut c = factory.constraint(&g).expect("compiles");
            assert!(!c.allowed_tokens().expect("mask").is_zero());
        }
    }

    #[test]
    fn duplicate_keys_are_schema_errors() {
        let f = FieldValue::Fixed(Value::from(1));
        let err = RowGrammar::new(&[("a".into(), f.clone()), ("a".into(), f)]).expect_err("dup");
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn schema_errors_name_the_field() {
        let mut s = FieldSchema::new("n", FieldType::Integer);
        s.minimum = Some(3.5);
        s.maximum = Some(3.7);
        let err = RowGrammar::new(&[("n".into(), FieldValue::Generate(s))]).expect_err("empty");
        assert!(err.to_string().contains("\"n\""), "{err}");
        let mut s = FieldSchema::new("e", FieldType::Integer);
        s.enum_values = Some(vec!["x".into()]);
        let err = RowGrammar::new(&[("e".into(), FieldValue::Generate(s))]).expect_err("bad enum");
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
