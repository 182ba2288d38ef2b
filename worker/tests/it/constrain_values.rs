//! The language of each generated value, checked exhaustively near its edges: candidate rows
//! are committed token by token into a fresh constraint, and what the grammar accepts must be
//! exactly what an independent checker calls valid. Both grammar paths are checked: JSON Schema
//! (the usual one) and the Lark fallback (forced by a fixed `i64::MIN`).

use chimera_worker::llm::constrain::{
    ConstraintFactory, FieldSchema, FieldType, FieldValue, RowConstraint, RowGrammar,
};
use chimera_worker::llm::tokenizer::ChimeraTokenizer;
use serde_json::Value;

use super::constrain_fixture::{misfit, tiny_tokenizer};

/// A fixed value that JSON Schema cannot force exactly, so the row takes the Lark path.
const LARK_TRIGGER: i64 = i64::MIN;

struct Acceptor {
    tok: ChimeraTokenizer,
    base: RowConstraint,
    lark: bool,
}

impl Acceptor {
    /// A row with one generated field `v` (after a fixed `i64::MIN` when `lark`).
    fn new(schema: &FieldSchema, lark: bool) -> Self {
        let tok = tiny_tokenizer();
        let factory = ConstraintFactory::new(&tok).expect("factory");
        let mut fields = Vec::new();
        if lark {
            fields.push(("x".to_owned(), FieldValue::Fixed(Value::from(LARK_TRIGGER))));
        }
        fields.push(("v".to_owned(), FieldValue::Generate(schema.clone())));
        let grammar = RowGrammar::new(&fields).expect("grammar");
        assert_eq!(grammar.is_lark(), lark);
        let base = factory.constraint(&grammar).expect("constraint");
        Self { tok, base, lark }
    }

    /// Whether the grammar accepts `raw` as the value, i.e. the whole row text.
    fn accepts(&self, raw: &str) -> bool {
        let prefix = if self.lark {
            format!("{{\"x\":{LARK_TRIGGER},")
        } else {
            "{".to_owned()
        };
        let text = format!("{prefix}\"v\":{raw}}}");
        // One token per byte symbol, so no token can straddle what is being tested.
        let ids: Vec<u32> = text
            .bytes()
            .map(|b| {
                let piece = byte_symbol(b);
                self.tok.tokenizer.token_to_id(&piece).expect("byte token")
            })
            .collect();
        let mut c = self.base.clone();
        c.commit(&ids).is_ok() && c.is_done()
    }
}

/// GPT-2's printable stand-in for a byte.
fn byte_symbol(b: u8) -> String {
    let self_mapped = matches!(b, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff);
    if self_mapped {
        return char::from(b).to_string();
    }
    let mut n = 0;
    for x in 0..=255_u8 {
        if x == b {
            break;
        }
        if !matches!(x, b'!'..=b'~' | 0xa1..=0xac | 0xae..=0xff) {
            n += 1;
        }
    }
    char::from_u32(0x100 + n).expect("char").to_string()
}

/// Asserts, on both paths, that every accepted candidate is valid (the grammar is sound) and
/// every valid candidate in shortest form is accepted (it is complete up to spelling: a
/// fraction's trailing zeros may be refused at a bound).
fn check_candidates(schema: &FieldSchema, candidates: &[String]) {
    for lark in [false, true] {
        let acceptor = Acceptor::new(schema, lark);
        let mut accepted = 0;
        for raw in candidates {
            let valid = serde_json::from_str::<Value>(raw)
                .ok()
                .is_some_and(|v| misfit(schema, &v, raw).is_none() && canonical(schema, raw));
            let got = acceptor.accepts(raw);
            if got {
                assert!(
                    valid,
                    "{} {raw} accepted but invalid (lark: {lark})",
                    schema.name
                );
            } else {
                assert!(
                    !valid || has_trailing_fraction_zero(raw),
                    "{} {raw} valid but refused (lark: {lark})",
                    schema.name
                );
            }
            accepted += usize::from(got);
        }
        assert!(accepted > 0, "{}: nothing accepted", schema.name);
    }
}

fn has_trailing_fraction_zero(raw: &str) -> bool {
    raw.contains('.') && raw.ends_with('0')
}

