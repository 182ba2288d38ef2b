//! End-to-end tests of the `chimera` binary.

#![allow(clippy::unwrap_used)]

mod bad_input;
mod distributed;
mod distributed_s3;
mod entities;
mod eval;
mod llm;
mod pipeline;
mod procs;
mod s3;
mod tls_health;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn chimera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chimera"))
        .args(args)
        .env("CHIMERA_LOG", "warn")
        .output()
        .expect("run chimera")
}

/// `chimera run` on the 2,000-row Adult fixture into `out`, with further arguments.
pub fn run_adult(out: &Path, rows: &str, extra: &[&str]) -> Output {
    let input = data("adult_2000.csv");
    let mut args = vec![
        "run",
        "--input",
        &input,
        "--rows",
        rows,
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    chimera(&args)
}

pub fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ok(o: &Output) {
    assert!(o.status.success(), "chimera failed: {}", stderr(o));
}

/// Reads every part of an output table into batches.
pub fn read_parts(dir: &Path) -> Vec<arrow::array::RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("table dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = std::fs::File::open(&f).expect("open part");
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for b in r {
            out.push(b.expect("batch"));
        }
    }
    out
}
