//! The evaluation report, serialised as JSON by the binary.

use serde::ser::{SerializeMap, Serializer};

/// Fidelity and utility of a synthetic table against the real one.
#[derive(serde::Serialize, Debug, Clone)]
pub struct EvalReport {
    /// Rows of the real table.
    pub rows_real: usize,
    /// Rows of the synthetic table.
    pub rows_synthetic: usize,
    /// Single-column fidelity (KSComplement / TVComplement).
    pub one_way: OneWay,
    /// Column-pair fidelity (ContingencySimilarity over every pair).
    pub two_way: PairScores,
    /// The same with SDMetrics' equal-width bins, when `two_way` used another binning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub two_way_equal_width: Option<PairScores>,
    /// Correlation fidelity (CorrelationSimilarity over pairs of numeric columns).
    pub correlation: PairScores,
    /// Association fidelity of categorical pairs: 1 - |V_real - V_synthetic| of Cramér's V.
    pub cramers_v: PairScores,
    /// Mean chi-squared p-values over the columns, in both conventions.
    pub chi_squared: ChiSquaredMeans,
    /// Mean normalised Wasserstein distance over the numeric columns (lower is better).
    pub wasserstein: Option<f64>,
    /// Mean data mismatch over the columns (HARMONIC): lower is better.
    pub mismatch: Mismatch,
    /// Every column of the real table: its scores and its real and synthetic shares.
    pub columns: Vec<ColumnReport>,
    /// Pair matrices for the heatmaps, over the columns in `columns`' order.
    pub matrices: Matrices,
    /// Utility: classifiers trained on synthetic and on real data, scored on the test
    /// table; `None` without a test table and a target.
    pub ml_efficacy: Option<MlEfficacy>,
    /// Distances to the real rows, new and copied rows.
    pub privacy: Option<Privacy>,
    /// Amalgam's LLM judge: scores of synthetic and held-out real records (set by the caller,
    /// which runs the model; `evaluate` leaves it `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realism: Option<Realism>,
    /// HARMONIC's DLT: the generator model's perplexity on real and synthetic records (set by
    /// the caller).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlt: Option<Dlt>,
    /// The privacy guarantee the synthetic data was released under, when known (the caller
    /// reads it from the run's manifest; `evaluate` leaves it `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
    /// Conventions and anything left out, in words.
    pub notes: Vec<String>,
}

/// Realism scores of an LLM judge (Amalgam): each record scored 1..=5 against real reference
/// records.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Realism {
    /// The judge model.
    pub model: String,
    /// Real training records shown with each candidate (3, or fewer where a prompt would not
    /// fit the judge's context: the fewest any prompt kept).
    pub references: usize,
    /// Scores of synthetic records.
    pub synthetic: JudgeScores,
    /// Scores of held-out real records: what real data scores.
    pub real: JudgeScores,
    /// `real.mean - synthetic.mean` (about 0 is good).
    pub gap: f64,
    /// `real.expected_mean - synthetic.expected_mean`: the same on expected scores.
    pub expected_gap: f64,
}

/// Judge scores of a set of records.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct JudgeScores {
    /// Records scored.
    pub records: usize,
    /// Mean of the most likely scores.
    pub mean: f64,
    /// Mean of the expected scores (each record's score averaged over the judge's
    /// distribution on 1..=5): finer than `mean` when the judge is unsure.
    pub expected_mean: f64,
    /// Records per most likely score 1..=5.
    pub histogram: [usize; 5],
}

impl JudgeScores {
    /// The histogram and means of most likely scores in 1..=5 and their expected scores
    /// (pairs with a score outside 1..=5 are ignored).
    pub fn of(scores: &[u8], expected: &[f64]) -> JudgeScores {
        let mut histogram = [0usize; 5];
        let mut expected_sum = 0.0;
        for (&s, &e) in scores.iter().zip(expected) {
            if (1..=5).contains(&s) {
                histogram[usize::from(s) - 1] += 1;
                expected_sum += e;
            }
        }
        let records: usize = histogram.iter().sum();
        let total: usize = histogram.iter().enumerate().map(|(i, n)| (i + 1) * n).sum();
        let per = |sum: f64| {
            if records == 0 {
                0.0
            } else {
                sum / records as f64
            }
        };
        JudgeScores {
            records,
            mean: per(total as f64),
            expected_mean: per(expected_sum),
            histogram,
        }
    }
}

