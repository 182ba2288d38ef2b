//! Reading the input from an S3-compatible object store (a real `moto_server` on loopback).

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{chimera, data, ok, read_parts};

/// A `moto_server` on a free port, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A started `moto_server`, or `None` after printing a note that the test is skipped; a missing
/// server fails the test when `CHIMERA_REQUIRE_S3` is set.
pub fn moto_or_skip() -> Option<Moto> {
    let moto = start_moto();
    if moto.is_none() {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_S3").is_none(),
            "CHIMERA_REQUIRE_S3 is set but moto_server did not start"
        );
        println!("skipped: moto_server is not installed");
    }
    moto
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(moto);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// `PUT url` (a bucket, or an object with the bytes of `file`); true on a 2xx answer.
pub fn curl_put(url: &str, file: Option<&str>) -> bool {
    let mut c = Command::new("curl");
    c.args(["-sf", "-X", "PUT", url]);
    if let Some(f) = file {
        // an explicit binary type: the server would otherwise parse the body as a form
        c.args([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{f}"),
        ]);
    }
    c.status().is_ok_and(|s| s.success())
}

#[test]
fn run_reads_its_input_from_s3() {
    let Some(moto) = moto_or_skip() else {
        return;
    };
    assert!(
        curl_put(&format!("{}/bucket", moto.endpoint), None),
        "create bucket"
    );
    assert!(
        curl_put(
            &format!("{}/bucket/in/adult.csv", moto.endpoint),
            Some(&data("adult_2000.csv"))
        ),
        "upload"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let endpoint = format!("aws_endpoint={}", moto.endpoint);
    let o = Command::new(env!("CARGO_BIN_EXE_chimera"))
        .args([
            "run",
            "--input",
            "s3://bucket/in/adult.csv",
            "--rows",
            "1000",
            "--output",
            out.to_str().unwrap(),
            "--no-dp",
            "--storage-option",
            &endpoint,
            "--storage-option",
            "aws_allow_http=true",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("CHIMERA_LOG", "warn")
        .output()
        .unwrap();
    ok(&o);
    let rows: usize = read_parts(&out.join("adult"))
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 1000);

    // A missing object is a clear error naming it.
    let missing = chimera(&[
        "run",
        "--input",
        "s3://bucket/in/nope.csv",
        "--rows",
        "10",
        "--output",
        dir.path().join("o2").to_str().unwrap(),
        "--storage-option",
        &endpoint,
        "--storage-option",
        "aws_allow_http=true",
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.csv"));
}
