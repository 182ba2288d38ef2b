//! `chimera run` with a relational spec (`tables:`): fits the entity models and samples whole
//! entities in this process, shard by shard, into one Parquet folder per table. Every part goes
//! through an attempt-scoped upload and a commit, the manifest lists them, `_SUCCESS` comes last.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chimera_coordinator::entities::fit_entities;
use chimera_coordinator::read::{ReadOptions, read_all};
use chimera_core::plan::plan;
use chimera_core::privacy::PrivacyMode;
use chimera_core::relational::EntityModel;
use chimera_core::spec::Spec;
use chimera_storage::{
    Location, Manifest, ManifestPrivacy, ManifestTable, Output, PrivacyMode as Mode,
};
use chimera_worker::entities::EntitySampler;

use crate::cli::{
    ExemplarsArg, InputArgs, LlmRunArgs, ModelArgs, OutputArgs, PrivacyArgs, RunArgs,
};
use crate::progress::Bars;
use chimera_core::model::Exemplars;
use chimera_core::relational::{EntityLlm, RealEntities};
use chimera_worker::llm::children::ChildWriter;

/// Attempt number of every part of an in-process relational run (it is never retried in place:
/// a failed run is cleared and started again).
const ATTEMPT: u32 = 1;
/// Entities per shard unless `--shard-rows` says otherwise.
const DEFAULT_SHARD_ENTITIES: u64 = 100_000;

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

fn manifest_privacy(model: &EntityModel) -> ManifestPrivacy {
    let mut notes = model.privacy.notes.clone();
    notes.extend(model.notes.iter().cloned());
    match model.privacy.mode {
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
                .chain(notes)
                .collect(),
        },
    }
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

/// Fits and samples `entities` entities into the output.
pub async fn run(a: &RunArgs, spec: Spec, spec_path: &Path, entities: u64) -> Result<()> {
    let llm = a.llm.llm.as_ref().filter(|p| p.as_os_str() != "none");
    shard_size(&a.output, entities)?;
    let storage = crate::commands::storage_options(&a.input.storage_options)?;
    let output = Output::new(Location::parse(&a.output.output, &storage)?);
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
            let exemplars = match a.llm.exemplars {
                ExemplarsArg::None => Exemplars::None,
                ExemplarsArg::Synthetic => Exemplars::Synthetic,
                ExemplarsArg::KnnReal => {
                    model.privacy.notes.push(
                        "child rows: the LLM was shown real rows (--exemplars knn-real); the \
                         DP guarantee does not cover the output"
                            .into(),
                    );
                    Exemplars::KnnReal
                }
            };
            model.llm = Some(EntityLlm {
                model: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |f| f.to_string_lossy().into(),
                ),
                exemplars,
            });
            let mut w = writer(&model, path, &a.llm_run, true).await?;
            if exemplars == Exemplars::KnnReal {
                w.real = Some(Arc::new(real));
            }
            Some(w)
        }
        None => None,
    };
    sample(model, &a.output, storage, entities, Some(output), writer).await
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

/// Samples `entities` entities of `model` into the output; `prepared` is the output when the
/// caller already made it ready (refused a finished run, cleared an unfinished one).
pub async fn sample(
    model: EntityModel,
    o: &OutputArgs,
    storage: Vec<(String, String)>,
    entities: u64,
    prepared: Option<Output>,
    writer: Option<ChildWriter>,
) -> Result<()> {
    if model.llm.is_some() && writer.is_none() {
        bail!("the entity model's child rows are written by an LLM: pass --llm with its path");
    }
    let shard_rows = shard_size(o, entities)?;
    let output = match prepared {
        Some(out) => out,
        None => {
            let out = Output::new(Location::parse(&o.output, &storage)?);
            out.prepare(o.overwrite).await?;
            out
        }
    };
    let opts = ReadOptions {
        storage_options: storage,
        ..ReadOptions::default()
    };
    let json = model.to_json()?;
    output.write_model(&json).await?;
    let mut manifest = Manifest::new(
        model.digest()?,
        o.seed,
        manifest_privacy(&model),
        shard_rows,
    );
    manifest.rows_requested = entities;
    manifest.table = model.tables[0].name.clone();
    for t in &model.tables {
        manifest.tables.insert(
            t.name.clone(),
            ManifestTable::new(t.columns.iter().map(|c| c.name.clone()).collect()),
        );
    }
    let mut public = Vec::new();
    for p in &model.public {
        let mut opts = opts.clone();
        opts.column_types = chimera_coordinator::read::declared_types(&p.columns)?;
        let (source, batches) = read_all(&p.input, &opts)
            .await
            .with_context(|| format!("public table `{}`", p.name))?;
        manifest.tables.insert(
            p.name.clone(),
            ManifestTable::new(
                source
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            ),
        );
        public.push((p.name.clone(), source.schema(), batches));
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
    for (name, schema, batches) in public {
        let part = output
            .write_attempt(&name, 0, ATTEMPT, &schema, &batches)
            .await?;
        let committed = output.commit_part(&part).await?;
        if let Some(t) = manifest.tables.get_mut(&name) {
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
