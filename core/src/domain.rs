//! Finite domains for the network: how each modelled column's values map to codes and back.
//!
//! Codes are laid out as: categorical `[values..., other?, null?]`; numeric
//! `[spikes..., bins..., null?]`. A numeric bin keeps the fine-grid buckets it spans with their
//! weights, so a decoded value follows the within-bin distribution instead of a uniform one.

use std::collections::HashMap;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::grid::{self, GridKind};

/// Code type of one attribute.
pub type Code = u16;

/// A fine-grid bucket inside a bin, with its (possibly noisy) weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub lo: f64,
    pub hi: f64,
    pub weight: f64,
}

/// One quantile bin of a numeric column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub buckets: Vec<Bucket>,
}

/// A numeric (or date/time, in days) column's encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericEncoding {
    pub grid: GridKind,
    /// Decoded values are whole numbers.
    pub integer: bool,
    /// Exact values with their own code (e.g. capital_gain = 0), ascending.
    pub spikes: Vec<f64>,
    /// Quantile bins over the remaining values, ascending.
    pub bins: Vec<Bin>,
    pub null: bool,
    /// Public bounds from the spec: values are clamped into them.
    pub bounds: Option<[f64; 2]>,
}

/// A categorical column's encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoricalEncoding {
    pub values: Vec<String>,
    /// Whether rare values (merged under DP or beyond the category limit) have a code.
    pub other: bool,
    pub null: bool,
    /// Released values too rare to model under DP: encoded as `other` (their conditional
    /// tables would hold mostly noise) and decoded from it, so they keep their 1-way share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
    /// When `other` is drawn, the decoded value is drawn from `values` then `merged` with these
    /// weights (released counts): values that were never released are never published.
    #[serde(default)]
    pub other_fallback: Vec<f64>,
}

impl CategoricalEncoding {
    /// Moves the values whose `keep` flag is false into `merged` (encoded as `other`).
    /// Returns the new code of every old code.
    pub fn merge(&mut self, keep: &[bool]) -> Vec<Code> {
        let old_values = self.values.len();
        let mut new_code = Vec::with_capacity(old_values + 2);
        let (mut kept, mut merged) = (Vec::new(), Vec::new());
        let mut merged_pos = Vec::new();
        for (i, v) in self.values.iter().enumerate() {
            if keep.get(i).copied().unwrap_or(true) {
                new_code.push(kept.len() as Code);
                kept.push(v.clone());
            } else {
                merged_pos.push(new_code.len());
                new_code.push(0);
                merged.push(v.clone());
            }
        }
        let other = kept.len() as Code;
        for i in merged_pos {
            new_code[i] = other;
        }
        if self.other {
            new_code.push(other);
        }
        if self.null {
            new_code.push(other + (self.other || !merged.is_empty()) as Code);
        }
        self.other |= !merged.is_empty();
        self.values = kept;
        self.merged.extend(merged);
        new_code
    }
}

/// How a modelled column is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Encoding {
    Categorical(CategoricalEncoding),
    Numeric(NumericEncoding),
}

/// A decoded value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Str(&'a str),
    Number(f64),
}

impl Encoding {
    /// Whether no value (category, spike or bin) was released: at most a null code.
    pub fn releases_nothing(&self) -> bool {
        match self {
            Encoding::Categorical(c) => c.values.is_empty() && c.merged.is_empty(),
            Encoding::Numeric(n) => n.spikes.is_empty() && n.bins.is_empty(),
        }
    }

    /// The same column with one code, null: what a column that released no value samples.
    pub fn null_only(&self) -> Encoding {
        match self {
            Encoding::Categorical(_) => Encoding::Categorical(CategoricalEncoding {
                values: Vec::new(),
                other: false,
                null: true,
                merged: Vec::new(),
                other_fallback: Vec::new(),
            }),
            Encoding::Numeric(n) => Encoding::Numeric(NumericEncoding {
                spikes: Vec::new(),
                bins: Vec::new(),
                null: true,
                ..n.clone()
            }),
        }
    }

    /// Number of codes.
    pub fn cardinality(&self) -> usize {
        match self {
            Encoding::Categorical(c) => c.values.len() + c.other as usize + c.null as usize,
            Encoding::Numeric(n) => n.spikes.len() + n.bins.len() + n.null as usize,
        }
    }

