//! The coordinator's gRPC service at the RPC level: a real job (a `--no-dp` fit of the Adult
//! fixture) on a temporary folder, served on loopback, driven call by call with the generated
//! client the way a worker would — and the ways a worker can get it wrong.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chimera_coordinator::job::{Job, JobError, JobSpec, Start, Status as JobStatus};
use chimera_coordinator::read::{ReadOptions, open_table};
use chimera_coordinator::service::{MAX_MESSAGE_BYTES, ServeOptions, bind};
use chimera_coordinator::{NoProgress, fit_table};
use chimera_core::fit::FitSettings;
use chimera_core::model::Model;
use chimera_core::plan::ShardPlan;
use chimera_core::privacy::PrivacyMode;
use chimera_core::spec::Spec;
use chimera_proto::v1::coordinator_client::CoordinatorClient;
use chimera_proto::v1::{
    CompleteRequest, CompleteResponse, FailRequest, HeartbeatRequest, LeaseRequest, Part,
    RegisterRequest, RegisterResponse, Shard, lease_response::Outcome,
};
use chimera_proto::{AUTHORIZATION, PROTOCOL_VERSION};
use chimera_storage::{
    Location, Output, OutputState, SUCCESS_FILE, attempt_part_path, committed_part_path,
};
use chimera_worker::sample::ShardSampler;
use tokio::sync::{OnceCell, oneshot};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "s3cret-token";
const TABLE: &str = "adult_2000";

/// The fitted model, shared by every test (the fit is deterministic without DP).
async fn model() -> Model {
    static MODEL: OnceCell<Model> = OnceCell::const_new();
    MODEL
        .get_or_init(|| async {
            let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/adult_2000.csv");
            let source = open_table(input.to_str().unwrap(), &ReadOptions::default())
                .await
                .unwrap();
            let settings = FitSettings {
                privacy: PrivacyMode::None,
                ..FitSettings::default()
            };
            fit_table(&source, Spec::default(), settings, 5, &NoProgress)
                .await
                .unwrap()
        })
        .await
        .clone()
}

fn spec(rows: u64, shard_rows: u64, lease: Duration) -> JobSpec {
    JobSpec {
        rows,
        shard_rows,
        seed: 5,
        lease,
        heartbeat: (lease / 5).max(Duration::from_millis(50)),
        overwrite: false,
    }
}

/// A job served on a loopback port; the server stops when this is dropped.
struct Served {
    job: Arc<Job>,
    addr: SocketAddr,
    out: PathBuf,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn serve(spec: JobSpec) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let url = out.to_str().unwrap().to_owned();
    let output = Output::new(Location::parse(&url, &[]).unwrap());
    let (job, start) = Job::start(model().await, spec, output, url).await.unwrap();
    assert_eq!(start, Start::Fresh);
    let (stop, stopped) = oneshot::channel::<()>();
    let (addr, server) = bind(
        job.clone(),
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: TOKEN.into(),
            tls: None,
        },
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    tokio::spawn(server);
    Served {
        job,
        addr,
        out,
        _dir: dir,
        _stop: stop,
    }
}

/// Puts `authorization` metadata on every call: a given value, or none at all.
#[derive(Clone)]
struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(request)
    }
}

type Client = CoordinatorClient<InterceptedService<Channel, Auth>>;

/// A client sending `authorization: <header>` (none when `None`).
async fn client_with(addr: SocketAddr, header: Option<&str>) -> Client {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let auth = Auth(header.map(|h| MetadataValue::try_from(h).unwrap()));
    CoordinatorClient::with_interceptor(channel, auth)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A client with the right token.
async fn client(addr: SocketAddr) -> Client {
    client_with(addr, Some(&format!("Bearer {TOKEN}"))).await
}

fn register_request() -> RegisterRequest {
    RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        name: "rpc-test".into(),
        threads: 1,
    }
}

async fn register(c: &mut Client) -> RegisterResponse {
    c.register(register_request()).await.unwrap().into_inner()
}

