//! Running a sampling job: the coordinator (gRPC service over the job) and workers. `run` and
//! `sample` start the same coordinator on a loopback port with a fresh token and a few
//! in-process workers; `coordinator` and `worker` run them as separate processes.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chimera_coordinator::job::{Job, JobModel, JobSpec, PublicPart, Start, stored_model};
use chimera_coordinator::service::{ServeOptions, bind};
use chimera_core::model::Model;
use chimera_storage::{Location, Output};
use chimera_worker::llm::fill::LlmRuntime;
use chimera_worker::remote::{StopSignal, WorkerOptions, WorkerReport, run_worker};

use crate::health::{self, Ready};
use crate::progress::Bars;

/// Where a job writes and how it is split.
pub struct JobTarget {
    pub output: String,
    pub storage_options: Vec<(String, String)>,
    pub rows: u64,
    pub shard_rows: u64,
    pub seed: u64,
    pub overwrite: bool,
    pub lease: Duration,
}

impl JobTarget {
    fn spec(&self) -> JobSpec {
        JobSpec {
            rows: self.rows,
            shard_rows: self.shard_rows,
            seed: self.seed,
            lease: self.lease,
            heartbeat: (self.lease / 5).max(Duration::from_millis(50)),
            overwrite: self.overwrite,
        }
    }

    pub fn open(&self) -> Result<Output> {
        Ok(Output::new(Location::parse(
            &self.output,
            &self.storage_options,
        )?))
    }

    /// The model of an unfinished run of this same job, to resume without fitting again (a new
    /// fit would spend the privacy budget a second time). Refuses a finished output.
    pub async fn resumable_model(&self) -> Result<Option<Model>> {
        Ok(match self.resumable_job_model().await? {
            Some(JobModel::Table(m)) => Some(*m),
            _ => None,
        })
    }

    /// [`JobTarget::resumable_model`] for a model of either kind (one table, or entities).
    pub async fn resumable_job_model(&self) -> Result<Option<JobModel>> {
        let output = self.open()?;
        Ok(stored_model(&output, &self.spec(), None).await?)
    }
}

/// How the coordinator serves.
pub struct Serving {
    pub listen: SocketAddr,
    pub token: String,
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Readiness of the probe server the caller started (if any) before the fit, so that
    /// liveness probes answer during a long fit; set once the job is served.
    pub ready: Ready,
    /// In-process workers (embedded mode); 0 for a coordinator that waits for remote ones.
    pub workers: usize,
    /// How long a finished coordinator keeps answering "done" to remote workers.
    pub linger: Duration,
    /// The language model the in-process workers share, for a model with text columns.
    pub llm: Option<Arc<LlmRuntime>>,
    /// Rows an in-process worker's LLM decodes together.
    pub llm_batch: usize,
    /// The real rows, for `knn-real` exemplars.
    pub real_rows: Option<Arc<Vec<arrow::array::RecordBatch>>>,
}

/// A random token for an embedded job (the port is loopback-only, but other local users exist).
pub fn fresh_token() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// Reads a token file: one line, surrounding whitespace ignored.
pub fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        bail!(
            "the token in {} must be printable ASCII without spaces",
            path.display()
        );
    }
    Ok(token)
}

/// Runs a job to completion: plans shards, serves leases, commits parts, writes `_SUCCESS`.
pub async fn run_job(model: Model, target: &JobTarget, serving: Serving) -> Result<()> {
    run_job_model(model.into(), Vec::new(), target, serving).await
}

