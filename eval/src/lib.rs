//! Fidelity and utility of a synthetic table against the real one.
//!
//! The fidelity metrics follow SDMetrics' definitions (KSComplement, TVComplement,
//! ContingencySimilarity, CorrelationSimilarity) so that scores can be checked against
//! it; ML efficacy trains a gradient-boosted classifier (forust) on the synthetic and on
//! the real table and scores both on a real held-out table.

mod column;
mod efficacy;
mod error;
mod fidelity;
mod privacy;
mod report;

use std::borrow::Cow;

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

use crate::column::{Column, ColumnValues, Tables};
pub use crate::error::{EvalError, TableRole};
pub use crate::privacy::PrivacyOptions;
pub use crate::report::{EvalReport, MlEfficacy, OneWay, PairScores, Privacy};

/// The tables to evaluate.
pub struct EvalInput<'a> {
    /// The real training table.
    pub real: &'a [RecordBatch],
    /// The synthetic table: the real table's column names; types may differ within a kind
    /// (e.g. Int32 for Int64), values are compared, not types.
    pub synthetic: &'a [RecordBatch],
    /// The real held-out table for ML efficacy.
    pub test: Option<&'a [RecordBatch]>,
    /// The binary target column for ML efficacy.
    pub target: Option<&'a str>,
    /// Seed of the classifiers' randomness.
    pub seed: u64,
}

/// How numeric columns are cut into bins for the 2-way (contingency) metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discretization {
    /// Equal-width bins over the real column's range (`numpy.histogram_bin_edges`), as
    /// SDMetrics does.
    EqualWidth,
    /// Bins between the real column's quantiles, duplicate edges merged.
    Quantile,
}

/// Settings of an evaluation; `EvalOptions::default()` is what [`evaluate`] uses.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Bins of a numeric column in the 2-way metric.
    pub bins: usize,
    /// How those bins are placed.
    pub discretization: Discretization,
    /// Trees of the ML-efficacy classifier.
    pub trees: usize,
    /// Learning rate of the classifier.
    pub learning_rate: f32,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Sample sizes of the distance-based privacy metrics.
    pub privacy: PrivacyOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            bins: 10,
            discretization: Discretization::EqualWidth,
            trees: 200,
            learning_rate: 0.1,
            max_depth: 5,
            privacy: PrivacyOptions::default(),
        }
    }
}

/// Evaluates the synthetic table against the real one with the default settings.
pub fn evaluate(input: &EvalInput) -> Result<EvalReport, EvalError> {
    evaluate_with(input, &EvalOptions::default())
}

/// Evaluates the synthetic table against the real one.
pub fn evaluate_with(input: &EvalInput, options: &EvalOptions) -> Result<EvalReport, EvalError> {
    let rows_real = column::row_count(input.real);
    if rows_real == 0 {
        return Err(EvalError::Empty {
            table: TableRole::Real,
        });
    }
    let rows_synthetic = column::row_count(input.synthetic);
    if rows_synthetic == 0 {
        return Err(EvalError::Empty {
            table: TableRole::Synthetic,
        });
    }
    let mut notes = conventions(options);

    let names = column::column_names(input.real);
    let ml_request = match (input.test, input.target) {
        (Some(test), Some(target)) => {
            if column::row_count(test) == 0 {
                return Err(EvalError::Empty {
                    table: TableRole::Test,
                });
            }
            if !names.iter().any(|n| n == target) {
                return Err(EvalError::Target {
                    target: target.to_owned(),
                    reason: "not a column of the real table".to_owned(),
                });
            }
            Some((test, target))
        }
        (None, None) => None,
        (Some(_), None) => {
            notes.push("ml_efficacy: skipped, a test table was given without a target".to_owned());
            None
        }
        (None, Some(_)) => {
            notes.push("ml_efficacy: skipped, a target was given without a test table".to_owned());
            None
        }
    };
    let tables = Tables {
        real: input.real,
        synthetic: input.synthetic,
        // A test table also gives the privacy metrics their held-out rows.
        test: input.test.filter(|t| column::row_count(t) > 0),
    };

    // Collected in column order so the first failing column is the one reported.
    let columns: Vec<Result<Column, EvalError>> = names
        .par_iter()
        .map(|name| column::read_column(tables, name))
        .collect();
    let columns = columns.into_iter().collect::<Result<Vec<_>, _>>()?;

    let extra: Vec<String> = column::column_names(input.synthetic)
        .into_iter()
        .filter(|n| !names.contains(n))
        .collect();
    if !extra.is_empty() {
        notes.push(format!(
            "synthetic columns absent from the real table were ignored: {}",
            extra.join(", ")
        ));
    }
    notes.extend(null_notes(&columns));

    let one_way = one_way(&columns);
    let two_way = two_way(&columns, options);
    // SDMetrics' own binning beside any other, from the same columns.
    let two_way_equal_width = (options.discretization != Discretization::EqualWidth).then(|| {
        let sdmetrics = EvalOptions {
            discretization: Discretization::EqualWidth,
            ..options.clone()
        };
        self::two_way(&columns, &sdmetrics)
    });
    let correlation = correlation(&columns, &mut notes);
    let ml_efficacy = ml_request
        .map(|(_, target)| efficacy::ml_efficacy(&columns, target, options, input.seed, &mut notes))
        .transpose()?;

    let privacy = privacy::privacy(&columns, &options.privacy, input.seed, &mut notes);

    Ok(EvalReport {
        rows_real,
        rows_synthetic,
        one_way,
        two_way,
        two_way_equal_width,
        correlation,
        ml_efficacy,
        privacy,
        notes,
    })
}

