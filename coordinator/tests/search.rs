//! The structure search on a large table scores a thinned sample of the rows. Under DP the
//! noise it weighs each edge against must be put in that sample's units; without DP, what the
//! sample shows by chance must not count as information.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use chimera_coordinator::read::{ReadOptions, open_table};
use chimera_coordinator::{NoProgress, fit_table};
use chimera_core::fit::FitSettings;
use chimera_core::privacy::PrivacyMode;
use chimera_core::rng;
use chimera_core::spec::Spec;
use rand::Rng;

/// 600,000 rows of 20 categories where `b` is `a` nine times in ten and `c` is noise; each
/// individual holds 20 rows (a child table's contribution), and the search sees 20,000 rows.
/// The edge between `a` and `b` is plain at this size; before the noise penalty was scaled to
/// the sample, the 20,000 rows were weighed against the noise of all 600,000, and the network
/// had no edge at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_strong_edge_is_found_when_the_search_sees_a_sample_of_a_large_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.csv");
    let mut text = String::from("a,b,c\n");
    let mut r = rng::stream(7, &[1]);
    for _ in 0..600_000 {
        let a = r.random_range(0..20u8);
        let b = if r.random_bool(0.9) {
            a
        } else {
            r.random_range(0..20u8)
        };
        let c = r.random_range(0..20u8);
        writeln!(text, "x{a},y{b},z{c}").unwrap();
    }
    std::fs::write(&path, text).unwrap();
    let source = open_table(path.to_str().unwrap(), &ReadOptions::default())
        .await
        .unwrap();
    for noise in [1, 2, 3] {
        let settings = FitSettings {
            privacy: PrivacyMode::Dp {
                epsilon: 1.0,
                delta: 1e-9,
            },
            noise_seed: Some(noise),
            contribution: 20.0,
            search_rows: 20_000,
            ..FitSettings::default()
        };
        let model = fit_table(&source, Spec::default(), settings, 5, &NoProgress)
            .await
            .unwrap();
        let name = |a: usize| model.columns[model.attributes[a]].schema.name.as_str();
        let edges: Vec<(&str, Vec<&str>)> = model
            .network
            .nodes
            .iter()
            .map(|n| (name(n.child), n.parents.iter().map(|&p| name(p)).collect()))
            .collect();
        let linked = edges
            .iter()
            .any(|(c, ps)| (*c == "a" && ps.contains(&"b")) || (*c == "b" && ps.contains(&"a")));
        assert!(linked, "noise {noise}: {edges:?}");
    }
}

/// 60,000 rows: `b` is `a` four times in five; `z` and `w` are noise of 30 codes each, and the
/// search sees 2,000 rows. The cell cap follows the whole table (10,000 cells), so (z, w) may be
/// a parent set: 900 configurations of about 2 rows each in the sample, where `b` seems to
/// depend on them more than on `a`. Plain mutual information took them, and lost the a–b edge.
#[tokio::test(flavor = "multi_thread")]
async fn without_dp_chance_in_the_sample_does_not_beat_a_real_edge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.csv");
    let mut text = String::from("a,b,z,w\n");
    let mut r = rng::stream(8, &[1]);
    for _ in 0..60_000 {
        let a = r.random_range(0..2u8);
        let b = if r.random_bool(0.8) { a } else { 1 - a };
        let [z, w] = [0; 2].map(|_| r.random_range(0..30u8));
        writeln!(text, "p{a},q{b},z{z},w{w}").unwrap();
    }
    std::fs::write(&path, text).unwrap();
    let source = open_table(path.to_str().unwrap(), &ReadOptions::default())
        .await
        .unwrap();
    let settings = FitSettings {
        privacy: PrivacyMode::None,
        search_rows: 2_000,
        ..FitSettings::default()
    };
    let model = fit_table(&source, Spec::default(), settings, 5, &NoProgress)
        .await
        .unwrap();
    let name = |a: usize| model.columns[model.attributes[a]].schema.name.as_str();
    let edges: Vec<(&str, Vec<&str>)> = model
        .network
        .nodes
        .iter()
        .map(|n| (name(n.child), n.parents.iter().map(|&p| name(p)).collect()))
        .collect();
    let parents = |c: &str| &edges.iter().find(|(x, _)| *x == c).unwrap().1;
    let linked = parents("a").contains(&"b") || parents("b").contains(&"a");
    let noise = ["a", "b"]
        .iter()
        .any(|c| parents(c).iter().any(|p| ["z", "w"].contains(p)));
    assert!(linked && !noise, "{edges:?}");
}
