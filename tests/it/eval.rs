//! `chimera eval` against SDMetrics: the expected scores in `tests/data/sdmetrics/` were
//! computed once with SDMetrics 0.32.0 by `tests/data/sdmetrics/expected.py` (its docstring says
//! how), on a fixed synthetic sample of the 2,000-row Adult fixture and 2,000 held-out rows.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    // Chi-squared in both conventions per categorical column (SDMetrics' CSTest on shares;
    // scipy's chi2_contingency on counts), Wasserstein per numeric column, Cramér's V.
    let column = |name: &str| {
        got["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("column {name} in the report"))
            .clone()
    };
    for (c, w) in want["cstest"].as_object().unwrap() {
        close(
            &format!("CSTest {c}"),
            &column(c)["chi_squared"]["p_proportions"],
            w,
        );
    }
    for (c, w) in want["chi2_counts_p"].as_object().unwrap() {
        close(
            &format!("chi2 counts {c}"),
            &column(c)["chi_squared"]["p_counts"],
            w,
        );
    }
    for (c, w) in want["wasserstein"].as_object().unwrap() {
        let (a, b) = (
            column(c)["wasserstein"].as_f64().unwrap(),
            w.as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= 1e-9,
            "Wasserstein {c}: chimera {a}, scipy {b}"
        );
    }
    close(
        "Cramér's V",
        &got["cramers_v"]["mean"],
        &want["cramers_v_mean"],
    );
    assert_eq!(got["cramers_v"]["pairs"], want["cramers_v_pairs"]);
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

/// Chromium (or Chrome) for the report tests: `CHIMERA_CHROMIUM`, else the first browser on
/// the PATH. `None` skips the test, unless `CHIMERA_REQUIRE_CHROMIUM` is set (as in CI).
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("CHIMERA_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .flat_map(|dir| {
                    ["chromium", "chromium-browser", "google-chrome"].map(|b| dir.join(b))
                })
                .find(|p| p.is_file())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CHIMERA_REQUIRE_CHROMIUM").is_none(),
            "CHIMERA_REQUIRE_CHROMIUM is set but no chromium was found"
        );
        eprintln!("skipped: no chromium on the PATH (apt install chromium)");
    }
    found
}

/// Runs headless Chromium on a local page with `args`; returns stdout and the console lines
/// of its log.
pub fn headless(
    browser: &Path,
    profile: &Path,
    page: &Path,
    args: &[&str],
) -> (String, Vec<String>) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

#[test]
fn eval_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.html");
    ok(&chimera(&[
        "eval",
        "--real",
        &data("adult_2000.csv"),
        "--synthetic",
        &data("adult_2000_synthetic.csv"),
        "--test",
        &data("adult_holdout_2000.csv"),
        "--target",
        "income",
        "--title",
        "Adult <2000> & synthetic",
        "--report",
        report.to_str().unwrap(),
    ]));
    let html = std::fs::read_to_string(&report).unwrap();
    // Self-contained: nothing fetched from anywhere; the title is escaped.
    for fetch in ["src=", "<link", "@import", "url("] {
        assert!(!html.contains(fetch), "the report loads something: {fetch}");
    }
    assert!(html.contains("<title>Adult &lt;2000&gt; &amp; synthetic</title>"));
    assert!(
        html.contains("Utility"),
        "an ML-efficacy card with --target"
    );

    // Every chart drawn (one per column), and nothing logged to the console.
    let profile = dir.path().join("profile");
    let (dom, console) = headless(&browser, &profile, &report, &["--dump-dom"]);
    assert!(
        dom.contains("data-charts=\"15\""),
        "charts not drawn: {dom:.300}"
    );
    assert!(console.is_empty(), "console messages: {console:?}");

    // A screenshot that is not blank: many colours, and much of it not the background.
    let shot = dir.path().join("shot.png");
    let (_, console) = headless(
        &browser,
        &profile,
        &report,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
            "--hide-scrollbars",
        ],
    );
    assert!(console.is_empty(), "console messages: {console:?}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let bytes = info.color_type.samples();
    let rgb: Vec<[u8; 3]> = pixels[..info.buffer_size()]
        .chunks(bytes)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert_eq!(rgb.len(), 1280 * 2000);
    let background = [0xf5, 0xf6, 0xf8];
    let painted = rgb.iter().filter(|p| **p != background).count();
    assert!(
        painted * 4 > rgb.len(),
        "mostly background: {painted} of {} pixels painted",
        rgb.len()
    );
    let colours: std::collections::HashSet<[u8; 3]> = rgb.iter().copied().collect();
    assert!(colours.len() > 200, "only {} colours", colours.len());
    // The bar colours of both series are on the page.
    for bar in [[0x4c, 0x72, 0xb0], [0xdd, 0x84, 0x52]] {
        assert!(colours.contains(&bar), "no bar of colour {bar:?}");
    }
}

