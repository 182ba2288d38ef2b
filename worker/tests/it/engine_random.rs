//! The batched engine with schema constraints on tiny random-weight models of every
//! architecture and format: random weights still give 100% schema-valid rows, batches stay full
//! (continuous batching), and the same seeds give the same rows.

use candle_core::Device;
use chimera_worker::llm::constrain::{ConstraintFactory, FieldSchema, FieldType, FieldValue};
use chimera_worker::llm::engine::{Engine, Request};
use chimera_worker::llm::model::{Architecture, LanguageModel};
use chimera_worker::llm::random::{RandomDType, RandomFormat, RandomModelSpec, write_random_model};
use chimera_worker::llm::tokenizer::load_tokenizer;
use serde_json::{Map, Value, json};

fn schemas() -> Vec<Vec<(String, FieldValue)>> {
    let text = |name: &str, max: usize| {
        let mut f = FieldSchema::new(name, FieldType::String);
        f.min_length = Some(1);
        f.max_length = Some(max);
        FieldValue::Generate(f)
    };
    let code = {
        let mut f = FieldSchema::new("code", FieldType::String);
        f.pattern = Some("[A-Z]{3}[0-9]{2}".into());
        FieldValue::Generate(f)
    };
    let dose = {
        let mut f = FieldSchema::new("dose", FieldType::Integer);
        f.minimum = Some(1.0);
        f.maximum = Some(500.0);
        FieldValue::Generate(f)
    };
    let route = {
        let mut f = FieldSchema::new("route", FieldType::String);
        f.enum_values = Some(vec!["IV".into(), "PO".into(), "PO/NG".into()]);
        FieldValue::Generate(f)
    };
    let day = FieldValue::Generate(FieldSchema::new("day", FieldType::Date));
    let fixed = |v: Value| FieldValue::Fixed(v);
    vec![
        vec![
            ("drug_type".into(), fixed(json!("MAIN"))),
            ("drug".into(), text("drug", 24)),
        ],
        vec![
            ("age".into(), fixed(json!(71))),
            ("code".into(), code),
            ("dose".into(), dose),
        ],
        vec![
            ("note".into(), text("note", 40)),
            ("route".into(), route),
            ("day".into(), day),
            ("flag".into(), fixed(json!(null))),
        ],
    ]
}

/// Checks a finished row against its schema.
fn check(fields: &[(String, FieldValue)], row: &Map<String, Value>) {
    let keys: Vec<&String> = row.keys().collect();
    let expected: Vec<&String> = fields.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, expected);
    for (name, f) in fields {
        let v = &row[name];
        match f {
            FieldValue::Fixed(x) => assert_eq!(v, x, "{name}"),
            FieldValue::Generate(s) => match s.ty {
                FieldType::String => {
                    let t = v.as_str().unwrap_or_else(|| panic!("{name}: {v}"));
                    if let Some(options) = &s.enum_values {
                        assert!(options.iter().any(|o| o == t), "{name}: {t:?}");
                    } else if s.pattern.is_some() {
                        let b = t.as_bytes();
                        assert!(
                            b.len() == 5
                                && b[..3].iter().all(u8::is_ascii_uppercase)
                                && b[3..].iter().all(u8::is_ascii_digit),
                            "{name}: {t:?}"
                        );
                    } else {
                        let n = t.chars().count();
                        assert!(n >= 1 && n <= s.max_length.unwrap(), "{name}: {t:?}");
                    }
                }
                FieldType::Integer => {
                    let i = v.as_i64().unwrap_or_else(|| panic!("{name}: {v}"));
                    assert!((1..=500).contains(&i), "{name}: {i}");
                }
                FieldType::Date => {
                    let t = v.as_str().unwrap();
                    let parts: Vec<u32> = t.split('-').map(|p| p.parse().unwrap()).collect();
                    assert!(parts.len() == 3 && (1..=12).contains(&parts[1]), "{t}");
                    assert!((1..=31).contains(&parts[2]), "{t}");
                }
                _ => unreachable!(),
            },
            FieldValue::Objects(_) => unreachable!("the engine tests use flat rows"),
        }
    }
}

/// Generates `n` rows (cycling through the schemas) with `max_batch`; returns them in request
/// order with the largest batch seen.
fn generate(
    model: &LanguageModel,
    factory: &ConstraintFactory,
    prompt: &[u32],
    n: usize,
    max_batch: usize,
) -> (Vec<Map<String, Value>>, usize) {
    let schemas = schemas();
    let mut cache = model.new_cache();
    let (head, last) = prompt.split_at(prompt.len() - 1);
    model
        .forward(&mut [chimera_worker::llm::model::Step {
            cache: &mut cache,
            tokens: head,
            want_logits: false,
        }])
        .unwrap();
    let prefix = cache.freeze();
    let requests: Vec<Request> = (0..n)
        .map(|i| Request {
            suffix: last.to_vec(),
            constraint: factory.row(&schemas[i % schemas.len()]).unwrap(),
            seed: 1000 + i as u64,
        })
        .collect();
    let mut rows: Vec<Option<Map<String, Value>>> = vec![None; n];
    let engine = Engine::new(model, max_batch);
    let stats = engine
        .run(&prefix, requests, |c| {
            rows[c.request] = Some(c.constraint.finish()?);
            Ok(())
        })
        .unwrap();
    assert!(stats.sampled > 0 && stats.forced > 0, "{stats:?}");
    let rows: Vec<_> = rows
        .into_iter()
        .map(|r| r.expect("every request finishes"))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        check(&schemas[i % schemas.len()], row);
    }
    (rows, stats.max_batch)
}

#[test]
fn random_models_give_schema_valid_rows_in_batches() {
    for arch in [
        Architecture::Llama,
        Architecture::Qwen2,
        Architecture::Qwen3,
    ] {
        for (format, dtype) in [
            (RandomFormat::Gguf, RandomDType::Q8_0),
            (RandomFormat::Safetensors, RandomDType::F32),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = write_random_model(dir.path(), &RandomModelSpec::tiny(arch), format, dtype)
                .unwrap();
            let model = LanguageModel::load(&path, &Device::Cpu).unwrap();
            let tok = load_tokenizer(&path).unwrap();
            let factory = ConstraintFactory::new(&tok).unwrap();
            let prompt = tok
                .tokenizer
                .encode(
                    "<|im_start|>user\nWrite a row.<|im_end|>\n<|im_start|>assistant\n",
                    false,
                )
                .unwrap()
                .get_ids()
                .to_vec();
            // 10 requests, 4 at a time: the batch is refilled as rows finish.
            let (rows, widest) = generate(&model, &factory, &prompt, 10, 4);
            assert_eq!(widest, 4, "{arch:?}/{format:?}");
            // Same seeds, same rows.
            let (again, _) = generate(&model, &factory, &prompt, 10, 4);
            assert_eq!(rows, again, "{arch:?}/{format:?}");
        }
    }
}