/// The value forms the grammar promises beyond fitting the schema: integers and numbers
/// without leading zeros, `-0`, `+` or exponents.
fn canonical(schema: &FieldSchema, raw: &str) -> bool {
    match schema.ty {
        FieldType::Integer | FieldType::Number if raw != "null" => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            let int_part = digits.split('.').next().unwrap_or("");
            let no_leading_zero = int_part == "0" || !int_part.starts_with('0');
            let not_negative_zero =
                !raw.starts_with('-') || digits.bytes().any(|b| (b'1'..=b'9').contains(&b));
            no_leading_zero && not_negative_zero && !raw.contains(['e', 'E', '+'])
        }
        _ => true,
    }
}

#[test]
fn dates_are_real_calendar_days() {
    let schema = FieldSchema::new("date", FieldType::Date);
    let mut candidates = Vec::new();
    for year in [
        "0000", "0001", "1900", "2000", "2023", "2024", "2100", "9999",
    ] {
        for month in 0..=13 {
            for day in [0, 1, 9, 10, 28, 29, 30, 31, 32] {
                candidates.push(format!("\"{year}-{month:02}-{day:02}\""));
            }
        }
    }
    candidates.extend(
        [
            "\"2024-1-01\"",
            "\"24-01-01\"",
            "\"2024-01-01 \"",
            "\"2024/01/01\"",
            "null",
        ]
        .map(String::from),
    );
    check_candidates(&schema, &candidates);
}

#[test]
fn date_times_have_valid_clocks() {
    let mut schema = FieldSchema::new("seen", FieldType::DateTime);
    schema.nullable = true;
    let mut candidates = vec!["null".to_owned(), "\"2024-02-29\"".to_owned()];
    for time in [
        "00:00:00",
        "23:59:59",
        "24:00:00",
        "12:60:00",
        "12:00:60",
        "7:00:00",
        "12:00",
        "12:00:00.5",
    ] {
        for date in ["2023-02-29", "2024-02-29", "2024-12-31"] {
            candidates.push(format!("\"{date} {time}\""));
        }
    }
    check_candidates(&schema, &candidates);
}

#[test]
fn integers_stay_in_bounds() {
    let mut schema = FieldSchema::new("neg", FieldType::Integer);
    schema.minimum = Some(-50.5);
    schema.maximum = Some(-3.0);
    let mut candidates: Vec<String> = (-60..=10).map(|i: i32| i.to_string()).collect();
    candidates.extend(["-0", "-03", "-5.0", "-1e1", "\"-7\"", "null", "--5"].map(String::from));
    check_candidates(&schema, &candidates);

    let mut schema = FieldSchema::new("age", FieldType::Integer);
    schema.minimum = Some(-2.0);
    schema.maximum = Some(120.0);
    schema.nullable = true;
    let mut candidates: Vec<String> = (-5..=130).map(|i: i32| i.to_string()).collect();
    candidates.extend(["-0", "007", "0", "00", "null", "nul"].map(String::from));
    check_candidates(&schema, &candidates);
}

#[test]
fn unbounded_integers_stay_within_2_pow_53() {
    let schema = FieldSchema::new("delta", FieldType::Integer);
    let limit: i64 = (1 << 53) - 1;
    let candidates: Vec<String> = [
        0,
        1,
        -1,
        limit,
        -limit,
        limit + 1,
        -limit - 1,
        i64::MAX,
        i64::MIN + 1,
        123_456_789_012,
    ]
    .iter()
    .map(i64::to_string)
    .chain(["-0", "99999999999999999999"].map(String::from))
    .collect();
    check_candidates(&schema, &candidates);
}

