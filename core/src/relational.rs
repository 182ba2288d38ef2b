//! Relational entities: the tables of a spec's `tables:` section, how they link (primary and
//! foreign keys), the entity tree they form (one root table, each other table under exactly one
//! parent), and the model artifact of a relational fit.
//!
//! An entity is a root row with its descendants (a patient, its admissions, their transfers and
//! diagnoses). The fit sees each table through one *row* per record: its modelled columns
//! (datetimes turned into offsets so that order holds by construction) and the clipped count of
//! each child table. The root's model sees the flattened entity: the root row, plus the first
//! child's row of every child table. Every other table has a *sequence* model: its row given its
//! parent's row, its previous sibling's row and its position among the siblings.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::model::{Model, ModelPrivacy};
use crate::schema::ColumnSchema;
use crate::spec::ColumnSpec;

/// Format tag of relational model files.
pub const ENTITY_MODEL_FORMAT: &str = "chimera-entities/1";
/// Children per parent kept when the spec does not say (more are clipped, and the log says so).
pub const DEFAULT_MAX_CHILDREN: usize = 100;
/// Positions among siblings beyond this share one code in the sequence models.
pub const POSITION_CAP: i64 = 8;

/// Name of the column holding the clipped count of `child` rows under a row.
pub fn count_column(child: &str) -> String {
    format!("#{child}")
}
/// Name of the gap column of a table ordered by `order_by`: time since the previous sibling.
pub fn gap_column(order_by: &str) -> String {
    format!("{order_by}~gap")
}
/// Name of the column that says whether `column` (and the times set with it) is set.
pub fn set_column(column: &str) -> String {
    format!("{column}{PRESENCE_SUFFIX}")
}
/// The suffix of a presence column's name ([`set_column`]).
pub const PRESENCE_SUFFIX: &str = "~set";
/// Name of the column that says which band of its values `column` lies in ([`RowColumn::Band`]).
pub fn band_column(column: &str) -> String {
    format!("{column}{BAND_SUFFIX}")
}
/// The suffix of a band column's name ([`band_column`]).
pub const BAND_SUFFIX: &str = "~band";
/// Bands of a [`RowColumn::Band`] column: few enough that the band fits, as a parent, into the
/// small conditional tables of a table of ~100 rows next to a column of 3 or 4 values.
pub const BAND_CODES: usize = 4;
/// The position among siblings, in a sequence model.
pub const POSITION_COLUMN: &str = "#position";
/// How many siblings come after this one (capped at [`POSITION_CAP`]), in a sequence model:
/// what makes a last child (a discharge) last.
pub const REMAINING_COLUMN: &str = "#remaining";
/// Prefix of the parent's columns in a sequence model.
pub const PARENT_PREFIX: &str = "parent.";
/// Prefix of the previous sibling's columns in a sequence model.
pub const PREVIOUS_PREFIX: &str = "prev.";
/// Separator of the parts of a composite key in one modelled column.
pub const KEY_SEPARATOR: char = '\u{1f}';

/// One column or several (a composite key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Keys {
    One(String),
    Many(Vec<String>),
}

impl Keys {
    pub fn columns(&self) -> Vec<String> {
        match self {
            Keys::One(c) => vec![c.clone()],
            Keys::Many(v) => v.clone(),
        }
    }
}

/// A foreign key: `columns` of this table hold a key of `references` (its primary key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    pub columns: Keys,
    pub references: String,
}

/// What to do with rows whose foreign key does not resolve in the real data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Orphans {
    /// Stop with the counts (the default): the user decides.
    #[default]
    Error,
    /// Leave them (and their descendants) out of the model; the manifest states how many.
    Drop,
}