/// HARMONIC's DLT: the generator model's median perplexity on records of each table. Lower
/// perplexity on training than on held-out records suggests memorisation; much lower on
/// synthetic records shows text in the model's own style.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Dlt {
    /// The generator model.
    pub model: String,
    /// Records of each table scored (at most).
    pub records: usize,
    /// Median perplexity on real training records.
    pub train: f64,
    /// Median perplexity on held-out real records, with a test table.
    pub holdout: Option<f64>,
    /// Median perplexity on synthetic records.
    pub synthetic: f64,
}

/// The privacy guarantee of a synthetic run.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Guarantee {
    /// `dp` (differentially private fit) or `none`.
    pub mode: String,
    /// Total epsilon spent under `dp`.
    pub epsilon: Option<f64>,
    /// Total delta spent under `dp`.
    pub delta: Option<f64>,
    /// Caveats, e.g. that real exemplars were shown to an LLM.
    pub notes: Vec<String>,
}

/// One column's comparison.
#[derive(serde::Serialize, Debug, Clone)]
pub struct ColumnReport {
    /// The column's name.
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// KSComplement (numeric) or TVComplement (categorical), as in `one_way`.
    pub score: Option<f64>,
    /// Chi-squared tests over the column's categories (numeric: its 2-way bins), null a level.
    pub chi_squared: Option<ChiSquared>,
    /// Wasserstein distance over the real range (numeric columns).
    pub wasserstein: Option<f64>,
    /// Categories or ranges missed and invented.
    pub mismatch: Mismatch,
    /// Shares of the real and synthetic rows per category or bin, for the report's charts.
    pub distribution: Distribution,
}

/// A chi-squared test of one column in two conventions.
#[derive(serde::Serialize, Debug, Clone, PartialEq)]
pub struct ChiSquared {
    /// SDMetrics' CSTest: scipy `chisquare` of synthetic against real *shares*, the
    /// convention behind Amalgam's "average chi-squared p"; lenient (the statistic ignores
    /// the row count, so it almost never rejects).
    pub p_proportions: f64,
    /// Pearson's test of homogeneity on the 2 x k table of counts (no continuity
    /// correction): strict, rejects any visible difference at large row counts.
    pub p_counts: f64,
    /// The count test's statistic.
    pub statistic: f64,
    /// The count test's degrees of freedom (occupied levels - 1).
    pub dof: usize,
}

/// Mean chi-squared p-values over the columns with a test.
#[derive(serde::Serialize, Debug, Clone)]
pub struct ChiSquaredMeans {
    /// Mean of `p_proportions` (lenient convention).
    pub p_proportions: Option<f64>,
    /// Mean of `p_counts` (count-based test).
    pub p_counts: Option<f64>,
    /// Columns tested.
    pub columns: usize,
}

/// HARMONIC's data mismatch: what the synthetic column misses or invents.
#[derive(serde::Serialize, Debug, Clone, Default)]
pub struct Mismatch {
    /// Share of the real categories (numeric: occupied real bins of 20 equal-width bins)
    /// absent from the synthetic column.
    pub missed: f64,
    /// Share of synthetic rows with a category the real column lacks (numeric: values
    /// outside the real range).
    pub invented: f64,
}

/// Shares of rows per category or bin, for a chart.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Distribution {
    /// Category names (the most frequent real ones, then `other (n more)`, then `(null)`),
    /// or the lower edges of 20 equal-width bins over both tables' range.
    pub labels: Vec<String>,
    /// Share of real rows per label.
    pub real: Vec<f64>,
    /// Share of synthetic rows per label.
    pub synthetic: Vec<f64>,
}

/// Square matrices over columns; `None` where undefined.
pub type Matrix = Vec<Vec<Option<f64>>>;

