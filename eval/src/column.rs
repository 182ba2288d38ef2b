//! Columns of the real, synthetic and test tables, read from Arrow into one encoding.
//!
//! Numeric columns become `f64` (NaN for null); categorical columns become codes into
//! the sorted union of the categories of every table, with one extra code for null.

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Float64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::record_batch::RecordBatch;

use crate::error::{EvalError, TableRole};

/// How a column is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    /// Integers, floats, decimals, dates, times and durations, compared as numbers.
    Numeric,
    /// Strings, booleans and dictionaries, compared as categories.
    Categorical,
}

impl ColumnKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        }
    }
}

/// One value per table: the real and synthetic tables always, the test table when given.
#[derive(Debug, Clone)]
pub(crate) struct PerTable<T> {
    pub real: T,
    pub synthetic: T,
    pub test: Option<T>,
}

/// A column's values in every table.
#[derive(Debug, Clone)]
pub(crate) enum ColumnValues {
    /// NaN marks null (and NaN) values.
    Numeric(PerTable<Vec<f64>>),
    /// `codes[i] < categories.len()` indexes `categories`; `categories.len()` is null.
    Categorical {
        categories: Vec<String>,
        codes: PerTable<Vec<u32>>,
    },
}

/// A column of the real table with its values in every table.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    pub values: ColumnValues,
}

/// The tables being compared, as Arrow batches.
#[derive(Clone, Copy)]
pub(crate) struct Tables<'a> {
    pub real: &'a [RecordBatch],
    pub synthetic: &'a [RecordBatch],
    pub test: Option<&'a [RecordBatch]>,
}

