//! Tests of `evaluate` on small Arrow tables.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, DictionaryArray, Float64Array, Int32Array, Int64Array,
    StringArray, TimestampSecondArray,
};
use arrow::datatypes::Int8Type;
use arrow::record_batch::RecordBatch;

use super::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("valid batch")
}

fn ints(v: &[i64]) -> ArrayRef {
    Arc::new(Int64Array::from(v.to_vec()))
}

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn input<'a>(real: &'a [RecordBatch], synthetic: &'a [RecordBatch]) -> EvalInput<'a> {
    EvalInput {
        real,
        synthetic,
        test: None,
        target: None,
        seed: 7,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn score(report: &EvalReport, column: &str) -> Option<f64> {
    report
        .one_way
        .columns
        .iter()
        .find(|(name, _)| name == column)
        .and_then(|(_, s)| *s)
}

/// A table with every column kind, nulls included.
fn mixed_table() -> RecordBatch {
    batch(vec![
        ("age", ints(&[23, 35, 35, 41, 52, 67, 29, 44])),
        (
            "income",
            Arc::new(Float64Array::from(vec![
                Some(1.5),
                Some(2.5),
                None,
                Some(4.0),
                Some(3.0),
                Some(9.0),
                Some(2.0),
                Some(5.5),
            ])) as ArrayRef,
        ),
        (
            "city",
            strs(&[
                Some("oslo"),
                Some("rome"),
                None,
                Some("oslo"),
                Some("lima"),
                Some("rome"),
                Some("oslo"),
                Some("lima"),
            ]),
        ),
        (
            "smoker",
            Arc::new(BooleanArray::from(vec![
                true, false, false, true, false, false, true, false,
            ])) as ArrayRef,
        ),
        (
            "born",
            Arc::new(Date32Array::from(vec![
                100, 2000, 3000, 4000, 5000, 6000, 7000, 8000,
            ])) as ArrayRef,
        ),
    ])
}

#[test]
fn identical_tables_score_one() -> Result<(), EvalError> {
    let table = [mixed_table()];
    let report = evaluate(&input(&table, &table))?;
    assert_eq!(report.rows_real, 8);
    assert_eq!(report.one_way.columns.len(), 5);
    for (name, s) in &report.one_way.columns {
        assert_eq!(*s, Some(1.0), "{name}");
    }
    assert_eq!(report.one_way.mean, Some(1.0));
    assert_eq!(report.two_way.pairs, 10);
    assert!(close(report.two_way.mean.expect("pairs"), 1.0));
    // age, income, born are numeric: 3 pairs.
    assert_eq!(report.correlation.pairs, 3);
    assert!(close(report.correlation.mean.expect("pairs"), 1.0));
    assert!(report.ml_efficacy.is_none());
    Ok(())
}

#[test]
fn types_are_compared_by_value() -> Result<(), EvalError> {
    let real = [mixed_table()];
    // The same values with other types of the same kind, split over two batches.
    let whole = mixed_table();
    let retyped = |b: &RecordBatch| -> RecordBatch {
        let age =
            arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Int32).expect("cast");
        let city = arrow::compute::cast(
            b.column(2),
            &arrow::datatypes::DataType::Dictionary(
                Box::new(arrow::datatypes::DataType::Int8),
                Box::new(arrow::datatypes::DataType::Utf8),
            ),
        )
        .expect("cast");
        let born_seconds: Vec<i64> = b
            .column(4)
            .as_any()
            .downcast_ref::<Date32Array>()
            .expect("dates")
            .values()
            .iter()
            .map(|d| i64::from(*d) * 86_400)
            .collect();
        batch(vec![
            ("age", age),
            ("income", b.column(1).clone()),
            ("city", city),
            ("smoker", b.column(3).clone()),
            (
                "born",
                Arc::new(TimestampSecondArray::from(born_seconds)) as ArrayRef,
            ),
        ])
    };
    let synthetic = [retyped(&whole.slice(0, 3)), retyped(&whole.slice(3, 5))];
    let report = evaluate(&input(&real, &synthetic))?;
    assert_eq!(report.rows_synthetic, 8);
    assert_eq!(report.one_way.mean, Some(1.0));
    assert!(close(report.two_way.mean.expect("pairs"), 1.0));
    assert!(close(report.correlation.mean.expect("pairs"), 1.0));
    Ok(())
}

#[test]
fn small_example_by_hand() -> Result<(), EvalError> {
    // x: real 0 2 8 10, synthetic -3 2 10 12. Sorted CDFs differ by at most 1/4
    // (at -3, 8 and 10): KSComplement 0.75.
    // c: real a a b b (1/2, 1/2), synthetic a b b b (1/4, 3/4): TV 1/4, TVComplement 0.75.
    // 2-way: real x range 0..10 gives interior edges 1..9; bins (edges <= x) are
    // real 0 2 8 9, synthetic 0 2 9 9 (-3 and 12 land in the outer bins).
    // Real cells (0,a) (2,a) (8,b) (9,b) 1/4 each; synthetic (2,a) 1/4, (9,b) 1/2, (0,b) 1/4.
    // |diffs| .25 + 0 + .25 + .25 + .25 = 1, so similarity 1 - 1/2 = 0.5.
    let real = [batch(vec![
        ("x", ints(&[0, 2, 8, 10])),
        ("c", strs(&[Some("a"), Some("a"), Some("b"), Some("b")])),
    ])];
    let synthetic = [batch(vec![
        ("x", ints(&[2, 10, 12, -3])),
        ("c", strs(&[Some("a"), Some("b"), Some("b"), Some("b")])),
    ])];
    let report = evaluate(&input(&real, &synthetic))?;
    assert!(close(score(&report, "x").expect("x"), 0.75));
    assert!(close(score(&report, "c").expect("c"), 0.75));
    assert!(close(report.one_way.mean.expect("mean"), 0.75));
    assert_eq!(report.two_way.pairs, 1);
    assert!(close(report.two_way.mean.expect("mean"), 0.5));
    assert_eq!(report.correlation.pairs, 0);
    assert_eq!(report.correlation.mean, None);

    // Pearson: real x 1 2 3 / y 1 3 2 gives r = 1/2 (sxy 1, sxx = syy = 2);
    // synthetic y = x gives r = 1; similarity 1 - |1/2 - 1| / 2 = 0.75.
    let real = [batch(vec![
        ("x", ints(&[1, 2, 3])),
        ("y", ints(&[1, 3, 2])),
    ])];
    let synthetic = [batch(vec![
        ("x", ints(&[1, 2, 3])),
        ("y", ints(&[1, 2, 3])),
    ])];
    let report = evaluate(&input(&real, &synthetic))?;
    assert_eq!(report.correlation.pairs, 1);
    assert!(close(report.correlation.mean.expect("mean"), 0.75));
    Ok(())
}

#[test]
fn nulls_are_a_category_in_pairs_and_dropped_in_single_columns() -> Result<(), EvalError> {
    // c: real a, null; synthetic a, a. TVComplement drops the null: 1.0.
    // Pairs with k (all "k"): real cells (a,k) (null,k) 1/2 each; synthetic (a,k) 1:
    // |1/2 - 1| + 1/2 = 1, similarity 0.5.
    let real = [batch(vec![
        ("c", strs(&[Some("a"), None])),
        ("k", strs(&[Some("k"), Some("k")])),
    ])];
    let synthetic = [batch(vec![
        ("c", strs(&[Some("a"), Some("a")])),
        ("k", strs(&[Some("k"), Some("k")])),
    ])];
    let report = evaluate(&input(&real, &synthetic))?;
    assert_eq!(score(&report, "c"), Some(1.0));
    assert!(close(report.two_way.mean.expect("mean"), 0.5));
    Ok(())
}

#[test]
fn constant_columns_are_left_out_of_correlation() -> Result<(), EvalError> {
    let real = [batch(vec![
        ("x", ints(&[1, 2, 3])),
        ("y", ints(&[1, 3, 2])),
        ("z", ints(&[5, 6, 7])),
    ])];
    let synthetic = [batch(vec![
        ("x", ints(&[1, 2, 3])),
        ("y", ints(&[1, 3, 2])),
        ("z", ints(&[4, 4, 4])),
    ])];
    let report = evaluate(&input(&real, &synthetic))?;
    assert_eq!(report.correlation.pairs, 1);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("`z` is constant") && n.contains("synthetic"))
    );
    Ok(())
}

