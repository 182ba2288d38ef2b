//! What each subcommand does.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use arrow::array::{RecordBatch, UInt32Array};
use chimera_coordinator::read::{ReadOptions, open_table, read_all};
use chimera_core::fit::FitSettings;
use chimera_core::model::Model;
use chimera_core::privacy::PrivacyMode;
use chimera_core::spec::Spec;
use chimera_worker::manifest::{
    Manifest, ManifestPrivacy, ManifestTable, PrivacyMode as ManifestMode,
};
use chimera_worker::output::OutputDir;
use chimera_worker::sample::{ShardSampler, plan};
use rayon::prelude::*;

use crate::cli::*;
use crate::progress::Bars;

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(a) => run(a).await,
        Command::Fit(a) => fit_cmd(a).await,
        Command::Sample(a) => sample_cmd(a),
        Command::Inspect(a) => inspect(a),
        Command::Eval(a) => eval(a).await,
        Command::Split(a) => split(a).await,
    }
}

fn read_options(a: &InputArgs) -> Result<ReadOptions> {
    let delimiter = match a.delimiter.as_deref() {
        None => None,
        Some("\\t") | Some("tab") | Some("\t") => Some(b'\t'),
        Some(d) if d.len() == 1 => Some(d.as_bytes()[0]),
        Some(d) => bail!("--delimiter must be one character (or \\t), got `{d}`"),
    };
    let storage_options = a
        .storage_options
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--storage-option must be KEY=VALUE, got `{kv}`"))
        })
        .collect::<Result<_>>()?;
    Ok(ReadOptions {
        delimiter,
        has_header: a.header,
        null_tokens: a.null_tokens.clone(),
        column_names: a.column_names.clone(),
        storage_options,
        ..ReadOptions::default()
    })
}

fn parse_rows(s: &str) -> Result<u64> {
    match s.trim().replace('_', "").parse::<i128>() {
        Ok(n) if n > 0 && n <= u64::MAX as i128 => Ok(n as u64),
        _ => bail!("--rows must be a positive whole number, got `{s}`"),
    }
}

fn fit_settings(p: &PrivacyArgs, m: &ModelArgs) -> Result<FitSettings> {
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
    seed: u64,
) -> Result<Model> {
    let settings = fit_settings(privacy, model)?;
    let spec = load_spec(model)?;
    let opts = read_options(input)?;
    let started = Instant::now();
    let source = open_table(&input.input, &opts).await?;
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
    let model = fit(&a.input, &a.privacy, &a.model, a.seed).await?;
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
    let rows = parse_rows(&a.output.rows)?;
    // Refuse a finished output folder before spending time (and budget) on the fit.
    if a.output.output.join("_SUCCESS").exists() && !a.output.overwrite {
        OutputDir::prepare(&a.output.output, false)?;
    }
    let model = fit(&a.input, &a.privacy, &a.model, a.output.seed).await?;
    let model = Arc::new(model);
    tokio::task::block_in_place(|| sample_model(model, rows, &a.output))
}

fn sample_cmd(a: SampleArgs) -> Result<()> {
    let rows = parse_rows(&a.output.rows)?;
    let model = load_model(&a.model)?;
    sample_model(Arc::new(model), rows, &a.output)
}

fn load_model(path: &Path) -> Result<Model> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    Model::from_json(&bytes).with_context(|| format!("model {}", path.display()))
}

/// Samples `rows` rows into the output folder, shard by shard, and commits the manifest.
fn sample_model(model: Arc<Model>, rows: u64, o: &OutputArgs) -> Result<()> {
    if o.shard_rows == 0 {
        bail!("--shard-rows must be positive");
    }
    let started = Instant::now();
    let out = OutputDir::prepare(&o.output, o.overwrite)?;
    let sampler = ShardSampler::new(model.clone())?;
    let schema = sampler.schema();
    let plans = plan(rows, o.shard_rows, o.seed);
    let bar = Bars::counter("sample", rows);
    let parts = plans
        .par_iter()
        .map(|p| -> Result<_> {
            let batches = sampler.sample(p)?;
            let part = out.write_part(&model.table, p.shard, 1, &schema, &batches)?;
            bar.inc(p.rows);
            Ok(part)
        })
        .collect::<Result<Vec<_>>>()?;
    bar.finish_and_clear();
    write_atomically(&o.output.join("_model.json"), &model.to_json()?)?;
    let privacy = match model.privacy.mode {
        PrivacyMode::Dp { epsilon, delta } => ManifestPrivacy {
            mode: ManifestMode::Dp,
            epsilon: Some(epsilon),
            delta: Some(delta),
            notes: model.privacy.notes.clone(),
        },
        PrivacyMode::None => ManifestPrivacy {
            mode: ManifestMode::None,
            epsilon: None,
            delta: None,
            notes: vec!["fitted with --no-dp: no privacy guarantee".into()],
        },
    };
    let mut manifest = Manifest::new(model.digest()?, o.seed, privacy, o.shard_rows);
    let mut table = ManifestTable::new(
        model
            .columns
            .iter()
            .map(|c| c.schema.name.clone())
            .collect(),
    );
    for p in parts {
        table.push_part(p);
    }
    if table.rows != rows {
        bail!(
            "internal error: wrote {} rows, {} requested",
            table.rows,
            rows
        );
    }
    manifest.tables.insert(model.table.clone(), table);
    out.commit(&manifest)?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        rows,
        seconds = format!("{secs:.2}"),
        rows_per_second = format!("{:.0}", rows as f64 / secs.max(1e-9)),
        output = %o.output.display(),
        "sampled"
    );
    Ok(())
}

fn inspect(a: InspectArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let summary = summary(&model)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
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
            domain.unwrap_or_else(|| "regenerated".into())
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
    Ok(())
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
        })).collect::<Vec<_>>(),
        "edges": model.network.nodes.iter().map(|n| serde_json::json!({
            "child": name(n.child),
            "parents": n.parents.iter().map(|&p| name(p)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
}

/// A chimera output folder reads as its single table's folder.
fn resolve_synthetic(path: &str) -> Result<String> {
    let p = Path::new(path);
    let manifest = p.join("_manifest.json");
    if manifest.exists() {
        let m = Manifest::load(&manifest)?;
        if m.tables.len() != 1 {
            bail!("{} holds {} tables; name one folder", path, m.tables.len());
        }
        if let Some(t) = m.tables.keys().next() {
            return Ok(p.join(t).to_string_lossy().into_owned());
        }
    }
    Ok(path.to_string())
}

async fn eval(a: EvalArgs) -> Result<()> {
    let opts = ReadOptions::default();
    let (_, real) = read_all(&a.real, &opts).await.context("reading --real")?;
    let (_, synthetic) = read_all(&resolve_synthetic(&a.synthetic)?, &opts)
        .await
        .context("reading --synthetic")?;
    let test = match &a.test {
        Some(t) => Some(read_all(t, &opts).await.context("reading --test")?.1),
        None => None,
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
    let report = tokio::task::block_in_place(|| chimera_eval::evaluate_with(&input, &quantile))?;
    let json = serde_json::to_value(&report)?;
    println!("{}", serde_json::to_string_pretty(&json)?);
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
    let (source, batches) = read_all(&a.input.input, &opts).await?;
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
