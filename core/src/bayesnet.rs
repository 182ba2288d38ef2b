//! The Bayesian network: greedy structure search on mutual information (the exponential
//! mechanism under DP, as in PrivBayes), conditional tables from (noisy) counts with
//! hierarchical back-off smoothing, and ancestral sampling.

use std::collections::HashMap;

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::domain::Code;
use crate::privacy;
use crate::rng;

/// Encoded rows, column-major: `columns[attr][row]`.
#[derive(Debug, Clone, Default)]
pub struct CodedTable {
    pub cards: Vec<usize>,
    pub columns: Vec<Vec<Code>>,
}

impl CodedTable {
    pub fn new(cards: Vec<usize>) -> Self {
        let columns = vec![Vec::new(); cards.len()];
        CodedTable { cards, columns }
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.len())
    }

    /// A deterministic, evenly spread subset of at most `max_rows` rows.
    pub fn thin(&self, max_rows: usize) -> CodedTable {
        let n = self.rows();
        if n <= max_rows {
            return self.clone();
        }
        let step = n as f64 / max_rows as f64;
        let idx: Vec<usize> = (0..max_rows).map(|i| (i as f64 * step) as usize).collect();
        CodedTable {
            cards: self.cards.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| idx.iter().map(|&i| c[i]).collect())
                .collect(),
        }
    }
}

/// Counts of the joint of `attrs` (first attribute varies fastest).
pub fn contingency(table: &CodedTable, attrs: &[usize]) -> Vec<f64> {
    let size: usize = attrs.iter().map(|&a| table.cards[a]).product();
    let mut strides = Vec::with_capacity(attrs.len());
    let mut s = 1usize;
    for &a in attrs {
        strides.push(s);
        s *= table.cards[a];
    }
    let n = table.rows();
    let chunk = 1 << 16;
    let partials: Vec<Vec<u32>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|ci| {
            let mut counts = vec![0u32; size];
            let (lo, hi) = (ci * chunk, ((ci + 1) * chunk).min(n));
            let mut idx = vec![0usize; hi - lo];
            for (&a, &st) in attrs.iter().zip(&strides) {
                let col = &table.columns[a][lo..hi];
                for (i, &c) in idx.iter_mut().zip(col) {
                    *i += c as usize * st;
                }
            }
            for i in idx {
                counts[i] += 1;
            }
            counts
        })
        .collect();
    let mut out = vec![0.0; size];
    for p in partials {
        for (o, c) in out.iter_mut().zip(p) {
            *o += c as f64;
        }
    }
    out
}

/// The total and the two margins of a contingency table laid out with the first attribute
/// (cardinality `c`) fastest: counts of the first attribute, and of the configurations of the rest.
fn margins(counts: &[f64], c: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let mut pc = vec![0.0; c];
    let mut pp = vec![0.0; counts.len() / c];
    for (i, &x) in counts.iter().enumerate() {
        pc[i % c] += x;
        pp[i / c] += x;
    }
    (counts.iter().sum(), pc, pp)
}

/// Mutual information (nats) between the first attribute (cardinality `c`) and the rest, from a
/// contingency table laid out with the first attribute fastest.
pub fn mutual_information(counts: &[f64], c: usize) -> f64 {
    let (total, pc, pp) = margins(counts, c);
    mutual_information_of(counts, total, &pc, &pp)
}

/// [`mutual_information`] given the table's [`margins`].
fn mutual_information_of(counts: &[f64], total: f64, pc: &[f64], pp: &[f64]) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    let c = pc.len();
    let mut mi = 0.0;
    for (i, &x) in counts.iter().enumerate() {
        if x > 0.0 {
            mi += x / total * (x * total / (pc[i % c] * pp[i / c])).ln();
        }
    }
    mi.max(0.0)
}

/// Mutual information (nats) above what independent attributes show by chance in a table of that
/// many rows, laid out as for [`mutual_information`]. Plain MI of a table with more cells than
/// rows is mostly chance: it reaches the first attribute's entropy whatever the data.
///
/// Chance is the MI's expected value when the first attribute is drawn independently, with its
/// observed distribution p, into configurations of the observed sizes n_j:
/// h(n) − Σ_j (n_j / n) h(n_j), where h(m) is the expected plug-in entropy of m draws from p.
/// For configurations of many rows h(m) ≈ H(p) − (r − 1) / 2m (r codes that occur), and chance
/// is then (r − 1)(q − 1) / 2n, the mean of 2n·MI's χ² law; for a configuration of one row h is
/// 0 and all of its entropy is chance. h is exact up to [`EXACT_ENTROPY_ROWS`] rows.
pub fn information_above_chance(counts: &[f64], c: usize) -> f64 {
    let (total, pc, pp) = margins(counts, c);
    if total <= 0.0 {
        return 0.0;
    }
    let p: Vec<f64> = pc.iter().map(|x| x / total).collect();
    // In order of size: the sum, hence the search's choices, must not depend on a hash order.
    let mut sizes: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
    for &m in pp.iter().filter(|&&m| m > 0.0) {
        *sizes.entry(m.round() as u64).or_default() += m;
    }
    let within: f64 = sizes
        .iter()
        .map(|(&m, &rows)| rows / total * expected_entropy(&p, m))
        .sum();
    let chance = expected_entropy(&p, total.round() as u64) - within;
    mutual_information_of(counts, total, &pc, &pp) - chance.max(0.0)
}

/// Up to this many rows, [`expected_entropy`] sums the binomial terms; beyond, it takes the
/// first-order bias (r − 1) / 2m.
pub const EXACT_ENTROPY_ROWS: u64 = 64;

/// Expected plug-in entropy (nats) of `m` independent draws from `p`.
fn expected_entropy(p: &[f64], m: u64) -> f64 {
    if m <= 1 {
        return 0.0;
    }
    let mf = m as f64;
    if m > EXACT_ENTROPY_ROWS {
        let entropy: f64 = p.iter().filter(|&&x| x > 0.0).map(|x| -x * x.ln()).sum();
        let r = p.iter().filter(|&&x| x > 0.0).count() as f64;
        return (entropy - (r - 1.0) / (2.0 * mf)).max(0.0);
    }
    let mut h = 0.0;
    for &pk in p.iter().filter(|&&x| x > 0.0 && x < 1.0) {
        let (lp, lq) = (pk.ln(), (1.0 - pk).ln());
        let mut ln_choose = 0.0;
        for x in 1..=m {
            ln_choose += ((m - x + 1) as f64 / x as f64).ln();
            let xf = x as f64;
            let weight = (ln_choose + xf * lp + (mf - xf) * lq).exp();
            let share = xf / mf;
            h -= weight * share * share.ln();
        }
    }
    h
}

