//! What each subcommand does.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{RecordBatch, UInt32Array};
use chimera_coordinator::read::{ReadOptions, open_table, read_all};
use chimera_core::fit::FitSettings;
use chimera_core::model::{Exemplars, FillScope, LlmFill, Model, TextRules};
use chimera_core::privacy::PrivacyMode;
use chimera_core::relational::RowColumn;
use chimera_core::schema::Role;
use chimera_core::spec::Spec;
use chimera_storage::{MANIFEST_FILE, Manifest};
use chimera_worker::llm::candle_core::Device;
use chimera_worker::llm::fill::LlmRuntime;
use chimera_worker::remote::WorkerOptions;

use crate::cli::*;
use crate::distributed::{
    JobTarget, Serving, fresh_token, read_token, run_job, run_job_model, worker,
};
use crate::health::{self, Ready};
use crate::progress::Bars;
use chimera_coordinator::job::JobModel;

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => run(a).await,
        Command::Fit(a) => fit_cmd(a).await,
        Command::Sample(a) => sample_cmd(a).await,
        Command::Inspect(a) => inspect(a),
        Command::InferSpec(a) => infer_spec(a).await,
        Command::Eval(a) => eval(a).await,
        Command::Split(a) => split(a).await,
        Command::Coordinator(a) => coordinator(a).await,
        Command::Worker(a) => worker_cmd(a).await,
        Command::Llm(LlmCommand::Random(a)) => llm_random(a),
        Command::Llm(LlmCommand::Bench(a)) => llm_bench(a).await,
    }
}

/// The `--input` a single-table command needs.
fn input_of(a: &InputArgs) -> Result<&str> {
    a.input
        .as_deref()
        .context("--input is required (the table to read), unless --spec has `tables:`")
}

pub fn read_options(a: &InputArgs) -> Result<ReadOptions> {
    let delimiter = match a.delimiter.as_deref() {
        None => None,
        Some("\\t") | Some("tab") | Some("\t") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => bail!("--delimiter must be one character (or \\t), got `{d}`"),
    };
    Ok(ReadOptions {
        delimiter,
        has_header: a.header,
        null_tokens: a.null_tokens.clone(),
        column_names: a.column_names.clone(),
        storage_options: storage_options(&a.storage_options)?,
        ..ReadOptions::default()
    })
}

/// The LLM fill the model records, from `--llm` and its companions; marks `--llm-columns` as
/// text columns in the spec.
fn llm_fill(a: &LlmArgs, spec: &mut Spec) -> Result<Option<LlmFill>> {
    let Some(path) = &a.llm else {
        if !a.llm_columns.is_empty() {
            bail!("--llm-columns needs --llm MODEL (the model that writes them)");
        }
        return Ok(None);
    };
    if !path.exists() {
        bail!("--llm {}: no such file or folder", path.display());
    }
    let exemplars = match a.exemplars {
        ExemplarsArg::Synthetic => Exemplars::Synthetic,
        ExemplarsArg::None => Exemplars::None,
        ExemplarsArg::KnnReal => {
            tracing::warn!(
                "--exemplars knn-real pastes real rows into the LLM's prompts: the text columns \
                 will carry no differential-privacy guarantee (recorded in the model and manifest)"
            );
            Exemplars::KnnReal
        }
    };
    for c in &a.llm_columns {
        spec.columns.entry(c.clone()).or_default().role = Some(Role::Text);
    }
    let columns = spec
        .columns
        .iter()
        .filter(|(_, c)| c.pattern.is_some() || c.max_length.is_some() || c.description.is_some())
        .map(|(name, c)| {
            let rules = TextRules {
                pattern: c.pattern.clone(),
                max_length: c.max_length,
                description: c.description.clone(),
            };
            (name.clone(), rules)
        })
        .collect();
    Ok(Some(LlmFill {
        model: path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        exemplars,
        scope: match a.llm_fill {
            FillArg::Other => FillScope::Other,
            FillArg::All => FillScope::All,
        },
        instruction: spec.llm.instruction.clone(),
        columns,
    }))
}

/// Loads the LLM a job's text columns need (once per process; in-process workers share it).
async fn llm_runtime(
    model: &Model,
    path: Option<&Path>,
    run: &LlmRunArgs,
) -> Result<Option<Arc<LlmRuntime>>> {
    let Some(fill) = &model.llm else {
        if let Some(p) = path {
            tracing::warn!(llm = %p.display(), "the model has no text columns: --llm is not used");
        }
        return Ok(None);
    };
    let Some(path) = path else {
        bail!(
            "the model's text columns are written by an LLM ({}): pass --llm with its path",
            fill.model
        );
    };
    Ok(Some(load_llm(path, run).await?))
}

