//! Data-independent fine grids over numbers. A numeric column's distribution is first counted on
//! such a grid; bins, spikes and the within-bin shape are all derived from those counts, so the
//! grid itself reveals nothing about the data (a requirement for releasing domains under DP).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Which grid a numeric column is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GridKind {
    /// Integers: one bucket per integer for |x| <= 128, then integer-aligned log buckets (~2.2%).
    Integer,
    /// Reals: an exact bucket for zero, then log buckets (~2.2%) over 1e-9 ..= 1e18 in magnitude.
    Real,
    /// Days since 1970-01-01: one bucket per day from 1800-01-01 to 2300-01-01.
    Days,
}

/// Fine buckets are grouped this many at a time into coarse buckets (the support search).
pub const COARSE_GROUP: usize = 32;

const LOG_STEPS_PER_OCTAVE: f64 = 32.0;
const EXACT_INT_LIMIT: i64 = 128;
const DAYS_FIRST: i64 = -62_091; // 1800-01-01
const DAYS_LAST: i64 = 120_530; // 2300-01-01

fn integer_edges() -> Vec<f64> {
    let mut pos = Vec::new();
    let mut e = (EXACT_INT_LIMIT + 1) as f64;
    let ratio = 2f64.powf(1.0 / LOG_STEPS_PER_OCTAVE);
    while e < 9.0e18 {
        pos.push(e);
        e = (e * ratio).round().max(e + 1.0);
    }
    let mut edges: Vec<f64> = pos.iter().skip(1).rev().map(|x| -(x - 1.0)).collect();
    // exact buckets [v, v+1) for v in -128..=128
    for v in -EXACT_INT_LIMIT..=EXACT_INT_LIMIT {
        edges.push(v as f64);
    }
    edges.extend(pos);
    edges
}

fn real_edges() -> Vec<f64> {
    let lo = 1e-9f64;
    let steps = (LOG_STEPS_PER_OCTAVE * (1e18f64 / lo).log2()).ceil() as i32;
    let pos: Vec<f64> = (0..=steps)
        .map(|j| lo * 2f64.powf(j as f64 / LOG_STEPS_PER_OCTAVE))
        .collect();
    let mut edges: Vec<f64> = pos.iter().rev().map(|x| -x).collect();
    // [-1e-9, 0) holds tiny negatives, [0, MIN_POSITIVE) holds exactly zero.
    edges.push(0.0);
    edges.push(f64::MIN_POSITIVE);
    edges.extend(pos);
    edges
}

fn days_edges() -> Vec<f64> {
    (DAYS_FIRST..=DAYS_LAST).map(|d| d as f64).collect()
}

/// The bucket edges of a grid: bucket i is [edges[i], edges[i+1]); values below the first edge
/// fall into bucket 0 and values at or above the last edge into the last bucket.
pub fn edges(kind: GridKind) -> &'static [f64] {
    static INT: OnceLock<Vec<f64>> = OnceLock::new();
    static REAL: OnceLock<Vec<f64>> = OnceLock::new();
    static DAYS: OnceLock<Vec<f64>> = OnceLock::new();
    match kind {
        GridKind::Integer => INT.get_or_init(integer_edges),
        GridKind::Real => REAL.get_or_init(real_edges),
        GridKind::Days => DAYS.get_or_init(days_edges),
    }
}

/// Number of fine buckets.
pub fn len(kind: GridKind) -> usize {
    edges(kind).len() - 1
}

/// The fine bucket holding `x` (finite).
pub fn bucket_of(kind: GridKind, x: f64) -> usize {
    let e = edges(kind);
    let i = e.partition_point(|&edge| edge <= x);
    i.saturating_sub(1).min(e.len() - 2)
}

/// Bounds [lo, hi) of a fine bucket.
pub fn bounds(kind: GridKind, bucket: usize) -> (f64, f64) {
    let e = edges(kind);
    (e[bucket], e[bucket + 1])
}

/// The single value a bucket holds, if it holds exactly one (integers near zero, the zero bucket).
pub fn exact_value(kind: GridKind, bucket: usize) -> Option<f64> {
    let (lo, hi) = bounds(kind, bucket);
    match kind {
        GridKind::Integer | GridKind::Days => (hi - lo == 1.0).then_some(lo),
        GridKind::Real => (lo == 0.0).then_some(0.0),
    }
}

/// The coarse bucket a fine bucket belongs to.
pub fn coarse_of(bucket: usize) -> usize {
    bucket / COARSE_GROUP
}

/// Number of coarse buckets.
pub fn coarse_len(kind: GridKind) -> usize {
    len(kind).div_ceil(COARSE_GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_strictly_increasing() {
        for k in [GridKind::Integer, GridKind::Real, GridKind::Days] {
            let e = edges(k);
            assert!(e.windows(2).all(|w| w[0] < w[1]), "{k:?}");
        }
    }

    #[test]
    fn integer_buckets_are_exact_near_zero_and_integer_aligned() {
        for v in [-128i64, -1, 0, 1, 17, 90, 128] {
            let b = bucket_of(GridKind::Integer, v as f64);
            assert_eq!(exact_value(GridKind::Integer, b), Some(v as f64));
        }
        let b = bucket_of(GridKind::Integer, 99_999.0);
        let (lo, hi) = bounds(GridKind::Integer, b);
        assert!(lo <= 99_999.0 && 99_999.0 < hi);
        assert_eq!(lo.fract(), 0.0);
        assert!((hi - lo) / lo < 0.03);
        let b = bucket_of(GridKind::Integer, -5000.0);
        let (lo, hi) = bounds(GridKind::Integer, b);
        assert!(lo <= -5000.0 && -5000.0 < hi, "{lo} {hi}");
    }

    #[test]
    fn real_zero_is_exact() {
        let b = bucket_of(GridKind::Real, 0.0);
        assert_eq!(exact_value(GridKind::Real, b), Some(0.0));
        let b = bucket_of(GridKind::Real, 1e-12);
        assert_eq!(exact_value(GridKind::Real, b), None);
        let b = bucket_of(GridKind::Real, -3.5);
        let (lo, hi) = bounds(GridKind::Real, b);
        assert!(lo <= -3.5 && -3.5 < hi);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        assert_eq!(bucket_of(GridKind::Days, -1e9), 0);
        assert_eq!(bucket_of(GridKind::Days, 1e9), len(GridKind::Days) - 1);
        assert_eq!(bucket_of(GridKind::Real, f64::MAX), len(GridKind::Real) - 1);
    }
}