#[test]
fn numbers_keep_bounds_and_six_fraction_digits() {
    let mut schema = FieldSchema::new("tiny", FieldType::Number);
    schema.minimum = Some(0.1);
    schema.maximum = Some(0.3);
    let candidates: Vec<String> = [
        "0.1",
        "0.10",
        "0.100000",
        "0.1000000",
        "0.099999",
        "0.0999999",
        "0.2",
        "0.25",
        "0.299999",
        "0.3",
        "0.300000",
        "0.300001",
        "0.3000001",
        "0",
        "1",
        "0.31",
        ".2",
        "00.2",
        "0.2e0",
        "-0.2",
        "0.123456",
        "0.1234567",
        "null",
    ]
    .map(String::from)
    .to_vec();
    check_candidates(&schema, &candidates);

    let mut schema = FieldSchema::new("ratio", FieldType::Number);
    schema.minimum = Some(-1.0);
    schema.maximum = Some(1.0);
    schema.nullable = true;
    let candidates: Vec<String> = [
        "-1",
        "-1.0",
        "-1.000001",
        "-0.999999",
        "-0.5",
        "-0",
        "0",
        "0.0",
        "1",
        "1.0",
        "1.000000",
        "1.000001",
        "1.5",
        "-2",
        "null",
        "-.5",
    ]
    .map(String::from)
    .to_vec();
    check_candidates(&schema, &candidates);

    let schema = FieldSchema::new("temp", FieldType::Number);
    let candidates: Vec<String> = [
        "0",
        "-273.15",
        "999999999999999",
        "1000000000000000",
        "1000000000000001",
        "-1000000000000000",
        "-1000000000000001",
        "1e3",
        "12.3456789",
        "12.345678",
    ]
    .map(String::from)
    .to_vec();
    check_candidates(&schema, &candidates);
}

#[test]
fn strings_keep_length_pattern_and_enum() {
    let mut schema = FieldSchema::new("code", FieldType::String);
    schema.pattern = Some("[A-Z]{3}[0-9]{2}".into());
    let candidates: Vec<String> = [
        "\"ABC12\"",
        "\"ABC1\"",
        "\"ABC123\"",
        "\"abc12\"",
        "\"XABC12\"",
        "\"AB12\"",
        "\"\"",
        "null",
        "\"ABC12\\n\"",
    ]
    .map(String::from)
    .to_vec();
    check_candidates(&schema, &candidates);

    let mut schema = FieldSchema::new("name", FieldType::String);
    schema.min_length = Some(1);
    schema.max_length = Some(5);
    let candidates: Vec<String> = [
        "\"\"",
        "\"a\"",
        "\"abcde\"",
        "\"abcdef\"",
        "\"éé🙂éé\"",
        "\"éé🙂ééé\"",
        "\"a\\\"b\"",
        "\"a\\nb\"",
        "\"a\\u0041\"",
        "\"a\\/b\"",
        "\"a\\bb\"",
    ]
    .map(String::from)
    .to_vec();
    // \u escapes, \/ and \b are not among the allowed escapes even where JSON allows them.
    for lark in [false, true] {
        let acceptor = Acceptor::new(&schema, lark);
        for raw in &candidates {
            let disallowed_escape =
                raw.contains("\\u") || raw.contains("\\/") || raw.contains("\\b");
            let valid = !disallowed_escape
                && serde_json::from_str::<Value>(raw)
                    .ok()
                    .is_some_and(|v| misfit(&schema, &v, raw).is_none());
            assert_eq!(acceptor.accepts(raw), valid, "{raw} (lark: {lark})");
        }
    }

    let mut schema = FieldSchema::new("level", FieldType::Integer);
    schema.enum_values = Some(vec!["1".into(), "2".into(), "10".into()]);
    let candidates: Vec<String> = ["1", "2", "10", "3", "01", "100", "\"1\"", "null"]
        .map(String::from)
        .to_vec();
    check_candidates(&schema, &candidates);

    let mut schema = FieldSchema::new("color", FieldType::String);
    schema.enum_values = Some(vec!["red".into(), "dark \"navy\"".into()]);
    schema.nullable = true;
    let candidates: Vec<String> = [
        "\"red\"",
        "\"dark \\\"navy\\\"\"",
        "\"re\"",
        "\"redd\"",
        "null",
        "red",
    ]
    .map(String::from)
    .to_vec();
    check_candidates(&schema, &candidates);
}

#[test]
fn booleans_and_nulls() {
    let schema = FieldSchema::new("flag", FieldType::Boolean);
    let candidates: Vec<String> = ["true", "false", "null", "True", "1", "\"true\""]
        .map(String::from)
        .to_vec();
    check_candidates(&schema, &candidates);
}
