//! Shared pieces of the constrained-decoding tests: a tiny byte-level BPE tokenizer, the
//! SmolLM2 GGUF (skipped unless `CHIMERA_SMOLLM2_GGUF` is set; `CHIMERA_REQUIRE_MODELS=1`
//! makes its absence a failure), a decoding loop over random logits, and an independent
//! checker of values against their schema.

use std::path::Path;
use std::time::{Duration, Instant};

use chimera_worker::llm::constrain::{
    DEFAULT_NUMBER_LIMIT, FieldSchema, FieldType, FieldValue, MAX_EXACT_INTEGER, RowConstraint,
};
use chimera_worker::llm::tokenizer::ChimeraTokenizer;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

pub const TINY_SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// Merges (GPT-2 byte symbols: `Ġ` is a space) that make JSON-ish multi-byte tokens, including
/// ones that span a quote and a value (`"A`, `":"`) so token healing is exercised.
const TINY_MERGES: &[&str] = &[
    "{ \"", "\" :", "\": \"", ", \"", "\" ,", "\", \"", "\" }", "\" A", "A B", "AB C", "1 2",
    "0 0", "2 0", "20 2", "- 0", "0 1", ". 5", "r e", "re d", "l l", "n u", "nu ll", "t r", "u e",
    "tr ue", "Ġ t", "Ġt he", "h e", "Ã ©", "- 1", "9 9", ": 0",
];

/// A byte-level BPE with the three ChatML control tokens (ids 0-2), the 256 byte symbols and
/// [`TINY_MERGES`]; stops at `<|im_end|>` and `<|endoftext|>`.
pub fn tiny_tokenizer() -> ChimeraTokenizer {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let mut tokens: Vec<String> = TINY_SPECIALS.iter().map(|s| s.to_string()).collect();
    tokens.extend(alphabet.iter().map(char::to_string));
    tokens.extend(TINY_MERGES.iter().map(|m| m.replace(' ', "")));
    let mut vocab = Vocab::default();
    for (id, t) in tokens.iter().enumerate() {
        vocab.entry(t.clone()).or_insert(id as u32);
    }
    let merges = TINY_MERGES
        .iter()
        .map(|m| {
            let (a, b) = m.split_once(' ').expect("merge has a space");
            (a.to_owned(), b.to_owned())
        })
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .expect("bpe");
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    tok.add_special_tokens(
        TINY_SPECIALS
            .iter()
            .map(|s| AddedToken::from(*s, true))
            .collect::<Vec<_>>(),
    )
    .expect("specials");
    let mut tok = ChimeraTokenizer::from_tokenizer(tok, Path::new("tiny")).expect("tokenizer");
    tok.bos = Some(1);
    tok.eos = vec![2, 0];
    tok
}

/// One token the loop appended: its byte span in the output and whether it was forced.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub start: usize,
    pub end: usize,
    pub forced: bool,
}

/// What one decoding loop did.
#[derive(Debug, Default)]
pub struct Run {
    pub appended: Vec<Appended>,
    pub masks: u32,
    /// Time in `allowed_tokens` (llguidance's mask computation alone).
    pub compute_time: Duration,
    /// Time in `mask_logits` (the computation again, plus applying it to the logits).
    pub mask_time: Duration,
}

impl Run {
    pub fn forced(&self) -> usize {
        self.appended.iter().filter(|a| a.forced).count()
    }

    pub fn sampled(&self) -> usize {
        self.appended.iter().filter(|a| !a.forced).count()
    }
}

