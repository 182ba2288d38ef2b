//! The fit pipeline over a table: pass 1 profiles every column, pass 2 encodes rows, counts
//! one-way marginals and keeps a sample for the structure search, pass 3 (only when the table is
//! larger than the sample) counts the chosen (child, parents) marginals. Memory stays bounded by
//! the sample, so tables larger than memory work.

use arrow::array::{Array, RecordBatch};
use chimera_core::bayesnet::{self, CodedTable, Edge};
use chimera_core::domain::{Code, Encoder};
use chimera_core::fit::{FitSettings, Fitter};
use chimera_core::model::Model;
use chimera_core::privacy::PrivacyMode;
use chimera_core::profile::ColumnStats;
use chimera_core::rng;
use chimera_core::schema::ColumnSchema;
use chimera_core::spec::Spec;
use futures::StreamExt;
use rand::Rng;
use rayon::prelude::*;

use crate::error::FitError;
use crate::read::{ReadError, TableSource};
use crate::values::{ColumnValues, column_schemas, column_values};

/// Rows kept in memory (encoded) for the structure search; larger tables get a third pass.
pub const SAMPLE_CAP: usize = 500_000;

/// Where a long fit reports how far it is.
pub trait Progress: Send + Sync {
    /// A pass over the table starts; `rows` is known after the first pass.
    fn start(&self, pass: &str, rows: Option<u64>);
    fn advance(&self, rows: u64);
    fn finish(&self);
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// Fits a model of the table read from `source`.
pub async fn fit_table(
    source: &TableSource,
    spec: Spec,
    settings: FitSettings,
    seed: u64,
    progress: &dyn Progress,
) -> Result<Model, FitError> {
    let table = spec
        .table
        .clone()
        .unwrap_or_else(|| source.name().to_string());
    let schemas = column_schemas(&table, &source.schema())?;
    // Under DP a table of derived columns only (a relational sequence model) may be empty.
    let empty_ok = matches!(settings.privacy, PrivacyMode::Dp { .. })
        && schemas.iter().all(|c| settings.derived.contains(&c.name));
    let mut fitter = Fitter::new(&table, schemas.clone(), spec, settings)?;

    // Pass 1: profile.
    progress.start("profile", None);
    let mut stats: Vec<ColumnStats> = schemas.iter().map(|c| ColumnStats::new(c.kind)).collect();
    let mut rows = 0u64;
    for_each_batch(source, &table, |batch| {
        let converted = convert(&table, &schemas, batch, rows)?;
        stats
            .par_iter_mut()
            .zip(converted.par_iter())
            .for_each(|(s, v)| push_values(s, v));
        rows += batch.num_rows() as u64;
        progress.advance(batch.num_rows() as u64);
        Ok(())
    })
    .await?;
    progress.finish();
    if rows == 0 && !empty_ok {
        return Err(FitError::Core(chimera_core::CoreError::Table {
            table,
            message: "it has no rows".into(),
        }));
    }
    fitter.plan_columns(&stats)?;
    drop(stats);

    let attributes = fitter.attributes().to_vec();
    let encoders = attribute_encoders(&fitter);
    let cards = fitter.cards();

    // Pass 2: encode, one-way counts, sample.
    progress.start("encode", Some(rows));
    let mut one_way: Vec<Vec<f64>> = cards.iter().map(|&c| vec![0.0; c]).collect();
    let mut sample = CodedTable::new(cards.clone());
    let keep_all = rows as usize <= SAMPLE_CAP;
    let mut reservoir_rng = rng::stream(seed, &[0x5E5E]);
    let mut seen = 0u64;
    for_each_batch(source, &table, |batch| {
        let codes = encode_batch(&table, &schemas, &attributes, &encoders, batch, seen)?;
        for (counts, col) in one_way.iter_mut().zip(&codes) {
            for &c in col {
                counts[c as usize] += 1.0;
            }
        }
        let n = batch.num_rows();
        if keep_all {
            for (dst, src) in sample.columns.iter_mut().zip(&codes) {
                dst.extend_from_slice(src);
            }
        } else {
            for r in 0..n {
                let i = seen as usize + r;
                if i < SAMPLE_CAP {
                    for (dst, src) in sample.columns.iter_mut().zip(&codes) {
                        dst.push(src[r]);
                    }
                } else {
                    let j = reservoir_rng.random_range(0..=i);
                    if j < SAMPLE_CAP {
                        for (dst, src) in sample.columns.iter_mut().zip(&codes) {
                            dst[j] = src[r];
                        }
                    }
                }
            }
        }
        seen += n as u64;
        progress.advance(n as u64);
        Ok(())
    })
    .await?;
    progress.finish();

    let structure = tokio::task::block_in_place(|| fitter.structure(&one_way, &sample))?;
    // The structure step may merge rare categories: count the tables in the new codes.
    let encoders = attribute_encoders(&fitter);
    let cards = fitter.cards();
    let sample = fitter.recode(sample);

    // Pass 3 only when the sample is not the whole table.
    let joint: Vec<Vec<f64>> = if keep_all {
        tokio::task::block_in_place(|| joint_counts(&sample, &structure))
    } else {
        drop(sample);
        progress.start("count", Some(rows));
        let mut joint: Vec<Vec<f64>> = structure
            .iter()
            .map(|e| vec![0.0; cells(&cards, e)])
            .collect();
        let mut seen = 0u64;
        for_each_batch(source, &table, |batch| {
            let codes = encode_batch(&table, &schemas, &attributes, &encoders, batch, seen)?;
            let t = CodedTable {
                cards: cards.clone(),
                columns: codes,
            };
            let add = joint_counts(&t, &structure);
            for (acc, part) in joint.iter_mut().zip(add) {
                for (a, p) in acc.iter_mut().zip(part) {
                    *a += p;
                }
            }
            seen += batch.num_rows() as u64;
            progress.advance(batch.num_rows() as u64);
            Ok(())
        })
        .await?;
        progress.finish();
        joint
    };
    Ok(tokio::task::block_in_place(|| {
        fitter.finish(&structure, &joint)
    })?)
}

/// An encoder per network attribute, from the fitter's current encodings.
fn attribute_encoders(fitter: &Fitter) -> Vec<Encoder> {
    fitter
        .attributes()
        .iter()
        .map(|&c| {
            Encoder::new(
                fitter.columns()[c]
                    .encoding
                    .as_ref()
                    .expect("attribute has encoding"),
            )
        })
        .collect()
}

fn cells(cards: &[usize], e: &Edge) -> usize {
    cards[e.child] * e.parents.iter().map(|&p| cards[p]).product::<usize>()
}

fn joint_counts(t: &CodedTable, structure: &[Edge]) -> Vec<Vec<f64>> {
    structure
        .par_iter()
        .map(|e| {
            let mut attrs = vec![e.child];
            attrs.extend(&e.parents);
            bayesnet::contingency(t, &attrs)
        })
        .collect()
}

/// Runs `f` on every batch of a fresh pass; heavy work inside runs off the async workers.
async fn for_each_batch(
    source: &TableSource,
    table: &str,
    mut f: impl FnMut(&RecordBatch) -> Result<(), FitError>,
) -> Result<(), FitError> {
    let mut stream = source.stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| FitError::Read(ReadError::from_datafusion(table, e)))?;
        if batch.num_rows() == 0 {
            continue;
        }
        tokio::task::block_in_place(|| f(&batch))?;
    }
    Ok(())
}