#[test]
fn missing_column_is_named() {
    let real = [batch(vec![("x", ints(&[1, 2])), ("y", ints(&[1, 2]))])];
    let synthetic = [batch(vec![("x", ints(&[1, 2]))])];
    match evaluate(&input(&real, &synthetic)) {
        Err(EvalError::MissingColumn { column, table }) => {
            assert_eq!(column, "y");
            assert_eq!(table, TableRole::Synthetic);
        }
        other => panic!("expected MissingColumn, got {other:?}"),
    }
}

#[test]
fn kind_mismatch_is_named() {
    let real = [batch(vec![("x", ints(&[1, 2]))])];
    let synthetic = [batch(vec![("x", strs(&[Some("1"), Some("2")]))])];
    match evaluate(&input(&real, &synthetic)) {
        Err(EvalError::TypeMismatch {
            column,
            table,
            expected,
            ..
        }) => {
            assert_eq!(column, "x");
            assert_eq!(table, TableRole::Synthetic);
            assert_eq!(expected, "numeric");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
}

#[test]
fn empty_tables_are_refused() {
    let real = [batch(vec![("x", ints(&[1, 2]))])];
    let empty = [batch(vec![("x", ints(&[]))])];
    assert!(matches!(
        evaluate(&input(&real, &empty)),
        Err(EvalError::Empty {
            table: TableRole::Synthetic
        })
    ));
    assert!(matches!(
        evaluate(&input(&empty, &real)),
        Err(EvalError::Empty {
            table: TableRole::Real
        })
    ));
}

/// Uniform draws in [0, 1) from a fixed-seed LCG, so the tests need no RNG crate.
fn uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        })
        .collect()
}