/// One table of a relational spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Path or URL of the table; a relative path is relative to the spec file.
    pub input: Option<String>,
    pub primary_key: Option<Keys>,
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    /// Siblings are ordered by this column (a datetime or number); the first sibling's value
    /// is modelled with the parent's, each later one as a non-negative gap after the previous.
    pub order_by: Option<String>,
    /// The previous sibling's column the gap is measured from (default `order_by`), e.g.
    /// an admission starts after the previous one's `dischtime`.
    pub after_previous: Option<String>,
    /// A column of the parent the first sibling's `order_by` is an offset from, e.g. a
    /// transfer's `intime` from its admission's `admittime`; a list takes the first that is
    /// set (`[edregtime, admittime]`: the emergency registration, else the admission).
    pub anchor: Option<Keys>,
    /// A datetime column of the parent the last sibling's `order_by` is placed at, e.g. a
    /// transfer's `intime` at its admission's `dischtime` (the discharge): the siblings' times
    /// after the `anchor` (or the first sibling's `order_by`) are scaled so that it is, and
    /// earlier ones kept, so every order holds.
    pub ends_at: Option<String>,
    /// Values only a parent's last child holds, by column (in `order_by` order), e.g.
    /// `hospital_expire_flag: 1`: a death in hospital is a patient's last admission.
    #[serde(default)]
    pub last_when: BTreeMap<String, String>,
    /// Values every parent's last child holds, by column (in `order_by` order), e.g.
    /// `eventtype: discharge`: an admission's last transfer is its discharge. With the same
    /// value in `last_when`, the value marks the last child exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_is: BTreeMap<String, String>,
    /// Values a parent's first child holds exactly where a column of the parent is set, by the
    /// parent's column, e.g. `edregtime: {eventtype: ED}`: an admission's first transfer is
    /// its emergency-department stay where it has an emergency registration, and is not one
    /// where it has none. Kept by the sampler (and an LLM's grammar), so it holds under DP too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub first_where: BTreeMap<String, BTreeMap<String, String>>,
    /// Columns whose value every sibling shares, e.g. a patient's race on each admission: drawn
    /// for the first child (given how many siblings will share it) and copied to the later
    /// ones, with or without DP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_for_siblings: Vec<String>,
    /// Columns of the parent table the number of a parent's rows in this table is drawn given
    /// (declared parents of the count, as a column's `parents`; a presence column may be named
    /// `COLUMN~set`), e.g. an admission with an emergency registration has a transfer more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub count_parents: Vec<String>,
    /// Most children per parent (default [`DEFAULT_MAX_CHILDREN`]); more are clipped.
    pub max_children: Option<usize>,
    /// Under DP, the most rows of this table one entity contributes to its model (rows spread
    /// evenly over the entity's rows are kept, the others left out of the fit, not of the
    /// output). Without it an entity may contribute the product of `max_children` down the
    /// tree (20 admissions × 40 diagnoses = 800 rows), and every mechanism's noise is scaled to
    /// that. No effect without DP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_entity: Option<usize>,
    /// Public reference data (a dictionary): copied to the output as it is, never modelled.
    #[serde(default)]
    pub public: bool,
    /// Rows whose parent key does not resolve: `error` (default) or `drop`.
    #[serde(default)]
    pub orphans: Orphans,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSpec>,
}

/// A table's place in the entity tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableNode {
    pub name: String,
    /// Index of the parent table in [`EntityTree::tables`]; None for the root.
    pub parent: Option<usize>,
    /// This table's columns that hold the parent's primary key.
    pub parent_columns: Vec<String>,
    /// Further foreign keys to ancestors (e.g. a transfer's `subject_id`): filled from the
    /// ancestor's key, so they always agree with the parent chain.
    pub ancestor_keys: Vec<(Vec<String>, usize)>,
    /// Foreign keys into public tables: (columns, public table name).
    pub references: Vec<(Vec<String>, String)>,
    pub children: Vec<usize>,
    /// Depth under the root (root: 0).
    pub depth: usize,
}

/// The tables of an entity in an order where every parent comes before its children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityTree {
    pub tables: Vec<TableNode>,
    /// Names of the public tables.
    pub public: Vec<String>,
}

