//! The user's spec (YAML): column roles, public domains and bounds, and fit settings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::schema::{ColumnSchema, Role};

/// What the user declares about one column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Overrides the inferred role.
    pub role: Option<Role>,
    /// Number of quantile bins for a numeric or datetime column.
    pub bins: Option<usize>,
    /// The public set of values of a categorical column: no budget is spent on discovering it.
    pub domain: Option<Vec<String>>,
    /// Public bounds [low, high] of a numeric column: values outside are clamped.
    pub bounds: Option<[f64; 2]>,
    /// The column's type when reading CSV, instead of inferring it from the first rows:
    /// one of [`READ_TYPES`].
    #[serde(rename = "type")]
    pub read_type: Option<String>,
    /// A text column's values must match this regular expression (LLM-written values are
    /// constrained to it). An identifier's fresh values are written in it; there it may use
    /// literal characters, classes and `{n}` repeats only (e.g. `P[0-9][0-9A-Z]{4}`).
    pub pattern: Option<String>,
    /// Most characters of an LLM-written value (default [`DEFAULT_TEXT_MAX_LENGTH`]).
    pub max_length: Option<usize>,
    /// What the column holds, in words, for the LLM's prompt.
    pub description: Option<String>,
    /// In a relational spec: a datetime column of the same table this one never precedes
    /// (e.g. `dischtime` after `admittime`); modelled as the time after it, so order holds.
    pub after: Option<String>,
    /// In a relational spec: a datetime column of the same table this one is modelled as an
    /// offset from (either sign), e.g. `edregtime` from `admittime`, so the two stay close.
    pub offset_from: Option<String>,
    /// Columns this one is always drawn given (declared structure, like synthpop's predictor
    /// matrix): the network gives it these parents whatever its search would choose, even over
    /// the cell limit. For columns that state one fact (a discharge to `DIED` and the death
    /// flag). In a relational spec, `TABLE.COLUMN` names a column of the parent table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    /// Declared structural zeros: the column is empty on every row where a named column of the
    /// same table holds the given value (a discharge has no care unit:
    /// `careunit: {empty_when: {eventtype: discharge}}`). The network draws the column given
    /// those columns and gives their value no other outcome than empty, under DP too (where
    /// noise would otherwise put care units on a few percent of discharges). The fit stops if
    /// a row of the data breaks it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub empty_when: BTreeMap<String, String>,
    /// The column is never empty (a `NOT NULL` column), except where its `empty_when` rule (at
    /// most one) holds: it has no null code, or one that only the rule's rows draw, under DP
    /// too (where noise would otherwise leave a few rows empty). The fit stops if a row of the
    /// data breaks it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

/// Default bound on the characters of an LLM-written value.
pub const DEFAULT_TEXT_MAX_LENGTH: usize = 48;

/// Settings of the LLM fill that the spec may override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    /// The instruction at the top of every prompt; `{table}` and `{columns}` are replaced by
    /// the table's name and the list of its columns.
    pub instruction: Option<String>,
}

/// Types a spec may declare for a CSV column.
pub const READ_TYPES: [&str; 6] = ["Utf8", "Int64", "Float64", "Boolean", "Date32", "Timestamp"];

/// Settings of the fit that the spec may override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSpec {
    /// Maximum number of parents per attribute in the Bayesian network.
    pub max_parents: Option<usize>,
    /// Default number of bins for numeric columns.
    pub bins: Option<usize>,
    /// Maximum number of categories kept for a categorical column.
    pub max_categories: Option<usize>,
}

/// A spec file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Name of the table (defaults to the input file's stem).
    pub table: Option<String>,
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnSpec>,
    #[serde(default)]
    pub fit: FitSpec,
    #[serde(default)]
    pub llm: LlmSpec,
    /// A relational spec: the tables of an entity, their keys and links (see
    /// [`crate::relational`]). When present, `table` and `columns` are not used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, crate::relational::TableSpec>,
}

impl Spec {
    /// Parses a YAML spec.
    pub fn from_yaml(text: &str) -> Result<Spec> {
        serde_yaml_ng::from_str(text).map_err(|e| CoreError::Spec(e.to_string()))
    }

