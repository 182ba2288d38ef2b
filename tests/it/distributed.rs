//! The distributed job with real processes on loopback: a coordinator, worker processes killed,
//! stopped and restarted, and the output compared with a single-process run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::procs::{BIN, Proc, files, free_port, wait_for};
use crate::{chimera, data, ok, read_parts, stderr};

struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    token: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        Cluster {
            port: free_port(),
            dir,
            token,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// A coordinator fitting the 2,000-row Adult fixture without DP (deterministic model).
    /// `extra` must hold `--linger SECONDS`.
    fn coordinator(&self, rows: &str, shard_rows: &str, extra: &[&str]) -> Proc {
        let mut c = Command::new(BIN);
        c.args([
            "coordinator",
            "--input",
            &data("adult_2000.csv"),
            "--no-dp",
            "--seed",
            "5",
            "--rows",
            rows,
            "--shard-rows",
            shard_rows,
            "--output",
            self.out().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--token-file",
            self.token.to_str().unwrap(),
            "--lease-timeout",
            "1.5",
        ])
        .args(extra);
        Proc::spawn(&mut c)
    }

    fn worker(&self, token: &Path, extra: &[&str]) -> Proc {
        self.worker_logging(token, extra, "info")
    }

    /// A worker whose log has `CHIMERA_LOG`'s filter.
    fn worker_logging(&self, token: &Path, extra: &[&str], log: &str) -> Proc {
        let mut c = Command::new(BIN);
        c.env("CHIMERA_LOG", log);
        c.args([
            "worker",
            "--coordinator",
            &format!("http://127.0.0.1:{}", self.port),
            "--token-file",
            token.to_str().unwrap(),
            "--connect-timeout",
            "20",
            "--threads",
            "1",
        ])
        .args(extra);
        Proc::spawn(&mut c)
    }

    /// Starts a worker that registers with `coord`, takes a shard and is killed before it can
    /// finish it.
    fn kill_a_worker_inside_its_shard(&self, coord: &Proc) {
        // Killed once it says it is sampling a shard (a fixed wait after it registered missed
        // the shard on a loaded machine).
        let victim = self.worker_logging(&self.token, &[], "info,chimera_worker=debug");
        wait_for("the first worker", 60, || {
            coord.log().contains("worker registered")
        });
        wait_for("the first worker's shard", 60, || {
            victim.log().contains("sampling")
        });
        victim.signal("-KILL");
    }

    /// The same job in one process: `chimera run` with the same input, seed and shard size.
    fn embedded(&self, rows: &str, shard_rows: &str) -> PathBuf {
        let out = self.dir.path().join("embedded");
        ok(&chimera(&[
            "run",
            "--input",
            &data("adult_2000.csv"),
            "--no-dp",
            "--seed",
            "5",
            "--rows",
            rows,
            "--shard-rows",
            shard_rows,
            "--output",
            out.to_str().unwrap(),
        ]));
        out
    }
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("_manifest.json")).unwrap()).unwrap()
}

/// Committed (shard -> attempt) pairs of the manifest.
fn committed(out: &Path) -> BTreeMap<u64, u64> {
    committed_in(out, "adult_2000")
}