/// Loads a language model for the workers of this process.
pub async fn load_llm(path: &Path, run: &LlmRunArgs) -> Result<Arc<LlmRuntime>> {
    if run.llm_batch == 0 {
        bail!("--llm-batch must be at least 1");
    }
    let device = match run.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda if !cfg!(feature = "cuda") => bail!(
            "--device cuda: this chimera was built without CUDA; build it with `--features cuda` \
             (DEVELOPERS.md)"
        ),
        DeviceArg::Cuda => Device::new_cuda(0)
            .map_err(|e| anyhow::anyhow!("--device cuda: cannot open GPU 0: {e}"))?,
    };
    let started = Instant::now();
    let p = path.to_path_buf();
    let runtime = tokio::task::spawn_blocking(move || LlmRuntime::load(&p, &device))
        .await
        .context("loading the LLM")?
        .with_context(|| format!("--llm {}", path.display()))?;
    tracing::info!(
        llm = %path.display(),
        seconds = started.elapsed().as_secs_f64(),
        "language model loaded"
    );
    Ok(Arc::new(runtime))
}

fn llm_random(a: RandomArgs) -> Result<()> {
    use chimera_worker::llm::model::Architecture;
    use chimera_worker::llm::random::{
        RandomDType, RandomFormat, RandomModelSpec, write_random_model,
    };
    let arch = match a.arch.as_str() {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        "qwen3" => Architecture::Qwen3,
        other => bail!("--arch must be llama, qwen2 or qwen3, got `{other}`"),
    };
    let spec = match (a.shape.as_str(), arch) {
        ("tiny", _) => RandomModelSpec::tiny(arch),
        ("1b", Architecture::Llama) => RandomModelSpec::llama_1b(),
        ("1b", _) => bail!("--shape 1b is a llama shape"),
        (other, _) => bail!("--shape must be tiny or 1b, got `{other}`"),
    };
    let format = match a.format.as_str() {
        "gguf" => RandomFormat::Gguf,
        "safetensors" => RandomFormat::Safetensors,
        other => bail!("--format must be gguf or safetensors, got `{other}`"),
    };
    let dtype = match a.dtype.as_str() {
        "f32" => RandomDType::F32,
        "f16" => RandomDType::F16,
        "bf16" => RandomDType::BF16,
        "q8_0" => RandomDType::Q8_0,
        "q4_1" => RandomDType::Q4_1,
        other => bail!("--dtype must be f32, f16, bf16, q8_0 or q4_1, got `{other}`"),
    };
    let path = write_random_model(&a.out, &spec, format, dtype)?;
    println!("{}", path.display());
    Ok(())
}

async fn llm_bench(a: BenchArgs) -> Result<()> {
    let runtime = load_llm(&a.llm, &a.llm_run).await?;
    let batches = a.batches.clone();
    let (prompt, tokens) = (a.prompt, a.tokens);
    let rt = runtime.clone();
    let rows = tokio::task::spawn_blocking(move || {
        chimera_worker::llm::bench::bench(&rt.model, &batches, prompt, tokens)
    })
    .await??;
    let c = runtime.model.config();
    println!(
        "{} ({:?}, {} layers, hidden {}), {} prompt tokens, {} generated per sequence",
        a.llm.display(),
        c.architecture,
        c.layers,
        c.hidden,
        prompt,
        tokens
    );
    println!(
        "{:>14} {:>6} {:>10} {:>16} {:>16} {:>8}",
        "mode", "batch", "sequences", "prefill tok/s", "decode tok/s", "speedup"
    );
    for r in &rows {
        println!(
            "{:>14} {:>6} {:>10} {:>16.1} {:>16.1} {:>7.2}x",
            r.mode, r.batch, r.sequences, r.prefill_tokens_per_s, r.decode_tokens_per_s, r.speedup
        );
    }
    if let Some(path) = &a.json {
        write_atomically(path, &serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(())
}

/// CSV column types the spec declares (`type:`), for the reader.
fn spec_types(spec: &Spec) -> Result<Vec<(String, arrow::datatypes::DataType)>> {
    Ok(chimera_coordinator::read::declared_types(&spec.columns)?)
}

pub fn storage_options(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--storage-option must be KEY=VALUE, got `{kv}`"))
        })
        .collect()
}

