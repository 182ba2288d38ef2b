//! ML efficacy: a gradient-boosted classifier trained on the synthetic table and, for
//! reference, on the real one, both scored on the real held-out table.

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

use crate::EvalOptions;
use crate::column::{Column, ColumnValues};
use crate::error::{EvalError, TableRole};
use crate::report::MlEfficacy;

/// The target as class keys per row: `None` for null, else a key that identifies the class.
struct TargetClasses {
    real: Vec<Option<u64>>,
    synthetic: Vec<Option<u64>>,
    test: Vec<Option<u64>>,
    label: Box<dyn Fn(u64) -> String>,
}

fn target_classes(target: &Column) -> Result<TargetClasses, EvalError> {
    match &target.values {
        ColumnValues::Categorical { categories, codes } => {
            let keys = |codes: &[u32]| -> Vec<Option<u64>> {
                codes
                    .iter()
                    .map(|&c| ((c as usize) < categories.len()).then_some(u64::from(c)))
                    .collect()
            };
            let test = codes.test.as_deref().ok_or_else(|| no_test(target))?;
            let categories = categories.clone();
            Ok(TargetClasses {
                real: keys(&codes.real),
                synthetic: keys(&codes.synthetic),
                test: keys(test),
                label: Box::new(move |k| categories.get(k as usize).cloned().unwrap_or_default()),
            })
        }
        ColumnValues::Numeric(values) => {
            let keys = |values: &[f64]| -> Vec<Option<u64>> {
                values
                    .iter()
                    .map(|v| (!v.is_nan()).then_some(v.to_bits()))
                    .collect()
            };
            let test = values.test.as_deref().ok_or_else(|| no_test(target))?;
            Ok(TargetClasses {
                real: keys(&values.real),
                synthetic: keys(&values.synthetic),
                test: keys(test),
                label: Box::new(|k| f64::from_bits(k).to_string()),
            })
        }
    }
}

fn no_test(target: &Column) -> EvalError {
    EvalError::Target {
        target: target.name.clone(),
        reason: "no test table was read".to_owned(),
    }
}

/// Rows of one table usable for a binary task: their feature matrix (column-major) and labels.
struct Split {
    features: Vec<f64>,
    labels: Vec<bool>,
    dropped: usize,
}

impl Split {
    fn rows(&self) -> usize {
        self.labels.len()
    }

    fn matrix(&self, columns: usize) -> Matrix<'_, f64> {
        Matrix::new(&self.features, self.rows(), columns)
    }
}

fn split(
    classes: &[Option<u64>],
    positive: u64,
    negative: u64,
    features: &[&Column],
    table: TableRole,
) -> Split {
    let keep: Vec<usize> = classes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == Some(positive) || **c == Some(negative))
        .map(|(i, _)| i)
        .collect();
    let labels = keep.iter().map(|&i| classes[i] == Some(positive)).collect();
    let mut matrix = Vec::with_capacity(keep.len() * features.len());
    for column in features {
        match &column.values {
            ColumnValues::Numeric(values) => {
                let values = pick(
                    &values.real,
                    &values.synthetic,
                    values.test.as_deref(),
                    table,
                );
                // forust treats NaN as missing; infinities would break its binning.
                matrix.extend(keep.iter().map(|&i| {
                    let v = values[i];
                    if v.is_finite() { v } else { f64::NAN }
                }));
            }
            ColumnValues::Categorical { categories, codes } => {
                let codes = pick(&codes.real, &codes.synthetic, codes.test.as_deref(), table);
                matrix.extend(keep.iter().map(|&i| {
                    let c = codes[i];
                    if (c as usize) < categories.len() {
                        f64::from(c)
                    } else {
                        f64::NAN
                    }
                }));
            }
        }
    }
    Split {
        features: matrix,
        labels,
        dropped: classes.len() - keep.len(),
    }
}

