//! The distributed job writing to an S3-compatible store (a real `moto_server` on loopback), a
//! store that cannot be reached, and one that comes back while chimera still retries.
//!
//! Skipped with a note when `moto_server` is not installed, unless `CHIMERA_REQUIRE_S3=1`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::procs::{files, free_port};
use crate::s3::{curl_put, moto_or_skip};
use crate::{chimera, data, ok, stderr};

const BIN: &str = env!("CARGO_BIN_EXE_chimera");
/// Never printed by chimera: the tests look for it in every message.
const SECRET: &str = "moto-secret-never-logged";

/// A chimera process killed on drop, its stderr going to a file.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[String], log: PathBuf) -> Proc {
        let child = Command::new(BIN)
            .args(args)
            .env("CHIMERA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the exit status, failing the test after `secs`.
    fn wait(&mut self, secs: u64) -> ExitStatus {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "process did not exit in {secs} s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The store options for an S3 endpoint, as `(key, value)`.
fn s3_options(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", endpoint.to_owned()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", SECRET.into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
}

/// `--storage-option KEY=VALUE` for each of the options.
fn storage_args(options: &[(&str, String)]) -> Vec<String> {
    options
        .iter()
        .flat_map(|(k, v)| ["--storage-option".to_owned(), format!("{k}={v}")])
        .collect()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The bucket, read directly with object_store (not through chimera).
struct Bucket {
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
}

impl Bucket {
    fn new(endpoint: &str, bucket: &str) -> Bucket {
        let store = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_access_key_id("test")
            .with_secret_access_key(SECRET)
            .with_region("us-east-1")
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Bucket { store, runtime }
    }

    /// Every key under `prefix`, sorted.
    fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = StorePath::from(prefix);
        let mut keys: Vec<String> = self
            .runtime
            .block_on(
                self.store
                    .list(Some(&prefix))
                    .map_ok(|meta| meta.location.to_string())
                    .try_collect(),
            )
            .unwrap();
        keys.sort();
        keys
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.runtime
            .block_on(async { self.store.get(&StorePath::from(key)).await?.bytes().await })
            .unwrap()
            .to_vec()
    }
}

#[test]
fn a_distributed_job_writes_to_s3_and_equals_a_local_run() {
    let Some(moto) = moto_or_skip() else {
        return;
    };
    assert!(
        curl_put(&format!("{}/bucket", moto.endpoint), None),
        "create bucket"
    );
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3-job-token\n").unwrap();
    let port = free_port();
    let options = storage_args(&s3_options(&moto.endpoint));
    let job = [
        "--no-dp",
        "--seed",
        "5",
        "--rows",
        "200000",
        "--shard-rows",
        "50000",
    ];

    let mut args = strings(&["coordinator", "--input", &data("adult_2000.csv")]);
    args.extend(strings(&job));
    args.extend(strings(&[
        "--output",
        "s3://bucket/run-1/",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--token-file",
        token.to_str().unwrap(),
        "--linger",
        "2",
    ]));
    args.extend(options.iter().cloned());
    let mut coordinator = Proc::spawn(&args, dir.path().join("coordinator.log"));

    let mut workers: Vec<Proc> = (0..2)
        .map(|i| {
            let mut args = strings(&[
                "worker",
                "--coordinator",
                &format!("http://127.0.0.1:{port}"),
                "--token-file",
                token.to_str().unwrap(),
                "--connect-timeout",
                "60",
                "--threads",
                "1",
                "--name",
                &format!("w{i}"),
            ]);
            args.extend(options.iter().cloned());
            Proc::spawn(&args, dir.path().join(format!("worker-{i}.log")))
        })
        .collect();
    for w in &mut workers {
        let status = w.wait(240);
        assert!(status.success(), "worker failed:\n{}", w.log());
    }
    let status = coordinator.wait(60);
    let log = coordinator.log();
    assert!(status.success(), "coordinator failed:\n{log}");
    for text in workers.iter().map(Proc::log).chain([log]) {
        assert!(!text.contains(SECRET), "a log holds the secret:\n{text}");
    }

    let bucket = Bucket::new(&moto.endpoint, "bucket");
    let keys = bucket.keys("run-1");
    assert!(keys.contains(&"run-1/_SUCCESS".to_owned()), "{keys:?}");
    assert!(
        keys.iter().all(|k| !k.starts_with("run-1/_attempts/")),
        "attempt uploads left: {keys:?}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&bucket.get("run-1/_manifest.json")).unwrap();
    assert_eq!(manifest["complete"], true, "{manifest}");
    let parts = manifest["tables"]["adult_2000"]["parts"]
        .as_array()
        .unwrap();
    let shards: Vec<u64> = parts.iter().map(|p| p["shard"].as_u64().unwrap()).collect();
    assert_eq!(shards, [0, 1, 2, 3], "each shard once: {manifest}");

    // The same job in one process on a local folder: the same parts, byte for byte.
    let local = dir.path().join("local");
    let mut args = strings(&["run", "--input", &data("adult_2000.csv")]);
    args.extend(strings(&job));
    args.extend(strings(&["--output", local.to_str().unwrap()]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&chimera(&args));
    let local_parts: Vec<String> = files(&local)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    let s3_parts: Vec<String> = keys
        .iter()
        .filter(|k| k.ends_with(".parquet"))
        .map(|k| k.trim_start_matches("run-1/").to_owned())
        .collect();
    assert_eq!(s3_parts.len(), 4, "{keys:?}");
    assert_eq!(s3_parts, local_parts);
    for part in &s3_parts {
        let remote = bucket.get(&format!("run-1/{part}"));
        let here = std::fs::read(local.join(part)).unwrap();
        assert!(remote == here, "{part} differs from the local run's");
    }
}

/// Runs `chimera run` in `cwd` to `output` with `options`, failing the test if it takes over
/// `secs`: the exit status, stderr, and how long it took.
fn run_with_deadline(
    cwd: &Path,
    output: &str,
    options: &[String],
    secs: u64,
) -> (ExitStatus, String, Duration) {
    let mut args = strings(&[
        "run",
        "--input",
        &data("adult_2000.csv"),
        "--no-dp",
        "--seed",
        "5",
        "--rows",
        "20000",
        "--shard-rows",
        "10000",
        "--output",
        output,
    ]);
    args.extend(options.iter().cloned());
    // stderr goes beside `cwd`, which must stay empty
    let log = cwd.with_extension("log");
    let started = Instant::now();
    let child = Command::new(BIN)
        .args(&args)
        .current_dir(cwd)
        .env("CHIMERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proc = Proc { child, log };
    let status = proc.wait(secs);
    (status, proc.log(), started.elapsed())
}

#[test]
fn an_unreachable_object_store_fails_clearly_and_in_bounded_time() {
    let Some(_moto) = moto_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    for (name, bound) in [
        // few retries: given up on after the second
        ("few", ["retry_timeout=3s", "max_retries=2"]),
        // many retries, but for 3 s only
        ("short", ["retry_timeout=3s", "max_retries=1000"]),
    ] {
        let cwd = dir.path().join(name);
        std::fs::create_dir(&cwd).unwrap();
        let mut options = storage_args(&s3_options(&endpoint));
        for b in bound {
            options.extend(["--storage-option".to_owned(), b.to_owned()]);
        }
        let (status, err, took) = run_with_deadline(&cwd, "s3://bucket/x/", &options, 60);
        assert!(!status.success(), "{name}: succeeded:\n{err}");
        assert!(
            took < Duration::from_secs(30),
            "{name}: took {took:?}:\n{err}"
        );
        assert!(err.contains("s3://bucket/x"), "{name}: {err}");
        assert!(!err.contains(SECRET), "{name}: the secret leaked: {err}");
        assert!(
            std::fs::read_dir(&cwd).unwrap().next().is_none(),
            "{name}: something was written locally: {:?}",
            files(&cwd)
        );
    }

    // A misspelt option is refused by name before anything is tried.
    let o = chimera(&[
        "run",
        "--input",
        &data("adult_2000.csv"),
        "--rows",
        "10",
        "--output",
        "s3://bucket/x/",
        "--storage-option",
        &format!("aws_endpoint={endpoint}"),
        "--storage-option",
        "retry_timout=3s",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("retry_timout"), "{}", stderr(&o));
}

/// Forwards loopback connections from `listener` to `target` until `stop` is set.
fn forward(listener: TcpListener, target: u16, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => break,
        };
        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
            continue;
        };
        let _ = client.set_nonblocking(false);
        for (mut from, mut to) in [
            (client.try_clone().unwrap(), server.try_clone().unwrap()),
            (server, client),
        ] {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    }
}

#[test]
fn a_store_that_comes_back_within_the_retry_window_is_fine() {
    let Some(moto) = moto_or_skip() else {
        return;
    };
    assert!(
        curl_put(&format!("{}/bucket", moto.endpoint), None),
        "create bucket"
    );
    let moto_port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    // chimera talks to a port that opens (forwarding to moto) 2 s after the run starts.
    let port = free_port();
    let stop = Arc::new(AtomicBool::new(false));
    let opener = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            forward(listener, moto_port, stop);
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let mut options = storage_args(&s3_options(&format!("http://127.0.0.1:{port}")));
    for b in ["retry_timeout=30s", "max_retries=100"] {
        options.extend(["--storage-option".to_owned(), b.to_owned()]);
    }
    let (status, err, took) = run_with_deadline(&cwd, "s3://bucket/back/", &options, 180);
    stop.store(true, Ordering::Relaxed);
    let _ = opener.join();
    assert!(status.success(), "failed after {took:?}:\n{err}");
    assert!(took > Duration::from_secs(2), "the store was never away");

    let bucket = Bucket::new(&moto.endpoint, "bucket");
    let keys = bucket.keys("back");
    assert!(keys.contains(&"back/_SUCCESS".to_owned()), "{keys:?}");
    let parts = keys.iter().filter(|k| k.ends_with(".parquet")).count();
    assert_eq!(parts, 2, "{keys:?}");
}