impl EntityTree {
    /// Builds the tree from the spec's tables; rejects cycles, several roots, a non-public table
    /// with no foreign key to another table, foreign keys naming unknown tables, and a table whose
    /// foreign keys name parents that are not on one chain.
    pub fn from_spec(tables: &BTreeMap<String, TableSpec>) -> Result<EntityTree> {
        let err = |m: String| Err(CoreError::Spec(m));
        if tables.is_empty() {
            return err("`tables` is empty".into());
        }
        let public: Vec<String> = tables
            .iter()
            .filter(|(_, t)| t.public)
            .map(|(n, _)| n.clone())
            .collect();
        // Links between entity tables.
        let mut links: BTreeMap<&str, Vec<(&str, Vec<String>)>> = BTreeMap::new();
        let mut references: BTreeMap<&str, Vec<(Vec<String>, String)>> = BTreeMap::new();
        for (name, t) in tables {
            if t.public {
                if !t.foreign_keys.is_empty() {
                    return err(format!(
                        "table `{name}` is public reference data and cannot have foreign keys"
                    ));
                }
                if t.primary_key.is_none() {
                    return err(format!(
                        "public table `{name}` needs a primary_key (the key other tables reference)"
                    ));
                }
                continue;
            }
            for fk in &t.foreign_keys {
                let Some(target) = tables.get(&fk.references) else {
                    return err(format!(
                        "table `{name}`: foreign key {:?} references `{}`, which is not in `tables` (they are: {})",
                        fk.columns.columns(),
                        fk.references,
                        tables.keys().cloned().collect::<Vec<_>>().join(", ")
                    ));
                };
                let Some(pk) = &target.primary_key else {
                    return err(format!(
                        "table `{name}`: foreign key {:?} references `{}`, which has no primary_key",
                        fk.columns.columns(),
                        fk.references
                    ));
                };
                if pk.columns().len() != fk.columns.columns().len() {
                    return err(format!(
                        "table `{name}`: foreign key {:?} has {} columns but the primary key of `{}` has {}",
                        fk.columns.columns(),
                        fk.columns.columns().len(),
                        fk.references,
                        pk.columns().len()
                    ));
                }
                if fk.references == *name {
                    return err(format!(
                        "table `{name}`: a foreign key to itself is a cycle ({name} → {name}); chimera models trees of tables"
                    ));
                }
                if target.public {
                    references
                        .entry(name)
                        .or_default()
                        .push((fk.columns.columns(), fk.references.clone()));
                } else {
                    links
                        .entry(name)
                        .or_default()
                        .push((fk.references.as_str(), fk.columns.columns()));
                }
            }
            if let Some(pk) = &t.primary_key
                && pk.columns().len() > 1
            {
                return err(format!(
                    "table `{name}`: a composite primary key of an entity table is not supported (only public tables may have one)"
                ));
            }
        }
        // Cycles: follow every link chain.
        for start in links.keys() {
            let mut path = vec![*start];
            if let Some(cycle) = find_cycle(&links, &mut path) {
                return err(format!(
                    "the foreign keys form a cycle: {}; chimera models trees of tables",
                    cycle.join(" → ")
                ));
            }
        }
        let entity: Vec<&str> = tables
            .iter()
            .filter(|(_, t)| !t.public)
            .map(|(n, _)| n.as_str())
            .collect();
        let roots: Vec<&str> = entity
            .iter()
            .copied()
            .filter(|n| !links.contains_key(n))
            .collect();
        match roots.len() {
            0 => return err("no table is a root (every table has a parent)".into()),
            1 => {}
            _ => {
                return err(format!(
                    "tables {} have no foreign key to another table: chimera needs exactly one root table (the entity); give each child table a foreign key to its parent",
                    roots
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        // Ancestor chains: the parent is the linked table every other linked table is an
        // ancestor of.
        let ancestors = |name: &str| -> Vec<&str> {
            let mut out = Vec::new();
            let mut cur = name;
            while let Some(l) = links.get(cur) {
                // The deepest linked table is found below; here any link leads upward.
                let next = deepest(&links, l);
                out.push(next);
                cur = next;
            }
            out
        };
        for (name, t) in tables {
            let child_only = [
                ("order_by", t.order_by.is_some()),
                ("after_previous", t.after_previous.is_some()),
                ("anchor", t.anchor.is_some()),
                ("max_children", t.max_children.is_some()),
                ("max_rows_per_entity", t.max_rows_per_entity.is_some()),
                ("last_when", !t.last_when.is_empty()),
                ("last_is", !t.last_is.is_empty()),
                ("first_where", !t.first_where.is_empty()),
                ("ends_at", t.ends_at.is_some()),
                ("same_for_siblings", !t.same_for_siblings.is_empty()),
                ("count_parents", !t.count_parents.is_empty()),
            ];
            for (key, set) in child_only {
                if set && (t.public || name == roots[0]) {
                    return err(format!(
                        "table `{name}`: `{key}` applies to child tables, and `{name}` is {}",
                        if t.public { "public" } else { "the root" }
                    ));
                }
            }
            if t.order_by.is_none() && t.ends_at.is_some() {
                return err(format!("table `{name}`: `ends_at` needs `order_by`"));
            }
            for (key, set) in [("last_when", &t.last_when), ("last_is", &t.last_is)] {
                if t.order_by.is_none() && !set.is_empty() {
                    return err(format!(
                        "table `{name}`: `{key}` needs `order_by` (it says which child is last)"
                    ));
                }
                // A value outside the column's declared domain is a typing slip: the rule
                // would hold for no row (`last_when`) or for none of the output (`last_is`).
                for (column, value) in set {
                    let domain = t.columns.get(column).and_then(|c| c.domain.as_ref());
                    if domain.is_some_and(|d| !d.contains(value)) {
                        return err(format!(
                            "table `{name}`: `{key}: {{{column}: {value}}}`: `{value}` is not in \
                             the `domain` of `{column}`"
                        ));
                    }
                }
            }
            if t.order_by.is_none() && !t.first_where.is_empty() {
                return err(format!(
                    "table `{name}`: `first_where` needs `order_by` (it says which child is first)"
                ));
            }
            for (set, rule) in &t.first_where {
                for (column, value) in rule {
                    let domain = t.columns.get(column).and_then(|c| c.domain.as_ref());
                    if domain.is_some_and(|d| !d.contains(value)) {
                        return err(format!(
                            "table `{name}`: `first_where: {{{set}: {{{column}: {value}}}}}`: \
                             `{value}` is not in the `domain` of `{column}`"
                        ));
                    }
                }
            }
            if t.order_by.is_none() && (t.after_previous.is_some() || t.anchor.is_some()) {
                return err(format!(
                    "table `{name}`: `after_previous` and `anchor` need `order_by`"
                ));
            }
            if t.max_children == Some(0) {
                return err(format!("table `{name}`: max_children must be at least 1"));
            }
            if t.max_rows_per_entity == Some(0) {
                return err(format!(
                    "table `{name}`: max_rows_per_entity must be at least 1"
                ));
            }
        }
        let mut order: Vec<&str> = vec![roots[0]];
        let mut nodes: Vec<TableNode> = vec![TableNode {
            name: roots[0].to_string(),
            parent: None,
            parent_columns: Vec::new(),
            ancestor_keys: Vec::new(),
            references: references.get(roots[0]).cloned().unwrap_or_default(),
            children: Vec::new(),
            depth: 0,
        }];
        // Breadth-first from the root, children by name.
        let mut i = 0;
        while i < order.len() {
            let parent = order[i];
            for (child, l) in &links {
                if order.contains(child) || deepest(&links, l) != parent {
                    continue;
                }
                let chain = ancestors(child);
                let mut parent_columns = Vec::new();
                let mut ancestor_keys = Vec::new();
                for (target, cols) in l {
                    if *target == parent && parent_columns.is_empty() {
                        parent_columns = cols.clone();
                    } else if let Some(k) = order.iter().position(|o| o == target)
                        && chain.contains(target)
                    {
                        ancestor_keys.push((cols.clone(), k));
                    } else {
                        return err(format!(
                            "table `{child}` has foreign keys to `{parent}` and to `{target}`, which is not an ancestor of `{parent}`: a table may have one parent (plus keys of that parent's ancestors)"
                        ));
                    }
                }
                let idx = nodes.len();
                nodes[i].children.push(idx);
                nodes.push(TableNode {
                    name: child.to_string(),
                    parent: Some(i),
                    parent_columns,
                    ancestor_keys,
                    references: references.get(child).cloned().unwrap_or_default(),
                    children: Vec::new(),
                    depth: nodes[i].depth + 1,
                });
                order.push(child);
            }
            i += 1;
        }
        if let Some(lost) = entity.iter().find(|n| !order.contains(n)) {
            return err(format!(
                "table `{lost}` is not under the root `{}` (its foreign keys lead elsewhere)",
                roots[0]
            ));
        }
        Ok(EntityTree {
            tables: nodes,
            public,
        })
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }

    /// Rows one entity may contribute to table `t`: the product of the clips on the way down,
    /// or `cap` where that is fewer.
    pub fn contribution(
        &self,
        t: usize,
        max_children: impl Fn(usize) -> usize,
        cap: Option<usize>,
    ) -> f64 {
        let mut m = 1.0;
        let mut cur = t;
        while let Some(p) = self.tables[cur].parent {
            m *= max_children(cur) as f64;
            cur = p;
        }
        cap.map_or(m, |c| m.min(c as f64))
    }
}

/// The linked table that all others in `l` are ancestors of (the nearest parent).
fn deepest<'a>(
    links: &BTreeMap<&'a str, Vec<(&'a str, Vec<String>)>>,
    l: &[(&'a str, Vec<String>)],
) -> &'a str {
    fn depth(links: &BTreeMap<&str, Vec<(&str, Vec<String>)>>, n: &str, budget: usize) -> usize {
        match links.get(n) {
            Some(l) if budget > 0 => {
                1 + l
                    .iter()
                    .map(|(t, _)| depth(links, t, budget - 1))
                    .max()
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
    let depth = |t: &str| depth(links, t, links.len() + 1);
    l.iter()
        .map(|(t, _)| *t)
        .max_by_key(|t| (depth(t), std::cmp::Reverse(*t)))
        .unwrap_or("")
}

fn find_cycle<'a>(
    links: &BTreeMap<&'a str, Vec<(&'a str, Vec<String>)>>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    let cur = *path.last()?;
    for (next, _) in links.get(cur).map(Vec::as_slice).unwrap_or(&[]) {
        if let Some(at) = path.iter().position(|p| p == next) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_string());
            return Some(cycle);
        }
        path.push(next);
        if let Some(c) = find_cycle(links, path) {
            return Some(c);
        }
        path.pop();
    }
    None
}

/// How one modelled column of a table's row relates to the table's output columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RowColumn {
    /// An output column modelled as it is (datetimes as days).
    Plain { column: String },
    /// A datetime modelled as days after `base` in the same row; never before it unless
    /// `signed` (an `offset_from` column).
    After {
        column: String,
        base: String,
        #[serde(default)]
        signed: bool,
    },
    /// The `order_by` column of the first sibling: days after the parent's `anchor` column, or
    /// days since the epoch without an anchor. An integer anchor is a calendar year
    /// (`anchor_is_year`), and the days count from its 1 January.
    First {
        column: String,
        /// The parent's columns, the first set one used.
        anchor: Option<Keys>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        anchor_is_year: bool,
        /// The parent's column the last sibling's `order_by` is placed at (`ends_at`): the
        /// siblings' times after the anchor are scaled to end there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends_at: Option<String>,
    },
    /// A datetime of a parent row modelled as days after the latest `base` among its rows in
    /// table `child` (`after: child.base` in the spec), e.g. a patient's date of death after
    /// the last discharge. A date counts from the day the latest one falls on. Without such
    /// rows the value is empty.
    AfterLast {
        column: String,
        child: String,
        base: String,
    },
    /// The `order_by` column of a later sibling: days after the previous sibling's `base`.
    Gap { column: String, base: String },
    /// A composite foreign key into a public table, its parts joined by [`KEY_SEPARATOR`].
    Reference { columns: Vec<String>, table: String },
    /// The clipped number of rows of a child table under this row.
    Count { child: String },
    /// Whether `columns` (times or numbers of the row that may be empty: without DP, empty on
    /// some rows and set on others in the data; under DP, every one the spec does not rule on)
    /// are set: 1 or 0. The networks draw it first, then the columns empty exactly where it is
    /// 0 and set where it is 1. Its two codes fit where a column's many do not, so the search
    /// can tie presence to other columns (an emergency registration to where the patient came
    /// from). A time `after` another that the spec calls `required` (or, without DP, that the
    /// data sets exactly where that one is set) shares its column (an emergency stay's end
    /// with its start).
    Set { columns: Vec<String> },
    /// Which band of its values a number of the row lies in: 0 below `cuts[0]`, `i` from
    /// `cuts[i - 1]` to below `cuts[i]`. A number of many codes (an age of 37) fits no table of a
    /// small model as a parent, so whatever follows it (insurance, marital status, death) would
    /// be drawn as if it did not; its band's few codes do fit. The networks draw the band
    /// first, then the number within it (the number's codes outside the band get no weight:
    /// post-processing, and its bins are cut at the band's cuts). Without DP only, for a
    /// number or a time `after` another (banded as its days after that one: a length of stay)
    /// set on every row with more than twice [`BAND_CODES`] values; the cuts are its quantiles.
    Band { column: String, cuts: Vec<f64> },
    /// Part `part` of the composite reference `reference` when the public table has few values
    /// for it (`values`, e.g. an ICD version): modelled on its own as well, so that it can
    /// follow the parent and the previous sibling (a diagnosis's codes are all ICD-9 or all
    /// ICD-10), and the sampled reference is made to agree with it. `constant`: every child of
    /// a parent has the same part in the data (found without DP only), so later siblings take
    /// the first one's.
    KeyPart {
        reference: String,
        part: usize,
        values: Vec<String>,
        #[serde(default)]
        constant: bool,
    },
}

/// A part of a composite reference with at most this many values in the public table is also
/// modelled on its own ([`RowColumn::KeyPart`]).
pub const KEY_PART_VALUES: usize = 16;

/// One table of a relational model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityTable {
    pub name: String,
    /// The output columns, as the input had them.
    pub columns: Vec<ColumnSchema>,
    pub primary_key: Option<String>,
    /// Modelled row: names (as in the models) and what each means.
    pub row: Vec<(String, RowColumn)>,
    pub max_children: usize,
    /// The format of fresh string primary keys: the spec's `pattern`, else (without DP) the
    /// real keys' one; 16 hex digits without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_format: Option<crate::idformat::IdFormat>,
    /// The spec's `last_when`: values only a parent's last child holds (the networks hold to
    /// it; an LLM that writes the rows is held to it by its grammar).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_when: BTreeMap<String, String>,
    /// The spec's `last_is`: values every parent's last child holds (the networks hold to it;
    /// an LLM that writes the rows writes the value on the last one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_is: BTreeMap<String, String>,
    /// The spec's `first_where`, as (parent's column, column, value): the first child holds
    /// the value exactly where the parent's column is set (the sampler draws the row again
    /// with the value fixed, or until it does not hold it; an LLM's grammar says so).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_where: Vec<(String, String, String)>,
    /// The spec's `empty_when`, as (column, condition column, value): the networks hold to
    /// it; an LLM that writes the rows keeps the condition column as drawn and writes the
    /// column empty where it holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub empty_when: Vec<(String, String, String)>,
    /// The spec's `required` columns: never empty, except where their `empty_when` holds (the
    /// networks hold to it; a first child drawn with one empty is drawn again; an LLM that
    /// writes the rows may not write them empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// The spec's `same_for_siblings`: columns a later sibling copies from the previous one
    /// (given to its sequence model as evidence, so the rest of the row follows the copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same_for_siblings: Vec<String>,
    /// The sequence model (None for the root, which the flat model covers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<Model>,
}

