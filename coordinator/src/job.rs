//! One sampling job as the coordinator runs it: the model, the shard plan, the leases, and the
//! output prefix with its manifest. The gRPC service (`service.rs`) is a thin layer over this.
//!
//! Start-up: a finished output is refused unless `overwrite`; an unfinished one written by the
//! same job (same table, rows, shard size, seed and model settings) is resumed: its stored model
//! is reused (a new fit would spend the privacy budget again) and its committed shards are kept;
//! anything else is cleared. The manifest is rewritten as shards commit (coalesced by a
//! background writer), and `_SUCCESS` comes last.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chimera_core::model::Model;
use chimera_core::plan::plan;
use chimera_core::privacy::PrivacyMode;
use chimera_core::relational::{ENTITY_MODEL_FORMAT, EntityModel};
use chimera_storage::{
    Manifest, ManifestPrivacy, ManifestTable, Output, OutputState, PartInfo, PrivacyMode as Mode,
    StorageError,
};
use tokio::sync::{Notify, watch};

use crate::leases::{Grant, Leases, Stale};

/// Why a job cannot start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Invalid(String),
    #[error("the job failed: {0}")]
    Failed(String),
}

/// What the job is: everything that must match to resume an unfinished output.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub rows: u64,
    pub shard_rows: u64,
    pub seed: u64,
    /// A lease lapses this long after the last heartbeat.
    pub lease: Duration,
    /// Workers heartbeat this often.
    pub heartbeat: Duration,
    pub overwrite: bool,
}

/// Where the job stands, for waiting on it and for progress bars.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Running,
    /// `_SUCCESS` is written.
    Finished,
    Failed(String),
}

struct State {
    leases: Leases,
    manifest: Manifest,
    /// Bumped on every change of the manifest; the writer persists the latest.
    version: u64,
    workers: HashMap<String, String>,
}

/// A running job, shared by the gRPC handlers and the manifest writer.
pub struct Job {
    pub model: Arc<JobModel>,
    pub model_json: Vec<u8>,
    pub digest: String,
    pub spec: JobSpec,
    /// Output location as workers should open it (their own credentials).
    pub output_url: String,
    output: Output,
    /// Public reference tables copied to the output once every shard is committed.
    public: Vec<PublicPart>,
    state: Mutex<State>,
    changed: Notify,
    status: watch::Sender<Status>,
    started: Instant,
}

/// How the job was started, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Fresh,
    /// Resumed an unfinished output; this many shards were already committed.
    Resumed {
        committed: usize,
    },
}

/// What a job samples: one table's model, or an entity model (one part per table per shard).
#[derive(Debug, Clone)]
pub enum JobModel {
    Table(Box<Model>),
    Entities(Box<EntityModel>),
}

impl From<Model> for JobModel {
    fn from(m: Model) -> Self {
        JobModel::Table(Box::new(m))
    }
}

impl From<EntityModel> for JobModel {
    fn from(m: EntityModel) -> Self {
        JobModel::Entities(Box::new(m))
    }
}

impl JobModel {
    /// Reads a model artifact of either kind, told apart by its `format`.
    pub fn from_json(bytes: &[u8]) -> Result<JobModel, JobError> {
        let entities = serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v["format"] == ENTITY_MODEL_FORMAT);
        let invalid = |e: chimera_core::CoreError| JobError::Invalid(e.to_string());
        Ok(if entities {
            EntityModel::from_json(bytes).map_err(invalid)?.into()
        } else {
            Model::from_json(bytes).map_err(invalid)?.into()
        })
    }

    pub fn to_json(&self) -> chimera_core::Result<Vec<u8>> {
        match self {
            JobModel::Table(m) => m.to_json(),
            JobModel::Entities(m) => m.to_json(),
        }
    }

    pub fn digest(&self) -> chimera_core::Result<String> {
        match self {
            JobModel::Table(m) => m.digest(),
            JobModel::Entities(m) => m.digest(),
        }
    }

    /// The table the manifest is about: the model's, or the entity's root.
    pub fn table(&self) -> &str {
        match self {
            JobModel::Table(m) => &m.table,
            JobModel::Entities(m) => &m.tables[0].name,
        }
    }

    /// The tables every shard writes, with their columns.
    pub fn sampled_tables(&self) -> Vec<(String, Vec<String>)> {
        match self {
            JobModel::Table(m) => vec![(
                m.table.clone(),
                m.columns.iter().map(|c| c.schema.name.clone()).collect(),
            )],
            JobModel::Entities(m) => m
                .tables
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.columns.iter().map(|c| c.name.clone()).collect(),
                    )
                })
                .collect(),
        }
    }

    /// The guarantee the output carries, for its manifest.
    pub fn manifest_privacy(&self) -> ManifestPrivacy {
        match self {
            // A table's notes are the model's to show (`inspect`); without DP only the
            // knn-real caveat reaches the manifest.
            JobModel::Table(m) => {
                let knn = |n: &String| n.contains("knn-real");
                privacy_of(&m.privacy.mode, m.privacy.notes.clone(), knn)
            }
            JobModel::Entities(m) => entities_manifest_privacy(m),
        }
    }
}

