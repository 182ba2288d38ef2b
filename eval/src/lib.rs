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
mod html;
mod linear;
mod marginals;
mod privacy;
mod relational;
mod report;

use std::borrow::Cow;

use arrow::record_batch::RecordBatch;
use rayon::prelude::*;

pub use crate::column::column_names;
use crate::column::{Column, ColumnValues, Tables};
pub use crate::error::{EvalError, TableRole};
pub use crate::html::{render_html, render_relational_html};
pub use crate::privacy::PrivacyOptions;
pub use crate::relational::{
    ChildrenPerParent, Link, LinkReport, Order, OrderReport, RelationalInput, RelationalReport,
    RelationalTable, TableReport, evaluate_relational, key_set, resolving_rows, row_keys, without,
};
pub use crate::report::{
    ChiSquared, ChiSquaredMeans, ColumnReport, Distribution, Dlt, EvalReport, Guarantee,
    JudgeScores, Matrices, Matrix, Mismatch, MlEfficacy, ModelScores, OneWay, PairScores, Privacy,
    Realism, TaskScores,
};

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
    let codes: Vec<PairCodes<'_>> = columns.par_iter().map(|c| pair_codes(c, options)).collect();
    let (two_way, two_way_matrix) = two_way(&codes, &one_way);
    // SDMetrics' own binning beside any other, from the same columns.
    let two_way_equal_width = (options.discretization != Discretization::EqualWidth).then(|| {
        let sdmetrics = EvalOptions {
            discretization: Discretization::EqualWidth,
            ..options.clone()
        };
        let codes: Vec<PairCodes<'_>> = columns
            .par_iter()
            .map(|c| pair_codes(c, &sdmetrics))
            .collect();
        self::two_way(&codes, &one_way).0
    });
    let (correlation, pearson) = correlation(&columns, &mut notes);
    let (cramers_v, association) = cramers_v(&columns, &codes);
    let column_reports = column_reports(&columns, &codes, &one_way);
    let ml_efficacy = ml_request
        .map(|(_, target)| efficacy::ml_efficacy(&columns, target, options, input.seed, &mut notes))
        .transpose()?;

    let privacy = privacy::privacy(&columns, &options.privacy, input.seed, &mut notes);

    let tested: Vec<&ChiSquared> = column_reports
        .iter()
        .filter_map(|c| c.chi_squared.as_ref())
        .collect();
    let chi_squared = ChiSquaredMeans {
        p_proportions: report::mean_of(tested.iter().map(|c| Some(c.p_proportions))),
        p_counts: report::mean_of(tested.iter().map(|c| Some(c.p_counts))),
        columns: tested.len(),
    };
    let wasserstein = report::mean_of(column_reports.iter().map(|c| c.wasserstein));
    let mismatch = Mismatch {
        missed: report::mean_of(column_reports.iter().map(|c| Some(c.mismatch.missed)))
            .unwrap_or(0.0),
        invented: report::mean_of(column_reports.iter().map(|c| Some(c.mismatch.invented)))
            .unwrap_or(0.0),
    };
    let matrices = Matrices {
        two_way: two_way_matrix,
        numeric: pearson.names,
        pearson_real: pearson.real,
        pearson_synthetic: pearson.synthetic,
        categorical: association.names,
        cramers_v_real: association.real,
        cramers_v_synthetic: association.synthetic,
    };

    Ok(EvalReport {
        rows_real,
        rows_synthetic,
        one_way,
        two_way,
        two_way_equal_width,
        correlation,
        cramers_v,
        chi_squared,
        wasserstein,
        mismatch,
        columns: column_reports,
        matrices,
        ml_efficacy,
        privacy,
        realism: None,
        dlt: None,
        guarantee: None,
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
        "cramers_v: 1 - |V_real - V_synthetic| of Cramér's V (no bias correction, null a \
         category) over every pair of categorical columns; pairs where either table has a \
         single category are skipped"
            .to_owned(),
        "chi_squared: per column over its categories (numeric: its two_way bins), null a level; \
         p_proportions is SDMetrics' CSTest (scipy chisquare of synthetic against real shares, \
         1e-6 pseudo-count for synthetic-only categories), the convention behind Amalgam's \
         average chi-squared p, and lenient: it ignores the row count and almost never \
         rejects; p_counts is Pearson's test of homogeneity on the counts (no continuity \
         correction), strict: at large row counts it rejects any visible difference"
            .to_owned(),
        "wasserstein: scipy's 1-D Wasserstein distance between the real and synthetic values \
         divided by the real range, nulls dropped; numeric columns with a non-constant real \
         column only; lower is better"
            .to_owned(),
        "mismatch (HARMONIC's data mismatch): missed = share of real categories (null \
         included) absent from the synthetic column, or for numeric columns share of the \
         occupied real bins of 20 equal-width bins over the real range holding no synthetic \
         value; invented = share of synthetic rows with a category the real column lacks, or \
         a value outside the real range; lower is better"
            .to_owned(),
        format!(
            "ml_efficacy: forust gradient boosting ({} trees, learning rate {}, depth {}; log \
             loss for a binary target, squared loss for a numeric target with more than two \
             values) and a linear model (L2 logistic regression by Newton's method, or ridge \
             regression; penalty 1 on standardised numbers and one-hot categories, the 30 most \
             frequent per column, nulls as indicators), each trained on the synthetic table and \
             on the real table and scored on the test table; the trees see numeric features as \
             values, categorical features as ordinal codes of their sorted categories (union of \
             all tables), null as missing; positive class = the less frequent real class; \
             accuracy and F1 at probability 0.5; a target with 3 to 50 classes gets one model \
             per class against the rest, the highest score predicts, F1 and AUC are macro means \
             (AUC over the classes the test rows hold with both outcomes); R^2 = 1 - SS_res / \
             SS_tot on the test rows",
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

fn two_way(codes: &[PairCodes<'_>], one_way: &OneWay) -> (PairScores, Matrix) {
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
    let mut matrix = square(codes.len());
    for (i, row) in matrix.iter_mut().enumerate() {
        row[i] = one_way.columns[i].1;
    }
    for (&(i, j), &score) in pairs.iter().zip(&scores) {
        matrix[i][j] = Some(score);
        matrix[j][i] = Some(score);
    }
    let scores = PairScores {
        mean: report::mean_of(scores.iter().copied().map(Some)),
        pairs: scores.len(),
    };
    (scores, matrix)
}

fn square(n: usize) -> Matrix {
    vec![vec![None; n]; n]
}

/// A measure of association between pairs of columns, in each table.
struct Association {
    names: Vec<String>,
    real: Matrix,
    synthetic: Matrix,
}

impl Association {
    fn new(names: Vec<String>) -> Self {
        let n = names.len();
        Association {
            names,
            real: square(n),
            synthetic: square(n),
        }
    }

    fn set(&mut self, (i, j): (usize, usize), real: Option<f64>, synthetic: Option<f64>) {
        self.real[i][j] = real;
        self.real[j][i] = real;
        self.synthetic[i][j] = synthetic;
        self.synthetic[j][i] = synthetic;
    }
}

fn cramers_v(columns: &[Column], codes: &[PairCodes<'_>]) -> (PairScores, Association) {
    let categorical: Vec<usize> = (0..columns.len())
        .filter(|&i| matches!(columns[i].values, ColumnValues::Categorical { .. }))
        .collect();
    let mut association = Association::new(
        categorical
            .iter()
            .map(|&i| columns[i].name.clone())
            .collect(),
    );
    let pairs = all_pairs(categorical.len());
    let values: Vec<(Option<f64>, Option<f64>)> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let (a, b) = (&codes[categorical[i]], &codes[categorical[j]]);
            let levels = (a.levels, b.levels);
            (
                fidelity::cramers_v(&a.real, &b.real, levels),
                fidelity::cramers_v(&a.synthetic, &b.synthetic, levels),
            )
        })
        .collect();
    let mut scores = Vec::new();
    for (&pair, &(r, s)) in pairs.iter().zip(&values) {
        association.set(pair, r, s);
        if let (Some(r), Some(s)) = (r, s) {
            scores.push(1.0 - (r - s).abs());
        }
    }
    for i in 0..categorical.len() {
        association.set((i, i), Some(1.0), Some(1.0));
    }
    let scores = PairScores {
        mean: report::mean_of(scores.iter().copied().map(Some)),
        pairs: scores.len(),
    };
    (scores, association)
}

fn column_reports(
    columns: &[Column],
    codes: &[PairCodes<'_>],
    one_way: &OneWay,
) -> Vec<ColumnReport> {
    columns
        .par_iter()
        .zip(codes)
        .zip(&one_way.columns)
        .map(|((c, codes), (_, score))| {
            let real_counts = marginals::level_counts(&codes.real, codes.levels);
            let synthetic_counts = marginals::level_counts(&codes.synthetic, codes.levels);
            let chi_squared = marginals::chi_squared(&real_counts, &synthetic_counts);
            let (wasserstein, mismatch, distribution) = match &c.values {
                ColumnValues::Numeric(v) => {
                    let (real, synthetic) = (
                        marginals::sorted_finite(&v.real),
                        marginals::sorted_finite(&v.synthetic),
                    );
                    (
                        marginals::wasserstein_normalized(&real, &synthetic),
                        marginals::numeric_mismatch(&real, &synthetic),
                        marginals::numeric_distribution(
                            &real,
                            &synthetic,
                            v.real.len() - real.len(),
                            v.synthetic.len() - synthetic.len(),
                        ),
                    )
                }
                ColumnValues::Categorical { categories, .. } => (
                    None,
                    marginals::categorical_mismatch(&real_counts, &synthetic_counts),
                    marginals::categorical_distribution(
                        categories,
                        &real_counts,
                        &synthetic_counts,
                    ),
                ),
            };
            ColumnReport {
                name: c.name.clone(),
                kind: match c.values {
                    ColumnValues::Numeric(_) => column::ColumnKind::Numeric.name(),
                    ColumnValues::Categorical { .. } => column::ColumnKind::Categorical.name(),
                },
                score: *score,
                chi_squared,
                wasserstein,
                mismatch,
                distribution,
            }
        })
        .collect()
}

fn correlation(columns: &[Column], notes: &mut Vec<String>) -> (PairScores, Association) {
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
    let mut association = Association::new(numeric.iter().map(|(n, _)| (*n).to_owned()).collect());
    let pairs = all_pairs(numeric.len());
    // Pearson's r of each pair in the real and in the synthetic table.
    let values: Vec<(Option<f64>, Option<f64>)> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let (x, y) = (numeric[i].1, numeric[j].1);
            (
                fidelity::pearson(&x.real, &y.real),
                fidelity::pearson(&x.synthetic, &y.synthetic),
            )
        })
        .collect();
    let mut scored = Vec::new();
    for (&(i, j), &(r, s)) in pairs.iter().zip(&values) {
        association.set((i, j), r, s);
        if constant[i].is_some() || constant[j].is_some() {
            continue;
        }
        match (r, s) {
            (Some(r), Some(s)) => scored.push(fidelity::correlation_similarity(r, s)),
            _ => notes.push(format!(
                "correlation: pair (`{}`, `{}`) skipped, Pearson r is undefined on the rows where both are non-null",
                numeric[i].0, numeric[j].0
            )),
        }
    }
    for i in 0..numeric.len() {
        association.set((i, i), Some(1.0), Some(1.0));
    }
    let scores = PairScores {
        mean: report::mean_of(scored.iter().copied().map(Some)),
        pairs: scored.len(),
    };
    (scores, association)
}

#[cfg(test)]
mod tests;
