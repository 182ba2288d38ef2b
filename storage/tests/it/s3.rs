//! The same scenarios on a real S3-compatible server (`moto_server` on loopback).
//!
//! Skipped with a note when `moto_server` is not installed, unless
//! `CHIMERA_REQUIRE_S3=1`, which makes a missing server a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chimera_storage::{Location, Output};
use object_store::ObjectStoreExt;

use crate::scenarios;

/// A `moto_server` on a free port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let moto = Moto { child, port };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(moto);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// `PUT /<bucket>`: creates the bucket; true on a 2xx answer.
fn create_bucket(port: u16, bucket: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut answer = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 2")
}

fn options(port: u16) -> Vec<(String, String)> {
    [
        ("aws_endpoint", format!("http://127.0.0.1:{port}")),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "testing".into()),
        ("aws_secret_access_key", "moto-secret-do-not-log".into()),
        ("aws_region", "us-east-1".into()),
        ("aws_virtual_hosted_style_request", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_against_moto() {
    let Some(moto) = start_moto() else {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_S3").is_none(),
            "CHIMERA_REQUIRE_S3 is set but moto_server did not start"
        );
        println!("skipped: moto_server is not installed");
        return;
    };
    assert!(create_bucket(moto.port, "bucket"), "create bucket");
    let options = options(moto.port);
    let output = |prefix: &str| {
        let location = Location::parse(&format!("s3://bucket/runs/{prefix}"), &options).unwrap();
        assert_eq!(location.display(), format!("s3://bucket/runs/{prefix}"));
        assert!(!format!("{location:?}").contains("moto-secret"));
        Output::new(location)
    };

    scenarios::round_trip(&output("round-trip")).await;
    scenarios::multipart(&output("multipart")).await;
    scenarios::discard_attempt(&output("discard")).await;
    scenarios::states(&output("states")).await;
    scenarios::clear_keeps_foreign_files(&output("clear")).await;
    scenarios::finish_refuses_missing_or_truncated_parts(&output("refuse")).await;
    scenarios::finish_removes_leftover_attempts(&output("leftovers")).await;
    scenarios::commit_refuses_bad_attempts(&output("commit")).await;

    // S3 tags an object assembled from pieces `<md5 of md5s>-<pieces>`.
    let out = output("etag");
    let (schema, batches) = crate::incompressible_batches();
    let attempt = out
        .write_attempt("blobs", 0, 1, &schema, &batches)
        .await
        .unwrap();
    let loc = out.location();
    let meta = loc
        .store()
        .head(&loc.object_path(&attempt.path))
        .await
        .unwrap();
    assert_eq!(meta.size, attempt.bytes);
    let pieces = attempt
        .bytes
        .div_ceil(chimera_storage::MULTIPART_CHUNK_BYTES as u64);
    assert!(
        meta.e_tag
            .as_deref()
            .is_some_and(|t| t.trim_matches('"').ends_with(&format!("-{pieces}"))),
        "{:?}",
        meta.e_tag
    );

    // Errors name the object by its URL and never carry the credentials.
    let missing = Output::new(Location::parse("s3://no-such-bucket/out", &options).unwrap());
    let err = missing.write_model(b"{}").await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("s3://no-such-bucket/out/_model.json"),
        "{text}"
    );
    assert!(!text.contains("moto-secret"), "{text}");
}