fn conventions(options: &EvalOptions) -> Vec<String> {
    let bins = match options.discretization {
        Discretization::EqualWidth => format!(
            "{} equal-width bins over the real column's range (numpy.histogram_bin_edges, as SDMetrics)",
            options.bins
        ),
        Discretization::Quantile => format!(
            "{} bins between the real column's quantiles (duplicate edges merged)",
            options.bins
        ),
    };
    vec![
        "column kinds: integer, float, decimal, date, time and duration columns are numeric \
         (dates and times as seconds since the epoch or midnight); string, boolean and \
         dictionary columns are categorical, compared by their text"
            .to_owned(),
        "one_way: KSComplement (1 - two-sample KS statistic) for numeric columns, nulls dropped \
         and values rounded to 14 decimals; TVComplement (1 - total variation distance) for \
         categorical columns, nulls dropped (as SDMetrics); a column with no non-null value in \
         either table has no score and is left out of the mean"
            .to_owned(),
        format!(
            "two_way: ContingencySimilarity (1 - total variation distance of the joint \
             frequencies) over every pair of columns; numeric columns are cut into {bins}, \
             left-closed like numpy.digitize, with open outer bins so synthetic values outside \
             the real range fall into them; null is a category (and a bin) of its own"
        ),
        "correlation: CorrelationSimilarity (1 - |r_real - r_synthetic| / 2, Pearson r) over \
         every pair of numeric columns, rows with a null in either column dropped; pairs with \
         a column that is constant in either table are skipped"
            .to_owned(),
        format!(
            "ml_efficacy: forust gradient boosting (log loss, {} trees, learning rate {}, depth \
             {}) trained on the synthetic table and on the real table, scored on the test table; \
             numeric features as values, categorical features as ordinal codes of their sorted \
             categories (union of all tables), null as missing; positive class = the less \
             frequent real class; accuracy and F1 at probability 0.5",
            options.trees, options.learning_rate, options.max_depth
        ),
    ]
}

fn null_notes(columns: &[Column]) -> Vec<String> {
    columns
        .iter()
        .filter_map(|c| {
            let ColumnValues::Numeric(values) = &c.values else {
                return None;
            };
            let nulls = |v: &[f64]| v.iter().filter(|x| x.is_nan()).count();
            let (real, synthetic) = (nulls(&values.real), nulls(&values.synthetic));
            (real + synthetic > 0).then(|| {
                format!(
                    "column `{}`: {real} real and {synthetic} synthetic nulls dropped for \
                     KSComplement and Pearson, counted as their own bin in two_way",
                    c.name
                )
            })
        })
        .collect()
}

