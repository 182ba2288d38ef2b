//! Per-column statistics gathered in one streaming pass, and role inference from them.

use std::collections::HashMap;

use crate::error::{CoreError, Result};
use crate::grid::{self, GridKind};
use crate::schema::{ColumnSchema, Role, ValueKind, looks_like_identifier};
use crate::spec::ColumnSpec;

/// Distinct strings tracked per column; beyond this a column is high-cardinality.
pub const MAX_TRACKED_STRINGS: usize = 100_000;
/// Distinct numbers tracked per column (for exact-value spikes); beyond this only the grid is kept.
pub const MAX_TRACKED_NUMBERS: usize = 65_536;

/// Counts of a string (or boolean) column's values.
#[derive(Debug, Clone, Default)]
pub struct StringCounts {
    pub counts: HashMap<String, u64>,
    /// More distinct values were seen than are tracked.
    pub overflow: bool,
}

/// Counts of a numeric (or date/time) column's values.
#[derive(Debug, Clone)]
pub struct NumberCounts {
    pub grid: GridKind,
    /// Counts per fine grid bucket.
    pub hist: Vec<u64>,
    /// Exact value counts (by f64 bits) while the column has few distinct values.
    pub values: Option<HashMap<u64, u64>>,
    pub min: f64,
    pub max: f64,
}

/// Statistics of one column.
#[derive(Debug, Clone)]
pub struct ColumnStats {
    pub rows: u64,
    pub nulls: u64,
    pub strings: Option<StringCounts>,
    pub numbers: Option<NumberCounts>,
}

/// The grid a value kind is counted on.
pub fn grid_for(kind: ValueKind) -> Option<GridKind> {
    match kind {
        ValueKind::Integer => Some(GridKind::Integer),
        ValueKind::Float => Some(GridKind::Real),
        ValueKind::Date | ValueKind::Timestamp => Some(GridKind::Days),
        ValueKind::Boolean | ValueKind::String => None,
    }
}

impl ColumnStats {
    pub fn new(kind: ValueKind) -> Self {
        let numbers = grid_for(kind).map(|g| NumberCounts {
            grid: g,
            hist: vec![0; grid::len(g)],
            values: Some(HashMap::new()),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        });
        ColumnStats {
            rows: 0,
            nulls: 0,
            strings: numbers.is_none().then(StringCounts::default),
            numbers,
        }
    }

    pub fn push_null(&mut self) {
        self.rows += 1;
        self.nulls += 1;
    }

    pub fn push_str(&mut self, v: &str) {
        self.rows += 1;
        if let Some(s) = &mut self.strings {
            if let Some(c) = s.counts.get_mut(v) {
                *c += 1;
            } else if s.counts.len() < MAX_TRACKED_STRINGS {
                s.counts.insert(v.to_string(), 1);
            } else {
                s.overflow = true;
            }
        }
    }

    /// Adds a finite number (days for dates and timestamps).
    pub fn push_number(&mut self, v: f64) {
        self.rows += 1;
        if let Some(n) = &mut self.numbers {
            n.hist[grid::bucket_of(n.grid, v)] += 1;
            n.min = n.min.min(v);
            n.max = n.max.max(v);
            if let Some(map) = &mut n.values {
                let key = v.to_bits();
                if let Some(c) = map.get_mut(&key) {
                    *c += 1;
                } else if map.len() < MAX_TRACKED_NUMBERS {
                    map.insert(key, 1);
                } else {
                    n.values = None;
                }
            }
        }
    }

    /// Number of distinct non-null values, or None when more were seen than tracked.
    pub fn distinct(&self) -> Option<usize> {
        if let Some(s) = &self.strings {
            return (!s.overflow).then_some(s.counts.len());
        }
        self.numbers
            .as_ref()
            .and_then(|n| n.values.as_ref().map(|m| m.len()))
    }

    pub fn non_null(&self) -> u64 {
        self.rows - self.nulls
    }
}

/// A role and why it was chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleChoice {
    pub role: Role,
    pub reason: String,
}

/// What is known of a column's number of distinct values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cardinality {
    /// Exactly this many (without DP).
    Counted(f64),
    /// More than chimera tracks.
    Overflow,
    /// Not consulted (under DP, where an exact count would leak).
    Unused,
}