fn parse_rows(s: &str) -> Result<u64> {
    match s.trim().replace('_', "").parse::<i128>() {
        Ok(n) if n > 0 && n <= u64::MAX as i128 => Ok(n as u64),
        _ => bail!("--rows must be a positive whole number, got `{s}`"),
    }
}

pub fn fit_settings(p: &PrivacyArgs, m: &ModelArgs) -> Result<FitSettings> {
    let privacy = if p.no_dp {
        PrivacyMode::None
    } else {
        PrivacyMode::dp(p.epsilon.unwrap_or(1.0), p.delta).context("invalid privacy budget")?
    };
    if let Some(k) = m.max_parents
        && !(1..=6).contains(&k)
    {
        bail!("--max-parents must be between 1 and 6, got {k}");
    }
    if let Some(b) = m.bins
        && !(2..=1024).contains(&b)
    {
        bail!("--bins must be between 2 and 1024, got {b}");
    }
    Ok(FitSettings {
        privacy,
        max_parents: m.max_parents,
        bins: m.bins,
        noise_seed: p.noise_seed,
        ..FitSettings::default()
    })
}

fn load_spec(m: &ModelArgs) -> Result<Spec> {
    match &m.spec {
        None => Ok(Spec::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read spec {}", p.display()))?;
            Spec::from_yaml(&text).with_context(|| format!("spec {}", p.display()))
        }
    }
}