/// How far the joint of the first attribute and the rest is from independence, in rows:
/// Σ |N(c, s) - N(c) N(s) / n|. Adding or removing one row changes it by at most 4.
pub fn independence_deviation(counts: &[f64], c: usize) -> f64 {
    let (total, pc, pp) = margins(counts, c);
    if total <= 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .enumerate()
        .map(|(i, &x)| (x - pc[i % c] * pp[i / c] / total).abs())
        .sum()
}

/// Sensitivity of [`independence_deviation`] to adding or removing one row.
pub const DEVIATION_SENSITIVITY: f64 = 4.0;

/// What a candidate parent set is scored by.
#[derive(Debug, Clone, Copy)]
pub enum Score {
    /// Mutual information (nats), PrivBayes' score.
    MutualInformation,
    /// Mutual information above chance ([`information_above_chance`]): the exact search. The
    /// search scores a sample of at most `search_rows` rows, and the cell cap follows the whole
    /// table: on a million rows a candidate of 180,000 cells scored on 50,000 has 1.7 nats of
    /// MI by chance alone, and beat the parents the data has (a transfer's care unit was drawn
    /// from stay lengths, not from the event type). A set below chance scores under the empty
    /// set's 0. Its sensitivity is unbounded: a private choice by it is uniform.
    InformationAboveChance,
    /// Deviation from independence in rows, minus the error that measuring a table of that many
    /// cells with Gaussian noise `sigma` will add (AIM-style): the private search, whose score has
    /// a small sensitivity relative to its range.
    Deviation { sigma: f64 },
}

impl Score {
    fn of(&self, counts: &[f64], c: usize) -> f64 {
        match self {
            Score::MutualInformation => mutual_information(counts, c),
            Score::InformationAboveChance => information_above_chance(counts, c),
            Score::Deviation { sigma } => {
                independence_deviation(counts, c)
                    - (2.0 / std::f64::consts::PI).sqrt() * sigma * counts.len() as f64
            }
        }
    }

    fn sensitivity(&self, n: f64) -> f64 {
        match self {
            Score::MutualInformation => privacy::mutual_information_sensitivity(n),
            Score::InformationAboveChance => f64::INFINITY,
            Score::Deviation { .. } => DEVIATION_SENSITIVITY,
        }
    }

    /// Score of an attribute with no parents.
    fn empty(&self, cells: usize) -> f64 {
        match self {
            Score::MutualInformation | Score::InformationAboveChance => 0.0,
            Score::Deviation { sigma } => {
                -(2.0 / std::f64::consts::PI).sqrt() * sigma * cells as f64
            }
        }
    }
}

/// One attribute of the network and its parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub child: usize,
    pub parents: Vec<usize>,
}

/// How structure choices are made.
pub enum Selection<'a, R: Rng> {
    /// Take the best-scoring candidate.
    Exact,
    /// The exponential mechanism with `epsilon` per choice.
    Private { epsilon: f64, rng: &'a mut R },
}

/// Limits on the search.
#[derive(Debug, Clone, Copy)]
pub struct SearchSettings {
    pub max_parents: usize,
    /// Upper bound on |child| x |parents| cells of a conditional table.
    pub max_cells: f64,
    /// Parent sets beyond two are grown from this many of the best smaller sets per attribute.
    pub beam: usize,
    pub score: Score,
}

/// A parent an attribute must have (declared, not learnt). With `outside_cap`, its codes are
/// left out of the cells held to the cell cap: the cap then bounds what the learnt parents add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forced {
    pub child: usize,
    pub parent: usize,
    pub outside_cap: bool,
}

impl Forced {
    pub fn new(child: usize, parent: usize) -> Forced {
        Forced {
            child,
            parent,
            outside_cap: false,
        }
    }
}

/// Greedy structure search. Returns the attributes in sampling order, each with its parents.
/// Under DP this makes `cards.len()` exponential-mechanism choices.
pub fn learn_structure<R: Rng>(
    table: &CodedTable,
    settings: SearchSettings,
    selection: Selection<'_, R>,
) -> Vec<Edge> {
    learn_structure_given(table, settings, selection, &[], &[])
}

/// Greedy structure search of a conditional network: the `given` attributes come first, as
/// roots, in the order given, and every other attribute may take them as parents. Sampling with
/// [`Sampler::sample_given`] then draws the others conditioned on known values of the given
/// ones. Under DP this makes `cards.len() - given.len()` exponential-mechanism choices.
///
/// `forced` pairs an attribute with a parent it must have (declared, not learnt): the attribute
/// is placed after that parent, and every parent set offered for it contains it, even one over
/// the cell limit on its own (or, `outside_cap`, one whose other parents fit the limit).
pub fn learn_structure_given<R: Rng>(
    table: &CodedTable,
    settings: SearchSettings,
    selection: Selection<'_, R>,
    given: &[usize],
    forced: &[Forced],
) -> Vec<Edge> {
    learn_structure_with(table, settings, selection, given, forced, &[])
}

