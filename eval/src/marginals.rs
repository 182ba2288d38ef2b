//! Per-column comparisons beyond SDMetrics' 1-way scores: chi-squared tests in two
//! conventions, the normalised Wasserstein distance, HARMONIC's data mismatch, and the
//! real and synthetic shares the report draws.
//!
//! Every function here takes a column as level counts or sorted values; the caller decides
//! what a level is (a category, or a bin of a numeric column, null included).

use statrs::distribution::{ChiSquared as ChiSquaredDist, ContinuousCDF};

use crate::report::{ChiSquared, Distribution, Mismatch};

/// Pseudo-count SDMetrics' CSTest gives a category seen only in the synthetic column.
const CSTEST_PSEUDO_COUNT: f64 = 1e-6;

/// Bars of a categorical column's chart before the rest are lumped into one.
const CHART_CATEGORIES: usize = 12;

/// Bins of a numeric column's chart.
const CHART_BINS: usize = 20;

/// Upper tail of the chi-squared distribution: the p-value of `statistic` with `dof` degrees
/// of freedom (1 when there is nothing to test).
fn p_value(statistic: f64, dof: usize) -> f64 {
    if dof == 0 || !statistic.is_finite() {
        return if statistic.is_finite() { 1.0 } else { 0.0 };
    }
    ChiSquaredDist::new(dof as f64).map_or(f64::NAN, |d| d.sf(statistic))
}

/// Both chi-squared conventions over the level counts of one column.
///
/// - `p_proportions`: SDMetrics' CSTest (scipy's `chisquare` on the synthetic *shares* against
///   the real shares, a category absent from the real column given a pseudo-count of 1e-6).
///   The statistic is scaled down by the row count, so the test almost never rejects: lenient.
/// - `p_counts` (with `statistic`, `dof`): Pearson's test of homogeneity on the 2 × k table of
///   counts (real, synthetic), without continuity correction (`scipy.stats.chi2_contingency(...,
///   correction=False)`): strict, and at large row counts it rejects any visible difference.
///
/// `None` when either column has no row.
pub(crate) fn chi_squared(real: &[u64], synthetic: &[u64]) -> Option<ChiSquared> {
    let (real_total, synthetic_total) = (total(real), total(synthetic));
    if real_total == 0 || synthetic_total == 0 {
        return None;
    }

    // CSTest: expected = real shares (pseudo-counts for synthetic-only levels).
    let expected: Vec<f64> = real
        .iter()
        .zip(synthetic)
        .map(|(&r, &s)| match (r, s) {
            (0, 0) => 0.0,
            (0, _) => CSTEST_PSEUDO_COUNT,
            (r, _) => r as f64,
        })
        .collect();
    let expected_total: f64 = expected.iter().sum();
    let levels = expected.iter().filter(|&&e| e > 0.0).count();
    let proportions_statistic: f64 = expected
        .iter()
        .zip(synthetic)
        .filter(|(e, _)| **e > 0.0)
        .map(|(&e, &s)| {
            let (f_exp, f_obs) = (e / expected_total, s as f64 / synthetic_total as f64);
            (f_obs - f_exp).powi(2) / f_exp
        })
        .sum();
    let p_proportions = p_value(proportions_statistic, levels.saturating_sub(1));

    // Homogeneity: expected count of a cell = row total × column total / grand total.
    let grand = (real_total + synthetic_total) as f64;
    let mut statistic = 0.0;
    let mut occupied = 0usize;
    for (&r, &s) in real.iter().zip(synthetic) {
        let level_total = (r + s) as f64;
        if level_total == 0.0 {
            continue;
        }
        occupied += 1;
        for (observed, row_total) in [(r, real_total), (s, synthetic_total)] {
            let e = row_total as f64 * level_total / grand;
            statistic += (observed as f64 - e).powi(2) / e;
        }
    }
    let dof = occupied.saturating_sub(1);
    Some(ChiSquared {
        p_proportions,
        p_counts: p_value(statistic, dof),
        statistic,
        dof,
    })
}

fn total(counts: &[u64]) -> u64 {
    counts.iter().sum()
}

