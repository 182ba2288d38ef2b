//! Shard leases: which shard is open, leased (to whom, which attempt, until when), being
//! committed, or committed. Pure state with an explicit clock, so every rule is unit-tested; the
//! gRPC service wraps it in a mutex.
//!
//! Rules:
//! - a lease lapses `lease` after it was granted or last renewed; a lapsed shard is leased again
//!   with the next attempt number;
//! - only the current attempt of a shard may heartbeat, complete or fail it; anything else is
//!   stale and ignored (its object is discarded by the caller);
//! - a completed attempt is committed once; a shard that failed `MAX_ATTEMPTS` times, or failed
//!   in a way a retry cannot help, fails the job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chimera_core::plan::ShardPlan;

/// Attempts per shard before the job fails.
pub const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Open,
    Leased {
        worker: String,
        attempt: u32,
        deadline: Instant,
        rows_done: u64,
    },
    /// The attempt's object is being copied into place; not leased again meanwhile.
    Committing {
        attempt: u32,
    },
    Committed {
        attempt: u32,
    },
}

/// What a lease request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    Shard {
        plan: ShardPlan,
        attempt: u32,
    },
    /// Every unfinished shard is leased or being committed: ask again later.
    Wait,
    /// Every shard is committed.
    Done,
    /// The job has failed; workers should stop.
    Failed,
}

/// Why a report was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    UnknownShard,
    /// The job has failed; nothing more is committed.
    JobFailed,
    /// Another attempt holds the shard now, or it is already committed.
    NotCurrent {
        current: Option<u32>,
    },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::UnknownShard => write!(f, "no such shard"),
            Stale::JobFailed => write!(f, "the job has failed"),
            Stale::NotCurrent { current: Some(a) } => {
                write!(
                    f,
                    "stale attempt: attempt {a} holds or has committed the shard"
                )
            }
            Stale::NotCurrent { current: None } => write!(f, "stale attempt: the shard is open"),
        }
    }
}

/// The shards of one job and their state.
#[derive(Debug)]
pub struct Leases {
    plans: Vec<ShardPlan>,
    slots: Vec<Slot>,
    attempts: Vec<u32>,
    failures: Vec<u32>,
    lease: Duration,
    /// Next shard to look at first (round-robin start keeps lease requests O(1) on average).
    cursor: usize,
    open: usize,
    committed: usize,
    failed: Option<String>,
    /// Leases that lapsed, for the logs and the benchmark.
    pub lapsed: u64,
}

impl Leases {
    /// `committed` holds the shards a previous coordinator already committed (resume), with
    /// their attempt numbers; new attempts of other shards are numbered after `first_attempt`.
    pub fn new(
        plans: Vec<ShardPlan>,
        committed: &BTreeMap<u32, u32>,
        first_attempt: u32,
        lease: Duration,
    ) -> Leases {
        let slots: Vec<Slot> = plans
            .iter()
            .map(|p| match committed.get(&p.shard) {
                Some(&attempt) => Slot::Committed { attempt },
                None => Slot::Open,
            })
            .collect();
        let done = slots
            .iter()
            .filter(|s| matches!(s, Slot::Committed { .. }))
            .count();
        Leases {
            attempts: vec![first_attempt; plans.len()],
            failures: vec![0; plans.len()],
            open: plans.len() - done,
            committed: done,
            plans,
            slots,
            lease,
            cursor: 0,
            failed: None,
            lapsed: 0,
        }
    }

    pub fn shards(&self) -> usize {
        self.plans.len()
    }

    pub fn committed(&self) -> usize {
        self.committed
    }

    pub fn is_done(&self) -> bool {
        self.committed == self.plans.len()
    }

    /// Why the job failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Leases the next open (or lapsed) shard to `worker`.
    pub fn lease(&mut self, worker: &str, now: Instant) -> Grant {
        if self.failed.is_some() {
            return Grant::Failed;
        }
        if self.is_done() {
            return Grant::Done;
        }
        let n = self.slots.len();
        for k in 0..n {
            let i = (self.cursor + k) % n;
            let free = match &self.slots[i] {
                Slot::Open => true,
                Slot::Leased { deadline, .. } if *deadline <= now => {
                    self.lapsed += 1;
                    self.open += 1;
                    tracing::warn!(shard = i, "lease lapsed; leasing the shard again");
                    true
                }
                _ => false,
            };
            if free {
                self.attempts[i] += 1;
                let attempt = self.attempts[i];
                self.slots[i] = Slot::Leased {
                    worker: worker.to_owned(),
                    attempt,
                    deadline: now + self.lease,
                    rows_done: 0,
                };
                self.open -= 1;
                self.cursor = (i + 1) % n;
                return Grant::Shard {
                    plan: self.plans[i],
                    attempt,
                };
            }
        }
        Grant::Wait
    }