/// Drives a constraint as the engine would, with random logits over `model_vocab` ids (more
/// than the tokenizer's, to check the extra ids are masked): forced tokens are appended
/// without sampling, otherwise one token is sampled from the masked softmax.
pub fn drive(
    c: &mut RowConstraint,
    token_bytes: &[Vec<u8>],
    model_vocab: usize,
    rng: &mut StdRng,
    max_steps: usize,
) -> Run {
    let mut run = Run::default();
    let mut pos = 0;
    let mut push = |run: &mut Run, tok: u32, forced: bool| {
        let len = token_bytes[tok as usize].len();
        run.appended.push(Appended {
            start: pos,
            end: pos + len,
            forced,
        });
        pos += len;
    };
    for _ in 0..max_steps {
        let forced = c.forced_tokens().expect("forced tokens");
        if !forced.is_empty() {
            for &t in &forced {
                push(&mut run, t, true);
            }
            c.commit(&forced).expect("commit forced");
            continue;
        }
        if c.is_done() {
            return run;
        }
        let mut logits: Vec<f32> = (0..model_vocab)
            .map(|_| rng.random_range(-4.0_f32..4.0))
            .collect();
        let t0 = Instant::now();
        let allowed = c.allowed_tokens().expect("allowed tokens");
        run.compute_time += t0.elapsed();
        let t1 = Instant::now();
        c.mask_logits(&mut logits).expect("mask");
        run.mask_time += t1.elapsed();
        run.masks += 1;
        for (id, l) in logits[..token_bytes.len()].iter().enumerate() {
            assert_eq!(l.is_finite(), allowed.is_allowed(id as u32), "token {id}");
        }
        assert!(
            logits[token_bytes.len()..]
                .iter()
                .all(|l| *l == f32::NEG_INFINITY),
            "ids beyond the tokenizer's vocabulary must be masked"
        );
        let tok = sample(&logits, rng);
        push(&mut run, tok, false);
        c.commit(&[tok]).expect("commit sampled");
    }
    panic!(
        "row not done after {max_steps} steps: {:?}",
        c.text().chars().take(400).collect::<String>()
    );
}

/// Samples from softmax(logits); -inf logits are never chosen.
pub fn sample(logits: &[f32], rng: &mut StdRng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(max.is_finite(), "the mask allows no token");
    let weights: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut x = rng.random_range(0.0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w && *w > 0.0 {
            return i as u32;
        }
        x -= w;
    }
    logits
        .iter()
        .rposition(|l| l.is_finite())
        .expect("some token allowed") as u32
}

/// Checks an array of nested objects by value: exactly `items.len()` objects, keys in order,
/// fixed values equal, generated values fitting their schema (spelled as serde_json writes
/// them back).
pub fn check_objects(
    key: &str,
    items: &[Vec<(String, FieldValue)>],
    value: &Value,
    tally: &mut Tally,
) {
    let array = value
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array: {value}"));
    assert_eq!(array.len(), items.len(), "{key}: {value}");
    for (fields, object) in items.iter().zip(array) {
        let object = object
            .as_object()
            .unwrap_or_else(|| panic!("{key}: {object}"));
        let keys: Vec<&String> = object.keys().collect();
        let want: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, want, "keys out of order in {key}: {object:?}");
        for (k, field) in fields {
            let v = &object[k];
            match field {
                FieldValue::Fixed(f) => {
                    tally.fixed_values += 1;
                    assert_eq!(v, f, "{key}.{k}");
                }
                FieldValue::Generate(schema) => {
                    tally.generated_values += 1;
                    let raw = serde_json::to_string(v).expect("json");
                    if let Some(why) = misfit(schema, v, &raw) {
                        panic!("{key}.{k} = {raw}: {why}");
                    }
                }
                FieldValue::Objects(inner) => check_objects(k, inner, v, tally),
            }
        }
    }
}

/// Byte spans of each field's value in the row's JSON text, walking the known layout
/// (`{"k":v,...}`) and letting serde_json find where each value ends.
pub fn value_spans(text: &str, fields: &[(String, FieldValue)]) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut spans = Vec::new();
    for (i, (key, _)) in fields.iter().enumerate() {
        let head = format!(
            "{}{}:",
            if i == 0 { "{" } else { "," },
            serde_json::to_string(key).expect("key")
        );
        assert!(
            text[pos..].starts_with(&head),
            "expected {head:?} at {pos} in {text:?}"
        );
        pos += head.len();
        let mut values = serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<Value>();
        values.next().expect("a value").expect("valid JSON value");
        let end = pos + values.byte_offset();
        spans.push((pos, end));
        pos = end;
    }
    assert_eq!(&text[pos..], "}", "in {text:?}");
    spans
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        s.get(r)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
    };
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            y >= 1 && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
        }
        _ => false,
    }
}

fn valid_time(s: &str) -> bool {
    let b = s.as_bytes();
    let two = |i: usize| -> Option<u32> {
        s.get(i..i + 2)
            .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
    };
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && two(0).is_some_and(|h| h < 24)
        && two(3).is_some_and(|m| m < 60)
        && two(6).is_some_and(|s| s < 60)
}

/// Checks a string against the test patterns this file's schemas use (an oracle independent
/// of the regex compiler under test).
fn matches_test_pattern(pattern: &str, s: &str) -> bool {
    let c: Vec<char> = s.chars().collect();
    match pattern {
        "[A-Z]{3}[0-9]{2}" => {
            c.len() == 5
                && c[..3].iter().all(|x| x.is_ascii_uppercase())
                && c[3..].iter().all(|x| x.is_ascii_digit())
        }
        "[a-z]+(-[a-z]+)*" => {
            !s.is_empty()
                && s.split('-')
                    .all(|p| !p.is_empty() && p.chars().all(|x| x.is_ascii_lowercase()))
        }
        other => panic!("no oracle for pattern {other:?}"),
    }
}