fn pick<'v, T>(
    real: &'v [T],
    synthetic: &'v [T],
    test: Option<&'v [T]>,
    table: TableRole,
) -> &'v [T] {
    match table {
        TableRole::Real => real,
        TableRole::Synthetic => synthetic,
        TableRole::Test => test.unwrap_or_default(),
    }
}

/// A trained classifier, or the constant answer when training saw one class only.
enum Classifier {
    Trees(Box<GradientBooster>),
    Constant(bool),
}

impl Classifier {
    fn train(
        train: &Split,
        columns: usize,
        options: &EvalOptions,
        seed: u64,
        table: TableRole,
    ) -> Result<Self, EvalError> {
        let positives = train.labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == train.rows() {
            return Ok(Classifier::Constant(positives > 0));
        }
        let y: Vec<f64> = train
            .labels
            .iter()
            .map(|&l| f64::from(u8::from(l)))
            .collect();
        let mut model = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(options.trees)
            .set_learning_rate(options.learning_rate)
            .set_max_depth(options.max_depth)
            .set_seed(seed)
            .set_parallel(true);
        model
            .fit_unweighted(&train.matrix(columns), &y, None)
            .map_err(|e| EvalError::Model {
                table,
                reason: e.to_string(),
            })?;
        Ok(Classifier::Trees(Box::new(model)))
    }

    /// Log-odds of the positive class for every row of `test`.
    fn scores(&self, test: &Split, columns: usize) -> Vec<f64> {
        match self {
            Classifier::Trees(model) => model.predict(&test.matrix(columns), true),
            Classifier::Constant(positive) => {
                let score = if *positive { 1.0 } else { -1.0 };
                vec![score; test.rows()]
            }
        }
    }
}

/// Held-out scores of one classifier.
struct Scores {
    auc: f64,
    accuracy: f64,
    f1: f64,
}

fn score(labels: &[bool], log_odds: &[f64]) -> Scores {
    let predicted: Vec<bool> = log_odds.iter().map(|&s| s > 0.0).collect();
    Scores {
        auc: roc_auc(labels, log_odds).unwrap_or(0.5),
        accuracy: accuracy(labels, &predicted),
        f1: f1(labels, &predicted),
    }
}

