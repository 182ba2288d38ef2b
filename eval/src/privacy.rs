//! Privacy of a synthetic table against the real rows it was made from, after SDMetrics'
//! definitions: distance to the closest record (DCR, a Gower distance), the share of synthetic
//! rows closer to the training rows than to held-out rows (DCROverfittingProtection), new row
//! synthesis (NewRowSynthesis) and exact copies.
//!
//! Distances are quadratic in the rows, so they are computed on samples (sizes in
//! [`PrivacyOptions`]), drawn with a seed, and the report says so. Exact copies are counted on
//! every row by hashing.

use std::collections::HashSet;

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::column::{Column, ColumnValues, PerTable};
use crate::report::Privacy;

/// Sample sizes of the quadratic privacy metrics.
#[derive(Debug, Clone)]
pub struct PrivacyOptions {
    /// Synthetic rows whose DCR is measured at most.
    pub synthetic_rows: usize,
    /// Real training rows each is compared with at most.
    pub reference_rows: usize,
    /// Relative tolerance of a numeric match in new row synthesis (SDMetrics' default 0.01).
    pub match_tolerance: f64,
}

impl Default for PrivacyOptions {
    fn default() -> Self {
        PrivacyOptions {
            synthetic_rows: 2_000,
            reference_rows: 20_000,
            match_tolerance: 0.01,
        }
    }
}

/// One table's rows in the column-major encoding of [`Column`]: numeric values (NaN for null)
/// and categorical codes (`categories.len()` for null).
enum Values<'a> {
    Numeric(&'a [f64]),
    Categorical(&'a [u32]),
}

fn table<'a>(
    columns: &'a [Column],
    pick: impl Fn(&'a PerTable<Vec<f64>>) -> Option<&'a Vec<f64>>,
    pick_codes: impl Fn(&'a PerTable<Vec<u32>>) -> Option<&'a Vec<u32>>,
) -> Option<Vec<Values<'a>>> {
    columns
        .iter()
        .map(|c| match &c.values {
            ColumnValues::Numeric(v) => pick(v).map(|x| Values::Numeric(x)),
            ColumnValues::Categorical { codes, .. } => {
                pick_codes(codes).map(|x| Values::Categorical(x))
            }
        })
        .collect()
}

/// Gower distance between rows of two tables, as SDMetrics' `calculate_dcr`: per column, a
/// numeric difference over the reference's range (capped at 1; any difference is 1 when the
/// range is 0), a categorical mismatch as 1, one empty value against a value as 1, two empty
/// values as 0; averaged over the columns.
struct Gower<'a> {
    rows: &'a [Values<'a>],
    reference: &'a [Values<'a>],
    ranges: Vec<f64>,
}

impl<'a> Gower<'a> {
    fn new(rows: &'a [Values<'a>], reference: &'a [Values<'a>], reference_idx: &[usize]) -> Self {
        let ranges = reference
            .iter()
            .map(|v| match v {
                Values::Numeric(x) => {
                    let (lo, hi) = reference_idx
                        .iter()
                        .map(|&i| x[i])
                        .filter(|x| !x.is_nan())
                        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                            (lo.min(x), hi.max(x))
                        });
                    if hi >= lo { hi - lo } else { 0.0 }
                }
                Values::Categorical(_) => 0.0,
            })
            .collect();
        Gower {
            rows,
            reference,
            ranges,
        }
    }

    fn distance(&self, i: usize, j: usize) -> f64 {
        let mut sum = 0.0;
        for ((a, b), &range) in self.rows.iter().zip(self.reference).zip(&self.ranges) {
            sum += match (a, b) {
                (Values::Numeric(a), Values::Numeric(b)) => {
                    let (x, y) = (a[i], b[j]);
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => 0.0,
                        (true, false) | (false, true) => 1.0,
                        _ if range == 0.0 => f64::from(u8::from(x != y)),
                        _ => ((x - y).abs() / range).min(1.0),
                    }
                }
                (Values::Categorical(a), Values::Categorical(b)) => {
                    f64::from(u8::from(a[i] != b[j]))
                }
                _ => 1.0,
            };
        }
        sum / self.rows.len().max(1) as f64
    }

    /// Each of `rows`' distance to its closest row among `reference_idx`.
    fn closest(&self, rows: &[usize], reference_idx: &[usize]) -> Vec<f64> {
        rows.par_iter()
            .map(|&i| {
                reference_idx
                    .iter()
                    .map(|&j| self.distance(i, j))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }
}

/// `k` row indices of `n` (all of them, in order, when `k >= n`), drawn with `seed`.
fn subsample(n: usize, k: usize, seed: u64) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut idx = sample(&mut ChaCha8Rng::seed_from_u64(seed), n, k).into_vec();
    idx.sort_unstable();
    idx
}