/// Why `value` (whose JSON text is `raw`) does not fit `schema`, or `None` when it fits.
pub fn misfit(schema: &FieldSchema, value: &Value, raw: &str) -> Option<String> {
    if value.is_null() {
        return (!schema.nullable).then(|| "null in a non-nullable field".to_owned());
    }
    if let Some(allowed) = &schema.enum_values {
        let ok = match schema.ty {
            FieldType::Integer => value
                .as_i64()
                .is_some_and(|v| allowed.iter().any(|a| a.parse::<i64>() == Ok(v))),
            _ => value
                .as_str()
                .is_some_and(|v| allowed.iter().any(|a| a == v)),
        };
        return (!ok).then(|| format!("{value} not in {allowed:?}"));
    }
    let in_bounds =
        |x: f64| schema.minimum.is_none_or(|m| x >= m) && schema.maximum.is_none_or(|m| x <= m);
    match schema.ty {
        FieldType::String => {
            let Some(s) = value.as_str() else {
                return Some("not a string".into());
            };
            let n = s.chars().count();
            let max = schema.max_length.unwrap_or(64);
            if n < schema.min_length.unwrap_or(0) || n > max {
                return Some(format!("{n} chars"));
            }
            if let Some(p) = &schema.pattern
                && !matches_test_pattern(p, s)
            {
                return Some(format!("{s:?} does not match {p}"));
            }
            None
        }
        FieldType::Integer => match value.as_i64() {
            Some(i) if in_bounds(i as f64) && i.unsigned_abs() <= MAX_EXACT_INTEGER as u64 => None,
            _ => Some("not an in-bounds integer within ±2^53".into()),
        },
        FieldType::Number => {
            let finite = value.as_f64().filter(|x| x.is_finite());
            let frac_digits = raw.split_once('.').map_or(0, |(_, f)| f.len());
            match finite {
                Some(x)
                    if in_bounds(x)
                        && x.abs() <= DEFAULT_NUMBER_LIMIT
                        && frac_digits <= 6
                        && !raw.contains(['e', 'E']) =>
                {
                    None
                }
                _ => Some("not a bounded finite number".into()),
            }
        }
        FieldType::Boolean => (!value.is_boolean()).then(|| "not a boolean".into()),
        FieldType::Date => match value.as_str() {
            Some(s) if valid_date(s) => None,
            _ => Some("not a valid date".into()),
        },
        FieldType::DateTime => match value.as_str() {
            Some(s)
                if s.len() == 19
                    && valid_date(&s[..10])
                    && &s[10..11] == " "
                    && valid_time(&s[11..]) =>
            {
                None
            }
            _ => Some("not a valid date-time".into()),
        },
    }
}

