//! Guessing a CSV file's dialect from its first bytes: delimiter, padding
//! spaces, preamble lines and whether the first row is a header.

use std::collections::{HashMap, HashSet};

use csv::{ByteRecord, StringRecord};

use super::infer::{ColumnEvidence, ColumnKind, fits, is_non_finite, parse_float};

/// Delimiters tried, in order of preference when they tie.
const CANDIDATE_DELIMITERS: [u8; 4] = [b',', b';', b'|', b'\t'];
/// Leading rows with a different field count beyond this many are not a preamble
/// but ragged data, reported as such.
const MAX_PREAMBLE_ROWS: usize = 16;
/// Tokens read as missing when the caller gives none (compared after trimming;
/// an empty field is always missing).
pub const DEFAULT_NULL_TOKENS: [&str; 7] = ["", "?", "NA", "N/A", "NULL", "null", "None"];

/// The CSV dialect used to read a file: sniffed, then overridden by options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvDialect {
    /// Field separator.
    pub delimiter: u8,
    /// Whether the first table row (after the preamble) holds column names.
    pub has_header: bool,
    /// Whether text values are trimmed of surrounding whitespace (numbers,
    /// dates and missing tokens are always read trimmed).
    pub trim: bool,
    /// Quote character; a doubled quote inside quotes is a literal quote.
    pub quote: u8,
    /// Values (after trimming) read as missing; an empty field always is.
    pub null_tokens: Vec<String>,
    /// Rows before the table (titles, comments) that were skipped; each is
    /// normally one line.
    pub preamble_lines: usize,
    /// Whether the bytes were gzip-compressed.
    pub gzip: bool,
}

/// The physical layout found for one delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub delimiter: u8,
    /// The dominant number of fields per row.
    pub fields: usize,
    pub preamble: usize,
    pub trim: bool,
}

/// Values read as missing.
#[derive(Debug, Clone)]
pub(crate) struct NullTokens {
    tokens: Vec<String>,
    longest: usize,
}

impl NullTokens {
    pub(crate) fn new(tokens: &[String]) -> NullTokens {
        let longest = tokens.iter().map(String::len).max().unwrap_or(0);
        NullTokens {
            tokens: tokens.to_vec(),
            longest,
        }
    }

    /// Whether a trimmed value is missing.
    #[inline]
    pub(crate) fn is_null(&self, trimmed: &str) -> bool {
        trimmed.is_empty()
            || (trimmed.len() <= self.longest && self.tokens.iter().any(|token| token == trimmed))
    }
}

/// A whitespace-only row counts as a blank line, not as a one-field row.
pub(crate) fn is_blank_bytes(record: &ByteRecord) -> bool {
    record.len() == 1 && record[0].iter().all(u8::is_ascii_whitespace)
}

fn sample_records(sample: &[u8], complete: bool, delimiter: u8) -> Vec<ByteRecord> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(b'"')
        .from_reader(sample);
    let mut records = Vec::new();
    let mut record = ByteRecord::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        if !is_blank_bytes(&record) {
            records.push(record.clone());
        }
    }
    // The sample may end inside the last row; its field count would mislead.
    if !complete && records.len() > 1 {
        records.pop();
    }
    records
}

/// Dominant field count (ties go to more fields), preamble length and the
/// share of rows that have the dominant count.
fn shape(records: &[ByteRecord]) -> (usize, usize, f64) {
    let mut frequency: HashMap<usize, usize> = HashMap::new();
    for record in records {
        *frequency.entry(record.len()).or_default() += 1;
    }
    let mode = frequency
        .iter()
        .max_by_key(|&(&fields, &count)| (count, fields))
        .map_or(0, |(&fields, _)| fields);
    let leading = records
        .iter()
        .take_while(|record| record.len() != mode)
        .count();
    let preamble = if leading <= MAX_PREAMBLE_ROWS {
        leading
    } else {
        0
    };
    // Measured over all rows, so a long "preamble" makes a delimiter less likely.
    let matching = records.iter().filter(|record| record.len() == mode).count();
    let consistency = if records.is_empty() {
        0.0
    } else {
        matching as f64 / records.len() as f64
    };
    (mode, preamble, consistency)
}

