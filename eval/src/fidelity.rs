//! Fidelity metrics, after SDMetrics: KSComplement and TVComplement for single columns,
//! ContingencySimilarity and CorrelationSimilarity for pairs of columns.

use crate::Discretization;

/// Decimals SDMetrics' KSComplement rounds values to before the test (`float_info.dig - 1`).
const KS_DECIMALS_SCALE: f64 = 1e14;

/// 1 - total variation distance between the category frequencies of two code columns.
///
/// Codes `>= categories` are null and dropped, as SDMetrics' TVComplement does. `None`
/// when either column has no non-null value.
pub(crate) fn tv_complement(real: &[u32], synthetic: &[u32], categories: usize) -> Option<f64> {
    let real_counts = counts(real, categories);
    let synthetic_counts = counts(synthetic, categories);
    let real_total: u64 = real_counts.iter().sum();
    let synthetic_total: u64 = synthetic_counts.iter().sum();
    if real_total == 0 || synthetic_total == 0 {
        return None;
    }
    let distance: f64 = real_counts
        .iter()
        .zip(&synthetic_counts)
        .map(|(&r, &s)| (r as f64 / real_total as f64 - s as f64 / synthetic_total as f64).abs())
        .sum();
    Some(1.0 - 0.5 * distance)
}

fn counts(codes: &[u32], categories: usize) -> Vec<u64> {
    let mut counts = vec![0u64; categories];
    for &c in codes {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    counts
}

/// 1 - the two-sample Kolmogorov–Smirnov statistic (largest gap between the empirical
/// CDFs). NaN values are dropped and values rounded to 14 decimals, as SDMetrics'
/// KSComplement does. `None` when either side has no value.
pub(crate) fn ks_complement(real: &[f64], synthetic: &[f64]) -> Option<f64> {
    let sorted = |values: &[f64]| {
        let mut v: Vec<f64> = values
            .iter()
            .filter(|v| !v.is_nan())
            .map(|v| (v * KS_DECIMALS_SCALE).round_ties_even() / KS_DECIMALS_SCALE + 0.0)
            .collect();
        v.sort_unstable_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(real), sorted(synthetic));
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut statistic: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        statistic = statistic.max((i as f64 / na - j as f64 / nb).abs());
    }
    Some(1.0 - statistic)
}

/// Interior bin edges of a numeric column, computed on its real values (NaN and
/// infinities ignored). `bins` bins need `bins - 1` interior edges; the outer edges
/// are open (-inf and +inf), so values outside the real range fall in the outer bins.
pub(crate) fn interior_edges(
    real: &[f64],
    bins: usize,
    discretization: Discretization,
) -> Vec<f64> {
    let mut finite: Vec<f64> = real.iter().copied().filter(|v| v.is_finite()).collect();
    let bins = bins.max(1);
    match discretization {
        Discretization::EqualWidth => {
            // numpy.histogram_bin_edges: linspace(min, max, bins + 1), widened by 0.5
            // each side when the column is constant (and (0, 1) when empty).
            let (mut lo, mut hi) = finite
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                    (lo.min(v), hi.max(v))
                });
            if finite.is_empty() {
                (lo, hi) = (0.0, 1.0);
            } else if lo == hi {
                (lo, hi) = (lo - 0.5, hi + 0.5);
            }
            let step = (hi - lo) / bins as f64;
            (1..bins).map(|i| i as f64 * step + lo).collect()
        }
        Discretization::Quantile => {
            if finite.is_empty() {
                return Vec::new();
            }
            finite.sort_unstable_by(f64::total_cmp);
            let mut edges: Vec<f64> = (1..bins)
                .map(|i| quantile_of_sorted(&finite, i as f64 / bins as f64))
                .collect();
            edges.dedup();
            edges
        }
    }
}

/// numpy's default ("linear") quantile of sorted values.
fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

/// Bin codes: the number of interior edges at or below each value (left-closed bins, as
/// `numpy.digitize`), and `edges.len() + 1` for NaN, which is its own bin.
pub(crate) fn discretize(values: &[f64], edges: &[f64]) -> Vec<u32> {
    let null_bin = edges.len() as u32 + 1;
    values
        .iter()
        .map(|v| {
            if v.is_nan() {
                null_bin
            } else {
                edges.partition_point(|e| e <= v) as u32
            }
        })
        .collect()
}

/// Cell counts above which a pair's contingency table is counted by sorting cell keys
/// instead of in a dense array.
const DENSE_CELLS_MAX: usize = 1 << 22;

