//! `chimera eval --spec`: relational entities against the real tables the spec names. Reads
//! each table (real from the spec's inputs, synthetic from the run's output folder), works out
//! the keys, links and datetime orders from the spec, and hands them to the eval crate.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use chimera_coordinator::read::{ReadOptions, declared_types, read_all};
use chimera_core::relational::EntityTree;
use chimera_core::spec::Spec;
use chimera_eval::{Link, Order, RelationalInput, RelationalTable};

use crate::cli::EvalArgs;
use crate::commands::{finished_manifest, guarantee, report_title, write_eval};
use crate::entities::table_inputs;

/// Evaluates the run in `a.synthetic` against the tables of the spec at `spec_path`.
pub async fn eval(a: &EvalArgs, spec_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(spec_path)
        .with_context(|| format!("cannot read the spec {}", spec_path.display()))?;
    let spec = Spec::from_yaml(&text).with_context(|| format!("spec {}", spec_path.display()))?;
    if spec.tables.is_empty() {
        bail!(
            "spec {} has no `tables:`; evaluate a single table with --real",
            spec_path.display()
        );
    }
    let tree = EntityTree::from_spec(&spec.tables)
        .with_context(|| format!("spec {}", spec_path.display()))?;
    let Some(manifest) = finished_manifest(&a.synthetic)? else {
        bail!(
            "{} is not a chimera output folder (no _manifest.json); --spec evaluates a whole run",
            a.synthetic
        );
    };
    let inputs = table_inputs(&spec, spec_path)?;

    // Real tables in entity order (parents first), so orphans are dropped top-down.
    let mut names: Vec<String> = tree.tables.iter().map(|t| t.name.clone()).collect();
    names.extend(tree.public.iter().cloned());
    let mut real: HashMap<String, Vec<RecordBatch>> = HashMap::new();
    let mut synthetic: HashMap<String, Vec<RecordBatch>> = HashMap::new();
    let mut notes = Vec::new();
    for name in &names {
        let ts = &spec.tables[name];
        let opts = ReadOptions {
            column_types: declared_types(&ts.columns)?,
            ..ReadOptions::default()
        };
        let (_, mut batches) = read_all(&inputs[name], &opts)
            .await
            .with_context(|| format!("reading the real table `{name}`"))?;
        let node = tree.index(name).map(|i| &tree.tables[i]);
        if let Some(parent) = node.and_then(|n| n.parent.map(|p| (n, &tree.tables[p]))) {
            let (child, parent) = parent;
            if ts.orphans == chimera_core::relational::Orphans::Drop {
                let parent_key = primary_key(&spec, &parent.name)?;
                let keys = chimera_eval::key_set(&real[&parent.name], &parent_key, &parent.name)?;
                let (kept, dropped) =
                    chimera_eval::resolving_rows(&batches, &child.parent_columns, name, &keys)?;
                if dropped > 0 {
                    notes.push(format!(
                        "{name}: {dropped} real rows whose `{}` does not resolve in `{}` were \
                         left out, as the spec's `orphans: drop` left them out of the model",
                        child.parent_columns.join(", "),
                        parent.name
                    ));
                }
                batches = kept;
            }
        }
        if !ts.public {
            let folder = Path::new(&a.synthetic).join(name);
            let (_, s) = read_all(&folder.to_string_lossy(), &ReadOptions::default())
                .await
                .with_context(|| format!("reading the synthetic table `{name}`"))?;
            synthetic.insert(name.clone(), s);
        }
        real.insert(name.clone(), batches);
    }

    let mut links = Vec::new();
    let mut orders = Vec::new();
    let mut tables = Vec::new();
    for name in &names {
        let ts = &spec.tables[name];
        let mut keys: Vec<String> = ts
            .primary_key
            .as_ref()
            .map(|k| k.columns())
            .unwrap_or_default();
        let entity_parent = tree
            .index(name)
            .and_then(|i| tree.tables[i].parent.map(|p| tree.tables[p].name.clone()));
        for fk in &ts.foreign_keys {
            let columns = fk.columns.columns();
            // A code of public reference data (an ICD code) is data, not a fresh identifier.
            let public = spec.tables.get(&fk.references).is_some_and(|t| t.public);
            if !public {
                keys.extend(columns.iter().cloned());
            }
            links.push(Link {
                child: name.clone(),
                parent: fk.references.clone(),
                parent_columns: primary_key(&spec, &fk.references)?,
                entity: entity_parent.as_deref() == Some(fk.references.as_str())
                    && tree
                        .index(name)
                        .is_some_and(|i| tree.tables[i].parent_columns == columns),
                columns,
            });
        }
        for (column, c) in &ts.columns {
            if let Some(earlier) = &c.after {
                orders.push(Order::Row {
                    table: name.clone(),
                    earlier: earlier.clone(),
                    later: column.clone(),
                });
            }
        }
        if let (Some(order_by), Some(i)) = (&ts.order_by, tree.index(name))
            && tree.tables[i].parent.is_some()
        {
            orders.push(Order::Siblings {
                table: name.clone(),
                parent_columns: tree.tables[i].parent_columns.clone(),
                order_by: order_by.clone(),
                after_previous: ts
                    .after_previous
                    .clone()
                    .unwrap_or_else(|| order_by.clone()),
            });
        }
        keys.sort();
        keys.dedup();
        tables.push(RelationalTable {
            name: name.clone(),
            real: &real[name],
            synthetic: synthetic.get(name).map_or(&[][..], Vec::as_slice),
            keys,
            public: ts.public,
        });
    }

    let input = RelationalInput {
        tables,
        links,
        orders,
        seed: a.seed,
    };
    let options = chimera_eval::EvalOptions {
        discretization: chimera_eval::Discretization::Quantile,
        ..chimera_eval::EvalOptions::default()
    };
    let report =
        tokio::task::block_in_place(|| chimera_eval::evaluate_relational(&input, &options))?;
    let mut json = serde_json::to_value(&report)?;
    json["guarantee"] = serde_json::to_value(guarantee(&manifest))?;
    json["notes"] = serde_json::to_value(&notes)?;
    let html = || {
        let mut report = report.clone();
        if let Some(first) = report.tables.first_mut() {
            first.report.guarantee = Some(guarantee(&manifest));
            first.report.notes.extend(notes.iter().cloned());
        }
        chimera_eval::render_relational_html(&report, &report_title(a))
    };
    write_eval(a, &json, html)
}

fn primary_key(spec: &Spec, table: &str) -> Result<Vec<String>> {
    spec.tables
        .get(table)
        .and_then(|t| t.primary_key.as_ref())
        .map(|k| k.columns())
        .with_context(|| format!("table `{table}` is referenced but has no primary_key"))
}
