//! TLS between `chimera coordinator` and `chimera worker` (a CA and a server certificate made
//! in the test), and the `/healthz` and `/readyz` probes of both processes, with real processes
//! on loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::data;
use crate::procs::{BIN, Proc, files, free_port, wait_for};

/// PEM files: a CA, a server certificate it signed for `localhost` and 127.0.0.1 with its key,
/// and an unrelated CA.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    other_ca: PathBuf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn pki(dir: &Path) -> Pki {
    let (ca_pem, issuer) = ca("chimera test CA");
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (other_pem, _) = ca("some other CA");
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&pki.ca, ca_pem).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::write(&pki.other_ca, other_pem).unwrap();
    pki
}

struct Setup {
    dir: tempfile::TempDir,
    token: PathBuf,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        Setup {
            dir,
            token,
            port: free_port(),
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// A coordinator fitting the Adult fixture without DP, serving on 127.0.0.1.
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
        ])
        .args(extra);
        Proc::spawn(&mut c)
    }

    fn worker(&self, coordinator: &str, extra: &[&str]) -> Proc {
        let mut c = Command::new(BIN);
        c.args([
            "worker",
            "--coordinator",
            coordinator,
            "--token-file",
            self.token.to_str().unwrap(),
            "--threads",
            "1",
        ])
        .args(extra);
        Proc::spawn(&mut c)
    }
}

#[test]
fn a_tls_coordinator_serves_workers_that_trust_its_ca() {
    let s = Setup::new();
    let pki = pki(s.dir.path());
    let mut coord = s.coordinator(
        "20000",
        "10000",
        &[
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
            // long enough for a worker that connects late to be told the job is done
            "--linger",
            "10",
        ],
    );
    let mut worker = s.worker(
        &format!("https://localhost:{}", s.port),
        &[
            "--tls-ca",
            pki.ca.to_str().unwrap(),
            "--connect-timeout",
            "60",
        ],
    );
    // By address, naming the certificate's domain; a CA asks for TLS even on an http:// URL.
    let mut by_address = s.worker(
        &format!("http://127.0.0.1:{}", s.port),
        &[
            "--tls-ca",
            pki.ca.to_str().unwrap(),
            "--tls-domain",
            "localhost",
            "--connect-timeout",
            "60",
        ],
    );
    for w in [&mut worker, &mut by_address] {
        let status = w.wait(240);
        assert!(status.success(), "worker failed: {}", w.log());
        assert!(w.log().contains("registered"), "{}", w.log());
    }
    let status = coord.wait(60);
    let log = coord.log();
    assert!(status.success(), "coordinator failed: {log}");
    assert!(log.contains("tls=true"), "{log}");
    assert_eq!(log.matches("worker registered").count(), 2, "{log}");
    assert!(s.out().join("_SUCCESS").exists());
    let parts: Vec<String> = files(&s.out())
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .collect();
    assert_eq!(
        parts,
        vec![
            "adult_2000/part-00000.parquet",
            "adult_2000/part-00001.parquet"
        ]
    );
}

