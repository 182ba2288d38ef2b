//! The shape of an identifier's values, e.g. `P[0-9][0-9A-Z]{4}` for MIMIC's provider ids
//! (`P03YMR`): learnt from the values (without DP) or declared in the spec as a `pattern`, and
//! rendered for fresh keys, so synthetic identifiers look like real ones without copying any.
//!
//! A format is a fixed-length run of slots, each a literal character or a class of characters.
//! The pattern syntax is the part of regular expressions that says exactly that: literal
//! characters (`\` escapes), classes `[...]` of single characters and ranges, and `{n}` repeats
//! (an optional leading `^` and trailing `$` are accepted).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::rng;

/// Most characters a learnt or declared format may have.
pub const MAX_LENGTH: usize = 64;

/// A learnt format must have this many times as many values as the column has distinct ones,
/// so that at most 1% of fresh values coincide with a real identifier by chance.
pub const ROOM: u64 = 100;

/// Alphabets a learnt class is widened to, smallest first: the smallest one that holds every
/// character seen at a position and no kind (digit, lower, upper case) that was not seen there.
const ALPHABETS: [&str; 9] = [
    "0123456789",
    "0123456789abcdef",
    "0123456789ABCDEF",
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789abcdefghijklmnopqrstuvwxyz",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
];

/// Characters written with a `\` in a pattern, outside and inside a class.
const SPECIAL: &str = "\\[]{}().*+?|^$";
const SPECIAL_IN_CLASS: &str = "\\[]^-";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Literal(char),
    /// Sorted, distinct, at least two characters.
    Class(Vec<char>),
}

/// The shape of an identifier's values (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdFormat {
    slots: Vec<Slot>,
}

impl IdFormat {
    /// Learns the format of `values`: the most common length (it must hold at least half of
    /// them), and per position a literal where every value has the same character, else the
    /// smallest alphabet holding the characters seen there. None when the values have no
    /// common shape (lengths vary too much, empty, or longer than [`MAX_LENGTH`]), or when the
    /// format has fewer than [`ROOM`] times as many values as were seen: a fresh value would
    /// then too often be some real record's identifier.
    pub fn learn<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<IdFormat> {
        let values: Vec<Vec<char>> = values.into_iter().map(|v| v.chars().collect()).collect();
        let mut by_length = std::collections::BTreeMap::<usize, usize>::new();
        for v in &values {
            *by_length.entry(v.len()).or_default() += 1;
        }
        // The most common length; the shorter on ties.
        let (&len, &count) = by_length
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
        if len == 0 || len > MAX_LENGTH || 2 * count < values.len() || count < 2 {
            return None;
        }
        let slots = (0..len)
            .map(|i| {
                let mut seen: Vec<char> = values
                    .iter()
                    .filter(|v| v.len() == len)
                    .map(|v| v[i])
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                if seen.len() == 1 {
                    return Slot::Literal(seen[0]);
                }
                let kinds = |s: &mut dyn Iterator<Item = char>| {
                    s.fold([false; 3], |mut k, c| {
                        k[0] |= c.is_ascii_digit();
                        k[1] |= c.is_ascii_lowercase();
                        k[2] |= c.is_ascii_uppercase();
                        k
                    })
                };
                let seen_kinds = kinds(&mut seen.iter().copied());
                ALPHABETS
                    .iter()
                    .find(|a| {
                        let own = kinds(&mut a.chars());
                        seen.iter().all(|&c| a.contains(c))
                            && own.iter().zip(seen_kinds).all(|(o, s)| !o || s)
                    })
                    .map_or(Slot::Class(seen.clone()), |a| {
                        Slot::Class(a.chars().collect())
                    })
            })
            .collect();
        let format = IdFormat { slots };
        (format.space() / ROOM >= values.len() as u64).then_some(format)
    }