/// The pair matrices the report draws.
#[derive(serde::Serialize, Debug, Clone)]
pub struct Matrices {
    /// ContingencySimilarity of every pair over all columns (the 1-way score on the diagonal).
    pub two_way: Matrix,
    /// The numeric columns of the Pearson matrices.
    pub numeric: Vec<String>,
    /// Pearson's r between numeric columns in the real table.
    pub pearson_real: Matrix,
    /// The same in the synthetic table.
    pub pearson_synthetic: Matrix,
    /// The categorical columns of the Cramér's V matrices.
    pub categorical: Vec<String>,
    /// Cramér's V between categorical columns in the real table.
    pub cramers_v_real: Matrix,
    /// The same in the synthetic table.
    pub cramers_v_synthetic: Matrix,
}

/// Single-column scores.
#[derive(serde::Serialize, Debug, Clone)]
pub struct OneWay {
    /// Mean over the columns with a score; `None` when no column has one.
    pub mean: Option<f64>,
    /// Each column of the real table in its order, with its score (`None` where undefined),
    /// serialised as a JSON object.
    #[serde(serialize_with = "as_object")]
    pub columns: Vec<(String, Option<f64>)>,
}

/// The mean of a pair metric and how many pairs it covers.
#[derive(serde::Serialize, Debug, Clone)]
pub struct PairScores {
    /// Mean over the scored pairs; `None` when no pair was scored.
    pub mean: Option<f64>,
    /// Pairs scored.
    pub pairs: usize,
}

/// Utility of the synthetic table: models trained on it and, for reference, on the real
/// table, scored on the real held-out table.
#[derive(serde::Serialize, Debug, Clone)]
pub struct MlEfficacy {
    /// The target column.
    pub target: String,
    /// `binary` (two classes) or `regression` (a numeric target with more than two values).
    pub task: String,
    /// The less frequent class of the real table, as text (binary tasks).
    pub positive_class: Option<String>,
    /// Gradient-boosted trees (forust).
    pub gradient_boosting: ModelScores,
    /// A linear model: L2 logistic regression (binary) or ridge regression; `None` when its
    /// fit failed (the notes say why).
    pub linear: Option<ModelScores>,
}

/// One kind of model trained on each table.
#[derive(serde::Serialize, Debug, Clone)]
pub struct ModelScores {
    /// Trained on the synthetic table.
    pub synthetic: TaskScores,
    /// Trained on the real table: the reference.
    pub real: TaskScores,
}

/// Held-out scores of one trained model: AUC, accuracy and F1 (positive class, threshold 0.5)
/// for a binary task, R^2 for regression.
#[derive(serde::Serialize, Debug, Clone, Default)]
pub struct TaskScores {
    /// ROC AUC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    /// Share of rows predicted right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// F1 of the positive class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Coefficient of determination, 1 - SS_res / SS_tot on the test rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r2: Option<f64>,
}

impl TaskScores {
    /// The task's headline score: AUC, else R^2.
    pub fn headline(&self) -> Option<f64> {
        self.auc.or(self.r2)
    }
}

/// How close the synthetic rows are to the real training rows (SDMetrics' definitions).
#[derive(serde::Serialize, Debug, Clone)]
pub struct Privacy {
    /// Median distance of a synthetic row to its closest training row (Gower, 0..=1).
    pub dcr_median: f64,
    /// 5th percentile of the same: how close the closest synthetic rows come.
    pub dcr_p5: f64,
    /// Median DCR of held-out real rows to the training rows: what unseen real rows score.
    pub holdout_dcr_median: Option<f64>,
    /// 5th percentile of the same.
    pub holdout_dcr_p5: Option<f64>,
    /// Share of synthetic rows closer to the training rows than to as many held-out rows
    /// (about 0.5 is good; SDMetrics' DCROverfittingProtection is `min(1, 2 (1 - share))`).
    pub closer_to_training: Option<f64>,
    /// Share of synthetic rows that match no training row (SDMetrics' NewRowSynthesis).
    pub new_row_synthesis: f64,
    /// Share of synthetic rows identical to a training row, over every row.
    pub exact_copies: f64,
    /// Synthetic rows in the distance sample.
    pub rows_sampled: usize,
}

fn as_object<S: Serializer>(
    columns: &[(String, Option<f64>)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(columns.len()))?;
    for (name, score) in columns {
        map.serialize_entry(name, score)?;
    }
    map.end()
}

/// Mean of the defined scores.
pub(crate) fn mean_of(scores: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = scores
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(sum, n), s| (sum + s, n + 1));
    (n > 0).then(|| sum / n as f64)
}
