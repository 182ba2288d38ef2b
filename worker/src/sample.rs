//! A shard's rows: ancestral sampling of codes, then decoding to Arrow columns with the input's
//! names and types. Every random stream is derived from the job seed and the shard id only.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chimera_core::bayesnet::{SAMPLE_CHUNK, Sampler};
use chimera_core::domain::Encoding;
use chimera_core::domain::{Code, Decoder, Value};
use chimera_core::idformat::IdFormat;
use chimera_core::model::{FillScope, Model};
use chimera_core::rng;
use chimera_core::schema::{Role, ValueKind};
use rayon::prelude::*;
use thiserror::Error;

/// Why a shard could not be sampled.
#[derive(Debug, Error)]
pub enum SampleError {
    #[error("model column `{column}`: unknown Arrow type `{data_type}`")]
    Type { column: String, data_type: String },
    #[error("column `{column}`: {source}")]
    Arrow {
        column: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("invalid model: {0}")]
    Model(String),
}

pub use chimera_core::plan::{ShardPlan, plan};

/// Turns a model into record batches, shard by shard.
pub struct ShardSampler {
    model: Arc<Model>,
    sampler: Sampler,
    decoders: Vec<Option<Decoder>>,
    /// Network attribute of each column, if any.
    attribute_of: Vec<Option<usize>>,
    schema: SchemaRef,
    types: Vec<DataType>,
}

/// A sampled shard before the LLM fill.
#[derive(Debug)]
pub struct SampledShard {
    /// The rows, [`BATCH_ROWS`] per batch.
    pub batches: Vec<RecordBatch>,
    /// Per LLM column (column index): the shard rows, ascending, whose value the LLM writes.
    pub fill: Vec<(usize, Vec<u32>)>,
}

/// Rows per output record batch.
pub const BATCH_ROWS: usize = 65_536;

impl ShardSampler {
    pub fn new(model: Arc<Model>) -> Result<ShardSampler, SampleError> {
        model
            .check()
            .map_err(|e| SampleError::Model(e.to_string()))?;
        let mut types = Vec::new();
        let mut fields = Vec::new();
        for c in &model.columns {
            let dt = DataType::from_str(&c.schema.arrow_type).map_err(|_| SampleError::Type {
                column: c.schema.name.clone(),
                data_type: c.schema.arrow_type.clone(),
            })?;
            fields.push(Field::new(&c.schema.name, dt.clone(), true));
            types.push(dt);
        }
        let attribute_of = attribute_of(&model);
        Ok(ShardSampler {
            sampler: Sampler::new(&model.network, model.attributes.len()),
            decoders: model
                .columns
                .iter()
                .map(|c| c.encoding.as_ref().map(Decoder::new))
                .collect(),
            attribute_of,
            schema: Arc::new(Schema::new(fields)),
            types,
            model,
        })
    }

    /// The output schema: the input's names and Arrow types.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Samples one shard.
    pub fn sample(&self, shard: &ShardPlan) -> Result<Vec<RecordBatch>, SampleError> {
        Ok(self.sample_shard(shard)?.batches)
    }