#[test]
fn a_worker_that_does_not_trust_the_certificate_gets_nothing() {
    let s = Setup::new();
    let pki = pki(s.dir.path());
    let mut coord = s.coordinator(
        "20000",
        "10000",
        &[
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
            "--linger",
            "1",
        ],
    );
    wait_for("the coordinator to serve", 120, || {
        coord.log().contains("coordinator serving")
    });
    let url = format!("https://localhost:{}", s.port);
    let other_ca = pki.other_ca.to_str().unwrap();
    // The system roots only, then a CA that did not sign the certificate: the handshake fails
    // (a host without system roots refuses to start TLS at all).
    for extra in [&[][..], &["--tls-ca", other_ca][..]] {
        let mut args = vec!["--connect-timeout", "2"];
        args.extend_from_slice(extra);
        let mut w = s.worker(&url, &args);
        let status = w.wait(60);
        let err = w.log();
        assert!(!status.success(), "worker {extra:?} succeeded: {err}");
        assert!(
            err.contains("cannot reach the coordinator") && err.contains("certificate")
                || err.contains("no native certs"),
            "worker {extra:?}: {err}"
        );
    }
    // Plain HTTP to a TLS port gets nothing either.
    let mut w = s.worker(
        &format!("http://127.0.0.1:{}", s.port),
        &["--connect-timeout", "2"],
    );
    let status = w.wait(60);
    assert!(!status.success(), "plain worker succeeded: {}", w.log());
    // Neither got as far as registering, and nothing was written for them.
    assert!(coord.running(), "{}", coord.log());
    let log = coord.log();
    assert!(!log.contains("worker registered"), "{log}");
    let written: Vec<String> = files(&s.out())
        .into_iter()
        .filter(|f| f.ends_with(".parquet") || f.starts_with("_attempts") || f == "_SUCCESS")
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// `GET path` over plain HTTP/1.1: the status code and the body, or `None` when nothing
/// listens there yet.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut status_line = head.lines().next()?.split_whitespace();
    assert_eq!(status_line.next(), Some("HTTP/1.1"), "{response}");
    let code = status_line.next()?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Polls `path` until it answers `code`.
fn wait_for_status(port: u16, path: &str, code: u16, secs: u64) {
    let mut last = None;
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        last = get(port, path).or(last);
        if last.as_ref().is_some_and(|(c, _)| *c == code) {
            return;
        }
        assert!(
            Instant::now() < until,
            "GET {path} on port {port}: expected {code}, last answer {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_probes(port: u16, who: &str) {
    assert_eq!(
        get(port, "/healthz"),
        Some((200, "ok\n".to_owned())),
        "{who} /healthz"
    );
    assert_eq!(
        get(port, "/readyz"),
        Some((200, "ready\n".to_owned())),
        "{who} /readyz"
    );
    for path in ["/nope", "/", "/healthz/extra"] {
        assert_eq!(get(port, path).map(|(c, _)| c), Some(404), "{who} {path}");
    }
}

#[test]
fn health_probes_answer_on_both_processes() {
    let s = Setup::new();
    let (coord_health, worker_health) = (free_port(), free_port());
    let mut coord = s.coordinator(
        "600000",
        "50000",
        &[
            "--health-listen",
            &format!("127.0.0.1:{coord_health}"),
            "--linger",
            "3",
        ],
    );
    // The coordinator answers once its job is planned and served; no worker is there yet, so
    // the job is running.
    wait_for_status(coord_health, "/readyz", 200, 120);
    assert!(coord.running(), "{}", coord.log());
    assert_probes(coord_health, "coordinator");

    let mut worker = s.worker(
        &format!("http://127.0.0.1:{}", s.port),
        &[
            "--health-listen",
            &format!("127.0.0.1:{worker_health}"),
            "--connect-timeout",
            "60",
        ],
    );
    wait_for_status(worker_health, "/healthz", 200, 60);
    wait_for_status(worker_health, "/readyz", 200, 60);
    let done = s.out().join("_SUCCESS");
    assert!(
        !done.exists(),
        "the job finished before the probes were checked"
    );
    assert_probes(worker_health, "worker");
    // The coordinator still answers while the worker samples.
    assert_probes(coord_health, "coordinator");
    assert!(
        !done.exists(),
        "the job finished before the probes were checked"
    );

    let status = worker.wait(240);
    assert!(status.success(), "worker failed: {}", worker.log());
    let status = coord.wait(60);
    assert!(status.success(), "coordinator failed: {}", coord.log());
    assert!(done.exists());
}

#[test]
fn the_coordinator_is_alive_but_not_ready_while_it_fits() {
    let s = Setup::new();
    // An S3 endpoint that takes connections and never answers: reading the input hangs, as a
    // long fit would.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", hole.local_addr().unwrap().port());
    let health = free_port();
    let mut c = Command::new(BIN);
    c.args([
        "coordinator",
        "--input",
        "s3://bucket/adult_2000.csv",
        "--no-dp",
        "--rows",
        "1000",
        "--output",
        s.out().to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{}", s.port),
        "--token-file",
        s.token.to_str().unwrap(),
        "--health-listen",
        &format!("127.0.0.1:{health}"),
    ]);
    for option in [
        format!("aws_endpoint={endpoint}"),
        "aws_allow_http=true".to_owned(),
        "aws_region=us-east-1".to_owned(),
        "aws_access_key_id=test".to_owned(),
        "aws_secret_access_key=test".to_owned(),
    ] {
        c.args(["--storage-option", &option]);
    }
    let mut coord = Proc::spawn(&mut c);
    // Liveness answers at once, before the fit, so a probe does not restart a long fit.
    wait_for_status(health, "/healthz", 200, 60);
    assert_eq!(
        get(health, "/readyz"),
        Some((503, "not ready\n".to_owned()))
    );
    assert_eq!(get(health, "/nope").map(|(c, _)| c), Some(404));
    assert!(coord.running(), "{}", coord.log());
    assert!(
        !coord.log().contains("coordinator serving"),
        "{}",
        coord.log()
    );
    drop(hole);
}