async fn lease(c: &mut Client, worker_id: &str) -> Outcome {
    c.lease(LeaseRequest {
        worker_id: worker_id.to_owned(),
    })
    .await
    .unwrap()
    .into_inner()
    .outcome
    .unwrap()
}

async fn lease_shard(c: &mut Client, worker_id: &str) -> Shard {
    match lease(c, worker_id).await {
        Outcome::Shard(s) => s,
        other => panic!("expected a shard, got {other:?}"),
    }
}

async fn heartbeat(c: &mut Client, worker_id: &str, s: &Shard) -> bool {
    c.heartbeat(HeartbeatRequest {
        worker_id: worker_id.to_owned(),
        shard: s.shard,
        attempt: s.attempt,
        rows_done: 0,
    })
    .await
    .unwrap()
    .into_inner()
    .keep_going
}

/// Samples the shard and uploads it as the attempt's object, as a worker does.
async fn write_attempt(r: &RegisterResponse, s: &Shard) -> Part {
    let model = Model::from_json(&r.model).unwrap();
    let sampler = ShardSampler::new(Arc::new(model)).unwrap();
    let plan = ShardPlan {
        shard: s.shard,
        first_row: s.first_row,
        rows: s.rows,
        seed: s.seed,
    };
    let schema = sampler.schema();
    let batches = tokio::task::spawn_blocking(move || sampler.sample(&plan))
        .await
        .unwrap()
        .unwrap();
    let output = Output::new(Location::parse(&r.output, &[]).unwrap());
    let part = output
        .write_attempt(&r.table, s.shard, s.attempt, &schema, &batches)
        .await
        .unwrap();
    assert_eq!(part.rows, s.rows);
    Part {
        path: part.path,
        rows: part.rows,
        bytes: part.bytes,
        sha256: part.sha256,
    }
}