impl EntityTable {
    /// The columns never empty, and the `empty_when` rules (column, condition, value), the rows
    /// hold to: the spec's, and each presence column's (its columns empty exactly where it is
    /// 0; a column the spec calls `required` there is set where the presence column says so).
    pub fn held_rules(&self) -> (Vec<String>, Vec<(String, String, String)>) {
        let mut required = self.required.clone();
        let mut empty_when = self.empty_when.clone();
        for (set, rc) in &self.row {
            if let RowColumn::Set { columns } = rc {
                for c in columns {
                    if !required.contains(c) {
                        required.push(c.clone());
                    }
                    empty_when.push((c.clone(), set.clone(), "0".to_owned()));
                }
            }
        }
        (required, empty_when)
    }
}

/// A public table copied to the output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTable {
    pub name: String,
    pub input: String,
    /// The spec's settings of its columns (their declared CSV types, to read it again alike).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnSpec>,
}

/// A fitted relational model: the tree, every table's row layout and models, the privacy spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityModel {
    pub format: String,
    pub chimera_version: String,
    pub tree: EntityTree,
    /// In the tree's order (root first).
    pub tables: Vec<EntityTable>,
    /// The model of the flattened entity (root row and the first child of each child table).
    pub flat: Model,
    pub public: Vec<PublicTable>,
    pub privacy: ModelPrivacy,
    /// What the fit changed about the data: clipped children, dropped orphans.
    pub notes: Vec<String>,
    /// The language model that writes the child rows the sequence models drew (None: the
    /// sequence models' rows are the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<EntityLlm>,
}