async fn fit(
    input: &InputArgs,
    privacy: &PrivacyArgs,
    model: &ModelArgs,
    llm: &LlmArgs,
    seed: u64,
) -> Result<Model> {
    let mut settings = fit_settings(privacy, model)?;
    let mut spec = load_spec(model)?;
    settings.llm = llm_fill(llm, &mut spec)?;
    let mut opts = read_options(input)?;
    opts.column_types = spec_types(&spec)?;
    let started = Instant::now();
    let source = open_table(input_of(input)?, &opts).await?;
    let bars = Bars::new();
    let model = chimera_coordinator::fit_table(&source, spec, settings, seed, &bars).await?;
    tracing::info!(
        table = %model.table,
        columns = model.columns.len(),
        attributes = model.attributes.len(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "fitted"
    );
    for note in &model.privacy.notes {
        tracing::info!("{note}");
    }
    Ok(model)
}

async fn fit_cmd(a: FitArgs) -> Result<()> {
    let spec = load_spec(&a.model)?;
    if !spec.tables.is_empty() {
        let path = a.model.spec.clone().unwrap_or_default();
        let (model, _) =
            crate::entities::fit(&a.input, &a.privacy, &a.model, spec, &path, a.seed).await?;
        write_atomically(&a.model_path, &model.to_json()?)?;
        tracing::info!(path = %a.model_path.display(), digest = %model.digest()?, "entity model saved");
        return Ok(());
    }
    let model = fit(&a.input, &a.privacy, &a.model, &a.llm, a.seed).await?;
    write_atomically(&a.model_path, &model.to_json()?)?;
    tracing::info!(path = %a.model_path.display(), digest = %model.digest()?, "model saved");
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn run(a: RunArgs) -> Result<()> {
    let spec = load_spec(&a.model)?;
    if !spec.tables.is_empty() {
        let path = a.model.spec.clone().unwrap_or_default();
        let n = a
            .entities
            .as_deref()
            .or(a.output.rows.as_deref())
            .context("--entities is required with a relational spec")?;
        let n = parse_rows(n)?;
        return crate::entities::run(&a, spec, &path, n).await;
    }
    if a.entities.is_some() {
        bail!(
            "--entities needs a relational spec (`--spec` with `tables:`); use --rows for one table"
        );
    }
    let target = job_target(&a.output, storage_options(&a.input.storage_options)?)?;
    // Refuses a finished output (unless --overwrite) before spending time and budget on the fit,
    // and resumes an unfinished run of the same job from its stored model.
    let model = match target.resumable_model().await? {
        Some(model) => {
            tracing::info!("the output holds an unfinished run of this job: resuming it");
            model
        }
        None => fit(&a.input, &a.privacy, &a.model, &a.llm, a.output.seed).await?,
    };
    let llm = llm_runtime(&model, a.llm.llm.as_deref(), &a.llm_run).await?;
    let mut serving = embedded(a.workers, llm, &a.llm_run)?;
    if model
        .llm
        .as_ref()
        .is_some_and(|f| f.exemplars == Exemplars::KnnReal)
    {
        let mut opts = read_options(&a.input)?;
        opts.column_types = spec_types(&load_spec(&a.model)?)?;
        let (_, batches) = read_all(input_of(&a.input)?, &opts).await?;
        serving.real_rows = Some(Arc::new(batches));
    }
    run_job(model, &target, serving).await
}

async fn sample_cmd(a: SampleArgs) -> Result<()> {
    let model = match load_any_model(&a.model)? {
        AnyModel::Table(m) => *m,
        AnyModel::Entities(model) => {
            let writer = match &a.llm {
                Some(path) => Some(crate::entities::writer(&model, path, &a.llm_run, false).await?),
                None => None,
            };
            let n = parse_rows(
                a.output
                    .rows
                    .as_deref()
                    .context("--rows (entities) is required")?,
            )?;
            return crate::entities::sample(
                *model,
                &a.output,
                storage_options(&a.storage_options)?,
                n,
                None,
                writer,
            )
            .await;
        }
    };
    let target = job_target(&a.output, storage_options(&a.storage_options)?)?;
    let llm = llm_runtime(&model, a.llm.as_deref(), &a.llm_run).await?;
    run_job(model, &target, embedded(a.workers, llm, &a.llm_run)?).await
}

/// A job run in this process: the coordinator on a loopback port, `workers` workers beside it.
fn embedded(
    workers: Option<usize>,
    llm: Option<Arc<LlmRuntime>>,
    run: &LlmRunArgs,
) -> Result<Serving> {
    let workers = workers.unwrap_or(if llm.is_some() { 1 } else { 2 });
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    Ok(Serving {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        token: fresh_token(),
        tls: None,
        ready: Ready::default(),
        workers,
        linger: Duration::ZERO,
        llm,
        llm_batch: run.llm_batch,
        real_rows: None,
    })
}

fn job_target(o: &OutputArgs, storage_options: Vec<(String, String)>) -> Result<JobTarget> {
    let rows = parse_rows(o.rows.as_deref().context("--rows is required")?)?;
    let shard_rows = o.shard_rows.unwrap_or(1_000_000);
    if shard_rows == 0 {
        bail!("--shard-rows must be positive");
    }
    Ok(JobTarget {
        output: o.output.clone(),
        storage_options,
        rows,
        shard_rows,
        seed: o.seed,
        overwrite: o.overwrite,
        lease: Duration::from_secs(30),
    })
}

fn seconds(what: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{what} must be a positive number of seconds, got {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

async fn coordinator(a: CoordinatorArgs) -> Result<()> {
    let spec = load_spec(&a.model)?;
    let relational = !spec.tables.is_empty();
    let entity_llm = a.llm.llm.as_ref().filter(|p| p.as_os_str() != "none");
    if relational && entity_llm.is_some() && a.llm.exemplars == ExemplarsArg::KnnReal {
        bail!(
            "knn-real exemplars need the real tables beside the LLM, so such a relational run is embedded only: use `chimera run --spec ... --entities N --llm MODEL --exemplars knn-real`"
        );
    }
    let token = read_token(&a.token_file)?;
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).with_context(|| format!("cannot read {}", c.display()))?,
            std::fs::read(k).with_context(|| format!("cannot read {}", k.display()))?,
        )),
        _ => None,
    };
    let storage = storage_options(&a.input.storage_options)?;
    let mut target = job_target(&a.output, storage.clone())?;
    if relational && a.output.shard_rows.is_none() {
        target.shard_rows = crate::entities::DEFAULT_SHARD_ENTITIES;
    }
    target.lease = seconds("--lease-timeout", a.lease_timeout)?;
    let linger = Duration::from_secs_f64(a.linger.max(0.0));
    // Probes answer from the start: alive while the output is checked and the model fitted
    // (which can take long), ready once the job is served.
    let ready = Ready::default();
    if let Some(addr) = a.health_listen {
        health::serve(addr, ready.clone()).await?;
    }
    // With a relational spec `--rows` counts entities; every shard writes a part per table.
    let model = match target.resumable_job_model().await? {
        Some(model) if matches!(model, JobModel::Entities(_)) == relational => {
            tracing::info!("the output holds an unfinished run of this job: resuming it");
            model
        }
        _ if relational => {
            let path = a
                .model
                .spec
                .as_deref()
                .context("a relational run needs --spec")?;
            let (mut model, _) =
                crate::entities::fit(&a.input, &a.privacy, &a.model, spec, path, a.output.seed)
                    .await?;
            // Workers load the LLM themselves (`chimera worker --llm`); the model names it.
            if let Some(llm) = entity_llm {
                crate::entities::attach_llm(&mut model, llm, a.llm.exemplars);
            }
            model.into()
        }
        _ => fit(&a.input, &a.privacy, &a.model, &a.llm, a.output.seed)
            .await?
            .into(),
    };
    let public = match &model {
        JobModel::Entities(m) => {
            let opts = ReadOptions {
                storage_options: storage,
                ..ReadOptions::default()
            };
            crate::entities::public_tables(m, &opts).await?
        }
        JobModel::Table(_) => Vec::new(),
    };
    let serving = Serving {
        listen: a.listen,
        token,
        tls,
        ready,
        workers: 0,
        linger,
        llm: None,
        llm_batch: 0,
        real_rows: None,
    };
    run_job_model(model, public, &target, serving).await
}