/// Whether most non-empty fields carry surrounding spaces (`a, b, c`).
fn padded(records: &[ByteRecord], delimiter: u8) -> bool {
    let is_pad = |byte: u8| byte == b' ' || (byte == b'\t' && delimiter != b'\t');
    let (mut non_empty, mut padded) = (0usize, 0usize);
    for field in records.iter().flat_map(ByteRecord::iter) {
        if let (Some(&first), Some(&last)) = (field.first(), field.last()) {
            non_empty += 1;
            if is_pad(first) || is_pad(last) {
                padded += 1;
            }
        }
    }
    padded > 0 && padded * 2 >= non_empty
}

/// Sniffs the layout of `sample` (the first bytes, decompressed; `complete`
/// when it is the whole file). The delimiter is the candidate whose rows most
/// consistently share one field count above one; `delimiter` forces it.
pub(crate) fn sniff_layout(sample: &[u8], complete: bool, delimiter: Option<u8>) -> Layout {
    let candidates: Vec<u8> = match delimiter {
        Some(forced) => vec![forced],
        None => CANDIDATE_DELIMITERS.to_vec(),
    };
    let mut best: Option<(f64, usize, Layout, Vec<ByteRecord>)> = None;
    for &candidate in &candidates {
        let records = sample_records(sample, complete, candidate);
        let (fields, preamble, consistency) = shape(&records);
        let better = match &best {
            None => true,
            Some((best_consistency, best_fields, ..)) => {
                fields > 1
                    && (*best_fields <= 1
                        || consistency > *best_consistency
                        || (consistency == *best_consistency && fields > *best_fields))
            }
        };
        if better {
            let layout = Layout {
                delimiter: candidate,
                fields,
                preamble,
                trim: false,
            };
            best = Some((consistency, fields, layout, records));
        }
    }
    let Some((_, fields, mut layout, records)) = best else {
        return Layout {
            delimiter: b',',
            fields: 1,
            preamble: 0,
            trim: false,
        };
    };
    if fields <= 1 && delimiter.is_none() {
        // One column: no delimiter occurs consistently, keep the conventional comma.
        let records = sample_records(sample, complete, b',');
        let (fields, preamble, _) = shape(&records);
        layout = Layout {
            delimiter: b',',
            fields: fields.max(1),
            preamble,
            trim: false,
        };
        layout.trim = padded(&records[preamble..], b',');
        return layout;
    }
    layout.fields = layout.fields.max(1);
    layout.trim = padded(&records[layout.preamble..], layout.delimiter);
    layout
}

/// Whether a value parses as any non-text kind (a first-row value like this
/// is data, even when the data rows give its column a narrower type).
fn is_typed(value: &str) -> bool {
    [
        ColumnKind::Boolean,
        ColumnKind::Float64,
        ColumnKind::Timestamp,
    ]
    .into_iter()
    .any(|kind| fits(kind, value))
        || is_non_finite(value)
}