/// Chooses a column's role from its type, name and cardinality; `non_null` is the number of
/// non-null rows.
pub fn infer_role(
    column: &ColumnSchema,
    spec: Option<&ColumnSpec>,
    cardinality: Cardinality,
    non_null: f64,
    max_categories: usize,
) -> RoleChoice {
    let distinct = match cardinality {
        Cardinality::Counted(d) => Some(d),
        Cardinality::Overflow | Cardinality::Unused => None,
    };
    if let Some(role) = spec.and_then(|s| s.role) {
        return RoleChoice {
            role,
            reason: "declared in the spec".into(),
        };
    }
    if spec.and_then(|s| s.domain.as_ref()).is_some() {
        return RoleChoice {
            role: Role::Categorical,
            reason: "the spec gives its domain".into(),
        };
    }
    let id_name = looks_like_identifier(&column.name);
    let share = |d: f64| if non_null > 0.0 { d / non_null } else { 0.0 };
    let distinct_text = match cardinality {
        Cardinality::Counted(d) => format!("{:.0} distinct values", d.max(0.0)),
        Cardinality::Overflow => "more distinct values than chimera tracks".to_string(),
        Cardinality::Unused => "distinct values not counted under DP".to_string(),
    };
    match column.kind {
        ValueKind::Date | ValueKind::Timestamp => RoleChoice {
            role: Role::Datetime,
            reason: format!("{} type", column.arrow_type),
        },
        ValueKind::Boolean => RoleChoice {
            role: Role::Categorical,
            reason: "boolean".into(),
        },
        ValueKind::Float => RoleChoice {
            role: Role::Numeric,
            reason: "floating-point numbers".into(),
        },
        ValueKind::Integer => {
            let mostly_unique = distinct.is_none_or(|d| share(d) >= 0.9);
            if id_name && mostly_unique {
                RoleChoice {
                    role: Role::Identifier,
                    reason: format!(
                        "the name reads like a key and values are unique ({distinct_text})"
                    ),
                }
            } else {
                RoleChoice {
                    role: Role::Numeric,
                    reason: if cardinality == Cardinality::Unused {
                        "integers".into()
                    } else {
                        format!("integers ({distinct_text})")
                    },
                }
            }
        }
        ValueKind::String => {
            let many = distinct.is_none_or(|d| d > max_categories as f64);
            if id_name && distinct.is_none_or(|d| share(d) >= 0.5) {
                RoleChoice {
                    role: Role::Identifier,
                    reason: format!(
                        "the name reads like a key and values are mostly unique ({distinct_text})"
                    ),
                }
            } else if many {
                RoleChoice {
                    role: Role::Text,
                    reason: format!(
                        "{distinct_text}, more than the {max_categories} a categorical keeps"
                    ),
                }
            } else {
                RoleChoice {
                    role: Role::Categorical,
                    reason: format!("strings with {distinct_text}"),
                }
            }
        }
    }
}

/// Rejects columns that cannot be modelled at all.
pub fn check_column(table: &str, column: &ColumnSchema, stats: &ColumnStats) -> Result<()> {
    if stats.rows > 0 && stats.nulls == stats.rows {
        return Err(CoreError::Column {
            table: table.into(),
            column: column.name.clone(),
            message: format!(
                "every one of its {} values is null: there is nothing to learn; remove the column from the input",
                stats.rows
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, kind: ValueKind) -> ColumnSchema {
        ColumnSchema {
            name: name.into(),
            kind,
            arrow_type: "Utf8".into(),
            nullable: true,
        }
    }

    #[test]
    fn roles_follow_type_name_and_cardinality() {
        let r = |name, kind, d: Option<f64>, n| {
            let c = d.map_or(Cardinality::Overflow, Cardinality::Counted);
            infer_role(&col(name, kind), None, c, n, 1000).role
        };
        assert_eq!(
            r("workclass", ValueKind::String, Some(9.0), 1000.0),
            Role::Categorical
        );
        assert_eq!(
            r("subject_id", ValueKind::Integer, Some(1000.0), 1000.0),
            Role::Identifier
        );
        assert_eq!(
            r("age", ValueKind::Integer, Some(70.0), 1000.0),
            Role::Numeric
        );
        assert_eq!(r("note", ValueKind::String, None, 1e6), Role::Text);
        assert_eq!(r("uuid", ValueKind::String, None, 1e6), Role::Identifier);
        assert_eq!(
            r("flag", ValueKind::Boolean, Some(2.0), 1e3),
            Role::Categorical
        );
        assert_eq!(
            r("admittime", ValueKind::Timestamp, None, 1e3),
            Role::Datetime
        );
        let spec = ColumnSpec {
            role: Some(Role::Categorical),
            ..Default::default()
        };
        let c = infer_role(
            &col("age", ValueKind::Integer),
            Some(&spec),
            Cardinality::Unused,
            10.0,
            1000,
        );
        assert_eq!(c.role, Role::Categorical);
        assert!(c.reason.contains("spec"));
    }

    #[test]
    fn counting_tracks_values_and_grid() {
        let mut s = ColumnStats::new(ValueKind::Integer);
        for v in [0.0, 0.0, 5.0, 99_999.0] {
            s.push_number(v);
        }
        s.push_null();
        assert_eq!(s.rows, 5);
        assert_eq!(s.nulls, 1);
        assert_eq!(s.distinct(), Some(3));
        let n = s.numbers.as_ref().unwrap();
        assert_eq!(n.hist.iter().sum::<u64>(), 4);
        assert_eq!(n.hist[grid::bucket_of(GridKind::Integer, 0.0)], 2);
    }

    #[test]
    fn all_null_column_is_rejected_with_its_name() {
        let mut s = ColumnStats::new(ValueKind::String);
        s.push_null();
        s.push_null();
        let e = check_column("t", &col("empty", ValueKind::String), &s).unwrap_err();
        assert!(e.to_string().contains("`empty`"));
    }
}
