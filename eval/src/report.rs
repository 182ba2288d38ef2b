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
    /// Utility: classifiers trained on synthetic and on real data, scored on the test
    /// table; `None` without a test table and a target.
    pub ml_efficacy: Option<MlEfficacy>,
    /// Distances to the real rows, new and copied rows.
    pub privacy: Option<Privacy>,
    /// Conventions and anything left out, in words.
    pub notes: Vec<String>,
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

/// Binary-classification utility of the synthetic table.
#[derive(serde::Serialize, Debug, Clone)]
pub struct MlEfficacy {
    /// The target column.
    pub target: String,
    /// Always `binary`.
    pub task: String,
    /// The less frequent class of the real table, as text.
    pub positive_class: String,
    /// ROC AUC on the test table of the model trained on the synthetic table.
    pub auc_synthetic: f64,
    /// ROC AUC on the test table of the model trained on the real table: the reference.
    pub auc_real: f64,
    /// Accuracy at probability threshold 0.5, model trained on synthetic data.
    pub accuracy_synthetic: f64,
    /// F1 of the positive class at threshold 0.5, model trained on synthetic data.
    pub f1_synthetic: f64,
    /// Accuracy at threshold 0.5, model trained on real data.
    pub accuracy_real: f64,
    /// F1 of the positive class at threshold 0.5, model trained on real data.
    pub f1_real: f64,
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