    fn index(&self, shard: u32) -> Result<usize, Stale> {
        let i = shard as usize;
        if i < self.slots.len() {
            Ok(i)
        } else {
            Err(Stale::UnknownShard)
        }
    }

    fn current(&self, i: usize) -> Option<u32> {
        match &self.slots[i] {
            Slot::Open => None,
            Slot::Leased { attempt, .. }
            | Slot::Committing { attempt }
            | Slot::Committed { attempt } => Some(*attempt),
        }
    }

    /// Renews the lease of the current attempt; false tells the worker to stop.
    pub fn heartbeat(&mut self, shard: u32, attempt: u32, rows: u64, now: Instant) -> bool {
        let Ok(i) = self.index(shard) else {
            return false;
        };
        if self.failed.is_some() {
            return false;
        }
        let lease = self.lease;
        match &mut self.slots[i] {
            Slot::Leased {
                attempt: a,
                deadline,
                rows_done,
                ..
            } if *a == attempt => {
                // A lapsed lease that nobody took yet is simply renewed.
                *deadline = now + lease;
                *rows_done = rows;
                true
            }
            _ => false,
        }
    }

    /// Starts committing a completed attempt: only the shard's current attempt may.
    pub fn begin_commit(&mut self, shard: u32, attempt: u32) -> Result<ShardPlan, Stale> {
        let i = self.index(shard)?;
        if self.failed.is_some() {
            return Err(Stale::JobFailed);
        }
        match &self.slots[i] {
            Slot::Leased { attempt: a, .. } if *a == attempt => {
                self.slots[i] = Slot::Committing { attempt };
                Ok(self.plans[i])
            }
            _ => Err(Stale::NotCurrent {
                current: self.current(i),
            }),
        }
    }

    /// Ends a commit started by [`Leases::begin_commit`]: committed, or reopened when the copy
    /// failed and a retry can help.
    pub fn end_commit(&mut self, shard: u32, attempt: u32, ok: bool, retryable: bool, why: &str) {
        let Ok(i) = self.index(shard) else { return };
        if self.slots[i] != (Slot::Committing { attempt }) {
            return;
        }
        if ok {
            self.slots[i] = Slot::Committed { attempt };
            self.committed += 1;
        } else {
            self.slots[i] = Slot::Leased {
                worker: String::new(),
                attempt,
                deadline: Instant::now(),
                rows_done: 0,
            };
            self.fail(shard, attempt, why, retryable);
        }
    }

    /// Records a failed attempt. Returns true when the job as a whole has failed.
    pub fn fail(&mut self, shard: u32, attempt: u32, why: &str, retryable: bool) -> bool {
        let Ok(i) = self.index(shard) else {
            return self.failed.is_some();
        };
        match &self.slots[i] {
            Slot::Leased { attempt: a, .. } if *a == attempt => {}
            _ => return self.failed.is_some(), // stale: nothing to do
        }
        self.slots[i] = Slot::Open;
        self.open += 1;
        self.failures[i] += 1;
        if !retryable {
            self.failed = Some(format!("shard {shard} attempt {attempt}: {why}"));
        } else if self.failures[i] >= MAX_ATTEMPTS {
            self.failed = Some(format!(
                "shard {shard} failed {} times; last: {why}",
                self.failures[i]
            ));
        }
        self.failed.is_some()
    }

    /// Fails the job (e.g. the manifest cannot be written).
    pub fn fail_job(&mut self, why: String) {
        self.failed.get_or_insert(why);
    }

    /// Rows reported so far by the current attempts of leased shards, plus committed shards.
    pub fn rows_done(&self) -> u64 {
        self.slots
            .iter()
            .zip(&self.plans)
            .map(|(s, p)| match s {
                Slot::Leased { rows_done, .. } => *rows_done,
                Slot::Committing { .. } | Slot::Committed { .. } => p.rows,
                Slot::Open => 0,
            })
            .sum()
    }

