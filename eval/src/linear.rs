//! The linear reference models of ML efficacy: L2-regularised logistic regression (Newton's
//! method) for a binary target and ridge regression for a numeric one, on one-hot categories
//! and standardised numbers, as MALLM-GAN reports beside its boosted trees.

use rayon::prelude::*;

/// Categories of a column that get their own indicator; rarer ones share one.
const MAX_LEVELS: usize = 30;
/// L2 penalty on the standardised weights (not the intercept).
const LAMBDA: f64 = 1.0;
/// Newton steps of the logistic fit at most.
const NEWTON_STEPS: usize = 30;

/// One feature column of a table: numbers (NaN for null) or category codes (`>= levels` null).
pub(crate) enum Feature<'a> {
    Numeric(&'a [f64]),
    Categorical { codes: &'a [u32], levels: usize },
}

/// How a feature column becomes design columns, learnt on the training rows.
enum Encoder {
    /// Standardised value (null as the mean) and, when the training column has nulls, an
    /// indicator of null.
    Numeric {
        mean: f64,
        scale: f64,
        null_indicator: bool,
    },
    /// One indicator per kept level (`slot[code]`), the rest (null included) share none.
    Categorical { slot: Vec<Option<usize>> },
}

impl Encoder {
    fn fit(feature: &Feature<'_>, rows: &[usize]) -> Encoder {
        match feature {
            Feature::Numeric(values) => {
                let present: Vec<f64> = rows
                    .iter()
                    .map(|&r| values[r])
                    .filter(|v| v.is_finite())
                    .collect();
                let n = present.len().max(1) as f64;
                let mean = present.iter().sum::<f64>() / n;
                let variance = present.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                Encoder::Numeric {
                    mean,
                    scale: if variance > 0.0 { variance.sqrt() } else { 1.0 },
                    null_indicator: present.len() < rows.len(),
                }
            }
            Feature::Categorical { codes, levels } => {
                let mut counts = vec![0usize; *levels + 1];
                for &r in rows {
                    counts[(codes[r] as usize).min(*levels)] += 1;
                }
                let mut order: Vec<usize> = (0..=*levels).filter(|&l| counts[l] > 0).collect();
                order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
                let mut slot = vec![None; *levels + 1];
                // The most frequent level is the baseline, left without an indicator.
                for (i, &level) in order.iter().skip(1).take(MAX_LEVELS).enumerate() {
                    slot[level] = Some(i);
                }
                Encoder::Categorical { slot }
            }
        }
    }

    fn width(&self) -> usize {
        match self {
            Encoder::Numeric { null_indicator, .. } => 1 + usize::from(*null_indicator),
            Encoder::Categorical { slot } => slot.iter().flatten().count(),
        }
    }

    fn write(&self, feature: &Feature<'_>, row: usize, out: &mut [f64]) {
        match (self, feature) {
            (
                Encoder::Numeric {
                    mean,
                    scale,
                    null_indicator,
                },
                Feature::Numeric(values),
            ) => {
                let v = values[row];
                let null = !v.is_finite();
                out[0] = if null { 0.0 } else { (v - mean) / scale };
                if *null_indicator {
                    out[1] = f64::from(u8::from(null));
                }
            }
            (Encoder::Categorical { slot }, Feature::Categorical { codes, levels }) => {
                out.iter_mut().for_each(|x| *x = 0.0);
                if let Some(Some(i)) = slot.get((codes[row] as usize).min(*levels)) {
                    out[*i] = 1.0;
                }
            }
            _ => {}
        }
    }
}

/// The design matrix of a model: encoders learnt on its training rows.
pub(crate) struct Design {
    encoders: Vec<Encoder>,
    width: usize,
}

impl Design {
    pub(crate) fn fit(features: &[Feature<'_>], rows: &[usize]) -> Design {
        let encoders: Vec<Encoder> = features.iter().map(|f| Encoder::fit(f, rows)).collect();
        // One more column for the intercept.
        let width = 1 + encoders.iter().map(Encoder::width).sum::<usize>();
        Design { encoders, width }
    }

    /// Row-major design rows (intercept first) of `rows` of `features`.
    pub(crate) fn rows(&self, features: &[Feature<'_>], rows: &[usize]) -> Vec<f64> {
        let mut out = vec![0.0; rows.len() * self.width];
        out.par_chunks_mut(self.width)
            .zip(rows)
            .for_each(|(x, &r)| {
                x[0] = 1.0;
                let mut at = 1;
                for (encoder, feature) in self.encoders.iter().zip(features) {
                    let w = encoder.width();
                    encoder.write(feature, r, &mut x[at..at + w]);
                    at += w;
                }
            });
        out
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major, `n` x `n`) by Cholesky.
/// `None` when `a` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - dot;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - dot) / l[j * n + j];
            }
        }
    }
    // L y = b, then L^T x = y.
    let mut y = vec![0.0; n];
    for i in 0..n {
        let dot: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (b[i] - dot) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let dot: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (y[i] - dot) / l[i * n + i];
    }
    Some(x)
}