/// [`learn_structure_given`], where `leaves` are never offered as a learnt parent (only as a
/// forced one): attributes the rest of the network should not be shaped by.
pub fn learn_structure_with<R: Rng>(
    table: &CodedTable,
    settings: SearchSettings,
    mut selection: Selection<'_, R>,
    given: &[usize],
    forced: &[Forced],
    leaves: &[usize],
) -> Vec<Edge> {
    let d = table.cards.len();
    if d == 0 {
        return Vec::new();
    }
    let n = table.rows() as f64;
    let sensitivity = settings.score.sensitivity(n);
    let score = settings.score;
    let mut choose = |scores: &[f64]| -> usize {
        match &mut selection {
            Selection::Exact => {
                scores
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(bi, bs), (i, &s)| {
                        if s > bs { (i, s) } else { (bi, bs) }
                    })
                    .0
            }
            Selection::Private { epsilon, rng } => {
                privacy::exponential_mechanism(scores, *epsilon, sensitivity, *rng)
            }
        }
    };

    // Pairwise MI, used for the first attribute and cached as the size-1 parent scores.
    let pairs: Vec<(usize, usize)> = (0..d)
        .flat_map(|a| (a + 1..d).map(move |b| (a, b)))
        .collect();
    let pair_mi: Vec<f64> = pairs
        .par_iter()
        .map(|&(a, b)| score.of(&contingency(table, &[a, b]), table.cards[a]))
        .collect();
    let mut cache: HashMap<(usize, Vec<usize>), f64> = HashMap::new();
    for (&(a, b), &mi) in pairs.iter().zip(&pair_mi) {
        cache.insert((a, vec![b]), mi);
        // the deviation score is symmetric but its noise penalty is too; MI is symmetric
        cache.insert((b, vec![a]), mi);
    }
    let first_scores: Vec<f64> = (0..d)
        .map(|a| {
            (0..d)
                .filter(|&b| b != a)
                .map(|b| cache.get(&(a, vec![b])).copied().unwrap_or(0.0))
                .sum::<f64>()
                / (d.max(2) - 1) as f64
        })
        .collect();
    let mut placed = vec![false; d];
    let mut order: Vec<Edge> = Vec::new();
    for &g in given {
        if g < d && !placed[g] {
            placed[g] = true;
            order.push(Edge {
                child: g,
                parents: vec![],
            });
        }
    }
    if order.is_empty() {
        // An attribute with a forced parent cannot be the first (unless every one has one).
        let free: Vec<usize> = (0..d)
            .filter(|&a| {
                !forced
                    .iter()
                    .any(|f| f.child == a && f.parent != a && f.parent < d)
            })
            .collect();
        let eligible: Vec<usize> = if free.is_empty() {
            (0..d).collect()
        } else {
            free
        };
        let scores: Vec<f64> = eligible.iter().map(|&a| first_scores[a]).collect();
        let first = eligible[choose(&scores)];
        order.push(Edge {
            child: first,
            parents: vec![],
        });
        placed[first] = true;
    }

    let cells = |child: usize, parents: &[usize]| -> f64 {
        table.cards[child] as f64
            * parents
                .iter()
                .map(|&p| table.cards[p] as f64)
                .product::<f64>()
    };

    while order.len() < d {
        let placed_now: Vec<usize> = order.iter().map(|e| e.child).collect();
        let mut candidates: Vec<(usize, Vec<usize>)> = Vec::new();
        // Attributes whose forced parents are all placed (all unplaced ones if none is, so a
        // forced parent that can never come first does not stall the search).
        let must = |a: usize| -> Vec<usize> {
            let mut m: Vec<usize> = forced
                .iter()
                .filter(|f| f.child == a && f.parent != a && f.parent < d)
                .map(|f| f.parent)
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        // Whether a parent set stays within the cell cap (its forced parents aside, when
        // they are outside it).
        let fits = |a: usize, s: &[usize]| -> bool {
            let mut outside: Vec<usize> = forced
                .iter()
                .filter(|f| f.child == a && f.outside_cap && s.contains(&f.parent))
                .map(|f| f.parent)
                .collect();
            outside.sort_unstable();
            outside.dedup();
            let room: f64 = outside.iter().map(|&p| table.cards[p] as f64).product();
            cells(a, s) <= settings.max_cells * room
        };
        let ready: Vec<usize> = {
            let r: Vec<usize> = (0..d)
                .filter(|&a| !placed[a] && must(a).iter().all(|&p| placed[p]))
                .collect();
            if r.is_empty() {
                (0..d).filter(|&a| !placed[a]).collect()
            } else {
                r
            }
        };
        // Parents `a` may take: placed attributes, leaves only where forced.
        let in_net_of = |a: usize| -> Vec<usize> {
            let m = must(a);
            placed_now
                .iter()
                .copied()
                .filter(|p| !leaves.contains(p) || m.contains(p))
                .collect()
        };
        for a in ready {
            let in_net = in_net_of(a);
            let required: Vec<usize> = must(a).into_iter().filter(|&p| placed[p]).collect();
            let mut sets: Vec<Vec<usize>> = Vec::new();
            for &p in &in_net {
                if fits(a, &[p]) {
                    sets.push(vec![p]);
                }
            }
            if settings.max_parents >= 2 {
                for (i, &p) in in_net.iter().enumerate() {
                    for &q in &in_net[i + 1..] {
                        let mut s = vec![p, q];
                        s.sort_unstable();
                        if fits(a, &s) {
                            sets.push(s);
                        }
                    }
                }
            }
            if required.is_empty() {
                candidates.push((a, Vec::new()));
            } else {
                sets.retain(|s| required.iter().all(|p| s.contains(p)));
                if !sets.contains(&required) {
                    sets.push(required.clone());
                }
            }
            candidates.extend(sets.into_iter().map(|s| (a, s)));
        }
        score_missing(table, &candidates, &mut cache, score);
        // Grow larger parent sets from the best ones, per attribute (a beam).
        for size in 3..=settings.max_parents {
            let mut grown: Vec<(usize, Vec<usize>)> = Vec::new();
            for a in (0..d).filter(|&a| candidates.iter().any(|(c, _)| *c == a)) {
                let mut best: Vec<(&Vec<usize>, f64)> = candidates
                    .iter()
                    .filter(|(c, s)| *c == a && s.len() == size - 1)
                    .map(|(_, s)| (s, cache[&(a, s.clone())]))
                    .collect();
                best.sort_by(|x, y| y.1.total_cmp(&x.1));
                let in_net = in_net_of(a);
                for (s, _) in best.into_iter().take(settings.beam) {
                    for &p in &in_net {
                        if s.contains(&p) {
                            continue;
                        }
                        let mut t = s.clone();
                        t.push(p);
                        t.sort_unstable();
                        if fits(a, &t) && !grown.contains(&(a, t.clone())) {
                            grown.push((a, t));
                        }
                    }
                }
            }
            score_missing(table, &grown, &mut cache, score);
            candidates.extend(grown);
        }
        let scores: Vec<f64> = candidates
            .iter()
            .map(|(a, s)| {
                if s.is_empty() {
                    score.empty(table.cards[*a])
                } else {
                    cache[&(*a, s.clone())]
                }
            })
            .collect();
        let (child, parents) = candidates[choose(&scores)].clone();
        placed[child] = true;
        order.push(Edge { child, parents });
    }
    order
}

