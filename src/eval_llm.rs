//! `chimera eval --judge / --generator`: records as JSON text, scored by a judge model
//! (Amalgam's realism judge) and by the generator's perplexity (HARMONIC's DLT).

use anyhow::{Context, Result, bail};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chimera_eval::{Dlt, EvalReport, JudgeScores, Realism};
use chimera_worker::llm::judge::{Judge, perplexity};
use rand::seq::index::sample;

use crate::cli::EvalArgs;
use crate::commands::load_llm;

/// Real training records shown beside each candidate (Amalgam's k).
pub const REFERENCES: usize = 3;

/// What the judge and the generator read: records as text.
pub struct Candidates {
    /// What the records are, for the judge's instruction (e.g. "patients with their
    /// admissions").
    pub what: String,
    /// Synthetic records to judge.
    pub synthetic: Vec<String>,
    /// Real records to judge beside them.
    pub real: Vec<String>,
    /// Real reference records of each candidate, synthetic ones first.
    pub references: Vec<Vec<String>>,
    /// Real training records for the generator's perplexity.
    pub train: Vec<String>,
    /// Held-out real records for the generator's perplexity.
    pub holdout: Option<Vec<String>>,
}

/// Runs the judge and the generator `a` names (either may be absent) on `c`.
pub async fn judge_and_dlt(a: &EvalArgs, c: &Candidates) -> Result<(Option<Realism>, Option<Dlt>)> {
    let mut realism = None;
    if let Some(path) = &a.judge {
        let runtime = load_llm(path, &a.llm_run).await?;
        let batch = a.llm_run.llm_batch;
        let started = std::time::Instant::now();
        let candidates: Vec<String> = c.synthetic.iter().chain(&c.real).cloned().collect();
        let verdicts = tokio::task::block_in_place(|| {
            Judge::new(&runtime, batch).scores(&c.what, &candidates, &c.references)
        })
        .with_context(|| format!("--judge {}", path.display()))?;
        let n = c.synthetic.len();
        let synthetic = JudgeScores::of(&verdicts.scores[..n], &verdicts.expected[..n]);
        let real = JudgeScores::of(&verdicts.scores[n..], &verdicts.expected[n..]);
        let references = verdicts.fewest_references;
        tracing::info!(
            records = candidates.len(),
            seconds = started.elapsed().as_secs_f64(),
            synthetic = synthetic.expected_mean,
            real = real.expected_mean,
            "judge scored"
        );
        if references < REFERENCES {
            tracing::warn!(
                references,
                "some judge prompts kept fewer than {REFERENCES} reference records to fit the \
                 model's context"
            );
        }
        realism = Some(Realism {
            model: path.display().to_string(),
            references,
            gap: real.mean - synthetic.mean,
            expected_gap: real.expected_mean - synthetic.expected_mean,
            synthetic,
            real,
        });
    }
    let mut dlt = None;
    if let Some(path) = &a.generator {
        let runtime = load_llm(path, &a.llm_run).await?;
        let batch = a.llm_run.llm_batch;
        let median_perplexity = |texts: &[String]| -> Result<f64> {
            let mut p = tokio::task::block_in_place(|| perplexity(&runtime, texts, batch))
                .with_context(|| format!("--generator {}", path.display()))?;
            p.sort_by(f64::total_cmp);
            Ok(p.get(p.len() / 2).copied().unwrap_or(f64::NAN))
        };
        dlt = Some(Dlt {
            model: path.display().to_string(),
            records: c.train.len(),
            train: median_perplexity(&c.train)?,
            holdout: c.holdout.as_deref().map(median_perplexity).transpose()?,
            synthetic: median_perplexity(&c.synthetic)?,
        });
    }
    Ok((realism, dlt))
}

/// `count` distinct indices below `n` (all of them when fewer), seeded, ascending.
pub fn sample_rows(seed: u64, salt: u64, n: usize, count: usize) -> Vec<usize> {
    let mut rng = chimera_core::rng::stream(seed, &[0x1D6E, salt]);
    let mut chosen = sample(&mut rng, n, count.min(n)).into_vec();
    chosen.sort_unstable();
    chosen
}

