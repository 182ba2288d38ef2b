//! `chimera run --llm`: text columns written by a language model, end to end.
//!
//! A tiny random-weight model (written by the test) drives the whole path fast: random weights
//! still give values that fit every column's schema. The real SmolLM2-135M-Instruct (set
//! `CHIMERA_SMOLLM2_GGUF`; `.ci/run` fetches it) writes 20 rows of a text column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chimera_worker::llm::model::Architecture;
use chimera_worker::llm::random::{RandomDType, RandomFormat, RandomModelSpec, write_random_model};

use crate::{chimera, data, ok, read_parts, stderr};

fn spec() -> String {
    format!(
        "{}/examples/prescriptions.spec.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

pub fn tiny_model(dir: &Path) -> PathBuf {
    write_random_model(
        &dir.join("tiny"),
        &RandomModelSpec::tiny(Architecture::Llama),
        RandomFormat::Gguf,
        RandomDType::F32,
    )
    .unwrap()
}

/// Runs `chimera run` on the prescriptions sample with an LLM; the fill logs every prompt at
/// debug level (see [`logged_prompts`]).
fn run_rx(out: &Path, llm: &Path, rows: &str, extra: &[&str]) -> std::process::Output {
    let input = data("prescriptions_1500.csv");
    let spec = spec();
    let mut args = vec![
        "run",
        "--input",
        &input,
        "--spec",
        &spec,
        "--rows",
        rows,
        "--output",
        out.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    std::process::Command::new(env!("CARGO_BIN_EXE_chimera"))
        .args(args)
        .env("CHIMERA_LOG", "warn,chimera_worker::llm::fill=debug")
        .output()
        .unwrap()
}

/// A column of the output as text (nulls as None).
fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for b in batches {
        let a = cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
        let s = a.as_string::<i32>();
        for i in 0..s.len() {
            out.push(s.is_valid(i).then(|| s.value(i).to_string()));
        }
    }
    out
}

/// Values of a column in the real sample, with their counts.
fn real_counts(name: &str) -> BTreeMap<String, usize> {
    let mut r = csv::Reader::from_path(data("prescriptions_1500.csv")).unwrap();
    let idx = r.headers().unwrap().iter().position(|h| h == name).unwrap();
    let mut counts = BTreeMap::new();
    for rec in r.records() {
        let rec = rec.unwrap();
        let v = rec.get(idx).unwrap();
        if !v.is_empty() {
            *counts.entry(v.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// The values the model keeps for a column (the network's categories).
fn kept_values(out: &Path, name: &str) -> BTreeSet<String> {
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_model.json")).unwrap()).unwrap();
    let col = model["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["schema"]["name"] == name)
        .unwrap();
    assert_eq!(col["role"], "text", "{name} should be a text column");
    col["encoding"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn random_model_writes_schema_valid_text_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny_model(dir.path());
    let extra = [
        "--no-dp",
        "--llm-columns",
        "drug,prod_strength,dose_val_rx",
        "--shard-rows",
        "150",
        "--workers",
        "2",
    ];
    let out = dir.path().join("a");
    ok(&run_rx(&out, &llm, "300", &extra));
    let batches = read_parts(&out.join("prescriptions"));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 300);

    let pattern_ok = |v: &str| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= 12
            && b[0].is_ascii_digit()
            && b[1..]
                .iter()
                .all(|c| c.is_ascii_digit() || b".,-".contains(c))
    };
    let mut written_total = 0;
    for (name, max_len) in [("drug", 64), ("prod_strength", 64), ("dose_val_rx", 12)] {
        let kept = kept_values(&out, name);
        let values = column(&batches, name);
        let written: Vec<&String> = values
            .iter()
            .flatten()
            .filter(|v| !kept.contains(*v))
            .collect();
        written_total += written.len();
        for v in &written {
            let chars = v.chars().count();
            assert!(
                (1..=max_len).contains(&chars),
                "{name}: {v:?} breaks max_length {max_len}"
            );
            if name == "dose_val_rx" {
                assert!(pattern_ok(v), "dose_val_rx {v:?} breaks its pattern");
            }
        }
    }
    // The long tail (values seen < 5 times) is about a third of these columns' cells.
    assert!(
        written_total >= 30,
        "only {written_total} cells were written by the LLM"
    );
    // The LLM fill does not change the other columns' rows count or types.
    assert!(column(&batches, "drug_type").iter().all(|v| v.is_some()));

    // Same job, one worker: the same bytes (each row has its own seed).
    let out1 = dir.path().join("b");
    let mut extra1 = extra.to_vec();
    let last = extra1.len() - 1;
    extra1[last] = "1";
    ok(&run_rx(&out1, &llm, "300", &extra1));
    for part in ["part-00000.parquet", "part-00001.parquet"] {
        assert_eq!(
            std::fs::read(out.join("prescriptions").join(part)).unwrap(),
            std::fs::read(out1.join("prescriptions").join(part)).unwrap(),
            "{part} differs between 1 and 2 workers"
        );
    }
}

/// The prompts a run logged (`CHIMERA_LOG=chimera_worker::llm::fill=debug`).
fn logged_prompts(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.contains("LLM prompt"))
        .map(str::to_string)
        .collect()
}

/// Whether a prompt line shows `column` holding one of `values` (as a JSON field).
fn shows_any(prompts: &[String], column: &str, values: &[&String]) -> usize {
    let needles: Vec<String> = values
        .iter()
        .map(|v| {
            // The log line escapes the prompt's quotes once more.
            let field = format!("\"{column}\":{}", serde_json::to_string(v).unwrap());
            format!("{field:?}").trim_matches('"').to_string()
        })
        .collect();
    prompts
        .iter()
        .filter(|p| needles.iter().any(|n| p.contains(n.as_str())))
        .count()
}

#[test]
fn synthetic_exemplars_keep_real_rows_out_of_prompts_and_knn_real_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let llm = tiny_model(dir.path());
    let run = |out: &Path, exemplars: &str| {
        let extra = ["--no-dp", "--llm-columns", "drug", "--exemplars", exemplars];
        let o = run_rx(out, &llm, "40", &extra);
        ok(&o);
        o
    };
    // Real values the model did not keep (seen fewer than 5 times): private.
    let rare: Vec<String> = real_counts("drug")
        .into_iter()
        .filter(|(_, n)| *n < 5)
        .map(|(v, _)| v)
        .collect();
    let rare: Vec<&String> = rare.iter().collect();
    assert!(rare.len() > 50);

    let out = dir.path().join("synthetic");
    let prompts = logged_prompts(&run(&out, "synthetic"));
    assert!(!prompts.is_empty());
    assert_eq!(shows_any(&prompts, "drug", &rare), 0);

    // The check can fail: nearest real rows do bring rare real values into prompts, and the
    // manifest says the text carries no DP guarantee.
    let out = dir.path().join("knn");
    let prompts = logged_prompts(&run(&out, "knn-real"));
    assert!(shows_any(&prompts, "drug", &rare) > 0);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_model.json")).unwrap()).unwrap();
    assert_eq!(model["llm"]["exemplars"], "knn-real");
    assert!(
        model["privacy"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n
                .as_str()
                .unwrap()
                .contains("NO differential-privacy guarantee"))
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert!(
        manifest["privacy"]["notes"]
            .to_string()
            .contains("knn-real")
    );
}

#[test]
fn llm_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let input = data("prescriptions_1500.csv");
    let spec = spec();
    let out = dir.path().join("o");
    let base = [
        "run",
        "--input",
        &input,
        "--spec",
        &spec,
        "--rows",
        "10",
        "--output",
        out.to_str().unwrap(),
    ];
    let o = chimera(&[&base[..], &["--llm-columns", "drug"]].concat());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--llm-columns needs --llm"),
        "{}",
        stderr(&o)
    );

    let missing = dir.path().join("nope.gguf");
    let o = chimera(&[&base[..], &["--llm", missing.to_str().unwrap()]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope.gguf"), "{}", stderr(&o));

    // Not a model file: named in the error, nothing marked complete.
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file").unwrap();
    let o = chimera(
        &[
            &base[..],
            &[
                "--no-dp",
                "--llm",
                junk.to_str().unwrap(),
                "--llm-columns",
                "drug",
            ],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("junk.gguf"), "{}", stderr(&o));
    assert!(!out.join("_SUCCESS").exists());

    // This build has no CUDA (the default): said plainly, nothing written.
    let llm = tiny_model(dir.path());
    if !cfg!(feature = "cuda") {
        let o = chimera(
            &[
                &base[..],
                &[
                    "--no-dp",
                    "--llm",
                    llm.to_str().unwrap(),
                    "--llm-columns",
                    "drug",
                    "--device",
                    "cuda",
                ],
            ]
            .concat(),
        );
        assert!(!o.status.success());
        assert!(stderr(&o).contains("built without CUDA"), "{}", stderr(&o));
        assert!(!out.join("_SUCCESS").exists());
    }

    // A model whose text columns need an LLM cannot be sampled without one.
    let model = dir.path().join("m.json");
    ok(&chimera(&[
        "fit",
        "--input",
        &input,
        "--spec",
        &spec,
        "--no-dp",
        "--model",
        model.to_str().unwrap(),
        "--llm",
        llm.to_str().unwrap(),
        "--llm-columns",
        "drug",
    ]));
    let o = chimera(&[
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--rows",
        "10",
        "--output",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pass --llm"), "{}", stderr(&o));
}

pub fn smollm2() -> Option<PathBuf> {
    match std::env::var_os("CHIMERA_SMOLLM2_GGUF") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CHIMERA_REQUIRE_MODELS").is_none_or(|v| v != "1"),
                "CHIMERA_REQUIRE_MODELS=1 but CHIMERA_SMOLLM2_GGUF is not set"
            );
            eprintln!("skipped: set CHIMERA_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf");
            None
        }
    }
}

#[test]
fn smollm2_writes_twenty_rows_of_a_text_column() {
    let Some(llm) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let extra = [
        "--no-dp",
        "--llm-columns",
        "prod_strength",
        "--llm-fill",
        "all",
    ];
    let o = run_rx(&out, &llm, "20", &extra);
    ok(&o);
    let batches = read_parts(&out.join("prescriptions"));
    let values = column(&batches, "prod_strength");
    assert_eq!(values.len(), 20);
    let written: Vec<&String> = values.iter().flatten().collect();
    // The network draws a few nulls; every other cell is the LLM's.
    assert!(written.len() >= 15, "{values:?}");
    for v in &written {
        assert!(
            (1..=64).contains(&v.chars().count()),
            "{v:?} breaks max_length"
        );
    }
    let distinct: BTreeSet<&String> = written.iter().copied().collect();
    assert!(distinct.len() >= 5, "the model repeats itself: {written:?}");
    // Synthetic exemplars: no real record reaches a prompt. Rare real values (seen < 5 times,
    // never released) appear in no prompt; the model may still write a common strength such as
    // "10mg Tablet" on its own, which is not a copy of a record.
    let rare: Vec<String> = real_counts("prod_strength")
        .into_iter()
        .filter(|(_, n)| *n < 5)
        .map(|(v, _)| v)
        .collect();
    let prompts = logged_prompts(&o);
    assert!(!prompts.is_empty());
    assert_eq!(
        shows_any(&prompts, "prod_strength", &rare.iter().collect::<Vec<_>>()),
        0
    );
    let real = real_counts("prod_strength");
    let seen = written.iter().filter(|v| real.contains_key(**v)).count();
    eprintln!(
        "SmolLM2 wrote {} values, {seen} of them also in the real sample: {written:?}",
        written.len()
    );
}