/// The manifest's guarantee for an entity model: its notes also say what the fit left out of
/// the data, with or without DP.
pub fn entities_manifest_privacy(m: &EntityModel) -> ManifestPrivacy {
    let notes = m.privacy.notes.iter().chain(&m.notes).cloned().collect();
    privacy_of(&m.privacy.mode, notes, |_| true)
}

/// `notes` under DP; without it, the no-guarantee line and the notes `keep` lets through.
fn privacy_of(
    mode: &PrivacyMode,
    notes: Vec<String>,
    keep: impl Fn(&String) -> bool,
) -> ManifestPrivacy {
    match *mode {
        PrivacyMode::Dp { epsilon, delta } => ManifestPrivacy {
            mode: Mode::Dp,
            epsilon: Some(epsilon),
            delta: Some(delta),
            notes,
        },
        PrivacyMode::None => ManifestPrivacy {
            mode: Mode::None,
            epsilon: None,
            delta: None,
            notes: std::iter::once("fitted with --no-dp: no privacy guarantee".to_string())
                .chain(notes.into_iter().filter(|n| keep(n)))
                .collect(),
        },
    }
}

/// A public reference table a relational job copies to the output as it is, before `_SUCCESS`.
pub struct PublicPart {
    pub name: String,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// Whether an unfinished run's manifest was written by this job: same model, table, rows, shard
/// size and seed. Only then are its committed shards kept.
fn same_job(m: &Manifest, spec: &JobSpec, digest: &str, table: &str) -> bool {
    m.model_digest == digest
        && m.table == table
        && m.rows_requested == spec.rows
        && m.rows_per_part == spec.shard_rows
        && m.seed == spec.seed
}

/// Looks at the output before a fit: a finished run is refused (unless `overwrite`), and an
/// unfinished run of the same job hands back its stored model so the fit can be skipped.
pub async fn stored_model(
    output: &Output,
    spec: &JobSpec,
    table: Option<&str>,
) -> Result<Option<JobModel>, JobError> {
    Ok(stored_run(output, spec, table)
        .await?
        .map(|(model, _)| model))
}

/// [`stored_model`] with the unfinished run's progress manifest (its committed shards).
pub async fn stored_run(
    output: &Output,
    spec: &JobSpec,
    table: Option<&str>,
) -> Result<Option<(JobModel, Manifest)>, JobError> {
    match output.state().await? {
        OutputState::Finished(_) if !spec.overwrite => Err(JobError::Invalid(format!(
            "{} already holds a finished chimera run (it has _SUCCESS); pass --overwrite to replace it or choose another output",
            output.location().display()
        ))),
        OutputState::Unfinished {
            manifest: Some(m),
            model: Some(bytes),
        } if !spec.overwrite => {
            let model = match JobModel::from_json(&bytes) {
                Ok(model) => model,
                Err(_) => return Ok(None),
            };
            let same = match model.digest() {
                Ok(digest) => same_job(&m, spec, &digest, table.unwrap_or(model.table())),
                Err(_) => false,
            };
            Ok(same.then_some((model, m)))
        }
        _ => Ok(None),
    }
}

impl Job {
    /// Prepares the output for `model` (resuming or clearing what is there) and plans shards.
    pub async fn start(
        model: impl Into<JobModel>,
        spec: JobSpec,
        output: Output,
        output_url: String,
    ) -> Result<(Arc<Job>, Start), JobError> {
        Job::start_with_public(model.into(), spec, output, output_url, Vec::new()).await
    }

