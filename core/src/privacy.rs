//! Differential-privacy accounting and mechanisms.
//!
//! Everything is accounted in zero-concentrated DP (ρ-zCDP): Gaussian mechanisms cost Δ²/(2σ²),
//! an ε-DP exponential mechanism costs ε²/8 (bounded-range analysis), and costs add. The total ρ is
//! chosen so that the whole fit satisfies the user's (ε, δ)-DP through the conversion of Canonne,
//! Kamath and Steinke (2020). Unknown domains (category values) are released by Gaussian
//! thresholding ("partition selection"), which adds a δ of its own; the two δ shares are stated.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// The user's privacy request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum PrivacyMode {
    /// (ε, δ)-differential privacy for the whole fit.
    Dp { epsilon: f64, delta: f64 },
    /// No privacy guarantee: requested explicitly with `--no-dp`.
    None,
}

impl PrivacyMode {
    /// Validates ε > 0 and 0 < δ < 1.
    pub fn dp(epsilon: f64, delta: f64) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(CoreError::Config(format!(
                "epsilon must be a positive number, got {epsilon}"
            )));
        }
        if !(delta.is_finite() && delta > 0.0 && delta < 1.0) {
            return Err(CoreError::Config(format!(
                "delta must be in (0, 1), got {delta}"
            )));
        }
        Ok(PrivacyMode::Dp { epsilon, delta })
    }

    pub fn is_dp(&self) -> bool {
        matches!(self, PrivacyMode::Dp { .. })
    }
}

/// One accounted use of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    pub stage: String,
    pub rho: f64,
}

/// The privacy ledger of one fit: the budget, and what each stage spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub epsilon: f64,
    pub delta: f64,
    /// δ reserved for partition selection (releasing category values seen in the data).
    pub delta_selection: f64,
    /// δ used by the zCDP → (ε, δ) conversion.
    pub delta_conversion: f64,
    /// Total zCDP budget implied by (ε, δ_conversion).
    pub rho_total: f64,
    pub charges: Vec<Charge>,
}

impl Ledger {
    /// A ledger for (ε, δ): half of δ for the conversion, half for partition selection.
    pub fn new(epsilon: f64, delta: f64) -> Result<Self> {
        PrivacyMode::dp(epsilon, delta)?;
        let delta_conversion = delta / 2.0;
        let rho_total = rho_for(epsilon, delta_conversion);
        Ok(Ledger {
            epsilon,
            delta,
            delta_selection: delta - delta_conversion,
            delta_conversion,
            rho_total,
            charges: Vec::new(),
        })
    }

    pub fn spent(&self) -> f64 {
        self.charges.iter().map(|c| c.rho).sum()
    }

    /// Records a charge; refuses to overspend (beyond rounding).
    pub fn charge(&mut self, stage: &str, rho: f64) -> Result<()> {
        if !(rho.is_finite() && rho >= 0.0) {
            return Err(CoreError::Internal(format!(
                "bad privacy charge {rho} for {stage}"
            )));
        }
        if self.spent() + rho > self.rho_total * (1.0 + 1e-9) {
            return Err(CoreError::Internal(format!(
                "privacy budget overspent at stage {stage}: {} + {rho} > {}",
                self.spent(),
                self.rho_total
            )));
        }
        self.charges.push(Charge {
            stage: stage.to_string(),
            rho,
        });
        Ok(())
    }

    /// The (ε, δ) actually implied by what was spent (≤ the request).
    pub fn epsilon_spent(&self) -> f64 {
        epsilon_for(self.spent(), self.delta_conversion)
    }
}

/// log δ(ε) for ρ-zCDP at order α (CKS 2020, Proposition 12).
fn log_delta_at(rho: f64, epsilon: f64, alpha: f64) -> f64 {
    (alpha - 1.0) * (alpha * rho - epsilon) - (alpha - 1.0).ln() + alpha * (1.0 - 1.0 / alpha).ln()
}

/// The smallest δ for which ρ-zCDP implies (ε, δ)-DP.
pub fn delta_for(rho: f64, epsilon: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    // The bound is quasi-convex in α; a log-spaced scan then a local refinement is plenty.
    let mut best = f64::INFINITY;
    let mut best_alpha = 2.0;
    let mut a = 1.0001f64;
    while a < 1e7 {
        let v = log_delta_at(rho, epsilon, a);
        if v < best {
            best = v;
            best_alpha = a;
        }
        a *= 1.01;
    }
    let (mut lo, mut hi) = (best_alpha / 1.02, best_alpha * 1.02);
    for _ in 0..100 {
        let m1 = lo + (hi - lo) / 3.0;
        let m2 = hi - (hi - lo) / 3.0;
        if log_delta_at(rho, epsilon, m1.max(1.000001)) < log_delta_at(rho, epsilon, m2) {
            hi = m2;
        } else {
            lo = m1;
        }
    }
    best = best.min(log_delta_at(rho, epsilon, ((lo + hi) / 2.0).max(1.000001)));
    best.exp().min(1.0)
}