    /// Samples one shard and says which text cells the LLM is to write: per LLM column (see
    /// [`Model::llm_columns`]), the rows where the network drew `other` (or, with
    /// [`FillScope::All`], every non-null row). Those cells hold a placeholder until filled.
    pub fn sample_shard(&self, shard: &ShardPlan) -> Result<SampledShard, SampleError> {
        let rows = shard.rows as usize;
        let codes = self.sampler.sample(rows, shard.seed);
        let mut fill = Vec::new();
        if let Some(llm) = &self.model.llm {
            for c in self.model.llm_columns() {
                let (Some(a), Some(Encoding::Categorical(enc))) =
                    (self.attribute_of[c], &self.model.columns[c].encoding)
                else {
                    continue;
                };
                let other = enc.other.then_some(enc.values.len() as Code);
                let null = enc
                    .null
                    .then_some((enc.values.len() + enc.other as usize) as Code);
                let cells: Vec<u32> = codes[a]
                    .iter()
                    .enumerate()
                    .filter(|&(_, &k)| match llm.scope {
                        FillScope::Other => Some(k) == other,
                        FillScope::All => Some(k) != null,
                    })
                    .map(|(i, _)| i as u32)
                    .collect();
                fill.push((c, cells));
            }
        }
        let mut batches = Vec::new();
        let mut start = 0usize;
        while start < rows {
            let n = BATCH_ROWS.min(rows - start);
            let columns: Vec<ArrayRef> = (0..self.model.columns.len())
                .into_par_iter()
                .map(|c| self.column(c, &codes, shard, start, n))
                .collect::<Result<_, _>>()?;
            let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| {
                SampleError::Arrow {
                    column: String::new(),
                    source: e,
                }
            })?;
            batches.push(batch);
            start += n;
        }
        Ok(SampledShard { batches, fill })
    }

    fn column(
        &self,
        c: usize,
        codes: &[Vec<Code>],
        shard: &ShardPlan,
        start: usize,
        n: usize,
    ) -> Result<ArrayRef, SampleError> {
        let col = &self.model.columns[c];
        let kind = col.schema.kind;
        let arrow_err = |e| SampleError::Arrow {
            column: col.schema.name.clone(),
            source: e,
        };
        let raw: ArrayRef = match (col.role, self.attribute_of[c], &self.decoders[c]) {
            (Role::Identifier, _, _) | (_, None, _) | (_, _, None) => {
                identifiers(kind, col.format.as_ref(), shard, start, n, c as u64)
            }
            (_, Some(a), Some(dec)) => {
                let codes = &codes[a][start..start + n];
                // Streams per (shard, column, chunk of rows): reproducible whatever the threads.
                let chunk0 = start / SAMPLE_CHUNK;
                let mut rng = rng::stream(shard.seed, &[0xDEC0, c as u64, chunk0 as u64]);
                decode_column(kind, dec, codes, &mut rng)
            }
        };
        let target = &self.types[c];
        if raw.data_type() == target {
            Ok(raw)
        } else {
            cast(&raw, target).map_err(arrow_err)
        }
    }
}

/// The network attribute of each column of `model`, if any.
pub(crate) fn attribute_of(model: &Model) -> Vec<Option<usize>> {
    let mut out = vec![None; model.columns.len()];
    for (a, &c) in model.attributes.iter().enumerate() {
        out[c] = Some(a);
    }
    out
}

/// Fresh unique keys: integers numbered from 1 in output order; strings in the column's format
/// (learnt or declared; unique while the format has room) or as 16 hex digits, of a keyed
/// permutation of the row number (not guessable from position).
fn identifiers(
    kind: ValueKind,
    format: Option<&IdFormat>,
    shard: &ShardPlan,
    start: usize,
    n: usize,
    column: u64,
) -> ArrayRef {
    let first = shard.first_row + start as u64;
    match kind {
        ValueKind::Integer | ValueKind::Float => {
            let mut b = Int64Builder::with_capacity(n);
            for i in 0..n as u64 {
                b.append_value((first + i + 1) as i64);
            }
            Arc::new(b.finish())
        }
        _ => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            let key = rng::mix64(column ^ 0xC41D);
            for i in 0..n as u64 {
                match format {
                    Some(f) => b.append_value(f.render(first + i, key)),
                    None => b.append_value(format!("{:016x}", rng::mix64((first + i) ^ key))),
                }
            }
            Arc::new(b.finish())
        }
    }
}

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// The day a time of `days` falls on as [`values_array`] writes it: in whole seconds, so a time
/// a hair before midnight is written as midnight, on the next day.
pub(crate) fn written_day(days: f64) -> f64 {
    ((days * 86_400.0).round() / 86_400.0).floor()
}