/// The judge and the generator's perplexity run end to end on a tiny random-weight model:
/// every record gets a score in 1..=5, perplexities are finite, the report shows them.
#[test]
fn eval_judge_and_dlt_score_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let model = crate::llm::tiny_model(dir.path());
    let json = dir.path().join("m.json");
    let report = dir.path().join("r.html");
    let (real, synthetic) = (data("adult_2000.csv"), data("adult_2000_synthetic.csv"));
    let run = |extra: &[&str]| {
        let mut args = vec!["eval", "--real", &real, "--synthetic", &synthetic];
        args.extend_from_slice(extra);
        chimera(&args)
    };
    let holdout = data("adult_holdout_2000.csv");
    let model = model.to_str().unwrap();
    ok(&run(&[
        "--test",
        &holdout,
        "--judge",
        model,
        "--generator",
        model,
        "--judge-rows",
        "6",
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v["realism"];
    assert_eq!(r["references"], 3);
    for side in ["synthetic", "real"] {
        let histogram: Vec<u64> = r[side]["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(histogram.len(), 5);
        assert_eq!(histogram.iter().sum::<u64>(), 6, "{side}: {histogram:?}");
        let mean = r[side]["mean"].as_f64().unwrap();
        assert!((1.0..=5.0).contains(&mean), "{side}: {mean}");
        let expected = r[side]["expected_mean"].as_f64().unwrap();
        assert!((1.0..=5.0).contains(&expected), "{side}: {expected}");
    }
    let gap = r["gap"].as_f64().unwrap();
    let means = r["real"]["mean"].as_f64().unwrap() - r["synthetic"]["mean"].as_f64().unwrap();
    assert!((gap - means).abs() < 1e-12);
    // A random model is maximally unsure: perplexity near its vocabulary size, above 1.
    for side in ["train", "holdout", "synthetic"] {
        let p = v["dlt"][side].as_f64().unwrap();
        assert!(p.is_finite() && p > 1.0, "{side}: {p}");
    }
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Realism: judge scores") && html.contains("perplexity, synthetic"));

    // The judge needs held-out real records to score beside the synthetic ones.
    let o = run(&["--judge", model, "--json", json.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        crate::stderr(&o).contains("--test"),
        "{}",
        crate::stderr(&o)
    );
}

/// Output folders of chimera runs read as their table, on either side, and the synthetic
/// run's manifest gives the report its privacy guarantee.
#[test]
fn eval_reads_run_folders_and_their_guarantee() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Adult's public domains: 2,000 rows are too few to release its categories under DP.
    let spec = format!("{}/examples/adult.spec.yaml", env!("CARGO_MANIFEST_DIR"));
    ok(&crate::run_adult(&a, "500", &["--no-dp", "--seed", "1"]));
    ok(&crate::run_adult(
        &b,
        "700",
        &["--epsilon", "2", "--seed", "2", "--spec", &spec],
    ));
    let o = chimera(&[
        "eval",
        "--real",
        a.to_str().unwrap(),
        "--synthetic",
        b.to_str().unwrap(),
    ]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rows_real"], 500);
    assert_eq!(v["rows_synthetic"], 700);
    assert_eq!(v["guarantee"]["mode"], "dp");
    assert_eq!(v["guarantee"]["epsilon"], 2.0);
}
