//! Rows decoded under their schema with random logits: whatever the model would say, every row
//! parses, every generated value fits its column, and every fixed value comes out exactly as
//! given, spelled by forced tokens only.

use std::time::Instant;

use chimera_worker::llm::constrain::{
    ConstraintError, ConstraintFactory, FieldSchema, FieldType, FieldValue, RowConstraint,
    RowGrammar,
};
use chimera_worker::llm::tokenizer::{ChimeraTokenizer, load_tokenizer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde_json::Value;

use super::constrain_fixture::{Tally, check_row, drive, random_row, test_columns, tiny_tokenizer};
use super::smollm2_gguf;

/// Decodes `rows` random rows and checks each; returns the totals.
fn decode_random_rows(tok: &ChimeraTokenizer, rows: usize, seed: u64) -> Tally {
    let factory = ConstraintFactory::new(tok).expect("factory");
    let token_bytes = tok.token_bytes();
    assert_eq!(factory.vocab_size(), token_bytes.len());
    let model_vocab = token_bytes.len() + 64;
    let columns = test_columns();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut lark_rows = 0;
    for _ in 0..rows {
        let fields = random_row(&columns, &mut rng);
        let grammar = RowGrammar::new(&fields).expect("row grammar");
        lark_rows += usize::from(grammar.is_lark());
        let t0 = Instant::now();
        let mut c = factory.constraint(&grammar).expect("row constraint");
        tally.build_time += t0.elapsed();
        let run = drive(&mut c, &token_bytes, model_vocab, &mut rng, 2_000);
        assert!(c.is_done());
        // Once complete, only the stop ids remain allowed, and committing one is harmless.
        let after = c.allowed_tokens().expect("mask after done");
        let allowed: Vec<u32> = (0..factory.vocab_size() as u32)
            .filter(|&t| after.is_allowed(t))
            .collect();
        let mut stops = tok.eos.clone();
        stops.sort_unstable();
        assert_eq!(allowed, stops);
        c.commit(&tok.eos[..1]).expect("eos after done");
        let text = c.text();
        let values = c.finish().expect("finished row parses");
        check_row(&fields, &values, &text, &run, &mut tally);
    }
    // Rows with the fixed i64::MIN take the Lark path; both paths must be exercised.
    assert!(
        lark_rows > 0 && lark_rows < rows,
        "{lark_rows} of {rows} rows in Lark"
    );
    tally
}

fn report(label: &str, t: &Tally) {
    let per_mask = |d: std::time::Duration| d.as_secs_f64() * 1e6 / f64::from(t.masks.max(1));
    eprintln!(
        "{label}: {} rows, {} fixed and {} generated values, {} forced and {} sampled tokens; \
         {} masks: {:.1} µs to compute, {:.1} µs in mask_logits; {:.0} µs per row constraint",
        t.rows,
        t.fixed_values,
        t.generated_values,
        t.forced,
        t.sampled,
        t.masks,
        per_mask(t.compute_time),
        per_mask(t.mask_time),
        t.build_time.as_secs_f64() * 1e6 / t.rows.max(1) as f64,
    );
}

#[test]
fn tiny_bpe_random_logits_always_fit_the_schema() {
    let tok = tiny_tokenizer();
    let tally = decode_random_rows(&tok, 300, 7);
    report("tiny BPE", &tally);
    assert_eq!(tally.rows, 300);
    assert!(
        tally.fixed_values > 300 && tally.generated_values > 300,
        "{tally:?}"
    );
    assert!(
        tally.forced > tally.rows * 3,
        "keys and fixed values are forced: {tally:?}"
    );
}

#[test]
fn smollm2_random_logits_always_fit_the_schema() {
    let Some(path) = smollm2_gguf() else { return };
    let tok = load_tokenizer(&path).expect("SmolLM2 tokenizer");
    let tally = decode_random_rows(&tok, 120, 11);
    report("SmolLM2", &tally);
    assert_eq!(tally.rows, 120);
    assert!(tally.forced > tally.rows * 3, "{tally:?}");
}

/// Forces a row of fixed values only; returns whether it took the Lark path.
fn decode_fixed_row(fields: &[(String, FieldValue)]) -> bool {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let grammar = RowGrammar::new(fields).expect("grammar");
    let mut c = factory.constraint(&grammar).expect("row");
    let mut forced = Vec::new();
    while !c.is_done() {
        let f = c.forced_tokens().expect("forced");
        assert!(
            !f.is_empty(),
            "nothing to sample in a fixed row: {:?}",
            c.text()
        );
        c.commit(&f).expect("commit");
        forced.extend(f);
    }
    let text = c.text();
    let values = c.finish().expect("finish");
    let want: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| match v {
            FieldValue::Fixed(v) => (k.clone(), v.clone()),
            FieldValue::Generate(_) | FieldValue::Objects(_) => unreachable!(),
        })
        .collect();
    assert_eq!(values, want);
    assert_eq!(text, serde_json::to_string(&want).expect("json"));
    // Forced text is tokenized as the tokenizer would tokenize the whole row.
    let canonical = tok
        .text_encoder()
        .encode(text.as_str(), false)
        .expect("encode");
    assert_eq!(forced, canonical.get_ids());
    grammar.is_lark()
}