fn convert(
    table: &str,
    schemas: &[ColumnSchema],
    batch: &RecordBatch,
    first_row: u64,
) -> Result<Vec<ColumnValues>, FitError> {
    schemas
        .par_iter()
        .zip(batch.columns().par_iter())
        .map(|(c, a)| column_values(table, c, a, first_row))
        .collect()
}

fn push_values(s: &mut ColumnStats, v: &ColumnValues) {
    match v {
        ColumnValues::Strings(a) => {
            for x in a.iter() {
                match x {
                    Some(x) => s.push_str(x),
                    None => s.push_null(),
                }
            }
        }
        ColumnValues::Numbers(a) => {
            for x in a.iter() {
                match x {
                    Some(x) => s.push_number(x),
                    None => s.push_null(),
                }
            }
        }
    }
}

fn encode_batch(
    table: &str,
    schemas: &[ColumnSchema],
    attributes: &[usize],
    encoders: &[Encoder],
    batch: &RecordBatch,
    first_row: u64,
) -> Result<Vec<Vec<Code>>, FitError> {
    attributes
        .par_iter()
        .zip(encoders.par_iter())
        .map(|(&col, enc)| {
            let values = column_values(table, &schemas[col], batch.column(col), first_row)?;
            let codes: Option<Vec<Code>> = match &values {
                ColumnValues::Strings(a) => (0..a.len())
                    .map(|i| enc.encode_str(a.is_valid(i).then(|| a.value(i))))
                    .collect(),
                ColumnValues::Numbers(a) => (0..a.len())
                    .map(|i| enc.encode_number(a.is_valid(i).then(|| a.value(i))))
                    .collect(),
            };
            codes.ok_or_else(|| {
                FitError::Internal(format!(
                    "column `{}` holds a value its encoding cannot represent",
                    schemas[col].name
                ))
            })
        })
        .collect()
}