    /// A human label per code, for `inspect`.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Encoding::Categorical(c) => {
                let mut l = c.values.clone();
                if c.other {
                    l.push("<other>".into());
                }
                if c.null {
                    l.push("<null>".into());
                }
                l
            }
            Encoding::Numeric(n) => {
                let mut l: Vec<String> = n.spikes.iter().map(|s| format!("={s}")).collect();
                l.extend(n.bins.iter().map(|b| format!("[{}, {})", b.lo, b.hi)));
                if n.null {
                    l.push("<null>".into());
                }
                l
            }
        }
    }
}

/// Maps raw values to codes; built once from an [`Encoding`].
#[derive(Debug, Clone)]
pub enum Encoder {
    Categorical {
        index: HashMap<String, Code>,
        other: Option<Code>,
        null: Option<Code>,
    },
    Numeric {
        spikes: Vec<f64>,
        /// Cut points between bins: bin j covers [cuts[j-1], cuts[j]).
        cuts: Vec<f64>,
        first_bin: Code,
        null: Option<Code>,
        bounds: Option<[f64; 2]>,
        /// Nearest code for values when there are no bins (all mass on spikes).
        spike_only: bool,
    },
}

impl Encoder {
    pub fn new(enc: &Encoding) -> Encoder {
        match enc {
            Encoding::Categorical(c) => {
                let k = c.values.len() as Code;
                // A column that released no value has one code, null: every value takes it.
                let null_only = c.null && !c.other && c.values.is_empty() && c.merged.is_empty();
                let other = (c.other || null_only).then_some(k);
                let index = c
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.clone(), i as Code))
                    .chain(c.merged.iter().map(|v| (v.clone(), k)))
                    .collect();
                Encoder::Categorical {
                    index,
                    other,
                    // Without a null code (nulls too rare to release under DP) a null is
                    // encoded as `other`, which decodes to a kept value.
                    null: c.null.then_some(k + c.other as Code).or(other),
                }
            }
            Encoding::Numeric(n) => {
                let cuts = n.bins.iter().skip(1).map(|b| b.lo).collect();
                let first_bin = n.spikes.len() as Code;
                // Without a null code (nulls too rare to release under DP) a null is encoded as
                // the middle bin (or spike), i.e. imputed.
                let middle = if n.bins.is_empty() {
                    (n.spikes.len() / 2) as Code
                } else {
                    first_bin + (n.bins.len() / 2) as Code
                };
                Encoder::Numeric {
                    spikes: n.spikes.clone(),
                    cuts,
                    first_bin,
                    null: Some(if n.null {
                        first_bin + n.bins.len() as Code
                    } else {
                        middle
                    }),
                    bounds: n.bounds,
                    spike_only: n.bins.is_empty(),
                }
            }
        }
    }

    /// Code of a string value. Values outside the kept set map to `other`; returns None only for
    /// a value the encoding cannot represent (a bug: the fit keeps `other` whenever needed).
    pub fn encode_str(&self, v: Option<&str>) -> Option<Code> {
        match self {
            Encoder::Categorical { index, other, null } => match v {
                None => *null,
                Some(s) => index.get(s).copied().or(*other),
            },
            Encoder::Numeric { .. } => None,
        }
    }

    /// Code of a number (days for dates). A categorical encoding of a numeric column (a declared
    /// domain or role) looks the number up by its label (`7`, `0.5`).
    pub fn encode_number(&self, v: Option<f64>) -> Option<Code> {
        match self {
            Encoder::Categorical { .. } => self.encode_str(v.map(number_label).as_deref()),
            Encoder::Numeric {
                spikes,
                cuts,
                first_bin,
                null,
                bounds,
                spike_only,
            } => {
                let Some(mut x) = v else { return *null };
                if let Some([lo, hi]) = bounds {
                    x = x.clamp(*lo, *hi);
                }
                if let Ok(i) = spikes.binary_search_by(|s| s.total_cmp(&x)) {
                    return Some(i as Code);
                }
                if *spike_only {
                    // Nearest spike: only reachable under DP, where rare values were not released.
                    let i = spikes.partition_point(|s| *s < x);
                    let best = match (i.checked_sub(1), spikes.get(i)) {
                        (Some(a), Some(b)) => {
                            if (x - spikes[a]).abs() <= (b - x).abs() {
                                a
                            } else {
                                i
                            }
                        }
                        (Some(a), None) => a,
                        (None, _) => 0,
                    };
                    // (With neither spikes nor bins, code 0 is the null code: a column that
                    // released no value encodes every value as null.)
                    return Some(best as Code);
                }
                Some(first_bin + cuts.partition_point(|c| *c <= x) as Code)
            }
        }
    }
}

