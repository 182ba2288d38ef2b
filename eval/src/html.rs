//! The evaluation report as one self-contained HTML page: a verdict in plain words, a card
//! per metric family, a table of per-column scores, real-versus-synthetic bar charts per
//! column (Chart.js, inlined), and the pair matrices as coloured tables.
//!
//! The page needs no network: the chart library and the data are inside it. It logs nothing
//! to the console; once every chart is drawn it sets `data-charts` on `<body>` to their
//! number, so a headless browser can tell a finished page from a broken one.

use std::fmt::Write as _;

use crate::relational::RelationalReport;
use crate::report::{Distribution, Dlt, EvalReport, JudgeScores, Matrix, Realism};

/// Chart.js 4.6.1 (MIT, `assets/chart.js-LICENSE.md`), from the npm package's
/// `dist/chart.umd.min.js`.
const CHART_JS: &str = include_str!("../assets/chart.umd.min.js");

const STYLE: &str = r#"
:root { --real: #4c72b0; --syn: #dd8452; --good: #2e7d32; --fair: #b26a00; --poor: #c62828; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
  color: #1d232a; background: #f5f6f8; }
main { max-width: 1280px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 12px; }
.sub { color: #5b6470; margin: 0 0 20px; }
.verdict { background: #fff; border-radius: 10px; padding: 16px 20px; margin-bottom: 20px;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.verdict p { margin: 6px 0; }
.tag { display: inline-block; min-width: 48px; text-align: center; border-radius: 4px;
  color: #fff; font-size: 12px; font-weight: 600; padding: 2px 6px; margin-right: 8px; }
.tag.good { background: var(--good); } .tag.fair { background: var(--fair); }
.tag.poor { background: var(--poor); } .tag.info { background: #5b6470; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 16px; }
.card { background: #fff; border-radius: 10px; padding: 14px 18px;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.card h3 { margin: 0 0 8px; font-size: 16px; }
.card table { width: 100%; border-collapse: collapse; font-size: 14px; }
.card td { padding: 3px 0; }
.card td.v { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; padding-left: 8px; }
table.cols { width: 100%; border-collapse: collapse; background: #fff; font-size: 13px;
  border-radius: 10px; overflow: hidden; box-shadow: 0 1px 3px rgba(0,0,0,.08); }
table.cols th, table.cols td { padding: 6px 10px; border-bottom: 1px solid #eceef1; }
table.cols th { background: #eef0f3; text-align: left; }
table.cols td.v { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin: 0 4px -1px 12px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
.chart { background: #fff; border-radius: 10px; padding: 10px 12px;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.chart h4 { margin: 0 0 6px; font-size: 14px; display: flex; justify-content: space-between; }
.chart h4 small { color: #5b6470; font-weight: 400; }
.chart .box { position: relative; height: 220px; }
.matrices { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.matrix { background: #fff; border-radius: 10px; padding: 12px;
  box-shadow: 0 1px 3px rgba(0,0,0,.08); overflow-x: auto; max-width: 100%; }
.matrix h3 { margin: 0 0 8px; font-size: 15px; }
.matrix table { border-collapse: collapse; font-size: 11px; }
.matrix td { width: 26px; height: 26px; text-align: center; color: #1d232a; }
.matrix th { font-weight: 400; padding: 2px 4px; white-space: nowrap; }
.matrix th.c { writing-mode: vertical-rl; transform: rotate(180deg); height: 110px;
  vertical-align: bottom; }
.matrix th.r { text-align: right; }
.matrix td.na { background: #eceef1; }
details { background: #fff; border-radius: 10px; padding: 12px 18px; margin-top: 24px; }
details li { margin: 4px 0; font-size: 13px; color: #3a424c; }
"#;

/// A page being written: its HTML and the data of its charts, drawn by [`DRAW`].
struct Page {
    html: String,
    charts: Vec<serde_json::Value>,
}

impl Page {
    fn new(title: &str, subtitle: &str) -> Page {
        let mut html = String::with_capacity(CHART_JS.len() + 64 * 1024);
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t}</title><style>{STYLE}</style></head><body><main>\
             <h1>{t}</h1><p class=\"sub\">{subtitle}</p>",
            t = escape(title),
        );
        Page {
            html,
            charts: Vec::new(),
        }
    }

    /// A bar chart of real against synthetic shares; `title` and `detail` are HTML.
    fn chart(&mut self, title: &str, detail: &str, d: &Distribution) {
        let i = self.charts.len();
        let _ = write!(
            self.html,
            "<div class=\"chart\"><h4>{title}<small>{detail}</small></h4>\
             <div class=\"box\"><canvas id=\"chart-{i}\" role=\"img\" aria-label=\"real and \
             synthetic shares\"></canvas></div></div>",
        );
        self.charts.push(serde_json::json!({
            "labels": d.labels,
            "real": d.real,
            "synthetic": d.synthetic,
        }));
    }

    fn finish(mut self, notes: &[String]) -> String {
        self.html
            .push_str("<details><summary>Conventions and notes</summary><ul>");
        for note in notes {
            let _ = write!(self.html, "<li>{}</li>", escape(note));
        }
        self.html.push_str("</ul></details></main>");
        // `</` inside a script element would end it early.
        let data = serde_json::Value::Array(self.charts)
            .to_string()
            .replace("</", "<\\/");
        let _ = write!(
            self.html,
            "<script type=\"application/json\" id=\"chimera-data\">{data}</script><script>"
        );
        self.html.push_str(CHART_JS);
        self.html.push_str("</script><script>");
        self.html.push_str(DRAW);
        self.html.push_str("</script></body></html>\n");
        self.html
    }
}

/// Renders `report` as a self-contained HTML page titled `title`.
pub fn render_html(report: &EvalReport, title: &str) -> String {
    let mut page = Page::new(title, &table_summary(report));
    table_body(&mut page, report);
    page.finish(&report.notes)
}

fn table_summary(report: &EvalReport) -> String {
    format!(
        "{} real rows, {} synthetic rows, {} columns",
        thousands(report.rows_real),
        thousands(report.rows_synthetic),
        report.columns.len(),
    )
}

/// One table's verdict, cards, column table, charts and matrices.
fn table_body(page: &mut Page, report: &EvalReport) {
    verdict(&mut page.html, report);
    cards(&mut page.html, report);
    if let Some(r) = &report.realism {
        realism_chart(page, r);
    }
    columns_table(&mut page.html, report);
    charts(page, report);
    matrices(&mut page.html, report);
}

/// The judge's score histograms, real against synthetic.
fn realism_chart(page: &mut Page, r: &Realism) {
    page.html.push_str(
        "<h2>Realism: judge scores<span class=\"legend\"><span style=\"background:\
         var(--real)\"></span>real<span style=\"background:var(--syn)\"></span>\
         synthetic</span></h2><div class=\"charts\">",
    );
    let shares = |s: &JudgeScores| {
        s.histogram
            .iter()
            .map(|&n| n as f64 / s.records.max(1) as f64)
            .collect()
    };
    page.chart(
        "scores from 1 (artificial) to 5 (indistinguishable)",
        &format!(
            "mean {:.2} real, {:.2} synthetic",
            r.real.mean, r.synthetic.mean
        ),
        &Distribution {
            labels: (1..=5).map(|s| s.to_string()).collect(),
            real: shares(&r.real),
            synthetic: shares(&r.synthetic),
        },
    );
    page.html.push_str("</div>");
}

/// Renders a relational evaluation: the entity checks, then each table.
pub fn render_relational_html(report: &RelationalReport, title: &str) -> String {
    let entities = report.tables.first().map_or(0, |t| t.report.rows_synthetic);
    let mut page = Page::new(
        title,
        &format!(
            "{} synthetic entities, {} tables: {}",
            thousands(entities),
            report.tables.len(),
            report
                .tables
                .iter()
                .map(|t| format!("<a href=\"#table-{0}\">{0}</a>", escape(&t.name)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    relational_verdict(&mut page.html, report);
    if report.realism.is_some() || report.dlt.is_some() {
        page.html.push_str("<section class=\"cards\">");
        realism_card(&mut page.html, report.realism.as_ref(), report.dlt.as_ref());
        page.html.push_str("</section>");
    }
    if let Some(r) = &report.realism {
        realism_chart(&mut page, r);
    }
    page.html.push_str(
        "<h2>Keys and children per parent</h2><table class=\"cols\"><tr><th>child</th>\
         <th>parent</th><th>key</th><th>dangling (synthetic)</th><th>dangling (real)</th>\
         <th>children per parent, real</th><th>synthetic</th><th>TVD</th></tr>",
    );
    for l in &report.links {
        let c = l.children_per_parent.as_ref();
        let _ = write!(
            page.html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"v\">{}</td><td class=\"v\">{}</td>\
             <td class=\"v\">{}</td><td class=\"v\">{}</td><td class=\"v\">{}</td></tr>",
            escape(&l.child),
            escape(&l.parent),
            escape(&l.columns.join(", ")),
            l.dangling_synthetic,
            l.dangling_real,
            c.map_or("–".to_owned(), |c| format!("{:.2}", c.mean_real)),
            c.map_or("–".to_owned(), |c| format!("{:.2}", c.mean_synthetic)),
            c.map_or("–".to_owned(), |c| format!("{:.3}", c.tvd)),
        );
    }
    page.html.push_str(
        "</table><h2>Datetime order</h2><table class=\"cols\"><tr><th>table</th><th>rule</th>\
         <th>checked</th><th>violations (synthetic)</th><th>violations (real)</th></tr>",
    );
    for o in &report.orders {
        let _ = write!(
            page.html,
            "<tr><td>{}</td><td>{}</td><td class=\"v\">{}</td><td class=\"v\">{}</td>\
             <td class=\"v\">{}</td></tr>",
            escape(&o.table),
            escape(&o.rule),
            thousands(o.checked_synthetic as usize),
            o.violations_synthetic,
            o.violations_real,
        );
    }
    page.html.push_str(
        "</table><h2>Children per parent<span class=\"legend\"><span style=\"background:\
         var(--real)\"></span>real<span style=\"background:var(--syn)\"></span>synthetic\
         </span></h2><div class=\"charts\">",
    );
    for l in &report.links {
        if let Some(c) = &l.children_per_parent {
            page.chart(
                &format!("{} per {}", escape(&l.child), escape(&l.parent)),
                &format!("TVD {:.3}", c.tvd),
                &c.distribution,
            );
        }
    }
    page.html.push_str("</div>");
    let mut notes = Vec::new();
    for t in &report.tables {
        let _ = write!(
            page.html,
            "<h2 id=\"table-{0}\" class=\"table\">Table <code>{0}</code></h2><p class=\"sub\">{1}</p>",
            escape(&t.name),
            table_summary(&t.report)
        );
        table_body(&mut page, &t.report);
        notes.extend(t.report.notes.iter().map(|n| format!("{}: {n}", t.name)));
    }
    page.finish(&notes)
}

/// One line of a verdict: its level as a tag, then its text (HTML).
fn verdict_line(html: &mut String, level: Level, text: &str) {
    let _ = write!(
        html,
        "<p><span class=\"tag {c}\">{c}</span>{text}</p>",
        c = level.class()
    );
}

/// `Good` when `count` is 0, else `Poor`.
fn zero_is_good(count: u64) -> Level {
    if count == 0 { Level::Good } else { Level::Poor }
}

fn realism_verdict(j: &Realism) -> (Level, String) {
    let gap = j.expected_gap;
    let level = Level::at_most(gap, 0.25, 0.75);
    (
        level,
        format!(
            "<b>Realism.</b> A judge model expects a score of {:.2} (1 to 5) for synthetic \
             records and {:.2} for real ones: a gap of {gap:.2}.",
            j.synthetic.expected_mean, j.real.expected_mean
        ),
    )
}

fn relational_verdict(html: &mut String, r: &RelationalReport) {
    html.push_str("<section class=\"verdict\">");
    let mut line = |level: Level, text: String| verdict_line(html, level, &text);
    line(
        zero_is_good(r.dangling_keys),
        format!(
            "<b>Keys.</b> {} synthetic foreign keys do not resolve, over {} links.",
            r.dangling_keys,
            r.links.len()
        ),
    );
    line(
        zero_is_good(r.order_violations),
        format!(
            "<b>Datetime order.</b> {} violations of {} rules in the synthetic rows.",
            r.order_violations,
            r.orders.len()
        ),
    );
    let worst = r
        .links
        .iter()
        .filter_map(|l| l.children_per_parent.as_ref().map(|c| (c.tvd, l)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((tvd, l)) = worst {
        let level = Level::at_most(tvd, 0.05, 0.1);
        line(
            level,
            format!(
                "<b>Children per parent.</b> The widest gap is {} per {}: total variation \
                 distance {tvd:.3} (0 is identical).",
                escape(&l.child),
                escape(&l.parent)
            ),
        );
    }
    if let Some(j) = &r.realism {
        let (level, text) = realism_verdict(j);
        line(level, text);
    }
    let table_scores: Vec<String> = r
        .tables
        .iter()
        .filter_map(|t| {
            t.report
                .two_way
                .mean
                .map(|m| format!("{} {}", escape(&t.name), pct(m)))
        })
        .collect();
    if !table_scores.is_empty() {
        let worst = r
            .tables
            .iter()
            .filter_map(|t| t.report.two_way.mean)
            .fold(1.0, f64::min);
        line(
            Level::of_similarity(worst),
            format!(
                "<b>Tables.</b> 2-way similarity per table: {}.",
                table_scores.join(", ")
            ),
        );
    }
    html.push_str("</section>");
}

/// Draws one bar chart per `.box canvas` from the embedded data, then marks the page done.
const DRAW: &str = r#"
(function () {
  var data = JSON.parse(document.getElementById('chimera-data').textContent);
  var drawn = 0;
  data.forEach(function (c, i) {
    var canvas = document.getElementById('chart-' + i);
    new Chart(canvas, {
      type: 'bar',
      data: { labels: c.labels, datasets: [
        { label: 'real', data: c.real, backgroundColor: '#4c72b0' },
        { label: 'synthetic', data: c.synthetic, backgroundColor: '#dd8452' } ] },
      options: { animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: function (t) {
          return t.dataset.label + ': ' + (100 * t.parsed.y).toFixed(2) + '%'; } } } },
        scales: { x: { ticks: { autoSkip: true, maxRotation: 60, font: { size: 10 } } },
          y: { beginAtZero: true, ticks: { font: { size: 10 }, callback: function (v) {
            return Math.round(v * 1000) / 10 + '%'; } } } } }
    });
    drawn += 1;
  });
  document.body.setAttribute('data-charts', String(drawn));
})();
"#;

/// How a score reads at a glance.
#[derive(Clone, Copy)]
enum Level {
    Good,
    Fair,
    Poor,
    Info,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Fair => "fair",
            Level::Poor => "poor",
            Level::Info => "info",
        }
    }

    fn of_similarity(score: f64) -> Level {
        Level::at_least(score, 0.9, 0.8)
    }

    /// `Good` from `good` up, `Fair` from `fair` up, else `Poor`.
    fn at_least(value: f64, good: f64, fair: f64) -> Level {
        if value >= good {
            Level::Good
        } else if value >= fair {
            Level::Fair
        } else {
            Level::Poor
        }
    }

    /// `Good` up to `good`, `Fair` up to `fair`, else `Poor`.
    fn at_most(value: f64, good: f64, fair: f64) -> Level {
        if value <= good {
            Level::Good
        } else if value <= fair {
            Level::Fair
        } else {
            Level::Poor
        }
    }
}

fn verdict(page: &mut String, r: &EvalReport) {
    page.push_str("<section class=\"verdict\">");
    let mut line = |level: Level, text: String| verdict_line(page, level, &text);
    if let (Some(one), Some(two)) = (r.one_way.mean, r.two_way.mean) {
        let weakest = r
            .columns
            .iter()
            .filter_map(|c| c.score.map(|s| (s, &c.name)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let mut text = format!(
            "<b>Fidelity.</b> Single columns match {} on average and column pairs {}",
            pct(one),
            pct(two)
        );
        if let Some((score, name)) = weakest {
            let _ = write!(
                text,
                "; the weakest column is <code>{}</code> ({}).",
                escape(name),
                pct(score)
            );
        }
        line(Level::of_similarity(one.min(two)), text);
    }
    let correlations: Vec<String> = [
        ("Pearson correlations", r.correlation.mean),
        ("Cramér's V associations", r.cramers_v.mean),
    ]
    .iter()
    .filter_map(|(what, m)| m.map(|m| format!("{what} match {}", pct(m))))
    .collect();
    if !correlations.is_empty() {
        let worst = [r.correlation.mean, r.cramers_v.mean]
            .into_iter()
            .flatten()
            .fold(1.0, f64::min);
        line(
            Level::of_similarity(worst),
            format!("<b>Relationships.</b> {}.", correlations.join("; ")),
        );
    }
    if let Some(ml) = &r.ml_efficacy {
        let gb = &ml.gradient_boosting;
        let metric = if ml.task == "regression" {
            "R&sup2;"
        } else {
            "AUC"
        };
        if let (Some(synthetic), Some(real)) = (gb.synthetic.headline(), gb.real.headline()) {
            let ratio = if real > 0.0 {
                synthetic.max(0.0) / real
            } else {
                0.0
            };
            let level = Level::at_least(ratio, 0.95, 0.85);
            line(
                level,
                format!(
                    "<b>Utility.</b> Boosted trees trained on synthetic rows predict <code>{}</code> \
                     on real held-out rows with {metric} {synthetic:.3}, against {real:.3} when \
                     trained on the real rows ({} of it).",
                    escape(&ml.target),
                    pct(ratio)
                ),
            );
        }
    }
    if let Some(j) = &r.realism {
        let (level, text) = realism_verdict(j);
        line(level, text);
    }
    if let Some(p) = &r.privacy {
        let copies = if p.exact_copies == 0.0 {
            "No synthetic row copies a training row".to_owned()
        } else {
            format!(
                "{} of synthetic rows copy a training row",
                pct(p.exact_copies)
            )
        };
        let (level, closer) = match p.closer_to_training {
            Some(c) => {
                let level = if p.exact_copies > 0.01 || c > 0.7 {
                    Level::Poor
                } else if p.exact_copies > 0.0 || c > 0.6 {
                    Level::Fair
                } else {
                    Level::Good
                };
                (
                    level,
                    format!(
                        "; {} of them are closer to the training rows than to as many held-out \
                         rows (about 50% means no sign of memorisation)",
                        pct(c)
                    ),
                )
            }
            None => (
                if p.exact_copies > 0.0 {
                    Level::Fair
                } else {
                    Level::Info
                },
                "; give a held-out table (--test) to check for memorisation".to_owned(),
            ),
        };
        line(level, format!("<b>Privacy.</b> {copies}{closer}."));
    }
    if let Some(g) = &r.guarantee {
        let text = match (g.mode.as_str(), g.epsilon) {
            ("dp", Some(e)) => format!(
                "<b>Guarantee.</b> The model was fitted under differential privacy, \
                 &epsilon; = {e}{}.",
                g.delta
                    .map(|d| format!(", &delta; = {d:e}"))
                    .unwrap_or_default()
            ),
            _ => "<b>Guarantee.</b> No formal privacy guarantee: the model was fitted without \
                  differential privacy."
                .to_owned(),
        };
        let level = if g.mode == "dp" {
            Level::Good
        } else {
            Level::Info
        };
        let notes = if g.notes.is_empty() {
            String::new()
        } else {
            format!(
                " <small>The run's manifest adds: {}.</small>",
                g.notes
                    .iter()
                    .map(|n| escape(n))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        line(level, text + &notes);
    }
    page.push_str("</section>");
}

fn cards(page: &mut String, r: &EvalReport) {
    page.push_str("<section class=\"cards\">");
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
    card(
        page,
        "Fidelity",
        &[
            ("1-way similarity (KS / TV)", opt(r.one_way.mean)),
            ("2-way similarity", opt(r.two_way.mean)),
            (
                "mean &chi;&sup2; p, shares (lenient)",
                opt(r.chi_squared.p_proportions),
            ),
            (
                "mean &chi;&sup2; p, counts (strict)",
                opt(r.chi_squared.p_counts),
            ),
            ("normalised Wasserstein &darr;", opt(r.wasserstein)),
            ("categories missed &darr;", pct(r.mismatch.missed)),
            ("rows invented &darr;", pct(r.mismatch.invented)),
        ],
    );
    card(
        page,
        "Relationships",
        &[
            ("Pearson similarity", opt(r.correlation.mean)),
            ("numeric pairs", r.correlation.pairs.to_string()),
            ("Cramér's V similarity", opt(r.cramers_v.mean)),
            ("categorical pairs", r.cramers_v.pairs.to_string()),
        ],
    );
    if let Some(ml) = &r.ml_efficacy {
        let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
        let mut rows = Vec::new();
        let models = [
            ("trees", Some(&ml.gradient_boosting)),
            ("linear", ml.linear.as_ref()),
        ];
        for (name, scores) in models {
            let Some(m) = scores else { continue };
            let metrics: [(&str, Metric); 4] = [
                ("AUC", |t| t.auc),
                ("F1", |t| t.f1),
                ("accuracy", |t| t.accuracy),
                ("R&sup2;", |t| t.r2),
            ];
            for (metric, get) in metrics {
                if get(&m.real).is_some() {
                    rows.push((
                        format!("{name} {metric}, synthetic / real"),
                        format!("{} / {}", opt(get(&m.synthetic)), opt(get(&m.real))),
                    ));
                }
            }
        }
        let rows: Vec<(&str, String)> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        card(
            page,
            &format!("Utility: predicting {}", escape(&ml.target)),
            &rows,
        );
    }
    realism_card(page, r.realism.as_ref(), r.dlt.as_ref());
    if let Some(p) = &r.privacy {
        let mut rows = vec![
            ("DCR median (Gower)", format!("{:.3}", p.dcr_median)),
            ("DCR 5th percentile", format!("{:.3}", p.dcr_p5)),
        ];
        if let (Some(m), Some(p5)) = (p.holdout_dcr_median, p.holdout_dcr_p5) {
            rows.push(("held-out DCR median / p5", format!("{m:.3} / {p5:.3}")));
        }
        if let Some(c) = p.closer_to_training {
            rows.push(("closer to training (&asymp; 50%)", pct(c)));
        }
        rows.push(("new rows (NRS)", pct(p.new_row_synthesis)));
        rows.push(("exact copies", pct(p.exact_copies)));
        if let Some(g) = &r.guarantee {
            rows.push((
                "differential privacy",
                match g.epsilon {
                    Some(e) if g.mode == "dp" => format!("&epsilon; = {e}"),
                    _ => "none".to_owned(),
                },
            ));
        }
        card(page, "Privacy", &rows);
    }
    page.push_str("</section>");
}

/// The judge's and the generator's figures, when either ran.
fn realism_card(page: &mut String, realism: Option<&Realism>, dlt: Option<&Dlt>) {
    let mut rows = Vec::new();
    if let Some(j) = realism {
        rows.push(("judge", escape(&file_name(&j.model))));
        rows.push((
            "mean score, synthetic / real",
            format!("{:.2} / {:.2}", j.synthetic.mean, j.real.mean),
        ));
        rows.push((
            "expected score, synthetic / real",
            format!(
                "{:.2} / {:.2}",
                j.synthetic.expected_mean, j.real.expected_mean
            ),
        ));
        rows.push((
            "records judged, synthetic / real",
            format!("{} / {}", j.synthetic.records, j.real.records),
        ));
    }
    if let Some(d) = dlt {
        rows.push(("generator (DLT)", escape(&file_name(&d.model))));
        rows.push(("perplexity, real training", format!("{:.2}", d.train)));
        if let Some(h) = d.holdout {
            rows.push(("perplexity, held-out real", format!("{h:.2}")));
        }
        rows.push(("perplexity, synthetic", format!("{:.2}", d.synthetic)));
    }
    if !rows.is_empty() {
        card(page, "Realism", &rows);
    }
}

/// Reads one score of a trained model.
type Metric = fn(&crate::report::TaskScores) -> Option<f64>;

fn card(page: &mut String, title: &str, rows: &[(&str, String)]) {
    let _ = write!(page, "<div class=\"card\"><h3>{title}</h3><table>");
    for (name, value) in rows {
        let _ = write!(page, "<tr><td>{name}</td><td class=\"v\">{value}</td></tr>");
    }
    page.push_str("</table></div>");
}

fn columns_table(page: &mut String, r: &EvalReport) {
    page.push_str(
        "<h2>Columns</h2><table class=\"cols\"><tr><th>column</th><th>kind</th>\
         <th>1-way</th><th>&chi;&sup2; p (shares)</th><th>&chi;&sup2; p (counts)</th>\
         <th>Wasserstein</th><th>missed</th><th>invented</th></tr>",
    );
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.3}"));
    for c in &r.columns {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"v\">{}</td><td class=\"v\">{}</td>\
             <td class=\"v\">{}</td><td class=\"v\">{}</td><td class=\"v\">{}</td>\
             <td class=\"v\">{}</td></tr>",
            escape(&c.name),
            c.kind,
            opt(c.score),
            opt(c.chi_squared.as_ref().map(|x| x.p_proportions)),
            opt(c.chi_squared.as_ref().map(|x| x.p_counts)),
            opt(c.wasserstein),
            pct(c.mismatch.missed),
            pct(c.mismatch.invented),
        );
    }
    page.push_str("</table>");
}

fn charts(page: &mut Page, r: &EvalReport) {
    page.html.push_str(
        "<h2>Distributions<span class=\"legend\"><span style=\"background:var(--real)\"></span>\
         real<span style=\"background:var(--syn)\"></span>synthetic</span></h2>\
         <div class=\"charts\">",
    );
    for c in &r.columns {
        page.chart(
            &escape(&c.name),
            &format!(
                "{} &middot; {}",
                c.kind,
                c.score
                    .map_or("no score".to_owned(), |s| format!("1-way {s:.3}"))
            ),
            &c.distribution,
        );
    }
    page.html.push_str("</div>");
}

fn matrices(page: &mut String, r: &EvalReport) {
    let m = &r.matrices;
    let names: Vec<String> = r.columns.iter().map(|c| c.name.clone()).collect();
    page.push_str("<h2>Column pairs</h2><div class=\"matrices\">");
    matrix(
        page,
        "2-way similarity (1-way on the diagonal)",
        &names,
        &m.two_way,
        Scale::Similarity,
    );
    page.push_str("</div>");
    if !m.numeric.is_empty() {
        page.push_str("<h2>Pearson correlation</h2><div class=\"matrices\">");
        matrix(page, "real", &m.numeric, &m.pearson_real, Scale::Signed);
        matrix(
            page,
            "synthetic",
            &m.numeric,
            &m.pearson_synthetic,
            Scale::Signed,
        );
        page.push_str("</div>");
    }
    if !m.categorical.is_empty() {
        page.push_str("<h2>Cramér's V</h2><div class=\"matrices\">");
        matrix(
            page,
            "real",
            &m.categorical,
            &m.cramers_v_real,
            Scale::Unsigned,
        );
        matrix(
            page,
            "synthetic",
            &m.categorical,
            &m.cramers_v_synthetic,
            Scale::Unsigned,
        );
        page.push_str("</div>");
    }
}

/// How a matrix cell's value maps to a colour.
#[derive(Clone, Copy)]
enum Scale {
    /// 0..1, 1 best: red to white.
    Similarity,
    /// -1..1: blue through white to red.
    Signed,
    /// 0..1: white to blue.
    Unsigned,
}

fn colour(value: f64, scale: Scale) -> String {
    let mix = |t: f64, (r, g, b): (f64, f64, f64)| {
        let t = t.clamp(0.0, 1.0);
        let c = |x: f64| (255.0 + (x - 255.0) * t).round() as u8;
        format!("#{:02x}{:02x}{:02x}", c(r), c(g), c(b))
    };
    match scale {
        // Below 0.5 is as red as it gets; 1 is white.
        Scale::Similarity => mix((1.0 - value) * 2.0, (198.0, 40.0, 40.0)),
        Scale::Signed if value >= 0.0 => mix(value, (198.0, 40.0, 40.0)),
        Scale::Signed => mix(-value, (48.0, 90.0, 180.0)),
        Scale::Unsigned => mix(value, (48.0, 90.0, 180.0)),
    }
}

fn matrix(page: &mut String, title: &str, names: &[String], values: &Matrix, scale: Scale) {
    let _ = write!(
        page,
        "<div class=\"matrix\"><h3>{}</h3><table><tr><th></th>",
        escape(title)
    );
    for n in names {
        let _ = write!(page, "<th class=\"c\">{}</th>", escape(n));
    }
    page.push_str("</tr>");
    for (name, row) in names.iter().zip(values) {
        let _ = write!(page, "<tr><th class=\"r\">{}</th>", escape(name));
        for (other, v) in names.iter().zip(row) {
            match v {
                Some(v) => {
                    let _ = write!(
                        page,
                        "<td style=\"background:{}\" title=\"{} &times; {}: {v:.3}\">{}</td>",
                        colour(*v, scale),
                        escape(name),
                        escape(other),
                        (v * 100.0).round() as i64,
                    );
                }
                None => page.push_str("<td class=\"na\"></td>"),
            }
        }
        page.push_str("</tr>");
    }
    page.push_str("</table></div>");
}

/// The last part of a path, for a card.
fn file_name(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned())
}

fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p != 0.0 && p.abs() < 0.1 {
        format!("{p:.2}%")
    } else {
        format!("{p:.1}%")
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Text as HTML (element content and quoted attribute values).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_numbers_read_well() {
        assert_eq!(
            escape("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(pct(0.9612), "96.1%");
        assert_eq!(pct(0.0004), "0.04%");
        assert_eq!(colour(1.0, Scale::Similarity), "#ffffff");
        assert_eq!(colour(0.0, Scale::Similarity), "#c62828");
        assert_eq!(colour(-1.0, Scale::Signed), "#305ab4");
    }
}
