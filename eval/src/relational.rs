//! Evaluation of relational entities: every table on its own (its key columns left out), and
//! what only the relations show: children per parent, keys that do not resolve, and datetime
//! order within rows and between siblings.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::column::row_count;
use crate::error::{EvalError, TableRole};
use crate::report::{Distribution, EvalReport};
use crate::{EvalInput, EvalOptions, evaluate_with};

/// One table of the entity, real and synthetic.
pub struct RelationalTable<'a> {
    /// The table's name.
    pub name: String,
    /// The real rows.
    pub real: &'a [RecordBatch],
    /// The synthetic rows.
    pub synthetic: &'a [RecordBatch],
    /// Key columns (primary keys, foreign keys into other synthetic tables): fresh identifiers
    /// in the synthetic table, so they are left out of the table's fidelity and privacy metrics.
    pub keys: Vec<String>,
    /// Public reference data (a dictionary): checked as a link target, not evaluated.
    pub public: bool,
}

/// A foreign key: `columns` of `child` hold a key (`parent_columns`) of `parent`.
#[derive(Debug, Clone)]
pub struct Link {
    /// The referencing table.
    pub child: String,
    /// Its key columns.
    pub columns: Vec<String>,
    /// The referenced table.
    pub parent: String,
    /// The referenced columns, in the order of `columns`.
    pub parent_columns: Vec<String>,
    /// Whether this is the child's place in the entity tree: its children-per-parent
    /// distribution is compared (a link to a dictionary is only checked for dangling keys).
    pub entity: bool,
}

/// A datetime (or number) order the synthetic rows must keep.
#[derive(Debug, Clone)]
pub enum Order {
    /// Within each row of `table`, `later >= earlier` where both are non-null.
    Row {
        table: String,
        earlier: String,
        later: String,
    },
    /// Each row of `table` (keyed by `key`) has `later` at or after the latest `earlier` of
    /// its rows in `child` (linked by `child_columns`); a date `later` from that one's day.
    AfterChildren {
        table: String,
        key: Vec<String>,
        later: String,
        child: String,
        child_columns: Vec<String>,
        earlier: String,
    },
    /// Among the rows of `table` sharing `parent_columns`, only the last by `order_by` has
    /// `value` in `column` (`last_when`).
    LastOnly {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        column: String,
        value: String,
    },
    /// Among the rows of `table` sharing `parent_columns`, the last by `order_by` has `value` in
    /// `column` (`last_is`).
    LastIs {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        column: String,
        value: String,
    },
    /// Each row of `table` whose `condition` holds `value` has `column` empty (`empty_when`).
    EmptyWhen {
        table: String,
        column: String,
        condition: String,
        value: String,
    },
    /// No row of `table` has `column` empty, except a row whose `unless` column holds its
    /// value (`required`, with the column's `empty_when`) or, for a time `after` another of
    /// the row, where that one (`base`) is empty.
    Required {
        table: String,
        column: String,
        unless: Option<(String, String)>,
        base: Option<String>,
    },
    /// Among the rows of `table` sharing `parent_columns`, sorted by `order_by`, each row after
    /// the first holds the previous one's `column` (`same_for_siblings`).
    SameForSiblings {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        column: String,
    },
    /// The last row of `table` (by `order_by`) under each `parent` row (linked by
    /// `parent_columns` to its `key`) has `order_by` within an hour of the parent's `end`
    /// (`ends_at`; the fit's note uses the same hour).
    EndsAt {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        parent: String,
        key: Vec<String>,
        end: String,
    },
    /// The first row of `table` (by `order_by`) under each `parent` row (linked by
    /// `parent_columns` to its `key`) has `value` in `column` exactly where the parent's `set`
    /// column is set (`first_where`).
    FirstWhere {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        parent: String,
        key: Vec<String>,
        set: String,
        column: String,
        value: String,
    },
    /// Among the rows of `table` sharing `parent_columns`, sorted by `order_by`, each row's
    /// `order_by` is at or after the previous row's `after_previous`.
    Siblings {
        table: String,
        parent_columns: Vec<String>,
        order_by: String,
        after_previous: String,
    },
}

