//! Bad input: a clear message naming the file, table, column or line; a non-zero exit; no
//! `_SUCCESS`.

use std::io::Write;
use std::path::Path;

use crate::{chimera, data, ok, run_adult, stderr};

/// Runs `chimera run` on `input` and returns its stderr, asserting failure and no `_SUCCESS`.
fn run_fails(input: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args = vec![
        "run",
        "--input",
        input,
        "--rows",
        "100",
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = chimera(&args);
    assert!(!o.status.success(), "expected failure for {input}");
    assert!(!out.join("_SUCCESS").exists());
    let e = stderr(&o);
    assert!(e.contains("error"), "{e}");
    e
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn missing_file() {
    let e = run_fails("/nonexistent/people.csv", &[]);
    assert!(e.contains("people.csv"), "{e}");
}

#[test]
fn empty_file() {
    let d = tempfile::tempdir().unwrap();
    let e = run_fails(&write(d.path(), "empty.csv", b""), &[]);
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn header_only() {
    let d = tempfile::tempdir().unwrap();
    let e = run_fails(&write(d.path(), "h.csv", b"name,age\n"), &[]);
    assert!(e.to_lowercase().contains("header"), "{e}");
}

#[test]
fn ragged_rows() {
    let d = tempfile::tempdir().unwrap();
    let mut t = String::from("a,b,c\n");
    for i in 0..50 {
        t.push_str(&format!("{i},x,{i}\n"));
    }
    t.push_str("1,2\n");
    let e = run_fails(&write(d.path(), "r.csv", t.as_bytes()), &[]);
    assert!(e.contains("line 52"), "{e}");
}

#[test]
fn undecodable_bytes() {
    let d = tempfile::tempdir().unwrap();
    let mut t = b"a,b\n".to_vec();
    for i in 0..30 {
        t.extend_from_slice(format!("{i},ok\n").as_bytes());
    }
    t.extend_from_slice(b"31,\xff\xfe\n");
    let e = run_fails(&write(d.path(), "u.csv", &t), &[]);
    assert!(
        e.contains("line 32") && e.to_lowercase().contains("utf-8"),
        "{e}"
    );
}

#[test]
fn all_null_column() {
    let d = tempfile::tempdir().unwrap();
    let mut t = String::from("a,nothing\n");
    for i in 0..50 {
        t.push_str(&format!("{i},\n"));
    }
    let e = run_fails(&write(d.path(), "n.csv", t.as_bytes()), &["--no-dp"]);
    assert!(e.contains("`nothing`") && e.contains("null"), "{e}");
}

#[test]
fn nan_in_numbers() {
    let d = tempfile::tempdir().unwrap();
    let mut t = String::from("a,x\n");
    for i in 0..50 {
        t.push_str(&format!("{i},{}.5\n", i));
    }
    t.push_str("51,NaN\n");
    let e = run_fails(&write(d.path(), "nan.csv", t.as_bytes()), &[]);
    assert!(e.contains("NaN") && e.contains("x"), "{e}");
    let mut t = String::from("a,x\n");
    for i in 0..50 {
        t.push_str(&format!("{i},{}.5\n", i));
    }
    t.push_str("51,inf\n");
    let e = run_fails(&write(d.path(), "inf.csv", t.as_bytes()), &[]);
    assert!(e.to_lowercase().contains("inf"), "{e}");
}

#[test]
fn a_million_distinct_values() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("wide.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    writeln!(f, "note,group").unwrap();
    for i in 0..1_000_000u32 {
        writeln!(f, "n{:x}q,{}", i.wrapping_mul(2_654_435_761), i % 4).unwrap();
    }
    drop(f);
    let e = run_fails(p.to_str().unwrap(), &["--no-dp"]);
    assert!(
        e.contains("`note`") && e.contains("role: identifier"),
        "{e}"
    );
}

#[test]
fn zero_and_negative_rows() {
    for rows in ["0", "-5", "many"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = run_adult(&out, rows, &[]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--rows must be a positive whole number"),
            "{}",
            stderr(&o)
        );
        assert!(!out.join("_SUCCESS").exists());
    }
}

#[test]
fn non_positive_epsilon() {
    for eps in ["0", "-1"] {
        let e = run_fails(&data("adult_2000.csv"), &["--epsilon", eps]);
        assert!(e.contains("epsilon must be a positive number"), "{e}");
    }
}

#[test]
fn unknown_column_in_spec() {
    let d = tempfile::tempdir().unwrap();
    let spec = write(
        d.path(),
        "spec.yaml",
        b"columns:\n  salary: {role: numeric}\n",
    );
    let e = run_fails(&data("adult_2000.csv"), &["--spec", &spec]);
    assert!(e.contains("`salary`") && e.contains("adult_2000"), "{e}");
}

#[test]
fn finished_output_is_refused_unless_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run_adult(&out, "500", &["--no-dp"]));
    let again = run_adult(&out, "500", &["--no-dp"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));
    assert!(
        out.join("_SUCCESS").exists(),
        "the finished run must be left intact"
    );
    ok(&run_adult(&out, "500", &["--no-dp", "--overwrite"]));
}

#[test]
fn small_table_under_dp_names_the_column_and_the_threshold() {
    // 2,000 rows at epsilon 1 without declared domains: categories cannot be released.
    let e = run_fails(&data("adult_2000.csv"), &["--epsilon", "1"]);
    assert!(
        e.contains("a value needs about") && e.contains("declare its domain"),
        "{e}"
    );
}

#[test]
fn threads_option_is_honoured_and_validated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run_adult(&out, "300", &["--no-dp", "--threads", "1"]));
    let o = chimera(&["--threads", "0", "inspect", "x"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--threads must be at least 1"));
}