/// Counts of each code `< levels`; larger codes are ignored.
pub(crate) fn level_counts(codes: &[u32], levels: usize) -> Vec<u64> {
    let mut counts = vec![0u64; levels];
    for &c in codes {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    counts
}

/// Non-NaN values, sorted.
pub(crate) fn sorted_finite(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// The 1-D Wasserstein (earth mover's) distance between two samples, as
/// `scipy.stats.wasserstein_distance`, divided by the range of the real values. `None` when
/// either sample is empty or the real values are constant.
pub(crate) fn wasserstein_normalized(real: &[f64], synthetic: &[f64]) -> Option<f64> {
    let (first, last) = (real.first()?, real.last()?);
    synthetic.first()?;
    let range = last - first;
    if !(range > 0.0 && range.is_finite()) {
        return None;
    }
    // The integral of |F_real - F_synthetic| over the merged support.
    let (nr, ns) = (real.len() as f64, synthetic.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut x = first.min(synthetic[0]);
    let mut distance = 0.0;
    while i < real.len() || j < synthetic.len() {
        let next = match (real.get(i), synthetic.get(j)) {
            (Some(&a), Some(&b)) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&b)) => b,
            (None, None) => break,
        };
        distance += (i as f64 / nr - j as f64 / ns).abs() * (next - x);
        x = next;
        while real.get(i) == Some(&next) {
            i += 1;
        }
        while synthetic.get(j) == Some(&next) {
            j += 1;
        }
    }
    Some(distance / range)
}

/// HARMONIC's data mismatch of a categorical column (null counted as a category): the share
/// of the real categories the synthetic column never produces, and the share of synthetic
/// rows whose category the real column does not have.
pub(crate) fn categorical_mismatch(real: &[u64], synthetic: &[u64]) -> Mismatch {
    let real_levels = real.iter().filter(|&&r| r > 0).count();
    let missed_levels = real
        .iter()
        .zip(synthetic)
        .filter(|&(&r, &s)| r > 0 && s == 0)
        .count();
    let invented_rows: u64 = real
        .iter()
        .zip(synthetic)
        .filter(|&(&r, _)| r == 0)
        .map(|(_, &s)| s)
        .sum();
    Mismatch {
        missed: share(missed_levels as u64, real_levels as u64),
        invented: share(invented_rows, total(synthetic)),
    }
}

/// Data mismatch of a numeric column (sorted non-null values): the share of the occupied
/// real bins (of [`CHART_BINS`] equal-width bins over the real range) holding no synthetic
/// value, and the share of synthetic values outside the real range.
pub(crate) fn numeric_mismatch(real: &[f64], synthetic: &[f64]) -> Mismatch {
    let (Some(&lo), Some(&hi)) = (real.first(), real.last()) else {
        return Mismatch {
            missed: 0.0,
            invented: if synthetic.is_empty() { 0.0 } else { 1.0 },
        };
    };
    let outside = synthetic.iter().filter(|&&v| v < lo || v > hi).count();
    let bin = |v: f64| {
        if hi > lo {
            (((v - lo) / (hi - lo) * CHART_BINS as f64) as usize).min(CHART_BINS - 1)
        } else {
            0
        }
    };
    let mut real_bins = [false; CHART_BINS];
    let mut synthetic_bins = [false; CHART_BINS];
    for &v in real {
        real_bins[bin(v)] = true;
    }
    for &v in synthetic.iter().filter(|&&v| v >= lo && v <= hi) {
        synthetic_bins[bin(v)] = true;
    }
    let occupied = real_bins.iter().filter(|&&b| b).count();
    let missed = real_bins
        .iter()
        .zip(&synthetic_bins)
        .filter(|&(&r, &s)| r && !s)
        .count();
    Mismatch {
        missed: share(missed as u64, occupied as u64),
        invented: share(outside as u64, synthetic.len() as u64),
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Real and synthetic shares of a categorical column's most frequent real categories, the
/// rest lumped into one bar; `categories` names the codes, `counts` has one more level, null.
pub(crate) fn categorical_distribution(
    categories: &[String],
    real: &[u64],
    synthetic: &[u64],
) -> Distribution {
    let (real_total, synthetic_total) = (total(real).max(1), total(synthetic).max(1));
    let mut order: Vec<usize> = (0..categories.len()).collect();
    // Most frequent real categories first; synthetic-only ones after, by their own count.
    order.sort_by(|&a, &b| {
        real[b]
            .cmp(&real[a])
            .then(synthetic[b].cmp(&synthetic[a]))
            .then(a.cmp(&b))
    });
    order.retain(|&c| real[c] + synthetic[c] > 0);
    let (shown, rest) = order.split_at(order.len().min(CHART_CATEGORIES));
    let mut d = Distribution {
        labels: shown.iter().map(|&c| categories[c].clone()).collect(),
        real: shown
            .iter()
            .map(|&c| real[c] as f64 / real_total as f64)
            .collect(),
        synthetic: shown
            .iter()
            .map(|&c| synthetic[c] as f64 / synthetic_total as f64)
            .collect(),
    };
    if !rest.is_empty() {
        d.labels.push(format!("other ({} more)", rest.len()));
        d.real
            .push(rest.iter().map(|&c| real[c]).sum::<u64>() as f64 / real_total as f64);
        d.synthetic
            .push(rest.iter().map(|&c| synthetic[c]).sum::<u64>() as f64 / synthetic_total as f64);
    }
    let null = categories.len();
    push_null(
        &mut d,
        real[null],
        synthetic[null],
        real_total,
        synthetic_total,
    );
    d
}

/// Real and synthetic shares of equal-width bins over the range of both columns (so no
/// synthetic value falls outside the chart); nulls get a bar of their own when present.
pub(crate) fn numeric_distribution(
    real: &[f64],
    synthetic: &[f64],
    real_nulls: usize,
    synthetic_nulls: usize,
) -> Distribution {
    let real_total = (real.len() + real_nulls).max(1) as u64;
    let synthetic_total = (synthetic.len() + synthetic_nulls).max(1) as u64;
    let ends = |v: &[f64]| v.first().copied().zip(v.last().copied());
    let (lo, hi) = match (ends(real), ends(synthetic)) {
        (Some((a, b)), Some((c, d))) => (a.min(c), b.max(d)),
        (Some(e), None) | (None, Some(e)) => e,
        (None, None) => (0.0, 0.0),
    };
    let bins = if hi > lo { CHART_BINS } else { 1 };
    let width = (hi - lo) / bins as f64;
    let bin = |v: f64| {
        if width > 0.0 {
            (((v - lo) / width) as usize).min(bins - 1)
        } else {
            0
        }
    };
    let counts = |values: &[f64]| {
        let mut c = vec![0u64; bins];
        for &v in values {
            c[bin(v)] += 1;
        }
        c
    };
    let (r, s) = (counts(real), counts(synthetic));
    let mut d = Distribution {
        labels: (0..bins)
            .map(|b| short_number(lo + b as f64 * width))
            .collect(),
        real: r.iter().map(|&c| c as f64 / real_total as f64).collect(),
        synthetic: s
            .iter()
            .map(|&c| c as f64 / synthetic_total as f64)
            .collect(),
    };
    push_null(
        &mut d,
        real_nulls as u64,
        synthetic_nulls as u64,
        real_total,
        synthetic_total,
    );
    d
}

fn push_null(d: &mut Distribution, real: u64, synthetic: u64, real_total: u64, syn_total: u64) {
    if real + synthetic > 0 {
        d.labels.push("(null)".to_owned());
        d.real.push(real as f64 / real_total as f64);
        d.synthetic.push(synthetic as f64 / syn_total as f64);
    }
}

/// A bin's lower edge in at most four significant digits.
fn short_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-3..6).contains(&magnitude) {
        return format!("{v:.2e}");
    }
    let decimals = (3 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance
    }

    #[test]
    fn chi_squared_by_hand() {
        // real 30/10, synthetic 20/20: shares .75/.25 against .5/.5.
        // CSTest: (.5-.75)²/.75 + (.5-.25)²/.25 = 1/12 + 1/4 = 1/3, dof 1, p = 0.5637.
        // Counts: expected 25/15 per row; (30-25)²/25·2 + (10-15)²/15·2 = 2 + 10/3 = 5.333,
        // dof 1, p = 0.02092 (scipy chi2_contingency correction=False).
        let c = chi_squared(&[30, 10], &[20, 20]).expect("defined");
        assert!(close(c.p_proportions, 0.563_702_861_5, 1e-9), "{c:?}");
        assert!(close(c.statistic, 16.0 / 3.0, 1e-12), "{c:?}");
        assert_eq!(c.dof, 1);
        assert!(close(c.p_counts, 0.020_921_335_5, 1e-9), "{c:?}");
        // Identical shares: statistics 0, p = 1.
        let c = chi_squared(&[3, 1, 0], &[30, 10, 0]).expect("defined");
        assert!(close(c.p_proportions, 1.0, 1e-12) && close(c.p_counts, 1.0, 1e-12));
        // A synthetic-only category gets CSTest's 1e-6 pseudo-count and sinks its p-value.
        let c = chi_squared(&[10, 0], &[9, 1]).expect("defined");
        assert!(c.p_proportions < 1e-6, "{c:?}");
        // One level: nothing to test.
        let c = chi_squared(&[5], &[7]).expect("defined");
        assert_eq!((c.p_proportions, c.p_counts, c.dof), (1.0, 1.0, 0));
        assert!(chi_squared(&[0, 0], &[1, 2]).is_none());
    }

    #[test]
    fn wasserstein_by_hand() {
        // scipy.stats.wasserstein_distance([0, 1, 3], [5, 6, 8]) == 5; real range 3.
        let w = wasserstein_normalized(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).expect("defined");
        assert!(close(w, 5.0 / 3.0, 1e-12), "{w}");
        // wasserstein_distance([0, 2, 4, 4], [1, 2]) == 1.5 (ties and unequal sizes); range 4.
        let w = wasserstein_normalized(&[0.0, 2.0, 4.0, 4.0], &[1.0, 2.0]).expect("defined");
        assert!(close(w, 1.5 / 4.0, 1e-12), "{w}");
        assert_eq!(wasserstein_normalized(&[1.0, 1.0], &[2.0]), None);
        assert_eq!(wasserstein_normalized(&[1.0, 2.0], &[]), None);
    }

    #[test]
    fn mismatch_counts_missed_and_invented() {
        // Real has a, b, c; synthetic has a and an invented d (2 of its 5 rows).
        let m = categorical_mismatch(&[4, 2, 1, 0], &[3, 0, 0, 2]);
        assert!(close(m.missed, 2.0 / 3.0, 1e-12) && close(m.invented, 0.4, 1e-12));
        // Real 0..=19 fills every bin; synthetic covers bins 0..9 and has one value outside.
        let real: Vec<f64> = (0..20).map(f64::from).collect();
        let synthetic: Vec<f64> = (0..10).map(f64::from).chain([25.0]).collect();
        let m = numeric_mismatch(&real, &synthetic);
        assert!(close(m.missed, 0.5, 1e-12), "{m:?}");
        assert!(close(m.invented, 1.0 / 11.0, 1e-12), "{m:?}");
    }

    #[test]
    fn distributions_lump_the_tail_and_show_nulls() {
        let categories: Vec<String> = (0..15).map(|i| format!("c{i}")).collect();
        let mut real = vec![1u64; 16];
        real[14] = 10;
        real[15] = 2; // null
        let synthetic = vec![1u64; 16];
        let d = categorical_distribution(&categories, &real, &synthetic);
        assert_eq!(d.labels.len(), CHART_CATEGORIES + 2);
        assert_eq!(d.labels[0], "c14");
        assert_eq!(d.labels[CHART_CATEGORIES], "other (3 more)");
        assert_eq!(d.labels.last().map(String::as_str), Some("(null)"));
        assert!(close(d.real.iter().sum::<f64>(), 1.0, 1e-12));
        assert!(close(d.synthetic.iter().sum::<f64>(), 1.0, 1e-12));

        let d = numeric_distribution(&[0.0, 10.0], &[20.0], 1, 0);
        assert_eq!(d.labels.len(), CHART_BINS + 1);
        assert_eq!(d.labels[1], "1");
        assert!(
            close(d.real[0], 1.0 / 3.0, 1e-12) && close(d.synthetic[CHART_BINS - 1], 1.0, 1e-12)
        );
        assert!(close(d.real[CHART_BINS], 1.0 / 3.0, 1e-12));
    }
}
