//! The relational fit: reads every table of a relational spec, checks the keys (every foreign key
//! must resolve, or the spec says to drop what does not), orders and clips the children, builds
//! each table's modelled rows (see [`chimera_core::relational`]), and fits the flat entity model
//! and one sequence model per child table with the single-table fit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    UInt32Array,
};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema};
use chimera_core::CoreError;
use chimera_core::domain::Encoding;
use chimera_core::fit::{FitSettings, LastOnly, SetWhere, Within};
use chimera_core::idformat::IdFormat;
use chimera_core::model::{Model, ModelPrivacy};
use chimera_core::privacy::{self, Ledger, PrivacyMode};
use chimera_core::relational::{
    self, EntityModel, EntityTable, EntityTree, KEY_SEPARATOR, Orphans, POSITION_CAP,
    PRESENCE_SUFFIX, PublicTable, RealChild, RealEntities, RowColumn,
};
use chimera_core::rng;
use chimera_core::schema::{ColumnSchema, Role, ValueKind, year_start_days};
use chimera_core::spec::{ColumnSpec, Spec};

use crate::error::FitError;
use crate::fit::{Progress, fit_table};
use crate::read::{ReadOptions, TableSource, read_all};
use crate::values::{ColumnValues, column_schemas, column_values};

/// A table read into memory.
struct Loaded {
    name: String,
    batch: RecordBatch,
    schemas: Vec<ColumnSchema>,
}