/// `n` rows where `label` is "yes" exactly when `signal > 0.7`; `noise` and `colour`
/// carry no information.
fn classification_table(seed: u64, n: usize) -> RecordBatch {
    let signal = uniforms(seed, n);
    let noise = uniforms(seed + 1, n);
    let colours = ["red", "green", "blue"];
    let colour: Vec<Option<&str>> = uniforms(seed + 2, n)
        .iter()
        .map(|u| Some(colours[(u * 3.0) as usize % 3]))
        .collect();
    let label: Vec<Option<&str>> = signal
        .iter()
        .map(|&s| Some(if s > 0.7 { "yes" } else { "no" }))
        .collect();
    batch(vec![
        ("signal", Arc::new(Float64Array::from(signal)) as ArrayRef),
        ("noise", Arc::new(Float64Array::from(noise)) as ArrayRef),
        ("colour", strs(&colour)),
        ("label", strs(&label)),
    ])
}

#[test]
fn ml_efficacy_learns_a_deterministic_target() -> Result<(), EvalError> {
    let real = [classification_table(1, 600)];
    let synthetic = [classification_table(2, 600)];
    let test = [classification_table(3, 400)];
    let input = EvalInput {
        real: &real,
        synthetic: &synthetic,
        test: Some(&test),
        target: Some("label"),
        seed: 11,
    };
    let report = evaluate(&input)?;
    let ml = report.ml_efficacy.clone().expect("ml efficacy");
    assert_eq!(ml.target, "label");
    assert_eq!(ml.task, "binary");
    assert_eq!(ml.positive_class.as_deref(), Some("yes"));
    let auc = |t: &TaskScores| t.auc.expect("auc");
    assert!(auc(&ml.gradient_boosting.synthetic) > 0.95, "{ml:?}");
    assert!(auc(&ml.gradient_boosting.real) > 0.95, "{ml:?}");
    let linear = ml.linear.as_ref().expect("linear model");
    assert!(
        auc(&linear.synthetic) > 0.9 && auc(&linear.real) > 0.9,
        "{ml:?}"
    );
    assert_eq!(ml.gradient_boosting.real.r2, None);
    assert!(
        ml.gradient_boosting.synthetic.accuracy.expect("accuracy") > 0.9,
        "{ml:?}"
    );
    assert!(ml.gradient_boosting.real.f1.expect("f1") > 0.8, "{ml:?}");

    // Same input, same report, byte for byte.
    let again = evaluate(&input)?;
    assert_eq!(
        serde_json::to_string(&report).expect("json"),
        serde_json::to_string(&again).expect("json")
    );
    Ok(())
}

