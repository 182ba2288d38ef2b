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
const REFERENCES: usize = 3;

/// Runs the judge and the generator `a` names and puts their scores into `report`.
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
    let columns: Vec<String> = real
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default();
    let pick = |batches: &[RecordBatch], salt: u64, n: usize| -> Result<Vec<String>> {
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut rng = chimera_core::rng::stream(a.seed, &[0x1D6E, salt]);
        let mut chosen = sample(&mut rng, rows, n.min(rows)).into_vec();
        chosen.sort_unstable();
        records(batches, &columns, &chosen)
    };
    let what = "records of one table";

    if let Some(path) = &a.judge {
        let Some(test) = test else {
            bail!(
                "--judge scores held-out real records beside the synthetic ones: pass them with --test"
            );
        };
        let synthetic_records = pick(synthetic, 1, a.judge_rows)?;
        let real_records = pick(test, 2, a.judge_rows)?;
        // Each candidate gets its own references, drawn from the training rows.
        let references: Vec<Vec<String>> = (0..synthetic_records.len() + real_records.len())
            .map(|i| pick(real, 100 + i as u64, REFERENCES))
            .collect::<Result<_>>()?;
        let runtime = load_llm(path, &a.llm_run).await?;
        let batch = a.llm_run.llm_batch;
        let started = std::time::Instant::now();
        let candidates: Vec<String> = synthetic_records
            .iter()
            .chain(&real_records)
            .cloned()
            .collect();
        let scores = tokio::task::block_in_place(|| {
            Judge::new(&runtime, batch).scores(what, &candidates, &references)
        })
        .with_context(|| format!("--judge {}", path.display()))?;
        let (s, r) = scores.split_at(synthetic_records.len());
        let (synthetic, real) = (JudgeScores::of(s), JudgeScores::of(r));
        tracing::info!(
            records = scores.len(),
            seconds = started.elapsed().as_secs_f64(),
            synthetic = synthetic.mean,
            real = real.mean,
            "judge scored"
        );
        report.realism = Some(Realism {
            model: path.display().to_string(),
            references: REFERENCES,
            gap: real.mean - synthetic.mean,
            synthetic,
            real,
        });
    }

    if let Some(path) = &a.generator {
        let runtime = load_llm(path, &a.llm_run).await?;
        let batch = a.llm_run.llm_batch;
        let median_perplexity = |texts: Vec<String>| -> Result<f64> {
            let mut p = tokio::task::block_in_place(|| perplexity(&runtime, &texts, batch))
                .with_context(|| format!("--generator {}", path.display()))?;
            p.sort_by(f64::total_cmp);
            Ok(p.get(p.len() / 2).copied().unwrap_or(f64::NAN))
        };
        report.dlt = Some(Dlt {
            model: path.display().to_string(),
            records: a.judge_rows,
            train: median_perplexity(pick(real, 3, a.judge_rows)?)?,
            holdout: test
                .map(|t| pick(t, 4, a.judge_rows).and_then(median_perplexity))
                .transpose()?,
            synthetic: median_perplexity(pick(synthetic, 5, a.judge_rows)?)?,
        });
    }
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
