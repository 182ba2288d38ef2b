//! Value parsers for CSV text and column type inference over a sample.
//!
//! Parsers are strict so that a column is only typed when every sampled value
//! fits: integers with leading zeros (`007`, ZIP and ICD codes) stay text,
//! integers too large for `i64` stay text rather than losing digits in a
//! float, and `NaN`/`inf` are never numbers (see [`is_non_finite`]).

use arrow::datatypes::{DataType, TimeUnit};
use chimera_core::schema::days_from_civil;

/// The column types the CSV reader produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnKind {
    Boolean,
    Int64,
    Float64,
    /// Days since 1970-01-01, from `YYYY-MM-DD`.
    Date32,
    /// Microseconds since 1970-01-01 00:00:00, no time zone.
    Timestamp,
    Utf8,
}

impl ColumnKind {
    /// The Arrow type of the column.
    pub(crate) fn data_type(self) -> DataType {
        match self {
            ColumnKind::Boolean => DataType::Boolean,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Float64 => DataType::Float64,
            ColumnKind::Date32 => DataType::Date32,
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnKind::Utf8 => DataType::Utf8,
        }
    }

    /// The kind for an Arrow type a caller asked for, if the reader can produce it.
    pub(crate) fn from_data_type(data_type: &DataType) -> Option<ColumnKind> {
        match data_type {
            DataType::Boolean => Some(ColumnKind::Boolean),
            DataType::Int64 => Some(ColumnKind::Int64),
            DataType::Float64 => Some(ColumnKind::Float64),
            DataType::Date32 => Some(ColumnKind::Date32),
            DataType::Timestamp(TimeUnit::Microsecond, None) => Some(ColumnKind::Timestamp),
            DataType::Utf8 => Some(ColumnKind::Utf8),
            _ => None,
        }
    }
}

/// `true` / `false`, any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Length of an unsigned digit run at the start of `bytes`.
fn digit_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// A leading zero followed by another digit marks a code, not a number.
fn has_code_zero(digits: &[u8]) -> bool {
    digits.len() > 1 && digits[0] == b'0'
}

/// `[+-]digits` fitting `i64`, without leading zeros.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let unsigned = match bytes.first()? {
        b'+' | b'-' => &bytes[1..],
        _ => bytes,
    };
    if unsigned.is_empty() || digit_run(unsigned) != unsigned.len() || has_code_zero(unsigned) {
        return None;
    }
    text.parse().ok()
}

/// A finite decimal `[+-]digits[.digits][e[+-]digits]` (either digit run of
/// the mantissa may be empty, not both). Integer-looking text that overflows
/// `i64` is refused so long identifiers stay exact as text.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut rest = match bytes.first()? {
        b'+' | b'-' => &bytes[1..],
        _ => bytes,
    };
    let whole = digit_run(rest);
    if has_code_zero(&rest[..whole]) {
        return None;
    }
    rest = &rest[whole..];
    let mut fraction = 0;
    if let Some(b'.') = rest.first() {
        fraction = digit_run(&rest[1..]);
        rest = &rest[1 + fraction..];
    }
    if whole + fraction == 0 {
        return None;
    }
    let integer_syntax = rest.is_empty() && fraction == 0 && !text.contains('.');
    if let Some(b'e' | b'E') = rest.first() {
        let mut exponent = &rest[1..];
        if let Some(b'+' | b'-') = exponent.first() {
            exponent = &exponent[1..];
        }
        let run = digit_run(exponent);
        if run == 0 {
            return None;
        }
        rest = &exponent[run..];
    }
    if !rest.is_empty() || (integer_syntax && parse_int(text).is_none()) {
        return None;
    }
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// `NaN`, `inf`, `Infinity`, any case and sign.
pub(crate) fn is_non_finite(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    ["nan", "inf", "infinity"]
        .iter()
        .any(|word| unsigned.eq_ignore_ascii_case(word))
}