#[test]
fn numeric_target_and_single_class_synthetic() -> Result<(), EvalError> {
    let make = |seed: u64, n: usize, constant: bool| {
        let x = uniforms(seed, n);
        let y: Vec<i64> = x.iter().map(|&v| i64::from(!constant && v > 0.6)).collect();
        batch(vec![
            ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
            ("y", ints(&y)),
        ])
    };
    let real = [make(1, 200, false)];
    let synthetic = [make(2, 200, true)];
    let test = [make(3, 100, false)];
    let report = evaluate(&EvalInput {
        real: &real,
        synthetic: &synthetic,
        test: Some(&test),
        target: Some("y"),
        seed: 1,
    })?;
    let ml = report.ml_efficacy.clone().expect("ml efficacy");
    assert_eq!(ml.positive_class.as_deref(), Some("1"));
    assert_eq!(ml.task, "binary");
    assert_eq!(ml.gradient_boosting.synthetic.auc, Some(0.5));
    assert_eq!(ml.gradient_boosting.synthetic.f1, Some(0.0));
    assert!(ml.gradient_boosting.real.auc.expect("auc") > 0.95, "{ml:?}");
    let linear = ml.linear.as_ref().expect("linear model");
    assert_eq!(linear.synthetic.auc, Some(0.5));
    assert!(report.notes.iter().any(|n| n.contains("single class")));
    Ok(())
}

#[test]
fn three_classes_are_learnt_one_against_the_rest() -> Result<(), EvalError> {
    // The class is the third of [0, 1) the uniform x falls in.
    let make = |seed: u64, n: usize| {
        let x = uniforms(seed, n);
        let t: Vec<Option<&str>> = x
            .iter()
            .map(|&v| Some(["low", "mid", "high"][((v * 3.0) as usize).min(2)]))
            .collect();
        batch(vec![
            ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
            ("t", strs(&t)),
        ])
    };
    let (real, synthetic, test) = ([make(1, 600)], [make(2, 600)], [make(3, 300)]);
    let report = evaluate(&EvalInput {
        real: &real,
        synthetic: &synthetic,
        test: Some(&test),
        target: Some("t"),
        seed: 0,
    })?;
    let ml = report.ml_efficacy.expect("ml efficacy");
    assert_eq!(ml.task, "multiclass (3 classes)");
    assert_eq!(ml.positive_class, None);
    let linear = ml.linear.as_ref().expect("linear model");
    for (what, s) in [
        ("trees on synthetic", &ml.gradient_boosting.synthetic),
        ("trees on real", &ml.gradient_boosting.real),
    ] {
        assert!(s.accuracy.expect("accuracy") > 0.9, "{what}: {s:?}");
        assert!(s.auc.expect("auc") > 0.95, "{what}: {s:?}");
        assert!(s.f1.expect("f1") > 0.85, "{what}: {s:?}");
    }
    // A line cannot tell `mid` from the rest (it is not monotone in x), so that class's
    // one-vs-rest AUC is near 0.5 and the macro AUC about 0.83; the argmax is still right
    // nearly always, since `low` and `high` score lower there.
    let s = &linear.real;
    assert!(s.accuracy.expect("accuracy") > 0.9, "{s:?}");
    let auc = s.auc.expect("auc");
    assert!(auc > 0.75 && auc < 0.95, "{s:?}");
    Ok(())
}

#[test]
fn single_class_target_is_refused() {
    let table = [batch(vec![
        ("x", ints(&[1, 2, 3, 4])),
        ("t", strs(&[Some("a"), Some("a"), Some("a"), Some("a")])),
    ])];
    let result = evaluate(&EvalInput {
        real: &table,
        synthetic: &table,
        test: Some(&table),
        target: Some("t"),
        seed: 0,
    });
    match result {
        Err(EvalError::Target { target, reason }) => {
            assert_eq!(target, "t");
            assert!(reason.contains("2 to 50 classes"), "{reason}");
        }
        other => panic!("expected Target, got {other:?}"),
    }
    let unknown = evaluate(&EvalInput {
        real: &table,
        synthetic: &table,
        test: Some(&table),
        target: Some("nope"),
        seed: 0,
    });
    assert!(matches!(unknown, Err(EvalError::Target { target, .. }) if target == "nope"));
}