/// Whether `first` is a header over the data rows `rest` (values compared
/// trimmed). It is when some column typed by the data rows (numbers,
/// booleans, dates) has a first value that is plain text; it is not when
/// such columns' first values are typed. Otherwise it is when every first
/// value is a distinct, non-missing, non-numeric string that never recurs in
/// its column.
pub(crate) fn detect_header(
    first: &StringRecord,
    rest: &[StringRecord],
    nulls: &NullTokens,
) -> bool {
    let columns = first.len();
    let mut evidence = vec![ColumnEvidence::default(); columns];
    let mut seen: Vec<HashSet<&str>> = vec![HashSet::new(); columns];
    for record in rest {
        for (index, raw) in record.iter().enumerate().take(columns) {
            let value = raw.trim();
            if !nulls.is_null(value) {
                evidence[index].observe(value, 0);
                seen[index].insert(value);
            }
        }
    }
    let mut typed_first_values = false;
    for (index, raw) in first.iter().enumerate() {
        let value = raw.trim();
        if evidence[index].kind() == ColumnKind::Utf8 || nulls.is_null(value) {
            continue;
        }
        if !is_typed(value) {
            return true;
        }
        typed_first_values = true;
    }
    if typed_first_values {
        return false;
    }
    let mut distinct = HashSet::new();
    first.iter().enumerate().all(|(index, raw)| {
        let value = raw.trim();
        !nulls.is_null(value)
            && parse_float(value).is_none()
            && distinct.insert(value)
            && !seen[index].contains(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> Layout {
        sniff_layout(text.as_bytes(), true, None)
    }

    fn records(text: &str, delimiter: u8) -> Vec<StringRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(text.as_bytes())
            .records()
            .collect::<Result<_, _>>()
            .expect("valid test CSV")
    }

    fn header(text: &str) -> bool {
        let rows = records(text, b',');
        let tokens: Vec<String> = DEFAULT_NULL_TOKENS
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        detect_header(&rows[0], &rows[1..], &NullTokens::new(&tokens))
    }

    #[test]
    fn picks_the_consistent_delimiter() {
        assert_eq!(layout("a,b,c\n1,2,3\n4,5,6\n").delimiter, b',');
        assert_eq!(layout("a;b;c\n1,5;2;3\n4;5;6\n").delimiter, b';');
        assert_eq!(layout("a|b\n1|2\n").delimiter, b'|');
        assert_eq!(layout("a\tb\tc\n1\t2 ,x\t3\n").delimiter, b'\t');
        // Commas in a text column do not outvote the real delimiter.
        let semi = layout("name;n\nSmith, J;1\nDoe;2\nRoe, R;3\n");
        assert_eq!((semi.delimiter, semi.fields), (b';', 2));
        // Quoted delimiters do not count.
        let quoted = layout("a,b\n\"x, y\",1\n\"p,q,r\",2\n");
        assert_eq!((quoted.delimiter, quoted.fields), (b',', 2));
    }

    #[test]
    fn single_column_keeps_comma() {
        let single = layout("value\n1\n2\n");
        assert_eq!(
            (single.delimiter, single.fields, single.preamble),
            (b',', 1, 0)
        );
    }

    #[test]
    fn finds_padding_and_preamble() {
        let adult = layout("|1x3 Cross validator\n25, Private, 226802\n38, Private, 89814\n\n");
        assert_eq!(
            adult,
            Layout {
                delimiter: b',',
                fields: 3,
                preamble: 1,
                trim: true
            }
        );
        assert!(!layout("a,b\n1,x y\n").trim);
        // An incomplete sample drops its cut-off last row.
        let cut = sniff_layout(b"a,b,c\n1,2,3\n4,5", false, None);
        assert_eq!((cut.fields, cut.preamble), (3, 0));
    }

    #[test]
    fn header_detection() {
        assert!(header("age,name\n30,ann\n41,bob\n"));
        assert!(!header("30,ann\n41,bob\n"));
        assert!(header("id,when\n1,2020-01-01\n2,2020-02-01\n"));
        // All text: a header when its values are distinct and never recur.
        assert!(header("colour,size\nred,small\nblue,large\n"));
        assert!(!header("red,small\nblue,large\nred,small\n"));
        // A lone row of distinct words reads as a header (then: header only).
        assert!(header("alpha,beta\n"));
        assert!(!header("1,2\n"));
        // A first value of another numeric type is data, not a header.
        assert!(!header("1,red,2.5\n2,blue,3\n3,red,4\n"));
        assert!(header(
            "n,when\n1,2020-01-01 10:00:00\n2,2020-01-02 11:00:00\n"
        ));
        // Missing values in the first row say nothing either way.
        assert!(!header("?,x\n1,y\n2,z\n3,y\n"));
    }
}