/// `X^T diag(w) X + lambda I` (no penalty on the intercept) and `X^T r`, over row chunks in
/// parallel.
fn normal_equations(
    x: &[f64],
    width: usize,
    weights: &[f64],
    residual: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let (mut gram, gradient) = x
        .par_chunks(width * 1024)
        .zip(weights.par_chunks(1024))
        .zip(residual.par_chunks(1024))
        .map(|((rows, w), r)| {
            let mut gram = vec![0.0; width * width];
            let mut gradient = vec![0.0; width];
            for ((row, &w), &r) in rows.chunks(width).zip(w).zip(r) {
                for i in 0..width {
                    let wi = w * row[i];
                    if wi != 0.0 {
                        for j in 0..=i {
                            gram[i * width + j] += wi * row[j];
                        }
                    }
                    gradient[i] += row[i] * r;
                }
            }
            (gram, gradient)
        })
        .reduce(
            || (vec![0.0; width * width], vec![0.0; width]),
            |(mut g, mut d), (g2, d2)| {
                g.iter_mut().zip(g2).for_each(|(a, b)| *a += b);
                d.iter_mut().zip(d2).for_each(|(a, b)| *a += b);
                (g, d)
            },
        );
    for i in 0..width {
        for j in 0..i {
            gram[j * width + i] = gram[i * width + j];
        }
        if i > 0 {
            gram[i * width + i] += LAMBDA;
        }
    }
    (gram, gradient)
}

fn dot(row: &[f64], w: &[f64]) -> f64 {
    row.iter().zip(w).map(|(a, b)| a * b).sum()
}

/// Ridge regression weights of `y` on the design rows `x`; `None` if the system is singular.
pub(crate) fn ridge(x: &[f64], width: usize, y: &[f64]) -> Option<Vec<f64>> {
    let ones = vec![1.0; y.len()];
    let (gram, xty) = normal_equations(x, width, &ones, y);
    solve_spd(&gram, &xty, width)
}

/// L2-regularised logistic regression weights by Newton's method; `None` if a step fails.
pub(crate) fn logistic(x: &[f64], width: usize, labels: &[bool]) -> Option<Vec<f64>> {
    let mut w = vec![0.0; width];
    for _ in 0..NEWTON_STEPS {
        let p: Vec<f64> = x
            .par_chunks(width)
            .map(|row| 1.0 / (1.0 + (-dot(row, &w)).exp()))
            .collect();
        let weights: Vec<f64> = p.iter().map(|p| (p * (1.0 - p)).max(1e-12)).collect();
        let residual: Vec<f64> = p
            .iter()
            .zip(labels)
            .map(|(p, &l)| f64::from(u8::from(l)) - p)
            .collect();
        let (hessian, mut gradient) = normal_equations(x, width, &weights, &residual);
        for i in 1..width {
            gradient[i] -= LAMBDA * w[i];
        }
        let step = solve_spd(&hessian, &gradient, width)?;
        let largest = step.iter().fold(0.0f64, |m, s| m.max(s.abs()));
        w.iter_mut().zip(&step).for_each(|(w, s)| *w += s);
        if largest < 1e-8 {
            break;
        }
    }
    Some(w)
}

/// `x w` for every design row.
pub(crate) fn predict(x: &[f64], width: usize, w: &[f64]) -> Vec<f64> {
    x.par_chunks(width).map(|row| dot(row, w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] -> x = [0.5, 0].
        let x = solve_spd(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).expect("spd");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12, "{x:?}");
        assert!(solve_spd(&[0.0, 0.0, 0.0, 1.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn ridge_recovers_a_line_and_logistic_separates_classes() {
        // y = 3 + 2 x on x = 0..100 (standardised inside the design): predictions match.
        let xs: Vec<f64> = (0..100).map(f64::from).collect();
        let y: Vec<f64> = xs.iter().map(|x| 3.0 + 2.0 * x).collect();
        let rows: Vec<usize> = (0..100).collect();
        let features = [Feature::Numeric(&xs)];
        let design = Design::fit(&features, &rows);
        assert_eq!(design.width(), 2);
        let x = design.rows(&features, &rows);
        let w = ridge(&x, 2, &y).expect("solvable");
        let fitted = predict(&x, 2, &w);
        // The penalty (1 against 100 rows) shrinks the slope by 1%: within 1% of the range.
        for (f, t) in fitted.iter().zip(&y) {
            assert!((f - t).abs() < 2.0, "{f} vs {t}");
        }

        // Label = category is `b` (code 1), with one numeric noise column holding nulls.
        let codes: Vec<u32> = (0..200).map(|i| (i % 3) as u32).collect();
        let noise: Vec<f64> = (0..200)
            .map(|i| {
                if i % 7 == 0 {
                    f64::NAN
                } else {
                    f64::from(i % 5)
                }
            })
            .collect();
        let labels: Vec<bool> = codes.iter().map(|&c| c == 1).collect();
        let rows: Vec<usize> = (0..200).collect();
        let features = [
            Feature::Categorical {
                codes: &codes,
                levels: 3,
            },
            Feature::Numeric(&noise),
        ];
        let design = Design::fit(&features, &rows);
        // Intercept + 2 indicators (3 levels, one baseline) + value + null indicator.
        assert_eq!(design.width(), 5);
        let x = design.rows(&features, &rows);
        let w = logistic(&x, 5, &labels).expect("converges");
        let scores = predict(&x, 5, &w);
        for (s, l) in scores.iter().zip(&labels) {
            assert_eq!(*s > 0.0, *l, "score {s} for label {l}");
        }
    }
}