fn decode_column<R: rand::Rng>(
    kind: ValueKind,
    dec: &Decoder,
    codes: &[Code],
    rng: &mut R,
) -> ArrayRef {
    values_array(kind, &decode_values(dec, codes, rng))
}

/// Decodes codes of one column. Stratified per code: the values decoded from one code spread
/// evenly over its bin.
pub(crate) fn decode_values<'d, R: rand::Rng>(
    dec: &'d Decoder,
    codes: &[Code],
    rng: &mut R,
) -> Vec<Value<'d>> {
    let groups: Vec<usize> = codes.iter().map(|&k| k as usize).collect();
    let cards = dec.encoding().cardinality();
    let us = rng::stratified_uniforms(&groups, cards, rng);
    codes
        .iter()
        .zip(us)
        .map(|(&k, u)| dec.decode_at(k, u))
        .collect()
}

/// An Arrow array of `kind` from decoded values (days for dates and timestamps).
pub(crate) fn values_array(kind: ValueKind, values: &[Value<'_>]) -> ArrayRef {
    let n = values.len();
    match kind {
        ValueKind::String => {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for v in values {
                match v {
                    Value::Str(s) => b.append_value(s),
                    Value::Number(x) => b.append_value(x.to_string()),
                    Value::Null => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ValueKind::Boolean => {
            let mut b = BooleanBuilder::with_capacity(n);
            for v in values {
                match v {
                    Value::Str(s) => b.append_value(*s == "true"),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ValueKind::Integer => {
            let mut b = Int64Builder::with_capacity(n);
            for v in values {
                match v {
                    Value::Number(x) => b.append_value(x.round() as i64),
                    Value::Str(s) => match s.parse::<i64>() {
                        Ok(v) => b.append_value(v),
                        Err(_) => b.append_null(),
                    },
                    Value::Null => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ValueKind::Float => {
            let mut b = Float64Builder::with_capacity(n);
            for v in values {
                match v {
                    Value::Number(x) => b.append_value(*x),
                    Value::Str(s) => match s.parse::<f64>() {
                        Ok(v) => b.append_value(v),
                        Err(_) => b.append_null(),
                    },
                    Value::Null => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ValueKind::Date => {
            let mut b = Int32Builder::with_capacity(n);
            for v in values {
                match v {
                    Value::Number(x) => b.append_value(x.floor() as i32),
                    _ => b.append_null(),
                }
            }
            let days: ArrayRef = Arc::new(b.finish());
            cast(&days, &DataType::Date32).unwrap_or(days)
        }
        ValueKind::Timestamp => {
            let mut b = Int64Builder::with_capacity(n);
            for v in values {
                match v {
                    // whole seconds: sub-second noise reads as fake precision
                    // (in f64, so a time beyond the type's range saturates instead of
                    // overflowing)
                    Value::Number(x) => {
                        b.append_value((((x * MICROS_PER_DAY) / 1e6).round() * 1e6) as i64)
                    }
                    _ => b.append_null(),
                }
            }
            let micros: ArrayRef = Arc::new(b.finish());
            cast(&micros, &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap_or(micros)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{values_array, written_day};
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;
    use chimera_core::domain::Value;
    use chimera_core::schema::ValueKind;

    #[test]
    fn a_time_falls_on_the_day_it_is_written_on() {
        // 2182-05-30 00:00:00 less a rounding error: written as midnight, so on the 30th (a
        // date of death placed from it on the 29th came out before the discharge).
        let midnight = 77_244.0;
        for (days, day) in [
            (midnight - 1e-11, midnight),
            (midnight, midnight),
            (midnight - 1.0 / 86_400.0, midnight - 1.0),
            (midnight + 0.5, midnight),
        ] {
            assert_eq!(written_day(days), day, "{days}");
            let a = values_array(ValueKind::Timestamp, &[Value::Number(days)]);
            let micros = a.as_primitive::<TimestampMicrosecondType>().value(0);
            assert_eq!(micros.div_euclid(86_400_000_000) as f64, day, "{days}");
        }
    }
}