#[test]
fn test_table_missing_a_feature_is_named() {
    let real = [batch(vec![
        ("x", ints(&[1, 2, 3, 4])),
        ("t", strs(&[Some("a"), Some("b"), Some("b"), Some("a")])),
    ])];
    let test = [batch(vec![("t", strs(&[Some("a"), Some("b")]))])];
    let result = evaluate(&EvalInput {
        real: &real,
        synthetic: &real,
        test: Some(&test),
        target: Some("t"),
        seed: 0,
    });
    assert!(matches!(
        result,
        Err(EvalError::MissingColumn { column, table: TableRole::Test }) if column == "x"
    ));
}

#[test]
fn report_serialises_to_the_agreed_shape() -> Result<(), EvalError> {
    let real = [batch(vec![
        ("x", ints(&[1, 2, 3])),
        (
            "c",
            Arc::new(DictionaryArray::<Int8Type>::from_iter(["a", "b", "a"])) as ArrayRef,
        ),
        (
            "n",
            Arc::new(Int32Array::from(vec![Some(3), None, Some(1)])) as ArrayRef,
        ),
    ])];
    let report = evaluate(&input(&real, &real))?;
    let json = serde_json::to_value(&report).expect("json");
    for key in [
        "rows_real",
        "rows_synthetic",
        "one_way",
        "two_way",
        "correlation",
        "ml_efficacy",
        "notes",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["one_way"]["columns"]["c"], serde_json::json!(1.0));
    assert_eq!(json["two_way"]["pairs"], serde_json::json!(3));
    assert!(json["ml_efficacy"].is_null());
    assert!(json["notes"].as_array().is_some_and(|n| !n.is_empty()));
    Ok(())
}

#[test]
fn columns_and_matrices_describe_every_column() -> Result<(), EvalError> {
    // Real city oslo 3 / rome 2 / lima 2 / null 1; synthetic invents `paris` and never says
    // `lima`, and its ages run past the real range.
    let real = [mixed_table()];
    let synthetic = [batch(vec![
        ("age", ints(&[23, 35, 35, 41, 52, 67, 29, 90])),
        (
            "income",
            Arc::new(Float64Array::from(vec![
                1.5, 2.5, 3.0, 4.0, 3.0, 9.0, 2.0, 5.5,
            ])) as ArrayRef,
        ),
        (
            "city",
            strs(&[
                Some("oslo"),
                Some("rome"),
                Some("paris"),
                Some("oslo"),
                Some("rome"),
                Some("rome"),
                Some("oslo"),
                None,
            ]),
        ),
        (
            "smoker",
            Arc::new(BooleanArray::from(vec![
                true, false, false, true, false, false, true, true,
            ])) as ArrayRef,
        ),
        (
            "born",
            Arc::new(Date32Array::from(vec![
                100, 2000, 3000, 4000, 5000, 6000, 7000, 8000,
            ])) as ArrayRef,
        ),
    ])];
    let report = evaluate(&input(&real, &synthetic))?;
    let names: Vec<&str> = report.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["age", "income", "city", "smoker", "born"]);
    let city = &report.columns[2];
    assert_eq!(city.kind, "categorical");
    // Real levels lima, oslo, rome, null: lima missed (1 of 4); paris is 1 of 8 rows.
    assert!(close(city.mismatch.missed, 0.25), "{:?}", city.mismatch);
    assert!(close(city.mismatch.invented, 0.125), "{:?}", city.mismatch);
    assert_eq!(city.wasserstein, None);
    assert!(city.chi_squared.is_some());
    assert_eq!(
        city.distribution.labels.last().map(String::as_str),
        Some("(null)")
    );
    let age = &report.columns[0];
    // 90 is outside the real range 23..=67.
    assert!(close(age.mismatch.invented, 0.125), "{:?}", age.mismatch);
    assert!(age.wasserstein.is_some_and(|w| w > 0.0));
    // `born` is identical: Wasserstein 0, both chi-squared p-values 1.
    let born = &report.columns[4];
    assert_eq!(born.wasserstein, Some(0.0));
    let chi = born.chi_squared.as_ref().expect("tested");
    assert!(
        close(chi.p_proportions, 1.0) && close(chi.p_counts, 1.0),
        "{chi:?}"
    );
    assert_eq!(report.chi_squared.columns, 5);
    assert!(report.mismatch.invented > 0.0 && report.mismatch.missed > 0.0);

    // Matrices: square, symmetric, the 1-way score on the 2-way diagonal.
    let m = &report.matrices;
    assert_eq!(m.two_way.len(), 5);
    assert_eq!(m.two_way[2][2], score(&report, "city"));
    assert_eq!(m.two_way[0][3], m.two_way[3][0]);
    assert_eq!(m.numeric, ["age", "income", "born"]);
    assert_eq!(m.categorical, ["city", "smoker"]);
    assert_eq!(m.pearson_real[0][0], Some(1.0));
    assert_eq!(m.cramers_v_real[0][1], m.cramers_v_real[1][0]);
    assert_eq!(report.cramers_v.pairs, 1);
    Ok(())
}