/// The entity's tables and relations.
pub struct RelationalInput<'a> {
    /// Every table, public ones included.
    pub tables: Vec<RelationalTable<'a>>,
    /// Every foreign key.
    pub links: Vec<Link>,
    /// The orders to check.
    pub orders: Vec<Order>,
    /// Seed of the sampled metrics.
    pub seed: u64,
}

/// The evaluation of relational entities.
#[derive(serde::Serialize, Debug, Clone)]
pub struct RelationalReport {
    /// Each non-public table's own evaluation, key columns left out.
    pub tables: Vec<TableReport>,
    /// Each foreign key: dangling keys and, for the entity tree, children per parent.
    pub links: Vec<LinkReport>,
    /// Each order rule: violations in the real and the synthetic rows.
    pub orders: Vec<OrderReport>,
    /// Synthetic keys that do not resolve, over every link.
    pub dangling_keys: u64,
    /// Synthetic order violations, over every rule.
    pub order_violations: u64,
    /// The LLM judge on whole entities (set by the caller, which runs the model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realism: Option<crate::report::Realism>,
    /// The generator's perplexity on whole entities (set by the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlt: Option<crate::report::Dlt>,
}

/// One table's evaluation.
#[derive(serde::Serialize, Debug, Clone)]
pub struct TableReport {
    /// The table.
    pub name: String,
    /// Its fidelity and privacy, key columns left out.
    pub report: EvalReport,
}

/// One foreign key's checks.
#[derive(serde::Serialize, Debug, Clone)]
pub struct LinkReport {
    /// The referencing table.
    pub child: String,
    /// The referenced table.
    pub parent: String,
    /// The referencing columns.
    pub columns: Vec<String>,
    /// Non-null synthetic keys with no parent row.
    pub dangling_synthetic: u64,
    /// The same in the real tables, for reference.
    pub dangling_real: u64,
    /// Children per parent row (entity links only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children_per_parent: Option<ChildrenPerParent>,
}

/// The distribution of the number of children of each parent row.
#[derive(serde::Serialize, Debug, Clone)]
pub struct ChildrenPerParent {
    /// Total variation distance between the real and synthetic distributions (lower is better).
    pub tvd: f64,
    /// Mean children per parent in the real tables.
    pub mean_real: f64,
    /// The same in the synthetic tables.
    pub mean_synthetic: f64,
    /// Shares of parents per child count (`0`, `1`, ...).
    pub distribution: Distribution,
}

/// One order rule's check.
#[derive(serde::Serialize, Debug, Clone)]
pub struct OrderReport {
    /// The table checked.
    pub table: String,
    /// The rule in words.
    pub rule: String,
    /// Synthetic rows (or sibling pairs) where both values are present.
    pub checked_synthetic: u64,
    /// Synthetic violations.
    pub violations_synthetic: u64,
    /// Violations in the real rows, for reference.
    pub violations_real: u64,
}

