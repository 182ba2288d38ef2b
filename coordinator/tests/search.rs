//! The structure search on a large table scores a thinned sample of the rows. Under DP the
//! noise it weighs each edge against must be put in that sample's units; without DP, what the
//! sample shows by chance must not count as information.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;

use chimera_coordinator::read::{ReadOptions, open_table};
use chimera_coordinator::{NoProgress, fit_table};
use chimera_core::fit::FitSettings;
use chimera_core::model::Model;
use chimera_core::privacy::PrivacyMode;
use chimera_core::rng;
use chimera_core::spec::Spec;
use rand::Rng;

/// Fits a CSV of `rows` rows (`header`, then what `row` writes from the random stream `seed`)
/// once per settings.
async fn fit(
    seed: u64,
    rows: usize,
    header: &str,
    mut row: impl FnMut(&mut rand_chacha::ChaCha8Rng) -> String,
    settings: &[FitSettings],
) -> Vec<Model> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("table.csv");
    let mut text = format!("{header}\n");
    let mut r = rng::stream(seed, &[1]);
    for _ in 0..rows {
        writeln!(text, "{}", row(&mut r)).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    let source = open_table(path.to_str().unwrap(), &ReadOptions::default())
        .await
        .unwrap();
    let mut models = Vec::new();
    for s in settings {
        models.push(
            fit_table(&source, Spec::default(), s.clone(), 5, &NoProgress)
                .await
                .unwrap(),
        );
    }
    models
}

/// Each column of the network with its parents, by name.
fn edges(model: &Model) -> Vec<(&str, Vec<&str>)> {
    let name = |a: usize| model.columns[model.attributes[a]].schema.name.as_str();
    model
        .network
        .nodes
        .iter()
        .map(|n| (name(n.child), n.parents.iter().map(|&p| name(p)).collect()))
        .collect()
}

fn parents<'e>(edges: &'e [(&str, Vec<&str>)], column: &str) -> &'e [&'e str] {
    &edges.iter().find(|(c, _)| *c == column).unwrap().1
}

/// Whether `a` is a parent of `b` or the reverse.
fn linked(edges: &[(&str, Vec<&str>)], a: &str, b: &str) -> bool {
    parents(edges, a).contains(&b) || parents(edges, b).contains(&a)
}

/// 600,000 rows of 20 categories where `b` is `a` nine times in ten and `c` is noise; each
/// individual holds 20 rows (a child table's contribution), and the search sees 20,000 rows.
/// The edge between `a` and `b` is plain at this size; before the noise penalty was scaled to
/// the sample, the 20,000 rows were weighed against the noise of all 600,000, and the network
/// had no edge at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_strong_edge_is_found_when_the_search_sees_a_sample_of_a_large_table() {
    let settings: Vec<FitSettings> = [1, 2, 3]
        .map(|noise| FitSettings {
            privacy: PrivacyMode::Dp {
                epsilon: 1.0,
                delta: 1e-9,
            },
            noise_seed: Some(noise),
            contribution: 20.0,
            search_rows: 20_000,
            ..FitSettings::default()
        })
        .to_vec();
    let row = |r: &mut rand_chacha::ChaCha8Rng| {
        let a = r.random_range(0..20u8);
        let b = if r.random_bool(0.9) {
            a
        } else {
            r.random_range(0..20u8)
        };
        let c = r.random_range(0..20u8);
        format!("x{a},y{b},z{c}")
    };
    for (noise, model) in fit(7, 600_000, "a,b,c", row, &settings)
        .await
        .iter()
        .enumerate()
    {
        let e = edges(model);
        assert!(linked(&e, "a", "b"), "noise {}: {e:?}", noise + 1);
    }
}

/// 60,000 rows: `b` is `a` four times in five; `z` and `w` are noise of 30 codes each, and the
/// search sees 2,000 rows. The cell cap follows the whole table (10,000 cells), so (z, w) may be
/// a parent set: 900 configurations of about 2 rows each in the sample, where `b` seems to
/// depend on them more than on `a`. Plain mutual information took them, and lost the a–b edge.
#[tokio::test(flavor = "multi_thread")]
async fn without_dp_chance_in_the_sample_does_not_beat_a_real_edge() {
    let settings = FitSettings {
        privacy: PrivacyMode::None,
        search_rows: 2_000,
        ..FitSettings::default()
    };
    let row = |r: &mut rand_chacha::ChaCha8Rng| {
        let a = r.random_range(0..2u8);
        let b = if r.random_bool(0.8) { a } else { 1 - a };
        let [z, w] = [0; 2].map(|_| r.random_range(0..30u8));
        format!("p{a},q{b},z{z},w{w}")
    };
    let models = fit(8, 60_000, "a,b,z,w", row, &[settings]).await;
    let e = edges(&models[0]);
    let noise = ["a", "b"]
        .iter()
        .any(|c| parents(&e, c).iter().any(|p| ["z", "w"].contains(p)));
    assert!(linked(&e, "a", "b") && !noise, "{e:?}");
}