/// The columns the random-row tests draw from, with a valid fixed value for each.
pub fn test_columns() -> Vec<(FieldSchema, Value)> {
    let mut cols = Vec::new();
    let mut s = FieldSchema::new("code", FieldType::String);
    s.pattern = Some("[A-Z]{3}[0-9]{2}".into());
    cols.push((s, Value::from("QRS12")));
    let mut s = FieldSchema::new("color", FieldType::String);
    s.enum_values = Some(vec![
        "red".into(),
        "green".into(),
        "dark \"navy\"".into(),
        "café".into(),
    ]);
    cols.push((s, Value::from("green")));
    let mut s = FieldSchema::new("name", FieldType::String);
    s.min_length = Some(1);
    s.max_length = Some(12);
    cols.push((s, Value::from("Zoë \"Z\" 🙂")));
    let mut s = FieldSchema::new("notes", FieldType::String);
    s.nullable = true;
    cols.push((s, Value::from("line one\nline <|im_end|> two\t\\ \u{1}")));
    let mut s = FieldSchema::new("slug", FieldType::String);
    s.pattern = Some("[a-z]+(-[a-z]+)*".into());
    s.max_length = Some(20);
    cols.push((s, Value::from("red-fox")));
    let mut s = FieldSchema::new("age", FieldType::Integer);
    s.minimum = Some(0.0);
    s.maximum = Some(120.0);
    cols.push((s, Value::from(42)));
    cols.push((
        FieldSchema::new("delta", FieldType::Integer),
        Value::from(i64::MIN),
    ));
    let mut s = FieldSchema::new("neg", FieldType::Integer);
    s.minimum = Some(-50.5);
    s.maximum = Some(-3.0);
    cols.push((s, Value::from(-7)));
    let mut s = FieldSchema::new("level", FieldType::Integer);
    s.enum_values = Some(vec!["1".into(), "2".into(), "10".into()]);
    cols.push((s, Value::from(10)));
    let mut s = FieldSchema::new("price", FieldType::Number);
    s.minimum = Some(0.5);
    s.maximum = Some(999.99);
    cols.push((s, Value::from(12.25)));
    cols.push((
        FieldSchema::new("temp", FieldType::Number),
        Value::from(-273.15),
    ));
    let mut s = FieldSchema::new("ratio", FieldType::Number);
    s.minimum = Some(-1.0);
    s.maximum = Some(1.0);
    s.nullable = true;
    cols.push((s, Value::Null));
    let mut s = FieldSchema::new("tiny", FieldType::Number);
    s.minimum = Some(0.1);
    s.maximum = Some(0.3);
    cols.push((s, Value::from(0.2)));
    cols.push((
        FieldSchema::new("born", FieldType::Date),
        Value::from("2000-02-29"),
    ));
    let mut s = FieldSchema::new("seen", FieldType::DateTime);
    s.nullable = true;
    cols.push((s, Value::from("2024-12-31 23:59:59")));
    cols.push((
        FieldSchema::new("flag", FieldType::Boolean),
        Value::from(true),
    ));
    cols
}

/// A random row: a random subset of `columns` in random order, each fixed with probability
/// one half.
pub fn random_row(columns: &[(FieldSchema, Value)], rng: &mut StdRng) -> Vec<(String, FieldValue)> {
    let mut picked: Vec<&(FieldSchema, Value)> =
        columns.iter().filter(|_| rng.random_bool(0.6)).collect();
    if picked.is_empty() {
        picked.push(&columns[rng.random_range(0..columns.len())]);
    }
    // Fisher-Yates, so the key order varies.
    for i in (1..picked.len()).rev() {
        picked.swap(i, rng.random_range(0..=i));
    }
    picked
        .into_iter()
        .map(|(schema, fixed)| {
            let value = if rng.random_bool(0.5) {
                FieldValue::Fixed(fixed.clone())
            } else {
                FieldValue::Generate(schema.clone())
            };
            (schema.name.clone(), value)
        })
        .collect()
}

/// Totals over many rows.
#[derive(Debug, Default)]
pub struct Tally {
    pub rows: usize,
    pub forced: usize,
    pub sampled: usize,
    pub fixed_values: usize,
    pub generated_values: usize,
    pub masks: u32,
    pub compute_time: Duration,
    pub mask_time: Duration,
    pub build_time: Duration,
}

/// Checks one finished row: keys in order, fixed values exact and spelled only by forced
/// tokens, generated values fitting their schema.
pub fn check_row(
    fields: &[(String, FieldValue)],
    values: &Map<String, Value>,
    text: &str,
    run: &Run,
    tally: &mut Tally,
) {
    let keys: Vec<&String> = values.keys().collect();
    let want: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, want, "keys out of order in {text:?}");
    let spans = value_spans(text, fields);
    for ((key, field), &(start, end)) in fields.iter().zip(&spans) {
        let raw = &text[start..end];
        match field {
            FieldValue::Fixed(v) => {
                tally.fixed_values += 1;
                assert_eq!(&values[key], v, "{key} in {text:?}");
                assert_eq!(raw, serde_json::to_string(v).expect("json"), "{key}");
                let sampled: Vec<&Appended> = run
                    .appended
                    .iter()
                    .filter(|a| !a.forced && a.start < end && a.end > start)
                    .collect();
                assert!(
                    sampled.is_empty(),
                    "fixed {key} = {raw} overlaps sampled tokens {sampled:?} in {text:?}"
                );
            }
            FieldValue::Generate(schema) => {
                tally.generated_values += 1;
                if let Some(why) = misfit(schema, &values[key], raw) {
                    panic!("{key} = {raw}: {why} (row {text:?})");
                }
            }
            FieldValue::Objects(items) => check_objects(key, items, &values[key], tally),
        }
    }
    tally.rows += 1;
    tally.forced += run.forced();
    tally.sampled += run.sampled();
    tally.masks += run.masks;
    tally.compute_time += run.compute_time;
    tally.mask_time += run.mask_time;
}