/// 1 - total variation distance between the joint frequencies of two code columns in the
/// real and synthetic tables. Codes are `< levels` (null included as a level); every row
/// counts, as SDMetrics' ContingencySimilarity groups with `dropna=False`.
pub(crate) fn contingency_similarity(
    real: (&[u32], &[u32]),
    synthetic: (&[u32], &[u32]),
    levels: (usize, usize),
) -> f64 {
    let (real_rows, synthetic_rows) = (real.0.len() as f64, synthetic.0.len() as f64);
    if real_rows == 0.0 || synthetic_rows == 0.0 {
        return 0.0;
    }
    let cells = levels.0.saturating_mul(levels.1);
    let key = |a: u32, b: u32| a as u64 * levels.1 as u64 + b as u64;
    let distance: f64 = if cells <= DENSE_CELLS_MAX {
        let mut real_counts = vec![0u64; cells];
        let mut synthetic_counts = vec![0u64; cells];
        for (&a, &b) in real.0.iter().zip(real.1) {
            real_counts[key(a, b) as usize] += 1;
        }
        for (&a, &b) in synthetic.0.iter().zip(synthetic.1) {
            synthetic_counts[key(a, b) as usize] += 1;
        }
        real_counts
            .iter()
            .zip(&synthetic_counts)
            .filter(|(r, s)| **r != 0 || **s != 0)
            .map(|(&r, &s)| (r as f64 / real_rows - s as f64 / synthetic_rows).abs())
            .sum()
    } else {
        let sorted_keys = |(a, b): (&[u32], &[u32])| {
            let mut keys: Vec<u64> = a.iter().zip(b).map(|(&a, &b)| key(a, b)).collect();
            keys.sort_unstable();
            keys
        };
        let (r, s) = (sorted_keys(real), sorted_keys(synthetic));
        let (mut i, mut j) = (0, 0);
        let mut distance = 0.0;
        while i < r.len() || j < s.len() {
            let cell = match (r.get(i), s.get(j)) {
                (Some(&x), Some(&y)) => x.min(y),
                (Some(&x), None) => x,
                (None, Some(&y)) => y,
                (None, None) => break,
            };
            let (i0, j0) = (i, j);
            while r.get(i) == Some(&cell) {
                i += 1;
            }
            while s.get(j) == Some(&cell) {
                j += 1;
            }
            distance += ((i - i0) as f64 / real_rows - (j - j0) as f64 / synthetic_rows).abs();
        }
        distance
    };
    1.0 - 0.5 * distance
}