    /// [`Job::start`] for a relational job whose output also gets `public` tables.
    pub async fn start_with_public(
        model: JobModel,
        spec: JobSpec,
        output: Output,
        output_url: String,
        public: Vec<PublicPart>,
    ) -> Result<(Arc<Job>, Start), JobError> {
        if spec.shard_rows == 0 {
            return Err(JobError::Invalid("--shard-rows must be positive".into()));
        }
        if spec.rows.div_ceil(spec.shard_rows) > chimera_core::plan::MAX_SHARDS {
            return Err(JobError::Invalid(format!(
                "{} rows in shards of {} is more than {} shards; raise --shard-rows",
                spec.rows,
                spec.shard_rows,
                chimera_core::plan::MAX_SHARDS
            )));
        }
        let model_json = model
            .to_json()
            .map_err(|e| JobError::Invalid(e.to_string()))?;
        let digest = model
            .digest()
            .map_err(|e| JobError::Invalid(e.to_string()))?;

        // Resume only the same job from the same model; otherwise start clean.
        let previous = match output.state().await? {
            OutputState::Finished(_) if !spec.overwrite => {
                return Err(JobError::Invalid(format!(
                    "{} already holds a finished chimera run (it has _SUCCESS); pass --overwrite to replace it or choose another output",
                    output.location().display()
                )));
            }
            OutputState::Unfinished {
                manifest: Some(m), ..
            } if !spec.overwrite && same_job(&m, &spec, &digest, model.table()) => Some(m),
            OutputState::Empty => None,
            _ => {
                output.clear().await?;
                None
            }
        };
        let (manifest, start) = match previous {
            Some(m) => {
                let committed = m.committed_shards().len();
                (m, Start::Resumed { committed })
            }
            None => {
                output.write_model(&model_json).await?;
                let mut m = Manifest::new(
                    digest.clone(),
                    spec.seed,
                    model.manifest_privacy(),
                    spec.shard_rows,
                );
                m.rows_requested = spec.rows;
                m.table = model.table().to_owned();
                m.complete = false;
                for (table, columns) in model.sampled_tables() {
                    m.tables.insert(table, ManifestTable::new(columns));
                }
                output.write_manifest(&m).await?;
                (m, Start::Fresh)
            }
        };
        // Every part of a shard is recorded at once: the main table's parts say which are done.
        let committed: BTreeMap<u32, u32> = manifest
            .tables
            .get(model.table())
            .map(|t| t.parts.iter().map(|p| (p.shard, p.attempt)).collect())
            .unwrap_or_default();
        // Attempts after a restart are numbered past every attempt the old run could have made.
        let first_attempt = committed.values().copied().max().unwrap_or(0)
            + match start {
                Start::Fresh => 0,
                Start::Resumed { .. } => 1000,
            };
        let leases = Leases::new(
            plan(spec.rows, spec.shard_rows, spec.seed),
            &committed,
            first_attempt,
            spec.lease,
        );
        let done = leases.is_done();
        let (status, _) = watch::channel(Status::Running);
        let job = Arc::new(Job {
            model: Arc::new(model),
            model_json,
            digest,
            spec,
            output_url,
            output,
            public,
            state: Mutex::new(State {
                leases,
                manifest,
                version: 1,
                workers: HashMap::new(),
            }),
            changed: Notify::new(),
            status,
            started: Instant::now(),
        });
        tokio::spawn(writer(job.clone()));
        if done {
            job.changed.notify_one();
        }
        Ok((job, start))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn table(&self) -> &str {
        self.model.table()
    }

    /// Deletes an attempt's objects, one per table (a stale or failed attempt).
    async fn discard(&self, shard: u32, attempt: u32) -> Result<(), StorageError> {
        for (table, _) in self.model.sampled_tables() {
            self.output.discard_attempt(&table, shard, attempt).await?;
        }
        Ok(())
    }

    /// Waits until the job has finished or failed.
    pub async fn wait(&self) -> Result<(), JobError> {
        let mut rx = self.status.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                Status::Finished => return Ok(()),
                Status::Failed(why) => return Err(JobError::Failed(why.clone())),
                Status::Running => {}
            }
            if rx.changed().await.is_err() {
                return Err(JobError::Failed("the job was dropped".into()));
            }
        }
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Rows committed or reported so far, and shards committed / total.
    pub fn progress(&self) -> (u64, usize, usize) {
        let s = self.lock();
        (
            s.leases.rows_done(),
            s.leases.committed(),
            s.leases.shards(),
        )
    }

