//! `chimera run` with a relational spec (`tables:`): fits the entity models and samples whole
//! entities in this process, shard by shard, into one Parquet folder per table. Every part goes
//! through an attempt-scoped upload and a commit, the manifest lists them, `_SUCCESS` comes last.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chimera_coordinator::entities::fit_entities;
use chimera_coordinator::job::{
    JobModel, JobSpec, PublicPart, entities_manifest_privacy, stored_run,
};
use chimera_coordinator::read::{ReadOptions, read_all};
use chimera_core::plan::plan;
use chimera_core::relational::EntityModel;
use chimera_core::spec::Spec;
use chimera_storage::{Location, Manifest, ManifestTable, Output};
use chimera_worker::entities::EntitySampler;

use crate::cli::{
    ExemplarsArg, InputArgs, LlmRunArgs, ModelArgs, OutputArgs, PrivacyArgs, RunArgs,
};
use crate::progress::Bars;
use chimera_core::model::Exemplars;
use chimera_core::relational::{EntityLlm, RealEntities};
use chimera_worker::llm::children::ChildWriter;

/// Attempt number of every part of an in-process relational run. A shard's committed path
/// depends on the shard only and its bytes on the seed, so a resumed run that samples a shard
/// again writes the same part.
const ATTEMPT: u32 = 1;
/// Entities per shard unless `--shard-rows` says otherwise.
pub const DEFAULT_SHARD_ENTITIES: u64 = 100_000;

/// Resolves each table's `input` against the spec's folder (URLs and absolute paths stay).
pub fn table_inputs(spec: &Spec, spec_path: &Path) -> Result<BTreeMap<String, String>> {
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    for (name, t) in &spec.tables {
        let Some(input) = &t.input else {
            bail!(
                "spec {}: table `{name}` has no `input` (a path, relative to the spec, or a URL)",
                spec_path.display()
            );
        };
        let resolved = if input.contains("://") || Path::new(input).is_absolute() {
            input.clone()
        } else {
            base.join(input).to_string_lossy().into_owned()
        };
        out.insert(name.clone(), resolved);
    }
    Ok(out)
}

/// Entities per shard, checked against the number of entities.
fn shard_size(o: &OutputArgs, entities: u64) -> Result<u64> {
    let shard_rows = o.shard_rows.unwrap_or(DEFAULT_SHARD_ENTITIES);
    if shard_rows == 0 {
        bail!("--shard-rows must be positive");
    }
    if entities.div_ceil(shard_rows) > chimera_core::plan::MAX_SHARDS {
        bail!(
            "{entities} entities in shards of {shard_rows} is too many shards; raise --shard-rows"
        );
    }
    Ok(shard_rows)
}

/// The stored model and progress manifest of an unfinished relational run of the same job in
/// `output` (the same entities, shard size and seed, and a manifest written from that model):
/// resuming reuses the model, so the privacy budget is not spent a second time. A finished
/// output is refused unless `--overwrite`.
async fn unfinished_run(
    output: &Output,
    o: &OutputArgs,
    entities: u64,
) -> Result<Option<(EntityModel, Manifest)>> {
    let spec = JobSpec {
        rows: entities,
        shard_rows: shard_size(o, entities)?,
        seed: o.seed,
        // Leases play no part in an embedded relational run.
        lease: Duration::ZERO,
        heartbeat: Duration::ZERO,
        overwrite: o.overwrite,
    };
    Ok(match stored_run(output, &spec, None).await? {
        Some((JobModel::Entities(model), manifest)) => Some((*model, manifest)),
        _ => None,
    })
}

/// The shards every sampled table of `model` has committed in `manifest`.
fn committed_shards(model: &EntityModel, manifest: &Manifest) -> BTreeSet<u32> {
    let mut shards: Option<BTreeSet<u32>> = None;
    for t in &model.tables {
        let here: BTreeSet<u32> = manifest
            .tables
            .get(&t.name)
            .map(|m| m.parts.iter().map(|p| p.shard).collect())
            .unwrap_or_default();
        shards = Some(match shards {
            None => here,
            Some(s) => s.intersection(&here).copied().collect(),
        });
    }
    shards.unwrap_or_default()
}