/// Runs the judge and the generator `a` names on rows of a single table and puts their
/// scores into `report`.
pub async fn realism(
    a: &EvalArgs,
    real: &[RecordBatch],
    synthetic: &[RecordBatch],
    test: Option<&[RecordBatch]>,
    report: &mut EvalReport,
) -> Result<()> {
    if a.judge_rows == 0 {
        bail!("--judge-rows must be at least 1");
    }
    let columns = chimera_eval::column_names(real);
    let pick = |batches: &[RecordBatch], salt: u64, n: usize| -> Result<Vec<String>> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        records(batches, &columns, &sample_rows(a.seed, salt, rows, n))
    };
    if a.judge.is_some() && test.is_none() {
        bail!(
            "--judge scores held-out real records beside the synthetic ones: pass them with --test"
        );
    }
    let synthetic_records = pick(synthetic, 1, a.judge_rows)?;
    let real_records = match (test, &a.judge) {
        (Some(t), Some(_)) => pick(t, 2, a.judge_rows)?,
        _ => Vec::new(),
    };
    // Each candidate gets its own references, drawn from the training rows.
    let references = if a.judge.is_some() {
        (0..synthetic_records.len() + real_records.len())
            .map(|i| pick(real, 100 + i as u64, REFERENCES))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let candidates = Candidates {
        what: "records of one table".to_owned(),
        synthetic: synthetic_records,
        real: real_records,
        references,
        train: pick(real, 3, a.judge_rows)?,
        holdout: test.map(|t| pick(t, 4, a.judge_rows)).transpose()?,
    };
    let (realism, dlt) = judge_and_dlt(a, &candidates).await?;
    report.realism = realism;
    report.dlt = dlt;
    Ok(())
}

/// Rows `rows` (indices across the batches, ascending) as one-line JSON objects of `columns`,
/// in column order: numbers as JSON numbers, other values as their text, null as `null`.
pub fn records(batches: &[RecordBatch], columns: &[String], rows: &[usize]) -> Result<Vec<String>> {
    let options = FormatOptions::default();
    let mut out = Vec::with_capacity(rows.len());
    let mut next = rows.iter().peekable();
    let mut offset = 0;
    for batch in batches {
        let end = offset + batch.num_rows();
        let mut formatters = Vec::with_capacity(columns.len());
        for c in columns {
            let array = batch
                .column_by_name(c)
                .with_context(|| format!("a table has no column `{c}`"))?;
            let numeric = array.data_type().is_numeric()
                && !matches!(
                    array.data_type(),
                    DataType::Decimal128(..) | DataType::Decimal256(..)
                );
            formatters.push((
                c,
                array,
                numeric,
                ArrayFormatter::try_new(array.as_ref(), &options)?,
            ));
        }
        while let Some(&&row) = next.peek() {
            if row >= end {
                break;
            }
            next.next();
            let local = row - offset;
            let mut text = String::from("{");
            for (i, (name, array, numeric, f)) in formatters.iter().enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(&serde_json::to_string(name)?);
                text.push_str(": ");
                let value = f.value(local).to_string();
                let json = if array.is_null(local) {
                    "null".to_owned()
                } else if *numeric && value.parse::<f64>().is_ok_and(f64::is_finite) {
                    value
                } else {
                    serde_json::to_string(&value)?
                };
                text.push_str(&json);
            }
            text.push('}');
            out.push(text);
        }
        offset = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn records_are_json_objects_in_column_order() {
        let batch = |ages: Vec<Option<i64>>, names: Vec<Option<&str>>| {
            RecordBatch::try_from_iter([
                ("name", Arc::new(StringArray::from(names)) as _),
                ("age", Arc::new(Int64Array::from(ages)) as _),
                ("w", Arc::new(Float64Array::from(vec![0.5; 2])) as _),
            ])
            .unwrap()
        };
        let batches = [
            batch(vec![Some(30), None], vec![Some("a \"b\""), Some("c")]),
            batch(vec![Some(7), Some(8)], vec![None, Some("d")]),
        ];
        let columns: Vec<String> = ["age", "name"].map(String::from).to_vec();
        let r = records(&batches, &columns, &[0, 1, 2]).unwrap();
        assert_eq!(
            r,
            [
                r#"{"age": 30, "name": "a \"b\""}"#,
                r#"{"age": null, "name": "c"}"#,
                r#"{"age": 7, "name": null}"#,
            ]
        );
        for line in &r {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }
}
