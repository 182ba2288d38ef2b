//! The worker loop: reach the coordinator (retrying with backoff while it starts), register,
//! then lease a shard, sample it, upload the attempt, report it — heartbeating meanwhile — until
//! the coordinator says the job is done.
//!
//! A lease the coordinator no longer recognises (it lapsed and the shard went to someone else)
//! stops the attempt and discards it; a stop request finishes the shard in hand, then exits; a
//! second one abandons it (reported as a retryable failure so the shard is leased again at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use chimera_core::model::{Exemplars, Model};
use chimera_core::plan::ShardPlan;
use chimera_core::relational::{ENTITY_MODEL_FORMAT, EntityModel};
use chimera_proto::v1::coordinator_client::CoordinatorClient;
use chimera_proto::v1::{
    CompleteRequest, FailRequest, HeartbeatRequest, LeaseRequest, Part, RegisterRequest, TablePart,
    lease_response::Outcome,
};
use chimera_proto::{AUTHORIZATION, PROTOCOL_VERSION};
use chimera_storage::{Location, Output, OutputState, PartInfo, StorageError};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

use crate::entities::EntitySampler;
use crate::llm::children::ChildWriter;
use crate::llm::fill::{FillError, Filler, LlmRuntime};
use crate::sample::{SampleError, ShardSampler};

/// Each table a shard writes, with its schema and batches.
type Tables = Vec<(
    String,
    arrow::datatypes::SchemaRef,
    Vec<arrow::array::RecordBatch>,
)>;

/// Largest message the worker accepts (the model travels in `Register`).
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How to reach the coordinator and where the worker's own storage credentials come from.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// `http://host:port` or `https://host:port`.
    pub coordinator: String,
    pub token: String,
    /// PEM CA certificate that signed the coordinator's TLS certificate.
    pub tls_ca: Option<Vec<u8>>,
    /// Name to expect in the coordinator's certificate (default: the URL's host).
    pub tls_domain: Option<String>,
    /// Shown in the coordinator's logs.
    pub name: String,
    pub threads: usize,
    /// Object-store options for the output (`KEY=VALUE`), on top of the environment.
    pub storage_options: Vec<(String, String)>,
    /// How long to keep trying to reach the coordinator before giving up.
    pub connect_for: Duration,
    /// The language model for jobs with text columns (shared by in-process workers).
    pub llm: Option<Arc<LlmRuntime>>,
    /// Rows the LLM decodes together.
    pub llm_batch: usize,
    /// The real table, for jobs whose prompts show the nearest real rows (`knn-real`).
    pub real_rows: Option<Arc<Vec<arrow::array::RecordBatch>>>,
}

/// Why the worker stopped without the job being done.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot reach the coordinator at {url} (gave up after {secs:.0} s): {message}")]
    Unreachable {
        url: String,
        secs: f64,
        message: String,
    },
    #[error("LLM fill: {0}")]
    Fill(#[from] FillError),
    #[error("the coordinator refused this worker: {0}")]
    Refused(String),
    #[error("the job failed: {0}")]
    JobFailed(String),
    #[error("coordinator call `{call}` failed: {status}")]
    Rpc { call: &'static str, status: Status },
    #[error("the model from the coordinator is invalid: {0}")]
    Model(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("invalid option: {0}")]
    Invalid(String),
}

/// What one worker did, for its exit log and the benchmarks.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct WorkerReport {
    pub worker_id: String,
    pub shards: u64,
    pub rows: u64,
    /// Attempts stopped because the lease was lost, or refused as stale.
    pub abandoned: u64,
    /// Round-trip time of every lease call that returned a shard, in microseconds.
    pub lease_micros: Vec<u64>,
    /// Whether the worker left because it was asked to stop, before the job was done.
    pub stopped: bool,
}

/// Stop requests: 0 = run, 1 = finish the shard in hand then exit, 2 = abandon it now.
#[derive(Debug, Default, Clone)]
pub struct StopSignal(Arc<AtomicU8>);