/// The label of a number as a category: integral values without a fraction (`7`, not `7.0`).
pub fn number_label(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The index that the uniform `u` in [0, 1) falls on in cumulative weights, and where inside
/// that index's share it fell (again uniform in [0, 1)), for a second, nested draw.
fn draw_cumulative(cum: &[f64], u: f64) -> (usize, f64) {
    let total = *cum.last().unwrap_or(&0.0);
    if total <= 0.0 {
        return (0, u);
    }
    let x = u * total;
    // Past the last sum (rounding): the last index with weight.
    let i = match cum.partition_point(|c| *c <= x) {
        i if i < cum.len() => i,
        _ => (1..cum.len())
            .rev()
            .find(|&j| cum[j] > cum[j - 1])
            .unwrap_or(0),
    };
    let lo = if i == 0 { 0.0 } else { cum[i - 1] };
    let w = cum[i] - lo;
    let rest = if w > 0.0 {
        ((x - lo) / w).clamp(0.0, 1.0 - f64::EPSILON)
    } else {
        0.0
    };
    (i, rest)
}

/// Maps codes back to values; built once from an [`Encoding`].
#[derive(Debug, Clone)]
pub struct Decoder {
    enc: Encoding,
    /// Per bin, cumulative bucket weights.
    bin_cums: Vec<Vec<f64>>,
    other_cum: Vec<f64>,
}

impl Decoder {
    pub fn new(enc: &Encoding) -> Decoder {
        let bin_cums = match enc {
            Encoding::Numeric(n) => n
                .bins
                .iter()
                .map(|b| cumulative(b.buckets.iter().map(|k| k.weight)))
                .collect(),
            Encoding::Categorical(_) => Vec::new(),
        };
        let other_cum = match enc {
            Encoding::Categorical(c) => cumulative(c.other_fallback.iter().copied()),
            Encoding::Numeric(_) => Vec::new(),
        };
        Decoder {
            enc: enc.clone(),
            bin_cums,
            other_cum,
        }
    }

    /// Decodes one code; numeric bins draw a value inside the bin from `rng`.
    pub fn decode<R: Rng + ?Sized>(&self, code: Code, rng: &mut R) -> Value<'_> {
        self.decode_at(code, rng.random())
    }

    /// Decodes one code by inverting its within-code distribution at `u` in [0, 1) (the value
    /// inside a numeric bin, the value an `other` code stands for). Stratified `u`s across the
    /// rows of one code spread their values evenly over that distribution.
    pub fn decode_at(&self, code: Code, u: f64) -> Value<'_> {
        let code = code as usize;
        match &self.enc {
            Encoding::Categorical(c) => {
                if code < c.values.len() {
                    Value::Str(&c.values[code])
                } else if c.other && code == c.values.len() {
                    let n = c.values.len() + c.merged.len();
                    if n == 0 {
                        Value::Null
                    } else {
                        let i = if self.other_cum.is_empty() {
                            ((u * n as f64) as usize).min(n - 1)
                        } else {
                            draw_cumulative(&self.other_cum, u).0
                        };
                        match c.values.get(i) {
                            Some(v) => Value::Str(v),
                            None => Value::Str(&c.merged[i - c.values.len()]),
                        }
                    }
                } else {
                    Value::Null
                }
            }
            Encoding::Numeric(n) => {
                if code < n.spikes.len() {
                    return Value::Number(n.spikes[code]);
                }
                let b = code - n.spikes.len();
                let Some(bin) = n.bins.get(b) else {
                    return Value::Null;
                };
                Value::Number(self.draw_in_bin(n, bin, &self.bin_cums[b], u))
            }
        }
    }

    fn draw_in_bin(&self, n: &NumericEncoding, bin: &Bin, cum: &[f64], u: f64) -> f64 {
        if bin.buckets.is_empty() {
            return bin.lo;
        }
        let (i, r) = draw_cumulative(cum, u);
        let k = &bin.buckets[i];
        let mut x = if n.integer {
            // Draw among the integers of the bucket that are not spikes (spikes have own codes).
            let lo = k.lo.ceil();
            let hi = (k.hi.ceil() - 1.0).max(lo);
            let first = n.spikes.partition_point(|s| *s < lo);
            let inside = n.spikes[first..].partition_point(|s| *s <= hi);
            let free = (hi - lo + 1.0) - inside as f64;
            if free < 1.0 {
                lo
            } else {
                let mut x = lo + (r * free).floor().min(free - 1.0);
                for s in &n.spikes[first..first + inside] {
                    if *s <= x {
                        x += 1.0;
                    }
                }
                x
            }
        } else if k.hi > k.lo {
            k.lo + r * (k.hi - k.lo)
        } else {
            k.lo
        };
        if let Some([lo, hi]) = n.bounds {
            x = x.clamp(lo, hi);
        }
        x
    }

    pub fn encoding(&self) -> &Encoding {
        &self.enc
    }
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    weights
        .map(|w| {
            acc += w.max(0.0);
            acc
        })
        .collect()
}