#[test]
fn html_report_holds_a_chart_per_column_and_escapes_names() -> Result<(), EvalError> {
    let real = [batch(vec![
        ("x", ints(&[1, 2, 3, 4])),
        (
            "<b>name</b>",
            strs(&[Some("a"), Some("</script>"), Some("a"), None]),
        ),
    ])];
    let report = evaluate(&input(&real, &real))?;
    let html = render_html(&report, "T & <t>");
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>T &amp; &lt;t&gt;</title>"));
    assert!(html.contains("&lt;b&gt;name&lt;/b&gt;") && !html.contains("<b>name</b>"));
    assert_eq!(html.matches("<canvas id=\"chart-").count(), 2);
    // The chart data parses back, with a category that would end a script element.
    let start = html.find("id=\"chimera-data\">").expect("data") + "id=\"chimera-data\">".len();
    let end = start + html[start..].find("</script>").expect("end of data");
    let data: serde_json::Value =
        serde_json::from_str(&html[start..end].replace("<\\/", "</")).expect("json");
    assert_eq!(data.as_array().map(Vec::len), Some(2));
    assert!(
        data[1]["labels"]
            .as_array()
            .is_some_and(|l| l.contains(&"</script>".into()))
    );
    Ok(())
}

#[test]
fn numeric_target_is_regressed_by_trees_and_a_line() -> Result<(), EvalError> {
    // y = 2 x + a category offset; the synthetic y ignores x (x shuffled against y).
    let make = |seed: u64, n: usize, broken: bool| {
        let x = uniforms(seed, n);
        let c: Vec<Option<&str>> = (0..n)
            .map(|i| Some(if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        let y: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let v = if broken { x[(i * 7 + 3) % n] } else { v };
                2.0 * v + if i % 2 == 0 { 0.0 } else { 1.0 }
            })
            .collect();
        batch(vec![
            ("x", Arc::new(Float64Array::from(x)) as ArrayRef),
            ("c", strs(&c)),
            ("y", Arc::new(Float64Array::from(y)) as ArrayRef),
        ])
    };
    let real = [make(1, 400, false)];
    let synthetic = [make(2, 400, true)];
    let test = [make(3, 200, false)];
    let report = evaluate(&EvalInput {
        real: &real,
        synthetic: &synthetic,
        test: Some(&test),
        target: Some("y"),
        seed: 1,
    })?;
    let ml = report.ml_efficacy.expect("ml efficacy");
    assert_eq!(ml.task, "regression");
    assert_eq!(ml.positive_class, None);
    let r2 = |t: &TaskScores| t.r2.expect("r2");
    let linear = ml.linear.as_ref().expect("linear model");
    // Real rows hold an exact linear law: the line explains nearly all of it, trees most.
    assert!(r2(&linear.real) > 0.99, "{ml:?}");
    assert!(r2(&ml.gradient_boosting.real) > 0.9, "{ml:?}");
    // The synthetic rows only keep the category offset (a quarter of the variance).
    assert!(r2(&linear.synthetic) < 0.5, "{ml:?}");
    assert!(r2(&ml.gradient_boosting.synthetic) < 0.5, "{ml:?}");
    assert_eq!(ml.gradient_boosting.real.auc, None);
    Ok(())
}