/// Fits and samples `entities` entities into the output; resumes an unfinished run of the same
/// job from its stored model (with the same `--llm`; not with `knn-real` exemplars, which need
/// the real tables).
pub async fn run(a: &RunArgs, spec: Spec, spec_path: &Path, entities: u64) -> Result<()> {
    let llm = a.llm.llm.as_ref().filter(|p| p.as_os_str() != "none");
    shard_size(&a.output, entities)?;
    let storage = crate::commands::storage_options(&a.input.storage_options)?;
    let output = Output::new(Location::parse(&a.output.output, &storage)?);
    if let Some((model, manifest)) = unfinished_run(&output, &a.output, entities).await? {
        let file = |p: &Path| p.file_name().map(|f| f.to_string_lossy().into_owned());
        let same_llm = match (&model.llm, llm) {
            (None, None) => true,
            (Some(stored), Some(path)) => {
                file(path).as_deref() == Some(stored.model.as_str())
                    && stored.exemplars != Exemplars::KnnReal
                    && stored.exemplars == exemplars_of(a.llm.exemplars)
            }
            _ => false,
        };
        if same_llm {
            let writer = match llm {
                Some(path) => Some(writer(&model, path, &a.llm_run, true).await?),
                None => None,
            };
            let previous = Some(manifest);
            let prepared = Some((output, previous));
            return sample(model, &a.output, storage, entities, prepared, writer).await;
        }
    }
    // A finished output is refused before any budget is spent; an unfinished one is cleared.
    output.prepare(a.output.overwrite).await?;
    let (mut model, real) = fit(
        &a.input,
        &a.privacy,
        &a.model,
        spec,
        spec_path,
        a.output.seed,
    )
    .await?;
    let writer = match llm {
        Some(path) => {
            attach_llm(&mut model, path, a.llm.exemplars);
            let mut w = writer(&model, path, &a.llm_run, true).await?;
            if w.exemplars == Exemplars::KnnReal {
                w.real = Some(Arc::new(real));
            }
            Some(w)
        }
        None => None,
    };
    sample(
        model,
        &a.output,
        storage,
        entities,
        Some((output, None)),
        writer,
    )
    .await
}

/// Records in `model` that the LLM at `path` writes the child rows, with these exemplars.
pub fn attach_llm(model: &mut EntityModel, path: &Path, exemplars: ExemplarsArg) {
    let exemplars = exemplars_of(exemplars);
    if exemplars == Exemplars::KnnReal {
        model.privacy.notes.push(
            "child rows: the LLM was shown real rows (--exemplars knn-real); the DP guarantee \
             does not cover the output"
                .into(),
        );
    }
    model.llm = Some(EntityLlm {
        model: path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into(),
        ),
        exemplars,
    });
}

fn exemplars_of(arg: ExemplarsArg) -> Exemplars {
    match arg {
        ExemplarsArg::None => Exemplars::None,
        ExemplarsArg::Synthetic => Exemplars::Synthetic,
        ExemplarsArg::KnnReal => Exemplars::KnnReal,
    }
}

/// The LLM that writes child rows, loaded for `model` (which names it).
pub async fn writer(
    model: &EntityModel,
    path: &Path,
    run: &LlmRunArgs,
    from_run: bool,
) -> Result<ChildWriter> {
    let Some(llm) = &model.llm else {
        bail!(
            "the entity model was fitted without --llm: its child rows come from the sequence models"
        );
    };
    if llm.exemplars == Exemplars::KnnReal && !from_run {
        bail!(
            "the entity model's LLM takes knn-real exemplars, which need the real tables: sample it with `chimera run`"
        );
    }
    Ok(ChildWriter {
        runtime: crate::commands::load_llm(path, run).await?,
        exemplars: llm.exemplars,
        real: None,
        max_batch: run.llm_batch,
    })
}