impl StopSignal {
    pub fn request(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| Some((v + 1).min(2)));
    }
    fn level(&self) -> u8 {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct Token(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Token {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(AUTHORIZATION, self.0.clone());
        Ok(request)
    }
}

type Client = CoordinatorClient<InterceptedService<Channel, Token>>;

fn endpoint(o: &WorkerOptions) -> Result<Endpoint, WorkerError> {
    // A CA or a domain asks for TLS. tonic speaks TLS only to https:// URLs and would silently
    // send an http:// one (and its token) in the clear, so the URL is upgraded.
    let tls = o.coordinator.starts_with("https://") || o.tls_ca.is_some() || o.tls_domain.is_some();
    let url = match o.coordinator.strip_prefix("http://") {
        Some(rest) if tls => format!("https://{rest}"),
        _ => o.coordinator.clone(),
    };
    let mut e = Endpoint::from_shared(url)
        .map_err(|e| WorkerError::Invalid(format!("coordinator URL `{}`: {e}", o.coordinator)))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if tls {
        // The given CA, or else the system roots (as documented; tonic refuses a host without
        // any system roots even when a CA is given, so they are not loaded then).
        let mut tls = ClientTlsConfig::new();
        tls = match &o.tls_ca {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let Some(d) = &o.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        e = e
            .tls_config(tls)
            .map_err(|e| WorkerError::Invalid(format!("TLS: {e}")))?;
    }
    Ok(e)
}

async fn connect(o: &WorkerOptions) -> Result<Client, WorkerError> {
    let token = MetadataValue::try_from(format!("Bearer {}", o.token))
        .map_err(|_| WorkerError::Invalid("the token must be printable ASCII".into()))?;
    let endpoint = endpoint(o)?;
    let started = Instant::now();
    let max_delay = Duration::from_secs(2);
    let tries = (o.connect_for.as_secs_f64() / max_delay.as_secs_f64()).ceil() as usize + 4;
    let channel = (|| async { endpoint.connect().await })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(max_delay)
                .with_max_times(tries)
                .with_jitter(),
        )
        .when(|_| started.elapsed() < o.connect_for)
        .notify(|e, after| {
            tracing::info!(error = %e, retry_in_ms = after.as_millis() as u64, "coordinator not reachable yet")
        })
        .await
        .map_err(|e| WorkerError::Unreachable {
            url: o.coordinator.clone(),
            secs: started.elapsed().as_secs_f64(),
            message: error_chain(&e),
        })?;
    Ok(CoordinatorClient::with_interceptor(channel, Token(token))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Whether a failed call is worth repeating (the coordinator restarting, a network blip).
fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// What a session samples: one table's rows (with its LLM filler), or whole entities.
enum Sampling {
    Table {
        sampler: Arc<ShardSampler>,
        filler: Option<Arc<Filler>>,
    },
    Entities(Arc<EntitySampler>),
}

struct Session {
    client: Client,
    worker_id: String,
    digest: String,
    sampling: Sampling,
    output: Output,
    table: String,
    heartbeat: Duration,
}

impl Session {
    /// Whether the output holds a finished run of this job's model.
    async fn job_finished(&self) -> bool {
        matches!(
            self.output.state().await,
            Ok(OutputState::Finished(m)) if m.model_digest == self.digest
        )
    }
}

async fn register(o: &WorkerOptions, client: &mut Client) -> Result<Session, WorkerError> {
    let r = client
        .register(RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            name: o.name.clone(),
            threads: o.threads as u32,
        })
        .await
        .map_err(|s| match s.code() {
            Code::Unauthenticated | Code::FailedPrecondition | Code::PermissionDenied => {
                WorkerError::Refused(s.message().to_owned())
            }
            Code::Aborted => WorkerError::JobFailed(s.message().to_owned()),
            _ => WorkerError::Rpc {
                call: "register",
                status: s,
            },
        })?
        .into_inner();
    let check = |digest: String| {
        if digest == r.model_digest {
            Ok(digest)
        } else {
            Err(WorkerError::Model(format!(
                "digest {digest} does not match the coordinator's {}",
                r.model_digest
            )))
        }
    };
    let invalid = |e: chimera_core::CoreError| WorkerError::Model(e.to_string());
    let entities = serde_json::from_slice::<serde_json::Value>(&r.model)
        .is_ok_and(|v| v["format"] == ENTITY_MODEL_FORMAT);
    let (digest, sampling) = if entities {
        let model = EntityModel::from_json(&r.model).map_err(invalid)?;
        let digest = check(model.digest().map_err(invalid)?)?;
        // The LLM that writes the child rows, when the model names one.
        let writer = match (&model.llm, &o.llm) {
            (None, _) => None,
            (Some(llm), None) => {
                return Err(WorkerError::Model(format!(
                    "the entity model's child rows are written by an LLM ({}); pass --llm with the path of that model",
                    llm.model
                )));
            }
            (Some(llm), Some(_)) if llm.exemplars == Exemplars::KnnReal => {
                return Err(WorkerError::Model(
                    "knn-real exemplars need the real tables: such relational runs are embedded only"
                        .into(),
                ));
            }
            (Some(llm), Some(runtime)) => Some(ChildWriter {
                runtime: runtime.clone(),
                exemplars: llm.exemplars,
                real: None,
                max_batch: o.llm_batch.max(1),
            }),
        };
        let mut sampler = EntitySampler::new(Arc::new(model))?;
        if let Some(w) = writer {
            sampler = sampler.with_llm(w);
        }
        (digest, Sampling::Entities(Arc::new(sampler)))
    } else {
        let model = Model::from_json(&r.model).map_err(invalid)?;
        let digest = check(model.digest().map_err(invalid)?)?;
        let model = Arc::new(model);
        let filler = match (&model.llm, &o.llm) {
            (None, _) => None,
            (Some(fill), None) => {
                return Err(WorkerError::Fill(FillError::NoLlm {
                    model: fill.model.clone(),
                }));
            }
            (Some(_), Some(runtime)) => {
                let mut f = Filler::new(runtime.clone(), model.clone())?;
                if let Some(real) = &o.real_rows {
                    f = f.with_real_rows(real)?;
                }
                f.max_batch = o.llm_batch.max(1);
                f.window = f.window.max(4 * f.max_batch);
                Some(Arc::new(f))
            }
        };
        let sampler = Arc::new(ShardSampler::new(model)?);
        (digest, Sampling::Table { sampler, filler })
    };
    let output = Output::new(Location::parse(&r.output, &o.storage_options)?);
    tracing::info!(worker = %r.worker_id, output = %output.location().display(), entities, "registered");
    Ok(Session {
        client: client.clone(),
        worker_id: r.worker_id,
        digest,
        sampling,
        output,
        table: r.table,
        heartbeat: Duration::from_millis(r.heartbeat_ms.max(10)),
    })
}

/// Runs the worker until the job is done (Ok), the stop signal is honoured (Ok, `stopped`), or
/// something no retry can fix happens (Err).
pub async fn run_worker(o: WorkerOptions, stop: StopSignal) -> Result<WorkerReport, WorkerError> {
    let mut client = connect(&o).await?;
    let mut report = WorkerReport::default();
    let mut session = register(&o, &mut client).await?;
    report.worker_id = session.worker_id.clone();
    let mut transient_since: Option<Instant> = None;
    loop {
        if stop.level() > 0 {
            report.stopped = true;
            return Ok(report);
        }
        let asked = Instant::now();
        let lease = session
            .client
            .lease(LeaseRequest {
                worker_id: session.worker_id.clone(),
            })
            .await;
        let outcome = match lease {
            Ok(r) => {
                transient_since = None;
                r.into_inner().outcome
            }
            Err(s) if s.code() == Code::NotFound => {
                // A restarted coordinator does not know us: register again.
                tracing::info!("the coordinator does not know this worker; registering again");
                session = register(&o, &mut client).await?;
                report.worker_id = session.worker_id.clone();
                continue;
            }
            Err(s) if s.code() == Code::Aborted => {
                return Err(WorkerError::JobFailed(s.message().to_owned()));
            }
            Err(s) if transient(&s) => {
                // A coordinator that finished and exited looks like this too: the output says.
                if session.job_finished().await {
                    tracing::info!(
                        shards = report.shards,
                        rows = report.rows,
                        "the coordinator is gone and the output is finished; exiting"
                    );
                    return Ok(report);
                }
                let since = *transient_since.get_or_insert_with(Instant::now);
                if since.elapsed() > o.connect_for {
                    return Err(WorkerError::Rpc {
                        call: "lease",
                        status: s,
                    });
                }
                tracing::info!(error = %s.message(), "coordinator unavailable; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(s) => {
                return Err(WorkerError::Rpc {
                    call: "lease",
                    status: s,
                });
            }
        };
        match outcome {
            Some(Outcome::Done(_)) => {
                tracing::info!(
                    shards = report.shards,
                    rows = report.rows,
                    "the job is done; exiting"
                );
                return Ok(report);
            }
            Some(Outcome::RetryAfterMs(ms)) => {
                tokio::time::sleep(Duration::from_millis(ms.clamp(5, 5000))).await;
            }
            Some(Outcome::Shard(s)) => {
                report.lease_micros.push(asked.elapsed().as_micros() as u64);
                let plan = ShardPlan {
                    shard: s.shard,
                    first_row: s.first_row,
                    rows: s.rows,
                    seed: s.seed,
                };
                match run_shard(&mut session, plan, s.attempt, stop.clone()).await? {
                    ShardEnd::Committed => {
                        report.shards += 1;
                        report.rows += plan.rows;
                    }
                    ShardEnd::Abandoned => report.abandoned += 1,
                }
            }
            None => {
                return Err(WorkerError::Rpc {
                    call: "lease",
                    status: Status::internal("empty lease response"),
                });
            }
        }
    }
}

/// Resolves once the heartbeat task reports the lease lost (never if it ends without that).
async fn lease_lost(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Tells the coordinator an attempt failed (best effort: a lost lease lapses anyway).
async fn report_failure(
    session: &mut Session,
    shard: u32,
    attempt: u32,
    message: String,
    retryable: bool,
) {
    let r = session
        .client
        .fail(FailRequest {
            worker_id: session.worker_id.clone(),
            shard,
            attempt,
            message,
            retryable,
        })
        .await;
    if let Err(s) = r {
        tracing::warn!(shard, attempt, error = %s.message(), "could not report the failed attempt");
    }
}

enum ShardEnd {
    Committed,
    Abandoned,
}

async fn run_shard(
    session: &mut Session,
    plan: ShardPlan,
    attempt: u32,
    stop: StopSignal,
) -> Result<ShardEnd, WorkerError> {
    let shard = plan.shard;
    tracing::debug!(shard, attempt, rows = plan.rows, "sampling");
    let (lost_tx, mut lost_rx) = tokio::sync::watch::channel(false);
    let heartbeat = {
        let mut client = session.client.clone();
        let worker_id = session.worker_id.clone();
        let every = session.heartbeat;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = client
                    .heartbeat(HeartbeatRequest {
                        worker_id: worker_id.clone(),
                        shard,
                        attempt,
                        rows_done: 0,
                    })
                    .await;
                match r {
                    Ok(r) if !r.get_ref().keep_going => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Ok(_) => {}
                    Err(s) if s.code() == Code::NotFound => {
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(s) => tracing::warn!(shard, error = %s.message(), "heartbeat failed"),
                }
            }
        })
    };
    // Boxed as `Send` here, where its lifetimes are concrete (rustc cannot prove an unboxed
    // future that borrows across `select!` is `Send` for every lifetime when it is spawned).
    type Parts = Vec<(String, PartInfo)>;
    let body: std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<Parts>, WorkerError>> + Send + '_>,
    > = Box::pin(async {
        let work = match &session.sampling {
            Sampling::Table { sampler, filler } => {
                let (sampler, filler) = (sampler.clone(), filler.clone());
                let table = session.table.clone();
                tokio::task::spawn_blocking(move || -> Result<Tables, WorkerError> {
                    let schema = sampler.schema();
                    let sampled = sampler.sample_shard(&plan)?;
                    let batches = match filler {
                        None => sampled.batches,
                        Some(f) => {
                            let (batches, stats) = f.fill(&plan, sampled)?;
                            tracing::info!(
                                shard = plan.shard,
                                rows = stats.rows,
                                cells = stats.cells,
                                tokens_sampled = stats.engine.sampled,
                                tokens_forced = stats.engine.forced,
                                seconds = stats.seconds,
                                "text columns written by the LLM"
                            );
                            batches
                        }
                    };
                    Ok(vec![(table, schema, batches)])
                })
            }
            Sampling::Entities(sampler) => {
                let sampler = sampler.clone();
                tokio::task::spawn_blocking(move || -> Result<Tables, WorkerError> {
                    Ok(sampler
                        .sample(&plan)?
                        .into_iter()
                        .map(|(name, schema, batch)| (name, schema, vec![batch]))
                        .collect())
                })
            }
        };
        let tables = tokio::select! {
            r = work => r.map_err(|e| WorkerError::Invalid(format!("sampling task: {e}")))??,
            _ = lease_lost(&mut lost_rx) => return Ok(None),
        };
        if stop.level() >= 2 {
            return Ok(None);
        }
        // Upload only while the lease is still ours: a worker that was frozen past its lease
        // must not leave an attempt object behind a finished run.
        let still_ours = session
            .client
            .clone()
            .heartbeat(HeartbeatRequest {
                worker_id: session.worker_id.clone(),
                shard,
                attempt,
                rows_done: plan.rows,
            })
            .await
            .map(|r| r.get_ref().keep_going);
        if let Ok(false) = still_ours {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(tables.len());
        for (table, schema, batches) in tables {
            let part = session
                .output
                .write_attempt(&table, shard, attempt, &schema, &batches)
                .await?;
            parts.push((table, part));
        }
        Ok(Some(parts))
    });
    let result = body.await;
    heartbeat.abort();
    let parts = match result {
        Ok(Some(parts)) => parts,
        Ok(None) => {
            tracing::info!(
                shard,
                attempt,
                "lease lost or stop requested; abandoning the attempt"
            );
            report_failure(
                session,
                shard,
                attempt,
                "abandoned by the worker".into(),
                true,
            )
            .await;
            return Ok(ShardEnd::Abandoned);
        }
        Err(e) => {
            let retryable = match &e {
                WorkerError::Storage(s) => s.retryable(),
                _ => false,
            };
            // The whole chain: the coordinator's log must say why, not only where.
            let why = error_chain(&e);
            report_failure(session, shard, attempt, why.clone(), retryable).await;
            if retryable {
                tracing::warn!(shard, attempt, error = %why, "attempt failed; the shard will be leased again");
                return Ok(ShardEnd::Abandoned);
            }
            return Err(e);
        }
    };
    let wire = |p: &PartInfo| Part {
        path: p.path.clone(),
        rows: p.rows,
        bytes: p.bytes,
        sha256: p.sha256.clone(),
    };
    // A one-table job reports its part as before; a relational job one part per table.
    let request = match (&session.sampling, parts.as_slice()) {
        (Sampling::Table { .. }, [(_, p)]) => CompleteRequest {
            worker_id: session.worker_id.clone(),
            shard,
            attempt,
            part: Some(wire(p)),
            parts: Vec::new(),
        },
        _ => CompleteRequest {
            worker_id: session.worker_id.clone(),
            shard,
            attempt,
            part: None,
            parts: parts
                .iter()
                .map(|(table, p)| TablePart {
                    table: table.clone(),
                    part: Some(wire(p)),
                })
                .collect(),
        },
    };
    let done = session.client.complete(request).await;
    match done {
        Ok(r) if r.get_ref().committed => Ok(ShardEnd::Committed),
        Ok(r) => {
            tracing::info!(shard, attempt, reason = %r.get_ref().reason, "attempt not committed");
            Ok(ShardEnd::Abandoned)
        }
        Err(s) if s.code() == Code::Aborted => Err(WorkerError::JobFailed(s.message().to_owned())),
        Err(s) => {
            // The coordinator may have restarted or the commit may have hit a transient store
            // error: the shard is leased again either way.
            tracing::warn!(shard, attempt, error = %s.message(), "completion not acknowledged");
            Ok(ShardEnd::Abandoned)
        }
    }
}
