//! From Arrow columns to the values chimera models: strings, or numbers (days for dates and
//! timestamps). Non-finite numbers are rejected here, with the table, column and row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit};
use chimera_core::schema::{ColumnSchema, ValueKind};

use crate::error::FitError;

/// The family of an Arrow type, or None when chimera cannot model it.
pub fn value_kind(dt: &DataType) -> Option<ValueKind> {
    use DataType::*;
    Some(match dt {
        Boolean => ValueKind::Boolean,
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => ValueKind::Integer,
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => ValueKind::Float,
        Utf8 | LargeUtf8 | Utf8View => ValueKind::String,
        Dictionary(_, v) if matches!(v.as_ref(), Utf8 | LargeUtf8 | Utf8View) => ValueKind::String,
        Date32 | Date64 => ValueKind::Date,
        Timestamp(..) => ValueKind::Timestamp,
        _ => return None,
    })
}

/// chimera's view of a table's columns.
pub fn column_schemas(table: &str, schema: &Schema) -> Result<Vec<ColumnSchema>, FitError> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let kind = value_kind(f.data_type()).ok_or_else(|| FitError::UnsupportedType {
                table: table.into(),
                column: f.name().clone(),
                data_type: f.data_type().to_string(),
            })?;
            Ok(ColumnSchema {
                name: f.name().clone(),
                kind,
                arrow_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
        })
        .collect()
}

/// One batch's values of one column.
pub enum ColumnValues {
    Strings(StringArray),
    Numbers(Float64Array),
}

const MICROS_PER_DAY: f64 = 86_400_000_000.0;

/// Converts an Arrow column; `first_row` is the batch's offset in the table, for error messages.
pub fn column_values(
    table: &str,
    column: &ColumnSchema,
    array: &ArrayRef,
    first_row: u64,
) -> Result<ColumnValues, FitError> {
    let arrow_err = |e: arrow::error::ArrowError| FitError::Arrow {
        table: table.into(),
        column: column.name.clone(),
        source: e,
    };
    match column.kind {
        ValueKind::String | ValueKind::Boolean => {
            let a = cast(array, &DataType::Utf8).map_err(arrow_err)?;
            Ok(ColumnValues::Strings(a.as_string::<i32>().clone()))
        }
        ValueKind::Integer | ValueKind::Float => {
            let a = cast(array, &DataType::Float64).map_err(arrow_err)?;
            let a = a.as_primitive::<Float64Type>().clone();
            if let Some(i) = (0..a.len()).find(|&i| a.is_valid(i) && !a.value(i).is_finite()) {
                return Err(FitError::NonFinite {
                    table: table.into(),
                    column: column.name.clone(),
                    row: first_row + i as u64 + 1,
                    value: a.value(i),
                });
            }
            Ok(ColumnValues::Numbers(a))
        }
        ValueKind::Date | ValueKind::Timestamp => {
            let micros: ArrayRef = match array.data_type() {
                DataType::Date32 => {
                    let d = cast(array, &DataType::Int32).map_err(arrow_err)?;
                    let d = cast(&d, &DataType::Float64).map_err(arrow_err)?;
                    return Ok(ColumnValues::Numbers(
                        d.as_primitive::<Float64Type>().clone(),
                    ));
                }
                DataType::Date64 => {
                    let ms = cast(array, &DataType::Int64).map_err(arrow_err)?;
                    let ms = ms.as_primitive::<Int64Type>();
                    Arc::new(arrow::compute::kernels::arity::unary::<_, _, Int64Type>(
                        ms,
                        |x| x.saturating_mul(1000),
                    ))
                }
                DataType::Timestamp(unit, _) => {
                    let raw = cast(array, &DataType::Int64).map_err(arrow_err)?;
                    let raw = raw.as_primitive::<Int64Type>();
                    let (mul, div) = match unit {
                        TimeUnit::Second => (1_000_000, 1),
                        TimeUnit::Millisecond => (1000, 1),
                        TimeUnit::Microsecond => (1, 1),
                        TimeUnit::Nanosecond => (1, 1000),
                    };
                    Arc::new(arrow::compute::kernels::arity::unary::<_, _, Int64Type>(
                        raw,
                        move |x| x.saturating_mul(mul) / div,
                    ))
                }
                other => {
                    return Err(FitError::UnsupportedType {
                        table: table.into(),
                        column: column.name.clone(),
                        data_type: other.to_string(),
                    });
                }
            };
            let m = micros.as_primitive::<Int64Type>();
            let days: Float64Array = m.unary(|x| x as f64 / MICROS_PER_DAY);
            Ok(ColumnValues::Numbers(days))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int32Array, TimestampSecondArray};

    fn col(kind: ValueKind) -> ColumnSchema {
        ColumnSchema {
            name: "x".into(),
            kind,
            arrow_type: String::new(),
            nullable: true,
        }
    }

    #[test]
    fn non_finite_numbers_are_rejected_with_the_row() {
        let a: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), None, Some(f64::NAN)]));
        let e = column_values("t", &col(ValueKind::Float), &a, 100)
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(msg.contains("`x`") && msg.contains("row 103"), "{msg}");
    }

    #[test]
    fn timestamps_become_days() {
        let a: ArrayRef = Arc::new(TimestampSecondArray::from(vec![86_400 * 3 + 43_200]));
        let ColumnValues::Numbers(d) =
            column_values("t", &col(ValueKind::Timestamp), &a, 0).unwrap()
        else {
            panic!()
        };
        assert!((d.value(0) - 3.5).abs() < 1e-9);
        let i: ArrayRef = Arc::new(Int32Array::from(vec![7]));
        let ColumnValues::Numbers(n) = column_values("t", &col(ValueKind::Integer), &i, 0).unwrap()
        else {
            panic!()
        };
        assert_eq!(n.value(0), 7.0);
    }
}