async fn worker_cmd(a: WorkerArgs) -> Result<()> {
    let tls_ca = match &a.tls_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let options = WorkerOptions {
        coordinator: a.coordinator.clone(),
        token: read_token(&a.token_file)?,
        tls_ca,
        tls_domain: a.tls_domain.clone(),
        name: a.name.clone().unwrap_or_else(|| "worker".into()),
        threads: rayon::current_num_threads(),
        storage_options: storage_options(&a.storage_options)?,
        connect_for: seconds("--connect-timeout", a.connect_timeout)?,
        llm: match &a.llm {
            Some(p) => Some(load_llm(p, &a.llm_run).await?),
            None => None,
        },
        llm_batch: a.llm_run.llm_batch,
        real_rows: match &a.real_input {
            Some(input) => {
                let opts = ReadOptions::default();
                Some(Arc::new(
                    read_all(input, &opts)
                        .await
                        .context("reading --real-input")?
                        .1,
                ))
            }
            None => None,
        },
    };
    let report = worker(options, a.health_listen).await?;
    if let Some(path) = &a.report {
        write_atomically(path, &serde_json::to_vec(&report)?)?;
    }
    Ok(())
}

async fn infer_spec(a: InferSpecArgs) -> Result<()> {
    let opts = ReadOptions {
        storage_options: storage_options(&a.storage_options)?,
        ..ReadOptions::default()
    };
    // Local paths absolute, so the spec works wherever it is saved.
    let inputs: Vec<String> = a
        .inputs
        .iter()
        .map(|i| match std::fs::canonicalize(i) {
            Ok(p) if !i.contains("://") => p.to_string_lossy().into_owned(),
            _ => i.clone(),
        })
        .collect();
    let yaml = chimera_coordinator::entities::infer_spec(&inputs, &opts).await?;
    print!("{yaml}");
    Ok(())
}

/// A saved model of one table or of entities.
enum AnyModel {
    Table(Box<Model>),
    Entities(Box<chimera_core::relational::EntityModel>),
}

/// Reads a model file of either kind, telling them apart by their `format`.
fn load_any_model(path: &Path) -> Result<AnyModel> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    let entities = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .is_some_and(|v| v["format"] == chimera_core::relational::ENTITY_MODEL_FORMAT);
    let context = || format!("model {}", path.display());
    Ok(if entities {
        AnyModel::Entities(Box::new(
            chimera_core::relational::EntityModel::from_json(&bytes).with_context(context)?,
        ))
    } else {
        AnyModel::Table(Box::new(Model::from_json(&bytes).with_context(context)?))
    })
}

fn inspect(a: InspectArgs) -> Result<()> {
    let model = match load_any_model(&a.model)? {
        AnyModel::Table(m) => *m,
        AnyModel::Entities(m) => return inspect_entities(&m, a.json),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary(&model)?)?);
        return Ok(());
    }
    print_model(&model);
    Ok(())
}