fn score_missing(
    table: &CodedTable,
    candidates: &[(usize, Vec<usize>)],
    cache: &mut HashMap<(usize, Vec<usize>), f64>,
    score: Score,
) {
    let missing: Vec<&(usize, Vec<usize>)> = candidates
        .iter()
        .filter(|(a, s)| !s.is_empty() && !cache.contains_key(&(*a, s.clone())))
        .collect();
    let scored: Vec<f64> = missing
        .par_iter()
        .map(|(a, s)| {
            let mut attrs = vec![*a];
            attrs.extend(s);
            score.of(&contingency(table, &attrs), table.cards[*a])
        })
        .collect();
    for ((a, s), v) in missing.into_iter().zip(scored) {
        cache.insert((*a, s.clone()), v);
    }
}

/// A conditional probability table: `probs[config * card + code]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub child: usize,
    pub parents: Vec<usize>,
    pub card: usize,
    pub parent_cards: Vec<usize>,
    pub probs: Vec<f32>,
}

/// The fitted network, nodes in sampling order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BayesNet {
    pub nodes: Vec<Node>,
}

/// Noise present in the counts handed to [`estimate`] (zero without DP).
#[derive(Debug, Clone)]
pub struct CountNoise {
    /// σ of each cell of the (child, parents) table of each edge.
    pub joint: Vec<f64>,
    /// σ of each cell of the separately measured one-way marginals.
    pub one_way: f64,
    /// Back-off strength: pseudo-counts per unit of noise (DP) or plain pseudo-counts (no DP).
    pub smoothing: f64,
}

/// Builds the conditional tables from the measured counts.
/// `joint[i]` counts (child, parents...) of `structure[i]` (child fastest, parents in the order
/// given), `one_way[a]` counts attribute `a`.
pub fn estimate(
    structure: &[Edge],
    cards: &[usize],
    joint: &[Vec<f64>],
    one_way: &[Vec<f64>],
    noise: CountNoise,
) -> BayesNet {
    let nodes = structure
        .iter()
        .zip(joint)
        .enumerate()
        .map(|(i, (edge, counts))| {
            let sigma = noise.joint.get(i).copied().unwrap_or(0.0);
            estimate_node(edge, cards, counts, &one_way[edge.child], &noise, sigma)
        })
        .collect();
    BayesNet { nodes }
}

fn normalise(v: &mut [f64]) {
    let t: f64 = v.iter().sum();
    if t > 0.0 {
        v.iter_mut().for_each(|x| *x /= t);
    } else {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
    }
}

/// Noisy counts made non-negative without inflating their total: the Euclidean projection onto
/// {y >= 0, sum y = max(sum x, 0)} ("norm-sub"), i.e. y = max(x - θ, 0). Plain clipping would
/// add about 0.4σ to every empty cell; exact counts pass through unchanged.
pub fn non_negative(x: &[f64]) -> Vec<f64> {
    let total: f64 = x.iter().sum();
    if total <= 0.0 {
        return vec![0.0; x.len()];
    }
    let mut sorted: Vec<f64> = x.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut acc = 0.0;
    let mut theta = 0.0;
    for (i, &v) in sorted.iter().enumerate() {
        acc += v;
        let t = (acc - total) / (i + 1) as f64;
        if v - t > 0.0 {
            theta = t;
        }
    }
    x.iter().map(|&v| (v - theta).max(0.0)).collect()
}

/// Rounds of proportional fitting that calibrate a conditional table to its one-way estimate.
const CALIBRATION_ROUNDS: usize = 20;

fn estimate_node(
    edge: &Edge,
    cards: &[usize],
    counts: &[f64],
    one_way: &[f64],
    noise: &CountNoise,
    joint_sigma: f64,
) -> Node {
    let c = cards[edge.child];
    let pcards: Vec<usize> = edge.parents.iter().map(|&p| cards[p]).collect();
    let configs: usize = pcards.iter().product();

    // One-way: inverse-variance combination of the direct measurement and the joint's margin.
    let mut margin = vec![0.0; c];
    for (i, &x) in counts.iter().enumerate() {
        margin[i % c] += x;
    }
    let combined: Vec<f64> = if joint_sigma > 0.0 && noise.one_way > 0.0 {
        let v1 = noise.one_way * noise.one_way;
        let v2 = joint_sigma * joint_sigma * configs as f64;
        one_way
            .iter()
            .zip(&margin)
            .map(|(a, b)| (a / v1 + b / v2) / (1.0 / v1 + 1.0 / v2))
            .collect()
    } else {
        one_way.to_vec()
    };
    let mut base = non_negative(&combined);
    normalise(&mut base);

    // Back-off: q_j(c | p_1..p_j) smooths the counts summed over p_{j+1..k} toward q_{j-1}.
    let mut prev = base.clone(); // layout: [config_j * c + code]
    let mut block = c;
    for &pcard in &pcards {
        let size_j = block * pcard;
        let outer = counts.len() / size_j;
        let mut level = vec![0.0; size_j];
        for o in 0..outer {
            for (i, l) in level.iter_mut().enumerate() {
                *l += counts[o * size_j + i];
            }
        }
        let cell_sigma = joint_sigma * (outer as f64).sqrt();
        let alpha = if joint_sigma > 0.0 {
            noise.smoothing * cell_sigma * (c as f64).sqrt()
        } else {
            noise.smoothing
        };
        let mut next = vec![0.0; size_j];
        let configs_j = size_j / c;
        for cfg in 0..configs_j {
            let parent_cfg = cfg % (block / c); // drop p_j: configs of p_1..p_{j-1}
            let row = non_negative(&level[cfg * c..(cfg + 1) * c]);
            let prior = &prev[parent_cfg * c..(parent_cfg + 1) * c];
            let total: f64 = row.iter().sum();
            let out = &mut next[cfg * c..(cfg + 1) * c];
            for k in 0..c {
                out[k] = (row[k] + alpha * prior[k]) / (total + alpha);
            }
            normalise(out);
        }
        prev = next;
        block = size_j;
    }
    debug_assert_eq!(prev.len(), configs * c);
    if configs > 1 {
        // Calibration: scale each child code across all parent configurations so the table's
        // implied one-way distribution (configurations weighted by the measured counts) matches
        // `base`, whose estimate is much less noisy than the one implied by the table alone.
        let mut weights: Vec<f64> = (0..configs)
            .map(|cfg| counts[cfg * c..(cfg + 1) * c].iter().sum::<f64>())
            .collect();
        weights = non_negative(&weights);
        normalise(&mut weights);
        for _ in 0..CALIBRATION_ROUNDS {
            let mut implied = vec![0.0; c];
            for (cfg, &w) in weights.iter().enumerate() {
                for (m, &p) in implied.iter_mut().zip(&prev[cfg * c..(cfg + 1) * c]) {
                    *m += w * p;
                }
            }
            let factor: Vec<f64> = base
                .iter()
                .zip(&implied)
                .map(|(&b, &m)| if m > 0.0 { b / m } else { 1.0 })
                .collect();
            for row in prev.chunks_mut(c) {
                for (p, f) in row.iter_mut().zip(&factor) {
                    *p *= f;
                }
                normalise(row);
            }
        }
    }
    Node {
        child: edge.child,
        parents: edge.parents.clone(),
        card: c,
        parent_cards: pcards,
        probs: prev.iter().map(|&p| p as f32).collect(),
    }
}