    /// Highest attempt number handed out so far (for numbering after a restart).
    pub fn max_attempt(&self) -> u32 {
        self.attempts.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chimera_core::plan::plan;

    fn leases(n: u64) -> Leases {
        Leases::new(
            plan(n * 10, 10, 1),
            &BTreeMap::new(),
            0,
            Duration::from_secs(10),
        )
    }

    fn shard(g: Grant) -> (u32, u32) {
        match g {
            Grant::Shard { plan, attempt } => (plan.shard, attempt),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_shard_is_leased_once_then_wait_then_done() {
        let mut l = leases(3);
        let t = Instant::now();
        let got: Vec<(u32, u32)> = (0..3).map(|_| shard(l.lease("w", t))).collect();
        assert_eq!(got, vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(l.lease("w", t), Grant::Wait);
        for (s, a) in got {
            l.begin_commit(s, a).unwrap();
            l.end_commit(s, a, true, false, "");
        }
        assert!(l.is_done());
        assert_eq!(l.lease("w", t), Grant::Done);
    }

    #[test]
    fn a_lapsed_lease_is_leased_again_and_the_old_attempt_is_stale() {
        let mut l = leases(1);
        let t = Instant::now();
        let (s, a1) = shard(l.lease("dead", t));
        assert_eq!(l.lease("w2", t + Duration::from_secs(5)), Grant::Wait);
        // a heartbeat renews the lease
        assert!(l.heartbeat(s, a1, 5, t + Duration::from_secs(5)));
        assert_eq!(l.lease("w2", t + Duration::from_secs(12)), Grant::Wait);
        // silence past the deadline: leased again, with a new attempt
        let (s2, a2) = shard(l.lease("w2", t + Duration::from_secs(16)));
        assert_eq!((s2, a2), (s, 2));
        assert_eq!(l.lapsed, 1);
        // the first attempt wakes up: its heartbeat and its report are refused
        assert!(!l.heartbeat(s, a1, 10, t + Duration::from_secs(17)));
        assert_eq!(
            l.begin_commit(s, a1),
            Err(Stale::NotCurrent { current: Some(2) })
        );
        l.begin_commit(s, a2).unwrap();
        // while committing, the shard is neither leased nor committable again
        assert_eq!(l.lease("w3", t + Duration::from_secs(100)), Grant::Wait);
        assert!(l.begin_commit(s, a2).is_err());
        l.end_commit(s, a2, true, false, "");
        assert_eq!(l.lease("w3", t + Duration::from_secs(100)), Grant::Done);
        // a late report after the commit is stale too
        assert!(l.begin_commit(s, a1).is_err());
        assert_eq!(l.committed(), 1);
    }

    #[test]
    fn retryable_failures_reopen_the_shard_until_the_limit() {
        let mut l = leases(1);
        let t = Instant::now();
        for i in 1..MAX_ATTEMPTS {
            let (s, a) = shard(l.lease("w", t));
            assert_eq!(a, i);
            assert!(!l.fail(s, a, "timeout", true));
        }
        let (s, a) = shard(l.lease("w", t));
        assert!(l.fail(s, a, "timeout", true));
        assert_eq!(l.lease("w", t), Grant::Failed);
        assert!(l.failure().unwrap().contains("timeout"));
    }

    #[test]
    fn a_failure_no_retry_can_help_fails_the_job_at_once() {
        let mut l = leases(2);
        let t = Instant::now();
        let (s0, a0) = shard(l.lease("w", t));
        let (s1, a1) = shard(l.lease("w2", t));
        assert!(l.fail(s0, a0, "model is invalid", false));
        assert_eq!(l.lease("w", t), Grant::Failed);
        // the other worker is told to stop and cannot commit
        assert!(!l.heartbeat(s1, a1, 0, t));
        assert_eq!(l.begin_commit(s1, a1), Err(Stale::JobFailed));
    }

    #[test]
    fn a_stale_failure_changes_nothing() {
        let mut l = leases(1);
        let t = Instant::now();
        let (s, a1) = shard(l.lease("w", t));
        let (_, a2) = shard(l.lease("w2", t + Duration::from_secs(11)));
        assert!(!l.fail(s, a1, "late", false));
        assert!(l.failure().is_none());
        l.begin_commit(s, a2).unwrap();
    }

    #[test]
    fn a_failed_commit_reopens_the_shard() {
        let mut l = leases(1);
        let t = Instant::now();
        let (s, a) = shard(l.lease("w", t));
        l.begin_commit(s, a).unwrap();
        l.end_commit(s, a, false, true, "store unavailable");
        assert_eq!(shard(l.lease("w", t)), (s, a + 1));
    }

    #[test]
    fn resume_skips_committed_shards_and_numbers_attempts_after_the_old_ones() {
        let committed: BTreeMap<u32, u32> = [(0, 3), (2, 1)].into_iter().collect();
        let mut l = Leases::new(plan(40, 10, 1), &committed, 7, Duration::from_secs(10));
        assert_eq!(l.committed(), 2);
        let t = Instant::now();
        let got: Vec<(u32, u32)> = (0..2).map(|_| shard(l.lease("w", t))).collect();
        assert_eq!(got, vec![(1, 8), (3, 8)]);
        assert_eq!(l.lease("w", t), Grant::Wait);
    }
}