    /// Parses a pattern (see the module documentation).
    pub fn parse(pattern: &str) -> Result<IdFormat, String> {
        let body = pattern.strip_prefix('^').unwrap_or(pattern);
        let body = body.strip_suffix('$').unwrap_or(body);
        let mut chars = body.chars().peekable();
        let mut slots: Vec<Slot> = Vec::new();
        let unsupported = |c: char| {
            format!(
                "`{c}` is not supported in an identifier pattern: use literal characters, \
                 classes such as [0-9A-Z] and repeats such as {{5}} (write `\\{c}` for the \
                 character itself)"
            )
        };
        while let Some(c) = chars.next() {
            let slot = match c {
                '\\' => Slot::Literal(chars.next().ok_or("the pattern ends with `\\`")?),
                '[' => {
                    let mut set: Vec<char> = Vec::new();
                    let mut prev: Option<char> = None;
                    loop {
                        let c = chars.next().ok_or("a `[` class is not closed")?;
                        match c {
                            ']' => break,
                            '-' if prev.is_some() && chars.peek().is_some_and(|&n| n != ']') => {
                                let lo = prev.take().unwrap_or_default();
                                let mut hi = chars.next().unwrap_or_default();
                                if hi == '\\' {
                                    hi = chars.next().ok_or("a `[` class is not closed")?;
                                }
                                if hi < lo {
                                    return Err(format!("the range `{lo}-{hi}` is reversed"));
                                }
                                set.extend(lo..=hi);
                            }
                            '^' if set.is_empty() && prev.is_none() => {
                                return Err("negated classes `[^...]` are not supported".into());
                            }
                            _ => {
                                let c = if c == '\\' {
                                    chars.next().ok_or("a `[` class is not closed")?
                                } else {
                                    c
                                };
                                set.extend(prev.replace(c));
                            }
                        }
                    }
                    set.extend(prev);
                    set.sort_unstable();
                    set.dedup();
                    match set.len() {
                        0 => return Err("an empty class `[]`".into()),
                        1 => Slot::Literal(set[0]),
                        _ => Slot::Class(set),
                    }
                }
                '{' => {
                    let mut digits = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(d) if d.is_ascii_digit() => digits.push(d),
                            _ => return Err("a repeat must be `{n}`, e.g. `[0-9]{5}`".into()),
                        }
                    }
                    let n: usize = digits
                        .parse()
                        .map_err(|_| "a repeat must be `{n}`, e.g. `[0-9]{5}`")?;
                    let last = slots
                        .last()
                        .cloned()
                        .ok_or("a repeat `{n}` with nothing before it")?;
                    if n == 0 {
                        slots.pop();
                    }
                    for _ in 1..n.min(MAX_LENGTH + 1) {
                        slots.push(last.clone());
                    }
                    continue;
                }
                c if SPECIAL.contains(c) => return Err(unsupported(c)),
                c => Slot::Literal(c),
            };
            slots.push(slot);
        }
        if slots.is_empty() || slots.len() > MAX_LENGTH {
            return Err(format!(
                "an identifier pattern must give 1 to {MAX_LENGTH} characters, not {}",
                slots.len()
            ));
        }
        Ok(IdFormat { slots })
    }

    /// Number of distinct values the format can write (saturating).
    pub fn space(&self) -> u64 {
        self.slots.iter().fold(1u64, |acc, s| match s {
            Slot::Literal(_) => acc,
            Slot::Class(c) => acc.saturating_mul(c.len() as u64),
        })
    }

    /// The value for key `index`: distinct keys give distinct values (a keyed permutation of
    /// the format's values, so neighbouring keys do not look alike). Keys beyond
    /// [`IdFormat::space`] get `-` and the lap number appended, so they stay distinct.
    pub fn render(&self, index: u64, salt: u64) -> String {
        let space = self.space();
        if space != u64::MAX && index >= space {
            let lap = index / space;
            return format!("{}-{lap}", self.render(index % space, salt));
        }
        let mut x = if space == u64::MAX {
            rng::mix64(index ^ salt)
        } else {
            permute(index, space, salt)
        };
        let mut out: Vec<char> = Vec::with_capacity(self.slots.len());
        for s in self.slots.iter().rev() {
            out.push(match s {
                Slot::Literal(c) => *c,
                Slot::Class(set) => {
                    let n = set.len() as u64;
                    let c = set[(x % n) as usize];
                    x /= n;
                    c
                }
            });
        }
        out.iter().rev().collect()
    }

    /// The value for a key from a range far wider than the format's room (a child table's keys,
    /// numbered per shard): a keyed hash of the key into the format's values, so two keys may
    /// share a value, as the values of a real non-key identifier such as a provider id do.
    pub fn render_hashed(&self, key: u64, salt: u64) -> String {
        let space = self.space();
        let h = rng::mix64(key ^ rng::mix64(salt));
        self.render(if space == u64::MAX { h } else { h % space }, salt)
    }

    /// Whether `value` has this format.
    pub fn matches(&self, value: &str) -> bool {
        let chars: Vec<char> = value.chars().collect();
        chars.len() == self.slots.len()
            && chars.iter().zip(&self.slots).all(|(c, s)| match s {
                Slot::Literal(l) => c == l,
                Slot::Class(set) => set.binary_search(c).is_ok(),
            })
    }
}

