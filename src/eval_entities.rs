//! `chimera eval --spec`: relational entities against the real tables the spec names. Reads
//! each table (real from the spec's inputs, synthetic from the run's output folder), works out
//! the keys, links and datetime orders from the spec, and hands them to the eval crate.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use arrow::array::RecordBatch;
use chimera_coordinator::read::{ReadOptions, declared_types, read_all};
use chimera_core::relational::{EntityModel, EntityTree};
use chimera_core::schema::Role;
use chimera_core::spec::Spec;
use chimera_eval::{Link, Order, RelationalInput, RelationalTable};

use crate::cli::EvalArgs;
use crate::commands::{finished_manifest, guarantee, report_title, write_eval};
use crate::entities::table_inputs;
use chimera_storage::MODEL_FILE;

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
    // Columns sampling regenerates as fresh identifiers (the run's model says which; the
    // spec's `role: identifier` without one): their values say nothing of the real ones.
    let model_file = Path::new(&a.synthetic).join(MODEL_FILE);
    let mut identifiers: BTreeSet<(String, String)> = match std::fs::read(&model_file) {
        Ok(bytes) => EntityModel::from_json(&bytes)
            .with_context(|| format!("{} is not a relational model", model_file.display()))?
            .identifier_columns(),
        Err(_) => BTreeSet::new(),
    };
    for (name, ts) in &spec.tables {
        for (column, c) in &ts.columns {
            if c.role == Some(Role::Identifier) {
                identifiers.insert((name.clone(), column.clone()));
            }
        }
    }

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
            // `after: child.column`: the latest of the row's children in that table.
            let of_child =
                c.after
                    .as_deref()
                    .and_then(|a| a.split_once('.'))
                    .and_then(|(child, earlier)| {
                        let k = tree.index(child)?;
                        let i = tree.index(name)?;
                        (tree.tables[k].parent == Some(i)).then_some((k, child, earlier))
                    });
            if let Some((k, child, earlier)) = of_child {
                orders.push(Order::AfterChildren {
                    table: name.clone(),
                    key: primary_key(&spec, name)?,
                    later: column.clone(),
                    child: child.to_owned(),
                    child_columns: tree.tables[k].parent_columns.clone(),
                    earlier: earlier.to_owned(),
                });
            } else if let Some(earlier) = &c.after {
                orders.push(Order::Row {
                    table: name.clone(),
                    earlier: earlier.clone(),
                    later: column.clone(),
                });
            }
        }
        for (column, c) in &ts.columns {
            for (condition, value) in &c.empty_when {
                orders.push(Order::EmptyWhen {
                    table: name.clone(),
                    column: column.clone(),
                    condition: condition.clone(),
                    value: value.clone(),
                });
            }
            if c.required {
                orders.push(Order::Required {
                    table: name.clone(),
                    column: column.clone(),
                    unless: c
                        .empty_when
                        .first_key_value()
                        .map(|(q, v)| (q.clone(), v.clone())),
                    // A time after another of the row is set where that one is.
                    base: (c.after.clone().or(c.offset_from.clone())).filter(|a| !a.contains('.')),
                });
            }
        }
        if let (Some(order_by), Some(i)) = (&ts.order_by, tree.index(name))
            && let Some(p) = tree.tables[i].parent
        {
            for (column, value) in &ts.last_when {
                orders.push(Order::LastOnly {
                    table: name.clone(),
                    parent_columns: tree.tables[i].parent_columns.clone(),
                    order_by: order_by.clone(),
                    column: column.clone(),
                    value: value.clone(),
                });
            }
            for (column, value) in &ts.last_is {
                orders.push(Order::LastIs {
                    table: name.clone(),
                    parent_columns: tree.tables[i].parent_columns.clone(),
                    order_by: order_by.clone(),
                    column: column.clone(),
                    value: value.clone(),
                });
            }
            for column in &ts.same_for_siblings {
                orders.push(Order::SameForSiblings {
                    table: name.clone(),
                    parent_columns: tree.tables[i].parent_columns.clone(),
                    order_by: order_by.clone(),
                    column: column.clone(),
                });
            }
            for (set, rule) in &ts.first_where {
                let parent = tree.tables[p].name.clone();
                for (column, value) in rule {
                    orders.push(Order::FirstWhere {
                        table: name.clone(),
                        parent_columns: tree.tables[i].parent_columns.clone(),
                        order_by: order_by.clone(),
                        key: primary_key(&spec, &parent)?,
                        parent: parent.clone(),
                        set: set.clone(),
                        column: column.clone(),
                        value: value.clone(),
                    });
                }
            }
            if let Some(end) = &ts.ends_at {
                let parent = tree.tables[p].name.clone();
                orders.push(Order::EndsAt {
                    table: name.clone(),
                    parent_columns: tree.tables[i].parent_columns.clone(),
                    order_by: order_by.clone(),
                    key: primary_key(&spec, &parent)?,
                    parent,
                    end: end.clone(),
                });
            }
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
        let fresh: Vec<&String> = identifiers
            .iter()
            .filter(|(t, _)| t == name)
            .map(|(_, c)| c)
            .collect();
        if !fresh.is_empty() {
            notes.push(format!(
                "{name}: {} regenerated as fresh identifiers, so left out of fidelity and \
                 privacy metrics as keys are",
                fresh
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            keys.extend(fresh.into_iter().cloned());
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
    let mut report =
        tokio::task::block_in_place(|| chimera_eval::evaluate_relational(&input, &options))?;
    if a.judge.is_some() || a.generator.is_some() {
        let excluded: HashMap<String, Vec<String>> = input
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.keys.clone()))
            .collect();
        let candidates = entity_candidates(a, &spec, &tree, &real, &synthetic, &excluded)?;
        notes.push(format!(
            "realism: entities are written as nested JSON with at most {ENTITY_CHILDREN} child \
             rows per table and parent, key columns left out; the real entities judged are \
             training entities (a relational run has no held-out entities), each shown with \
             {} other real entities as references",
            crate::eval_llm::REFERENCES
        ));
        let (realism, dlt) = crate::eval_llm::judge_and_dlt(a, &candidates).await?;
        report.realism = realism;
        report.dlt = dlt;
    }
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

/// Child rows per table and parent an entity's text shows at most (prompts stay inside a small
/// model's context).
const ENTITY_CHILDREN: usize = 3;

/// One table's rows as text, and how they hang together.
struct TableText {
    /// Each row as a JSON object of its non-key columns.
    records: Vec<String>,
    /// Each child table (tree index) with its rows grouped by this table's key.
    children: Vec<(usize, HashMap<String, Vec<usize>>)>,
    /// Each row's own key (as its children name it).
    keys: Vec<Option<String>>,
}

/// Every table of the entity tree as text, from `tables` (real or synthetic).
fn table_texts(
    spec: &Spec,
    tree: &EntityTree,
    tables: &HashMap<String, Vec<RecordBatch>>,
    excluded: &HashMap<String, Vec<String>>,
) -> Result<Vec<TableText>> {
    let mut out = Vec::with_capacity(tree.tables.len());
    for node in &tree.tables {
        let batches = &tables[&node.name];
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let columns: Vec<String> = chimera_eval::column_names(batches)
            .into_iter()
            .filter(|c| !excluded[&node.name].contains(c))
            .collect();
        let records = crate::eval_llm::records(batches, &columns, &(0..rows).collect::<Vec<_>>())?;
        let keys = if node.children.is_empty() {
            Vec::new()
        } else {
            chimera_eval::row_keys(batches, &primary_key(spec, &node.name)?, &node.name)?
        };
        let mut children = Vec::new();
        for &c in &node.children {
            let child = &tree.tables[c];
            let parents =
                chimera_eval::row_keys(&tables[&child.name], &child.parent_columns, &child.name)?;
            let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
            for (row, p) in parents.into_iter().enumerate() {
                if let Some(p) = p {
                    groups.entry(p).or_default().push(row);
                }
            }
            children.push((c, groups));
        }
        out.push(TableText {
            records,
            children,
            keys,
        });
    }
    Ok(out)
}

/// Row `row` of table `t` with its descendants, as one JSON object.
fn entity_text(tree: &EntityTree, texts: &[TableText], t: usize, row: usize) -> String {
    let own = &texts[t].records[row];
    let mut text = own[..own.len() - 1].to_owned();
    for (c, groups) in &texts[t].children {
        let rows = texts[t].keys[row]
            .as_ref()
            .and_then(|k| groups.get(k))
            .map_or(&[][..], Vec::as_slice);
        let shown: Vec<String> = rows
            .iter()
            .take(ENTITY_CHILDREN)
            .map(|&r| entity_text(tree, texts, *c, r))
            .collect();
        let sep = if text.len() > 1 { ", " } else { "" };
        text.push_str(&format!(
            "{sep}{}: [{}]",
            serde_json::Value::from(tree.tables[*c].name.as_str()),
            shown.join(", ")
        ));
    }
    text.push('}');
    text
}

/// Synthetic and real entities for the judge and the generator.
fn entity_candidates(
    a: &EvalArgs,
    spec: &Spec,
    tree: &EntityTree,
    real: &HashMap<String, Vec<RecordBatch>>,
    synthetic: &HashMap<String, Vec<RecordBatch>>,
    excluded: &HashMap<String, Vec<String>>,
) -> Result<crate::eval_llm::Candidates> {
    use crate::eval_llm::sample_rows;
    if a.judge_rows == 0 {
        bail!("--judge-rows must be at least 1");
    }
    let real_texts = table_texts(spec, tree, real, excluded)?;
    let synthetic_texts = table_texts(spec, tree, synthetic, excluded)?;
    let (real_roots, synthetic_roots) = (
        real_texts[0].records.len(),
        synthetic_texts[0].records.len(),
    );
    let docs = |texts: &[TableText], rows: Vec<usize>| -> Vec<String> {
        rows.into_iter()
            .map(|r| entity_text(tree, texts, 0, r))
            .collect()
    };
    let synthetic_rows = sample_rows(a.seed, 1, synthetic_roots, a.judge_rows);
    let real_rows = sample_rows(a.seed, 2, real_roots, a.judge_rows);
    // References: other real entities than the candidate itself.
    let mut references = Vec::new();
    if a.judge.is_some() {
        let candidates = synthetic_rows.len() + real_rows.len();
        for i in 0..candidates {
            let own = i.checked_sub(synthetic_rows.len()).map(|j| real_rows[j]);
            let pool: Vec<usize> = (0..real_roots).filter(|&r| Some(r) != own).collect();
            let picked = sample_rows(
                a.seed,
                100 + i as u64,
                pool.len(),
                crate::eval_llm::REFERENCES,
            );
            references.push(docs(
                &real_texts,
                picked.into_iter().map(|p| pool[p]).collect(),
            ));
        }
    }
    let root = &tree.tables[0].name;
    let what = match tree.tables[0].children.as_slice() {
        [] => format!("`{root}` records"),
        children => format!(
            "`{root}` records with their {}",
            children
                .iter()
                .map(|&c| format!("`{}`", tree.tables[c].name))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    Ok(crate::eval_llm::Candidates {
        what,
        synthetic: docs(&synthetic_texts, synthetic_rows),
        real: if a.judge.is_some() {
            docs(&real_texts, real_rows.clone())
        } else {
            Vec::new()
        },
        references,
        train: docs(&real_texts, real_rows),
        holdout: None,
    })
}

fn primary_key(spec: &Spec, table: &str) -> Result<Vec<String>> {
    spec.tables
        .get(table)
        .and_then(|t| t.primary_key.as_ref())
        .map(|k| k.columns())
        .with_context(|| format!("table `{table}` is referenced but has no primary_key"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chimera_core::relational::TableSpec;

    use super::*;

    #[test]
    fn entity_text_nests_children_as_json_arrays_and_caps_them() {
        let mut tables = BTreeMap::new();
        let spec = |fk: Option<&str>| TableSpec {
            primary_key: Some(chimera_core::relational::Keys::One("id".into())),
            foreign_keys: fk
                .map(|p| {
                    vec![chimera_core::relational::ForeignKey {
                        columns: chimera_core::relational::Keys::One("pid".into()),
                        references: p.into(),
                    }]
                })
                .unwrap_or_default(),
            ..TableSpec::default()
        };
        tables.insert("p".to_owned(), spec(None));
        tables.insert("c".to_owned(), spec(Some("p")));
        let tree = EntityTree::from_spec(&tables).unwrap();
        let (p, c) = (tree.index("p").unwrap(), tree.index("c").unwrap());
        let mut texts: Vec<TableText> = (0..2)
            .map(|_| TableText {
                records: Vec::new(),
                children: Vec::new(),
                keys: Vec::new(),
            })
            .collect();
        texts[p] = TableText {
            records: vec![r#"{"age": 3}"#.into(), "{}".into()],
            children: vec![(
                c,
                HashMap::from([
                    ("1".to_owned(), vec![0, 1, 2, 3]),
                    ("2".to_owned(), vec![4]),
                ]),
            )],
            keys: vec![Some("1".into()), Some("2".into())],
        };
        texts[c].records = (0..5).map(|i| format!(r#"{{"n": {i}}}"#)).collect();
        let one: serde_json::Value =
            serde_json::from_str(&entity_text(&tree, &texts, p, 0)).unwrap();
        assert_eq!(one["age"], 3);
        assert_eq!(one["c"].as_array().unwrap().len(), ENTITY_CHILDREN);
        let two: serde_json::Value =
            serde_json::from_str(&entity_text(&tree, &texts, p, 1)).unwrap();
        assert_eq!(two, serde_json::json!({"c": [{"n": 4}]}));
    }
}