/// Evaluates relational entities: each table, each link, each order rule.
pub fn evaluate_relational(
    input: &RelationalInput,
    options: &EvalOptions,
) -> Result<RelationalReport, EvalError> {
    let table = |name: &str| {
        input
            .tables
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| EvalError::Relational {
                message: format!("table `{name}` is named by a link or rule but not given"),
            })
    };

    let mut tables = Vec::new();
    for t in input.tables.iter().filter(|t| !t.public) {
        let real = without(t.real, &t.keys);
        let synthetic = without(t.synthetic, &t.keys);
        let report = evaluate_with(
            &EvalInput {
                real: &real,
                synthetic: &synthetic,
                test: None,
                target: None,
                seed: input.seed,
            },
            options,
        )
        .map_err(|e| EvalError::Relational {
            message: format!("table `{}`: {e}", t.name),
        })?;
        tables.push(TableReport {
            name: t.name.clone(),
            report,
        });
    }

    let mut links = Vec::new();
    for link in &input.links {
        let (child, parent) = (table(&link.child)?, table(&link.parent)?);
        let count = |child_rows: &[RecordBatch], parent_rows: &[RecordBatch], role| {
            let child_keys = keys(child_rows, &link.columns, &link.child, role)?;
            let parent_keys = keys(parent_rows, &link.parent_columns, &link.parent, role)?;
            Ok::<_, EvalError>(children_of(&parent_keys, &child_keys))
        };
        let real = count(child.real, parent.real, TableRole::Real)?;
        // A public parent is copied to the output as it is: check against the real one.
        let synthetic_parent = if parent.public {
            parent.real
        } else {
            parent.synthetic
        };
        let synthetic = count(child.synthetic, synthetic_parent, TableRole::Synthetic)?;
        links.push(LinkReport {
            child: link.child.clone(),
            parent: link.parent.clone(),
            columns: link.columns.clone(),
            dangling_synthetic: synthetic.dangling,
            dangling_real: real.dangling,
            children_per_parent: link
                .entity
                .then(|| children_per_parent(&real.per_parent, &synthetic.per_parent)),
        });
    }

    let mut orders = Vec::new();
    for order in &input.orders {
        let (name, rule) = match order {
            Order::Row {
                table,
                earlier,
                later,
            } => (table, format!("{later} >= {earlier} within a row")),
            Order::AfterChildren {
                table,
                later,
                child,
                earlier,
                ..
            } => (table, format!("{later} >= the latest {child}.{earlier}")),
            Order::LastOnly {
                table,
                order_by,
                column,
                value,
                ..
            } => (
                table,
                format!("{column} = {value} only on the last row by {order_by}"),
            ),
            Order::LastIs {
                table,
                order_by,
                column,
                value,
                ..
            } => (
                table,
                format!("the last row by {order_by} has {column} = {value}"),
            ),
            Order::SameForSiblings { table, column, .. } => {
                (table, format!("{column} the same on every row of a parent"))
            }
            Order::EmptyWhen {
                table,
                column,
                condition,
                value,
            } => (table, format!("{column} empty where {condition} = {value}")),
            Order::Required {
                table,
                column,
                unless,
                base,
            } => (
                table,
                match (unless, base) {
                    (Some((condition, value)), _) => {
                        format!("{column} not empty where {condition} != {value}")
                    }
                    (None, Some(base)) => format!("{column} not empty where {base} is set"),
                    (None, None) => format!("{column} not empty"),
                },
            ),
            Order::EndsAt {
                table,
                order_by,
                parent,
                end,
                ..
            } => (
                table,
                format!("the last {order_by} is within an hour of {parent}.{end}"),
            ),
            Order::FirstWhere {
                table,
                order_by,
                parent,
                set,
                column,
                value,
                ..
            } => (
                table,
                format!(
                    "the first row by {order_by} has {column} = {value} exactly where \
                     {parent}.{set} is set"
                ),
            ),
            Order::Siblings {
                table,
                parent_columns,
                order_by,
                after_previous,
            } => (
                table,
                format!(
                    "{order_by} >= the previous sibling's {after_previous} (siblings share {})",
                    parent_columns.join(", ")
                ),
            ),
        };
        let t = table(name)?;
        let (violations_real, checked_synthetic, violations_synthetic) =
            if let Order::AfterChildren { child, .. } = order {
                let c = table(child)?;
                let (_, real) = after_children(t.real, c.real, order, TableRole::Real)?;
                let (checked, synthetic) =
                    after_children(t.synthetic, c.synthetic, order, TableRole::Synthetic)?;
                (real, checked, synthetic)
            } else if let Order::EndsAt { parent, .. } = order {
                let p = table(parent)?;
                let (_, real) = ends_at(t.real, p.real, order, TableRole::Real)?;
                let (checked, synthetic) =
                    ends_at(t.synthetic, p.synthetic, order, TableRole::Synthetic)?;
                (real, checked, synthetic)
            } else if let Order::FirstWhere { parent, .. } = order {
                let p = table(parent)?;
                let (_, real) = first_where(t.real, p.real, order, TableRole::Real)?;
                let (checked, synthetic) =
                    first_where(t.synthetic, p.synthetic, order, TableRole::Synthetic)?;
                (real, checked, synthetic)
            } else {
                let (_, real) = violations(t.real, order, TableRole::Real)?;
                let (checked, synthetic) = violations(t.synthetic, order, TableRole::Synthetic)?;
                (real, checked, synthetic)
            };
        orders.push(OrderReport {
            table: name.clone(),
            rule,
            checked_synthetic,
            violations_synthetic,
            violations_real,
        });
    }

    Ok(RelationalReport {
        dangling_keys: links.iter().map(|l| l.dangling_synthetic).sum(),
        order_violations: orders.iter().map(|o| o.violations_synthetic).sum(),
        tables,
        links,
        orders,
        realism: None,
        dlt: None,
    })
}

