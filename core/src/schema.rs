//! Column roles and the logical value types chimera models.

use serde::{Deserialize, Serialize};

/// How a column is synthesised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A finite set of values; rare ones merged under DP.
    Categorical,
    /// Numbers: exact-value spikes plus quantile bins with the within-bin shape kept.
    Numeric,
    /// Dates and timestamps, modelled as numbers of days.
    Datetime,
    /// Keys: regenerated as fresh unique values, never copied.
    Identifier,
    /// Free text and long-tail strings: filled by the LLM (a later stage of the pipeline).
    Text,
}

impl Role {
    /// Whether the Bayesian network models this column.
    pub fn in_network(self) -> bool {
        matches!(self, Role::Categorical | Role::Numeric | Role::Datetime)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Role::Categorical => "categorical",
            Role::Numeric => "numeric",
            Role::Datetime => "datetime",
            Role::Identifier => "identifier",
            Role::Text => "text",
        };
        f.write_str(s)
    }
}

/// The physical family of a column's values, independent of Arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    Boolean,
    Integer,
    Float,
    String,
    /// Days since the epoch (dates).
    Date,
    /// Instants, stored as microseconds since the epoch (converted to days for modelling).
    Timestamp,
}

/// A column of the input table as chimera sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    pub kind: ValueKind,
    /// The Arrow type of the input column (its `Display` form), restored on output.
    pub arrow_type: String,
    pub nullable: bool,
}

/// True when a column name reads like a key (`id`, `subject_id`, `userId`, `uuid`).
pub fn looks_like_identifier(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower == "id"
        || lower.ends_with("_id")
        || lower.ends_with("-id")
        || lower.ends_with(" id")
        || name.ends_with("Id")
        || name.ends_with("ID")
        || lower == "uuid"
        || lower == "guid"
        || lower.ends_with("_uuid")
        || lower == "key"
        || lower.ends_with("_key")
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Days from 1970-01-01 to 1 January of `year`: where an integer year column anchors datetimes.
pub fn year_start_days(year: f64) -> f64 {
    days_from_civil(year.floor() as i64, 1, 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_names() {
        for n in [
            "id",
            "subject_id",
            "hadm_id",
            "userId",
            "ID",
            "uuid",
            "row_key",
        ] {
            assert!(looks_like_identifier(n), "{n}");
        }
        for n in ["age", "paid", "valid", "education-num", "keyboard"] {
            assert!(!looks_like_identifier(n), "{n}");
        }
    }
}
