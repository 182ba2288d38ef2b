//! Splitting a job into shards. A shard's rows depend only on the job seed and the shard id,
//! never on which worker samples it or how often it is retried.

use crate::rng;

/// One unit of sampling work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPlan {
    pub shard: u32,
    /// Index of the shard's first row in the whole output (identifiers are numbered from it).
    pub first_row: u64,
    pub rows: u64,
    /// Seed of the shard, derived from the job seed and the shard id.
    pub seed: u64,
}

/// Most shards in one job (shard ids are `u32` and part names have five digits or more).
pub const MAX_SHARDS: u64 = 10_000_000;

/// Splits `rows` into shards of at most `shard_rows`.
pub fn plan(rows: u64, shard_rows: u64, job_seed: u64) -> Vec<ShardPlan> {
    let shard_rows = shard_rows.max(1);
    (0..rows.div_ceil(shard_rows))
        .map(|i| ShardPlan {
            shard: i as u32,
            first_row: i * shard_rows,
            rows: shard_rows.min(rows - i * shard_rows),
            seed: rng::derive_seed(job_seed, &[0x0053_4841_5244, i]),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_covers_rows_exactly_with_distinct_seeds() {
        let p = plan(2_500_001, 1_000_000, 7);
        assert_eq!(p.len(), 3);
        assert_eq!(p.iter().map(|s| s.rows).sum::<u64>(), 2_500_001);
        assert_eq!(p[2].first_row, 2_000_000);
        assert_ne!(p[0].seed, p[1].seed);
        assert_eq!(plan(10, 3, 7), plan(10, 3, 7));
        assert_ne!(plan(10, 3, 7)[0].seed, plan(10, 3, 8)[0].seed);
    }
}