/// Reads the spec's tables and fits the entity models.
pub async fn fit(
    input: &InputArgs,
    privacy: &PrivacyArgs,
    model_args: &ModelArgs,
    spec: Spec,
    spec_path: &Path,
    seed: u64,
) -> Result<(EntityModel, RealEntities)> {
    if input.input.is_some() {
        bail!("--input is not used with a relational spec: each table's `input` is in the spec");
    }
    let storage = crate::commands::storage_options(&input.storage_options)?;
    let inputs = table_inputs(&spec, spec_path)?;
    let settings = crate::commands::fit_settings(privacy, model_args)?;
    let mut opts = crate::commands::read_options(input)?;
    opts.storage_options = storage;
    let started = Instant::now();
    let (model, real) = fit_entities(&spec, &inputs, &opts, settings, seed, &Bars::new()).await?;
    tracing::info!(
        tables = model.tables.len(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "fitted the entity models"
    );
    for note in model.notes.iter().chain(&model.privacy.notes) {
        tracing::info!("{note}");
    }
    Ok((model, real))
}

/// Reads the public reference tables of `model` again from their recorded inputs, with their
/// declared column types, to copy them to the output.
pub async fn public_tables(model: &EntityModel, opts: &ReadOptions) -> Result<Vec<PublicPart>> {
    let mut out = Vec::new();
    for p in &model.public {
        let mut opts = opts.clone();
        opts.column_types = chimera_coordinator::read::declared_types(&p.columns)?;
        let (source, batches) = read_all(&p.input, &opts)
            .await
            .with_context(|| format!("public table `{}`", p.name))?;
        out.push(PublicPart {
            name: p.name.clone(),
            schema: source.schema(),
            batches,
        });
    }
    Ok(out)
}

/// Samples `entities` entities of `model` into the output. `prepared` is the output when the
/// caller already made it ready, with the progress manifest of the unfinished run it resumes
/// (if any); without it, an unfinished run of this same model and job is resumed, a finished
/// one refused (unless `--overwrite`), and anything else cleared.
pub async fn sample(
    model: EntityModel,
    o: &OutputArgs,
    storage: Vec<(String, String)>,
    entities: u64,
    prepared: Option<(Output, Option<Manifest>)>,
    writer: Option<ChildWriter>,
) -> Result<()> {
    if model.llm.is_some() && writer.is_none() {
        bail!("the entity model's child rows are written by an LLM: pass --llm with its path");
    }
    let shard_rows = shard_size(o, entities)?;
    let (output, previous) = match prepared {
        Some(p) => p,
        None => {
            let out = Output::new(Location::parse(&o.output, &storage)?);
            let digest = model.digest()?;
            match unfinished_run(&out, o, entities).await? {
                Some((stored, m)) if stored.digest()? == digest => (out, Some(m)),
                _ => {
                    out.prepare(o.overwrite).await?;
                    (out, None)
                }
            }
        }
    };
    let opts = ReadOptions {
        storage_options: storage,
        ..ReadOptions::default()
    };
    let resumed = previous.is_some();
    let mut manifest = match previous {
        Some(m) => m,
        None => {
            output.write_model(&model.to_json()?).await?;
            let mut m = Manifest::new(
                model.digest()?,
                o.seed,
                entities_manifest_privacy(&model),
                shard_rows,
            );
            m.rows_requested = entities;
            m.table = model.tables[0].name.clone();
            for t in &model.tables {
                m.tables.insert(
                    t.name.clone(),
                    ManifestTable::new(t.columns.iter().map(|c| c.name.clone()).collect()),
                );
            }
            m
        }
    };
    let done = committed_shards(&model, &manifest);
    if resumed {
        tracing::info!(
            committed = done.len(),
            "the output holds an unfinished run of this job: resuming it from its stored model (no second fit, no budget spent again)"
        );
        // Parts committed after the last manifest write (a shard cut short) are sampled again;
        // public tables are written again at the end.
        for (name, t) in manifest.tables.iter_mut() {
            let sampled = model.tables.iter().any(|m| &m.name == name);
            t.parts.retain(|p| sampled && done.contains(&p.shard));
            t.rows = t.parts.iter().map(|p| p.rows).sum();
        }
    }
    let public = public_tables(&model, &opts).await?;
    for p in &public {
        manifest.tables.entry(p.name.clone()).or_insert_with(|| {
            ManifestTable::new(p.schema.fields().iter().map(|f| f.name().clone()).collect())
        });
    }
    output.write_manifest(&manifest).await?;

    let mut sampler = EntitySampler::new(Arc::new(model))?;
    if let Some(w) = writer {
        sampler = sampler.with_llm(w);
    }
    let sampler = Arc::new(sampler);
    let shards = plan(entities, shard_rows, o.seed);
    let bar = Bars::counter("entities", entities);
    let started = Instant::now();
    for shard in shards {
        if done.contains(&shard.shard) {
            bar.inc(shard.rows);
            continue;
        }
        let s = sampler.clone();
        let tables = tokio::task::spawn_blocking(move || s.sample(&shard))
            .await
            .context("sampling task")??;
        for (name, schema, batch) in tables {
            let part = output
                .write_attempt(&name, shard.shard, ATTEMPT, &schema, &[batch])
                .await?;
            let committed = output.commit_part(&part).await?;
            if let Some(t) = manifest.tables.get_mut(&name) {
                t.push_part(committed);
            }
        }
        output.write_manifest(&manifest).await?;
        bar.inc(shard.rows);
    }
    bar.finish_and_clear();
    // Public reference tables, as they are.
    for p in public {
        let part = output
            .write_attempt(&p.name, 0, ATTEMPT, &p.schema, &p.batches)
            .await?;
        let committed = output.commit_part(&part).await?;
        if let Some(t) = manifest.tables.get_mut(&p.name) {
            t.push_part(committed);
        }
    }
    output.finish(&manifest).await?;
    let rows: Vec<String> = manifest
        .tables
        .iter()
        .map(|(n, t)| format!("{n}: {}", t.rows))
        .collect();
    tracing::info!(
        entities,
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        output = %o.output,
        "wrote {}",
        rows.join(", ")
    );
    Ok(())
}