/// Rows of a table across its batches.
pub(crate) fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// Column names of a table, in the order of its first batch's schema.
pub fn column_names(batches: &[RecordBatch]) -> Vec<String> {
    batches
        .first()
        .map(|b| {
            b.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads and encodes the real table's column `name` in every table.
pub(crate) fn read_column(tables: Tables<'_>, name: &str) -> Result<Column, EvalError> {
    let real = arrays(tables.real, name, TableRole::Real)?;
    let synthetic = arrays(tables.synthetic, name, TableRole::Synthetic)?;
    let test = tables
        .test
        .map(|t| arrays(t, name, TableRole::Test))
        .transpose()?;

    let kind = table_kind(&real, name, TableRole::Real)?.unwrap_or(ColumnKind::Categorical);
    check_kind(&synthetic, name, TableRole::Synthetic, kind)?;
    if let Some(test) = &test {
        check_kind(test, name, TableRole::Test, kind)?;
    }

    let values = match kind {
        ColumnKind::Numeric => ColumnValues::Numeric(PerTable {
            real: numeric_values(&real, name, TableRole::Real)?,
            synthetic: numeric_values(&synthetic, name, TableRole::Synthetic)?,
            test: test
                .as_deref()
                .map(|t| numeric_values(t, name, TableRole::Test))
                .transpose()?,
        }),
        ColumnKind::Categorical => categorical_values(&real, &synthetic, test.as_deref(), name)?,
    };
    Ok(Column {
        name: name.to_owned(),
        values,
    })
}

fn arrays(
    batches: &[RecordBatch],
    name: &str,
    table: TableRole,
) -> Result<Vec<ArrayRef>, EvalError> {
    batches
        .iter()
        .map(|b| {
            b.column_by_name(name)
                .cloned()
                .ok_or_else(|| EvalError::MissingColumn {
                    column: name.to_owned(),
                    table,
                })
        })
        .collect()
}

/// The kind of an Arrow type: `Ok(None)` for the `Null` type, which fits either kind.
fn kind_of(data_type: &DataType) -> Result<Option<ColumnKind>, ()> {
    use DataType::*;
    match data_type {
        Null => Ok(None),
        t if t.is_numeric() => Ok(Some(ColumnKind::Numeric)),
        Date32 | Date64 | Timestamp(_, _) | Time32(_) | Time64(_) | Duration(_) => {
            Ok(Some(ColumnKind::Numeric))
        }
        Utf8 | LargeUtf8 | Utf8View | Boolean | Dictionary(_, _) => {
            Ok(Some(ColumnKind::Categorical))
        }
        _ => Err(()),
    }
}

fn table_kind(
    arrays: &[ArrayRef],
    name: &str,
    table: TableRole,
) -> Result<Option<ColumnKind>, EvalError> {
    let mut kind = None;
    for array in arrays {
        let data_type = array.data_type();
        let this = kind_of(data_type).map_err(|()| EvalError::UnsupportedType {
            column: name.to_owned(),
            table,
            data_type: data_type.to_string(),
        })?;
        match (kind, this) {
            (None, k) => kind = k,
            (Some(k), Some(t)) if k != t => {
                return Err(EvalError::TypeMismatch {
                    column: name.to_owned(),
                    table,
                    expected: k.name(),
                    found: data_type.to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(kind)
}

fn check_kind(
    arrays: &[ArrayRef],
    name: &str,
    table: TableRole,
    expected: ColumnKind,
) -> Result<(), EvalError> {
    match table_kind(arrays, name, table)? {
        Some(found) if found != expected => Err(EvalError::TypeMismatch {
            column: name.to_owned(),
            table,
            expected: expected.name(),
            found: arrays
                .iter()
                .map(|a| a.data_type())
                .find(|t| kind_of(t) == Ok(Some(found)))
                .map(ToString::to_string)
                .unwrap_or_default(),
        }),
        _ => Ok(()),
    }
}

/// Values as `f64`, NaN for null. Dates, times and durations become seconds (since the
/// epoch, since midnight, or elapsed) so that tables with different units compare.
fn numeric_values(
    arrays: &[ArrayRef],
    name: &str,
    table: TableRole,
) -> Result<Vec<f64>, EvalError> {
    let mut out = Vec::with_capacity(arrays.iter().map(|a| a.len()).sum());
    for array in arrays {
        append_numeric(array, &mut out).map_err(|source| EvalError::Arrow {
            column: name.to_owned(),
            table,
            source,
        })?;
    }
    // -0.0 and 0.0 are one value; NaN already means null.
    for v in &mut out {
        *v += 0.0;
    }
    Ok(out)
}

fn append_numeric(array: &ArrayRef, out: &mut Vec<f64>) -> Result<(), arrow::error::ArrowError> {
    use DataType::*;
    match array.data_type() {
        Null => out.extend(std::iter::repeat_n(f64::NAN, array.len())),
        Date32 => push_scaled::<Date32Type>(array, out, |d| f64::from(d) * 86_400.0),
        Date64 => push_scaled::<Date64Type>(array, out, |ms| ms as f64 / 1e3),
        Timestamp(unit, _) => match unit {
            TimeUnit::Second => push_scaled::<TimestampSecondType>(array, out, |s| s as f64),
            TimeUnit::Millisecond => {
                push_scaled::<TimestampMillisecondType>(array, out, |v| v as f64 / 1e3)
            }
            TimeUnit::Microsecond => {
                push_scaled::<TimestampMicrosecondType>(array, out, |v| v as f64 / 1e6)
            }
            TimeUnit::Nanosecond => {
                push_scaled::<TimestampNanosecondType>(array, out, |v| v as f64 / 1e9)
            }
        },
        Time32(TimeUnit::Second) => push_scaled::<Time32SecondType>(array, out, f64::from),
        Time32(_) => push_scaled::<Time32MillisecondType>(array, out, |v| f64::from(v) / 1e3),
        Time64(TimeUnit::Microsecond) => {
            push_scaled::<Time64MicrosecondType>(array, out, |v| v as f64 / 1e6)
        }
        Time64(_) => push_scaled::<Time64NanosecondType>(array, out, |v| v as f64 / 1e9),
        Duration(unit) => match unit {
            TimeUnit::Second => push_scaled::<DurationSecondType>(array, out, |s| s as f64),
            TimeUnit::Millisecond => {
                push_scaled::<DurationMillisecondType>(array, out, |v| v as f64 / 1e3)
            }
            TimeUnit::Microsecond => {
                push_scaled::<DurationMicrosecondType>(array, out, |v| v as f64 / 1e6)
            }
            TimeUnit::Nanosecond => {
                push_scaled::<DurationNanosecondType>(array, out, |v| v as f64 / 1e9)
            }
        },
        _ => {
            let floats = cast(array, &Float64)?;
            out.extend(
                floats
                    .as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN)),
            );
        }
    }
    Ok(())
}

fn push_scaled<T: ArrowPrimitiveType>(
    array: &ArrayRef,
    out: &mut Vec<f64>,
    to_f64: impl Fn(T::Native) -> f64,
) {
    out.extend(
        array
            .as_primitive::<T>()
            .iter()
            .map(|v| v.map_or(f64::NAN, &to_f64)),
    );
}

/// Codes into the sorted union of the categories of every table.
fn categorical_values(
    real: &[ArrayRef],
    synthetic: &[ArrayRef],
    test: Option<&[ArrayRef]>,
    name: &str,
) -> Result<ColumnValues, EvalError> {
    let strings = |arrays: &[ArrayRef], table| -> Result<Vec<ArrayRef>, EvalError> {
        arrays
            .iter()
            .map(|a| {
                cast(a, &DataType::Utf8).map_err(|source| EvalError::Arrow {
                    column: name.to_owned(),
                    table,
                    source,
                })
            })
            .collect()
    };
    let real = strings(real, TableRole::Real)?;
    let synthetic = strings(synthetic, TableRole::Synthetic)?;
    let test = test.map(|t| strings(t, TableRole::Test)).transpose()?;

    let mut index = CategoryIndex::default();
    let mut real_codes = index.encode(&real);
    let mut synthetic_codes = index.encode(&synthetic);
    let mut test_codes = test.as_deref().map(|t| index.encode(t));
    let first_seen = index.first_seen;

    let mut order: Vec<u32> = (0..first_seen.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| first_seen[a as usize].cmp(first_seen[b as usize]));
    let mut rank = vec![0u32; order.len()];
    for (position, &code) in order.iter().enumerate() {
        rank[code as usize] = position as u32;
    }
    let null_code = order.len() as u32;
    let renumber = |codes: &mut Vec<u32>| {
        for c in codes.iter_mut() {
            *c = if *c == CategoryIndex::NULL {
                null_code
            } else {
                rank[*c as usize]
            };
        }
    };
    renumber(&mut real_codes);
    renumber(&mut synthetic_codes);
    if let Some(t) = test_codes.as_mut() {
        renumber(t);
    }
    let categories = order
        .iter()
        .map(|&c| first_seen[c as usize].to_owned())
        .collect();
    Ok(ColumnValues::Categorical {
        categories,
        codes: PerTable {
            real: real_codes,
            synthetic: synthetic_codes,
            test: test_codes,
        },
    })
}

/// Codes of categories in order of first sight, renumbered to sorted order afterwards.
#[derive(Default)]
struct CategoryIndex<'s> {
    seen: HashMap<&'s str, u32>,
    first_seen: Vec<&'s str>,
}

impl<'s> CategoryIndex<'s> {
    /// The provisional code of null.
    const NULL: u32 = u32::MAX;

    /// Provisional codes of Utf8 arrays.
    fn encode(&mut self, arrays: &'s [ArrayRef]) -> Vec<u32> {
        let mut codes = Vec::with_capacity(arrays.iter().map(|a| a.len()).sum());
        for array in arrays {
            for value in array.as_string::<i32>().iter() {
                codes.push(match value {
                    None => Self::NULL,
                    Some(s) => match self.seen.get(s) {
                        Some(&code) => code,
                        None => {
                            let code = self.first_seen.len() as u32;
                            self.seen.insert(s, code);
                            self.first_seen.push(s);
                            code
                        }
                    },
                });
            }
        }
        codes
    }
}