/// Pearson's r over the rows where neither value is NaN; `None` when fewer than two
/// such rows remain or either column is constant on them.
pub(crate) fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = x
        .iter()
        .zip(y)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(&a, &b)| (a, b))
        .collect();
    if pairs.len() < 2 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (a, b)| (sx + a, sy + b));
    let (mx, my) = (mx / n, my / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in &pairs {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    let r = sxy / (sxx.sqrt() * syy.sqrt());
    r.is_finite().then(|| r.clamp(-1.0, 1.0))
}

/// Cramér's V of two code columns (codes `< levels`, null a level of its own), without bias
/// correction: `sqrt(chi2 / n / (min(rows, columns) - 1))` over the levels that occur. `None`
/// when either column has a single level.
pub(crate) fn cramers_v(a: &[u32], b: &[u32], levels: (usize, usize)) -> Option<f64> {
    let n = a.len();
    if n == 0 {
        return None;
    }
    let (mut rows, mut columns) = (vec![0u64; levels.0], vec![0u64; levels.1]);
    for (&x, &y) in a.iter().zip(b) {
        rows[x as usize] += 1;
        columns[y as usize] += 1;
    }
    let occupied = |v: &[u64]| v.iter().filter(|&&c| c > 0).count();
    let k = occupied(&rows).min(occupied(&columns));
    if k < 2 {
        return None;
    }
    // chi2 = sum over observed cells of O^2 / E, minus n; E = row total * column total / n.
    let term = |key: u64, observed: f64| {
        let (x, y) = (key / levels.1 as u64, key % levels.1 as u64);
        let expected = rows[x as usize] as f64 * columns[y as usize] as f64 / n as f64;
        observed * observed / expected
    };
    let key = |(&x, &y): (&u32, &u32)| u64::from(x) * levels.1 as u64 + u64::from(y);
    let cells = levels.0.saturating_mul(levels.1);
    let mut sum = 0.0;
    if cells <= DENSE_CELLS_MAX {
        let mut counts = vec![0u64; cells];
        for k in a.iter().zip(b).map(key) {
            counts[k as usize] += 1;
        }
        for (k, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            sum += term(k as u64, c as f64);
        }
    } else {
        let mut keys: Vec<u64> = a.iter().zip(b).map(key).collect();
        keys.sort_unstable();
        let mut i = 0;
        while i < keys.len() {
            let start = i;
            while i < keys.len() && keys[i] == keys[start] {
                i += 1;
            }
            sum += term(keys[start], (i - start) as f64);
        }
    }
    let chi2 = (sum - n as f64).max(0.0);
    Some((chi2 / n as f64 / (k - 1) as f64).sqrt().min(1.0))
}

/// 1 - |r_real - r_synthetic| / 2, SDMetrics' CorrelationSimilarity.
pub(crate) fn correlation_similarity(real: f64, synthetic: f64) -> f64 {
    1.0 - (real - synthetic).abs() / 2.0
}

/// Distinct non-NaN values, counted up to `limit`.
pub(crate) fn distinct_up_to(values: &[f64], limit: usize) -> usize {
    let mut seen: Vec<f64> = Vec::with_capacity(limit);
    for v in values.iter().filter(|v| !v.is_nan()) {
        if !seen.contains(v) {
            seen.push(*v);
            if seen.len() >= limit {
                break;
            }
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn tv_complement_by_hand() {
        // real: a a b c (1/2, 1/4, 1/4, 0); synthetic: a b b d (1/4, 1/2, 0, 1/4), null dropped.
        // |1/2-1/4| + |1/4-1/2| + |1/4-0| + |0-1/4| = 1, so 1 - 0.5 = 0.5.
        let real = [0, 0, 1, 2];
        let synthetic = [0, 1, 1, 3, 4];
        assert!(close(
            tv_complement(&real, &synthetic, 4).expect("defined"),
            0.5
        ));
        assert!(close(tv_complement(&real, &real, 4).expect("defined"), 1.0));
        assert_eq!(tv_complement(&real, &[4, 4], 4), None);
    }

    #[test]
    fn ks_complement_by_hand() {
        // real {1,2,3,4}, synthetic {3,4,5,6}: at x = 2 the CDFs are 1/2 and 0, at x = 4 1 and 1/2.
        let d = ks_complement(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0, 5.0, 6.0]).expect("defined");
        assert!(close(d, 0.5), "{d}");
        // Ties across samples: real {1,1,2}, synthetic {1,2,2}: at 1 the CDFs are 2/3 and 1/3.
        let d = ks_complement(&[1.0, 1.0, 2.0], &[2.0, 1.0, 2.0]).expect("defined");
        assert!(close(d, 1.0 - 1.0 / 3.0), "{d}");
        // Disjoint ranges give 0; NaN is dropped.
        let d = ks_complement(&[1.0, f64::NAN], &[5.0]).expect("defined");
        assert!(close(d, 0.0), "{d}");
        assert_eq!(ks_complement(&[f64::NAN], &[1.0]), None);
    }

    #[test]
    fn equal_width_edges_follow_numpy() {
        // numpy.histogram_bin_edges([0, 10], 10)[1:-1] == 1..9
        let edges = interior_edges(&[0.0, 10.0, f64::NAN], 10, Discretization::EqualWidth);
        assert_eq!(edges, (1..10).map(f64::from).collect::<Vec<_>>());
        // A constant column is widened by 0.5 on each side.
        let edges = interior_edges(&[3.0, 3.0], 2, Discretization::EqualWidth);
        assert_eq!(edges, vec![3.0]);
    }

    #[test]
    fn quantile_edges_are_deduplicated() {
        let edges = interior_edges(&[1.0, 1.0, 1.0, 2.0], 4, Discretization::Quantile);
        // numpy.quantile([1,1,1,2], [.25,.5,.75]) == [1, 1, 1.25]
        assert_eq!(edges, vec![1.0, 1.25]);
    }

    #[test]
    fn discretize_is_left_closed_with_open_ends_and_a_null_bin() {
        let codes = discretize(&[-5.0, 1.0, 1.5, 2.0, 99.0, f64::NAN], &[1.0, 2.0]);
        assert_eq!(codes, vec![0, 1, 1, 2, 2, 3]);
    }

    #[test]
    fn contingency_by_hand() {
        // real pairs: (0,0) (0,1) (1,1) (1,1): 1/4 1/4 0 1/2
        // synthetic:  (0,0) (0,0) (1,0) (1,1): 1/2 0 1/4 1/4
        // cells (0,0) (0,1) (1,0) (1,1): |1/4-1/2| + |1/4-0| + |0-1/4| + |1/2-1/4| = 1
        let real = ([0, 0, 1, 1].as_slice(), [0, 1, 1, 1].as_slice());
        let synthetic = ([0, 0, 1, 1].as_slice(), [0, 0, 0, 1].as_slice());
        let s = contingency_similarity(real, synthetic, (2, 2));
        assert!(close(s, 0.5), "{s}");
        assert!(close(contingency_similarity(real, real, (2, 2)), 1.0));
    }

    #[test]
    fn contingency_sparse_path_matches_dense() {
        let a: Vec<u32> = (0..200).map(|i| (i * 7919) % 5000).collect();
        let b: Vec<u32> = (0..200).map(|i| (i * 104_729) % 3000).collect();
        let c: Vec<u32> = (0..150).map(|i| (i * 31) % 5000).collect();
        let d: Vec<u32> = (0..150).map(|i| (i * 17) % 3000).collect();
        let sparse = contingency_similarity((&a, &b), (&c, &d), (5000, 3000));
        // Relabel into a small dense space with the same cell identities.
        let mut all: Vec<u64> = a
            .iter()
            .zip(&b)
            .chain(c.iter().zip(&d))
            .map(|(&x, &y)| u64::from(x) * 3000 + u64::from(y))
            .collect();
        all.sort_unstable();
        all.dedup();
        let relabel = |x: &[u32], y: &[u32]| -> Vec<u32> {
            x.iter()
                .zip(y)
                .map(|(&x, &y)| {
                    all.binary_search(&(u64::from(x) * 3000 + u64::from(y)))
                        .map_or(0, |i| i as u32)
                })
                .collect()
        };
        let (r, s) = (relabel(&a, &b), relabel(&c, &d));
        let zeros_r = vec![0u32; r.len()];
        let zeros_s = vec![0u32; s.len()];
        let dense = contingency_similarity((&r, &zeros_r), (&s, &zeros_s), (all.len(), 1));
        assert!(close(sparse, dense), "{sparse} {dense}");
        assert!(sparse < 1.0);
    }

    #[test]
    fn pearson_by_hand() {
        // x = 1 2 3, y = 1 3 2: means 2 and 2; sxy = (-1)(-1) + 0 + (1)(0) = 1; sxx = syy = 2.
        let r = pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).expect("defined");
        assert!(close(r, 0.5), "{r}");
        // Rows with NaN are dropped pairwise.
        let r = pearson(&[1.0, 2.0, f64::NAN, 3.0], &[2.0, 4.0, 0.0, 6.0]).expect("defined");
        assert!(close(r, 1.0), "{r}");
        assert_eq!(pearson(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert!(close(correlation_similarity(0.5, -0.5), 0.5));
    }

    #[test]
    fn cramers_v_by_hand() {
        // Perfect association: V = 1; independence: V = 0.
        assert!(close(
            cramers_v(&[0, 0, 1, 1], &[1, 1, 0, 0], (2, 2)).expect("defined"),
            1.0
        ));
        assert!(close(
            cramers_v(&[0, 0, 1, 1], &[0, 1, 0, 1], (2, 2)).expect("defined"),
            0.0
        ));
        // [[30, 10], [20, 20]]: chi2 = 5.333 (no correction), n = 80, V = sqrt(5.333 / 80).
        let a: Vec<u32> = [0; 40].into_iter().chain([1; 40]).collect();
        let b: Vec<u32> = [0; 30]
            .into_iter()
            .chain([1; 10])
            .chain([0; 20])
            .chain([1; 20])
            .collect();
        let v = cramers_v(&a, &b, (2, 2)).expect("defined");
        assert!(close(v, (16.0 / 3.0 / 80.0_f64).sqrt()), "{v}");
        assert_eq!(cramers_v(&[0, 0], &[0, 1], (2, 2)), None);
    }

    #[test]
    fn cramers_v_sparse_path_matches_dense() {
        // Codes spread over 5000 x 3000 levels (sorted-key path) and the same codes relabelled
        // into their few distinct values (dense path): V ignores labels.
        let a: Vec<u32> = (0..300).map(|i| (i * 7919 % 13) * 300).collect();
        let b: Vec<u32> = (0..300).map(|i| (i * 104_729 % 11 + i % 3) * 200).collect();
        let compact = |v: &[u32]| -> (Vec<u32>, usize) {
            let mut levels: Vec<u32> = v.to_vec();
            levels.sort_unstable();
            levels.dedup();
            let codes = v
                .iter()
                .map(|x| levels.binary_search(x).map_or(0, |i| i as u32))
                .collect();
            (codes, levels.len())
        };
        let (ca, la) = compact(&a);
        let (cb, lb) = compact(&b);
        let sparse = cramers_v(&a, &b, (5000, 3000)).expect("defined");
        let dense = cramers_v(&ca, &cb, (la, lb)).expect("defined");
        assert!(close(sparse, dense), "{sparse} {dense}");
        assert!(sparse > 0.0 && sparse < 1.0);
    }
}
