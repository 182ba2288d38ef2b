//! The gRPC face of a [`Job`]: token check, protocol version check, and the five calls of
//! `proto/chimera/v1/coordinator.proto`. Serving (TLS, the listener, shutdown) is here too.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chimera_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use chimera_proto::v1::{
    CompleteRequest, CompleteResponse, FailRequest, FailResponse, HeartbeatRequest,
    HeartbeatResponse, LeaseRequest, LeaseResponse, Part, RegisterRequest, RegisterResponse, Shard,
    lease_response::Outcome,
};
use chimera_proto::{AUTHORIZATION, PROTOCOL_VERSION};
use chimera_storage::PartInfo;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::job::{Job, JobError};
use crate::leases::Grant;

/// Largest message either side accepts (the model travels in `Register`).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The coordinator service over one job.
#[derive(Clone)]
pub struct CoordinatorService {
    job: Arc<Job>,
}

impl CoordinatorService {
    pub fn new(job: Arc<Job>) -> Self {
        CoordinatorService { job }
    }

    fn known(&self, worker: &str) -> Result<(), Status> {
        if self.job.knows(worker) {
            Ok(())
        } else {
            // A worker of a previous coordinator: it registers again and gets a fresh id.
            Err(Status::not_found(format!(
                "unknown worker `{worker}`: register again"
            )))
        }
    }
}

fn job_failed(why: &str) -> Status {
    Status::aborted(format!("the job failed: {why}"))
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        if r.protocol_version != PROTOCOL_VERSION {
            return Err(Status::failed_precondition(format!(
                "this worker speaks protocol version {}, the coordinator {}: run the same chimera version on both (a retry cannot help)",
                r.protocol_version, PROTOCOL_VERSION
            )));
        }
        if let crate::job::Status::Failed(why) = self.job.status() {
            return Err(job_failed(&why));
        }
        let worker_id = self.job.register(&r.name);
        Ok(Response::new(RegisterResponse {
            worker_id,
            model: self.job.model_json.clone(),
            model_digest: self.job.digest.clone(),
            output: self.job.output_url.clone(),
            lease_ms: self.job.spec.lease.as_millis() as u64,
            heartbeat_ms: self.job.spec.heartbeat.as_millis() as u64,
            table: self.job.table().to_owned(),
        }))
    }

    async fn lease(
        &self,
        request: Request<LeaseRequest>,
    ) -> Result<Response<LeaseResponse>, Status> {
        let r = request.into_inner();
        self.known(&r.worker_id)?;
        let outcome = match self.job.lease(&r.worker_id) {
            Grant::Shard { plan, attempt } => Outcome::Shard(Shard {
                shard: plan.shard,
                attempt,
                first_row: plan.first_row,
                rows: plan.rows,
                seed: plan.seed,
            }),
            Grant::Wait => Outcome::RetryAfterMs(
                (self.job.spec.heartbeat.as_millis() as u64 / 4).clamp(20, 250),
            ),
            Grant::Done => Outcome::Done(true),
            Grant::Failed => {
                let why = match self.job.status() {
                    crate::job::Status::Failed(why) => why,
                    _ => "unknown".into(),
                };
                return Err(job_failed(&why));
            }
        };
        Ok(Response::new(LeaseResponse {
            outcome: Some(outcome),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = request.into_inner();
        self.known(&r.worker_id)?;
        let keep_going = self.job.heartbeat(r.shard, r.attempt, r.rows_done);
        Ok(Response::new(HeartbeatResponse { keep_going }))
    }

    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<CompleteResponse>, Status> {
        let r = request.into_inner();
        self.known(&r.worker_id)?;
        let info = |part: Part| PartInfo {
            path: part.path,
            shard: r.shard,
            attempt: r.attempt,
            rows: part.rows,
            bytes: part.bytes,
            sha256: part.sha256,
        };
        let mut parts: Vec<(String, PartInfo)> = Vec::new();
        if let Some(part) = r.part.clone() {
            parts.push((self.job.table().to_owned(), info(part)));
        }
        for p in r.parts.clone() {
            let part = p
                .part
                .ok_or_else(|| Status::invalid_argument("a table's part is missing"))?;
            parts.push((p.table, info(part)));
        }
        if parts.is_empty() {
            return Err(Status::invalid_argument("a completion must name its part"));
        }
        match self.job.complete_parts(parts).await {
            Ok(Ok(())) => Ok(Response::new(CompleteResponse {
                committed: true,
                reason: String::new(),
            })),
            Ok(Err(stale)) => Ok(Response::new(CompleteResponse {
                committed: false,
                reason: stale.to_string(),
            })),
            Err(JobError::Storage(e)) if e.retryable() => Err(Status::unavailable(format!(
                "the shard will be leased again: {e}"
            ))),
            Err(JobError::Invalid(why)) => Err(Status::invalid_argument(why)),
            Err(e) => Err(Status::aborted(e.to_string())),
        }
    }

    async fn fail(&self, request: Request<FailRequest>) -> Result<Response<FailResponse>, Status> {
        let r = request.into_inner();
        self.known(&r.worker_id)?;
        let job_failed = self
            .job
            .fail(r.shard, r.attempt, &r.message, r.retryable)
            .await;
        Ok(Response::new(FailResponse { job_failed }))
    }
}

/// Checks the shared token on every call, in constant time.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Arc<Vec<u8>>,
}

impl TokenCheck {
    pub fn new(token: &str) -> Self {
        TokenCheck {
            expected: Arc::new(format!("Bearer {token}").into_bytes()),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request
            .metadata()
            .get(AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if bool::from(given.ct_eq(self.expected.as_slice())) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong token (a retry cannot help)",
            ))
        }
    }
}

/// How to serve.
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub token: String,
    /// PEM certificate chain and private key: serve TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Binds the listener (port 0 picks a free one) and returns its address with the server future,
/// which runs until `shutdown` resolves.
pub async fn bind(
    job: Arc<Job>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<
    (
        SocketAddr,
        impl Future<Output = Result<(), tonic::transport::Error>>,
    ),
    std::io::Error,
> {
    let listener = TcpListener::bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let service = InterceptedService::new(
        CoordinatorServer::new(CoordinatorService::new(job))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        TokenCheck::new(&options.token),
    );
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    if let Some((cert, key)) = &options.tls {
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
            .map_err(std::io::Error::other)?;
    }
    let server = builder
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown);
    Ok((addr, server))
}