/// The largest ρ whose zCDP guarantee implies (ε, δ)-DP.
pub fn rho_for(epsilon: f64, delta: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, epsilon.max(1.0));
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if delta_for(mid, epsilon) <= delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The smallest ε such that ρ-zCDP implies (ε, δ)-DP.
pub fn epsilon_for(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1e6f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if delta_for(rho, mid) <= delta {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// σ of the Gaussian mechanism with L2 sensitivity `sensitivity` costing `rho`.
pub fn gaussian_sigma(rho: f64, sensitivity: f64) -> f64 {
    sensitivity / (2.0 * rho).sqrt()
}

/// Adds N(0, σ²) to every count.
pub fn add_gaussian<R: Rng + ?Sized>(values: &mut [f64], sigma: f64, rng: &mut R) {
    for v in values {
        let z: f64 = StandardNormal.sample(rng);
        *v += sigma * z;
    }
}

/// One draw of N(0, σ²).
pub fn gaussian<R: Rng + ?Sized>(sigma: f64, rng: &mut R) -> f64 {
    let z: f64 = StandardNormal.sample(rng);
    sigma * z
}

/// The ε-DP exponential mechanism over `scores` with score sensitivity `sensitivity`.
/// Costs ε²/8 in zCDP.
pub fn exponential_mechanism<R: Rng + ?Sized>(
    scores: &[f64],
    epsilon: f64,
    sensitivity: f64,
    rng: &mut R,
) -> usize {
    let scale = epsilon / (2.0 * sensitivity);
    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| ((s - max) * scale).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// ε of an exponential mechanism that costs `rho` in zCDP.
pub fn em_epsilon(rho: f64) -> f64 {
    (8.0 * rho).sqrt()
}

/// Sensitivity of the empirical mutual information (in nats) on `n` rows (PrivBayes, Lemma 4.1).
pub fn mutual_information_sensitivity(n: f64) -> f64 {
    let n = n.max(2.0);
    (2.0 / n) * ((n + 1.0) / 2.0).ln() + ((n - 1.0) / n) * ((n + 1.0) / (n - 1.0)).ln()
}

/// The upper tail of the standard normal, Q(z) = P(Z > z), accurate in the far tail.
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (W. J. Cody's rational Chebyshev fit, |rel err| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The z with Q(z) = p, for small p.
pub fn normal_tail_inverse(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if normal_tail(mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The threshold a noisy count must exceed for a value seen in the data to be released, so that a
/// value held by a single record is released with probability at most `delta` (per `keys_per_row`
/// values one record can add).
pub fn selection_threshold(sigma: f64, delta: f64, keys_per_row: usize) -> f64 {
    1.0 + sigma * normal_tail_inverse(delta / keys_per_row.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn conversion_matches_known_values() {
        // Simple bound: eps = rho + 2 sqrt(rho ln(1/delta)); CKS is tighter, so rho_for >= simple.
        let (eps, delta) = (1.0f64, 1e-9f64);
        let l = (1.0 / delta).ln();
        let simple = ((eps + l).sqrt() - l.sqrt()).powi(2);
        let rho = rho_for(eps, delta);
        assert!(rho >= simple, "{rho} < {simple}");
        assert!(rho < simple * 1.5, "{rho} vs {simple}");
        assert!((delta_for(rho, eps) - delta).abs() / delta < 1e-3);
        assert!((epsilon_for(rho, delta) - eps).abs() < 1e-6);
    }

    #[test]
    fn conversion_is_monotone() {
        let a = rho_for(0.5, 1e-9);
        let b = rho_for(1.0, 1e-9);
        let c = rho_for(1.0, 1e-6);
        assert!(a < b && b < c);
    }

    #[test]
    fn ledger_refuses_overspending() {
        let mut l = Ledger::new(1.0, 1e-9).unwrap();
        let half = l.rho_total / 2.0;
        l.charge("a", half).unwrap();
        l.charge("b", half).unwrap();
        assert!(l.charge("c", l.rho_total * 0.01).is_err());
        assert!((l.epsilon_spent() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn invalid_budgets_are_rejected() {
        assert!(PrivacyMode::dp(0.0, 1e-9).is_err());
        assert!(PrivacyMode::dp(-1.0, 1e-9).is_err());
        assert!(PrivacyMode::dp(f64::NAN, 1e-9).is_err());
        assert!(PrivacyMode::dp(1.0, 0.0).is_err());
        assert!(PrivacyMode::dp(1.0, 1.0).is_err());
    }

    #[test]
    fn gaussian_noise_has_the_requested_scale() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut v = vec![0.0; 200_000];
        add_gaussian(&mut v, 3.0, &mut rng);
        let var = v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64;
        assert!((var.sqrt() - 3.0).abs() < 0.03, "{}", var.sqrt());
        assert!((gaussian_sigma(0.5, 1.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn normal_tail_is_accurate() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_963_985) - 0.025).abs() < 1e-6);
        let z = normal_tail_inverse(1e-10);
        assert!((z - 6.361_340_9).abs() < 1e-3, "{z}");
    }

    #[test]
    fn exponential_mechanism_prefers_high_scores() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let scores = [0.0, 1.0, 0.5];
        let mut hits = [0usize; 3];
        for _ in 0..2000 {
            hits[exponential_mechanism(&scores, 4.0, 0.5, &mut rng)] += 1;
        }
        // weights e^0, e^4, e^2 -> shares ~ 0.016, 0.867, 0.117
        assert!(hits[1] > 1600 && hits[0] < 100, "{hits:?}");
    }

    #[test]
    fn selection_threshold_bounds_release_of_singletons() {
        let t = selection_threshold(10.0, 1e-9, 1);
        assert!(normal_tail((t - 1.0) / 10.0) <= 1.01e-9);
    }
}