/// A random entity: a row whose last fields are arrays of 0..=3 random rows, each of the
/// first array's rows holding an array of its own (two levels, as patients → admissions →
/// transfers).
fn random_entity(columns: &[(FieldSchema, Value)], rng: &mut StdRng) -> Vec<(String, FieldValue)> {
    let rows = |rng: &mut StdRng, nested: bool| -> FieldValue {
        let n = rng.random_range(0..=3);
        FieldValue::Objects(
            (0..n)
                .map(|_| {
                    let mut row = random_row(columns, rng);
                    if nested {
                        let m = rng.random_range(0..=2);
                        let inner = (0..m).map(|_| random_row(columns, rng)).collect();
                        row.push(("grandchildren".into(), FieldValue::Objects(inner)));
                    }
                    row
                })
                .collect(),
        )
    };
    let mut entity = random_row(columns, rng);
    let children = rows(rng, true);
    let others = rows(rng, false);
    entity.push(("children".into(), children));
    entity.push(("others".into(), others));
    entity
}

#[test]
fn nested_arrays_have_their_lengths_and_every_value_fits() {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let token_bytes = tok.token_bytes();
    let columns = test_columns();
    let mut rng = StdRng::seed_from_u64(11);
    let mut tally = Tally::default();
    let (mut lark, mut nested_objects) = (0, 0);
    for _ in 0..60 {
        let fields = random_entity(&columns, &mut rng);
        let grammar = RowGrammar::new(&fields).expect("entity grammar");
        lark += usize::from(grammar.is_lark());
        let mut c = factory.constraint(&grammar).expect("entity constraint");
        let run = drive(&mut c, &token_bytes, token_bytes.len(), &mut rng, 20_000);
        let text = c.text();
        let values = c.finish().expect("finished entity parses");
        for (k, v) in &fields {
            if let FieldValue::Objects(items) = v {
                nested_objects += items.len();
                assert_eq!(
                    values[k].as_array().map(Vec::len),
                    Some(items.len()),
                    "{text}"
                );
            }
        }
        check_row(&fields, &values, &text, &run, &mut tally);
    }
    assert!(lark > 0 && lark < 60, "{lark} of 60 entities in Lark");
    assert!(nested_objects > 60, "{nested_objects}");
    assert!(tally.generated_values > 300, "{tally:?}");
}

#[test]
fn fully_fixed_rows_are_all_forced() {
    let all: Vec<(String, FieldValue)> = test_columns()
        .into_iter()
        .map(|(s, v)| (s.name, FieldValue::Fixed(v)))
        .collect();
    // i64::MIN and a string with U+0001 cannot be JSON Schema consts: the Lark path.
    assert!(decode_fixed_row(&all));
    let plain: Vec<(String, FieldValue)> = all
        .into_iter()
        .filter(|(k, _)| k != "delta" && k != "notes")
        .collect();
    assert!(!decode_fixed_row(&plain));
}