/// The `q` quantile (0..=1) of `values` (linear interpolation, as numpy's default).
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// A row's exact identity: numeric bits (every NaN alike) and codes.
fn row_key(t: &[Values<'_>], i: usize) -> Vec<u64> {
    t.iter()
        .map(|v| match v {
            Values::Numeric(x) if x[i].is_nan() => u64::MAX,
            // +0.0 and -0.0 are the same value.
            Values::Numeric(x) => (x[i] + 0.0).to_bits(),
            Values::Categorical(c) => u64::from(c[i]),
        })
        .collect()
}

/// Whether real row `j` matches synthetic row `i` as SDMetrics' NewRowSynthesis has it: empty
/// values match empty values, categories match exactly, a number within `tolerance` times the
/// synthetic value.
fn matches(s: &[Values<'_>], r: &[Values<'_>], i: usize, j: usize, tolerance: f64) -> bool {
    s.iter().zip(r).all(|(a, b)| match (a, b) {
        (Values::Numeric(a), Values::Numeric(b)) => {
            let (x, y) = (a[i], b[j]);
            if x.is_nan() || y.is_nan() {
                x.is_nan() && y.is_nan()
            } else {
                (y - x).abs() <= (tolerance * x).abs()
            }
        }
        (Values::Categorical(a), Values::Categorical(b)) => a[i] == b[j],
        _ => false,
    })
}

/// The privacy metrics of the synthetic table; `notes` gets the sample sizes.
pub(crate) fn privacy(
    columns: &[Column],
    options: &PrivacyOptions,
    seed: u64,
    notes: &mut Vec<String>,
) -> Option<Privacy> {
    let real = table(columns, |p| Some(&p.real), |p| Some(&p.real))?;
    let synthetic = table(columns, |p| Some(&p.synthetic), |p| Some(&p.synthetic))?;
    let test = table(columns, |p| p.test.as_ref(), |p| p.test.as_ref());
    let rows = |t: &[Values<'_>]| match t.first() {
        Some(Values::Numeric(x)) => x.len(),
        Some(Values::Categorical(c)) => c.len(),
        None => 0,
    };
    let (n_real, n_syn) = (rows(&real), rows(&synthetic));
    if columns.is_empty() || n_real == 0 || n_syn == 0 {
        return None;
    }

    // Exact copies, on every row.
    let real_keys: HashSet<Vec<u64>> = (0..n_real).map(|j| row_key(&real, j)).collect();
    let copies = (0..n_syn)
        .into_par_iter()
        .filter(|&i| real_keys.contains(&row_key(&synthetic, i)))
        .count();

    // DCR of a synthetic sample to a sample of the training rows.
    let syn_idx = subsample(n_syn, options.synthetic_rows, seed ^ 0x5D);
    let ref_idx = subsample(n_real, options.reference_rows, seed ^ 0x7E);
    let to_train = Gower::new(&synthetic, &real, &ref_idx);
    let dcr = to_train.closest(&syn_idx, &ref_idx);

    // New row synthesis: no real row matches (within the tolerance), on the same samples.
    let new_rows = syn_idx
        .par_iter()
        .filter(|&&i| {
            !ref_idx
                .iter()
                .any(|&j| matches(&synthetic, &real, i, j, options.match_tolerance))
        })
        .count();

    // Closer to training than to held-out rows: equal-size samples of both.
    let holdout = test.as_ref().map(|test| {
        let n_test = rows(test);
        let k = n_test.min(n_real).min(options.reference_rows);
        let train_idx = subsample(n_real, k, seed ^ 0x71);
        let test_idx = subsample(n_test, k, seed ^ 0x7E57);
        let d_train = Gower::new(&synthetic, &real, &train_idx).closest(&syn_idx, &train_idx);
        let d_test = Gower::new(&synthetic, test, &test_idx).closest(&syn_idx, &test_idx);
        let closer = d_train.iter().zip(&d_test).filter(|(a, b)| a < b).count();
        // The reference: held-out real rows' own DCR to the training rows.
        let real_idx = subsample(n_test, options.synthetic_rows, seed ^ 0x4E);
        let baseline = Gower::new(test, &real, &ref_idx).closest(&real_idx, &ref_idx);
        (closer as f64 / syn_idx.len() as f64, k, baseline)
    });

    notes.push(format!(
        "privacy: DCR (Gower distance, as SDMetrics: numeric difference over the training \
         range, capped at 1; categories 0 or 1; averaged over columns) of {} synthetic rows to \
         {} training rows{}; new row synthesis on the same samples (a number matches within {}% \
         of the synthetic value); exact copies on every row",
        syn_idx.len(),
        ref_idx.len(),
        if syn_idx.len() < n_syn || ref_idx.len() < n_real {
            ", sampled with the seed"
        } else {
            ""
        },
        options.match_tolerance * 100.0
    ));
    if let Some((_, k, _)) = &holdout {
        notes.push(format!(
            "privacy: closer_to_training compares each sampled synthetic row's DCR to {k} \
             training rows with its DCR to {k} test rows (about 0.5 when the synthetic rows are \
             no closer to the training rows than to unseen ones)"
        ));
    }
    Some(Privacy {
        dcr_median: quantile(&dcr, 0.5)?,
        dcr_p5: quantile(&dcr, 0.05)?,
        holdout_dcr_median: holdout.as_ref().and_then(|h| quantile(&h.2, 0.5)),
        holdout_dcr_p5: holdout.as_ref().and_then(|h| quantile(&h.2, 0.05)),
        closer_to_training: holdout.as_ref().map(|h| h.0),
        new_row_synthesis: new_rows as f64 / syn_idx.len() as f64,
        exact_copies: copies as f64 / n_syn as f64,
        rows_sampled: syn_idx.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.5), Some(2.5));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert!((quantile(&v, 0.05).unwrap() - 1.15).abs() < 1e-12);
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn gower_distance_follows_sdmetrics() {
        // Two columns: a number (reference range 10) and a category.
        let (a, b) = ([0.0, f64::NAN, 5.0], [0.0, 10.0, f64::NAN]);
        let (ca, cb) = ([1u32, 2, 1], [1u32, 1, 1]);
        let rows = [Values::Numeric(&a), Values::Categorical(&ca)];
        let reference = [Values::Numeric(&b), Values::Categorical(&cb)];
        let g = Gower::new(&rows, &reference, &[0, 1, 2]);
        assert_eq!(g.distance(0, 0), 0.0);
        // 5 against 10 over a range of 10: 0.5; same category: 0.
        assert_eq!(g.distance(2, 1), 0.25);
        // Empty against a value: 1; a category mismatch: 1.
        assert_eq!(g.distance(1, 0), 1.0);
        // Both empty: 0.
        assert_eq!(g.distance(1, 2), 0.5);
        assert_eq!(g.closest(&[2], &[0, 1, 2]), vec![0.25]);
    }

    #[test]
    fn new_rows_allow_a_relative_tolerance() {
        let (s, r) = ([100.0, f64::NAN], [100.9, f64::NAN]);
        let (syn, real) = ([Values::Numeric(&s)], [Values::Numeric(&r)]);
        assert!(matches(&syn, &real, 0, 0, 0.01));
        assert!(!matches(&syn, &real, 0, 0, 0.001));
        assert!(matches(&syn, &real, 1, 1, 0.01));
        assert!(!matches(&syn, &real, 0, 1, 0.01));
        assert_eq!(row_key(&syn, 1), row_key(&real, 1));
    }
}