fn one_way(columns: &[Column]) -> OneWay {
    let scores: Vec<(String, Option<f64>)> = columns
        .par_iter()
        .map(|c| {
            let score = match &c.values {
                ColumnValues::Numeric(v) => fidelity::ks_complement(&v.real, &v.synthetic),
                ColumnValues::Categorical { categories, codes } => {
                    fidelity::tv_complement(&codes.real, &codes.synthetic, categories.len())
                }
            };
            (c.name.clone(), score)
        })
        .collect();
    OneWay {
        mean: report::mean_of(scores.iter().map(|(_, s)| *s)),
        columns: scores,
    }
}

/// A column as codes for contingency tables: categories or bins, null included.
struct PairCodes<'c> {
    real: Cow<'c, [u32]>,
    synthetic: Cow<'c, [u32]>,
    levels: usize,
}

fn pair_codes<'c>(column: &'c Column, options: &EvalOptions) -> PairCodes<'c> {
    match &column.values {
        ColumnValues::Categorical { categories, codes } => PairCodes {
            real: Cow::Borrowed(&codes.real),
            synthetic: Cow::Borrowed(&codes.synthetic),
            levels: categories.len() + 1,
        },
        ColumnValues::Numeric(values) => {
            let edges =
                fidelity::interior_edges(&values.real, options.bins, options.discretization);
            PairCodes {
                real: Cow::Owned(fidelity::discretize(&values.real, &edges)),
                synthetic: Cow::Owned(fidelity::discretize(&values.synthetic, &edges)),
                levels: edges.len() + 2,
            }
        }
    }
}

fn all_pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect()
}

fn two_way(columns: &[Column], options: &EvalOptions) -> PairScores {
    let codes: Vec<PairCodes<'_>> = columns.par_iter().map(|c| pair_codes(c, options)).collect();
    let pairs = all_pairs(codes.len());
    let scores: Vec<f64> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let (a, b) = (&codes[i], &codes[j]);
            fidelity::contingency_similarity(
                (&a.real, &b.real),
                (&a.synthetic, &b.synthetic),
                (a.levels, b.levels),
            )
        })
        .collect();
    PairScores {
        mean: report::mean_of(scores.iter().copied().map(Some)),
        pairs: scores.len(),
    }
}

fn correlation(columns: &[Column], notes: &mut Vec<String>) -> PairScores {
    let numeric: Vec<(&str, &column::PerTable<Vec<f64>>)> = columns
        .iter()
        .filter_map(|c| match &c.values {
            ColumnValues::Numeric(v) => Some((c.name.as_str(), v)),
            _ => None,
        })
        .collect();
    // SDMetrics leaves out a pair whose column holds fewer than two distinct values.
    let constant: Vec<Option<TableRole>> = numeric
        .par_iter()
        .map(|(_, v)| {
            if fidelity::distinct_up_to(&v.real, 2) < 2 {
                Some(TableRole::Real)
            } else if fidelity::distinct_up_to(&v.synthetic, 2) < 2 {
                Some(TableRole::Synthetic)
            } else {
                None
            }
        })
        .collect();
    for ((name, _), table) in numeric.iter().zip(&constant) {
        if let Some(table) = table {
            notes.push(format!(
                "correlation: column `{name}` is constant (or null) in the {table} table; its pairs were skipped"
            ));
        }
    }
    let pairs = all_pairs(numeric.len());
    let scores: Vec<Result<f64, (usize, usize)>> = pairs
        .par_iter()
        .filter(|(i, j)| constant[*i].is_none() && constant[*j].is_none())
        .map(|&(i, j)| {
            let (x, y) = (numeric[i].1, numeric[j].1);
            match (
                fidelity::pearson(&x.real, &y.real),
                fidelity::pearson(&x.synthetic, &y.synthetic),
            ) {
                (Some(r), Some(s)) => Ok(fidelity::correlation_similarity(r, s)),
                _ => Err((i, j)),
            }
        })
        .collect();
    for (i, j) in scores.iter().filter_map(|s| s.err()) {
        notes.push(format!(
            "correlation: pair (`{}`, `{}`) skipped, Pearson r is undefined on the rows where both are non-null",
            numeric[i].0, numeric[j].0
        ));
    }
    let scored: Vec<f64> = scores.into_iter().filter_map(Result::ok).collect();
    PairScores {
        mean: report::mean_of(scored.iter().copied().map(Some)),
        pairs: scored.len(),
    }
}

#[cfg(test)]
mod tests;