    /// Checks the spec against the table's columns: every named column must exist and every
    /// declared value must make sense for it.
    pub fn validate(&self, table: &str, columns: &[ColumnSchema]) -> Result<()> {
        for (name, c) in &self.columns {
            if !columns.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = columns.iter().map(|s| s.name.as_str()).collect();
                return Err(CoreError::Spec(format!(
                    "column `{name}` is not in table `{table}` (its columns: {})",
                    known.join(", ")
                )));
            }
            if let Some(b) = c.bins
                && !(2..=1024).contains(&b)
            {
                return Err(CoreError::Spec(format!(
                    "column `{name}`: bins must be between 2 and 1024, got {b}"
                )));
            }
            if let Some([lo, hi]) = c.bounds
                && !(lo.is_finite() && hi.is_finite() && lo < hi)
            {
                return Err(CoreError::Spec(format!(
                    "column `{name}`: bounds must be two finite numbers, low < high, got [{lo}, {hi}]"
                )));
            }
            if let Some(t) = &c.read_type
                && !READ_TYPES.contains(&t.as_str())
            {
                return Err(CoreError::Spec(format!(
                    "column `{name}`: type must be one of {}, got `{t}`",
                    READ_TYPES.join(", ")
                )));
            }
            if let Some(m) = c.max_length
                && !(1..=4096).contains(&m)
            {
                return Err(CoreError::Spec(format!(
                    "column `{name}`: max_length must be between 1 and 4096, got {m}"
                )));
            }
            if let Some(d) = &c.domain
                && d.is_empty()
            {
                return Err(CoreError::Spec(format!("column `{name}`: domain is empty")));
            }
            if c.required && c.empty_when.len() > 1 {
                return Err(CoreError::Spec(format!(
                    "column `{name}`: `required` takes at most one `empty_when` condition, got {}",
                    c.empty_when.len()
                )));
            }
            // Columns this one is declared to depend on: each must be another column.
            let named = (c.empty_when.keys().map(|p| ("empty_when", p)))
                .chain(c.parents.iter().map(|p| ("parents", p)));
            for (key, p) in named {
                if p == name || !columns.iter().any(|s| &s.name == p) {
                    return Err(CoreError::Spec(format!(
                        "column `{name}`: `{key}` names `{p}`, which is {} in table `{table}`",
                        if p == name {
                            "the column itself"
                        } else {
                            "not a column"
                        }
                    )));
                }
            }
        }
        if let Some(k) = self.fit.max_parents
            && !(1..=6).contains(&k)
        {
            return Err(CoreError::Spec(format!(
                "fit.max_parents must be between 1 and 6, got {k}"
            )));
        }
        if let Some(b) = self.fit.bins
            && !(2..=1024).contains(&b)
        {
            return Err(CoreError::Spec(format!(
                "fit.bins must be between 2 and 1024, got {b}"
            )));
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ValueKind;

    fn cols() -> Vec<ColumnSchema> {
        vec![ColumnSchema {
            name: "age".into(),
            kind: ValueKind::Integer,
            arrow_type: "Int64".into(),
            nullable: true,
        }]
    }

    #[test]
    fn parses_and_validates() {
        let s = Spec::from_yaml(
            "columns:\n  age: {role: numeric, bins: 8, bounds: [17, 90]}\nfit:\n  max_parents: 3\n",
        )
        .unwrap();
        assert_eq!(s.columns["age"].bins, Some(8));
        s.validate("t", &cols()).unwrap();
    }

    #[test]
    fn unknown_column_is_named() {
        let s = Spec::from_yaml("columns:\n  agee: {role: numeric}\n").unwrap();
        let e = s.validate("adult", &cols()).unwrap_err().to_string();
        assert!(
            e.contains("`agee`") && e.contains("`adult`") && e.contains("age"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(Spec::from_yaml("columns:\n  age: {rol: numeric}\n").is_err());
        assert!(Spec::from_yaml("columns:\n  age: {role: colour}\n").is_err());
        let s = Spec::from_yaml("columns:\n  age: {bounds: [5, 1]}\n").unwrap();
        assert!(s.validate("t", &cols()).is_err());
        let s = Spec::from_yaml("columns:\n  age: {type: Int128}\n").unwrap();
        let e = s.validate("t", &cols()).unwrap_err().to_string();
        assert!(e.contains("`age`") && e.contains("Int128"), "{e}");
    }
}
