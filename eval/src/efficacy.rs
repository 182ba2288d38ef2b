//! ML efficacy: gradient-boosted trees and a linear model trained on the synthetic table and,
//! for reference, on the real one, all scored on the real held-out table. A binary target is
//! classified (AUC, accuracy, F1); a numeric target with more than two values is regressed (R^2).

use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;

use crate::EvalOptions;
use crate::column::{Column, ColumnValues};
use crate::error::{EvalError, TableRole};
use crate::linear::{self, Design, Feature};
use crate::report::{MlEfficacy, ModelScores, TaskScores};

/// Classes of a categorical target at most (one model per class).
const MAX_CLASSES: usize = 50;

/// Training rows of the linear model at most (a seeded sample beyond).
const LINEAR_ROWS: usize = 100_000;

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
    /// The table's rows kept, in order.
    rows: Vec<usize>,
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
    let matrix = tree_features(&keep, features, table);
    Split {
        features: matrix,
        labels,
        dropped: classes.len() - keep.len(),
        rows: keep,
    }
}

/// Column-major features of `keep` for the trees: numbers as they are, categories as their
/// codes, null (and infinities) as NaN, which forust treats as missing.
fn tree_features(keep: &[usize], features: &[&Column], table: TableRole) -> Vec<f64> {
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
    matrix
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

/// Gradient-boosted trees with the evaluation's settings.
fn booster(objective: ObjectiveType, options: &EvalOptions, seed: u64) -> GradientBooster {
    GradientBooster::default()
        .set_objective_type(objective)
        .set_iterations(options.trees)
        .set_learning_rate(options.learning_rate)
        .set_max_depth(options.max_depth)
        .set_seed(seed)
        .set_parallel(true)
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
        let mut model = booster(ObjectiveType::LogLoss, options, seed);
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

/// Held-out scores of a classifier from its log-odds (threshold 0).
fn score(labels: &[bool], log_odds: &[f64]) -> TaskScores {
    let predicted: Vec<bool> = log_odds.iter().map(|&s| s > 0.0).collect();
    TaskScores {
        auc: Some(roc_auc(labels, log_odds).unwrap_or(0.5)),
        accuracy: Some(accuracy(labels, &predicted)),
        f1: Some(f1(labels, &predicted)),
        r2: None,
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
    let features: Vec<&Column> = columns.iter().filter(|c| c.name != target).collect();
    if features.is_empty() {
        return Err(target_error(
            "the table has no other column to predict it from".to_owned(),
        ));
    }
    if let ColumnValues::Numeric(values) = &target_column.values
        && crate::fidelity::distinct_up_to(&values.real, 3) > 2
    {
        return regression(target_column, &features, options, seed, notes);
    }
    classification(target_column, &features, options, seed, notes)
}

fn classification(
    target_column: &Column,
    features: &[&Column],
    options: &EvalOptions,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<MlEfficacy, EvalError> {
    let target = target_column.name.as_str();
    let target_error = |reason: String| EvalError::Target {
        target: target.to_owned(),
        reason,
    };
    let classes = target_classes(target_column)?;

    // The classes of the real table, in key order of their labels.
    let mut counts: Vec<(u64, usize)> = Vec::new();
    for key in classes.real.iter().flatten() {
        if let Some((_, n)) = counts.iter_mut().find(|(k, _)| k == key) {
            *n += 1;
        } else if counts.len() <= MAX_CLASSES {
            counts.push((*key, 1));
        }
    }
    if counts.len() < 2 || counts.len() > MAX_CLASSES {
        return Err(target_error(format!(
            "needs 2 to {MAX_CLASSES} classes in the real table (or a numeric target to \
             regress), found {}",
            if counts.len() > MAX_CLASSES {
                format!("more than {MAX_CLASSES}")
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
    if counts.len() > 2 {
        let keys: Vec<u64> = counts.iter().map(|(k, _)| *k).collect();
        return multiclass(&classes, &keys, target, features, options, seed, notes);
    }
    // The rarer class is positive; on a tie, the later one (e.g. 1 over 0, "yes" over "no").
    let (positive, negative) = if counts[0].1 < counts[1].1 {
        (counts[0].0, counts[1].0)
    } else {
        (counts[1].0, counts[0].0)
    };

    let width = features.len();
    let real = split(&classes.real, positive, negative, features, TableRole::Real);
    let synthetic = split(
        &classes.synthetic,
        positive,
        negative,
        features,
        TableRole::Synthetic,
    );
    let test = split(&classes.test, positive, negative, features, TableRole::Test);
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
             models trained on it predict that class for every row and their AUC is 0.5"
                .to_owned(),
        );
    }

    let (on_synthetic, on_real) = rayon::join(
        || Classifier::train(&synthetic, width, options, seed, TableRole::Synthetic),
        || Classifier::train(&real, width, options, seed, TableRole::Real),
    );
    let gradient_boosting = ModelScores {
        synthetic: score(&test.labels, &on_synthetic?.scores(&test, width)),
        real: score(&test.labels, &on_real?.scores(&test, width)),
    };

    let linear_fit = |train: &Split, table| -> Option<TaskScores> {
        let single = train.labels.iter().all(|&l| l == train.labels[0]);
        let rows = linear_rows(&train.rows, seed);
        let labels: Vec<bool> = if rows.len() == train.rows.len() {
            train.labels.clone()
        } else {
            let position: std::collections::HashMap<usize, bool> = train
                .rows
                .iter()
                .copied()
                .zip(train.labels.iter().copied())
                .collect();
            rows.iter().map(|r| position[r]).collect()
        };
        let train_features = linear_features(features, table);
        let test_features = linear_features(features, TableRole::Test);
        let design = Design::fit(&train_features, &rows);
        let x = design.rows(&train_features, &rows);
        let log_odds = if single || labels.is_empty() {
            vec![
                if labels.first() == Some(&true) {
                    1.0
                } else {
                    -1.0
                };
                test.rows()
            ]
        } else {
            let w = linear::logistic(&x, design.width(), &labels)?;
            linear::predict(&design.rows(&test_features, &test.rows), design.width(), &w)
        };
        Some(score(&test.labels, &log_odds))
    };
    let linear = linear_model(
        linear_fit(&synthetic, TableRole::Synthetic),
        linear_fit(&real, TableRole::Real),
        [synthetic.rows.len(), real.rows.len()],
        "logistic regression",
        notes,
    );
    Ok(MlEfficacy {
        target: target.to_owned(),
        task: "binary".to_owned(),
        positive_class: Some((classes.label)(positive)),
        gradient_boosting,
        linear,
    })
}

/// A target with more than two classes: one-vs-rest models per class (trees and logistic
/// regression), the predicted class the one with the highest score; accuracy, macro F1 and
/// macro one-vs-rest AUC (over the classes the test table has with both outcomes).
fn multiclass(
    classes: &TargetClasses,
    keys: &[u64],
    target: &str,
    features: &[&Column],
    options: &EvalOptions,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<MlEfficacy, EvalError> {
    let width = features.len();
    // Rows whose class is one of the real classes, with the class's index.
    let indexed = |per_row: &[Option<u64>], table: TableRole| {
        let keep: Vec<usize> = (0..per_row.len())
            .filter(|&i| per_row[i].is_some_and(|c| keys.contains(&c)))
            .collect();
        let class: Vec<usize> = keep
            .iter()
            .map(|&i| {
                keys.iter()
                    .position(|k| Some(*k) == per_row[i])
                    .unwrap_or(0)
            })
            .collect();
        let dropped = per_row.len() - keep.len();
        (tree_features(&keep, features, table), class, keep, dropped)
    };
    let tables = [
        (TableRole::Real, indexed(&classes.real, TableRole::Real)),
        (
            TableRole::Synthetic,
            indexed(&classes.synthetic, TableRole::Synthetic),
        ),
        (TableRole::Test, indexed(&classes.test, TableRole::Test)),
    ];
    for (table, (_, _, _, dropped)) in &tables {
        if *dropped > 0 {
            notes.push(format!(
                "ml_efficacy: {dropped} rows of the {table} table were left out because their \
                 target is null or not a class of the real table"
            ));
        }
    }
    let [(_, real), (_, synthetic), (_, test)] = &tables;
    if test.1.is_empty() {
        return Err(EvalError::Target {
            target: target.to_owned(),
            reason: "the test table has no row of a real class".to_owned(),
        });
    }
    let one_vs_rest = |t: &(Vec<f64>, Vec<usize>, Vec<usize>, usize), k: usize| Split {
        features: t.0.clone(),
        labels: t.1.iter().map(|&c| c == k).collect(),
        rows: t.2.clone(),
        dropped: 0,
    };
    let truth = &test.1;
    let tests: Vec<Split> = (0..keys.len()).map(|k| one_vs_rest(test, k)).collect();

    // Class scores of the test rows (row-major), from models trained on `train`.
    let trees = |train: &(Vec<f64>, Vec<usize>, Vec<usize>, usize), table| {
        let mut scores = vec![vec![0.0; keys.len()]; truth.len()];
        for (k, test_k) in tests.iter().enumerate() {
            let model = Classifier::train(&one_vs_rest(train, k), width, options, seed, table)?;
            for (row, s) in scores.iter_mut().zip(model.scores(test_k, width)) {
                row[k] = s;
            }
        }
        Ok::<_, EvalError>(scores)
    };
    let (on_synthetic, on_real) = rayon::join(
        || trees(synthetic, TableRole::Synthetic),
        || trees(real, TableRole::Real),
    );
    let gradient_boosting = ModelScores {
        synthetic: multiclass_scores(truth, &on_synthetic?, keys.len()),
        real: multiclass_scores(truth, &on_real?, keys.len()),
    };

    let test_features = linear_features(features, TableRole::Test);
    let linear_fit = |train: &(Vec<f64>, Vec<usize>, Vec<usize>, usize), table| {
        let rows = linear_rows(&train.2, seed);
        let class_of: std::collections::HashMap<usize, usize> = train
            .2
            .iter()
            .copied()
            .zip(train.1.iter().copied())
            .collect();
        let train_features = linear_features(features, table);
        let design = Design::fit(&train_features, &rows);
        let x = design.rows(&train_features, &rows);
        let x_test = design.rows(&test_features, &test.2);
        let mut scores = vec![vec![0.0; keys.len()]; truth.len()];
        for k in 0..keys.len() {
            let labels: Vec<bool> = rows.iter().map(|r| class_of[r] == k).collect();
            let column = if labels
                .iter()
                .all(|&l| l == labels.first().copied().unwrap_or(false))
            {
                let constant = if labels.first() == Some(&true) {
                    1.0
                } else {
                    -1.0
                };
                vec![constant; truth.len()]
            } else {
                let w = linear::logistic(&x, design.width(), &labels)?;
                linear::predict(&x_test, design.width(), &w)
            };
            for (row, s) in scores.iter_mut().zip(column) {
                row[k] = s;
            }
        }
        Some(multiclass_scores(truth, &scores, keys.len()))
    };
    let linear = linear_model(
        linear_fit(synthetic, TableRole::Synthetic),
        linear_fit(real, TableRole::Real),
        [synthetic.2.len(), real.2.len()],
        "logistic regression",
        notes,
    );
    Ok(MlEfficacy {
        target: target.to_owned(),
        task: format!("multiclass ({} classes)", keys.len()),
        positive_class: None,
        gradient_boosting,
        linear,
    })
}

/// Accuracy, macro F1 and macro one-vs-rest AUC of class scores against the true classes.
fn multiclass_scores(truth: &[usize], scores: &[Vec<f64>], classes: usize) -> TaskScores {
    let predicted: Vec<usize> = scores
        .iter()
        .map(|row| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        })
        .collect();
    let right = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count();
    let mut f1s = Vec::with_capacity(classes);
    let mut aucs = Vec::with_capacity(classes);
    for k in 0..classes {
        let labels: Vec<bool> = truth.iter().map(|&t| t == k).collect();
        let hits: Vec<bool> = predicted.iter().map(|&p| p == k).collect();
        f1s.push(f1(&labels, &hits));
        let column: Vec<f64> = scores.iter().map(|row| row[k]).collect();
        if let Some(auc) = roc_auc(&labels, &column) {
            aucs.push(auc);
        }
    }
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    TaskScores {
        auc: mean(&aucs),
        accuracy: Some(right as f64 / truth.len().max(1) as f64),
        f1: mean(&f1s),
        r2: None,
    }
}

fn regression(
    target_column: &Column,
    features: &[&Column],
    options: &EvalOptions,
    seed: u64,
    notes: &mut Vec<String>,
) -> Result<MlEfficacy, EvalError> {
    let ColumnValues::Numeric(values) = &target_column.values else {
        unreachable!("regression is chosen for numeric targets only");
    };
    let target = target_column.name.as_str();
    let test_values = values
        .test
        .as_deref()
        .ok_or_else(|| no_test(target_column))?;
    let kept = |y: &[f64]| -> Vec<usize> { (0..y.len()).filter(|&i| y[i].is_finite()).collect() };
    let tables = [
        (TableRole::Real, &values.real[..]),
        (TableRole::Synthetic, &values.synthetic[..]),
        (TableRole::Test, test_values),
    ];
    let rows: Vec<Vec<usize>> = tables.iter().map(|(_, y)| kept(y)).collect();
    for ((table, y), rows) in tables.iter().zip(&rows) {
        let dropped = y.len() - rows.len();
        if dropped > 0 {
            notes.push(format!(
                "ml_efficacy: {dropped} rows of the {table} table were left out because their target is null"
            ));
        }
    }
    let (real_rows, synthetic_rows, test_rows) = (&rows[0], &rows[1], &rows[2]);
    if test_rows.len() < 2 {
        return Err(EvalError::Target {
            target: target.to_owned(),
            reason: "the test table has fewer than 2 rows with a target, so R^2 is undefined"
                .to_owned(),
        });
    }
    let truth: Vec<f64> = test_rows.iter().map(|&r| test_values[r]).collect();
    let width = features.len();
    let test_matrix = tree_features(test_rows, features, TableRole::Test);

    let trees = |train: &[usize], table: TableRole, y: &[f64]| -> Result<TaskScores, EvalError> {
        let targets: Vec<f64> = train.iter().map(|&r| y[r]).collect();
        let prediction = if train.is_empty() {
            vec![0.0; truth.len()]
        } else {
            let matrix = tree_features(train, features, table);
            let mut model = booster(ObjectiveType::SquaredLoss, options, seed);
            model
                .fit_unweighted(&Matrix::new(&matrix, train.len(), width), &targets, None)
                .map_err(|e| EvalError::Model {
                    table,
                    reason: e.to_string(),
                })?;
            model.predict(&Matrix::new(&test_matrix, truth.len(), width), true)
        };
        Ok(TaskScores {
            r2: Some(r_squared(&truth, &prediction)),
            ..TaskScores::default()
        })
    };
    let (on_synthetic, on_real) = rayon::join(
        || trees(synthetic_rows, TableRole::Synthetic, &values.synthetic),
        || trees(real_rows, TableRole::Real, &values.real),
    );
    let gradient_boosting = ModelScores {
        synthetic: on_synthetic?,
        real: on_real?,
    };

    let linear_fit = |train: &[usize], table: TableRole, y: &[f64]| -> Option<TaskScores> {
        let rows = linear_rows(train, seed);
        let train_features = linear_features(features, table);
        let design = Design::fit(&train_features, &rows);
        let x = design.rows(&train_features, &rows);
        let targets: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
        let w = linear::ridge(&x, design.width(), &targets)?;
        let test_features = linear_features(features, TableRole::Test);
        let prediction =
            linear::predict(&design.rows(&test_features, test_rows), design.width(), &w);
        Some(TaskScores {
            r2: Some(r_squared(&truth, &prediction)),
            ..TaskScores::default()
        })
    };
    let linear = linear_model(
        linear_fit(synthetic_rows, TableRole::Synthetic, &values.synthetic),
        linear_fit(real_rows, TableRole::Real, &values.real),
        [synthetic_rows.len(), real_rows.len()],
        "ridge regression",
        notes,
    );
    Ok(MlEfficacy {
        target: target.to_owned(),
        task: "regression".to_owned(),
        positive_class: None,
        gradient_boosting,
        linear,
    })
}

/// The linear model's scores when both fits worked; notes the sampling and any failure.
fn linear_model(
    synthetic: Option<TaskScores>,
    real: Option<TaskScores>,
    rows: [usize; 2],
    name: &str,
    notes: &mut Vec<String>,
) -> Option<ModelScores> {
    for (n, table) in rows.iter().zip(["synthetic", "real"]) {
        if *n > LINEAR_ROWS {
            notes.push(format!(
                "ml_efficacy: the {name} was trained on {LINEAR_ROWS} of the {n} {table} rows, \
                 a seeded sample"
            ));
        }
    }
    match (synthetic, real) {
        (Some(synthetic), Some(real)) => Some(ModelScores { synthetic, real }),
        _ => {
            notes.push(format!(
                "ml_efficacy: the {name} could not be fitted (a singular system); no linear scores"
            ));
            None
        }
    }
}

/// Up to [`LINEAR_ROWS`] of `rows`, a seeded sample in row order.
fn linear_rows(rows: &[usize], seed: u64) -> Vec<usize> {
    if rows.len() <= LINEAR_ROWS {
        return rows.to_vec();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0011_AEA2);
    let mut picked: Vec<usize> = sample(&mut rng, rows.len(), LINEAR_ROWS)
        .into_iter()
        .map(|i| rows[i])
        .collect();
    picked.sort_unstable();
    picked
}

/// The feature columns of one table for the linear model.
fn linear_features<'c>(features: &[&'c Column], table: TableRole) -> Vec<Feature<'c>> {
    features
        .iter()
        .map(|c| match &c.values {
            ColumnValues::Numeric(v) => {
                Feature::Numeric(pick(&v.real, &v.synthetic, v.test.as_deref(), table))
            }
            ColumnValues::Categorical { categories, codes } => Feature::Categorical {
                codes: pick(&codes.real, &codes.synthetic, codes.test.as_deref(), table),
                levels: categories.len(),
            },
        })
        .collect()
}

/// 1 - SS_res / SS_tot; 0 when the truth is constant and the prediction is not exact.
pub(crate) fn r_squared(truth: &[f64], prediction: &[f64]) -> f64 {
    let mean = truth.iter().sum::<f64>() / truth.len().max(1) as f64;
    let total: f64 = truth.iter().map(|y| (y - mean).powi(2)).sum();
    let residual: f64 = truth
        .iter()
        .zip(prediction)
        .map(|(y, p)| (y - p).powi(2))
        .sum();
    if total > 0.0 {
        1.0 - residual / total
    } else if residual == 0.0 {
        1.0
    } else {
        0.0
    }
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

    #[test]
    fn r_squared_by_hand() {
        // truth 1 2 3 (mean 2, SS_tot 2), prediction 1 2 4 (SS_res 1): 0.5.
        assert!((r_squared(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]) - 0.5).abs() < 1e-12);
        assert_eq!(r_squared(&[1.0, 2.0], &[1.0, 2.0]), 1.0);
        assert_eq!(r_squared(&[2.0, 2.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn multiclass_scores_by_hand() {
        // Three classes; rows 0..3 predicted right, row 3 (class 2) predicted as class 1.
        let truth = [0, 1, 2, 2];
        let scores = vec![
            vec![0.9, 0.1, 0.0],
            vec![0.1, 0.8, 0.1],
            vec![0.0, 0.2, 0.7],
            vec![0.1, 0.6, 0.3],
        ];
        let s = multiclass_scores(&truth, &scores, 3);
        assert_eq!(s.accuracy, Some(0.75));
        // F1: class 0 1, class 1 2/3 (tp 1, fp 1), class 2 2/3 (tp 1, fn 1).
        assert!((s.f1.expect("f1") - (1.0 + 2.0 / 3.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // One-vs-rest AUC: class 0 1, class 1 (pos row 1 scores 0.8 > 0.1, 0.2; < 0.6? no:
        // 0.8 > 0.6) 1, class 2 (pos 0.7, 0.3 against 0.0, 0.1) 1.
        assert_eq!(s.auc, Some(1.0));
    }
}