#[test]
fn empty_row_is_an_empty_object() {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let mut c = factory.row(&[]).expect("row");
    let f = c.forced_tokens().expect("forced");
    c.commit(&f).expect("commit");
    assert!(c.is_done());
    assert!(c.finish().expect("finish").is_empty());
}

#[test]
fn masks_compute_in_parallel_for_a_batch() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<RowConstraint>();
    assert_send_sync::<ConstraintFactory>();

    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let mut s = FieldSchema::new("n", FieldType::Integer);
    s.minimum = Some(10.0);
    s.maximum = Some(19.0);
    let fields = vec![("n".to_owned(), FieldValue::Generate(s))];
    let mut batch: Vec<RowConstraint> = (0..16)
        .map(|_| factory.row(&fields).expect("row"))
        .collect();
    let vocab = factory.vocab_size();
    let masked: Vec<Vec<f32>> = batch
        .par_iter_mut()
        .map(|c| {
            let f = c.forced_tokens().expect("forced");
            c.commit(&f).expect("commit");
            let mut logits = vec![0.0; vocab];
            c.mask_logits(&mut logits).expect("mask");
            logits
        })
        .collect();
    let token_bytes = tok.token_bytes();
    for logits in &masked {
        assert_eq!(logits, &masked[0]);
        // After `{"n":` only tokens spelling a prefix of 10..19 (then `}`) are allowed.
        for (id, l) in logits.iter().enumerate() {
            let b = &token_bytes[id];
            let ok = !b.is_empty() && b[0] == b'1' && b.len() <= 3;
            if l.is_finite() {
                assert!(ok, "token {:?} allowed", String::from_utf8_lossy(b));
            }
        }
    }
}

#[test]
fn commit_rejects_a_disallowed_token() {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let fields = vec![(
        "b".to_owned(),
        FieldValue::Generate(FieldSchema::new("b", FieldType::Boolean)),
    )];
    let mut c = factory.row(&fields).expect("row");
    let f = c.forced_tokens().expect("forced");
    c.commit(&f).expect("commit");
    let x = tok.tokenizer.token_to_id("x").expect("x");
    let err = c.commit(&[x]).expect_err("x is not a boolean");
    assert!(matches!(err, ConstraintError::Rejected(_)), "{err}");
    assert!(c.finish().is_err());
}

#[test]
fn finish_before_done_is_incomplete() {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let fields = vec![(
        "s".to_owned(),
        FieldValue::Generate(FieldSchema::new("s", FieldType::String)),
    )];
    let mut c = factory.row(&fields).expect("row");
    let f = c.forced_tokens().expect("forced");
    c.commit(&f).expect("commit");
    assert!(!c.is_done());
    let err = c.finish().expect_err("incomplete");
    assert!(matches!(err, ConstraintError::Incomplete { .. }), "{err}");
}

#[test]
fn factory_needs_a_stop_id() {
    let mut tok = tiny_tokenizer();
    tok.eos.clear();
    let err = ConstraintFactory::new(&tok).expect_err("no eos");
    assert!(err.to_string().contains("eos"), "{err}");
}

#[test]
fn unsatisfiable_columns_are_schema_errors() {
    let tok = tiny_tokenizer();
    let factory = ConstraintFactory::new(&tok).expect("factory");
    let mut s = FieldSchema::new("s", FieldType::String);
    s.min_length = Some(5);
    s.max_length = Some(2);
    let err = factory
        .row(&[("s".into(), FieldValue::Generate(s))])
        .expect_err("min > max");
    assert!(matches!(err, ConstraintError::Schema { .. }), "{err}");
    let mut s = FieldSchema::new("p", FieldType::String);
    s.pattern = Some("[".into());
    let err = factory
        .row(&[("p".into(), FieldValue::Generate(s))])
        .expect_err("bad regex");
    assert!(matches!(err, ConstraintError::Grammar(_)), "{err}");
}