async fn complete(c: &mut Client, worker_id: &str, s: &Shard, part: Part) -> CompleteResponse {
    c.complete(CompleteRequest {
        worker_id: worker_id.to_owned(),
        shard: s.shard,
        attempt: s.attempt,
        part: Some(part),

        parts: Vec::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn wait(job: &Job) -> Result<(), JobError> {
    tokio::time::timeout(Duration::from_secs(60), job.wait())
        .await
        .expect("the job neither finished nor failed in 60 s")
}

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn assert_code(r: Result<impl std::fmt::Debug, Status>, code: Code, what: &str) -> Status {
    match r {
        Err(s) if s.code() == code => s,
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_or_missing_token_is_unauthenticated_on_every_call() {
    let served = serve(spec(20_000, 10_000, Duration::from_secs(30))).await;
    let wrong = [
        None,
        Some("Bearer not-the-token".to_owned()),
        // the token without its scheme
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ];
    for header in &wrong {
        let mut c = client_with(served.addr, header.as_deref()).await;
        let what = format!("authorization {header:?}");
        let s = assert_code(
            c.register(register_request()).await,
            Code::Unauthenticated,
            &what,
        );
        assert!(s.message().contains("token"), "{what}: {}", s.message());
        assert_code(
            c.lease(LeaseRequest {
                worker_id: "w-0".into(),
            })
            .await,
            Code::Unauthenticated,
            &what,
        );
        assert_code(
            c.heartbeat(HeartbeatRequest {
                worker_id: "w-0".into(),
                shard: 0,
                attempt: 1,
                rows_done: 0,
            })
            .await,
            Code::Unauthenticated,
            &what,
        );
        assert_code(
            c.complete(CompleteRequest {
                worker_id: "w-0".into(),
                shard: 0,
                attempt: 1,
                part: Some(Part {
                    path: attempt_part_path(TABLE, 0, 1),
                    rows: 10_000,
                    bytes: 1,
                    sha256: String::new(),
                }),

                parts: Vec::new(),
            })
            .await,
            Code::Unauthenticated,
            &what,
        );
        assert_code(
            c.fail(FailRequest {
                worker_id: "w-0".into(),
                shard: 0,
                attempt: 1,
                message: "no".into(),
                retryable: false,
            })
            .await,
            Code::Unauthenticated,
            &what,
        );
    }
    // None of those calls reached the job: nothing leased, nothing failed.
    assert_eq!(served.job.status(), JobStatus::Running);
    assert_eq!(served.job.progress(), (0, 0, 2));
    // A worker with the token is served, and gets the first attempt of the first shard.
    let mut c = client(served.addr).await;
    let r = register(&mut c).await;
    assert!(!r.model.is_empty());
    let s = lease_shard(&mut c, &r.worker_id).await;
    assert_eq!((s.shard, s.attempt), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_of_another_protocol_version_is_refused_for_good() {
    let served = serve(spec(10_000, 10_000, Duration::from_secs(30))).await;
    let mut c = client(served.addr).await;
    for version in [0, PROTOCOL_VERSION + 1, u32::MAX] {
        let s = assert_code(
            c.register(RegisterRequest {
                protocol_version: version,
                ..register_request()
            })
            .await,
            Code::FailedPrecondition,
            &format!("protocol version {version}"),
        );
        assert!(
            s.message().contains("a retry cannot help"),
            "{}",
            s.message()
        );
        assert!(
            s.message().contains(&version.to_string()),
            "{}",
            s.message()
        );
    }
    assert_eq!(served.job.status(), JobStatus::Running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_follows_the_protocol_commits_every_shard() {
    // 3 shards, the last one short.
    let lease_for = Duration::from_secs(30);
    let served = serve(spec(25_000, 10_000, lease_for)).await;
    let mut c = client(served.addr).await;
    let r = register(&mut c).await;
    assert!(r.worker_id.starts_with("w-"), "{}", r.worker_id);
    let model = Model::from_json(&r.model).unwrap();
    assert_eq!(model.digest().unwrap(), r.model_digest);
    assert_eq!(r.model_digest, served.job.digest);
    assert_eq!(r.model, served.job.model_json);
    assert_eq!(model.table, TABLE);
    assert_eq!(r.table, TABLE);
    assert_eq!(Path::new(&r.output), served.out);
    assert_eq!(r.lease_ms, lease_for.as_millis() as u64);
    assert_eq!(r.heartbeat_ms, served.job.spec.heartbeat.as_millis() as u64);

    let mut shards = Vec::new();
    for _ in 0..3 {
        shards.push(lease_shard(&mut c, &r.worker_id).await);
    }
    let ids: Vec<(u32, u32, u64, u64)> = shards
        .iter()
        .map(|s| (s.shard, s.attempt, s.first_row, s.rows))
        .collect();
    assert_eq!(
        ids,
        vec![
            (0, 1, 0, 10_000),
            (1, 1, 10_000, 10_000),
            (2, 1, 20_000, 5_000)
        ]
    );
    // Every shard is leased: wait and ask again.
    assert!(matches!(
        lease(&mut c, &r.worker_id).await,
        Outcome::RetryAfterMs(ms) if ms > 0
    ));

    for s in &shards {
        assert!(heartbeat(&mut c, &r.worker_id, s).await);
        let part = write_attempt(&r, s).await;
        assert_eq!(part.path, attempt_part_path(TABLE, s.shard, s.attempt));
        let done = complete(&mut c, &r.worker_id, s, part.clone()).await;
        assert!(done.committed, "shard {}: {}", s.shard, done.reason);
        assert!(done.reason.is_empty());
        assert!(
            served
                .out
                .join(committed_part_path(TABLE, s.shard))
                .exists()
        );
        assert!(!served.out.join(&part.path).exists());
        // A committed shard is no longer this attempt's to work on, and a second report of it
        // commits nothing.
        assert!(!heartbeat(&mut c, &r.worker_id, s).await);
        let again = complete(&mut c, &r.worker_id, s, part).await;
        assert!(!again.committed);
        assert!(!again.reason.is_empty());
    }

    assert_eq!(lease(&mut c, &r.worker_id).await, Outcome::Done(true));
    wait(&served.job).await.unwrap();
    assert_eq!(served.job.status(), JobStatus::Finished);
    assert!(served.out.join(SUCCESS_FILE).exists());
    assert_eq!(files(&served.out.join("_attempts")), Vec::<PathBuf>::new());
    // Workers that come late learn that the job is done.
    let mut late = client(served.addr).await;
    let r2 = register(&mut late).await;
    assert_eq!(lease(&mut late, &r2.worker_id).await, Outcome::Done(true));
    let output = Output::new(Location::parse(served.out.to_str().unwrap(), &[]).unwrap());
    match output.state().await.unwrap() {
        OutputState::Finished(m) => {
            assert!(m.complete);
            assert_eq!(m.total_rows(), 25_000);
            assert_eq!(m.model_digest, r.model_digest);
            let parts: Vec<(u32, u32)> = m.tables[TABLE]
                .parts
                .iter()
                .map(|p| (p.shard, p.attempt))
                .collect();
            assert_eq!(parts, vec![(0, 1), (1, 1), (2, 1)]);
        }
        other => panic!("not finished: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lapsed_attempt_is_stale_and_its_object_is_deleted() {
    let served = serve(spec(10_000, 10_000, Duration::from_secs(1))).await;
    let mut c = client(served.addr).await;
    let slow = register(&mut c).await;
    let fast = register(&mut c).await;
    assert_ne!(slow.worker_id, fast.worker_id);

    let first = lease_shard(&mut c, &slow.worker_id).await;
    assert_eq!((first.shard, first.attempt), (0, 1));
    // Within the lease, nobody else gets the shard.
    assert!(matches!(
        lease(&mut c, &fast.worker_id).await,
        Outcome::RetryAfterMs(_)
    ));
    // The slow worker goes silent past its lease; the shard is leased again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = lease_shard(&mut c, &fast.worker_id).await;
    assert_eq!((second.shard, second.attempt), (0, 2));
    assert_eq!(served.job.lapsed(), 1);

    // The slow worker wakes up: told to stop, and its report is refused.
    assert!(!heartbeat(&mut c, &slow.worker_id, &first).await);
    let stale_part = write_attempt(&slow, &first).await;
    let stale_object = served.out.join(&stale_part.path);
    assert!(stale_object.exists());
    let refused = complete(&mut c, &slow.worker_id, &first, stale_part).await;
    assert!(!refused.committed);
    assert!(refused.reason.contains("stale"), "{}", refused.reason);
    assert!(
        !stale_object.exists(),
        "the stale attempt's object was kept"
    );
    assert!(!served.out.join(committed_part_path(TABLE, 0)).exists());
    assert!(!heartbeat(&mut c, &slow.worker_id, &first).await);
    // A stale failure report changes nothing either, even one no retry could help.
    let failed = c
        .fail(FailRequest {
            worker_id: slow.worker_id.clone(),
            shard: first.shard,
            attempt: first.attempt,
            message: "woke up too late".into(),
            retryable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!failed.job_failed);
    assert_eq!(served.job.status(), JobStatus::Running);

    // The current attempt still holds the lease and commits.
    assert!(heartbeat(&mut c, &fast.worker_id, &second).await);
    let part = write_attempt(&fast, &second).await;
    let done = complete(&mut c, &fast.worker_id, &second, part).await;
    assert!(done.committed, "{}", done.reason);
    wait(&served.job).await.unwrap();
    assert!(served.out.join(SUCCESS_FILE).exists());
    let output = Output::new(Location::parse(served.out.to_str().unwrap(), &[]).unwrap());
    let OutputState::Finished(m) = output.state().await.unwrap() else {
        panic!("not finished");
    };
    let parts: Vec<(u32, u32)> = m.tables[TABLE]
        .parts
        .iter()
        .map(|p| (p.shard, p.attempt))
        .collect();
    assert_eq!(parts, vec![(0, 2)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_worker_is_not_found() {
    let served = serve(spec(10_000, 10_000, Duration::from_secs(30))).await;
    let mut c = client(served.addr).await;
    // Registered with someone else, or with a coordinator that restarted since.
    let _someone = register(&mut c).await;
    let nobody = "w-00000000deadbeef".to_owned();
    let s = assert_code(
        c.lease(LeaseRequest {
            worker_id: nobody.clone(),
        })
        .await,
        Code::NotFound,
        "lease",
    );
    assert!(s.message().contains("register again"), "{}", s.message());
    assert_code(
        c.heartbeat(HeartbeatRequest {
            worker_id: nobody.clone(),
            shard: 0,
            attempt: 1,
            rows_done: 0,
        })
        .await,
        Code::NotFound,
        "heartbeat",
    );
    assert_code(
        c.complete(CompleteRequest {
            worker_id: nobody.clone(),
            shard: 0,
            attempt: 1,
            part: Some(Part {
                path: attempt_part_path(TABLE, 0, 1),
                rows: 10_000,
                bytes: 1,
                sha256: String::new(),
            }),

            parts: Vec::new(),
        })
        .await,
        Code::NotFound,
        "complete",
    );
    assert_code(
        c.fail(FailRequest {
            worker_id: nobody.clone(),
            shard: 0,
            attempt: 1,
            message: "no".into(),
            retryable: false,
        })
        .await,
        Code::NotFound,
        "fail",
    );
    assert_code(
        c.lease(LeaseRequest {
            worker_id: String::new(),
        })
        .await,
        Code::NotFound,
        "lease with no id",
    );
    // Nothing was leased to the unknown worker.
    assert_eq!(served.job.status(), JobStatus::Running);
    let r = register(&mut c).await;
    let s = lease_shard(&mut c, &r.worker_id).await;
    assert_eq!((s.shard, s.attempt), (0, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_no_retry_can_help_fails_the_job() {
    let served = serve(spec(20_000, 10_000, Duration::from_secs(30))).await;
    let mut c = client(served.addr).await;
    let r = register(&mut c).await;

    // A retryable failure gives the shard back, to be leased again with the next attempt.
    let s = lease_shard(&mut c, &r.worker_id).await;
    assert_eq!((s.shard, s.attempt), (0, 1));
    let f = c
        .fail(FailRequest {
            worker_id: r.worker_id.clone(),
            shard: s.shard,
            attempt: s.attempt,
            message: "the store timed out".into(),
            retryable: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!f.job_failed);
    let s1 = lease_shard(&mut c, &r.worker_id).await;
    let s0 = lease_shard(&mut c, &r.worker_id).await;
    assert_eq!((s1.shard, s1.attempt), (1, 1));
    assert_eq!((s0.shard, s0.attempt), (0, 2));

    // One that no retry can help fails the whole job.
    let f = c
        .fail(FailRequest {
            worker_id: r.worker_id.clone(),
            shard: s1.shard,
            attempt: s1.attempt,
            message: "the model is invalid".into(),
            retryable: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(f.job_failed);

    let s = assert_code(
        c.lease(LeaseRequest {
            worker_id: r.worker_id.clone(),
        })
        .await,
        Code::Aborted,
        "lease after the job failed",
    );
    assert!(
        s.message().contains("the model is invalid"),
        "{}",
        s.message()
    );
    // Another worker is not let in either.
    assert_code(
        c.register(register_request()).await,
        Code::Aborted,
        "register after the job failed",
    );
    match wait(&served.job).await {
        Err(JobError::Failed(why)) => assert!(why.contains("the model is invalid"), "{why}"),
        other => panic!("expected the job to fail, got {other:?}"),
    }
    assert!(matches!(served.job.status(), JobStatus::Failed(_)));
    assert!(!served.out.join(SUCCESS_FILE).exists());
}