impl Loaded {
    fn index(&self, column: &str) -> Result<usize, FitError> {
        self.schemas
            .iter()
            .position(|c| c.name == column)
            .ok_or_else(|| {
                spec_error(format!(
                    "table `{}` has no column `{column}` (its columns: {})",
                    self.name,
                    self.schemas
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The key of every row as a string (composite keys joined), None where any part is null.
    fn keys(&self, columns: &[String]) -> Result<Vec<Option<String>>, FitError> {
        let parts: Vec<StringArray> = columns
            .iter()
            .map(|c| {
                let i = self.index(c)?;
                let a = cast(self.batch.column(i), &DataType::Utf8)
                    .map_err(arrow_error(&self.name, c))?;
                Ok(a.as_string::<i32>().clone())
            })
            .collect::<Result<_, FitError>>()?;
        Ok((0..self.batch.num_rows())
            .map(|r| {
                let mut key = String::new();
                for (i, p) in parts.iter().enumerate() {
                    if p.is_null(r) {
                        return None;
                    }
                    if i > 0 {
                        key.push(KEY_SEPARATOR);
                    }
                    key.push_str(p.value(r));
                }
                Some(key)
            })
            .collect())
    }

    /// A column as numbers (days for datetimes).
    fn numbers(&self, column: &str) -> Result<Float64Array, FitError> {
        let i = self.index(column)?;
        match column_values(&self.name, &self.schemas[i], self.batch.column(i), 0)? {
            ColumnValues::Numbers(a) => Ok(a),
            ColumnValues::Strings(_) => Err(spec_error(format!(
                "table `{}`, column `{column}`: used for ordering or as a time base, it must be a datetime or a number, but it holds strings",
                self.name
            ))),
        }
    }
}

/// Turns an Arrow error on `table`.`column` into a fit error naming both.
fn arrow_error(
    table: &str,
    column: &str,
) -> impl FnOnce(arrow::error::ArrowError) -> FitError + use<> {
    let (table, column) = (table.to_owned(), column.to_owned());
    move |source| FitError::Arrow {
        table,
        column,
        source,
    }
}

fn spec_error(m: String) -> FitError {
    FitError::Core(CoreError::Spec(m))
}

fn table_error(table: &str, message: String) -> FitError {
    FitError::Core(CoreError::Table {
        table: table.to_owned(),
        message,
    })
}

/// A table's modelled rows: each row column's name and meaning, and its values.
type TableRows = (Vec<(String, RowColumn)>, Vec<ArrayRef>);

/// Where each table's rows ended up after keys were checked, orphans dropped and children clipped.
struct Layout {
    /// Original row of each kept row, in output order (grouped by parent, then by position).
    rows: Vec<u32>,
    /// Per kept row: index of its parent in the parent's `rows` (0 for the root).
    parent: Vec<u32>,
    /// Per kept row: position among its siblings.
    position: Vec<u32>,
    /// Per row of the parent: its last child in the data (before clipping), if any.
    last: Vec<Option<u32>>,
}

/// Logs a note about the data with its exact counts and keeps it for the manifest; under DP the
/// manifest gets `without_counts` instead (exact counts of the private data are not released).
fn note(notes: &mut Vec<String>, dp: bool, exact: String, without_counts: String) {
    tracing::warn!("{exact}");
    if dp {
        notes.push(format!(
            "{without_counts} (under DP the manifest does not give how many; the log does)"
        ));
    } else {
        notes.push(exact);
    }
}

/// Reads the tables of `spec.tables` (inputs resolved by the caller), checks the keys and fits.
pub async fn fit_entities(
    spec: &Spec,
    inputs: &BTreeMap<String, String>,
    opts: &ReadOptions,
    settings: FitSettings,
    seed: u64,
    progress: &dyn Progress,
) -> Result<(EntityModel, RealEntities), FitError> {
    let tree = EntityTree::from_spec(&spec.tables)?;
    let mut notes: Vec<String> = Vec::new();
    let dp = matches!(settings.privacy, PrivacyMode::Dp { .. });

    // Read.
    let mut loaded: HashMap<String, Loaded> = HashMap::new();
    for (name, ts) in &spec.tables {
        let input = inputs.get(name).ok_or_else(|| {
            spec_error(format!(
                "table `{name}` has no `input` (a path or URL of its data)"
            ))
        })?;
        let mut o = opts.clone();
        o.column_types = crate::read::declared_types(&ts.columns)?;
        let (source, batches) = read_all(input, &o).await?;
        let batch = concat_batches(&source.schema(), &batches).map_err(arrow_error(name, ""))?;
        if batch.num_rows() == 0 {
            return Err(table_error(name, "it has no rows".into()));
        }
        let schemas = column_schemas(name, &source.schema())?;
        // A parent table's column (`TABLE.COLUMN`) in `parents` is checked with the tree.
        let mut columns = ts.columns.clone();
        for c in columns.values_mut() {
            c.parents.retain(|p| !p.contains('.'));
        }
        let table_spec = Spec {
            table: Some(name.clone()),
            columns,
            ..Spec::default()
        };
        table_spec.validate(name, &schemas)?;
        loaded.insert(
            name.clone(),
            Loaded {
                name: name.clone(),
                batch,
                schemas,
            },
        );
    }

    // Keys of the public tables.
    let mut public_keys: HashMap<String, HashSet<String>> = HashMap::new();
    for p in &tree.public {
        let ts = &spec.tables[p];
        let cols = ts
            .primary_key
            .as_ref()
            .map(|k| k.columns())
            .unwrap_or_default();
        let keys = loaded[p].keys(&cols)?;
        public_keys.insert(p.clone(), keys.into_iter().flatten().collect());
    }

    // Layouts, root first.
    let mut layouts: Vec<Layout> = Vec::new();
    let mut pk_index: Vec<HashMap<String, u32>> = Vec::new();
    for (t, node) in tree.tables.iter().enumerate() {
        let ts = &spec.tables[&node.name];
        let table = &loaded[&node.name];
        let n = table.batch.num_rows();
        // Primary key: unique, never null.
        let mut index = HashMap::new();
        if let Some(pk) = &ts.primary_key {
            let cols = pk.columns();
            let keys = table.keys(&cols)?;
            let nulls = keys.iter().filter(|k| k.is_none()).count();
            if nulls > 0 {
                return Err(table_error(
                    &node.name,
                    format!("primary key `{}` is empty in {nulls} rows", cols.join(", ")),
                ));
            }
            for (r, k) in keys.into_iter().enumerate() {
                let k = k.unwrap_or_default();
                if index.insert(k.clone(), r as u32).is_some() {
                    return Err(table_error(
                        &node.name,
                        format!(
                            "primary key `{}` is not unique: `{k}` appears more than once",
                            cols.join(", ")
                        ),
                    ));
                }
            }
        }
        // Which rows resolve.
        let mut keep = vec![true; n];
        let mut problems: Vec<String> = Vec::new();
        let mut parent_of: Vec<u32> = vec![0; n];
        if let Some(p) = node.parent {
            let parent_name = &tree.tables[p].name;
            let keys = table.keys(&node.parent_columns)?;
            // Parent rows that were kept, by original row.
            let kept_parent: HashMap<u32, u32> = layouts[p]
                .rows
                .iter()
                .enumerate()
                .map(|(i, &r)| (r, i as u32))
                .collect();
            let (mut empty, mut missing, mut with_parent) = (0usize, 0usize, 0usize);
            for (r, k) in keys.iter().enumerate() {
                match k {
                    None => {
                        empty += 1;
                        keep[r] = false;
                    }
                    Some(k) => match pk_index[p].get(k) {
                        None => {
                            missing += 1;
                            keep[r] = false;
                        }
                        Some(pr) => match kept_parent.get(pr) {
                            Some(&i) => parent_of[r] = i,
                            None => {
                                with_parent += 1;
                                keep[r] = false;
                            }
                        },
                    },
                }
            }
            if empty + missing > 0 {
                problems.push(format!(
                    "{} rows have no parent in `{parent_name}` (`{}` empty in {empty}, not found in {missing})",
                    empty + missing,
                    node.parent_columns.join(", ")
                ));
            }
            if with_parent > 0 {
                note(
                    &mut notes,
                    dp,
                    format!(
                        "table `{}`: {with_parent} rows left out with their parent row",
                        node.name
                    ),
                    format!("table `{}`: rows left out with their parent row", node.name),
                );
            }
            // Keys of further ancestors must agree with the parent chain.
            for (cols, a) in &node.ancestor_keys {
                let own = table.keys(cols)?;
                let ancestor_keys = ancestor_key_of_rows(&tree, &layouts, &loaded, spec, t, *a)?;
                let mut wrong = 0usize;
                for r in 0..n {
                    if keep[r] && own[r] != ancestor_keys[parent_of[r] as usize] {
                        wrong += 1;
                        keep[r] = false;
                    }
                }
                if wrong > 0 {
                    problems.push(format!(
                        "{wrong} rows have `{}` different from their parent's `{}`",
                        cols.join(", "),
                        tree.tables[*a].name
                    ));
                }
            }
        }
        for (cols, public) in &node.references {
            let keys = table.keys(cols)?;
            let known = &public_keys[public];
            let bad = keys
                .iter()
                .enumerate()
                .filter(|(r, k)| keep[*r] && k.as_ref().is_some_and(|k| !known.contains(k)))
                .map(|(r, _)| r)
                .collect::<Vec<_>>();
            if !bad.is_empty() {
                problems.push(format!(
                    "{} rows have a `{}` that is not in `{public}`",
                    bad.len(),
                    cols.join(", ")
                ));
                for r in bad {
                    keep[r] = false;
                }
            }
        }
        if !problems.is_empty() {
            let what = problems.join("; ");
            match ts.orphans {
                Orphans::Error => {
                    return Err(table_error(
                        &node.name,
                        format!(
                            "{what}. Fix the data, or set `orphans: drop` on table `{}` in the spec to leave those rows out (the output's manifest then says how many)",
                            node.name
                        ),
                    ));
                }
                Orphans::Drop => note(
                    &mut notes,
                    dp,
                    format!(
                        "table `{}`: rows left out because their keys do not resolve: {what}",
                        node.name
                    ),
                    format!(
                        "table `{}`: rows left out because their keys do not resolve",
                        node.name
                    ),
                ),
            }
        }
        // Order and clip.
        let layout = if node.parent.is_none() {
            let rows: Vec<u32> = (0..n as u32).filter(|&r| keep[r as usize]).collect();
            Layout {
                parent: vec![0; rows.len()],
                position: vec![0; rows.len()],
                rows,
                last: Vec::new(),
            }
        } else {
            let p = node.parent.unwrap_or(0);
            let order: Option<Float64Array> = match &ts.order_by {
                Some(c) => Some(table.numbers(c)?),
                None => None,
            };
            let mut groups: Vec<Vec<u32>> = vec![Vec::new(); layouts[p].rows.len()];
            for r in 0..n {
                if keep[r] {
                    groups[parent_of[r] as usize].push(r as u32);
                }
            }
            let max = ts.max_children.unwrap_or(relational::DEFAULT_MAX_CHILDREN);
            let (mut clipped_parents, mut clipped_rows, mut most) = (0usize, 0usize, 0usize);
            let mut layout = Layout {
                rows: Vec::new(),
                parent: Vec::new(),
                position: Vec::new(),
                last: Vec::with_capacity(groups.len()),
            };
            for (pi, g) in groups.iter_mut().enumerate() {
                if let Some(o) = &order {
                    // Nulls last; ties keep the input order.
                    g.sort_by(|&a, &b| {
                        let key = |r: u32| {
                            let r = r as usize;
                            if o.is_valid(r) {
                                o.value(r)
                            } else {
                                f64::INFINITY
                            }
                        };
                        key(a).total_cmp(&key(b))
                    });
                }
                layout.last.push(g.last().copied());
                if g.len() > max {
                    clipped_parents += 1;
                    clipped_rows += g.len() - max;
                    most = most.max(g.len());
                    g.truncate(max);
                }
                for (k, &r) in g.iter().enumerate() {
                    layout.rows.push(r);
                    layout.parent.push(pi as u32);
                    layout.position.push(k as u32);
                }
            }
            if clipped_parents > 0 {
                note(
                    &mut notes,
                    dp,
                    format!(
                        "table `{}`: {clipped_parents} `{}` rows had more than {max} children (up to {most}); the {clipped_rows} rows beyond the first {max} were left out (raise `max_children` to keep more)",
                        node.name, tree.tables[p].name
                    ),
                    format!(
                        "table `{}`: rows beyond the first {max} children of a `{}` row were left out (raise `max_children` to keep more)",
                        node.name, tree.tables[p].name
                    ),
                );
            }
            layout
        };
        if layout.rows.is_empty() && node.parent.is_none() {
            return Err(table_error(&node.name, "no rows are left to model".into()));
        }
        layouts.push(layout);
        pk_index.push(index);
    }

    // `ends_at`: say how often the data already agrees (the output always does).
    for (t, node) in tree.tables.iter().enumerate() {
        let ts = &spec.tables[&node.name];
        let (Some(end_col), Some(order_by), Some(p)) = (&ts.ends_at, &ts.order_by, node.parent)
        else {
            continue;
        };
        let parent = &loaded[&tree.tables[p].name];
        let end = parent.numbers(end_col)?;
        let own = loaded[&node.name].numbers(order_by)?;
        let layout = &layouts[t];
        let mut last: HashMap<u32, u32> = HashMap::new();
        for (&r, &pi) in layout.rows.iter().zip(&layout.parent) {
            last.insert(pi, r);
        }
        let off = last
            .iter()
            .filter(|(pi, r)| {
                let e = days(&end, layouts[p].rows[**pi as usize] as usize);
                let v = days(&own, **r as usize);
                e.zip(v).is_none_or(|(e, v)| (e - v).abs() > 1.0 / 24.0)
            })
            .count();
        if off > 0 {
            note(
                &mut notes,
                dp,
                format!(
                    "table `{}`: `ends_at: {end_col}`: in the data the last `{order_by}` of {off} of {} `{}` rows is more than an hour from their `{end_col}`; in the output it is always at it",
                    node.name,
                    last.len(),
                    tree.tables[p].name
                ),
                format!(
                    "table `{}`: `ends_at: {end_col}`: the last `{order_by}` is always at the parent's `{end_col}` in the output, which the data does not always hold",
                    node.name
                ),
            );
        }
    }

    // Modelled rows of every table.
    let mut rows: Vec<TableRows> = Vec::new();
    for t in 0..tree.tables.len() {
        rows.push(table_rows(&tree, spec, &loaded, &layouts, t, dp)?);
    }

    let row_specs = RowSpecs::new(spec, &loaded, dp)?;
    // Per table: the columns a later sibling repeats (the flat model and the table's own
    // sequence model both use them).
    let repeated: Vec<Vec<String>> = tree
        .tables
        .iter()
        .enumerate()
        .map(|(t, node)| match node.parent {
            Some(_) => repeated_columns(spec, &node.name, &rows[t], &layouts[t], dp),
            None => Vec::new(),
        })
        .collect();

    // Budget: an equal share of zCDP per model.
    let models = tree.tables.len();
    let (mut ledger, share) = match settings.privacy {
        PrivacyMode::Dp { epsilon, delta } => {
            let ledger = Ledger::new(epsilon, delta)?;
            let rho = ledger.rho_total / models as f64;
            let delta_t = delta / models as f64;
            let eps_t = privacy::epsilon_for(rho, delta_t / 2.0);
            (Some(ledger), Some((eps_t, delta_t)))
        }
        PrivacyMode::None => (None, None),
    };
    let clip = |t: usize| {
        spec.tables[&tree.tables[t].name]
            .max_children
            .unwrap_or(relational::DEFAULT_MAX_CHILDREN)
    };
    let mut fitted: Vec<Option<Model>> = Vec::new();
    let mut privacy_notes: Vec<String> = Vec::new();
    // (table, column) of the columns an earlier model regenerates as identifiers: fresh values,
    // so a later model learns nothing from them (and must not keep their real values).
    let mut identifiers: HashSet<(String, String)> = HashSet::new();
    for (t, node) in tree.tables.iter().enumerate() {
        // Under DP, the most rows one entity gives this table's model.
        let cap = spec.tables[&node.name].max_rows_per_entity.filter(|_| dp);
        let (name, mut columns, mut given, mut specs) = if t == 0 {
            flat_table(&tree, &row_specs, &rows)?
        } else {
            sequence_table(&tree, &row_specs, &rows, &layouts, t, cap, dp)?
        };
        if t > 0 {
            let parent = &tree.tables[node.parent.unwrap_or(0)].name;
            let fresh = |n: &str| {
                let of = |prefix, table: &String| {
                    n.strip_prefix(prefix)
                        .is_some_and(|c| identifiers.contains(&(table.clone(), c.to_string())))
                };
                of(relational::PARENT_PREFIX, parent) || of(relational::PREVIOUS_PREFIX, &node.name)
            };
            // A key part siblings always share is copied from the first sibling: the network
            // then learns it from the parent's row (its count too), not from the previous one.
            let shared: Vec<String> = rows[t]
                .0
                .iter()
                .filter(|(_, rc)| matches!(rc, RowColumn::KeyPart { constant: true, .. }))
                .map(|(n, _)| format!("{}{n}", relational::PREVIOUS_PREFIX))
                .collect();
            let drop = |n: &str| fresh(n) || shared.iter().any(|s| s == n);
            columns.retain(|(n, _)| !drop(n));
            given.retain(|n| !drop(n));
            specs.retain(|n, _| !drop(n));
        }
        // Without DP, a table with no rows (no parent has a second child of this table) or a
        // column with no values (e.g. the previous sibling's columns then) carries nothing to
        // learn: leave it out; sampling leaves it empty. Under DP that choice would tell
        // whether some entity has such a row, so every model and column is fitted from the
        // releases (nothing released: sampled empty).
        if !dp && columns.first().is_none_or(|(_, a)| a.is_empty()) {
            fitted.push(None);
            continue;
        }
        columns.retain(|(n, a)| {
            if dp {
                return true;
            }
            let keep = a.null_count() < a.len();
            if !keep {
                specs.remove(n);
                given.retain(|g| g != n);
            }
            keep
        });
        let mut s = settings.clone();
        if let Some((epsilon, delta)) = share {
            s.privacy = PrivacyMode::Dp { epsilon, delta };
        }
        s.noise_seed = settings
            .noise_seed
            .map(|n| rng::derive_seed(n, &[0xE7, t as u64]));
        s.contribution = tree.contribution(t, clip, cap);
        s.given = given;
        s.llm = None;
        // Under DP, a child's columns in the flat row and every column of a sequence model may
        // be empty in the data without the model saying so.
        s.derived = columns
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| {
                t > 0
                    || tree
                        .tables
                        .iter()
                        .skip(1)
                        .any(|c| n.starts_with(&format!("{}.", c.name)))
            })
            .collect();
        s.last_only = last_only(&tree, spec, t);
        if t > 0 {
            // A key part siblings share is drawn once, for the first sibling, and copied. The
            // model sees every sibling's row, so it is drawn from the first siblings' rows (given
            // the position) and given how many siblings will copy it: a diagnosis list's ICD
            // version then has its share of lists, not of rows (ICD-10 lists are longer). Its
            // reference is drawn given it, not the reverse: a version read off a code drawn with
            // every row's weight would carry that weight again.
            let count = format!(
                "{}{}",
                relational::PARENT_PREFIX,
                relational::count_column(&node.name)
            );
            s.parents = Vec::new();
            for (n, rc) in &rows[t].0 {
                if let RowColumn::KeyPart {
                    reference,
                    constant: true,
                    ..
                } = rc
                {
                    s.parents.push((n.clone(), count.clone()));
                    s.parents
                        .push((n.clone(), relational::POSITION_COLUMN.to_string()));
                    s.parents.push((reference.clone(), n.clone()));
                }
            }
            s.parents.extend(
                repeated[t]
                    .iter()
                    .map(|c| (c.clone(), format!("{}{c}", relational::PREVIOUS_PREFIX))),
            );
            // The first sibling's `order_by` is set at position 0 only (later ones have a
            // gap): where the model holds first siblings (below the root's children), the
            // position decides it, so no first sibling is drawn without its place in time
            // (under DP the search may miss the tie in the noise: it is declared).
            if node.parent != Some(0) {
                s.set_where.extend(first_places(&rows[t]).map(|n| SetWhere {
                    column: n.clone(),
                    by: relational::POSITION_COLUMN.to_string(),
                    set: 0.0..1.0,
                    declare: dp,
                }));
            }
        } else {
            // The first row of such a column is drawn given how many siblings will repeat it,
            // so that its share of rows is right (a patient with 20 admissions carries their
            // race 20 times).
            for &ch in &node.children {
                let child = &tree.tables[ch].name;
                let count = relational::count_column(child);
                for column in &repeated[ch] {
                    s.parents.push((format!("{child}.{column}"), count.clone()));
                }
                // A first child's place in time is set wherever the entity has children. Not
                // declared: in the flat row "empty" also stands for "no child" in the child's
                // other columns, and a place tied to the count alone would no longer send a row
                // whose child drew those empty back to be drawn again (under DP, 3 to 18 of
                // 2,000 synthetic shops then had a first sale without a kind, against 0 or 1).
                s.set_where
                    .extend(first_places(&rows[ch]).map(|n| SetWhere {
                        column: format!("{child}.{n}"),
                        by: count.clone(),
                        set: 1.0..f64::INFINITY,
                        declare: false,
                    }));
            }
        }
        declare_parents(&tree, spec, &loaded, t, dp, &mut specs)?;
        s.leaves = presence_rules(&tree, &rows, t, &mut specs);
        s.within = band_rules(&tree, &rows, t, &mut specs);
        if t > 0 {
            s.kept = (spec.tables[&node.name].first_where.values())
                .flat_map(|rule| rule.iter().map(|(c, v)| (c.clone(), v.clone())))
                .collect();
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(arrow_error(&name, ""))?;
        let batch_rows = batch.num_rows();
        let source = TableSource::from_batches(&name, &node.name, schema, vec![batch])?;
        let table_spec = Spec {
            table: Some(name.clone()),
            columns: specs,
            fit: spec.fit.clone(),
            ..Spec::default()
        };
        tracing::info!(table = %node.name, model = %name, rows = batch_rows, "fitting");
        let model = fit_table(
            &source,
            table_spec,
            s,
            rng::derive_seed(seed, &[0xE7, t as u64]),
            progress,
        )
        .await?;
        if let (Some(l), Some(spent)) = (&mut ledger, &model.privacy.ledger) {
            l.charge(&format!("model of `{}` ({name})", node.name), spent.spent())?;
        }
        privacy_notes.extend(model.privacy.notes.iter().cloned());
        if dp {
            check_references(&model, &tree, &rows, t)?;
        }
        for c in model.columns.iter().filter(|c| c.role == Role::Identifier) {
            let n = &c.schema.name;
            // The flat row names a child's column `child.column`; a sequence model its own
            // columns plainly (given ones carry a prefix).
            let owner = tree.tables[1..].iter().find_map(|ch| {
                n.strip_prefix(&format!("{}.", ch.name))
                    .map(|col| (ch.name.clone(), col))
            });
            match owner {
                Some((table, col)) if t == 0 => {
                    identifiers.insert((table, col.to_string()));
                }
                _ if !n.starts_with(relational::PARENT_PREFIX)
                    && !n.starts_with(relational::PREVIOUS_PREFIX) =>
                {
                    identifiers.insert((node.name.clone(), n.clone()));
                }
                _ => {}
            }
        }
        fitted.push(Some(model));
    }
    let mut fitted = fitted.into_iter();
    let flat = fitted
        .next()
        .flatten()
        .ok_or_else(|| FitError::Internal("no flat model".into()))?;
    let mut key_formats = Vec::new();
    for node in &tree.tables {
        key_formats.push(key_format(spec, &loaded[&node.name], dp, &mut notes)?);
    }
    let tables: Vec<EntityTable> = tree
        .tables
        .iter()
        .enumerate()
        .map(|(t, node)| EntityTable {
            name: node.name.clone(),
            columns: loaded[&node.name].schemas.clone(),
            primary_key: spec.tables[&node.name]
                .primary_key
                .as_ref()
                .and_then(|k| k.columns().first().cloned()),
            row: rows[t].0.clone(),
            max_children: clip(t),
            key_format: key_formats[t].clone(),
            last_when: spec.tables[&node.name].last_when.clone(),
            last_is: spec.tables[&node.name].last_is.clone(),
            first_where: (spec.tables[&node.name].first_where.iter())
                .flat_map(|(set, rule)| {
                    rule.iter()
                        .map(move |(c, v)| (set.clone(), c.clone(), v.clone()))
                })
                .collect(),
            empty_when: spec.tables[&node.name]
                .columns
                .iter()
                .flat_map(|(c, cs)| {
                    cs.empty_when
                        .iter()
                        .map(move |(q, v)| (c.clone(), q.clone(), v.clone()))
                })
                .collect(),
            required: spec.tables[&node.name]
                .columns
                .iter()
                .filter(|(_, cs)| cs.required)
                .map(|(c, _)| c.clone())
                .collect(),
            same_for_siblings: spec.tables[&node.name].same_for_siblings.clone(),
            sequence: None,
        })
        .zip(std::iter::once(None).chain(fitted))
        .map(|(mut t, m)| {
            t.sequence = m;
            t
        })
        .collect();
    // A `first_where` value needs a code of its own in the sequence model to be drawn exactly.
    for table in &tables {
        for (set, column, value) in &table.first_where {
            let coded = (table.sequence.iter())
                .flat_map(|m| &m.columns)
                .find(|c| c.schema.name == *column)
                .and_then(|c| c.encoding.as_ref())
                .is_some_and(|e| match e {
                    Encoding::Categorical(c) => c.values.contains(value),
                    Encoding::Numeric(n) => value
                        .trim()
                        .parse()
                        .is_ok_and(|x: f64| n.spikes.contains(&x)),
                });
            if !coded {
                return Err(table_error(
                    &table.name,
                    format!(
                        "`first_where: {{{set}: {{{column}: {value}}}}}`: `{value}` has no code of \
                         its own in the model of `{column}` (is it spelt as in the data, and in \
                         its `domain`?)"
                    ),
                ));
            }
        }
    }
    let public = tree
        .public
        .iter()
        .map(|p| PublicTable {
            name: p.clone(),
            input: inputs[p].clone(),
            columns: spec.tables[p].columns.clone(),
        })
        .collect();
    notes.dedup();
    let real = real_children(&tree, &rows, &layouts);
    let model = EntityModel {
        format: relational::ENTITY_MODEL_FORMAT.into(),
        chimera_version: env!("CARGO_PKG_VERSION").into(),
        tree,
        tables,
        privacy: ModelPrivacy {
            mode: settings.privacy,
            ledger,
            noise_seeded: settings.noise_seed.is_some(),
            notes: privacy_notes,
        },
        flat,
        public,
        notes,
        llm: None,
    };
    Ok((model, real))
}

/// Every cell of an array as JSON: numbers as numbers, the rest as text.
fn json_cells(a: &ArrayRef) -> Vec<serde_json::Value> {
    use serde_json::Value as Json;
    if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        return (0..f.len())
            .map(|i| {
                let x = f.value(i);
                if !f.is_valid(i) {
                    Json::Null
                } else if x.fract() == 0.0 && x.abs() < 9.0e15 {
                    Json::from(x as i64)
                } else {
                    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
                }
            })
            .collect();
    }
    if let Some(n) = a.as_any().downcast_ref::<Int64Array>() {
        return (0..n.len())
            .map(|i| {
                if n.is_valid(i) {
                    Json::from(n.value(i))
                } else {
                    Json::Null
                }
            })
            .collect();
    }
    match cast(a, &DataType::Utf8) {
        Ok(t) => {
            let t = t.as_string::<i32>();
            (0..t.len())
                .map(|i| {
                    if t.is_valid(i) {
                        Json::String(t.value(i).replace(KEY_SEPARATOR, " | "))
                    } else {
                        Json::Null
                    }
                })
                .collect()
        }
        Err(_) => vec![Json::Null; a.len()],
    }
}

/// The real child rows with their parents' rows, for `knn-real` exemplars.
fn real_children(tree: &EntityTree, rows: &[TableRows], layouts: &[Layout]) -> RealEntities {
    let objects = |t: usize, keep: &[usize]| -> Vec<serde_json::Map<String, serde_json::Value>> {
        let cells: Vec<Vec<serde_json::Value>> = rows[t].1.iter().map(json_cells).collect();
        keep.iter()
            .map(|&i| {
                rows[t]
                    .0
                    .iter()
                    .zip(&cells)
                    .filter(|(_, c)| !c[i].is_null())
                    .map(|((name, _), c)| (name.clone(), c[i].clone()))
                    .collect()
            })
            .collect()
    };
    let mut out: RealEntities = vec![Vec::new()];
    for (t, node) in tree.tables.iter().enumerate().skip(1) {
        let p = node.parent.unwrap_or(0);
        let n = layouts[t].rows.len();
        let step = n.div_ceil(relational::MAX_REAL_CHILDREN).max(1);
        let keep: Vec<usize> = (0..n).step_by(step).collect();
        let parents: Vec<usize> = keep
            .iter()
            .map(|&i| layouts[t].parent[i] as usize)
            .collect();
        let own = objects(t, &keep);
        let up = objects(p, &parents);
        out.push(
            own.into_iter()
                .zip(up)
                .map(|(row, parent)| RealChild { parent, row })
                .collect(),
        );
    }
    out
}

/// For every kept row of table `parent_of_t`'s layout... the key of ancestor `a` of each kept
/// row of `t`'s parent (indexed like the parent's layout).
fn ancestor_key_of_rows(
    tree: &EntityTree,
    layouts: &[Layout],
    loaded: &HashMap<String, Loaded>,
    spec: &Spec,
    t: usize,
    a: usize,
) -> Result<Vec<Option<String>>, FitError> {
    let p = tree.tables[t]
        .parent
        .ok_or_else(|| FitError::Internal("root has no ancestors".into()))?;
    // Walk from each parent row up to `a`.
    let mut idx: Vec<u32> = (0..layouts[p].rows.len() as u32).collect();
    let mut cur = p;
    while cur != a {
        let up = tree.tables[cur]
            .parent
            .ok_or_else(|| FitError::Internal("ancestor not on the chain".into()))?;
        idx = idx
            .iter()
            .map(|&i| layouts[cur].parent[i as usize])
            .collect();
        cur = up;
    }
    let name = &tree.tables[a].name;
    let cols = spec.tables[name]
        .primary_key
        .as_ref()
        .map(|k| k.columns())
        .unwrap_or_default();
    let keys = loaded[name].keys(&cols)?;
    Ok(idx
        .iter()
        .map(|&i| keys[layouts[a].rows[i as usize] as usize].clone())
        .collect())
}

fn days(values: &Float64Array, r: usize) -> Option<f64> {
    values.is_valid(r).then(|| values.value(r))
}

/// The format of a table's fresh string primary key: the spec's `pattern`, else (without DP)
/// the one the real keys share (see [`IdFormat::learn`]); None for other keys.
fn key_format(
    spec: &Spec,
    table: &Loaded,
    dp: bool,
    notes: &mut Vec<String>,
) -> Result<Option<IdFormat>, FitError> {
    let ts = &spec.tables[&table.name];
    let Some(pk) = ts.primary_key.as_ref().map(|k| k.columns()) else {
        return Ok(None);
    };
    let [pk] = pk.as_slice() else { return Ok(None) };
    let i = table.index(pk)?;
    if table.schemas[i].kind != ValueKind::String {
        return Ok(None);
    }
    if let Some(p) = ts.columns.get(pk).and_then(|c| c.pattern.as_ref()) {
        return IdFormat::parse(p)
            .map(Some)
            .map_err(|e| table_error(&table.name, format!("column `{pk}`: pattern `{p}`: {e}")));
    }
    if dp {
        notes.push(format!(
            "table `{}`: fresh `{pk}` keys are 16 hex digits (under DP their format is not learnt from the data; declare `pattern` in the spec)",
            table.name
        ));
        return Ok(None);
    }
    Ok(
        match column_values(&table.name, &table.schemas[i], table.batch.column(i), 0)? {
            ColumnValues::Strings(a) => IdFormat::learn(a.iter().flatten()),
            ColumnValues::Numbers(_) => None,
        },
    )
}

/// Each (value, base) pair's offset, with how many values are earlier than their base
/// (counted unless `signed`) and how many are set without a base.
fn offsets(
    pairs: impl Iterator<Item = (Option<f64>, Option<f64>)>,
    signed: bool,
) -> (Vec<Option<f64>>, usize, usize) {
    let (mut negative, mut no_base) = (0usize, 0usize);
    let v = pairs
        .map(|pair| match pair {
            (Some(v), Some(b)) => {
                if v < b && !signed {
                    negative += 1;
                }
                Some(v - b)
            }
            (Some(_), None) => {
                no_base += 1;
                None
            }
            _ => None,
        })
        .collect();
    (v, negative, no_base)
}

/// The modelled row of table `t` for each of its kept rows: names, meanings and arrays.
fn table_rows(
    tree: &EntityTree,
    spec: &Spec,
    loaded: &HashMap<String, Loaded>,
    layouts: &[Layout],
    t: usize,
    dp: bool,
) -> Result<TableRows, FitError> {
    let node = &tree.tables[t];
    let ts = &spec.tables[&node.name];
    let table = &loaded[&node.name];
    let layout = &layouts[t];
    let idx = UInt32Array::from(layout.rows.clone());
    let arrow_err = |column: &str| arrow_error(&node.name, column);
    let mut skip: HashSet<String> = HashSet::new();
    if let Some(pk) = &ts.primary_key {
        skip.extend(pk.columns());
    }
    skip.extend(node.parent_columns.iter().cloned());
    for (cols, _) in &node.ancestor_keys {
        skip.extend(cols.iter().cloned());
    }
    let mut names: Vec<(String, RowColumn)> = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for (cols, public) in &node.references {
        skip.extend(cols.iter().cloned());
        let keys = table.keys(cols)?;
        let mut b = StringBuilder::new();
        for &r in &layout.rows {
            b.append_option(keys[r as usize].as_deref());
        }
        names.push((
            cols.join("+"),
            RowColumn::Reference {
                columns: cols.clone(),
                table: public.clone(),
            },
        ));
        arrays.push(Arc::new(b.finish()));
        // A part of the key with few public values (an ICD version) is modelled on its own too,
        // so that siblings can agree on it; sampling makes the key agree with it.
        let public_key = spec.tables[public]
            .primary_key
            .as_ref()
            .map(|k| k.columns())
            .unwrap_or_default();
        for (part, (col, public_col)) in cols.iter().zip(&public_key).enumerate() {
            if cols.len() < 2 {
                break;
            }
            let mut values: Vec<String> = loaded[public]
                .keys(std::slice::from_ref(public_col))?
                .into_iter()
                .flatten()
                .collect();
            values.sort();
            values.dedup();
            if values.len() < 2 || values.len() > relational::KEY_PART_VALUES {
                continue;
            }
            let own = table.keys(std::slice::from_ref(col))?;
            let mut b = StringBuilder::new();
            for &r in &layout.rows {
                b.append_option(own[r as usize].as_deref());
            }
            // Without DP: whether siblings always share the part (a later sibling is the kept
            // row before it). Under DP that exact fact is not used.
            let later: Vec<usize> = (0..layout.rows.len())
                .filter(|&i| layout.position[i] > 0)
                .collect();
            let value = |i: usize| &own[layout.rows[i] as usize];
            let constant =
                !dp && !later.is_empty() && later.iter().all(|&i| value(i) == value(i - 1));
            names.push((
                col.clone(),
                RowColumn::KeyPart {
                    reference: cols.join("+"),
                    part,
                    values,
                    constant,
                },
            ));
            arrays.push(Arc::new(b.finish()));
        }
    }
    for (ci, c) in table.schemas.iter().enumerate() {
        if skip.contains(&c.name) {
            continue;
        }
        let is_time = matches!(c.kind, ValueKind::Date | ValueKind::Timestamp);
        let user = ts.columns.get(&c.name);
        let signed = user.is_some_and(|s| s.offset_from.is_some());
        let after = user.and_then(|s| s.after.clone().or(s.offset_from.clone()));
        if node.parent.is_some() && ts.order_by.as_deref() == Some(c.name.as_str()) {
            let p = node.parent.unwrap_or(0);
            let own = table.numbers(&c.name)?;
            // Siblings are placed in time by this column: it must be set on every row (sampling
            // relies on it: a first child drawn without one is drawn again).
            let empty = layout
                .rows
                .iter()
                .filter(|&&r| own.is_null(r as usize))
                .count();
            if empty > 0 {
                return Err(table_error(
                    &node.name,
                    format!(
                        "`order_by: {}` is empty in {empty} rows; the column that orders siblings must be set on every row (choose another, or leave `order_by` out)",
                        c.name
                    ),
                ));
            }
            let base_col = ts.after_previous.clone().unwrap_or_else(|| c.name.clone());
            let base = table.numbers(&base_col)?;
            let mut anchor_is_year = false;
            let anchor = match &ts.anchor {
                Some(keys) => {
                    let parent = &loaded[&tree.tables[p].name];
                    let columns = keys.columns();
                    let mut values = Vec::new();
                    for a in &columns {
                        anchor_is_year = match parent.schemas[parent.index(a)?].kind {
                            ValueKind::Date | ValueKind::Timestamp => false,
                            ValueKind::Integer if columns.len() == 1 => true,
                            _ => {
                                return Err(table_error(
                                    &node.name,
                                    format!(
                                        "`anchor: {a}` must name a datetime column of `{}` (or, alone, an integer year)",
                                        parent.name
                                    ),
                                ));
                            }
                        };
                        values.push(parent.numbers(a)?);
                    }
                    let prow = &layouts[p].rows;
                    Some(
                        layout
                            .parent
                            .iter()
                            .map(|&pi| {
                                let r = prow[pi as usize] as usize;
                                let d = values.iter().find_map(|v| days(v, r));
                                if anchor_is_year {
                                    d.map(year_start_days)
                                } else {
                                    d
                                }
                            })
                            .collect::<Vec<_>>(),
                    )
                }
                None => None,
            };
            let mut first = Vec::with_capacity(layout.rows.len());
            let mut gap = Vec::with_capacity(layout.rows.len());
            let mut negative = 0usize;
            for (i, &r) in layout.rows.iter().enumerate() {
                let v = days(&own, r as usize);
                if layout.position[i] == 0 {
                    gap.push(None);
                    first.push(match (&anchor, v) {
                        (Some(a), Some(v)) => a[i].map(|a| v - a),
                        (None, v) => v,
                        (_, None) => None,
                    });
                } else {
                    first.push(None);
                    let prev = layout.rows[i - 1] as usize;
                    let b = days(&base, prev).or(days(&own, prev));
                    let g = match (v, b) {
                        (Some(v), Some(b)) => Some(v - b),
                        _ => None,
                    };
                    if g.is_some_and(|g| g < 0.0) {
                        negative += 1;
                    }
                    gap.push(g);
                }
            }
            if negative > 0 {
                return Err(table_error(
                    &node.name,
                    format!(
                        "in {negative} rows `{}` is before the previous sibling's `{base_col}`, so `after_previous` does not hold in the data",
                        c.name
                    ),
                ));
            }
            names.push((
                c.name.clone(),
                RowColumn::First {
                    column: c.name.clone(),
                    anchor: ts.anchor.clone(),
                    anchor_is_year,
                    ends_at: ts.ends_at.clone(),
                },
            ));
            arrays.push(Arc::new(Float64Array::from(first)));
            names.push((
                relational::gap_column(&c.name),
                RowColumn::Gap {
                    column: c.name.clone(),
                    base: base_col,
                },
            ));
            arrays.push(Arc::new(Float64Array::from(gap)));
        } else if let Some((child, base_col)) = after
            .as_deref()
            .and_then(|a| a.split_once('.'))
            .filter(|(ch, _)| node.children.iter().any(|&k| tree.tables[k].name == *ch))
        {
            if signed {
                return Err(table_error(
                    &node.name,
                    format!(
                        "column `{}`: `offset_from` takes a column of the same table; a child table's column (`{child}.{base_col}`) goes in `after`",
                        c.name
                    ),
                ));
            }
            let k = tree.index(child).unwrap_or(0);
            let own = table.numbers(&c.name)?;
            let theirs = loaded[child].numbers(base_col)?;
            let mut latest: Vec<Option<f64>> = vec![None; layout.rows.len()];
            for (&r, &pi) in layouts[k].rows.iter().zip(&layouts[k].parent) {
                if let Some(v) = days(&theirs, r as usize) {
                    let l = &mut latest[pi as usize];
                    *l = Some(l.map_or(v, |l: f64| l.max(v)));
                }
            }
            let whole_days = c.kind == ValueKind::Date;
            let (v, negative, no_base) = offsets(
                layout.rows.iter().zip(&latest).map(|(&r, &b)| {
                    let b = if whole_days { b.map(f64::floor) } else { b };
                    (days(&own, r as usize), b)
                }),
                false,
            );
            if negative + no_base > 0 {
                return Err(table_error(
                    &node.name,
                    format!(
                        "column `{}` is declared `after: {child}.{base_col}`, but it is earlier than the latest `{base_col}` of its `{child}` rows in {negative} rows, and set on {no_base} rows without any",
                        c.name
                    ),
                ));
            }
            names.push((
                c.name.clone(),
                RowColumn::AfterLast {
                    column: c.name.clone(),
                    child: child.to_owned(),
                    base: base_col.to_owned(),
                },
            ));
            arrays.push(Arc::new(Float64Array::from(v)));
        } else if let Some(base_col) = after {
            let own = table.numbers(&c.name)?;
            let base = table.numbers(&base_col)?;
            let (v, negative, no_base) = offsets(
                layout.rows.iter().map(|&r| {
                    let r = r as usize;
                    (days(&own, r), days(&base, r))
                }),
                signed,
            );
            if negative + no_base > 0 {
                return Err(table_error(
                    &node.name,
                    if signed {
                        format!(
                            "column `{}` is declared `offset_from: {base_col}`, but it is set while `{base_col}` is empty in {no_base} rows",
                            c.name
                        )
                    } else {
                        format!(
                            "column `{}` is declared `after: {base_col}`, but it is earlier in {negative} rows and set while `{base_col}` is empty in {no_base}",
                            c.name
                        )
                    },
                ));
            }
            names.push((
                c.name.clone(),
                RowColumn::After {
                    column: c.name.clone(),
                    base: base_col,
                    signed,
                },
            ));
            arrays.push(Arc::new(Float64Array::from(v)));
        } else {
            let a = if is_time {
                Arc::new(table.numbers(&c.name)?) as ArrayRef
            } else {
                table.batch.column(ci).clone()
            };
            names.push((
                c.name.clone(),
                RowColumn::Plain {
                    column: c.name.clone(),
                },
            ));
            arrays.push(take(&a, &idx, None).map_err(arrow_err(&c.name))?);
        }
    }
    presence_columns(&mut names, &mut arrays, ts, dp);
    if !dp {
        band_columns(&mut names, &mut arrays, ts)?;
    }
    // Child counts.
    for &ch in &node.children {
        let mut counts = vec![0i64; layout.rows.len()];
        for &p in &layouts[ch].parent {
            counts[p as usize] += 1;
        }
        names.push((
            relational::count_column(&tree.tables[ch].name),
            RowColumn::Count {
                child: tree.tables[ch].name.clone(),
            },
        ));
        arrays.push(Arc::new(Int64Array::from(counts)));
    }
    check_last_when(node, ts, table, layout, layouts)?;
    check_first_where(tree, t, ts, loaded, layouts, dp)?;
    for column in &ts.same_for_siblings {
        if !names
            .iter()
            .any(|(n, rc)| n == column && matches!(rc, RowColumn::Plain { .. }))
        {
            return Err(table_error(
                &node.name,
                format!(
                    "`same_for_siblings` names `{column}`, which is not a modelled column of the \
                     table (a key, a time placed by `order_by` or `after`, or a missing column)"
                ),
            ));
        }
    }
    Ok((names, arrays))
}

/// A [`RowColumn::Set`] column for each time or number of the row that may be empty: without
/// DP, one that is empty on some rows and set on others; under DP every one the spec does not
/// rule on, whatever the data (whether a column is ever empty must not show in the model's
/// shape). A time `after` another joins that one's presence column where the spec says it is
/// `required` (then: set wherever its base is) or, without DP, where the data sets it exactly
/// where its base is set. Columns the spec rules on otherwise (`empty_when`, `required`, a role
/// other than numeric or datetime) are left as they are.
fn presence_columns(
    names: &mut Vec<(String, RowColumn)>,
    arrays: &mut Vec<ArrayRef>,
    ts: &relational::TableSpec,
    dp: bool,
) {
    let n = arrays.first().map_or(0, |a| a.len());
    let spec = |name: &str| ts.columns.get(name);
    let required = |name: &str| spec(name).is_some_and(|c| c.required);
    let ruled = |name: &str| {
        spec(name).is_some_and(|c| {
            !c.empty_when.is_empty()
                || c.role
                    .is_some_and(|r| !matches!(r, Role::Numeric | Role::Datetime))
        })
    };
    // Groups of columns set together, by the place of their first column.
    let mut groups: Vec<(usize, Vec<String>)> = Vec::new();
    for j in 0..names.len() {
        let (name, rc) = &names[j];
        let a = &arrays[j];
        let kind = match rc {
            RowColumn::Plain { .. } => a.data_type().is_numeric(),
            RowColumn::After { .. } | RowColumn::AfterLast { .. } => true,
            _ => false,
        };
        if !kind || ruled(name) {
            continue;
        }
        let base = match rc {
            RowColumn::After { base, .. } => groups.iter().position(|(_, m)| m.contains(base)),
            _ => None,
        };
        if let Some(g) = base {
            let b = &arrays[groups[g].0];
            let alike = || (0..n).all(|r| a.is_null(r) == b.is_null(r));
            if required(name) || !dp && alike() {
                groups[g].1.push(name.clone());
                continue;
            }
        }
        let partly_empty = a.null_count() > 0 && a.null_count() < a.len();
        if !required(name) && (dp || partly_empty) {
            groups.push((j, vec![name.clone()]));
        }
    }
    for (g, columns) in groups {
        let a = &arrays[g];
        let set: Int64Array = (0..n).map(|r| Some(a.is_valid(r) as i64)).collect();
        names.push((
            relational::set_column(&columns[0]),
            RowColumn::Set { columns },
        ));
        arrays.push(Arc::new(set));
    }
}

/// A [`RowColumn::Band`] column for each number of the row, or time `after` another, that the
/// data sets on every row with more than twice [`relational::BAND_CODES`] values, cut at its
/// quantiles. Without DP only: the cuts are the data's.
fn band_columns(
    names: &mut Vec<(String, RowColumn)>,
    arrays: &mut Vec<ArrayRef>,
    ts: &relational::TableSpec,
) -> Result<(), FitError> {
    let mut bands = Vec::new();
    for ((name, rc), a) in names.iter().zip(arrays.iter()) {
        let numeric_role = (ts.columns.get(name).and_then(|c| c.role))
            .is_none_or(|r| matches!(r, Role::Numeric | Role::Datetime));
        // A time after another is banded as modelled: its days after that one (a length of
        // stay). A sibling's gap or first place is empty on the other siblings.
        if !matches!(rc, RowColumn::Plain { .. } | RowColumn::After { .. })
            || !a.data_type().is_numeric()
            || a.null_count() > 0
            || !numeric_role
        {
            continue;
        }
        let a = cast(a, &DataType::Float64).map_err(|e| FitError::Internal(e.to_string()))?;
        let values = a.as_primitive::<arrow::datatypes::Float64Type>().values();
        let mut v: Vec<f64> = values.to_vec();
        v.sort_by(f64::total_cmp);
        let mut distinct = v.clone();
        distinct.dedup();
        if distinct.len() <= 2 * relational::BAND_CODES {
            continue;
        }
        // A cut at the value a quantile falls on: the band from it holds that value.
        let mut cuts: Vec<f64> = (1..relational::BAND_CODES)
            .map(|k| v[k * v.len() / relational::BAND_CODES])
            .filter(|&c| c > v[0])
            .collect();
        cuts.dedup();
        if cuts.is_empty() {
            continue;
        }
        let band: Int64Array = (values.iter())
            .map(|&x| Some(cuts.partition_point(|&c| c <= x) as i64))
            .collect();
        bands.push((
            relational::band_column(name),
            RowColumn::Band {
                column: name.clone(),
                cuts,
            },
            Arc::new(band) as ArrayRef,
        ));
    }
    for (name, rc, a) in bands {
        names.push((name, rc));
        arrays.push(a);
    }
    Ok(())
}

/// `last_when` must hold in the data: no row with the value has a later sibling; and
/// `last_is`: every parent's last child (before clipping) holds its value.
fn check_last_when(
    node: &relational::TableNode,
    ts: &relational::TableSpec,
    table: &Loaded,
    layout: &Layout,
    layouts: &[Layout],
) -> Result<(), FitError> {
    let Some(p) = node.parent else { return Ok(()) };
    let mut siblings = vec![0u32; layouts[p].rows.len()];
    for &pi in &layout.parent {
        siblings[pi as usize] += 1;
    }
    let rules = (ts.last_when.iter().map(|r| ("last_when", r)))
        .chain(ts.last_is.iter().map(|r| ("last_is", r)));
    for (key, (column, value)) in rules {
        let i = table.index(column)?;
        let holds: Box<dyn Fn(usize) -> bool> = match column_values(
            &table.name,
            &table.schemas[i],
            table.batch.column(i),
            0,
        )? {
            ColumnValues::Strings(a) => {
                let value = value.clone();
                Box::new(move |r| a.is_valid(r) && a.value(r) == value)
            }
            ColumnValues::Numbers(a) => {
                let x: f64 = value.trim().parse().map_err(|_| {
                        table_error(
                            &node.name,
                            format!("`{key}: {{{column}: {value}}}`: `{column}` holds numbers, and `{value}` is not one"),
                        )
                    })?;
                Box::new(move |r| a.is_valid(r) && a.value(r) == x)
            }
        };
        if key == "last_is" {
            let without = (layout.last.iter().flatten())
                .filter(|&&r| !holds(r as usize))
                .count();
            if without > 0 {
                return Err(table_error(
                    &node.name,
                    format!(
                        "`last_is: {{{column}: {value}}}` does not hold in the data: the last child of {without} parent rows does not hold it"
                    ),
                ));
            }
            continue;
        }
        let early = layout
            .rows
            .iter()
            .zip(&layout.parent)
            .zip(&layout.position)
            .filter(|((r, pi), k)| holds(**r as usize) && **k + 1 < siblings[**pi as usize])
            .count();
        if early > 0 {
            return Err(table_error(
                &node.name,
                format!(
                    "`last_when: {{{column}: {value}}}` does not hold in the data: {early} rows hold it and have a later sibling"
                ),
            ));
        }
        // A value no row holds may be a typing slip (a batch with no such row is not an error).
        if !layout.rows.iter().any(|&r| holds(r as usize)) {
            tracing::warn!(
                "table `{}`: `last_when: {{{column}: {value}}}`: no row of the data holds `{value}` (is it spelt as in the data?)",
                node.name
            );
        }
    }
    Ok(())
}

/// `first_where` names a column of the parent and one of the table; the first child of a root's
/// child table is drawn in the flat row, where the rule is not held, so it is refused there.
/// Without DP, parents where the data does not hold the rule are counted in a warning (the
/// output always holds it).
fn check_first_where(
    tree: &EntityTree,
    t: usize,
    ts: &relational::TableSpec,
    loaded: &HashMap<String, Loaded>,
    layouts: &[Layout],
    dp: bool,
) -> Result<(), FitError> {
    let node = &tree.tables[t];
    let Some(p) = node.parent else { return Ok(()) };
    if ts.first_where.is_empty() {
        return Ok(());
    }
    let parent = &tree.tables[p].name;
    if p == 0 {
        return Err(table_error(
            &node.name,
            format!(
                "`first_where` holds for tables below the root's children: the first row of \
                 `{}` under each `{parent}` is drawn with the root's row, where it is not held",
                node.name
            ),
        ));
    }
    let table = &loaded[&node.name];
    let (layout, parent_layout) = (&layouts[t], &layouts[p]);
    for (set, rule) in &ts.first_where {
        let q = loaded[parent].index(set)?;
        let parent_set = loaded[parent].batch.column(q);
        for (column, value) in rule {
            let i = table.index(column)?;
            let text = cast(table.batch.column(i), &DataType::Utf8)
                .map_err(arrow_error(&node.name, column))?;
            let text = text.as_string::<i32>();
            let (mut first, mut wrong) = (0usize, 0usize);
            for ((&r, &pi), &k) in layout.rows.iter().zip(&layout.parent).zip(&layout.position) {
                if k > 0 {
                    continue;
                }
                first += 1;
                let holds = text.is_valid(r as usize) && text.value(r as usize) == value.as_str();
                let is_set = parent_set.is_valid(parent_layout.rows[pi as usize] as usize);
                wrong += usize::from(holds != is_set);
            }
            if wrong > 0 && !dp {
                tracing::warn!(
                    table = %node.name,
                    "`first_where: {{{set}: {{{column}: {value}}}}}`: in the data the first row of \
                     {wrong} of {first} `{parent}` rows with children does not follow it; in the \
                     output every one does"
                );
            }
        }
    }
    Ok(())
}

/// The columns of a table's rows that hold a first sibling's place in time (its `order_by`).
fn first_places(rows: &TableRows) -> impl Iterator<Item = &String> {
    rows.0
        .iter()
        .filter(|(_, rc)| matches!(rc, RowColumn::First { .. }))
        .map(|(n, _)| n)
}

/// The declared last-child values of table `t`'s model (`last_when`, `last_is`): in a sequence
/// model against the siblings still to come; in the flat row, the first child of a root's child
/// table is the last one when the count is 1.
fn last_only(tree: &EntityTree, spec: &Spec, t: usize) -> Vec<LastOnly> {
    let of = |c: usize, prefix: &str, position: String, last: f64| {
        let ts = &spec.tables[&tree.tables[c].name];
        let is = |column: &String, value: &String| ts.last_is.get(column) == Some(value);
        let only = ts.last_when.iter().map(|(c, v)| (c, v, true, is(c, v)));
        let always = (ts.last_is.iter())
            .filter(|(c, v)| ts.last_when.get(*c) != Some(*v))
            .map(|(c, v)| (c, v, false, true));
        only.chain(always)
            .map(|(column, value, only_last, always)| LastOnly {
                column: format!("{prefix}{column}"),
                value: value.clone(),
                only_last,
                always,
                position: position.clone(),
                last,
            })
            .collect::<Vec<_>>()
    };
    if t > 0 {
        return of(t, "", relational::REMAINING_COLUMN.into(), 0.0);
    }
    tree.tables[0]
        .children
        .iter()
        .flat_map(|&c| {
            let name = &tree.tables[c].name;
            of(c, &format!("{name}."), relational::count_column(name), 1.0)
        })
        .collect()
}

/// The spec's `parents`, `empty_when` and `required` of the columns in table `t`'s model, and
/// each child table's `count_parents` as its count's `parents`, named as that model names them
/// ([`model_name`]; in a sequence model the parent table's columns carry
/// [`relational::PARENT_PREFIX`]). `TABLE.COLUMN` in `parents` names a column of the parent
/// table, `COLUMN~set` a presence column.
fn declare_parents(
    tree: &EntityTree,
    spec: &Spec,
    loaded: &HashMap<String, Loaded>,
    t: usize,
    dp: bool,
    specs: &mut BTreeMap<String, ColumnSpec>,
) -> Result<(), FitError> {
    let held: HashSet<String> = specs.keys().cloned().collect();
    for k in model_tables(tree, t) {
        let node = &tree.tables[k];
        let parent = node.parent.map(|p| tree.tables[p].name.as_str());
        let own = |c: &str| model_name(tree, t, k, c);
        // The count of each child table in this table's row, given the child's `count_parents`.
        for &ch in &node.children {
            let child = &tree.tables[ch].name;
            let mut mapped = Vec::new();
            for p in &spec.tables[child].count_parents {
                let of = p.strip_suffix(PRESENCE_SUFFIX);
                if loaded[&node.name].index(of.unwrap_or(p)).is_err() {
                    return Err(table_error(
                        child,
                        format!(
                            "`count_parents` names `{p}`, which is not a column of the parent \
                             table `{}`",
                            node.name
                        ),
                    ));
                }
                if held.contains(&own(p)) {
                    mapped.push(own(p));
                } else if of.is_some() {
                    tracing::warn!(
                        table = %child,
                        "`count_parents`: `{p}` is passed over: that column has no presence \
                         column (the spec rules on it, or, without DP, the data never leaves it \
                         empty)"
                    );
                }
            }
            if let Some(s) = specs.get_mut(&own(&relational::count_column(child))) {
                s.parents = mapped;
            }
        }
        for (column, cs) in &spec.tables[&node.name].columns {
            let mut mapped = Vec::new();
            for p in &cs.parents {
                let (table, name) = match p.split_once('.') {
                    Some((table, name)) => (table, name),
                    None => (node.name.as_str(), p.as_str()),
                };
                let named = if table == node.name {
                    own(name)
                } else if Some(table) == parent {
                    if t == 0 {
                        name.to_owned()
                    } else {
                        format!("{}{name}", relational::PARENT_PREFIX)
                    }
                } else {
                    return Err(table_error(
                        &node.name,
                        format!(
                            "column `{column}`: `parents` names `{p}`; a parent is a column of `{}`{}",
                            node.name,
                            parent.map_or(String::new(), |p| format!(
                                " or of its parent `{p}` (as `{p}.COLUMN`)"
                            ))
                        ),
                    ));
                };
                // A presence column (`X~set`) or a band (`X~band`) is named after its column.
                let band = name.strip_suffix(relational::BAND_SUFFIX);
                let of = name.strip_suffix(PRESENCE_SUFFIX);
                loaded[table].index(of.or(band).unwrap_or(name))?;
                // A derived parent this model lacks is passed over: by design under DP (an
                // info line), else most likely a slip in the spec (a warning).
                let missing = match (of, band) {
                    (Some(_), _) if dp && named.starts_with(relational::PARENT_PREFIX) => Some((
                        true,
                        "under DP a sequence model is not given its parent's presence columns",
                    )),
                    (Some(_), _) => Some((
                        false,
                        "that column has no presence column (the spec rules on it, or, without \
                         DP, the data never leaves it empty)",
                    )),
                    (None, Some(_)) if dp => Some((true, "under DP numbers have no bands")),
                    (None, Some(_)) => Some((
                        false,
                        "that column has no band (it is empty on some rows, or has few values)",
                    )),
                    (None, None) => None,
                };
                if let Some((by_design, why)) = missing
                    && !held.contains(&named)
                    && specs.contains_key(&own(column))
                {
                    if by_design {
                        tracing::info!(
                            table = %node.name,
                            "column `{column}`: the declared parent `{p}` is passed over: {why}"
                        );
                    } else {
                        tracing::warn!(
                            table = %node.name,
                            "column `{column}`: the declared parent `{p}` is passed over: {why}"
                        );
                    }
                }
                mapped.push(named);
            }
            if let Some(s) = specs.get_mut(&own(column)) {
                // Only the columns this model holds: the rest are passed over by the fit.
                s.parents = mapped.into_iter().filter(|m| held.contains(m)).collect();
                // Conditions are columns of the same table (the loader checked them); the fit
                // stops on one it does not model.
                s.empty_when = cs
                    .empty_when
                    .iter()
                    .map(|(q, v)| (own(q), v.clone()))
                    .collect();
                // In the flat row a child's columns are also empty where there is no child:
                // there the sampler draws a first child with one empty again.
                s.required = cs.required && (t > 0 || k == 0);
            }
        }
    }
    Ok(())
}

/// The tables whose rows table `t`'s model holds: the flat row, the root's and the first of
/// each of its child tables; a sequence model, its own.
fn model_tables(tree: &EntityTree, t: usize) -> Vec<usize> {
    if t == 0 {
        std::iter::once(0)
            .chain(tree.tables[0].children.iter().copied())
            .collect()
    } else {
        vec![t]
    }
}

/// How table `t`'s model names `column` of table `k` (one of its [`model_tables`]): in the
/// flat row a root child's columns carry its name as a prefix.
fn model_name(tree: &EntityTree, t: usize, k: usize, column: &str) -> String {
    if t == 0 && k > 0 {
        format!("{}.{column}", tree.tables[k].name)
    } else {
        column.to_owned()
    }
}

/// The rule of each [`RowColumn::Set`] column in table `t`'s model (named as that model names
/// them, as in [`declare_parents`]): its columns are empty exactly where it is 0 (an
/// `empty_when` condition on a `required` column, so the networks hold to it by construction).
/// A column's declared `parents` go to its presence: two codes, where the column's own many
/// would make a table too sparse to learn from. Returns the leaves of the search: in a
/// sequence model, the parent's and the previous sibling's presence columns (their columns are
/// given too). Learnt, they reshaped the demo's small networks: the later admissions' number
/// of transfers took the patient's `dod~set` for a parent and came out with too long a tail.
/// A declared parent may still name one (`parents: [admissions.edregtime~set]`).
fn presence_rules(
    tree: &EntityTree,
    rows: &[TableRows],
    t: usize,
    specs: &mut BTreeMap<String, ColumnSpec>,
) -> Vec<String> {
    let mut leaves = Vec::new();
    for k in model_tables(tree, t) {
        let own = |c: &str| model_name(tree, t, k, c);
        for (name, rc) in &rows[k].0 {
            let RowColumn::Set { columns } = rc else {
                continue;
            };
            let set = own(name);
            if !specs.contains_key(&set) {
                continue;
            }
            let mut parents = Vec::new();
            for c in columns {
                if let Some(s) = specs.get_mut(&own(c)) {
                    s.empty_when = BTreeMap::from([(set.clone(), "0".to_owned())]);
                    s.required = true;
                    parents.append(&mut s.parents);
                }
            }
            if let Some(s) = specs.get_mut(&set) {
                s.parents = parents;
            }
        }
    }
    if t > 0 {
        let p = tree.tables[t].parent.unwrap_or(0);
        for (prefix, k) in [
            (relational::PARENT_PREFIX, p),
            (relational::PREVIOUS_PREFIX, t),
        ] {
            leaves.extend(
                rows[k]
                    .0
                    .iter()
                    .filter(|(_, rc)| matches!(rc, RowColumn::Set { .. }))
                    .map(|(n, _)| format!("{prefix}{n}")),
            );
        }
    }
    leaves
}

/// The rule of each [`RowColumn::Band`] column in table `t`'s model (named as that model names
/// them): its number is drawn within the band. The number's declared `parents` go to its band,
/// whose few codes leave them room.
fn band_rules(
    tree: &EntityTree,
    rows: &[TableRows],
    t: usize,
    specs: &mut BTreeMap<String, ColumnSpec>,
) -> Vec<Within> {
    let mut within = Vec::new();
    for k in model_tables(tree, t) {
        let own = |c: &str| model_name(tree, t, k, c);
        for (name, rc) in &rows[k].0 {
            let RowColumn::Band { column, cuts } = rc else {
                continue;
            };
            let (band, column) = (own(name), own(column));
            if !specs.contains_key(&band) {
                continue;
            }
            let parents = specs
                .get_mut(&column)
                .map(|s| std::mem::take(&mut s.parents))
                .unwrap_or_default();
            if let Some(s) = specs.get_mut(&band) {
                s.parents = parents;
            }
            within.push(Within {
                column,
                by: band,
                cuts: cuts.clone(),
            });
        }
    }
    within
}

/// Codes of a child-count column: the frequent counts exactly, the tail in bins. Every code
/// multiplies the tables a count enters, and counts are among the most informative attributes.
const COUNT_CODES: usize = 4;

type Wide = (
    String,
    Vec<(String, ArrayRef)>,
    Vec<String>,
    BTreeMap<String, ColumnSpec>,
);

/// A later sibling repeats a column's value from the previous one at least this often for the
/// column to be drawn given it (see [`repeated_columns`]).
const REPEATED_SHARE: f64 = 0.9;

/// The columns of a child table a later sibling repeats from the previous one: the spec's
/// `same_for_siblings` (copied when sampling), and without DP the string columns the data
/// nearly always repeats (a patient's race, marital status, insurance on each admission).
/// Each gets the previous sibling's column as a parent the network must give it: the cell cap
/// would otherwise keep a 14-value column from its own previous value, and a patient's race
/// would change from one admission to the next (half the time, on the demo).
fn repeated_columns(
    spec: &Spec,
    table: &str,
    rows: &TableRows,
    layout: &Layout,
    dp: bool,
) -> Vec<String> {
    let mut out: Vec<String> = spec.tables[table].same_for_siblings.clone();
    let later: Vec<usize> = (0..layout.position.len())
        .filter(|&i| layout.position[i] > 0)
        .collect();
    if dp || later.is_empty() {
        return out;
    }
    for ((name, rc), a) in rows.0.iter().zip(&rows.1) {
        if !matches!(rc, RowColumn::Plain { .. })
            || a.data_type() != &DataType::Utf8
            || out.contains(name)
        {
            continue;
        }
        let a = a.as_string::<i32>();
        let value = |i: usize| a.is_valid(i).then(|| a.value(i));
        let same = later.iter().filter(|&&i| value(i) == value(i - 1)).count();
        if same as f64 >= REPEATED_SHARE * later.len() as f64 {
            out.push(name.clone());
        }
    }
    out
}

/// What the specs of the modelled columns are made from: the user's spec and, under DP, the keys
/// of each public table (a reference's domain, public: no budget is spent on discovering it).
struct RowSpecs<'a> {
    spec: &'a Spec,
    public_keys: HashMap<String, Vec<String>>,
}

/// A public table with more keys than this is not given as a reference's domain (a categorical
/// column has at most `u16::MAX` codes): its keys are released like any column's values.
const PUBLIC_DOMAIN_LIMIT: usize = 60_000;

impl<'a> RowSpecs<'a> {
    fn new(spec: &'a Spec, loaded: &HashMap<String, Loaded>, dp: bool) -> Result<Self, FitError> {
        let mut public_keys = HashMap::new();
        if dp {
            for (name, ts) in &spec.tables {
                let (true, Some(pk)) = (ts.public, &ts.primary_key) else {
                    continue;
                };
                let Some(table) = loaded.get(name) else {
                    continue;
                };
                let mut keys: Vec<String> =
                    table.keys(&pk.columns())?.into_iter().flatten().collect();
                keys.sort();
                keys.dedup();
                if keys.len() <= PUBLIC_DOMAIN_LIMIT {
                    public_keys.insert(name.clone(), keys);
                }
            }
        }
        Ok(RowSpecs { spec, public_keys })
    }

    /// The spec of a modelled column, from the user's spec of the column it stands for.
    fn of(&self, table: &str, rc: &RowColumn) -> ColumnSpec {
        row_spec(self.spec, &self.public_keys, table, rc)
    }
}

/// Under DP a reference into a public table with more than [`PUBLIC_DOMAIN_LIMIT`] keys is
/// released like any column's values. When none is, every row would lack its key, which no
/// foreign key may: the fit stops and says so.
fn check_references(
    model: &Model,
    tree: &EntityTree,
    rows: &[TableRows],
    t: usize,
) -> Result<(), FitError> {
    // The flat model holds the root's columns and its children's first rows (`child.column`).
    let tables: Vec<usize> = if t == 0 {
        (0..tree.tables.len())
            .filter(|&i| i == 0 || tree.tables[i].parent == Some(0))
            .collect()
    } else {
        vec![t]
    };
    for i in tables {
        let prefix = if t == 0 && i > 0 {
            format!("{}.", tree.tables[i].name)
        } else {
            String::new()
        };
        for (name, rc) in &rows[i].0 {
            let RowColumn::Reference { table, .. } = rc else {
                continue;
            };
            let column = format!("{prefix}{name}");
            let released = model
                .columns
                .iter()
                .find(|c| c.schema.name == column)
                .and_then(|c| c.encoding.as_ref())
                .is_some_and(|e| !e.releases_nothing());
            if !released {
                return Err(FitError::Core(CoreError::Column {
                    table: tree.tables[i].name.clone(),
                    column: name.clone(),
                    message: format!(
                        "no key of the public table `{table}` was released under DP at this \
                         epsilon, so no row would have one (the table has more than \
                         {PUBLIC_DOMAIN_LIMIT} keys, too many to give as the column's domain); \
                         raise epsilon, or trim `{table}` to the keys the data can use"
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// The spec of a modelled column, from the user's spec of the column it stands for.
fn row_spec(
    spec: &Spec,
    public_keys: &HashMap<String, Vec<String>>,
    table: &str,
    rc: &RowColumn,
) -> ColumnSpec {
    let user = |c: &str| {
        spec.tables
            .get(table)
            .and_then(|t| t.columns.get(c))
            .cloned()
            .unwrap_or_default()
    };
    match rc {
        RowColumn::Plain { column } => {
            let u = user(column);
            ColumnSpec {
                role: u.role.filter(|r| *r != Role::Datetime),
                bins: u.bins,
                domain: u.domain,
                bounds: u.bounds,
                pattern: u.pattern,
                ..ColumnSpec::default()
            }
        }
        // A time placed after another is modelled in days after it, and so are its bounds.
        RowColumn::After { column, .. }
        | RowColumn::AfterLast { column, .. }
        | RowColumn::First { column, .. }
        | RowColumn::Gap { column, .. } => {
            let u = user(column);
            ColumnSpec {
                role: Some(Role::Numeric),
                bins: u.bins,
                bounds: u.bounds,
                ..ColumnSpec::default()
            }
        }
        RowColumn::Reference { table, .. } => ColumnSpec {
            role: Some(Role::Categorical),
            domain: public_keys.get(table).cloned(),
            ..ColumnSpec::default()
        },
        // The public table's values: no budget is spent on discovering them.
        RowColumn::KeyPart { values, .. } => ColumnSpec {
            role: Some(Role::Categorical),
            domain: Some(values.clone()),
            ..ColumnSpec::default()
        },
        // Counts are clipped at `max_children`, so their range is known without the data.
        RowColumn::Count { child } => ColumnSpec {
            role: Some(Role::Numeric),
            bins: Some(COUNT_CODES),
            bounds: Some([
                0.0,
                spec.tables
                    .get(child)
                    .and_then(|t| t.max_children)
                    .unwrap_or(relational::DEFAULT_MAX_CHILDREN) as f64,
            ]),
            ..ColumnSpec::default()
        },
        RowColumn::Set { .. } => ColumnSpec {
            role: Some(Role::Numeric),
            bounds: Some([0.0, 1.0]),
            ..ColumnSpec::default()
        },
        // Empty only in the flat row, where the entity has no such child.
        RowColumn::Band { cuts, .. } => ColumnSpec {
            role: Some(Role::Numeric),
            bounds: Some([0.0, cuts.len() as f64]),
            ..ColumnSpec::default()
        },
    }
}

/// The flattened entity: the root's row and the first child's row of each child table.
fn flat_table(tree: &EntityTree, spec: &RowSpecs, rows: &[TableRows]) -> Result<Wide, FitError> {
    let root = &tree.tables[0];
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    let mut specs = BTreeMap::new();
    for ((name, rc), a) in rows[0].0.iter().zip(&rows[0].1) {
        columns.push((name.clone(), a.clone()));
        specs.insert(name.clone(), spec.of(&root.name, rc));
    }
    let n = rows[0].1.first().map_or(0, |a| a.len());
    for &ch in &root.children {
        let child = &tree.tables[ch];
        // First child of every root row, by the child's layout (grouped by parent, position 0).
        let count_name = relational::count_column(&child.name);
        let counts = rows[0]
            .0
            .iter()
            .position(|(n, _)| *n == count_name)
            .map(|i| rows[0].1[i].clone())
            .ok_or_else(|| FitError::Internal("missing count column".into()))?;
        let counts = counts.as_any().downcast_ref::<Int64Array>().cloned();
        let counts = counts.ok_or_else(|| FitError::Internal("count is not Int64".into()))?;
        let mut first: Vec<Option<u32>> = Vec::with_capacity(n);
        let mut at = 0u32;
        for r in 0..n {
            let c = counts.value(r);
            first.push((c > 0).then_some(at));
            at += c as u32;
        }
        let idx = UInt32Array::from(first);
        for ((name, rc), a) in rows[ch].0.iter().zip(&rows[ch].1) {
            if matches!(rc, RowColumn::Gap { .. }) {
                continue;
            }
            let wide = format!("{}.{name}", child.name);
            let mut taken = take(a, &idx, None).map_err(arrow_error(&child.name, name))?;
            if matches!(rc, RowColumn::Set { .. }) {
                // No child: nothing is set.
                let set = taken.as_primitive::<arrow::datatypes::Int64Type>();
                taken = Arc::new(Int64Array::from_iter_values(
                    set.iter().map(|v| v.unwrap_or(0)),
                ));
            }
            columns.push((wide.clone(), taken));
            specs.insert(wide, spec.of(&child.name, rc));
        }
    }
    Ok((root.name.clone(), columns, Vec::new(), specs))
}

/// A child table's rows with their context: parent's row, previous sibling's row, position.
fn sequence_table(
    tree: &EntityTree,
    spec: &RowSpecs,
    rows: &[TableRows],
    layouts: &[Layout],
    t: usize,
    cap: Option<usize>,
    dp: bool,
) -> Result<Wide, FitError> {
    let node = &tree.tables[t];
    let p = node
        .parent
        .ok_or_else(|| FitError::Internal("sequence model of the root".into()))?;
    // Under DP a parent's or previous sibling's presence columns are left out: every given
    // column adds to the noise of every table (on the MIMIC-IV stand-in at ε = 2 they took
    // diagnoses 2-way from 0.966 to 0.91-0.93), and a declared one would take a place of the
    // few parents DP allows (a transfer's type lost the previous type, and 60% of admissions
    // had no `admit` or several).
    let context = |rc: &RowColumn| !(dp && matches!(rc, RowColumn::Set { .. }));
    let layout = &layouts[t];
    let parent_idx = UInt32Array::from(layout.parent.clone());
    let prev_idx = UInt32Array::from(
        (0..layout.rows.len())
            .map(|i| (layout.position[i] > 0).then(|| i as u32 - 1))
            .collect::<Vec<_>>(),
    );
    let err = |column: &str| arrow_error(&node.name, column);
    let mut columns: Vec<(String, ArrayRef)> = Vec::new();
    let mut specs = BTreeMap::new();
    let mut given = Vec::new();
    for ((name, rc), a) in rows[t].0.iter().zip(&rows[t].1) {
        columns.push((name.clone(), a.clone()));
        specs.insert(name.clone(), spec.of(&node.name, rc));
    }
    let parent = &tree.tables[p];
    for ((name, rc), a) in rows[p].0.iter().zip(&rows[p].1) {
        if !context(rc) {
            continue;
        }
        let wide = format!("{}{name}", relational::PARENT_PREFIX);
        columns.push((wide.clone(), take(a, &parent_idx, None).map_err(err(name))?));
        specs.insert(wide.clone(), spec.of(&parent.name, rc));
        given.push(wide);
    }
    for ((name, rc), a) in rows[t].0.iter().zip(&rows[t].1) {
        if !context(rc) {
            continue;
        }
        let wide = format!("{}{name}", relational::PREVIOUS_PREFIX);
        columns.push((wide.clone(), take(a, &prev_idx, None).map_err(err(name))?));
        specs.insert(wide.clone(), spec.of(&node.name, rc));
        given.push(wide);
    }
    let position: Int64Array = layout
        .position
        .iter()
        .map(|&k| Some((k as i64).min(POSITION_CAP)))
        .collect();
    let mut siblings = vec![0i64; layouts[p].rows.len()];
    for &pi in &layout.parent {
        siblings[pi as usize] += 1;
    }
    let remaining: Int64Array = layout
        .parent
        .iter()
        .zip(&layout.position)
        .map(|(&pi, &k)| Some((siblings[pi as usize] - 1 - k as i64).min(POSITION_CAP)))
        .collect();
    for (name, a) in [
        (relational::POSITION_COLUMN, position),
        (relational::REMAINING_COLUMN, remaining),
    ] {
        columns.push((name.into(), Arc::new(a)));
        specs.insert(
            name.into(),
            ColumnSpec {
                role: Some(Role::Numeric),
                // Capped, so the range is known without the data.
                bounds: Some([0.0, POSITION_CAP as f64]),
                ..ColumnSpec::default()
            },
        );
        given.push(name.into());
    }
    // A child of the root takes its first row from the flat model: its sequence model learns
    // the later siblings only, so their distribution is not mixed with the first's.
    let mut keep: Vec<bool> = layout.position.iter().map(|&k| p != 0 || k > 0).collect();
    if let Some(cap) = cap {
        keep_per_entity(&mut keep, &entity_of(layouts, &tree.tables, t), cap);
    }
    if keep.iter().any(|&k| !k) {
        let keep = arrow::array::BooleanArray::from(keep);
        for (name, a) in &mut columns {
            *a = arrow::compute::filter(a, &keep).map_err(err(name))?;
        }
    }
    Ok((format!("{}~sequence", node.name), columns, given, specs))
}

/// The root entity (its index in the root's layout) of each kept row of table `t`.
fn entity_of(layouts: &[Layout], tables: &[relational::TableNode], t: usize) -> Vec<u32> {
    match tables[t].parent {
        None => (0..layouts[t].rows.len() as u32).collect(),
        Some(p) => {
            let up = entity_of(layouts, tables, p);
            layouts[t].parent.iter().map(|&i| up[i as usize]).collect()
        }
    }
}

/// Leaves at most `cap` of each entity's kept rows kept, spread evenly over them (an entity's
/// first, middle and last rows alike), so one entity contributes at most `cap` rows. Which
/// rows are kept depends on the entity's own rows only.
fn keep_per_entity(keep: &mut [bool], entity: &[u32], cap: usize) {
    let mut total: HashMap<u32, usize> = HashMap::new();
    for (&e, _) in entity.iter().zip(keep.iter()).filter(|(_, k)| **k) {
        *total.entry(e).or_default() += 1;
    }
    let mut seen: HashMap<u32, usize> = HashMap::new();
    for (k, &e) in keep.iter_mut().zip(entity) {
        if !*k {
            continue;
        }
        let n = total[&e];
        let c = seen.entry(e).or_default();
        // Row c of n is kept when it ends one of `cap` equal slices of the n rows: exactly
        // `cap` rows, the last one among them.
        *k = n <= cap || (*c * cap) / n != ((*c + 1) * cap) / n;
        *c += 1;
    }
}

/// Share of a column's values that must be keys of another table for the column to be taken as
/// a foreign key to it.
const FK_COVERAGE: f64 = 0.95;

/// Guesses a relational spec from the tables at `inputs`: a primary key per table (a column
/// whose name reads like a key, never empty, unique), foreign keys (a key-like column named like
/// another table's primary key, whose values are mostly keys of that table), and the first
/// datetime column of each child table as `order_by`. Returns the spec as commented YAML, for the
/// user to check, edit and save.
pub async fn infer_spec(inputs: &[String], opts: &ReadOptions) -> Result<String, FitError> {
    let mut tables: Vec<Loaded> = Vec::new();
    let mut paths = Vec::new();
    for input in inputs {
        let (source, batches) = read_all(input, opts).await?;
        let name = source.name().to_string();
        let batch = concat_batches(&source.schema(), &batches).map_err(arrow_error(&name, ""))?;
        let schemas = column_schemas(&name, &source.schema())?;
        if tables.iter().any(|t| t.name == name) {
            return Err(spec_error(format!(
                "two inputs are both named `{name}`; give them different file names"
            )));
        }
        tables.push(Loaded {
            name,
            batch,
            schemas,
        });
        paths.push(input.clone());
    }
    // Primary keys.
    let mut pks: Vec<Option<(String, HashSet<String>)>> = Vec::new();
    for t in &tables {
        let mut found = None;
        let mut candidates: Vec<&ColumnSchema> = t
            .schemas
            .iter()
            .filter(|c| chimera_core::schema::looks_like_identifier(&c.name))
            .collect();
        // `<table>_id` (or its singular) first, then in column order.
        let stem = t.name.trim_end_matches('s').to_ascii_lowercase();
        candidates.sort_by_key(|c| !c.name.to_ascii_lowercase().starts_with(&stem));
        for c in candidates {
            let keys = t.keys(std::slice::from_ref(&c.name))?;
            if keys.iter().any(Option::is_none) {
                continue;
            }
            let set: HashSet<String> = keys.into_iter().flatten().collect();
            if set.len() == t.batch.num_rows() {
                found = Some((c.name.clone(), set));
                break;
            }
        }
        pks.push(found);
    }
    // Foreign keys.
    let mut yaml = String::from(
        "# Inferred by `chimera infer-spec`: check the keys and links, add `order_by`,\n\
         # `after`, `max_children`, `orphans` and column settings, then run\n\
         #   chimera run --spec THIS_FILE --entities N --output OUT/\n\
         tables:\n",
    );
    for (i, t) in tables.iter().enumerate() {
        yaml.push_str(&format!("  {}:\n    input: {}\n", t.name, paths[i]));
        match &pks[i] {
            Some((pk, _)) => yaml.push_str(&format!("    primary_key: {pk}\n")),
            None => yaml.push_str("    # no column is a unique, never-empty key\n"),
        }
        let mut fks = Vec::new();
        for c in &t.schemas {
            if !chimera_core::schema::looks_like_identifier(&c.name)
                || pks[i].as_ref().is_some_and(|(pk, _)| *pk == c.name)
            {
                continue;
            }
            let keys = t.keys(std::slice::from_ref(&c.name))?;
            let present: Vec<&String> = keys.iter().flatten().collect();
            if present.is_empty() {
                continue;
            }
            for (j, u) in tables.iter().enumerate() {
                let Some((upk, set)) = &pks[j] else { continue };
                if j == i || *upk != c.name {
                    continue;
                }
                let hits = present.iter().filter(|k| set.contains(**k)).count();
                let share = hits as f64 / present.len() as f64;
                if share >= FK_COVERAGE {
                    let empty = keys.len() - present.len();
                    fks.push(format!(
                        "      - {{columns: {}, references: {}}}   # {hits} of {} values found{}\n",
                        c.name,
                        u.name,
                        present.len(),
                        if empty > 0 {
                            format!(", {empty} empty")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
        }
        let referenced = pks[i].as_ref().is_some_and(|(pk, _)| {
            tables
                .iter()
                .enumerate()
                .any(|(j, u)| j != i && u.schemas.iter().any(|c| c.name == *pk))
        });
        if fks.is_empty() && !referenced {
            yaml.push_str(
                "    # linked to no other table: if it is a dictionary, mark it `public: true` with\n    # its primary_key and add a foreign key to it; otherwise leave it out\n",
            );
        }
        if !fks.is_empty() {
            yaml.push_str("    foreign_keys:\n");
            for f in fks {
                yaml.push_str(&f);
            }
            if let Some(c) = t
                .schemas
                .iter()
                .find(|c| matches!(c.kind, ValueKind::Date | ValueKind::Timestamp))
            {
                yaml.push_str(&format!("    order_by: {}\n", c.name));
            }
        }
    }
    Ok(yaml)
}

#[cfg(test)]
mod tests {
    use super::{band_columns, keep_per_entity, presence_columns};
    use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
    use chimera_core::relational::{RowColumn, TableSpec};
    use std::sync::Arc;

    #[test]
    fn times_empty_on_some_rows_get_presence_columns_shared_by_times_set_with_them() {
        let plain = |c: &str| RowColumn::Plain { column: c.into() };
        let after = |c: &str, b: &str| RowColumn::After {
            column: c.into(),
            base: b.into(),
            signed: false,
        };
        let f = |v: &[Option<f64>]| Arc::new(Float64Array::from(v.to_vec())) as ArrayRef;
        let mut names = vec![
            ("start".to_owned(), plain("start")),
            ("reg".to_owned(), plain("reg")),
            ("reg_end".to_owned(), after("reg_end", "reg")),
            ("death".to_owned(), after("death", "start")),
            ("seen".to_owned(), after("seen", "reg")),
            ("kind".to_owned(), plain("kind")),
            ("lab".to_owned(), plain("lab")),
        ];
        let mut arrays = vec![
            f(&[Some(1.0), Some(2.0), Some(3.0)]),
            f(&[Some(0.5), None, Some(0.1)]),
            f(&[Some(0.2), None, Some(0.3)]),
            f(&[None, None, Some(4.0)]),
            // Set where `reg` is, but not everywhere: a presence column of its own.
            f(&[None, None, Some(1.0)]),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])) as ArrayRef,
            f(&[Some(1.0), None, Some(2.0)]),
        ];
        // A column with a rule of its own in the spec is left to it.
        let spec: TableSpec = serde_json::from_value(serde_json::json!(
            {"columns": {"lab": {"required": true, "empty_when": {"kind": "x"}}}}
        ))
        .unwrap();
        presence_columns(&mut names, &mut arrays, &spec, false);
        let sets: Vec<(&str, Vec<String>, Vec<i64>)> = names
            .iter()
            .zip(&arrays)
            .filter_map(|((n, rc), a)| match rc {
                RowColumn::Set { columns } => Some((
                    n.as_str(),
                    columns.clone(),
                    a.as_primitive::<arrow::datatypes::Int64Type>()
                        .values()
                        .to_vec(),
                )),
                _ => None,
            })
            .collect();
        let cols = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(
            sets,
            vec![
                ("reg~set", cols(&["reg", "reg_end"]), vec![1, 0, 1]),
                ("death~set", cols(&["death"]), vec![0, 0, 1]),
                ("seen~set", cols(&["seen"]), vec![0, 0, 1]),
            ]
        );
        assert!(arrays.iter().all(|a| a.len() == 3));
        // Under DP every time the spec does not rule on has one, whatever the data; a time
        // after another joins that one's where the spec says it is `required`.
        let mut names = names[..7].to_vec();
        let mut arrays = arrays[..7].to_vec();
        arrays[4] = f(&[Some(1.0), None, Some(1.0)]);
        let spec: TableSpec = serde_json::from_value(serde_json::json!({"columns": {
            "lab": {"required": true, "empty_when": {"kind": "x"}},
            "seen": {"required": true},
            "start": {"required": true},
        }}))
        .unwrap();
        presence_columns(&mut names, &mut arrays, &spec, true);
        let sets: Vec<(&str, &RowColumn)> =
            names[7..].iter().map(|(n, rc)| (n.as_str(), rc)).collect();
        assert_eq!(
            sets,
            vec![
                (
                    "reg~set",
                    &RowColumn::Set {
                        columns: cols(&["reg", "seen"])
                    }
                ),
                (
                    "reg_end~set",
                    &RowColumn::Set {
                        columns: cols(&["reg_end"])
                    }
                ),
                (
                    "death~set",
                    &RowColumn::Set {
                        columns: cols(&["death"])
                    }
                ),
            ]
        );
    }

    #[test]
    fn an_entity_keeps_at_most_cap_rows_spread_over_its_own() {
        // Entity 7: ten rows, the first left out already (a first child the flat model holds);
        // entity 3: three rows, under the cap.
        let entity = [7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 3, 3, 3];
        let mut keep = vec![true; entity.len()];
        keep[0] = false;
        keep_per_entity(&mut keep, &entity, 4);
        let kept: Vec<usize> = (0..entity.len()).filter(|&i| keep[i]).collect();
        // Nine candidates of entity 7 in four equal slices, the last of each; all of entity 3.
        assert_eq!(kept, [3, 5, 7, 9, 10, 11, 12]);
        let mut all = vec![true; 5];
        keep_per_entity(&mut all, &[1, 1, 1, 1, 1], 1);
        assert_eq!(all, [false, false, false, false, true]);
    }

    #[test]
    fn numbers_of_many_values_set_on_every_row_get_a_band_at_their_quartiles() {
        let plain = |c: &str| RowColumn::Plain { column: c.into() };
        let ages: Vec<i64> = (0..100).map(|i| 20 + (i * 7) % 70).collect();
        let mut names = vec![
            ("age".to_owned(), plain("age")),
            ("flag".to_owned(), plain("flag")),
            ("lab".to_owned(), plain("lab")),
            ("code".to_owned(), plain("code")),
        ];
        let mut arrays = vec![
            Arc::new(Int64Array::from(ages.clone())) as ArrayRef,
            // Few values: its own codes fit.
            Arc::new(Int64Array::from_iter_values((0..100).map(|i| i % 3))) as ArrayRef,
            // Empty on a row: its presence column leads it.
            Arc::new(Float64Array::from_iter(
                (0..100).map(|i| (i != 5).then_some(i as f64)),
            )) as ArrayRef,
            // Read as a category by the spec.
            Arc::new(Int64Array::from_iter_values(0..100)) as ArrayRef,
        ];
        let spec: TableSpec = serde_json::from_value(serde_json::json!(
            {"columns": {"code": {"role": "categorical"}}}
        ))
        .unwrap();
        band_columns(&mut names, &mut arrays, &spec).unwrap();
        assert_eq!(names.len(), 5, "{names:?}");
        let (name, rc) = &names[4];
        assert_eq!(name, "age~band");
        let RowColumn::Band { column, cuts } = rc else {
            panic!("{rc:?}")
        };
        assert_eq!(column, "age");
        let mut sorted = ages.clone();
        sorted.sort();
        assert_eq!(
            cuts,
            &[sorted[25] as f64, sorted[50] as f64, sorted[75] as f64]
        );
        let band = arrays[4].as_primitive::<arrow::datatypes::Int64Type>();
        for (i, &age) in ages.iter().enumerate() {
            let want = cuts.iter().filter(|&&c| c <= age as f64).count() as i64;
            assert_eq!(band.value(i), want, "age {age}");
        }
        // A quarter of the rows in each band, give or take the ties at a cut.
        for b in 0..4 {
            let n = band.values().iter().filter(|&&v| v == b).count();
            assert!((20..=30).contains(&n), "band {b}: {n} rows");
        }
    }
}