/// Settings that shape a numeric encoding.
#[derive(Debug, Clone)]
pub struct NumericShape {
    pub bins: usize,
    /// At most this many distinct values => every value is its own code.
    pub discrete_limit: usize,
    /// Spikes take codes from the bin budget (under DP, where every code costs noise).
    pub spikes_use_bins: bool,
    /// Values that always get a code of their own when their fine bucket holds only them (a
    /// `last_when` rule's last-child position and value, with their neighbours): chosen without
    /// the data, so free under DP.
    pub exact: Vec<f64>,
    /// Values no bin spans: a bin ends before each (a banded column's cuts, so that each of its
    /// codes lies inside one band; see `relational::RowColumn::Band`).
    pub cuts: Vec<f64>,
}

/// Builds a numeric encoding from fine-grid weights (already noised and pruned under DP),
/// exact value counts where known (never under DP), and whether nulls get a code.
pub fn numeric_from_weights(
    grid_kind: GridKind,
    integer: bool,
    weights: &[f64],
    exact_values: Option<&HashMap<u64, u64>>,
    null: bool,
    bounds: Option<[f64; 2]>,
    shape: NumericShape,
) -> NumericEncoding {
    let mut w: Vec<f64> = weights.iter().map(|x| x.max(0.0)).collect();
    let total: f64 = w.iter().sum();
    let spike_share = 1.0 / (2.0 * shape.bins as f64);
    let mut spikes: Vec<f64> = Vec::new();

    if let Some(values) = exact_values {
        let discrete = values.len() <= shape.discrete_limit;
        for (&bits, &c) in values {
            let v = f64::from_bits(bits);
            if discrete || (c as f64) >= spike_share * total {
                spikes.push(v);
                let b = grid::bucket_of(grid_kind, v);
                w[b] = (w[b] - c as f64).max(0.0);
            }
        }
    } else {
        let nonzero: Vec<usize> = (0..w.len()).filter(|&i| w[i] > 0.0).collect();
        let all_exact = nonzero
            .iter()
            .all(|&i| grid::exact_value(grid_kind, i).is_some());
        let discrete = all_exact && nonzero.len() <= shape.discrete_limit;
        for &i in &nonzero {
            if let Some(v) = grid::exact_value(grid_kind, i)
                && (discrete || w[i] >= spike_share * total)
            {
                spikes.push(v);
                w[i] = 0.0;
            }
        }
    }
    for &v in &shape.exact {
        let b = grid::bucket_of(grid_kind, v);
        if grid::exact_value(grid_kind, b) == Some(v) && !spikes.contains(&v) {
            spikes.push(v);
            w[b] = 0.0;
        }
    }
    spikes.sort_by(f64::total_cmp);
    spikes.dedup();

    // Quantile bins over the remaining weight, cut at fine-bucket boundaries.
    let rest: f64 = w.iter().sum();
    let mut bins = Vec::new();
    if rest > total * 1e-6 && rest > 0.0 {
        let nonzero = w.iter().filter(|x| **x > 0.0).count();
        // Spikes count against the column's code budget: a column with many spikes gets fewer bins.
        let budget = if shape.spikes_use_bins {
            shape.bins.saturating_sub(spikes.len()).max(2)
        } else {
            shape.bins
        };
        let nbins = budget.min(nonzero).max(1);
        let mut current: Vec<Bucket> = Vec::new();
        let mut acc = 0.0;
        let mut next_cut = 1;
        for (i, &wi) in w.iter().enumerate() {
            if wi <= 0.0 {
                continue;
            }
            let (lo, hi) = grid::bounds(grid_kind, i);
            let (lo, hi) = match bounds {
                Some([blo, bhi]) => (lo.max(blo), hi.min(bhi + if integer { 1.0 } else { 0.0 })),
                None => (lo, hi),
            };
            // A cut ends the bin before it (the bin then lies inside one band).
            if let Some(first) = current.first()
                && shape.cuts.iter().any(|&c| first.lo < c && c <= lo)
            {
                bins.push(make_bin(std::mem::take(&mut current)));
            }
            current.push(Bucket { lo, hi, weight: wi });
            acc += wi;
            if next_cut < nbins && acc >= rest * next_cut as f64 / nbins as f64 {
                bins.push(make_bin(std::mem::take(&mut current)));
                while next_cut < nbins && acc >= rest * next_cut as f64 / nbins as f64 {
                    next_cut += 1;
                }
            }
        }
        if !current.is_empty() {
            bins.push(make_bin(current));
        }
    }
    NumericEncoding {
        grid: grid_kind,
        integer,
        spikes,
        bins,
        null,
        bounds,
    }
}