/// The batches without the named columns.
/// The batches without the columns named in `drop` (keys, fresh identifiers).
pub fn without(batches: &[RecordBatch], drop: &[String]) -> Vec<RecordBatch> {
    batches
        .iter()
        .map(|b| {
            let keep: Vec<usize> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| !drop.contains(f.name()))
                .map(|(i, _)| i)
                .collect();
            // Indices come from the batch's own schema.
            b.project(&keep).unwrap_or_else(|_| b.clone())
        })
        .collect()
}

fn column<'b>(
    batches: &'b [RecordBatch],
    name: &str,
    table: &str,
    role: TableRole,
) -> Result<Vec<&'b ArrayRef>, EvalError> {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(name).ok_or_else(|| EvalError::Relational {
                message: format!("the {role} table `{table}` has no column `{name}`"),
            })
        })
        .collect()
}

/// Each row's key as text (parts joined by U+001F); `None` where any part is null.
fn keys(
    batches: &[RecordBatch],
    columns: &[String],
    table: &str,
    role: TableRole,
) -> Result<Vec<Option<String>>, EvalError> {
    let parts: Vec<Vec<&ArrayRef>> = columns
        .iter()
        .map(|c| column(batches, c, table, role))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(row_count(batches));
    for b in 0..batches.len() {
        let text: Vec<ArrayRef> = parts
            .iter()
            .map(|p| {
                cast(p[b], &DataType::Utf8).map_err(|e| EvalError::Relational {
                    message: format!("the {role} table `{table}`: a key column as text: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        for row in 0..batches[b].num_rows() {
            let mut key = String::new();
            let mut null = false;
            for (i, a) in text.iter().enumerate() {
                let a = a.as_string::<i32>();
                if a.is_null(row) {
                    null = true;
                    break;
                }
                if i > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(a.value(row));
            }
            out.push((!null).then_some(key));
        }
    }
    Ok(out)
}

struct Children {
    /// Children of each parent row.
    per_parent: Vec<u64>,
    /// Non-null child keys matching no parent row.
    dangling: u64,
}

fn children_of(parent_keys: &[Option<String>], child_keys: &[Option<String>]) -> Children {
    let index: HashMap<&str, usize> = parent_keys
        .iter()
        .enumerate()
        .filter_map(|(i, k)| k.as_deref().map(|k| (k, i)))
        .collect();
    let mut per_parent = vec![0u64; parent_keys.len()];
    let mut dangling = 0;
    for k in child_keys.iter().flatten() {
        match index.get(k.as_str()) {
            Some(&i) => per_parent[i] += 1,
            None => dangling += 1,
        }
    }
    Children {
        per_parent,
        dangling,
    }
}

fn children_per_parent(real: &[u64], synthetic: &[u64]) -> ChildrenPerParent {
    let most = real.iter().chain(synthetic).copied().max().unwrap_or(0) as usize;
    let shares = |counts: &[u64]| {
        let mut h = vec![0.0; most + 1];
        for &c in counts {
            h[c as usize] += 1.0;
        }
        let n = counts.len().max(1) as f64;
        h.iter_mut().for_each(|x| *x /= n);
        h
    };
    let (r, s) = (shares(real), shares(synthetic));
    let mean = |c: &[u64]| c.iter().sum::<u64>() as f64 / c.len().max(1) as f64;
    ChildrenPerParent {
        tvd: 0.5 * r.iter().zip(&s).map(|(a, b)| (a - b).abs()).sum::<f64>(),
        mean_real: mean(real),
        mean_synthetic: mean(synthetic),
        distribution: Distribution {
            labels: (0..=most).map(|c| c.to_string()).collect(),
            real: r,
            synthetic: s,
        },
    }
}

/// A column as comparable integers: datetimes in microseconds, numbers as they are
/// (truncated), `None` for null.
fn ordinals(
    batches: &[RecordBatch],
    name: &str,
    table: &str,
    role: TableRole,
) -> Result<Vec<Option<i64>>, EvalError> {
    let mut out = Vec::with_capacity(row_count(batches));
    for array in column(batches, name, table, role)? {
        let as_int = match array.data_type() {
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => cast(
                &cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))
                    .map_err(|e| order_error(table, name, role, &e))?,
                &DataType::Int64,
            ),
            _ => cast(array, &DataType::Int64),
        }
        .map_err(|e| order_error(table, name, role, &e))?;
        out.extend(as_int.as_primitive::<Int64Type>().iter());
    }
    Ok(out)
}

fn order_error(table: &str, column: &str, role: TableRole, e: &dyn std::fmt::Display) -> EvalError {
    EvalError::Relational {
        message: format!(
            "the {role} table `{table}`: column `{column}` is not a datetime or number: {e}"
        ),
    }
}

/// (parent rows checked, violations) of an [`Order::AfterChildren`] rule.
fn after_children(
    parents: &[RecordBatch],
    children: &[RecordBatch],
    order: &Order,
    role: TableRole,
) -> Result<(u64, u64), EvalError> {
    let Order::AfterChildren {
        table,
        key,
        later,
        child,
        child_columns,
        earlier,
    } = order
    else {
        return Ok((0, 0));
    };
    const DAY: i64 = 86_400_000_000;
    let whole_days = column(parents, later, table, role)?
        .first()
        .is_some_and(|a| matches!(a.data_type(), DataType::Date32 | DataType::Date64));
    let day = |v: i64| {
        if whole_days {
            v.div_euclid(DAY) * DAY
        } else {
            v
        }
    };
    let latest = latest_by_parent(children, child_columns, earlier, child, role, day)?;
    judge_parents(parents, key, later, table, role, &latest, |v, l| v < l)
}

/// The latest `column` among each parent's rows of `children` (linked by `parent_columns`),
/// each value passed through `round` first.
fn latest_by_parent(
    children: &[RecordBatch],
    parent_columns: &[String],
    column: &str,
    table: &str,
    role: TableRole,
    round: impl Fn(i64) -> i64,
) -> Result<HashMap<String, i64>, EvalError> {
    let mut latest: HashMap<String, i64> = HashMap::new();
    for (k, v) in keys(children, parent_columns, table, role)?
        .into_iter()
        .zip(ordinals(children, column, table, role)?)
    {
        if let (Some(k), Some(v)) = (k, v) {
            let v = round(v);
            let l = latest.entry(k).or_insert(v);
            *l = (*l).max(v);
        }
    }
    Ok(latest)
}

/// (parent rows checked, violations): each parent row (keyed by `key`) with children and its
/// own `column` set, judged by `bad(own value, latest child value)`.
fn judge_parents(
    parents: &[RecordBatch],
    key: &[String],
    column: &str,
    table: &str,
    role: TableRole,
    latest: &HashMap<String, i64>,
    bad: impl Fn(i64, i64) -> bool,
) -> Result<(u64, u64), EvalError> {
    let (mut checked, mut violations) = (0u64, 0u64);
    for (k, v) in keys(parents, key, table, role)?
        .iter()
        .zip(ordinals(parents, column, table, role)?)
    {
        if let (Some(l), Some(v)) = (k.as_ref().and_then(|k| latest.get(k)), v) {
            checked += 1;
            violations += u64::from(bad(v, *l));
        }
    }
    Ok((checked, violations))
}

/// Row indices grouped by parent (`parents`: each row's parent key; rows without one are left
/// out), each group sorted by `start`, then by row.
fn sibling_groups(parents: &[Option<String>], start: &[Option<i64>]) -> Vec<Vec<usize>> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (row, p) in parents.iter().enumerate() {
        if let Some(p) = p {
            groups.entry(p.as_str()).or_default().push(row);
        }
    }
    groups
        .into_values()
        .map(|mut rows| {
            rows.sort_by_key(|&r| (start[r], r));
            rows
        })
        .collect()
}

/// Sibling groups (row indices, each sorted) and every row's value of one column.
type SiblingValues = (Vec<Vec<usize>>, Vec<Option<String>>);

/// The sibling groups of `table` (rows sharing `parent_columns`, sorted by `order_by`) and
/// every row's `column` as text.
fn sibling_values(
    batches: &[RecordBatch],
    table: &str,
    parent_columns: &[String],
    order_by: &str,
    column: &str,
    role: TableRole,
) -> Result<SiblingValues, EvalError> {
    let parents = keys(batches, parent_columns, table, role)?;
    let start = ordinals(batches, order_by, table, role)?;
    let values = keys(batches, &[column.to_string()], table, role)?;
    Ok((sibling_groups(&parents, &start), values))
}

/// (pairs checked, violations) of one rule in one table.
fn violations(
    batches: &[RecordBatch],
    order: &Order,
    role: TableRole,
) -> Result<(u64, u64), EvalError> {
    match order {
        Order::Row {
            table,
            earlier,
            later,
        } => {
            let (a, b) = (
                ordinals(batches, earlier, table, role)?,
                ordinals(batches, later, table, role)?,
            );
            let pairs: Vec<(i64, i64)> = a.iter().zip(&b).filter_map(|(x, y)| x.zip(*y)).collect();
            let bad = pairs.par_iter().filter(|(x, y)| y < x).count();
            Ok((pairs.len() as u64, bad as u64))
        }
        Order::Siblings {
            table,
            parent_columns,
            order_by,
            after_previous,
        } => {
            let parents = keys(batches, parent_columns, table, role)?;
            let start = ordinals(batches, order_by, table, role)?;
            let end = ordinals(batches, after_previous, table, role)?;
            let (mut checked, mut bad) = (0u64, 0u64);
            for mut rows in sibling_groups(&parents, &start) {
                rows.retain(|&r| start[r].is_some());
                for w in rows.windows(2) {
                    if let (Some(previous_end), Some(next_start)) = (end[w[0]], start[w[1]]) {
                        checked += 1;
                        if next_start < previous_end {
                            bad += 1;
                        }
                    }
                }
            }
            Ok((checked, bad))
        }
        Order::LastOnly {
            table,
            parent_columns,
            order_by,
            column,
            value,
        }
        | Order::LastIs {
            table,
            parent_columns,
            order_by,
            column,
            value,
        } => {
            let (groups, values) =
                sibling_values(batches, table, parent_columns, order_by, column, role)?;
            let held = |r: &usize| values[*r].as_deref() == Some(value.as_str());
            let every_last = matches!(order, Order::LastIs { .. });
            let (mut checked, mut bad) = (0u64, 0u64);
            for rows in &groups {
                let Some((last, earlier)) = rows.split_last() else {
                    continue;
                };
                if every_last {
                    // Each parent's last row, which must hold the value.
                    checked += 1;
                    bad += u64::from(!held(last));
                } else {
                    // Each row holding the value, which must be the last.
                    checked += rows.iter().filter(|r| held(r)).count() as u64;
                    bad += earlier.iter().filter(|r| held(r)).count() as u64;
                }
            }
            Ok((checked, bad))
        }
        Order::SameForSiblings {
            table,
            parent_columns,
            order_by,
            column,
        } => {
            let (groups, values) =
                sibling_values(batches, table, parent_columns, order_by, column, role)?;
            let (mut checked, mut bad) = (0u64, 0u64);
            for rows in groups {
                for w in rows.windows(2) {
                    checked += 1;
                    bad += u64::from(values[w[0]] != values[w[1]]);
                }
            }
            Ok((checked, bad))
        }
        Order::EmptyWhen {
            table,
            column,
            condition,
            value,
        } => {
            let held = keys(batches, std::slice::from_ref(condition), table, role)?;
            let values = keys(batches, std::slice::from_ref(column), table, role)?;
            let rows: Vec<usize> = (0..held.len())
                .filter(|&r| held[r].as_deref() == Some(value.as_str()))
                .collect();
            let bad = rows.iter().filter(|&&r| values[r].is_some()).count();
            Ok((rows.len() as u64, bad as u64))
        }
        Order::Required {
            table,
            column,
            unless,
            base,
        } => {
            let values = keys(batches, std::slice::from_ref(column), table, role)?;
            let mut exempt = match unless {
                Some((condition, value)) => {
                    let held = keys(batches, std::slice::from_ref(condition), table, role)?;
                    held.into_iter()
                        .map(|h| h.as_deref() == Some(value.as_str()))
                        .collect()
                }
                None => vec![false; values.len()],
            };
            if let Some(base) = base {
                let b = keys(batches, std::slice::from_ref(base), table, role)?;
                for (e, b) in exempt.iter_mut().zip(b) {
                    *e |= b.is_none();
                }
            }
            let rows = (0..values.len()).filter(|&r| !exempt[r]);
            let (checked, bad) = rows.fold((0u64, 0u64), |(n, b), r| {
                (n + 1, b + u64::from(values[r].is_none()))
            });
            Ok((checked, bad))
        }
        Order::AfterChildren { .. } | Order::EndsAt { .. } | Order::FirstWhere { .. } => Ok((0, 0)),
    }
}

/// (parent rows checked, violations) of an [`Order::EndsAt`] rule.
fn ends_at(
    children: &[RecordBatch],
    parents: &[RecordBatch],
    order: &Order,
    role: TableRole,
) -> Result<(u64, u64), EvalError> {
    let Order::EndsAt {
        table,
        parent_columns,
        order_by,
        parent,
        key,
        end,
    } = order
    else {
        return Ok((0, 0));
    };
    const HOUR: i64 = 3_600_000_000;
    let last = latest_by_parent(children, parent_columns, order_by, table, role, |v| v)?;
    judge_parents(parents, key, end, parent, role, &last, |e, l| {
        (l - e).abs() > HOUR
    })
}

/// (parent rows with children checked, violations) of an [`Order::FirstWhere`] rule.
fn first_where(
    children: &[RecordBatch],
    parents: &[RecordBatch],
    order: &Order,
    role: TableRole,
) -> Result<(u64, u64), EvalError> {
    let Order::FirstWhere {
        table,
        parent_columns,
        order_by,
        parent,
        key,
        set,
        column,
        value,
    } = order
    else {
        return Ok((0, 0));
    };
    let of = keys(children, parent_columns, table, role)?;
    let (groups, values) = sibling_values(children, table, parent_columns, order_by, column, role)?;
    let mut first: HashMap<&str, bool> = HashMap::new();
    for rows in &groups {
        if let Some(&r) = rows.first()
            && let Some(k) = &of[r]
        {
            first.insert(k, values[r].as_deref() == Some(value.as_str()));
        }
    }
    let is_set = keys(parents, std::slice::from_ref(set), parent, role)?;
    let (mut checked, mut bad) = (0u64, 0u64);
    for (k, s) in keys(parents, key, parent, role)?.iter().zip(&is_set) {
        if let Some(&holds) = k.as_deref().and_then(|k| first.get(k)) {
            checked += 1;
            bad += u64::from(holds != s.is_some());
        }
    }
    Ok((checked, bad))
}

/// Rows of `batches` whose key (`columns`) resolves in `parent_keys`, and how many were
/// dropped: for real child tables the spec lets drop orphans from.
pub fn resolving_rows(
    batches: &[RecordBatch],
    columns: &[String],
    table: &str,
    parent_keys: &HashSet<String>,
) -> Result<(Vec<RecordBatch>, usize), EvalError> {
    let child_keys = keys(batches, columns, table, TableRole::Real)?;
    let mut offset = 0;
    let mut kept = Vec::with_capacity(batches.len());
    let mut dropped = 0;
    for b in batches {
        let mask: arrow::array::BooleanArray = (0..b.num_rows())
            .map(|r| {
                Some(
                    child_keys[offset + r]
                        .as_ref()
                        .is_some_and(|k| parent_keys.contains(k)),
                )
            })
            .collect();
        offset += b.num_rows();
        dropped += mask.false_count();
        kept.push(arrow::compute::filter_record_batch(b, &mask).map_err(|e| {
            EvalError::Relational {
                message: format!("table `{table}`: {e}"),
            }
        })?);
    }
    Ok((kept, dropped))
}

/// Each row's key (`columns`, parts joined by U+001F) as text; `None` where a part is null.
pub fn row_keys(
    batches: &[RecordBatch],
    columns: &[String],
    table: &str,
) -> Result<Vec<Option<String>>, EvalError> {
    keys(batches, columns, table, TableRole::Real)
}

/// The set of a table's non-null keys.
pub fn key_set(
    batches: &[RecordBatch],
    columns: &[String],
    table: &str,
) -> Result<HashSet<String>, EvalError> {
    Ok(keys(batches, columns, table, TableRole::Real)?
        .into_iter()
        .flatten()
        .collect())
}