/// Precomputed cumulative tables for fast ancestral sampling.
pub struct Sampler {
    attrs: usize,
    nodes: Vec<SamplerNode>,
}

struct SamplerNode {
    child: usize,
    parents: Vec<usize>,
    strides: Vec<usize>,
    card: usize,
    cum: Vec<f32>,
}

/// Rows sampled per independent random stream; fixed so output does not depend on threads.
pub const SAMPLE_CHUNK: usize = 16_384;

impl Sampler {
    pub fn new(net: &BayesNet, attrs: usize) -> Sampler {
        let nodes = net
            .nodes
            .iter()
            .map(|n| {
                let mut strides = Vec::new();
                let mut s = 1usize;
                for &pc in &n.parent_cards {
                    strides.push(s);
                    s *= pc;
                }
                let mut cum = Vec::with_capacity(n.probs.len());
                for row in n.probs.chunks(n.card) {
                    let start = cum.len();
                    let mut acc = 0f32;
                    for &p in row {
                        acc += p;
                        cum.push(acc);
                    }
                    // Guard against rounding (the sums may end just under 1): a draw past the
                    // last sum takes the last code with weight, never a code the table gives
                    // none. (Before, it took the last code, often the null code: about one
                    // draw in a million wrote an empty value a rule forbids.)
                    let last = row.iter().rposition(|&p| p > 0.0).unwrap_or(n.card - 1);
                    cum[start + last..].fill(f32::INFINITY);
                }
                SamplerNode {
                    child: n.child,
                    parents: n.parents.clone(),
                    strides,
                    card: n.card,
                    cum,
                }
            })
            .collect();
        Sampler { attrs, nodes }
    }

    /// Samples `rows` rows; `seed` fixes the output exactly, whatever the thread count.
    pub fn sample(&self, rows: usize, seed: u64) -> Vec<Vec<Code>> {
        self.sample_given(rows, seed, &[])
    }

    /// Samples `rows` rows with the codes of some attributes fixed: `given` pairs an attribute
    /// with its code in every row. Those attributes are copied, not drawn; the network must place
    /// them before their children (see [`learn_structure_given`]) for the draw to be conditional.
    pub fn sample_given(
        &self,
        rows: usize,
        seed: u64,
        given: &[(usize, &[Code])],
    ) -> Vec<Vec<Code>> {
        let chunks: Vec<Vec<Vec<Code>>> = (0..rows.div_ceil(SAMPLE_CHUNK))
            .into_par_iter()
            .map(|ci| {
                let start = ci * SAMPLE_CHUNK;
                let n = SAMPLE_CHUNK.min(rows - start);
                let part: Vec<(usize, &[Code])> = given
                    .iter()
                    .map(|&(a, codes)| (a, &codes[start..start + n]))
                    .collect();
                self.sample_chunk(n, seed, ci as u64, &part)
            })
            .collect();
        let mut out: Vec<Vec<Code>> = (0..self.attrs).map(|_| Vec::with_capacity(rows)).collect();
        for ch in chunks {
            for (o, c) in out.iter_mut().zip(ch) {
                o.extend(c);
            }
        }
        out
    }