fn make_bin(buckets: Vec<Bucket>) -> Bin {
    Bin {
        lo: buckets.first().map(|b| b.lo).unwrap_or(0.0),
        hi: buckets.last().map(|b| b.hi).unwrap_or(0.0),
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn shape() -> NumericShape {
        NumericShape {
            bins: 8,
            discrete_limit: 4,
            spikes_use_bins: false,
            exact: Vec::new(),
            cuts: Vec::new(),
        }
    }

    fn weights_of(kind: GridKind, xs: &[f64]) -> (Vec<f64>, HashMap<u64, u64>) {
        let mut w = vec![0.0; grid::len(kind)];
        let mut m = HashMap::new();
        for &x in xs {
            w[grid::bucket_of(kind, x)] += 1.0;
            *m.entry(x.to_bits()).or_insert(0) += 1;
        }
        (w, m)
    }

    #[test]
    fn spikes_are_kept_exactly() {
        // 92% zeros, the rest spread out: zero must be its own code.
        let mut xs = vec![0.0; 920];
        xs.extend((0..80).map(|i| 1000.0 + 37.0 * i as f64));
        let (w, _) = weights_of(GridKind::Integer, &xs);
        let n = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, shape());
        assert_eq!(n.spikes, vec![0.0]);
        assert!(!n.bins.is_empty() && n.bins.len() <= 8);
        let enc = Encoding::Numeric(n);
        let e = Encoder::new(&enc);
        assert_eq!(e.encode_number(Some(0.0)), Some(0));
        let d = Decoder::new(&enc);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        assert_eq!(d.decode(0, &mut rng), Value::Number(0.0));
    }

    #[test]
    fn discrete_columns_get_one_code_per_value() {
        let xs: Vec<f64> = (0..100).map(|i| (i % 3) as f64 * 10.0).collect();
        let (w, m) = weights_of(GridKind::Integer, &xs);
        let n = numeric_from_weights(GridKind::Integer, true, &w, Some(&m), false, None, shape());
        assert_eq!(n.spikes, vec![0.0, 10.0, 20.0]);
        assert!(n.bins.is_empty());
    }

    #[test]
    fn no_bin_spans_a_cut() {
        // Ages 18 to 90, one of each: 8 quantile bins would put 52 and 53 in one bin.
        let xs: Vec<f64> = (18..=90).map(f64::from).collect();
        let (w, _) = weights_of(GridKind::Integer, &xs);
        let plain = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, shape());
        assert!(plain.bins.iter().any(|b| b.lo < 53.0 && b.hi > 53.0));
        let cut = NumericShape {
            cuts: vec![53.0, 64.0],
            ..shape()
        };
        let n = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, cut);
        for b in &n.bins {
            for c in [53.0, 64.0] {
                assert!(b.hi <= c || b.lo >= c, "bin [{}, {}) spans {c}", b.lo, b.hi);
            }
        }
        // Every value still has a bin.
        assert_eq!(n.bins.first().map(|b| b.lo), Some(18.0));
        assert_eq!(n.bins.last().map(|b| b.hi), Some(91.0));
    }

    #[test]
    fn within_bin_draws_follow_the_fine_shape() {
        // One bin holding two clusters far apart: a uniform draw would fill the gap.
        let mut xs: Vec<f64> = (0..500).map(|i| 1000.0 + (i % 10) as f64).collect();
        xs.extend((0..500).map(|i| 9000.0 + (i % 10) as f64));
        let (w, _) = weights_of(GridKind::Integer, &xs);
        let n = numeric_from_weights(
            GridKind::Integer,
            true,
            &w,
            None,
            false,
            None,
            NumericShape {
                bins: 1,
                discrete_limit: 0,
                spikes_use_bins: false,
                exact: Vec::new(),
                cuts: Vec::new(),
            },
        );
        assert_eq!(n.bins.len(), 1);
        let d = Decoder::new(&Encoding::Numeric(n));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let Value::Number(x) = d.decode(0, &mut rng) else {
                panic!()
            };
            assert!(
                (960.0..1060.0).contains(&x) || (8700.0..9300.0).contains(&x),
                "{x}"
            );
            assert_eq!(x.fract(), 0.0);
        }
    }

    #[test]
    fn exact_values_get_their_own_codes_and_neighbours_never_take_them() {
        // Under DP only one count survived the noise (5); a "last child" position of 0 and its
        // neighbour 1 are given codes anyway, so 2 and 3 encode as 1 (the nearest), never as 0.
        let (w, _) = weights_of(GridKind::Integer, &[5.0; 40]);
        let with_exact = NumericShape {
            exact: vec![0.0, 1.0],
            ..shape()
        };
        let n = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, with_exact);
        assert_eq!(n.spikes, vec![0.0, 1.0, 5.0]);
        let e = Encoder::new(&Encoding::Numeric(n));
        assert_eq!(e.encode_number(Some(0.0)), Some(0));
        assert_eq!(e.encode_number(Some(2.0)), Some(1));
        assert_eq!(e.encode_number(Some(3.0)), Some(1));
        assert_eq!(e.encode_number(Some(4.0)), Some(2));
        // Without the exact values the same release would encode 0 to 3 as the only code.
        let n = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, shape());
        assert_eq!(n.spikes, vec![5.0]);
    }

    #[test]
    fn a_categorical_number_is_looked_up_by_its_label() {
        // A declared domain on an integer column (`hospital_expire_flag: {domain: ['0', '1']}`).
        let enc = Encoding::Categorical(CategoricalEncoding {
            values: vec!["0".into(), "1".into(), "2.5".into()],
            other: false,
            null: true,
            merged: vec![],
            other_fallback: vec![],
        });
        let e = Encoder::new(&enc);
        assert_eq!(e.encode_number(Some(1.0)), Some(1));
        assert_eq!(e.encode_number(Some(2.5)), Some(2));
        assert_eq!(e.encode_number(None), Some(3));
        assert_eq!(number_label(-3.0), "-3");
    }

    #[test]
    fn categorical_other_and_null() {
        let enc = Encoding::Categorical(CategoricalEncoding {
            values: vec!["a".into(), "b".into()],
            other: true,
            null: true,
            merged: vec![],
            other_fallback: vec![0.0, 1.0],
        });
        assert_eq!(enc.cardinality(), 4);
        let e = Encoder::new(&enc);
        assert_eq!(e.encode_str(Some("a")), Some(0));
        assert_eq!(e.encode_str(Some("zzz")), Some(2));
        assert_eq!(e.encode_str(None), Some(3));
        let d = Decoder::new(&enc);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert_eq!(d.decode(2, &mut rng), Value::Str("b"));
        assert_eq!(d.decode(3, &mut rng), Value::Null);
    }

    proptest! {
        // Encode then decode then encode gives the same code: decoding stays inside the code's
        // spike or bin, for any data.
        #[test]
        fn numeric_round_trip(xs in proptest::collection::vec(
            prop_oneof![Just(0.0f64), -1e6f64..1e6f64, (-50i64..50).prop_map(|i| i as f64)], 1..300),
            integer in any::<bool>(), seed in any::<u64>()) {
            let xs: Vec<f64> = if integer { xs.iter().map(|x| x.round()).collect() } else { xs };
            let kind = if integer { GridKind::Integer } else { GridKind::Real };
            let (w, m) = weights_of(kind, &xs);
            let n = numeric_from_weights(kind, integer, &w, Some(&m), true, None, shape());
            let enc = Encoding::Numeric(n);
            let e = Encoder::new(&enc);
            let d = Decoder::new(&enc);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            for &x in &xs {
                let c = e.encode_number(Some(x)).unwrap();
                prop_assert!((c as usize) < enc.cardinality());
                match d.decode(c, &mut rng) {
                    Value::Number(y) => {
                        if integer { prop_assert_eq!(y.fract(), 0.0); }
                        prop_assert_eq!(e.encode_number(Some(y)), Some(c), "x={} y={}", x, y);
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            let nc = e.encode_number(None).unwrap();
            prop_assert_eq!(d.decode(nc, &mut rng), Value::Null);
        }

        #[test]
        fn categorical_round_trip(vals in proptest::collection::vec("[a-z]{0,6}", 1..50)) {
            let mut values = vals.clone();
            values.sort();
            values.dedup();
            let enc = Encoding::Categorical(CategoricalEncoding { values, other: false, null: true, merged: vec![], other_fallback: vec![] });
            let e = Encoder::new(&enc);
            let d = Decoder::new(&enc);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            for v in &vals {
                let c = e.encode_str(Some(v)).unwrap();
                prop_assert_eq!(d.decode(c, &mut rng), Value::Str(v));
            }
        }
    }

    #[test]
    fn merged_values_share_the_other_code_and_decode_by_their_weights() {
        let mut c = CategoricalEncoding {
            values: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            other: false,
            null: true,
            merged: vec![],
            other_fallback: vec![],
        };
        let map = c.merge(&[true, false, true, false]);
        // old codes a b c d null -> a=0 c=1 other=2 null=3
        assert_eq!(map, vec![0, 2, 1, 2, 3]);
        assert_eq!(c.values, vec!["a", "c"]);
        assert_eq!(c.merged, vec!["b", "d"]);
        assert!(c.other);
        c.other_fallback = vec![0.0, 0.0, 1.0, 3.0];
        let enc = Encoding::Categorical(c);
        assert_eq!(enc.cardinality(), 4);
        let e = Encoder::new(&enc);
        assert_eq!(e.encode_str(Some("b")), Some(2));
        assert_eq!(e.encode_str(Some("d")), Some(2));
        assert_eq!(e.encode_str(Some("c")), Some(1));
        assert_eq!(e.encode_str(None), Some(3));
        let d = Decoder::new(&enc);
        let n = 4000;
        let ds = (0..n)
            .filter(|&i| d.decode_at(2, (i as f64 + 0.5) / n as f64) == Value::Str("d"))
            .count();
        assert_eq!(ds, 3000);
    }

    #[test]
    fn stratified_positions_spread_evenly_inside_a_bin() {
        let xs: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
        let (w, _) = weights_of(GridKind::Integer, &xs);
        let shape = NumericShape {
            bins: 1,
            discrete_limit: 0,
            spikes_use_bins: false,
            exact: Vec::new(),
            cuts: Vec::new(),
        };
        let n = numeric_from_weights(GridKind::Integer, true, &w, None, false, None, shape);
        let d = Decoder::new(&Encoding::Numeric(n));
        let values: Vec<f64> = (0..100)
            .map(|i| match d.decode_at(0, (i as f64 + 0.5) / 100.0) {
                Value::Number(x) => x,
                v => panic!("{v:?}"),
            })
            .collect();
        // the inverse of the within-bin distribution is monotone in u
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        let below_half = values.iter().filter(|&&x| x < 50.0).count();
        assert!((45..=55).contains(&below_half), "{below_half}");
    }
}