    /// Leases that lapsed so far.
    pub fn lapsed(&self) -> u64 {
        self.lock().leases.lapsed
    }

    pub fn register(&self, name: &str) -> String {
        let id = format!("w-{:016x}", rand::random::<u64>());
        tracing::info!(worker = %id, name, "worker registered");
        self.lock().workers.insert(id.clone(), name.to_owned());
        id
    }

    pub fn knows(&self, worker: &str) -> bool {
        self.lock().workers.contains_key(worker)
    }

    pub fn lease(&self, worker: &str) -> Grant {
        let grant = self.lock().leases.lease(worker, Instant::now());
        if let Grant::Shard { plan, attempt } = &grant {
            tracing::debug!(worker, shard = plan.shard, attempt, "leased");
        }
        grant
    }

    pub fn heartbeat(&self, shard: u32, attempt: u32, rows: u64) -> bool {
        self.lock()
            .leases
            .heartbeat(shard, attempt, rows, Instant::now())
    }

    /// Commits a completed attempt of a one-table job (see [`Job::complete_parts`]).
    pub async fn complete(&self, part: PartInfo) -> Result<Result<(), Stale>, JobError> {
        let table = self.table().to_owned();
        self.complete_parts(vec![(table, part)]).await
    }

    /// Commits a completed attempt: moves its objects (one per table) into place and records
    /// them together. A stale attempt is refused and its objects removed. Returns whether the
    /// attempt was committed.
    pub async fn complete_parts(
        &self,
        parts: Vec<(String, PartInfo)>,
    ) -> Result<Result<(), Stale>, JobError> {
        let Some((_, first)) = parts.first() else {
            return Err(JobError::Invalid("a completion must name its parts".into()));
        };
        let (shard, attempt) = (first.shard, first.attempt);
        let tables: Vec<String> = self
            .model
            .sampled_tables()
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        let mut named: Vec<&str> = parts.iter().map(|(t, _)| t.as_str()).collect();
        named.sort_unstable();
        let mut expected: Vec<&str> = tables.iter().map(String::as_str).collect();
        expected.sort_unstable();
        if named != expected
            || parts
                .iter()
                .any(|(_, p)| (p.shard, p.attempt) != (shard, attempt))
        {
            return Err(JobError::Invalid(format!(
                "shard {shard} attempt {attempt}: a completion must give one part of this shard for each of {}, got {}",
                expected.join(", "),
                named.join(", ")
            )));
        }
        let begun = self.lock().leases.begin_commit(shard, attempt);
        let plan = match begun {
            Ok(plan) => plan,
            Err(stale) => {
                tracing::info!(shard, attempt, %stale, "ignoring a stale report");
                // A repeated report of the attempt being (or already) committed: its object is
                // the one that counts, so it stays.
                if stale
                    == (Stale::NotCurrent {
                        current: Some(attempt),
                    })
                {
                    return Ok(Err(stale));
                }
                if let Err(e) = self.discard(shard, attempt).await {
                    tracing::warn!(shard, attempt, error = %e, "could not remove a stale attempt");
                }
                return Ok(Err(stale));
            }
        };
        // The main table has one row per planned row (entity); child tables any number.
        let main_rows = parts
            .iter()
            .find(|(t, _)| t == self.table())
            .map_or(0, |(_, p)| p.rows);
        if main_rows != plan.rows {
            let why = format!(
                "attempt wrote {main_rows} rows of `{}`, the shard has {}",
                self.table(),
                plan.rows
            );
            self.lock()
                .leases
                .end_commit(shard, attempt, false, false, &why);
            self.fail_job(why.clone());
            return Err(JobError::Failed(why));
        }
        let mut done = Vec::with_capacity(parts.len());
        let mut result = Ok(());
        for (table, part) in &parts {
            match self.output.commit_part(part).await {
                Ok(committed) => done.push((table.clone(), committed)),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        match result {
            Ok(()) => {
                let mut s = self.lock();
                s.leases.end_commit(shard, attempt, true, false, "");
                for (table, committed) in done {
                    if let Some(t) = s.manifest.tables.get_mut(&table) {
                        t.push_part(committed);
                    }
                }
                s.version += 1;
                drop(s);
                self.changed.notify_one();
                Ok(Ok(()))
            }
            Err(e) => {
                let why = format!("committing shard {shard} attempt {attempt}: {e}");
                tracing::warn!(shard, attempt, error = %e, retryable = e.retryable(), "commit failed");
                self.lock()
                    .leases
                    .end_commit(shard, attempt, false, e.retryable(), &why);
                self.check_failed();
                Err(JobError::Storage(e))
            }
        }
    }

    /// Records a failed attempt; returns true when the job has failed as a whole.
    pub async fn fail(&self, shard: u32, attempt: u32, why: &str, retryable: bool) -> bool {
        tracing::warn!(shard, attempt, retryable, why, "attempt failed");
        let failed = self.lock().leases.fail(shard, attempt, why, retryable);
        if let Err(e) = self.discard(shard, attempt).await {
            tracing::warn!(shard, attempt, error = %e, "could not remove a failed attempt");
        }
        self.check_failed();
        failed
    }

    fn check_failed(&self) {
        if let Some(why) = self.lock().leases.failure().map(str::to_owned) {
            self.status.send_replace(Status::Failed(why));
        }
    }

    /// Fails the whole job (e.g. on shutdown or a storage error no retry can fix).
    pub fn fail_job(&self, why: String) {
        self.lock().leases.fail_job(why.clone());
        self.status.send_replace(Status::Failed(why));
    }

    /// Seconds since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Copies the public reference tables to the output (one part each) and lists them.
async fn write_public(job: &Job, m: &mut Manifest) -> Result<(), StorageError> {
    for p in &job.public {
        let part = job
            .output
            .write_attempt(&p.name, 0, 1, &p.schema, &p.batches)
            .await?;
        let committed = job.output.commit_part(&part).await?;
        let columns = p.schema.fields().iter().map(|f| f.name().clone()).collect();
        m.tables
            .entry(p.name.clone())
            .or_insert_with(|| ManifestTable::new(columns))
            .push_part(committed);
    }
    Ok(())
}

/// Persists the manifest whenever it changed (coalescing bursts of commits into one write), and
/// finishes the output once every shard is committed.
async fn writer(job: Arc<Job>) {
    let mut written = 0u64;
    loop {
        job.changed.notified().await;
        let (manifest, version, done) = {
            let s = job.lock();
            if s.version == written && !s.leases.is_done() {
                continue;
            }
            (s.manifest.clone(), s.version, s.leases.is_done())
        };
        if !matches!(job.status(), Status::Running) {
            return;
        }
        let result = if done {
            let mut m = manifest;
            m.complete = true;
            match write_public(&job, &mut m).await {
                Ok(()) => job.output.finish(&m).await,
                Err(e) => Err(e),
            }
        } else {
            job.output.write_manifest(&manifest).await
        };
        match result {
            Ok(()) => {
                written = version;
                if done {
                    let secs = job.elapsed().as_secs_f64();
                    tracing::info!(
                        rows = job.spec.rows,
                        seconds = format!("{secs:.2}"),
                        lapsed_leases = job.lapsed(),
                        output = job.output.location().display(),
                        "job finished"
                    );
                    job.status.send_replace(Status::Finished);
                    return;
                }
            }
            Err(e) => {
                // The object store may be unavailable for a while: the store client retries
                // each call; a failure that remains fails the job with its reason.
                job.fail_job(format!(
                    "cannot write the manifest to {}: {e}",
                    job.output.location().display()
                ));
                return;
            }
        }
    }
}