    /// Samples one chunk attribute by attribute. Rows that share a parent configuration draw
    /// their codes by stratified sampling: the m rows get the m strata of [0, 1) in random order
    /// and one uniform draw inside their stratum each. Every row still follows its conditional
    /// distribution, but the counts per configuration match the model's probabilities to within
    /// one row instead of carrying i.i.d. sampling error, so a small synthetic table is as
    /// faithful to the model as a large one.
    fn sample_chunk(
        &self,
        n: usize,
        seed: u64,
        chunk: u64,
        given: &[(usize, &[Code])],
    ) -> Vec<Vec<Code>> {
        let mut rng = rng::stream(seed, &[0x5A4D_504C, chunk]);
        let mut cols: Vec<Vec<Code>> = vec![vec![0; n]; self.attrs];
        let mut fixed = vec![false; self.attrs];
        for &(a, codes) in given {
            cols[a].copy_from_slice(codes);
            fixed[a] = true;
        }
        let mut cfg = vec![0usize; n];
        for node in &self.nodes {
            if fixed[node.child] {
                continue;
            }
            cfg.fill(0);
            for (&p, &s) in node.parents.iter().zip(&node.strides) {
                for (c, &v) in cfg.iter_mut().zip(&cols[p]) {
                    *c += v as usize * s;
                }
            }
            let u = rng::stratified_uniforms(&cfg, node.cum.len() / node.card, &mut rng);
            for ((out, &c), &u) in cols[node.child].iter_mut().zip(&cfg).zip(&u) {
                let cum = &node.cum[c * node.card..(c + 1) * node.card];
                *out = cum.partition_point(|&x| x <= u as f32).min(node.card - 1) as Code;
            }
        }
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_draw_past_the_last_sum_takes_the_last_code_with_weight() {
        // Weights 0.5, 0.49999994 and 0 (a null code a rule gave none): the sums end under 1.
        let net = BayesNet {
            nodes: vec![Node {
                child: 0,
                parents: vec![],
                card: 3,
                parent_cards: vec![],
                probs: vec![0.5, 0.499_999_94, 0.0],
            }],
        };
        let cum = &Sampler::new(&net, 1).nodes[0].cum;
        let code = |u: f32| cum.partition_point(|&x| x <= u).min(2);
        assert_eq!(code(0.25), 0);
        assert_eq!(code(0.75), 1);
        // 0.99999997 is past the last sum: before, it took code 2.
        let sum: f32 = net.nodes[0].probs.iter().sum();
        assert!(0.999_999_97 >= sum);
        assert_eq!(code(0.999_999_97), 1);
        assert_eq!(code(1.0), 1);
    }

    /// x0 uniform over 4; x1 = x0 % 2 with 5% noise; x2 = (x0 + x1) % 3; x3 independent.
    fn toy(n: usize, seed: u64) -> CodedTable {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut t = CodedTable::new(vec![4, 2, 3, 5]);
        for _ in 0..n {
            let x0: u16 = rng.random_range(0..4);
            let x1: u16 = if rng.random::<f64>() < 0.95 {
                x0 % 2
            } else {
                1 - x0 % 2
            };
            let x2: u16 = (x0 + x1) % 3;
            let x3: u16 = rng.random_range(0..5);
            for (c, v) in t.columns.iter_mut().zip([x0, x1, x2, x3]) {
                c.push(v);
            }
        }
        t
    }

    fn settings() -> SearchSettings {
        SearchSettings {
            max_parents: 2,
            max_cells: 1e6,
            beam: 4,
            score: Score::MutualInformation,
        }
    }

    fn fit(t: &CodedTable, structure: &[Edge]) -> BayesNet {
        let joint: Vec<Vec<f64>> = structure
            .iter()
            .map(|e| {
                let mut a = vec![e.child];
                a.extend(&e.parents);
                contingency(t, &a)
            })
            .collect();
        let one_way: Vec<Vec<f64>> = (0..t.cards.len()).map(|a| contingency(t, &[a])).collect();
        estimate(
            structure,
            &t.cards,
            &joint,
            &one_way,
            CountNoise {
                joint: Vec::new(),
                one_way: 0.0,
                smoothing: 0.5,
            },
        )
    }

    #[test]
    fn mutual_information_of_independent_and_identical() {
        let t = toy(20_000, 1);
        let mi_dep = mutual_information(&contingency(&t, &[1, 0]), 2);
        let mi_ind = mutual_information(&contingency(&t, &[3, 0]), 5);
        assert!(mi_dep > 0.4, "{mi_dep}");
        assert!(mi_ind < 0.01, "{mi_ind}");
        let mi_self = mutual_information(&contingency(&t, &[0, 0]), 4);
        assert!((mi_self - (4f64).ln()).abs() < 0.01);
    }

    #[test]
    fn information_above_chance_passes_over_parents_of_many_cells_on_few_rows() {
        // 2,000 rows: b is a with 20% noise; z and w are independent of both, 30 codes each, so
        // (z, w) has 900 configurations of about 2 rows.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut t = CodedTable::new(vec![2, 2, 30, 30]);
        for _ in 0..2000 {
            let a: u16 = rng.random_range(0..2);
            let b = if rng.random::<f64>() < 0.8 { a } else { 1 - a };
            let (z, w) = (rng.random_range(0..30), rng.random_range(0..30));
            for (col, v) in t.columns.iter_mut().zip([a, b, z, w]) {
                col.push(v);
            }
        }
        let plain = mutual_information(&contingency(&t, &[1, 2, 3]), 2);
        let true_mi = mutual_information(&contingency(&t, &[1, 0]), 2);
        // By chance alone, b seems to depend on (z, w) more than on a.
        assert!(plain > true_mi, "{plain} {true_mi}");
        let above = information_above_chance(&contingency(&t, &[1, 2, 3]), 2);
        let true_above = information_above_chance(&contingency(&t, &[1, 0]), 2);
        assert!(
            true_above > 0.15 && above < true_above / 2.0,
            "{above} {true_above}"
        );
        for (score, fooled) in [
            (Score::MutualInformation, true),
            (Score::InformationAboveChance, false),
        ] {
            let s = learn_structure::<rand_chacha::ChaCha8Rng>(
                &t,
                SearchSettings {
                    score,
                    ..settings()
                },
                Selection::Exact,
            );
            let edge = |x: usize| s.iter().find(|e| e.child == x).unwrap().parents.clone();
            let noise = |p: &Vec<usize>| p.contains(&2) || p.contains(&3);
            let (a, b) = (edge(0), edge(1));
            // Whichever of a and b comes second has the other as a parent, unless fooled.
            let linked = a.contains(&1) || b.contains(&0);
            assert_eq!(
                !linked || noise(&a) || noise(&b),
                fooled,
                "{score:?}: {s:?}"
            );
        }
    }

    #[test]
    fn expected_entropy_is_exact_for_small_draws_and_meets_the_first_order_bias() {
        // Two draws from a fair coin: entropy 0 half the time, ln 2 the other half.
        assert!((expected_entropy(&[0.5, 0.5], 2) - 0.5 * 2f64.ln()).abs() < 1e-12);
        assert_eq!(expected_entropy(&[0.3, 0.7], 1), 0.0);
        assert_eq!(expected_entropy(&[1.0, 0.0], 40), 0.0);
        // At the switch to the first-order bias, both agree to a small fraction of the bias.
        let p = [0.1f64, 0.2, 0.3, 0.4];
        let entropy: f64 = p.iter().map(|x| -x * x.ln()).sum();
        let m = EXACT_ENTROPY_ROWS;
        let exact = expected_entropy(&p, m);
        let first_order = entropy - 3.0 / (2.0 * m as f64);
        assert!(
            (exact - first_order).abs() < 0.1 * (entropy - exact),
            "{exact} {first_order} {entropy}"
        );
        // Independent attributes: MI above chance is about 0 even with a row per configuration,
        // where plain MI is nearly the first attribute's entropy.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut t = CodedTable::new(vec![2, 40, 40]);
        for _ in 0..300 {
            for (col, n) in t.columns.iter_mut().zip([2, 40, 40]) {
                col.push(rng.random_range(0..n));
            }
        }
        let counts = contingency(&t, &[0, 1, 2]);
        let plain = mutual_information(&counts, 2);
        let above = information_above_chance(&counts, 2);
        assert!(plain > 0.5 && above.abs() < 0.05, "{plain} {above}");
    }

    #[test]
    fn non_negative_keeps_the_total_and_exact_counts() {
        let exact = [3.0, 0.0, 5.0];
        assert_eq!(non_negative(&exact), exact.to_vec());
        let noisy = [10.0, -2.0, 1.0, -1.0];
        let y = non_negative(&noisy);
        assert!(y.iter().all(|v| *v >= 0.0));
        assert!((y.iter().sum::<f64>() - 8.0).abs() < 1e-9, "{y:?}");
        // The ranking survives and the small positive cell is shrunk, not inflated.
        assert!(y[0] > y[2] && y[2] <= 1.0);
        assert_eq!(non_negative(&[-1.0, -2.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn deviation_is_zero_for_independent_tables_and_counts_rows_otherwise() {
        // 2x2, independent: [[10, 30], [20, 60]] laid out first attribute fastest.
        assert!(independence_deviation(&[10.0, 20.0, 30.0, 60.0], 2).abs() < 1e-9);
        // Perfectly dependent: 50 rows on the diagonal each; expected 25 per cell.
        assert!((independence_deviation(&[50.0, 0.0, 0.0, 50.0], 2) - 100.0).abs() < 1e-9);
        // Adding one row moves it by at most the stated sensitivity.
        let a = independence_deviation(&[50.0, 3.0, 7.0, 40.0], 2);
        let b = independence_deviation(&[50.0, 4.0, 7.0, 40.0], 2);
        assert!((a - b).abs() <= DEVIATION_SENSITIVITY);
    }

    #[test]
    fn exact_search_finds_the_dependencies() {
        let t = toy(20_000, 2);
        let s = learn_structure::<rand_chacha::ChaCha8Rng>(&t, settings(), Selection::Exact);
        assert_eq!(s.len(), 4);
        let x2 = s.iter().find(|e| e.child == 2).unwrap();
        let pos = |a: usize| s.iter().position(|e| e.child == a).unwrap();
        // x2 depends on x0 and x1: whichever of them comes later has the others as parents.
        assert!(
            !x2.parents.is_empty() || (pos(2) < pos(0) && pos(2) < pos(1)),
            "{s:?}"
        );
        // Sampled data keep the x0 -> x1 relation.
        let net = fit(&t, &s);
        let syn = Sampler::new(&net, 4).sample(20_000, 9);
        let agree = syn[0]
            .iter()
            .zip(&syn[1])
            .filter(|(a, b)| **a % 2 == **b)
            .count();
        assert!(agree as f64 / 20_000.0 > 0.9, "{agree}");
    }

    #[test]
    fn given_attributes_come_first_and_condition_the_draw() {
        let t = toy(20_000, 2);
        // x1 is a function of x0 (x1 = x0 % 2): given x1, x0 must keep its parity.
        let s = learn_structure_given::<rand_chacha::ChaCha8Rng>(
            &t,
            settings(),
            Selection::Exact,
            &[1],
            &[],
        );
        assert_eq!(
            s[0],
            Edge {
                child: 1,
                parents: vec![]
            }
        );
        assert_eq!(s.len(), 4);
        let net = fit(&t, &s);
        let sampler = Sampler::new(&net, 4);
        let given: Vec<Code> = (0..30_000).map(|i| (i % 2) as Code).collect();
        let syn = sampler.sample_given(given.len(), 4, &[(1, &given)]);
        assert_eq!(syn[1], given, "the given attribute is copied");
        let agree = syn[0]
            .iter()
            .zip(&given)
            .filter(|(a, b)| **a % 2 == **b)
            .count();
        assert!(agree as f64 / given.len() as f64 > 0.9, "{agree}");
        // Same seed and evidence, same rows.
        assert_eq!(syn, sampler.sample_given(given.len(), 4, &[(1, &given)]));
    }

    #[test]
    fn a_forced_parent_comes_first_and_stays_even_over_the_cell_limit() {
        let t = toy(5000, 5);
        // x3 is independent of everything: left alone it takes no parent that carries weight;
        // forced, it comes after x0 and keeps it. The cell limit (12) is below x3 x x0 (20).
        let s = learn_structure_given::<rand_chacha::ChaCha8Rng>(
            &t,
            SearchSettings {
                max_cells: 12.0,
                ..settings()
            },
            Selection::Exact,
            &[],
            &[Forced::new(3, 0)],
        );
        assert_eq!(s.len(), 4);
        let pos = |a: usize| s.iter().position(|e| e.child == a).unwrap();
        assert!(pos(0) < pos(3), "{s:?}");
        assert!(s[pos(3)].parents.contains(&0), "{s:?}");
        // Without the force the limit keeps x0 out of x3's parents.
        let free = learn_structure::<rand_chacha::ChaCha8Rng>(
            &t,
            SearchSettings {
                max_cells: 12.0,
                ..settings()
            },
            Selection::Exact,
        );
        let x3 = free.iter().find(|e| e.child == 3).unwrap();
        assert!(!x3.parents.contains(&0), "{free:?}");
    }

    #[test]
    fn a_forced_parent_outside_the_cap_leaves_room_for_a_learnt_one() {
        let t = toy(5000, 7);
        // x2 = (x0 + x1) % 3 is forced to take x3 (pure noise, 5 codes). A cap of 15 cells
        // holds x2 x x3 and nothing more; outside the cap, x3 leaves room for x0 or x1.
        let search = |outside_cap: bool| {
            learn_structure_given::<rand_chacha::ChaCha8Rng>(
                &t,
                SearchSettings {
                    max_cells: 15.0,
                    ..settings()
                },
                Selection::Exact,
                &[],
                &[Forced {
                    child: 2,
                    parent: 3,
                    outside_cap,
                }],
            )
        };
        let parents = |s: &[Edge]| s.iter().find(|e| e.child == 2).unwrap().parents.clone();
        assert_eq!(parents(&search(false)), vec![3]);
        let inside = parents(&search(true));
        assert_eq!(inside.len(), 2, "{inside:?}");
        assert!(inside.contains(&3), "{inside:?}");
        assert!(inside.contains(&0) || inside.contains(&1), "{inside:?}");
    }

    #[test]
    fn a_leaf_is_no_learnt_parent_but_may_be_a_forced_one() {
        let t = toy(5000, 7);
        let search = |forced: &[Forced]| {
            learn_structure_with::<rand_chacha::ChaCha8Rng>(
                &t,
                settings(),
                Selection::Exact,
                &[],
                forced,
                &[2],
            )
        };
        let has_parent = |s: &[Edge], p: usize| s.iter().any(|e| e.parents.contains(&p));
        // x2 = (x0 + x1) % 3 tells of x0 and x1: without the rule the search takes it.
        let free = learn_structure::<rand_chacha::ChaCha8Rng>(&t, settings(), Selection::Exact);
        assert!(has_parent(&free, 2), "{free:?}");
        let leaf = search(&[]);
        assert_eq!(leaf.len(), 4);
        assert!(!has_parent(&leaf, 2), "{leaf:?}");
        let forced = search(&[Forced::new(1, 2)]);
        let x1 = forced.iter().find(|e| e.child == 1).unwrap();
        assert!(x1.parents.contains(&2), "{forced:?}");
        assert!(
            forced
                .iter()
                .all(|e| e.child == 1 || !e.parents.contains(&2)),
            "{forced:?}"
        );
    }

    #[test]
    fn cells_limit_is_respected() {
        let t = toy(2000, 3);
        let s = learn_structure::<rand_chacha::ChaCha8Rng>(
            &t,
            SearchSettings {
                max_parents: 2,
                max_cells: 12.0,
                beam: 4,
                score: Score::MutualInformation,
            },
            Selection::Exact,
        );
        for e in &s {
            let cells: usize =
                t.cards[e.child] * e.parents.iter().map(|&p| t.cards[p]).product::<usize>();
            assert!(cells <= 12, "{e:?}");
        }
    }

    #[test]
    fn sampling_is_deterministic_and_thread_independent() {
        let t = toy(5000, 4);
        let s = learn_structure::<rand_chacha::ChaCha8Rng>(&t, settings(), Selection::Exact);
        let net = fit(&t, &s);
        let sampler = Sampler::new(&net, 4);
        let a = sampler.sample(40_000, 5);
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| sampler.sample(40_000, 5));
        assert_eq!(a, b);
        assert_ne!(a, sampler.sample(40_000, 6));
    }

    #[test]
    fn conditional_tables_are_distributions_and_match_counts() {
        let t = toy(50_000, 5);
        let s = vec![
            Edge {
                child: 0,
                parents: vec![],
            },
            Edge {
                child: 1,
                parents: vec![0],
            },
        ];
        let net = fit(&t, &s);
        for node in &net.nodes {
            for row in node.probs.chunks(node.card) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4);
            }
        }
        // P(x1 = x0 % 2 | x0) ~ 0.95
        let n1 = &net.nodes[1];
        for x0 in 0..4 {
            let p = n1.probs[x0 * 2 + x0 % 2];
            assert!((p - 0.95).abs() < 0.02, "{p}");
        }
    }

    #[test]
    fn private_selection_uses_the_exponential_mechanism() {
        let t = toy(20_000, 6);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let s = learn_structure(
            &t,
            settings(),
            Selection::Private {
                epsilon: 1e-9,
                rng: &mut rng,
            },
        );
        // With no budget the choice is uniform, but still a valid ordering of all attributes.
        let mut seen: Vec<usize> = s.iter().map(|e| e.child).collect();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        for (i, e) in s.iter().enumerate() {
            for p in &e.parents {
                assert!(s[..i].iter().any(|x| x.child == *p));
            }
        }
    }

    #[test]
    fn sampled_counts_follow_the_conditionals_to_within_a_row() {
        // x0 ~ (0.3, 0.7); x1 | x0 = 0 ~ (0.25, 0.75), x1 | x0 = 1 ~ (0.9, 0.1)
        let net = BayesNet {
            nodes: vec![
                Node {
                    child: 0,
                    parents: vec![],
                    card: 2,
                    parent_cards: vec![],
                    probs: vec![0.3, 0.7],
                },
                Node {
                    child: 1,
                    parents: vec![0],
                    card: 2,
                    parent_cards: vec![2],
                    probs: vec![0.25, 0.75, 0.9, 0.1],
                },
            ],
        };
        let n = 10_000; // one chunk
        let rows = Sampler::new(&net, 2).sample(n, 3);
        let x0_zero = rows[0].iter().filter(|&&v| v == 0).count() as f64;
        assert!((x0_zero - 0.3 * n as f64).abs() <= 1.0, "{x0_zero}");
        for (x0, p) in [(0u16, 0.25), (1, 0.9)] {
            let group: Vec<usize> = (0..n).filter(|&r| rows[0][r] == x0).collect();
            let zeros = group.iter().filter(|&&r| rows[1][r] == 0).count() as f64;
            let expect = p * group.len() as f64;
            assert!(
                (zeros - expect).abs() <= 1.0,
                "x0={x0}: {zeros} vs {expect}"
            );
        }
        // the codes of x1 are not laid out in row order within a configuration
        let first: Vec<u16> = (0..n)
            .filter(|&r| rows[0][r] == 1)
            .map(|r| rows[1][r])
            .take(200)
            .collect();
        assert!(first.contains(&1) && first.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn noisy_tables_are_calibrated_to_the_one_way_estimate() {
        let t = toy(20_000, 8);
        let edge = Edge {
            child: 2,
            parents: vec![0],
        };
        let mut counts = contingency(&t, &[2, 0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        privacy::add_gaussian(&mut counts, 200.0, &mut rng);
        let one_way = contingency(&t, &[2]);
        let noise = CountNoise {
            joint: vec![200.0],
            one_way: 1e-6, // a (nearly) exact one-way estimate
            smoothing: 0.5,
        };
        let node = estimate_node(&edge, &t.cards, &counts, &one_way, &noise, 200.0);
        // configurations weighted as the calibration weighs them: the noisy table's own counts
        let mut p0: Vec<f64> = (0..4)
            .map(|x0| counts[x0 * 3..x0 * 3 + 3].iter().sum())
            .collect();
        p0 = non_negative(&p0);
        normalise(&mut p0);
        for (k, &count) in one_way.iter().enumerate() {
            let implied: f64 = (0..4)
                .map(|x0| p0[x0] * node.probs[x0 * 3 + k] as f64)
                .sum();
            let target = count / 20_000.0;
            assert!(
                (implied - target).abs() < 1e-3,
                "{k}: {implied} vs {target}"
            );
        }
        // and the conditionals still carry the dependence: x2 = (x0 + x1) % 3, x1 mostly x0 % 2
        assert!(node.probs[0] > 0.6, "{:?}", &node.probs[..3]);
    }
}