/// [`run_job`] for a model of either kind; a relational job also copies `public` tables.
pub async fn run_job_model(
    model: JobModel,
    public: Vec<PublicPart>,
    target: &JobTarget,
    serving: Serving,
) -> Result<()> {
    let output = target.open()?;
    let rows = target.rows;
    let url = target.output.clone();
    let (job, start) = Job::start_with_public(model, target.spec(), output, url, public).await?;
    match start {
        Start::Fresh => {}
        Start::Resumed { committed } => tracing::info!(
            committed,
            shards = job.progress().2,
            "resuming an unfinished run of the same job"
        ),
    }
    let ready = serving.ready;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let tls = serving.tls.is_some();
    let (addr, server) = bind(
        job.clone(),
        ServeOptions {
            listen: serving.listen,
            token: serving.token.clone(),
            tls: serving.tls,
        },
        shutdown,
    )
    .await
    .with_context(|| format!("cannot listen on {}", serving.listen))?;
    let server = tokio::spawn(server);
    if serving.workers == 0 {
        tracing::info!(%addr, tls, shards = job.progress().2, rows, "coordinator serving");
    }
    ready.set(true);

    let mut workers = tokio::task::JoinSet::new();
    for i in 0..serving.workers {
        let options = WorkerOptions {
            coordinator: format!("http://{addr}"),
            token: serving.token.clone(),
            tls_ca: None,
            tls_domain: None,
            name: format!("embedded-{i}"),
            threads: rayon::current_num_threads(),
            storage_options: target.storage_options.clone(),
            connect_for: Duration::from_secs(10),
            llm: serving.llm.clone(),
            llm_batch: serving.llm_batch,
            real_rows: serving.real_rows.clone(),
        };
        workers.spawn(run_worker(options, StopSignal::default()));
    }

    let bar = Bars::counter("sample", rows);
    let watch = {
        let job = job.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            loop {
                bar.set_position(job.progress().0);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let sigterm = terminate();
    // Embedded workers that all stop on an error would leave the job waiting forever.
    let embedded = serving.workers > 0;
    let workers_failed = async {
        let mut failure = None;
        while let Some(r) = workers.join_next().await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failure = Some(anyhow::Error::from(e)),
                Err(e) => failure = Some(anyhow::anyhow!("an embedded worker panicked: {e}")),
            }
        }
        match failure {
            Some(e) if embedded => e,
            // All finished well (the job is done) or none was started: wait for the job.
            _ => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = job.wait() => r.map_err(anyhow::Error::from),
        e = workers_failed => {
            let (_, committed, shards) = job.progress();
            if committed == shards {
                // The others finished the job; `_SUCCESS` is being written.
                job.wait().await.map_err(anyhow::Error::from)
            } else {
                job.fail_job(format!("every embedded worker stopped: {e:#}"));
                Err(e.context("every embedded worker stopped"))
            }
        }
        _ = sigterm => {
            job.fail_job("stopped by a signal".into());
            Err(anyhow::anyhow!("stopped by a signal; run the same command again to resume"))
        }
    };
    watch.abort();
    bar.finish_and_clear();
    // Every shard is committed (or the job failed): embedded workers left have nothing to do,
    // but one may be sleeping before its next lease call.
    workers.abort_all();
    if !embedded && result.is_ok() {
        // Remote workers learn that the job is done from their next lease call.
        tokio::time::sleep(serving.linger).await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    result?;
    let secs = job.elapsed().as_secs_f64();
    tracing::info!(
        rows,
        seconds = format!("{secs:.2}"),
        rows_per_second = format!("{:.0}", rows as f64 / secs.max(1e-9)),
        lapsed_leases = job.lapsed(),
        output = %target.output,
        "sampled"
    );
    Ok(())
}

/// Runs one worker process until the job is done.
pub async fn worker(
    options: WorkerOptions,
    health_addr: Option<SocketAddr>,
) -> Result<WorkerReport> {
    let ready = Ready::default();
    if let Some(addr) = health_addr {
        health::serve(addr, ready.clone()).await?;
    }
    let stop = StopSignal::default();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                terminate().await;
                tracing::info!("stop requested: finishing the shard in hand (again to abandon it)");
                stop.request();
            }
        });
    }
    ready.set(true);
    let report = run_worker(options, stop).await?;
    tracing::info!(
        shards = report.shards,
        rows = report.rows,
        abandoned = report.abandoned,
        stopped = report.stopped,
        "worker finished"
    );
    Ok(report)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