fn two_digits(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since the epoch for the 10 bytes `YYYY-MM-DD`.
fn date_prefix(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i64::from(two_digits(&bytes[0..2])? * 100 + two_digits(&bytes[2..4])?);
    let month = two_digits(&bytes[5..7])?;
    let day = two_digits(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 {
        return None;
    }
    i32::try_from(date_prefix(bytes)?).ok()
}

/// `YYYY-MM-DD HH:MM[:SS[.fraction]]` (or `T` between) as microseconds since
/// the epoch; fractions beyond microseconds are truncated.
pub(crate) fn parse_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() < 16 || !matches!(bytes[10], b' ' | b'T') || bytes[13] != b':' {
        return None;
    }
    let days = date_prefix(bytes)?;
    let hour = two_digits(&bytes[11..13])?;
    let minute = two_digits(&bytes[14..16])?;
    let mut second = 0;
    let mut micros = 0i64;
    let rest = &bytes[16..];
    if !rest.is_empty() {
        if rest.len() < 3 || rest[0] != b':' {
            return None;
        }
        second = two_digits(&rest[1..3])?;
        let fraction = &rest[3..];
        if !fraction.is_empty() {
            let digits = &fraction[1..];
            if fraction[0] != b'.'
                || digits.is_empty()
                || digits.len() > 9
                || digit_run(digits) != digits.len()
            {
                return None;
            }
            for position in 0..6 {
                let digit = digits.get(position).map_or(0, |d| i64::from(d - b'0'));
                micros = micros * 10 + digit;
            }
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    seconds.checked_mul(1_000_000)?.checked_add(micros)
}

/// What the sampled values of one column could be.
#[derive(Debug, Default, Clone)]
pub(crate) struct ColumnEvidence {
    values: usize,
    booleans: usize,
    integers: usize,
    /// Floats, integers included.
    numbers: usize,
    dates: usize,
    /// Timestamps, dates included (a date is midnight).
    timestamps: usize,
    non_finite: usize,
    first_non_finite: Option<(u64, String)>,
}

impl ColumnEvidence {
    /// Records one non-null, trimmed value found on `line`.
    pub(crate) fn observe(&mut self, value: &str, line: u64) {
        self.values += 1;
        if parse_int(value).is_some() {
            self.integers += 1;
            self.numbers += 1;
            return;
        }
        if parse_float(value).is_some() {
            self.numbers += 1;
        } else if parse_bool(value).is_some() {
            self.booleans += 1;
        } else if parse_date(value).is_some() {
            self.dates += 1;
            self.timestamps += 1;
        } else if parse_timestamp(value).is_some() {
            self.timestamps += 1;
        } else if is_non_finite(value) {
            self.non_finite += 1;
            if self.first_non_finite.is_none() {
                self.first_non_finite = Some((line, value.to_owned()));
            }
        }
    }

    /// The narrowest kind every value fits; all-null columns are text.
    pub(crate) fn kind(&self) -> ColumnKind {
        let all = |count: usize| self.values > 0 && count == self.values;
        if all(self.booleans) {
            ColumnKind::Boolean
        } else if all(self.integers) {
            ColumnKind::Int64
        } else if all(self.numbers) {
            ColumnKind::Float64
        } else if all(self.dates) {
            ColumnKind::Date32
        } else if all(self.timestamps) {
            ColumnKind::Timestamp
        } else {
            ColumnKind::Utf8
        }
    }

    /// The first NaN/infinity of a column that is numeric apart from them.
    pub(crate) fn non_finite_in_numbers(&self) -> Option<&(u64, String)> {
        let numeric_otherwise = self.numbers > 0 && self.numbers + self.non_finite == self.values;
        if numeric_otherwise {
            self.first_non_finite.as_ref()
        } else {
            None
        }
    }
}

/// Whether `value` parses as `kind` (used for header detection).
pub(crate) fn fits(kind: ColumnKind, value: &str) -> bool {
    match kind {
        ColumnKind::Boolean => parse_bool(value).is_some(),
        ColumnKind::Int64 => parse_int(value).is_some(),
        ColumnKind::Float64 => parse_float(value).is_some(),
        ColumnKind::Date32 => parse_date(value).is_some(),
        ColumnKind::Timestamp => parse_timestamp(value).is_some() || parse_date(value).is_some(),
        ColumnKind::Utf8 => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_int("42"), Some(42));
        assert_eq!(parse_int("-7"), Some(-7));
        assert_eq!(parse_int("+3"), Some(3));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("007"), None, "codes with leading zeros stay text");
        assert_eq!(parse_int("1.0"), None);
        assert_eq!(parse_int("99999999999999999999"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("-"), None);
    }

    #[test]
    fn floats_are_finite_decimals() {
        assert_eq!(parse_float("1.5"), Some(1.5));
        assert_eq!(parse_float("-.5"), Some(-0.5));
        assert_eq!(parse_float("2."), Some(2.0));
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("0.25"), Some(0.25));
        assert_eq!(parse_float("12"), Some(12.0));
        for text in [
            "NaN",
            "inf",
            "-Infinity",
            "1e",
            ".",
            "1.2.3",
            "0x10",
            "01.5",
            "99999999999999999999",
            "1e999",
        ] {
            assert_eq!(parse_float(text), None, "{text}");
        }
        for text in ["NaN", "nan", "inf", "-inf", "+Infinity", "INF"] {
            assert!(is_non_finite(text), "{text}");
        }
        assert!(!is_non_finite("info"));
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-03-01"), Some(11_017));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("2023-1-01"), None);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1_000_000));
        assert_eq!(parse_timestamp("1970-01-01T00:01:00.25"), Some(60_250_000));
        assert_eq!(parse_timestamp("1970-01-02 00:00"), Some(86_400_000_000));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:00.123456789"),
            Some(123_456)
        );
        // MIMIC shifts dates far into the future.
        assert_eq!(
            parse_timestamp("2196-02-24 14:38:00"),
            Some(7_136_606_280_000_000)
        );
        assert_eq!(parse_timestamp("1970-01-01 24:00:00"), None);
        assert_eq!(parse_timestamp("1970-01-01 00:00:00+02:00"), None);
        assert_eq!(parse_timestamp("1970-01-01"), None);
    }

    #[test]
    fn evidence_picks_the_narrowest_kind() {
        let kind = |values: &[&str]| {
            let mut evidence = ColumnEvidence::default();
            for (line, value) in values.iter().enumerate() {
                evidence.observe(value, line as u64 + 1);
            }
            evidence.kind()
        };
        assert_eq!(kind(&["1", "2"]), ColumnKind::Int64);
        assert_eq!(kind(&["1", "2.5"]), ColumnKind::Float64);
        assert_eq!(kind(&["TRUE", "false"]), ColumnKind::Boolean);
        assert_eq!(kind(&["2020-01-01", "2020-01-02"]), ColumnKind::Date32);
        assert_eq!(
            kind(&["2020-01-01", "2020-01-02 10:00:00"]),
            ColumnKind::Timestamp
        );
        assert_eq!(kind(&["1", "x"]), ColumnKind::Utf8);
        assert_eq!(kind(&["007", "123"]), ColumnKind::Utf8);
        assert_eq!(kind(&[]), ColumnKind::Utf8);
        let mut evidence = ColumnEvidence::default();
        for (line, value) in [(2, "1.5"), (3, "NaN"), (4, "2")] {
            evidence.observe(value, line);
        }
        assert_eq!(
            evidence.non_finite_in_numbers(),
            Some(&(3, "NaN".to_owned()))
        );
        let mut text = ColumnEvidence::default();
        text.observe("NaN", 2);
        text.observe("bread", 3);
        assert_eq!(text.non_finite_in_numbers(), None);
    }
}