/// ML efficacy of `target`, with `columns` holding every column of the real table.
pub(crate) fn ml_efficacy(
    columns: &[Column],
    target: &str,
    options: &EvalOptions,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<MlEfficacy, EvalError> {
    let target_error = |reason: String| EvalError::Target {
        target: target.to_owned(),
        reason,
    };
    let target_column = columns
        .iter()
        .find(|c| c.name == target)
        .ok_or_else(|| target_error("not a column of the real table".to_owned()))?;
    let classes = target_classes(target_column)?;

    // The two classes of the real table, in key order of their labels.
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for key in classes.real.iter().flatten() {
        if let Some((_, n)) = counts.iter_mut().find(|(k, _)| k == key) {
            *n += 1;
        } else if counts.len() < 3 {
            counts.push((*key, 1));
        }
    }
    if counts.len() != 2 {
        return Err(target_error(format!(
            "needs exactly 2 classes in the real table, found {}",
            if counts.len() > 2 {
                "more than 2".to_owned()
            } else {
                counts.len().to_string()
            }
        )));
    }
    let order_key = |k: u64| match target_column.values {
        ColumnValues::Numeric(_) => f64::from_bits(k),
        ColumnValues::Categorical { .. } => k as f64,
    };
    counts.sort_by(|a, b| order_key(a.0).total_cmp(&order_key(b.0)));
    // The rarer class is positive; on a tie, the later one (e.g. 1 over 0, "yes" over "no").
    let (positive, negative) = if counts[0].1 < counts[1].1 {
        (counts[0].0, counts[1].0)
    } else {
        (counts[1].0, counts[0].0)
    };

    let features: Vec<&Column> = columns.iter().filter(|c| c.name != target).collect();
    if features.is_empty() {
        return Err(target_error(
            "the table has no other column to predict it from".to_owned(),
        ));
    }
    let width = features.len();
    let real = split(
        &classes.real,
        positive,
        negative,
        &features,
        TableRole::Real,
    );
    let synthetic = split(
        &classes.synthetic,
        positive,
        negative,
        &features,
        TableRole::Synthetic,
    );
    let test = split(
        &classes.test,
        positive,
        negative,
        &features,
        TableRole::Test,
    );
    let test_positives = test.labels.iter().filter(|&&l| l).count();
    if test_positives == 0 || test_positives == test.rows() {
        return Err(target_error(
            "the test table holds only one of the two real classes, so AUC is undefined".to_owned(),
        ));
    }
    for (rows, table) in [
        (&real, TableRole::Real),
        (&synthetic, TableRole::Synthetic),
        (&test, TableRole::Test),
    ] {
        if rows.dropped > 0 {
            notes.push(format!(
                "ml_efficacy: {} rows of the {table} table were left out because their target is null or neither class",
                rows.dropped
            ));
        }
    }
    let synthetic_positives = synthetic.labels.iter().filter(|&&l| l).count();
    if synthetic_positives == 0 || synthetic_positives == synthetic.rows() {
        notes.push(
            "ml_efficacy: the synthetic target has a single class (or no usable row), so the \
             synthetic-trained model predicts that class for every row and its AUC is 0.5"
                .to_owned(),
        );
    }

    let (on_synthetic, on_real) = rayon::join(
        || Classifier::train(&synthetic, width, options, seed, TableRole::Synthetic),
        || Classifier::train(&real, width, options, seed, TableRole::Real),
    );
    let synthetic_scores = score(&test.labels, &on_synthetic?.scores(&test, width));
    let real_scores = score(&test.labels, &on_real?.scores(&test, width));

    Ok(MlEfficacy {
        target: target.to_owned(),
        task: "binary".to_owned(),
        positive_class: (classes.label)(positive),
        auc_synthetic: synthetic_scores.auc,
        auc_real: real_scores.auc,
        accuracy_synthetic: synthetic_scores.accuracy,
        f1_synthetic: synthetic_scores.f1,
        accuracy_real: real_scores.accuracy,
        f1_real: real_scores.f1,
    })
}

/// Area under the ROC curve from ranks (Mann–Whitney U), tied scores sharing their mean
/// rank. `None` when either class is absent.
pub(crate) fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        // Ranks start + 1 ..= end share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += mean_rank * tied_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Share of rows predicted right.
pub(crate) fn accuracy(labels: &[bool], predicted: &[bool]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let right = labels.iter().zip(predicted).filter(|(l, p)| l == p).count();
    right as f64 / labels.len() as f64
}

/// F1 of the positive class; 0 when there is no positive, predicted or true.
pub(crate) fn f1(labels: &[bool], predicted: &[bool]) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0usize, 0usize, 0usize);
    for (&l, &p) in labels.iter().zip(predicted) {
        match (l, p) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fneg += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fneg;
    if denominator == 0 {
        0.0
    } else {
        (2 * tp) as f64 / denominator as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_reversed_and_tied_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(roc_auc(&labels, &[0.1, 0.2, 0.8, 0.9]), Some(1.0));
        assert_eq!(roc_auc(&labels, &[0.9, 0.8, 0.2, 0.1]), Some(0.0));
        assert_eq!(roc_auc(&labels, &[0.5; 4]), Some(0.5));
        // One positive ties one negative: pairs (p, n) ordered right 3 times, tied once
        // (counting 1/2): (3 + 0.5) / 4.
        assert_eq!(roc_auc(&labels, &[0.1, 0.7, 0.7, 0.9]), Some(0.875));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn accuracy_and_f1_by_hand() {
        let labels = [true, true, false, false, true];
        let predicted = [true, false, true, false, true];
        // tp 2, fp 1, fn 1: f1 = 4 / 6; right 3 of 5.
        assert!((accuracy(&labels, &predicted) - 0.6).abs() < 1e-12);
        assert!((f1(&labels, &predicted) - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(f1(&[false], &[false]), 0.0);
    }
}