/// A real child row and its parent's row, as modelled rows (JSON objects of the row columns),
/// for `knn-real` exemplars. Never part of a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct RealChild {
    pub parent: serde_json::Map<String, serde_json::Value>,
    pub row: serde_json::Map<String, serde_json::Value>,
}

/// Per table of the tree (the root's entry empty): real child rows, at most
/// [`MAX_REAL_CHILDREN`] evenly spaced.
pub type RealEntities = Vec<Vec<RealChild>>;

/// Real rows kept per table for `knn-real` exemplars at most.
pub const MAX_REAL_CHILDREN: usize = 20_000;

/// How an LLM writes child rows, recorded so that every sampler does the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityLlm {
    /// File name of the language model.
    pub model: String,
    pub exemplars: crate::model::Exemplars,
}

impl EntityModel {
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| CoreError::Model(e.to_string()))
    }

    pub fn from_json(bytes: &[u8]) -> Result<EntityModel> {
        let m: EntityModel =
            serde_json::from_slice(bytes).map_err(|e| CoreError::Model(e.to_string()))?;
        if m.format != ENTITY_MODEL_FORMAT {
            return Err(CoreError::Model(format!(
                "format `{}` is not `{ENTITY_MODEL_FORMAT}`",
                m.format
            )));
        }
        Ok(m)
    }

    /// SHA-256 hex of the canonical bytes.
    pub fn digest(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        Ok(crate::model::hex(&Sha256::digest(self.to_json()?)))
    }

    /// The (table, column) pairs sampling regenerates as fresh identifiers: declared or found
    /// so by a fit. Their synthetic values say nothing of the real ones.
    pub fn identifier_columns(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        let identifiers = |m: &'_ Model| -> Vec<String> {
            m.columns
                .iter()
                .filter(|c| c.role == crate::schema::Role::Identifier)
                .map(|c| c.schema.name.clone())
                .collect()
        };
        let root = self.tables.first().map_or("", |t| t.name.as_str());
        for n in identifiers(&self.flat) {
            // The flat row names a child's columns `child.column`.
            let child = self.tables.iter().skip(1).find_map(|t| {
                n.strip_prefix(&format!("{}.", t.name))
                    .map(|c| (t.name.clone(), c.to_owned()))
            });
            out.insert(child.unwrap_or_else(|| (root.to_owned(), n)));
        }
        for t in &self.tables {
            for n in t.sequence.as_ref().map(identifiers).unwrap_or_default() {
                if !n.starts_with(PARENT_PREFIX) && !n.starts_with(PREVIOUS_PREFIX) {
                    out.insert((t.name.clone(), n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> BTreeMap<String, TableSpec> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    const MIMIC: &str = "
patients: {primary_key: subject_id}
admissions:
  primary_key: hadm_id
  foreign_keys: [{columns: subject_id, references: patients}]
transfers:
  primary_key: transfer_id
  foreign_keys:
    - {columns: subject_id, references: patients}
    - {columns: hadm_id, references: admissions}
diagnoses_icd:
  foreign_keys:
    - {columns: hadm_id, references: admissions}
    - {columns: subject_id, references: patients}
    - {columns: [icd_code, icd_version], references: d_icd_diagnoses}
d_icd_diagnoses: {public: true, primary_key: [icd_code, icd_version]}
";

    #[test]
    fn mimic_tree() {
        let t = EntityTree::from_spec(&spec(MIMIC)).unwrap();
        let names: Vec<&str> = t.tables.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            ["patients", "admissions", "diagnoses_icd", "transfers"]
        );
        let tr = &t.tables[3];
        assert_eq!(tr.parent, Some(1));
        assert_eq!(tr.parent_columns, ["hadm_id"]);
        assert_eq!(tr.ancestor_keys, vec![(vec!["subject_id".to_string()], 0)]);
        let dx = &t.tables[2];
        assert_eq!(
            dx.references,
            vec![(
                vec!["icd_code".to_string(), "icd_version".to_string()],
                "d_icd_diagnoses".to_string()
            )]
        );
        assert_eq!(t.tables[0].children, [1]);
        assert_eq!(t.tables[1].children, [2, 3]);
        assert_eq!(t.public, ["d_icd_diagnoses"]);
        assert_eq!(t.contribution(3, |_| 10, None), 100.0);
        assert_eq!(t.contribution(3, |_| 10, Some(30)), 30.0);
        assert_eq!(t.contribution(3, |_| 10, Some(300)), 100.0);
    }

    #[test]
    fn bad_relations_are_named() {
        let cycle = "
a: {primary_key: id, foreign_keys: [{columns: b_id, references: b}]}
b: {primary_key: id, foreign_keys: [{columns: a_id, references: a}]}
r: {primary_key: id}
";
        let e = EntityTree::from_spec(&spec(cycle)).unwrap_err().to_string();
        assert!(e.contains("cycle") && e.contains("a → b → a"), "{e}");
        let counted_root = "
a: {primary_key: id, count_parents: [x]}
b: {foreign_keys: [{columns: a_id, references: a}]}
";
        let e = EntityTree::from_spec(&spec(counted_root))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`count_parents` applies to child tables, and `a` is the root"),
            "{e}"
        );
        let two_roots = "
a: {primary_key: id}
b: {primary_key: id}
";
        let e = EntityTree::from_spec(&spec(two_roots))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`a`, `b`") && e.contains("foreign key"), "{e}");
        let unknown = "
a: {primary_key: id}
b: {foreign_keys: [{columns: a_id, references: nope}]}
";
        let e = EntityTree::from_spec(&spec(unknown))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`nope`") && e.contains("table `b`"), "{e}");
        let arity = "
a: {primary_key: id}
b: {foreign_keys: [{columns: [x, y], references: a}]}
";
        let e = EntityTree::from_spec(&spec(arity)).unwrap_err().to_string();
        assert!(e.contains("2 columns"), "{e}");
        let root_ordered = "
a: {primary_key: id, order_by: t}
b: {foreign_keys: [{columns: a_id, references: a}]}
";
        let e = EntityTree::from_spec(&spec(root_ordered))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`order_by`") && e.contains("the root"), "{e}");
        let anchor_alone = "
a: {primary_key: id}
b: {foreign_keys: [{columns: a_id, references: a}], anchor: t}
";
        let e = EntityTree::from_spec(&spec(anchor_alone))
            .unwrap_err()
            .to_string();
        assert!(e.contains("need `order_by`"), "{e}");
        for (key, alone) in [
            ("ends_at", "ends_at: end"),
            ("last_when", "last_when: {kind: final}"),
            ("last_is", "last_is: {kind: final}"),
        ] {
            let text = format!(
                "\na: {{primary_key: id}}\nb: {{foreign_keys: [{{columns: a_id, references: a}}], {alone}}}\n"
            );
            let e = EntityTree::from_spec(&spec(&text)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}` needs `order_by`")), "{e}");
        }
        // A last-child value outside the column's declared domain.
        let slip = "
a: {primary_key: id}
b:
  foreign_keys: [{columns: a_id, references: a}]
  order_by: t
  last_is: {kind: fnal}
  columns: {kind: {domain: [sale, final]}}
";
        let e = EntityTree::from_spec(&spec(slip)).unwrap_err().to_string();
        assert!(
            e.contains("`last_is: {kind: fnal}`: `fnal` is not in the `domain` of `kind`"),
            "{e}"
        );
        let fixed = slip.replace("fnal", "final");
        assert!(EntityTree::from_spec(&spec(&fixed)).is_ok());
        // An anchor may list columns, the first set one used.
        let listed = "
a: {primary_key: id}
b: {foreign_keys: [{columns: a_id, references: a}], order_by: t, anchor: [u, v]}
";
        let tree = EntityTree::from_spec(&spec(listed)).unwrap();
        assert_eq!(tree.tables.len(), 2);
    }
}