/// Committed (shard -> attempt) pairs of one table of the manifest.
fn committed_in(out: &Path, table: &str) -> BTreeMap<u64, u64> {
    let Ok(text) = std::fs::read_to_string(out.join("_manifest.json")) else {
        return BTreeMap::new();
    };
    let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else {
        return BTreeMap::new();
    };
    m["tables"][table]["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                .map(|p| (p["shard"].as_u64().unwrap(), p["attempt"].as_u64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// The distributed output equals the single-process one, part by part and row by row, and has
/// no attempt files left.
fn assert_same_output(distributed: &Path, embedded: &Path, shards: usize) {
    assert!(distributed.join("_SUCCESS").exists());
    let parts: Vec<String> = files(distributed)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    assert_eq!(parts.len(), shards, "{parts:?}");
    assert!(
        parts.iter().all(|p| p.starts_with("adult_2000/part-")),
        "attempt files left: {parts:?}"
    );
    assert_eq!(
        parts,
        files(embedded)
            .into_iter()
            .filter(|f| f.ends_with(".parquet"))
            .collect::<Vec<_>>()
    );
    let a = read_parts(&distributed.join("adult_2000"));
    let b = read_parts(&embedded.join("adult_2000"));
    assert_eq!(a, b, "rows differ from the single-process run");
    let m = manifest(distributed);
    assert_eq!(m["complete"], true);
    let listed: Vec<u64> = m["tables"]["adult_2000"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(
        listed,
        (0..shards as u64).collect::<Vec<_>>(),
        "each shard once"
    );
}

#[test]
fn three_workers_one_killed_mid_shard_give_the_single_process_output() {
    let c = Cluster::new();
    let mut coord = c.coordinator("400000", "100000", &["--linger", "3"]);
    c.kill_a_worker_inside_its_shard(&coord);
    let mut workers: Vec<Proc> = (0..3).map(|_| c.worker(&c.token, &[])).collect();
    for w in &mut workers {
        let status = w.wait(240);
        assert!(status.success(), "worker failed: {}", w.log());
    }
    let status = coord.wait(60);
    let log = coord.log();
    assert!(status.success(), "coordinator failed: {log}");
    let attempts = committed(&c.out());
    assert_eq!(attempts.len(), 4);
    assert!(
        attempts.values().any(|&a| a > 1) && log.contains("lease lapsed"),
        "the killed worker held no shard: {attempts:?}\n{log}"
    );
    let embedded = c.embedded("400000", "100000");
    assert_same_output(&c.out(), &embedded, 4);
}

#[test]
fn a_stopped_worker_loses_its_lease_and_its_late_report_is_ignored() {
    let c = Cluster::new();
    let mut coord = c.coordinator("300000", "100000", &["--linger", "8"]);
    let mut sleeper = c.worker_logging(&c.token, &[], "info,chimera_worker=debug");
    // Let it lease a shard, then freeze it (a hung process: no heartbeats).
    wait_for("the first worker", 60, || {
        coord.log().contains("worker registered")
    });
    wait_for("the first worker's shard", 60, || {
        sleeper.log().contains("sampling")
    });
    sleeper.signal("-STOP");
    let mut other = c.worker(&c.token, &[]);
    assert!(other.wait(240).success(), "{}", other.log());
    wait_for("_SUCCESS", 60, || c.out().join("_SUCCESS").exists());
    // Wake the hung worker while the coordinator still answers: its attempt is stale.
    sleeper.signal("-CONT");
    let status = sleeper.wait(60);
    assert!(status.success(), "{}", sleeper.log());
    let status = coord.wait(60);
    let log = coord.log();
    assert!(status.success(), "{log}");
    // the frozen worker's lease lapsed and its shard went to the other worker
    assert!(log.contains("lease lapsed"), "{log}");
    assert!(committed(&c.out()).values().any(|&a| a > 1), "{log}");
    let embedded = c.embedded("300000", "100000");
    assert_same_output(&c.out(), &embedded, 3);
}

#[test]
fn a_restarted_coordinator_resumes_and_redoes_only_unfinished_shards() {
    let c = Cluster::new();
    let mut coord = c.coordinator("300000", "25000", &["--linger", "3"]);
    let mut worker = c.worker(&c.token, &[]);
    wait_for("two committed shards", 120, || {
        committed(&c.out()).len() >= 2
    });
    coord.signal("-KILL");
    let _ = coord.wait(10);
    drop(coord);
    let before = committed(&c.out());
    assert!(!c.out().join("_SUCCESS").exists());
    // Same arguments again: the stored model and the committed shards are reused.
    let mut coord = c.coordinator("300000", "25000", &["--linger", "3"]);
    assert!(worker.wait(240).success(), "{}", worker.log());
    let status = coord.wait(60);
    let log = coord.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("resuming"), "{log}");
    let after = committed(&c.out());
    for (shard, attempt) in &before {
        assert_eq!(after.get(shard), Some(attempt), "shard {shard} was redone");
    }
    let embedded = c.embedded("300000", "25000");
    assert_same_output(&c.out(), &embedded, 12);
}

#[test]
fn a_worker_with_the_wrong_token_gets_nothing() {
    let c = Cluster::new();
    let _coord = c.coordinator("1000", "1000", &["--linger", "1"]);
    let wrong = c.dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let mut w = c.worker(&wrong, &[]);
    let status = w.wait(60);
    let err = w.log();
    assert!(!status.success());
    assert!(err.contains("token"), "{err}");
    assert!(!c.out().join("adult_2000").exists() || files(&c.out().join("adult_2000")).is_empty());
}

#[test]
fn a_worker_started_before_the_coordinator_waits_for_it() {
    let c = Cluster::new();
    let mut w = c.worker(&c.token, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    let mut coord = c.coordinator("20000", "10000", &["--linger", "3"]);
    assert!(w.wait(120).success(), "{}", w.log());
    assert!(coord.wait(60).success(), "{}", coord.log());
    assert_eq!(committed(&c.out()).len(), 2);
}

#[test]
fn a_worker_gives_up_on_a_coordinator_that_never_comes() {
    let c = Cluster::new();
    let o = std::process::Command::new(BIN)
        .args([
            "worker",
            "--coordinator",
            &format!("http://127.0.0.1:{}", c.port),
            "--token-file",
            c.token.to_str().unwrap(),
            "--connect-timeout",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the coordinator"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn workers_exit_cleanly_when_the_coordinator_has_finished_and_gone() {
    let c = Cluster::new();
    // No linger: the coordinator exits as soon as `_SUCCESS` is written, so workers waiting
    // for a shard find it gone and must learn from the output that the job is done.
    let mut coord = c.coordinator("400000", "10000", &["--linger", "0"]);
    // Workers start once it serves: one that found the port closed during the fit would sleep
    // in its connect backoff (up to seconds) and could miss the whole job, never learning where
    // the output is.
    wait_for("the coordinator to serve", 120, || {
        coord.log().contains("coordinator serving")
    });
    let mut workers: Vec<Proc> = (0..4).map(|_| c.worker(&c.token, &[])).collect();
    assert!(coord.wait(120).success(), "{}", coord.log());
    for w in &mut workers {
        let status = w.wait(60);
        assert!(status.success(), "{}", w.log());
    }
    assert_eq!(committed(&c.out()).len(), 40);
}

#[test]
fn a_worker_that_cannot_upload_fails_the_job_with_the_reason() {
    let c = Cluster::new();
    let mut coord = c.coordinator("20000", "10000", &["--linger", "0"]);
    wait_for("the coordinator to serve", 120, || {
        coord.log().contains("coordinator serving")
    });
    // A file where the table's attempt folder goes: every upload fails, and not for a
    // reason a retry can mend.
    std::fs::create_dir_all(c.out().join("_attempts")).unwrap();
    std::fs::write(c.out().join("_attempts").join("adult_2000"), "in the way").unwrap();
    let mut worker = c.worker(&c.token, &[]);
    assert!(!coord.wait(120).success(), "{}", coord.log());
    assert!(!worker.wait(60).success(), "{}", worker.log());
    let log = coord.log();
    // Where it failed and why, as the store said it.
    assert!(log.contains("the job failed"), "{log}");
    assert!(log.contains("part-00000-a1.parquet"), "{log}");
    assert!(log.to_lowercase().contains("not a directory"), "{log}");
    assert!(!c.out().join("_SUCCESS").exists());
}

#[test]
fn a_worker_asked_to_stop_finishes_its_shard_and_exits_cleanly() {
    let c = Cluster::new();
    let mut coord = c.coordinator("400000", "100000", &["--linger", "3"]);
    let mut leaving = c.worker(&c.token, &[]);
    wait_for("the first worker", 60, || {
        coord.log().contains("worker registered")
    });
    std::thread::sleep(Duration::from_millis(100));
    leaving.signal("-TERM");
    let status = leaving.wait(120);
    let log = leaving.log();
    assert!(status.success(), "{log}");
    assert!(log.contains("stop requested"), "{log}");
    // The shard in hand was finished and committed, not abandoned.
    wait_for("the stopped worker's shard", 30, || {
        !committed(&c.out()).is_empty()
    });
    assert!(committed(&c.out()).values().all(|&a| a == 1));
    assert!(!log.contains("abandoning"), "{log}");
    let mut rest = c.worker(&c.token, &[]);
    assert!(rest.wait(120).success(), "{}", rest.log());
    assert!(coord.wait(60).success(), "{}", coord.log());
    assert_eq!(committed(&c.out()).len(), 4);
    assert!(!coord.log().contains("lease lapsed"));
}

/// The MIMIC-IV demo spec of `examples/`.
fn mimic_spec() -> String {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mimic/spec.yaml");
    spec.to_string_lossy().into_owned()
}

/// The arguments of a relational job on `spec` without DP: `entities` in shards of `shard`.
fn mimic_job<'a>(spec: &'a str, seed: &'a str, entities: &'a str, shard: &'a str) -> Vec<&'a str> {
    vec![
        "--spec",
        spec,
        "--no-dp",
        "--seed",
        seed,
        "--rows",
        entities,
        "--shard-rows",
        shard,
    ]
}

impl Cluster {
    /// A coordinator serving the relational `job` (with `--spec`; `--rows` counts entities).
    fn relational_coordinator(&self, job: &[&str], linger: &str) -> Proc {
        self.relational_coordinator_with(job, linger, &[])
    }

    /// [`Self::relational_coordinator`] with further coordinator options.
    fn relational_coordinator_with(&self, job: &[&str], linger: &str, extra: &[&str]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.arg("coordinator")
            .args(job)
            .args(extra)
            .args(["--output", self.out().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args([
                "--token-file",
                self.token.to_str().unwrap(),
                "--linger",
                linger,
            ]);
        Proc::spawn(&mut cmd)
    }

    /// The same relational job in one process (`chimera run --spec ... --entities N`), checked
    /// part by part against the distributed output: every part of `tables` has the same bytes.
    fn assert_same_as_embedded(&self, job: &[&str], tables: &[&str]) -> PathBuf {
        let embedded = self.dir.path().join("embedded");
        let mut args = vec!["run"];
        args.extend(
            job.iter()
                .map(|a| if *a == "--rows" { "--entities" } else { *a }),
        );
        args.extend(["--output", embedded.to_str().unwrap()]);
        ok(&chimera(&args));
        for table in tables {
            let parts = files(&self.out().join(table));
            assert_eq!(parts, files(&embedded.join(table)), "{table}");
            for name in parts {
                let read = |root: &Path| std::fs::read(root.join(table).join(&name)).unwrap();
                assert!(
                    read(&self.out()) == read(&embedded),
                    "{table}/{name} differs from the one-process run"
                );
            }
        }
        embedded
    }
}

#[test]
fn relational_entities_sampled_by_worker_processes_match_one_process() {
    let c = Cluster::new();
    let spec = mimic_spec();
    // Every shard writes a part per table.
    let job = mimic_job(&spec, "5", "1200", "300");
    let mut coord = c.relational_coordinator(&job, "3");
    let mut workers = [c.worker(&c.token, &[]), c.worker(&c.token, &[])];
    for w in &mut workers {
        assert!(w.wait(240).success(), "{}", w.log());
    }
    assert!(coord.wait(60).success(), "{}", coord.log());
    let tables = [
        "patients",
        "admissions",
        "transfers",
        "diagnoses_icd",
        "d_icd_diagnoses",
    ];
    let embedded = c.assert_same_as_embedded(&job, &tables);
    let (m, e) = (manifest(&c.out()), manifest(&embedded));
    assert_eq!(m["complete"], true);
    for table in tables {
        assert_eq!(
            m["tables"][table]["rows"], e["tables"][table]["rows"],
            "{table}"
        );
        let shards = if table == "d_icd_diagnoses" { 1 } else { 4 };
        assert_eq!(files(&c.out().join(table)).len(), shards, "{table}");
    }
    assert_eq!(m["privacy"], e["privacy"]);
    assert!(!c.out().join("_attempts").exists() || files(&c.out().join("_attempts")).is_empty());
}

#[test]
fn dp_relational_entities_sampled_by_worker_processes_match_one_process() {
    // Under DP (a seeded noise draw, so that the one-process run fits the same model) the
    // coordinator's fit and the workers' sampling give the same bytes as one process: the
    // public domains, dictionary keys and copied columns travel in the model.
    let c = Cluster::new();
    let spec = mimic_spec();
    let mut job = mimic_job(&spec, "6", "600", "300");
    let dp = job.iter().position(|a| *a == "--no-dp").unwrap();
    job.splice(dp..=dp, ["--epsilon", "2", "--noise-seed", "9"]);
    let mut coord = c.relational_coordinator(&job, "3");
    let mut workers = [c.worker(&c.token, &[])];
    for w in &mut workers {
        assert!(w.wait(240).success(), "{}", w.log());
    }
    assert!(coord.wait(60).success(), "{}", coord.log());
    let tables = ["patients", "admissions", "transfers", "diagnoses_icd"];
    let embedded = c.assert_same_as_embedded(&job, &tables);
    let (m, e) = (manifest(&c.out()), manifest(&embedded));
    assert_eq!(m["complete"], true);
    assert_eq!(m["privacy"]["mode"], "dp");
    assert_eq!(m["privacy"], e["privacy"]);
}

#[test]
fn a_relational_worker_killed_mid_shard_gives_the_single_process_output() {
    let c = Cluster::new();
    let spec = mimic_spec();
    // Shards of 10,000 entities (about 600,000 rows in all): long enough to be killed inside.
    let job = mimic_job(&spec, "7", "40000", "10000");
    let mut coord = c.relational_coordinator_with(&job, "3", &["--lease-timeout", "1.5"]);
    c.kill_a_worker_inside_its_shard(&coord);
    let mut workers: Vec<Proc> = (0..2).map(|_| c.worker(&c.token, &[])).collect();
    for w in &mut workers {
        assert!(w.wait(240).success(), "worker failed: {}", w.log());
    }
    assert!(coord.wait(60).success(), "{}", coord.log());
    let log = coord.log();
    // Every table has one part per shard, and a shard was taken again after the kill: all of
    // its parts come from the same later attempt.
    let tables = ["patients", "admissions", "transfers", "diagnoses_icd"];
    let attempts: Vec<BTreeMap<u64, u64>> =
        tables.iter().map(|t| committed_in(&c.out(), t)).collect();
    for (t, a) in tables.iter().zip(&attempts) {
        assert_eq!(a.len(), 4, "{t}: {a:?}");
        assert_eq!(
            a, &attempts[0],
            "{t} committed another attempt than patients"
        );
    }
    assert!(
        attempts[0].values().any(|&a| a > 1) && log.contains("lease lapsed"),
        "the killed worker held no shard: {:?}\n{log}",
        attempts[0]
    );
    let mut all = tables.to_vec();
    all.push("d_icd_diagnoses");
    c.assert_same_as_embedded(&job, &all);
    let leftovers: Vec<String> = files(&c.out())
        .into_iter()
        .filter(|f| f.ends_with(".parquet") && !f.contains("/part-"))
        .collect();
    assert!(leftovers.is_empty(), "attempt files left: {leftovers:?}");
}

#[test]
fn relational_entities_written_by_an_llm_on_a_worker_match_one_process() {
    let c = Cluster::new();
    let llm = crate::llm::tiny_model(c.dir.path());
    let llm = llm.to_str().unwrap();
    let spec = mimic_spec();
    let mut job = mimic_job(&spec, "4", "6", "3");
    job.extend(["--llm", llm]);
    let mut coord = c.relational_coordinator(&job, "3");
    // The worker loads the LLM the model names (its own copy of the file).
    let mut worker = c.worker(&c.token, &["--llm", llm]);
    assert!(worker.wait(600).success(), "{}", worker.log());
    assert!(coord.wait(60).success(), "{}", coord.log());
    let model = std::fs::read_to_string(c.out().join("_model.json")).unwrap();
    assert!(model.contains(r#""exemplars": "synthetic""#), "{model}");
    c.assert_same_as_embedded(
        &job,
        &["patients", "admissions", "transfers", "diagnoses_icd"],
    );
    // Without the LLM file a worker cannot sample such a model, and says so.
    let c2 = Cluster::new();
    let mut coord = c2.relational_coordinator(&job, "1");
    let mut bare = c2.worker(&c2.token, &[]);
    assert!(!bare.wait(120).success());
    assert!(
        bare.log().contains("child rows are written by an LLM") && bare.log().contains("--llm"),
        "{}",
        bare.log()
    );
    coord.signal("-TERM");
    let _ = coord.wait(30);
}

#[test]
fn a_relational_coordinator_refuses_knn_real_exemplars() {
    let c = Cluster::new();
    let spec = mimic_spec();
    let o = chimera(&[
        "coordinator",
        "--spec",
        &spec,
        "--no-dp",
        "--rows",
        "10",
        "--llm",
        "model.gguf",
        "--exemplars",
        "knn-real",
        "--output",
        c.out().to_str().unwrap(),
        "--token-file",
        c.token.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("embedded only") && e.contains("knn-real"), "{e}");
    assert!(!c.out().exists());
}