/// A keyed bijection of [0, space): a Feistel network on the smallest even number of bits that
/// covers `space`, walked until it lands inside (fewer than 4 steps expected).
fn permute(x: u64, space: u64, salt: u64) -> u64 {
    if space <= 1 {
        return 0;
    }
    let bits = 64 - (space - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let mut v = x;
    loop {
        let (mut l, mut r) = (v >> half, v & mask);
        for round in 0..4u64 {
            let f = rng::mix64(r ^ rng::mix64(salt ^ round)) & mask;
            (l, r) = (r, l ^ f);
        }
        v = (l << half) | r;
        if v < space {
            return v;
        }
    }
}

impl fmt::Display for IdFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escape = |c: char, special: &str| {
            if special.contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        };
        let mut i = 0;
        while i < self.slots.len() {
            let run = self.slots[i..]
                .iter()
                .take_while(|s| **s == self.slots[i])
                .count();
            match &self.slots[i] {
                Slot::Literal(c) => f.write_str(&escape(*c, SPECIAL))?,
                Slot::Class(set) => {
                    f.write_str("[")?;
                    let mut j = 0;
                    while j < set.len() {
                        // Runs of consecutive characters as ranges.
                        let mut k = j;
                        while k + 1 < set.len() && set[k + 1] as u32 == set[k] as u32 + 1 {
                            k += 1;
                        }
                        if k >= j + 2 {
                            let (lo, hi) = (set[j], set[k]);
                            let inside = |c| escape(c, SPECIAL_IN_CLASS);
                            write!(f, "{}-{}", inside(lo), inside(hi))?;
                        } else {
                            for &c in &set[j..=k] {
                                f.write_str(&escape(c, SPECIAL_IN_CLASS))?;
                            }
                        }
                        j = k + 1;
                    }
                    f.write_str("]")?;
                }
            }
            if run > 1 {
                write!(f, "{{{run}}}")?;
            }
            i += run;
        }
        Ok(())
    }
}

impl TryFrom<String> for IdFormat {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        IdFormat::parse(&s)
    }
}

impl From<IdFormat> for String {
    fn from(f: IdFormat) -> String {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_literals_and_the_smallest_alphabet_per_position() {
        let ids = ["P03YMR", "P41R5N", "P3529J", "P233F6", "P45GUA", "P898NM"];
        // Too little room: most fresh values would be real ones.
        let digits: Vec<String> = (0..50).map(|i| format!("{i:02}")).collect();
        assert_eq!(IdFormat::learn(digits.iter().map(String::as_str)), None);
        let f = IdFormat::learn(ids).unwrap();
        assert_eq!(f.to_string(), "P[0-9]{2}[0-9A-Z]{3}");
        assert!(ids.iter().all(|v| f.matches(v)));
        let hex = ["3f2a-9b", "0b7c-e4", "a1d9-07"];
        assert_eq!(
            IdFormat::learn(hex).unwrap().to_string(),
            "[0-9a-f]{4}-[0-9a-f]{2}"
        );
        // Letters only never widen to digits.
        assert_eq!(
            IdFormat::learn(["abc", "bac"]).unwrap().to_string(),
            "[a-z]{2}c"
        );
        // No common length: no format.
        assert_eq!(IdFormat::learn(["a", "bb", "ccc", "dddd"]), None);
        assert_eq!(IdFormat::learn(["only"]), None);
    }

    #[test]
    fn patterns_parse_print_and_round_trip() {
        for p in [
            "P[0-9][0-9A-Z]{4}",
            "[0-9a-f]{8}-[0-9a-f]{4}",
            "[\\-_a]{2}",
            "ID_[0-9]{6}",
            "[ACGT]{12}",
        ] {
            let f = IdFormat::parse(p).unwrap();
            assert_eq!(f.to_string(), p);
            assert_eq!(IdFormat::parse(&f.to_string()).unwrap(), f);
        }
        assert_eq!(
            IdFormat::parse("^[A-Z]{2}$").unwrap().to_string(),
            "[A-Z]{2}"
        );
        assert_eq!(IdFormat::parse("[0-9]{3}").unwrap().space(), 1000);
        for bad in ["a+", "(ab)", "[a-z", "[^a]", "{3}", "[z-a]", ""] {
            assert!(IdFormat::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendered_keys_have_the_format_and_are_distinct_within_its_space() {
        let f = IdFormat::parse("P[0-9][0-9A-Z]{2}").unwrap();
        assert_eq!(f.space(), 10 * 36 * 36);
        let values: Vec<String> = (0..f.space()).map(|k| f.render(k, 7)).collect();
        assert!(values.iter().all(|v| f.matches(v)), "{:?}", &values[..5]);
        let distinct: std::collections::HashSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), values.len());
        // A different salt, a different order; the same salt, the same values.
        assert_ne!(f.render(0, 8), values[0]);
        assert_eq!(f.render(5, 7), values[5]);
        // Beyond the format's room values stay distinct, with the lap appended.
        assert_eq!(f.render(f.space() + 5, 7), format!("{}-1", values[5]));
        let hashed: Vec<String> = (0..100)
            .map(|k| f.render_hashed(10_000_000_000 + k, 7))
            .collect();
        assert!(hashed.iter().all(|v| f.matches(v)));
        assert!(
            hashed
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 90
        );
        // Wide formats stay distinct too.
        let wide = IdFormat::parse("[0-9a-f]{20}").unwrap();
        let distinct: std::collections::HashSet<String> =
            (0..10_000).map(|k| wide.render(k, 1)).collect();
        assert_eq!(distinct.len(), 10_000);
    }
}