/// An entity model: the tree of tables, what the fit changed, then every network.
fn inspect_entities(model: &chimera_core::relational::EntityModel, json: bool) -> Result<()> {
    let tables = &model.tree.tables;
    let parent = |t: usize| tables[t].parent.map(|p| tables[p].name.clone());
    if json {
        let mut models = serde_json::Map::new();
        models.insert(tables[0].name.clone(), summary(&model.flat)?);
        for t in &model.tables {
            if let Some(m) = &t.sequence {
                models.insert(t.name.clone(), summary(m)?);
            }
        }
        let tree: Vec<serde_json::Value> = (0..tables.len())
            .map(|t| {
                serde_json::json!({
                    "table": tables[t].name,
                    "parent": parent(t),
                    "max_children": model.tables[t].max_children,
                })
            })
            .collect();
        let out = serde_json::json!({
            "format": model.format,
            "tables": tree,
            "public": model.public.iter().map(|p| &p.name).collect::<Vec<_>>(),
            "privacy": model.privacy,
            "notes": model.notes,
            "models": models,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("entity: {} tables", tables.len());
    for (t, node) in tables.iter().enumerate() {
        let table = &model.tables[t];
        match parent(t) {
            None => println!("  {} (root)", node.name),
            Some(p) => println!(
                "  {} <- {} (at most {} per parent)",
                node.name, p, table.max_children
            ),
        }
        // The rules the entity keeps by construction, and how fresh keys look.
        for (_, rc) in &table.row {
            match rc {
                RowColumn::First {
                    column,
                    anchor: Some(a),
                    anchor_is_year,
                    ends_at,
                } => {
                    let year = if *anchor_is_year { " (a year)" } else { "" };
                    println!(
                        "    first {column} placed from {}{year}",
                        a.columns().join(", else ")
                    );
                    if let Some(e) = ends_at {
                        println!("    last {column} placed at the parent's {e}");
                    }
                }
                RowColumn::AfterLast {
                    column,
                    child,
                    base,
                } => println!("    {column} after the latest {child}.{base}"),
                RowColumn::Set { columns } => println!(
                    "    {} set or empty as {} says (drawn first)",
                    columns.join(" and "),
                    chimera_core::relational::set_column(&columns[0])
                ),
                RowColumn::Band { column, cuts } => println!(
                    "    {column} drawn within a band of {} (cut at {}; drawn first)",
                    chimera_core::relational::band_column(column),
                    cuts.iter()
                        .map(|c| chimera_core::domain::number_label(*c))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => {}
            }
        }
        for (column, value) in &table.last_when {
            println!("    {column} = {value} only on a parent's last row");
        }
        for (column, value) in &table.last_is {
            println!("    {column} = {value} on every parent's last row");
        }
        for (column, condition, value) in &table.empty_when {
            println!("    {column} empty where {condition} = {value}");
        }
        for column in &table.required {
            let elsewhere = table.empty_when.iter().any(|(c, ..)| c == column);
            let elsewhere = if elsewhere { " elsewhere" } else { "" };
            println!("    {column} never empty{elsewhere}");
        }
        for column in &table.same_for_siblings {
            println!("    {column} the same on every row of a parent (copied from the first)");
        }
        if let (Some(f), Some(pk)) = (&table.key_format, &table.primary_key) {
            println!("    fresh {pk} keys like {f}");
        }
    }
    for p in &model.public {
        println!("  {} (public, copied)", p.name);
    }
    for n in &model.notes {
        println!("  note: {n}");
    }
    println!(
        "
== the flat entity ({})",
        tables[0].name
    );
    print_model(&model.flat);
    for t in &model.tables {
        if let Some(m) = &t.sequence {
            println!(
                "
== {} given its parent and previous sibling",
                t.name
            );
            print_model(m);
        }
    }
    Ok(())
}

/// The text form of `inspect`.
fn print_model(model: &Model) {
    println!(
        "table `{}`: {} columns, ~{:.0} rows seen",
        model.table,
        model.columns.len(),
        model.rows
    );
    match (&model.privacy.mode, &model.privacy.ledger) {
        (PrivacyMode::Dp { epsilon, delta }, Some(l)) => {
            println!(
                "privacy: ({epsilon}, {delta:e})-DP; zCDP rho spent {:.6} of {:.6}",
                l.spent(),
                l.rho_total
            );
            for c in &l.charges {
                println!("  {:<50} rho {:.6}", c.stage, c.rho);
            }
        }
        _ => println!("privacy: none (fitted with --no-dp)"),
    }
    for n in &model.privacy.notes {
        println!("  note: {n}");
    }
    println!("\ncolumns:");
    for c in &model.columns {
        let domain = c.encoding.as_ref().map(|e| {
            let l = e.labels();
            let shown: Vec<&str> = l.iter().take(6).map(|s| s.as_str()).collect();
            format!(
                "{} codes: {}{}",
                l.len(),
                shown.join(", "),
                if l.len() > 6 { ", ..." } else { "" }
            )
        });
        println!(
            "  {:<20} {:<11} {:<28} {}",
            c.schema.name,
            c.role.to_string(),
            c.reason,
            domain.unwrap_or_else(|| match &c.format {
                Some(f) => format!("regenerated as {f}"),
                None => "regenerated".into(),
            })
        );
    }
    println!("\nnetwork (sampling order):");
    for n in &model.network.nodes {
        let name = |a: usize| model.columns[model.attributes[a]].schema.name.as_str();
        let parents: Vec<&str> = n.parents.iter().map(|&p| name(p)).collect();
        println!(
            "  {:<20} <- {}",
            name(n.child),
            if parents.is_empty() {
                "(root)".to_string()
            } else {
                parents.join(", ")
            }
        );
    }
}

/// A JSON summary of a model for `inspect --json`.
pub fn summary(model: &Model) -> Result<serde_json::Value> {
    let name = |a: usize| model.columns[model.attributes[a]].schema.name.clone();
    Ok(serde_json::json!({
        "table": model.table,
        "digest": model.digest()?,
        "rows": model.rows,
        "privacy": {
            "mode": match model.privacy.mode { PrivacyMode::Dp { .. } => "dp", PrivacyMode::None => "none" },
            "epsilon": match model.privacy.mode { PrivacyMode::Dp { epsilon, .. } => Some(epsilon), _ => None },
            "delta": match model.privacy.mode { PrivacyMode::Dp { delta, .. } => Some(delta), _ => None },
            "rho_spent": model.privacy.ledger.as_ref().map(|l| l.spent()),
            "rho_total": model.privacy.ledger.as_ref().map(|l| l.rho_total),
            "charges": model.privacy.ledger.as_ref().map(|l| l.charges.clone()),
            "notes": model.privacy.notes,
        },
        "columns": model.columns.iter().map(|c| serde_json::json!({
            "name": c.schema.name,
            "type": c.schema.arrow_type,
            "role": c.role.to_string(),
            "reason": c.reason,
            "codes": c.encoding.as_ref().map(|e| e.labels()),
            "format": c.format.as_ref().map(|f| f.to_string()),
        })).collect::<Vec<_>>(),
        "edges": model.network.nodes.iter().map(|n| serde_json::json!({
            "child": name(n.child),
            "parents": n.parents.iter().map(|&p| name(p)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
}

/// The manifest of a finished chimera output folder; `None` when `path` holds none.
pub fn finished_manifest(path: &str) -> Result<Option<Manifest>> {
    let manifest = Path::new(path).join(MANIFEST_FILE);
    if !manifest.exists() {
        return Ok(None);
    }
    let bytes =
        std::fs::read(&manifest).with_context(|| format!("cannot read {}", manifest.display()))?;
    let m = Manifest::from_json(&bytes, &manifest.display().to_string())?;
    if !m.complete {
        bail!("{path} holds an unfinished chimera run (no _SUCCESS); run it again first");
    }
    Ok(Some(m))
}

/// The privacy guarantee a run's manifest states, for the evaluation report.
pub fn guarantee(m: &Manifest) -> chimera_eval::Guarantee {
    chimera_eval::Guarantee {
        mode: match m.privacy.mode {
            chimera_storage::PrivacyMode::Dp => "dp",
            chimera_storage::PrivacyMode::None => "none",
        }
        .to_owned(),
        epsilon: m.privacy.epsilon,
        delta: m.privacy.delta,
        notes: m.privacy.notes.clone(),
    }
}

/// A chimera output folder reads as its single table's folder, with the privacy guarantee
/// its manifest states; any other path reads as itself.
fn resolve_run_folder(path: &str) -> Result<(String, Option<chimera_eval::Guarantee>)> {
    let Some(m) = finished_manifest(path)? else {
        return Ok((path.to_string(), None));
    };
    if m.tables.len() != 1 {
        bail!(
            "{path} holds {} tables; name one folder, or pass the run's --spec to evaluate them all",
            m.tables.len()
        );
    }
    let table = m.tables.keys().next().cloned().unwrap_or_default();
    Ok((
        Path::new(path).join(table).to_string_lossy().into_owned(),
        Some(guarantee(&m)),
    ))
}

async fn eval(a: EvalArgs) -> Result<()> {
    if let Some(spec) = &a.spec {
        return crate::eval_entities::eval(&a, spec).await;
    }
    let Some(real_path) = &a.real else {
        bail!("--real is needed (or --spec for relational entities)");
    };
    let opts = ReadOptions::default();
    let (real_path, _) = resolve_run_folder(real_path).context("--real")?;
    let (_, real) = read_all(&real_path, &opts)
        .await
        .context("reading --real")?;
    let (synthetic_path, guarantee) = resolve_run_folder(&a.synthetic)?;
    let (_, synthetic) = read_all(&synthetic_path, &opts)
        .await
        .context("reading --synthetic")?;
    let test = match &a.test {
        Some(t) => Some(read_all(t, &opts).await.context("reading --test")?.1),
        None => None,
    };
    // Columns the run regenerated as fresh identifiers say nothing of the real ones.
    let fresh = run_identifiers(&a.synthetic)?;
    let (real, synthetic, test) = if fresh.is_empty() {
        (real, synthetic, test)
    } else {
        let drop = |b: &[RecordBatch]| chimera_eval::without(b, &fresh);
        (drop(&real), drop(&synthetic), test.as_deref().map(drop))
    };
    let input = chimera_eval::EvalInput {
        real: &real,
        synthetic: &synthetic,
        test: test.as_deref(),
        target: a.target.as_deref(),
        seed: a.seed,
    };
    let quantile = chimera_eval::EvalOptions {
        discretization: chimera_eval::Discretization::Quantile,
        ..chimera_eval::EvalOptions::default()
    };
    let mut report =
        tokio::task::block_in_place(|| chimera_eval::evaluate_with(&input, &quantile))?;
    report.guarantee = guarantee;
    if !fresh.is_empty() {
        let named: Vec<String> = fresh.iter().map(|c| format!("`{c}`")).collect();
        report.notes.push(format!(
            "{} regenerated as fresh identifiers by the run (its model says so), so left out",
            named.join(", ")
        ));
    }
    if a.judge.is_some() || a.generator.is_some() {
        crate::eval_llm::realism(&a, &real, &synthetic, test.as_deref(), &mut report).await?;
    }
    let html = || chimera_eval::render_html(&report, &report_title(&a));
    write_eval(&a, &serde_json::to_value(&report)?, html)
}

/// The columns a chimera output folder's model regenerates as identifiers (none for another
/// path, or a relational model: `--spec` evaluates those).
fn run_identifiers(path: &str) -> Result<Vec<String>> {
    let file = Path::new(path).join(chimera_storage::MODEL_FILE);
    let Ok(bytes) = std::fs::read(&file) else {
        return Ok(Vec::new());
    };
    let Ok(model) = Model::from_json(&bytes) else {
        return Ok(Vec::new());
    };
    Ok(model
        .columns
        .iter()
        .filter(|c| c.role == Role::Identifier)
        .map(|c| c.schema.name.clone())
        .collect())
}

pub fn report_title(a: &EvalArgs) -> String {
    a.title
        .clone()
        .unwrap_or_else(|| format!("chimera eval: {}", a.synthetic))
}

/// Writes the HTML report (`--report`) and the JSON (`--json`, else standard output unless
/// there is a report).
pub fn write_eval(a: &EvalArgs, json: &serde_json::Value, html: impl Fn() -> String) -> Result<()> {
    if let Some(path) = &a.report {
        write_atomically(path, html().as_bytes())?;
    }
    let text = serde_json::to_string_pretty(json)? + "\n";
    match &a.json {
        Some(path) => write_atomically(path, text.as_bytes())?,
        None if a.report.is_none() => print!("{text}"),
        None => {}
    }
    Ok(())
}

async fn split(a: SplitArgs) -> Result<()> {
    if !(a.test_fraction > 0.0 && a.test_fraction < 1.0) {
        bail!(
            "--test-fraction must be between 0 and 1, got {}",
            a.test_fraction
        );
    }
    let opts = read_options(&a.input)?;
    let (source, batches) = read_all(input_of(&a.input)?, &opts).await?;
    let schema = source.schema();
    let all = arrow::compute::concat_batches(&schema, &batches)?;
    let n = all.num_rows();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    let mut rng = chimera_core::rng::stream(a.seed, &[0x5B117]);
    use rand::seq::SliceRandom;
    idx.shuffle(&mut rng);
    let n_test = (n as f64 * a.test_fraction).round() as usize;
    let (test_idx, train_idx) = idx.split_at(n_test);
    let take = |ix: &[u32]| -> Result<RecordBatch> {
        let mut ix = ix.to_vec();
        ix.sort_unstable();
        let ix = UInt32Array::from(ix);
        Ok(arrow::compute::take_record_batch(&all, &ix)?)
    };
    write_parquet(&a.train, &take(train_idx)?)?;
    write_parquet(&a.test, &take(test_idx)?)?;
    tracing::info!(train = n - n_test, test = n_test, "split");
    Ok(())
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    w.write(batch)?;
    w.close()?;
    Ok(())
}
