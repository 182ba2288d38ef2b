//! `chimera eval` against SDMetrics: the expected scores in `tests/data/sdmetrics/` were
//! computed once with SDMetrics 0.32.0 by `tests/data/sdmetrics/expected.py` (its docstring says
//! how), on a fixed synthetic sample of the 2,000-row Adult fixture and 2,000 held-out rows.

use super::{chimera, data, ok};

#[test]
fn eval_agrees_with_sdmetrics_on_adult() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("metrics.json");
    ok(&chimera(&[
        "eval",
        "--real",
        &data("adult_2000.csv"),
        "--synthetic",
        &data("adult_2000_synthetic.csv"),
        "--test",
        &data("adult_holdout_2000.csv"),
        "--json",
        json.to_str().unwrap(),
    ]));
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("sdmetrics/adult_expected.json")).unwrap())
            .unwrap();
    let close = |what: &str, a: &serde_json::Value, b: &serde_json::Value| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!((a - b).abs() <= 0.005, "{what}: chimera {a}, SDMetrics {b}");
    };
    let columns = want["one_way"].as_object().unwrap();
    assert_eq!(columns.len(), 15);
    for (c, w) in columns {
        close(&format!("1-way {c}"), &got["one_way"]["columns"][c], w);
    }
    // SDMetrics' own binning (10 equal-width bins) for the 2-way metric.
    close(
        "2-way",
        &got["two_way_equal_width"]["mean"],
        &want["two_way_mean"],
    );
    assert_eq!(got["two_way_equal_width"]["pairs"], want["two_way_pairs"]);
    close(
        "correlation",
        &got["correlation"]["mean"],
        &want["correlation_mean"],
    );
    assert_eq!(got["correlation"]["pairs"], want["correlation_pairs"]);
    // Privacy: equal-size training and held-out sets, no sampling at these sizes.
    let p = &got["privacy"];
    close(
        "new row synthesis",
        &p["new_row_synthesis"],
        &want["new_row_synthesis"],
    );
    close(
        "closer to training",
        &p["closer_to_training"],
        &want["closer_to_training"],
    );
    assert_eq!(p["rows_sampled"], 2000);
    let (median, p5) = (
        p["dcr_median"].as_f64().unwrap(),
        p["dcr_p5"].as_f64().unwrap(),
    );
    assert!(0.0 <= p5 && p5 <= median && median <= 1.0, "{p}");
    let holdout = p["holdout_dcr_median"].as_f64().unwrap();
    assert!(holdout > 0.0 && holdout <= 1.0, "{p}");
    assert_eq!(p["exact_copies"], 0.0);
}

#[test]
fn eval_counts_copied_rows_as_copies() {
    // The real table against itself: every row is a copy, none is new, every DCR is 0.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    ok(&chimera(&[
        "eval",
        "--real",
        &data("adult_2000.csv"),
        "--synthetic",
        &data("adult_2000.csv"),
        "--json",
        json.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let p = &v["privacy"];
    assert_eq!(p["exact_copies"], 1.0);
    assert_eq!(p["new_row_synthesis"], 0.0);
    assert_eq!(p["dcr_median"], 0.0);
    assert!(p["closer_to_training"].is_null(), "no held-out rows: {p}");
}
