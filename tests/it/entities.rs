//! Relational entities end to end: the MIMIC-IV demo (patients → admissions → transfers and
//! diagnoses, with the ICD dictionary) synthesised with `--llm none`, checked against the real
//! tables: keys, children per parent, marginals, time order, determinism; and bad relational
//! specs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::{cast, concat_batches};
use arrow::datatypes::{DataType, Int64Type};

use crate::{chimera, ok, read_parts, stderr};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mimic")
}

/// A table as strings by column (empty values as None).
type Table = BTreeMap<String, Vec<Option<String>>>;

fn real(name: &str) -> Table {
    let f = std::fs::File::open(example().join(format!("data/{name}.csv.gz"))).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(f)
        .read_to_string(&mut text)
        .unwrap();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let mut t: Table = headers.iter().map(|h| (h.clone(), Vec::new())).collect();
    for rec in r.records() {
        let rec = rec.unwrap();
        for (h, v) in headers.iter().zip(rec.iter()) {
            t.get_mut(h)
                .unwrap()
                .push((!v.is_empty()).then(|| v.to_string()));
        }
    }
    t
}

fn synthetic(out: &Path, name: &str) -> Table {
    let batches = read_parts(&out.join(name));
    assert!(!batches.is_empty(), "no parts in {name}");
    let b: RecordBatch = concat_batches(&batches[0].schema(), &batches).unwrap();
    let mut t = Table::new();
    for (f, a) in b.schema().fields().iter().zip(b.columns()) {
        let s = cast(a, &DataType::Utf8).unwrap();
        let s = s.as_string::<i32>();
        t.insert(
            f.name().clone(),
            (0..s.len())
                .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
                .collect(),
        );
    }
    t
}

/// `chimera run --spec SPEC --entities N --output OUT` and the `extra` arguments.
fn run_entities(spec: &Path, out: &Path, entities: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "--spec",
        spec.to_str().unwrap(),
        "--entities",
        entities,
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    chimera(&args)
}

fn run_mimic(out: &Path, entities: &str, extra: &[&str]) -> std::process::Output {
    run_entities(&example().join("spec.yaml"), out, entities, extra)
}

/// Total-variation distance between two distributions given as counts.
fn tvd<K: std::hash::Hash + Eq + Clone>(a: &[K], b: &[K]) -> f64 {
    let count = |v: &[K]| {
        let mut m: HashMap<K, f64> = HashMap::new();
        for k in v {
            *m.entry(k.clone()).or_default() += 1.0 / v.len() as f64;
        }
        m
    };
    let (ca, cb) = (count(a), count(b));
    let keys: HashSet<&K> = ca.keys().chain(cb.keys()).collect();
    keys.into_iter()
        .map(|k| (ca.get(k).unwrap_or(&0.0) - cb.get(k).unwrap_or(&0.0)).abs())
        .sum::<f64>()
        / 2.0
}

/// Children per parent: for every parent key, how many child rows name it (0 included).
fn per_parent(parents: &[Option<String>], fk: &[Option<String>]) -> Vec<usize> {
    let mut n: HashMap<&str, usize> = parents.iter().flatten().map(|k| (k.as_str(), 0)).collect();
    for k in fk.iter().flatten() {
        if let Some(c) = n.get_mut(k.as_str()) {
            *c += 1;
        }
    }
    n.into_values().collect()
}

fn dangling(parents: &[Option<String>], fk: &[Option<String>]) -> usize {
    let keys: HashSet<&String> = parents.iter().flatten().collect();
    fk.iter()
        .filter(|k| k.as_ref().is_none_or(|k| !keys.contains(k)))
        .count()
}

/// Pairs of a row's two columns where `later` is before `earlier` (both set).
fn order_violations(t: &Table, earlier: &str, later: &str) -> usize {
    t[earlier]
        .iter()
        .zip(&t[later])
        .filter(|(a, b)| matches!((a, b), (Some(a), Some(b)) if b < a))
        .count()
}

/// A synthetic MIMIC output's tables and its soft coherence counts, once every rule that holds
/// by construction (with or without DP) was asserted: keys resolve and are fresh, codes are in
/// the dictionary, times keep their order inside the entity, transfers end at the discharge,
/// no admission before the anchor year, after death, or after a death in hospital.
struct Entities {
    sp: Table,
    sa: Table,
    st: Table,
    sd: Table,
    /// Transfers that start over an hour before their admission and its ED registration.
    early: usize,
    /// Deaths in hospital, those not discharged to DIED, those without a `dod`.
    deaths: usize,
    not_died: usize,
    no_dod: usize,
}

fn check_entities(out: &Path, entities: usize) -> Entities {
    let (sp, sa, st, sd) = (
        synthetic(out, "patients"),
        synthetic(out, "admissions"),
        synthetic(out, "transfers"),
        synthetic(out, "diagnoses_icd"),
    );
    let dict = synthetic(out, "d_icd_diagnoses");
    assert_eq!(
        dict["icd_code"].len(),
        real("d_icd_diagnoses")["icd_code"].len()
    );

    // Referential integrity: every key resolves, keys are unique and fresh.
    assert_eq!(dangling(&sp["subject_id"], &sa["subject_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &st["hadm_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &sd["hadm_id"]), 0);
    assert_eq!(dangling(&sp["subject_id"], &st["subject_id"]), 0);
    let unique = |v: &[Option<String>]| v.iter().flatten().collect::<HashSet<_>>().len();
    assert_eq!(unique(&sp["subject_id"]), entities);
    assert_eq!(unique(&sa["hadm_id"]), sa["hadm_id"].len());
    let (rp, ra) = (real("patients"), real("admissions"));
    // Provider ids keep the real ones' format (`P03YMR`: `P`, two digits, three of 0-9A-Z).
    let provider = |v: &str| {
        let c: Vec<char> = v.chars().collect();
        c.len() == 6
            && c[0] == 'P'
            && c[1..3].iter().all(char::is_ascii_digit)
            && c[3..]
                .iter()
                .all(|x| x.is_ascii_digit() || x.is_ascii_uppercase())
    };
    assert!(
        ra["admit_provider_id"]
            .iter()
            .flatten()
            .all(|v| provider(v))
    );
    // No model keeps a real provider id (a child's model does not learn its parent's fresh
    // identifiers).
    let model = std::fs::read_to_string(out.join("_model.json")).unwrap();
    for id in ra["admit_provider_id"].iter().flatten() {
        assert!(
            !model.contains(&format!("\"{id}\"")),
            "{id} is in the model"
        );
    }
    let ids = &sa["admit_provider_id"];
    assert!(
        ids.iter().all(|v| v.as_deref().is_some_and(provider)),
        "{:?}",
        &ids[..3]
    );
    assert_eq!(unique(&st["transfer_id"]), st["transfer_id"].len());
    let real_ids: HashSet<&String> = rp["subject_id"].iter().flatten().collect();
    assert!(
        sp["subject_id"]
            .iter()
            .flatten()
            .all(|k| !real_ids.contains(k))
    );
    // A transfer's subject is its admission's subject.
    let subject_of: HashMap<&String, &String> = sa["hadm_id"]
        .iter()
        .flatten()
        .zip(sa["subject_id"].iter().flatten())
        .collect();
    for (h, s) in st["hadm_id"].iter().zip(&st["subject_id"]) {
        assert_eq!(subject_of[h.as_ref().unwrap()], s.as_ref().unwrap());
    }
    // Every diagnosis code exists in the dictionary.
    let codes: HashSet<(String, String)> = dict["icd_code"]
        .iter()
        .zip(&dict["icd_version"])
        .map(|(c, v)| (c.clone().unwrap(), v.clone().unwrap()))
        .collect();
    for (c, v) in sd["icd_code"].iter().zip(&sd["icd_version"]) {
        let key = (c.clone().unwrap(), v.clone().unwrap());
        assert!(codes.contains(&key), "{key:?} is not in the dictionary");
    }

    // Every child has its place in the order.
    for (t, c) in [(&sa, "admittime"), (&st, "intime"), (&sd, "seq_num")] {
        assert!(t[c].iter().all(Option::is_some), "empty {c}");
    }
    // Time order inside the entity: 0 violations.
    assert_eq!(order_violations(&sa, "admittime", "dischtime"), 0);
    assert_eq!(order_violations(&sa, "edregtime", "edouttime"), 0);
    assert_eq!(order_violations(&st, "intime", "outtime"), 0);
    // Siblings: an admission starts after the previous one ends.
    let mut by_subject: HashMap<&String, Vec<(&String, &String)>> = HashMap::new();
    for ((s, a), d) in sa["subject_id"]
        .iter()
        .zip(&sa["admittime"])
        .zip(&sa["dischtime"])
    {
        by_subject
            .entry(s.as_ref().unwrap())
            .or_default()
            .push((a.as_ref().unwrap(), d.as_ref().unwrap()));
    }
    let mut overlaps = 0;
    for v in by_subject.values_mut() {
        v.sort();
        overlaps += v.windows(2).filter(|w| w[1].0 < w[0].1).count();
    }
    assert_eq!(overlaps, 0, "admissions of one patient overlap");
    // Transfers are inside their admission: none starts after the discharge, and the last one
    // (the discharge) is at it (`ends_at: dischtime`); the first from the ED registration or
    // the admission (`anchor: [edregtime, admittime]`): few start over an hour before both.
    let admission: HashMap<&String, (&String, Option<&String>, &String)> = sa["hadm_id"]
        .iter()
        .flatten()
        .zip(
            sa["admittime"]
                .iter()
                .zip(&sa["edregtime"])
                .zip(&sa["dischtime"]),
        )
        .map(|(h, ((a, e), d))| (h, (a.as_ref().unwrap(), e.as_ref(), d.as_ref().unwrap())))
        .collect();
    // Times as text compare in order (`YYYY-MM-DD HH:MM:SS`); an hour is checked on the hour.
    let hours = |t: &str| -> i64 {
        let (date, time) = t.split_at(10);
        let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
        let h: i64 = time.trim()[..2].parse().unwrap_or(0);
        // Days by a civil-calendar formula (good enough to compare hours).
        let (y, m) = if d[1] <= 2 {
            (d[0] - 1, d[1] + 9)
        } else {
            (d[0], d[1] - 3)
        };
        (365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d[2]) * 24 + h
    };
    let (mut after_discharge, mut early) = (0, 0);
    let mut last_in: HashMap<&String, &String> = HashMap::new();
    for (h, i) in st["hadm_id"].iter().zip(&st["intime"]) {
        let (h, i) = (h.as_ref().unwrap(), i.as_ref().unwrap());
        let (admit, ed, disch) = admission[h];
        after_discharge += usize::from(i.as_str() > disch.as_str());
        let start = ed.map_or(hours(admit), |e| hours(e).min(hours(admit)));
        early += usize::from(hours(i) < start - 1);
        let l = last_in.entry(h).or_insert(i);
        if i > *l {
            *l = i;
        }
    }
    let at_discharge = last_in
        .iter()
        .filter(|(h, i)| (hours(i) - hours(admission[*h].2)).abs() <= 1)
        .count();
    assert_eq!(
        after_discharge, 0,
        "transfers after their admission's discharge"
    );
    assert_eq!(
        at_discharge,
        last_in.len(),
        "admissions whose last transfer is not at the discharge"
    );
    // Only an admission's last transfer is its discharge (`last_when: {eventtype: discharge}`,
    // under DP too).
    let early_discharges = st["hadm_id"]
        .iter()
        .zip(&st["intime"])
        .zip(&st["eventtype"])
        .filter(|((h, i), e)| {
            e.as_deref() == Some("discharge") && i.as_ref().unwrap() < last_in[h.as_ref().unwrap()]
        })
        .count();
    assert_eq!(early_discharges, 0, "discharges before the last transfer");
    // And every admission's last transfer, as written, is its discharge (`last_is`).
    let mut last_type: HashMap<&String, Option<&str>> = HashMap::new();
    for (h, e) in st["hadm_id"].iter().zip(&st["eventtype"]) {
        last_type.insert(h.as_ref().unwrap(), e.as_deref());
    }
    let not_discharged = last_type
        .values()
        .filter(|e| **e != Some("discharge"))
        .count();
    assert_eq!(not_discharged, 0, "admissions not ending with a discharge");
    // A discharge has no care unit (`empty_when: {eventtype: discharge}`, under DP too).
    let discharge_units = st["eventtype"]
        .iter()
        .zip(&st["careunit"])
        .filter(|(e, u)| e.as_deref() == Some("discharge") && u.is_some())
        .count();
    assert_eq!(discharge_units, 0, "discharges with a care unit");
    // And every other transfer has one (`required`), as every admission has its death flag.
    let without_unit = st["eventtype"]
        .iter()
        .zip(&st["careunit"])
        .filter(|(e, u)| e.as_deref() != Some("discharge") && u.is_none())
        .count();
    assert_eq!(without_unit, 0, "other transfers without a care unit");
    assert!(st["eventtype"].iter().all(Option::is_some));
    assert!(sa["hospital_expire_flag"].iter().all(Option::is_some));
    // A transfer has an end exactly when it is not the discharge, and an admission a time of
    // death exactly when it is a death in hospital (`empty_when` with `required`, both ways).
    let ends = st["eventtype"].iter().zip(&st["outtime"]);
    let wrong_ends = ends
        .filter(|(e, o)| (e.as_deref() == Some("discharge")) == o.is_some())
        .count();
    assert_eq!(
        wrong_ends, 0,
        "transfers whose end disagrees with a discharge"
    );
    // An emergency registration's end is set exactly where its start is (they share a
    // presence column, with or without DP: `required` on the end says so).
    let halves = sa["edregtime"].iter().zip(&sa["edouttime"]);
    let halves = halves.filter(|(r, o)| r.is_some() != o.is_some()).count();
    assert_eq!(
        halves, 0,
        "emergency registrations without an end, or ends alone"
    );
    let deaths = sa["hospital_expire_flag"].iter().zip(&sa["deathtime"]);
    let wrong_deaths = deaths
        .filter(|(f, d)| (f.as_deref() == Some("1")) != d.is_some())
        .count();
    assert_eq!(
        wrong_deaths, 0,
        "admissions whose deathtime disagrees with the flag"
    );
    // An admission's first transfer (rows are written in order under their parent) is the
    // emergency stay exactly where it has an emergency registration (`first_where`).
    let mut first_type: HashMap<&String, Option<&str>> = HashMap::new();
    for (h, e) in st["hadm_id"].iter().zip(&st["eventtype"]) {
        first_type
            .entry(h.as_ref().unwrap())
            .or_insert(e.as_deref());
    }
    let off_rule = sa["hadm_id"]
        .iter()
        .zip(&sa["edregtime"])
        .filter(|(h, r)| {
            let first = first_type.get(h.as_ref().unwrap()).copied().flatten();
            first.map(|f| (f == "ED") != r.is_some()).unwrap_or(false)
        })
        .count();
    assert_eq!(off_rule, 0, "first transfers off `first_where`");
    // A death in hospital is at the discharge or within the day after it (`after: dischtime`).
    let at_discharge = sa["deathtime"].iter().zip(&sa["dischtime"]);
    let apart = at_discharge
        .filter_map(|(d, e)| Some((d.as_ref()?, e.as_ref()?)))
        .filter(|(d, e)| d < e || !(0..=1).contains(&(days(d) - days(e))))
        .count();
    assert_eq!(apart, 0, "deaths before their discharge or days after it");
    // An admission is in or after its patient's anchor year (so never before birth) and never
    // after the patient's death (`dod`), and a death in hospital is the last admission.
    let patient: HashMap<&String, (i64, Option<&String>)> = sp["subject_id"]
        .iter()
        .flatten()
        .zip(sp["anchor_year"].iter().zip(&sp["dod"]))
        .map(|(id, (y, d))| (id, (y.as_ref().unwrap().parse().unwrap(), d.as_ref())))
        .collect();
    let (mut before_anchor, mut after_death, mut died_then_admitted) = (0, 0, 0);
    let mut latest: HashMap<&String, &String> = HashMap::new();
    for (s, a) in sa["subject_id"].iter().zip(&sa["admittime"]) {
        let (s, a) = (s.as_ref().unwrap(), a.as_ref().unwrap());
        let (year, dod) = patient[s];
        before_anchor += usize::from(a[..4].parse::<i64>().unwrap() < year);
        after_death += usize::from(dod.is_some_and(|d| &a[..10] > d.as_str()));
        let l = latest.entry(s).or_insert(a);
        if a > *l {
            *l = a;
        }
    }
    for ((s, a), f) in sa["subject_id"]
        .iter()
        .zip(&sa["admittime"])
        .zip(&sa["hospital_expire_flag"])
    {
        let (s, a) = (s.as_ref().unwrap(), a.as_ref().unwrap());
        died_then_admitted += usize::from(f.as_deref() == Some("1") && a != latest[s]);
    }
    assert_eq!(
        (before_anchor, after_death, died_then_admitted),
        (0, 0, 0),
        "admissions before the anchor year, after death, after a death in hospital"
    );
    let (mut deaths, mut not_died, mut no_dod) = (0, 0, 0);
    for ((s, f), d) in sa["subject_id"]
        .iter()
        .zip(&sa["hospital_expire_flag"])
        .zip(&sa["discharge_location"])
    {
        let died = f.as_deref() == Some("1");
        deaths += usize::from(died);
        not_died += usize::from(died != (d.as_deref() == Some("DIED")));
        no_dod += usize::from(died && patient[s.as_ref().unwrap()].1.is_none());
    }
    Entities {
        sp,
        sa,
        st,
        sd,
        early,
        deaths,
        not_died,
        no_dod,
    }
}

#[test]
fn mimic_entities_keep_keys_counts_marginals_and_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run_mimic(&out, "2000", &["--no-dp", "--seed", "3"]);
    ok(&o);
    assert!(out.join("_SUCCESS").exists());
    for t in [
        "patients",
        "admissions",
        "transfers",
        "diagnoses_icd",
        "d_icd_diagnoses",
    ] {
        assert!(out.join(t).is_dir(), "missing table folder {t}");
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["rows_requested"], 2000);
    assert_eq!(manifest["tables"]["patients"]["rows"], 2000);
    // The 54 transfers without an admission were dropped, and the manifest says so.
    let notes = manifest["privacy"]["notes"].to_string();
    assert!(
        notes.contains("transfers") && notes.contains("54 rows"),
        "{notes}"
    );

    let (rp, ra, rt, rd) = (
        real("patients"),
        real("admissions"),
        real("transfers"),
        real("diagnoses_icd"),
    );
    let Entities {
        sp,
        sa,
        st,
        sd,
        early,
        deaths,
        not_died,
        no_dod,
    } = check_entities(&out, 2000);
    // An admission's diagnoses are all ICD-9 or all ICD-10, as in the real data.
    let mut versions: HashMap<&String, HashSet<&String>> = HashMap::new();
    for (h, v) in sd["hadm_id"].iter().zip(&sd["icd_version"]) {
        if let (Some(h), Some(v)) = (h, v) {
            versions.entry(h).or_default().insert(v);
        }
    }
    assert!(versions.len() > 1000 && versions.values().all(|v| v.len() == 1));
    let registered = |i: usize| sa["edregtime"][i].is_some();
    let n = sa["edregtime"].len();
    // Without DP, whether there is an emergency registration follows where the patient came
    // from (declared `parents` of `edregtime`: every real admission from the emergency room has
    // one, none from a PACU; before the presence column, 66% and 66% of the synthetic ones).
    let share = |location: &str| {
        let at: Vec<usize> = (0..n)
            .filter(|&i| sa["admission_location"][i].as_deref() == Some(location))
            .collect();
        at.iter().filter(|&&i| registered(i)).count() as f64 / at.len().max(1) as f64
    };
    let (er, pacu) = (share("EMERGENCY ROOM"), share("PACU"));
    assert!(
        er > 0.95 && pacu < 0.2,
        "registered: {er:.2} from the ER, {pacu:.2} from a PACU"
    );
    // And an emergency stay comes with a registration (the transfer type's declared parent
    // `admissions.edregtime~set`; before, 34% of ED transfers had none).
    let registration: HashMap<&String, bool> = sa["hadm_id"]
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, h)| (h, registered(i)))
        .collect();
    let ed = st["hadm_id"].iter().zip(&st["eventtype"]);
    let ed: Vec<bool> = ed
        .filter(|(_, e)| e.as_deref() == Some("ED"))
        .map(|(h, _)| registration[h.as_ref().unwrap()])
        .collect();
    let unregistered = ed.iter().filter(|r| !**r).count();
    assert!(
        ed.len() > 500 && unregistered * 100 <= ed.len(),
        "{unregistered} of {} ED transfers without a registration",
        ed.len()
    );
    // And the reverse: a registration comes with an emergency stay (1 of 182 real ones has
    // none). The later admissions' number of transfers is drawn given the registration
    // (`count_parents`); without it, 7% of registrations came with two transfers, too few for
    // an emergency stay besides the admission and the discharge.
    let with_stay: HashSet<&String> = st["hadm_id"]
        .iter()
        .zip(&st["eventtype"])
        .filter(|(_, e)| e.as_deref() == Some("ED"))
        .map(|(h, _)| h.as_ref().unwrap())
        .collect();
    let registrations: Vec<&String> = (0..n)
        .filter(|&i| registered(i))
        .map(|i| sa["hadm_id"][i].as_ref().unwrap())
        .collect();
    let no_stay = registrations
        .iter()
        .filter(|h| !with_stay.contains(*h))
        .count();
    assert!(
        no_stay * 50 <= registrations.len(),
        "{no_stay} of {} registrations without an ED transfer",
        registrations.len()
    );
    assert!(
        early * 20 <= st["intime"].len(),
        "{early} of {} transfers start over an hour before their admission",
        st["intime"].len()
    );
    // A death in hospital is one fact in three columns, and its patient has a date of death
    // (declared `parents`; before them, about half of the synthetic deaths in hospital were not
    // discharged to DIED, and half had no `dod`). The back-off of the tables leaves a little.
    assert!(deaths > 50, "{deaths}");
    assert!(
        not_died * 20 <= deaths && no_dod * 50 <= deaths,
        "of {deaths} deaths in hospital, {not_died} disagree with DIED and {no_dod} have no dod"
    );

    // Children per parent within 0.05 TV of the real tables (measured on this seed: admissions
    // per patient 0.001, transfers per admission 0.002, diagnoses 0.007; see BENCHMARKS.md).
    let real_transfers: Vec<Option<String>> = rt["hadm_id"].clone();
    let per_patient_real = per_parent(&rp["subject_id"], &ra["subject_id"]);
    let per_patient_syn = per_parent(&sp["subject_id"], &sa["subject_id"]);
    let d = tvd(&per_patient_real, &per_patient_syn);
    assert!(d <= 0.05, "admissions per patient: TVD {d:.3}");
    let d = tvd(
        &per_parent(&ra["hadm_id"], &real_transfers),
        &per_parent(&sa["hadm_id"], &st["hadm_id"]),
    );
    assert!(d <= 0.05, "transfers per admission: TVD {d:.3}");
    let d = tvd(
        &per_parent(&ra["hadm_id"], &rd["hadm_id"]),
        &per_parent(&sa["hadm_id"], &sd["hadm_id"]),
    );
    assert!(d <= 0.05, "diagnoses per admission: TVD {d:.3}");
    // The last transfer of an admission is its discharge, as in every real admission.
    let mut last: HashMap<&String, (&String, &String)> = HashMap::new();
    for ((h, t), e) in st["hadm_id"]
        .iter()
        .zip(&st["intime"])
        .zip(&st["eventtype"])
    {
        let (h, t, e) = (
            h.as_ref().unwrap(),
            t.as_ref().unwrap(),
            e.as_ref().unwrap(),
        );
        let entry = last.entry(h).or_insert((t, e));
        if t >= entry.0 {
            *entry = (t, e);
        }
    }
    let discharged = last.values().filter(|(_, e)| *e == "discharge").count();
    assert!(
        discharged as f64 >= 0.95 * last.len() as f64,
        "{discharged} of {} admissions end with a discharge",
        last.len()
    );
    // Every real admission has one `admit` transfer. The sequence model's back-off gave
    // transitions the data never makes a little weight: with 0.5 pseudo-counts, 2.2% of these
    // admissions had none or two (0.6% with 0.1), while the sibling position led the back-off;
    // with the previous transfer's type leading it, none. Since `first_where` an admission with
    // an emergency registration but only two transfers (the smoothing's;
    // the data has 1 of 182) is an emergency stay and a discharge, with no `admit`: about 0.3%.
    let mut admits: HashMap<&String, usize> = last.keys().map(|h| (*h, 0)).collect();
    for (h, e) in st["hadm_id"].iter().zip(&st["eventtype"]) {
        if e.as_deref() == Some("admit") {
            *admits.get_mut(h.as_ref().unwrap()).unwrap() += 1;
        }
    }
    let not_one = admits.values().filter(|&&n| n != 1).count();
    assert!(
        not_one * 200 <= admits.len(),
        "{not_one} of {} admissions have no admit transfer or several",
        admits.len()
    );

    // Per-table marginals of categorical columns (transfers: the rows the model saw, those
    // with an admission).
    let linked: Vec<bool> = rt["hadm_id"].iter().map(Option::is_some).collect();
    let rt: Table = rt
        .into_iter()
        .map(|(c, v)| {
            let v = v
                .into_iter()
                .zip(&linked)
                .filter(|(_, l)| **l)
                .map(|(x, _)| x);
            (c, v.collect())
        })
        .collect();
    for (name, r, s, cols) in [
        ("patients", &rp, &sp, vec!["gender", "anchor_year_group"]),
        (
            "admissions",
            &ra,
            &sa,
            vec![
                "admission_type",
                "insurance",
                "marital_status",
                "hospital_expire_flag",
            ],
        ),
        ("transfers", &rt, &st, vec!["eventtype"]),
        ("diagnoses_icd", &rd, &sd, vec!["icd_version"]),
    ] {
        for c in cols {
            let d = tvd(&r[c], &s[c]);
            // Marital status is repeated from the previous admission and drawn for the first
            // one given the number of admissions (0.050 here; 0.130 when it was drawn without
            // that count). An admission's ICD version is drawn once, from first diagnoses and
            // given how many diagnoses will share it (0.013 here; 0.032 when drawn from every
            // diagnosis, 0.034–0.045 at 5,000 entities when drawn without that count).
            let bar = match c {
                "marital_status" => 0.08,
                "icd_version" => 0.025,
                _ => 0.05,
            };
            assert!(d <= bar, "{name}.{c}: TVD {d:.3}");
        }
    }
    // A patient keeps their race, marital status and insurance from one admission to the next
    // (real: 97%, 95%, 97% of later admissions repeat the previous one's; before these columns
    // were drawn given the previous admission's, the race changed in half of them).
    let mut previous: HashMap<&String, &Option<String>> = HashMap::new();
    let mut order: Vec<usize> = (0..sa["subject_id"].len()).collect();
    order.sort_by_key(|&i| (&sa["subject_id"][i], &sa["admittime"][i]));
    for c in ["race", "marital_status", "insurance"] {
        previous.clear();
        let (mut later, mut same) = (0, 0);
        for &i in &order {
            let s = sa["subject_id"][i].as_ref().unwrap();
            if let Some(p) = previous.insert(s, &sa[c][i]) {
                later += 1;
                same += usize::from(*p == sa[c][i]);
            }
        }
        assert!(
            later > 500 && same * 10 >= later * 9,
            "{c}: {same} of {later} later admissions repeat the previous one's"
        );
    }
}

/// The issue's command with `--epsilon 2`. 100 patients carry little signal at that budget (one
/// patient may hold 20 admissions, each with 40 diagnoses, and every table's noise is scaled to
/// that; BENCHMARKS.md has the figures), but the spec's public domains and bounds let every
/// column be released, and every rule that holds by construction holds under the noise too.
#[test]
fn mimic_entities_under_dp_keep_every_rule_that_holds_by_construction() {
    // Two noise draws. Before the flag kept a code for 0 (from its bounds), the noise could
    // leave it only the value 1, and every later admission died in hospital.
    for (epsilon, noise) in [("2", "11"), ("10", "2")] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = run_mimic(
            &out,
            "400",
            &["--epsilon", epsilon, "--seed", "5", "--noise-seed", noise],
        );
        ok(&o);
        assert!(out.join("_SUCCESS").exists());
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["privacy"]["mode"], "dp", "{manifest}");
        assert_eq!(
            manifest["privacy"]["epsilon"],
            epsilon.parse::<f64>().unwrap()
        );
        // The codes `last_when` relies on exist whatever the noise: the flag's 0 and 1 (its
        // bounds), the last position and its neighbours (the first admission's count in the
        // flat model, the siblings still to come in the sequence model).
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("_model.json")).unwrap()).unwrap();
        let spikes = |m: &serde_json::Value, column: &str| -> Vec<f64> {
            let c = m["columns"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["schema"]["name"] == column)
                .unwrap_or_else(|| panic!("no column {column}"));
            serde_json::from_value(c["encoding"]["spikes"].clone()).unwrap()
        };
        let sequence_of = |table: &str| -> &serde_json::Value {
            &model["tables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == table)
                .unwrap()["sequence"]
        };
        let sequence = sequence_of("admissions");
        for (m, column, needed) in [
            (
                &model["flat"],
                "admissions.hospital_expire_flag",
                &[0.0, 1.0][..],
            ),
            (&model["flat"], "#admissions", &[0.0, 1.0, 2.0]),
            (sequence, "hospital_expire_flag", &[0.0, 1.0]),
            (sequence, "#remaining", &[0.0, 1.0]),
        ] {
            let have = spikes(m, column);
            assert!(
                needed.iter().all(|x| have.contains(x)),
                "{column}: codes {have:?} at epsilon {epsilon}, noise {noise}"
            );
        }
        // Where the first diagnosis's `seq_num` may be drawn empty, it is drawn given its
        // position, and never empty at position 0
        // (`under_dp_a_first_sibling_always_has_its_place_and_later_ones_never_do`).
        let diagnoses = sequence_of("diagnoses_icd");
        if encoding_of(diagnoses, "seq_num").1 {
            let (spikes, _) = encoding_of(diagnoses, "#position");
            let at = spikes.iter().position(|&x| x == 0.0).unwrap();
            for row in &table_by(diagnoses, "seq_num", "#position")[at] {
                assert_eq!(row[row.len() - 1], 0.0, "{row:?}");
            }
        }
        let e = check_entities(&out, 400);
        // Nothing the real tables always fill is sampled empty: the key parts come from the
        // public dictionary, the child counts and positions from their public ranges, and a
        // first sibling's place in time from its position (declared under DP: the noisy
        // search could miss that tie, and a diagnosis sequence then started empty, leaving
        // every `seq_num` of the admission empty).
        for (t, c) in [
            (&e.sa, "admission_type"),
            (&e.sa, "admit_provider_id"),
            (&e.sa, "admittime"),
            (&e.sd, "icd_code"),
            (&e.sd, "icd_version"),
            (&e.sd, "seq_num"),
            (&e.st, "eventtype"),
            (&e.st, "intime"),
        ] {
            assert!(
                !t[c].is_empty() && t[c].iter().all(Option::is_some),
                "empty {c}"
            );
        }
    }
}

fn parts(out: &Path, tables: &[&str]) -> Vec<Vec<u8>> {
    tables
        .iter()
        .map(|t| std::fs::read(out.join(t).join("part-00000.parquet")).unwrap())
        .collect()
}

#[test]
fn same_seed_gives_the_same_entities() {
    let dir = tempfile::tempdir().unwrap();
    let tables = ["patients", "admissions", "transfers", "diagnoses_icd"];
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    ok(&run_mimic(&a, "300", &["--no-dp", "--seed", "5"]));
    ok(&run_mimic(&b, "300", &["--no-dp", "--seed", "5"]));
    assert_eq!(parts(&a, &tables), parts(&b, &tables));
    ok(&run_mimic(&c, "300", &["--no-dp", "--seed", "6"]));
    assert_ne!(parts(&a, &tables), parts(&c, &tables));
    // Fit once, sample later: the same entities as one `run`.
    let model = dir.path().join("model.json");
    let spec = example().join("spec.yaml");
    ok(&chimera(&[
        "fit",
        "--spec",
        spec.to_str().unwrap(),
        "--no-dp",
        "--model",
        model.to_str().unwrap(),
    ]));
    let d = dir.path().join("d");
    ok(&chimera(&[
        "sample",
        "--model",
        model.to_str().unwrap(),
        "--rows",
        "300",
        "--seed",
        "5",
        "--output",
        d.to_str().unwrap(),
    ]));
    assert_eq!(parts(&a, &tables), parts(&d, &tables));
    assert!(d.join("d_icd_diagnoses").is_dir());
    // inspect shows the tree and every network.
    let o = chimera(&["inspect", model.to_str().unwrap()]);
    ok(&o);
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("transfers <- admissions (at most 12 per parent)")
            && text.contains("== diagnoses_icd given its parent"),
        "{text}"
    );
    // ... and the rules the entity keeps by construction.
    for rule in [
        "dod after the latest admissions.dischtime",
        "first admittime placed from anchor_year (a year)",
        "hospital_expire_flag = 1 only on a parent's last row",
        "first intime placed from edregtime, else admittime",
        "last intime placed at the parent's dischtime",
        "eventtype = discharge on every parent's last row",
        "careunit empty where eventtype = discharge",
        "careunit never empty elsewhere",
        "hospital_expire_flag never empty",
    ] {
        assert!(text.contains(rule), "{rule}: {text}");
    }
    let o = chimera(&["inspect", "--json", model.to_str().unwrap()]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tables"][1]["parent"], "patients");
    assert!(v["models"]["transfers"].is_object());
}

/// Writes each table to `dir/<name>.csv` and the spec to `dir/spec.yaml`; returns the spec.
fn write_fixture(dir: &Path, tables: &[(&str, &str)], spec: &str) -> PathBuf {
    for (name, text) in tables {
        std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
    }
    let path = dir.join("spec.yaml");
    std::fs::write(&path, spec).unwrap();
    path
}

/// 60 patients, each with 2 to 4 visits of which the last, and only the last, is an `end`.
fn visits(dir: &Path, kind: &str) -> PathBuf {
    let mut patients = String::from("id,age\n");
    let mut visits = String::from("visit,patient,day,kind\n");
    let mut v = 0;
    for i in 0..60usize {
        patients.push_str(&format!("P{i:03},{}\n", 20 + i % 50));
        let n = 2 + i % 3;
        for j in 0..n {
            v += 1;
            let kind = if j + 1 == n { "end" } else { "mid" };
            visits.push_str(&format!("V{v:04},P{i:03},{},{kind}\n", 10 * j + i % 7));
        }
    }
    write_fixture(
        dir,
        &[("patients", &patients), ("visits", &visits)],
        &format!(
            "tables:
  patients:
    input: patients.csv
    primary_key: id
    columns:
      age: {{bounds: [0, 100]}}
  visits:
    input: visits.csv
    primary_key: visit
    foreign_keys: [{{columns: patient, references: patients}}]
    order_by: day
    last_is: {{kind: end}}
    columns:
      day: {{bounds: [0, 40]}}
      {kind}
"
        ),
    )
}

#[test]
fn a_last_child_value_needs_a_code_of_its_own_and_then_ends_every_parent() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let dp = ["--epsilon", "1", "--seed", "1", "--noise-seed", "1"];
    // Under DP, 60 patients' visits release no value of `kind`: the rule could not hold.
    let spec = visits(dir.path(), "kind: {}");
    let o = run_entities(&spec, &out, "200", &dp);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("`last_is`: `end` is not a value of") && e.contains("`domain`"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // With the values declared public it holds, whatever the noise.
    let spec = visits(dir.path(), "kind: {domain: [mid, end]}");
    for noise in ["1", "2", "3"] {
        let dp = ["--epsilon", "1", "--seed", "1", "--noise-seed", noise];
        let out = dir.path().join(format!("out{noise}"));
        ok(&run_entities(&spec, &out, "200", &dp));
        let sv = synthetic(&out, "visits");
        let mut last: HashMap<&String, Option<&str>> = HashMap::new();
        for (p, k) in sv["patient"].iter().zip(&sv["kind"]) {
            last.insert(p.as_ref().unwrap(), k.as_deref());
        }
        assert!(last.len() > 50, "{} patients with visits", last.len());
        let other = last.values().filter(|k| **k != Some("end")).count();
        assert_eq!(other, 0, "patients whose last visit is not an `end`");
    }
}

/// Writes `parents.csv` (3,000 rows) and `kids.csv` (0 to 4 per parent) and a spec over them.
fn households(dir: &Path) -> PathBuf {
    let mut parents = String::from("id,region,size\n");
    let mut kids = String::from("kid,parent,kind,born\n");
    let mut k = 0;
    for i in 0..3000 {
        let region = ["north", "south", "east"][i % 3];
        parents.push_str(&format!("{i},{region},{}\n", 1 + i % 5));
        for j in 0..(i * 7 % 5) {
            k += 1;
            let kind = if (i + j) % 3 == 0 { "a" } else { "b" };
            kids.push_str(&format!(
                "{k},{i},{kind},2020-01-{:02}\n",
                1 + (i + 3 * j) % 28
            ));
        }
    }
    write_fixture(
        dir,
        &[("parents", &parents), ("kids", &kids)],
        "tables:
  parents: {input: parents.csv, primary_key: id}
  kids:
    input: kids.csv
    primary_key: kid
    foreign_keys: [{columns: parent, references: parents}]
    order_by: born
    max_children: 4
",
    )
}

/// Visits coded from a public dictionary of `codes` keys, 60 visits over 60 codes.
fn coded_visits(dir: &Path, codes: usize) -> PathBuf {
    let mut dict = String::from("code,label\n");
    for c in 0..codes {
        dict.push_str(&format!("C{c:06},label {c}\n"));
    }
    let mut people = String::from("id,region\n");
    let mut visits = String::from("visit,person,code,day\n");
    for i in 0..60 {
        people.push_str(&format!("{i},{}\n", ["north", "south"][i % 2]));
        visits.push_str(&format!(
            "{i},{i},C{:06},2020-01-{:02}\n",
            i * 7 % codes,
            1 + i % 28
        ));
    }
    write_fixture(
        dir,
        &[("dict", &dict), ("people", &people), ("visits", &visits)],
        "tables:
  people: {input: people.csv, primary_key: id, columns: {region: {domain: [north, south]}}}
  visits:
    input: visits.csv
    primary_key: visit
    foreign_keys:
      - {columns: person, references: people}
      - {columns: code, references: dict}
    order_by: day
    max_children: 2
    columns: {day: {bounds: [0, 30000]}}
  dict: {input: dict.csv, primary_key: code, public: true}
",
    )
}

#[test]
fn dp_references_take_the_public_keys_as_their_domain_and_stop_when_too_many_release_nothing() {
    // 60 visits: under DP no code is frequent enough to release. A dictionary of 100 keys is
    // the column's public domain, so every visit still gets a real code; one of 60,001 keys is
    // too large a domain, and a release of nothing stops the fit instead of writing empty keys.
    let dir = tempfile::tempdir().unwrap();
    let run = |codes: usize| {
        let sub = dir.path().join(format!("d{codes}"));
        std::fs::create_dir_all(&sub).unwrap();
        let spec = coded_visits(&sub, codes);
        let out = sub.join("out");
        let o = run_entities(&spec, &out, "200", &["--epsilon", "1", "--noise-seed", "4"]);
        (o, out)
    };
    let (o, out) = run(100);
    ok(&o);
    let visits = synthetic(&out, "visits");
    let dict = synthetic(&out, "dict");
    assert!(!visits["code"].is_empty());
    assert_eq!(dangling(&dict["code"], &visits["code"]), 0);
    let (o, out) = run(60_001);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("table `visits`, column `code`")
            && e.contains("no key of the public table `dict` was released"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

/// People with 2 coded lists each; a list's items all have one code version (as a hospital
/// admission's diagnoses are all ICD-9 or all ICD-10), and their codes follow the list's ward.
/// Half the lists are version 9, with 1 to 8 items; the others version 10, with 1 to 16: a third
/// of the items, half of the lists. Returns the spec and the share of items of version 9.
fn versioned_lists(dir: &Path) -> (PathBuf, f64) {
    let mut dict = String::from("code,version,label\n");
    for (letter, version) in [("N", 9), ("T", 10)] {
        for j in 0..20 {
            dict.push_str(&format!("{letter}{j},{version},label {letter}{j}\n"));
        }
    }
    let mut people = String::from("id,region\n");
    let mut lists = String::from("list,person,ward\n");
    let mut items = String::from("person,list,code,version,seq\n");
    let mut rows = [0usize; 2];
    for i in 0..400 {
        people.push_str(&format!("{i},{}\n", ["north", "south"][i % 2]));
        for l in [2 * i, 2 * i + 1] {
            let ward = l * 7 % 5;
            lists.push_str(&format!("{l},{i},w{ward}\n"));
            let (letter, version, n) = if l % 2 == 0 {
                ("N", 9, 1 + (l * 7 / 2) % 8)
            } else {
                ("T", 10, 1 + (l * 11 / 2) % 16)
            };
            rows[l % 2] += n;
            for k in 0..n {
                let code = ward * 4 + (l * 37 + k * k * 11 + k * 3) % 4;
                items.push_str(&format!("{i},{l},{letter}{code},{version},{}\n", k + 1));
            }
        }
    }
    let spec = write_fixture(
        dir,
        &[
            ("dict", &dict),
            ("people", &people),
            ("lists", &lists),
            ("items", &items),
        ],
        "tables:
  people: {input: people.csv, primary_key: id, columns: {region: {domain: [north, south]}}}
  lists:
    input: lists.csv
    primary_key: list
    foreign_keys: [{columns: person, references: people}]
    columns: {ward: {domain: [w0, w1, w2, w3, w4]}}
  items:
    input: items.csv
    foreign_keys:
      - {columns: list, references: lists}
      - {columns: person, references: people}
      - {columns: [code, version], references: dict}
    order_by: seq
    max_children: 30
    columns: {code: {type: Utf8}, seq: {bounds: [0, 30]}}
  dict: {input: dict.csv, primary_key: [code, version], public: true}
",
    );
    (spec, rows[0] as f64 / (rows[0] + rows[1]) as f64)
}

#[test]
fn a_key_part_siblings_share_keeps_its_share_of_parents() {
    // A list's version is drawn once, for its first item, and copied to the rest. The items'
    // model sees every item, two in three of version 10: drawn with those weights, 62% of the
    // synthetic lists were version 10 (seeds 1-5), against half the real ones. (At 100,000
    // patients, the MIMIC spec's ICD-9 admissions fell from 53% to 45% so, and diagnoses
    // 2-way similarity to 0.94.)
    let dir = tempfile::tempdir().unwrap();
    let (spec, real) = versioned_lists(dir.path());
    let out = dir.path().join("out");
    ok(&run_entities(
        &spec,
        &out,
        "2000",
        &["--no-dp", "--seed", "5"],
    ));
    let items = synthetic(&out, "items");
    let mut version: HashMap<&String, HashSet<&String>> = HashMap::new();
    for (l, v) in items["list"].iter().zip(&items["version"]) {
        version
            .entry(l.as_ref().unwrap())
            .or_default()
            .insert(v.as_ref().unwrap());
    }
    assert!(version.len() > 3000, "{} lists", version.len());
    assert!(version.values().all(|v| v.len() == 1));
    let nine = version
        .values()
        .filter(|v| v.contains(&"9".to_string()))
        .count();
    let share = nine as f64 / version.len() as f64;
    assert!(
        (share - 0.5).abs() <= 0.05,
        "{share:.3} of the lists are version 9, not 0.5"
    );
    // ... and so a third of the items.
    let nine = items["version"]
        .iter()
        .filter(|v| v.as_deref() == Some("9"))
        .count();
    let share = nine as f64 / items["version"].len() as f64;
    assert!(
        (share - real).abs() <= 0.03,
        "{share:.3} of the items are version 9, not {real:.3}"
    );
}

/// Customers with up to 4 orders each; an order's `plan` is the customer's (the same on every
/// order), its `size` varies.
fn customers(dir: &Path) -> PathBuf {
    let mut parents = String::from("id,region\n");
    let mut orders = String::from("order_id,customer,plan,size,day\n");
    let mut k = 0;
    for i in 0..2000 {
        parents.push_str(&format!("{i},{}\n", ["north", "south", "east"][i % 3]));
        let plan = ["gold", "silver", "bronze"][(i * 7 / 3) % 3];
        for j in 0..(1 + i % 4) {
            k += 1;
            let size = ["s", "m", "l"][(i + j) % 3];
            // One customer changed plan (the rule is the spec's, not the data's).
            let plan = if i == 7 && j == 3 { "gold" } else { plan };
            orders.push_str(&format!("{k},{i},{plan},{size},2020-02-{:02}\n", 1 + 3 * j));
        }
    }
    write_fixture(
        dir,
        &[("customers", &parents), ("orders", &orders)],
        "tables:
  customers: {input: customers.csv, primary_key: id,
              columns: {region: {domain: [north, south, east]}}}
  orders:
    input: orders.csv
    primary_key: order_id
    foreign_keys: [{columns: customer, references: customers}]
    order_by: day
    max_children: 4
    same_for_siblings: [plan]
    columns:
      plan: {domain: [gold, silver, bronze]}
      size: {domain: [s, m, l]}
      day: {bounds: [0, 30000]}
",
    )
}

/// Days since 1970-01-01 as a date, and back (the proleptic Gregorian calendar).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days(date: &str) -> i64 {
    let p: Vec<i64> = date[..10].split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, d) = (p[0] - i64::from(p[1] <= 2), p[1], p[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// 120 members aged 20 to 89, a plan that is `senior` exactly from 65, a membership that
/// lasts 200 days or more on that plan and under 80 on the others, and 1 to 3 claims each.
fn members(dir: &Path) -> PathBuf {
    let mut members = String::from("id,age,plan,joined,left\n");
    let mut claims = String::from("claim_id,member,kind\n");
    let mut k = 0;
    for i in 0..120 {
        let age = 20 + (i * 37) % 70;
        let plan = if age >= 65 {
            "senior"
        } else {
            ["basic", "plus"][i % 2]
        };
        let length = if plan == "senior" {
            200 + (i * 13) % 150
        } else {
            5 + (i * 11) % 70
        } as i64;
        let joined = 18_262 + (i as i64 * 5) % 300; // from 2020-01-01
        members.push_str(&format!(
            "{i},{age},{plan},{},{}\n",
            date(joined),
            date(joined + length)
        ));
        for j in 0..(1 + i % 3) {
            k += 1;
            claims.push_str(&format!("{k},{i},{}\n", ["a", "b"][(i + j) % 2]));
        }
    }
    write_fixture(
        dir,
        &[("members", &members), ("claims", &claims)],
        "tables:
  members: {input: members.csv, primary_key: id,
            columns: {plan: {domain: [basic, plus, senior]}, left: {after: joined}}}
  claims:
    input: claims.csv
    primary_key: claim_id
    foreign_keys: [{columns: member, references: members}]
    columns: {kind: {domain: [a, b]}}
",
    )
}

#[test]
fn a_number_of_many_values_leads_what_follows_it_through_its_band() {
    // An age of 70 values takes a code per value or two: on 120 rows no conditional table may
    // hold it next to the plan, which was then drawn as if age did not matter (a quarter of
    // the members under 50 had the senior plan). Its band may.
    let dir = tempfile::tempdir().unwrap();
    let spec = members(dir.path());
    let out = dir.path().join("out");
    ok(&run_entities(
        &spec,
        &out,
        "3000",
        &["--no-dp", "--seed", "2"],
    ));
    let shown = chimera(&["inspect", out.join("_model.json").to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("age drawn within a band of age~band"),
        "{shown}"
    );
    let m = synthetic(&out, "members");
    let ages: Vec<i64> = m["age"]
        .iter()
        .map(|a| a.as_ref().unwrap().parse().unwrap())
        .collect();
    let senior = |keep: &dyn Fn(i64) -> bool| {
        let rows: Vec<usize> = (0..ages.len()).filter(|&i| keep(ages[i])).collect();
        let s = rows
            .iter()
            .filter(|&&i| m["plan"][i].as_deref() == Some("senior"))
            .count();
        s as f64 / rows.len().max(1) as f64
    };
    let (young, old) = (senior(&|a| a < 50), senior(&|a| a >= 75));
    assert!(young < 0.05, "senior plans under 50: {young:.3}");
    assert!(old > 0.9, "senior plans from 75: {old:.3}");
    // The age within its band keeps its own distribution: by decade, as in the data.
    let real: Vec<i64> = (0..120).map(|i| 20 + (i * 37) % 70).collect();
    let decade = |a: &[i64]| a.iter().map(|x| x / 10).collect::<Vec<_>>();
    let d = tvd(&decade(&real), &decade(&ages));
    assert!(d < 0.05, "age by decade TVD {d:.3}");
    assert!(
        ages.iter().all(|a| (20..=89).contains(a)),
        "an age outside the data's"
    );
    // A time after another is banded by its days after it: the membership's length.
    let median_length = |senior: bool| {
        let mut d: Vec<i64> = (0..ages.len())
            .filter(|&i| (m["plan"][i].as_deref() == Some("senior")) == senior)
            .map(|i| days(m["left"][i].as_ref().unwrap()) - days(m["joined"][i].as_ref().unwrap()))
            .collect();
        d.sort();
        d[d.len() / 2]
    };
    let (long, short) = (median_length(true), median_length(false));
    assert!(
        long >= 150 && short <= 80,
        "median days: senior {long}, others {short}"
    );
}

#[test]
fn same_for_siblings_columns_are_copied_to_every_later_sibling_with_or_without_dp() {
    let dir = tempfile::tempdir().unwrap();
    let spec = customers(dir.path());
    // The networks (with and without DP) and an LLM that writes the rows (a tiny random one,
    // which would write any plan) all keep it.
    let llm = crate::llm::tiny_model(dir.path());
    let with_llm = ["--no-dp", "--llm", llm.to_str().unwrap()];
    for (i, privacy) in [
        &["--no-dp"][..],
        &["--epsilon", "2", "--noise-seed", "3"],
        &with_llm,
    ]
    .iter()
    .enumerate()
    {
        let out = dir.path().join(format!("out{i}"));
        let entities = if i == 2 { "6" } else { "800" };
        let mut extra = vec!["--seed", "4"];
        extra.extend_from_slice(privacy);
        ok(&run_entities(&spec, &out, entities, &extra));
        let shown = chimera(&["inspect", out.join("_model.json").to_str().unwrap()]);
        assert!(
            String::from_utf8_lossy(&shown.stdout)
                .contains("plan the same on every row of a parent (copied from the first)"),
            "{}",
            String::from_utf8_lossy(&shown.stdout)
        );
        let orders = synthetic(&out, "orders");
        let mut plan_of: HashMap<&String, &Option<String>> = HashMap::new();
        let (mut later, mut sizes) = (0, HashSet::new());
        for ((c, p), s) in orders["customer"]
            .iter()
            .zip(&orders["plan"])
            .zip(&orders["size"])
        {
            sizes.insert(s.clone());
            if let Some(first) = plan_of.insert(c.as_ref().unwrap(), p) {
                later += 1;
                assert_eq!(
                    first, p,
                    "{privacy:?}: a customer's orders disagree on the plan"
                );
            }
        }
        // Later orders exist, and the column that is not declared still varies.
        let enough = if i == 2 { 3 } else { 100 };
        assert!(
            later >= enough && sizes.len() > 1,
            "{privacy:?}: {later} later orders"
        );
        if i == 0 {
            // `chimera eval --spec` checks the rule, with the real count beside.
            let e = chimera(&[
                "eval",
                "--spec",
                spec.to_str().unwrap(),
                "--synthetic",
                out.to_str().unwrap(),
            ]);
            ok(&e);
            let v: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
            let rule = v["orders"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["rule"] == "plan the same on every row of a parent")
                .unwrap_or_else(|| panic!("{}", v["orders"]))
                .clone();
            assert_eq!(rule["table"], "orders");
            assert_eq!(rule["violations_synthetic"], 0, "{rule}");
            assert_eq!(rule["violations_real"], 1, "{rule}");
            assert!(rule["checked_synthetic"].as_u64().unwrap() >= later as u64);
        }
    }
    // A column that is not a modelled column of the table is named.
    for (column, why) in [("nope", "`nope`"), ("day", "`day`")] {
        let bad = dir.path().join(format!("bad-{column}.yaml"));
        let text = std::fs::read_to_string(&spec).unwrap();
        std::fs::write(
            &bad,
            text.replace(
                "same_for_siblings: [plan]",
                &format!("same_for_siblings: [{column}]"),
            ),
        )
        .unwrap();
        let out = dir.path().join(format!("bad-{column}"));
        let o = run_entities(&bad, &out, "10", &["--no-dp"]);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("`orders`") && e.contains("`same_for_siblings` names") && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn dp_entities_account_every_table_and_repeat_with_a_noise_seed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = households(dir.path());
    let run = |out: &Path, seed: &str| {
        let extra = ["--epsilon", "4", "--noise-seed", "11", "--seed", seed];
        run_entities(&spec, out, "500", &extra)
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&run(&a, "5"));
    ok(&run(&b, "5"));
    assert_eq!(
        parts(&a, &["parents", "kids"]),
        parts(&b, &["parents", "kids"])
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(m["privacy"]["mode"], "dp");
    assert_eq!(m["privacy"]["epsilon"], 4.0);
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("_model.json")).unwrap()).unwrap();
    let ledger = &model["privacy"]["ledger"];
    let charges = ledger["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 2, "{charges:?}");
    let spent: f64 = charges.iter().map(|c| c["rho"].as_f64().unwrap()).sum();
    let total = ledger["rho_total"].as_f64().unwrap();
    assert!(
        spent <= total * (1.0 + 1e-9) && spent > 0.99 * total,
        "{spent} of {total}"
    );
    // A parent contributes up to 4 kids: the kids' model says its noise is scaled to that.
    let notes = m["privacy"]["notes"].to_string();
    assert!(notes.contains("up to 4 rows"), "{notes}");
    let kids = synthetic(&a, "kids");
    let parents = synthetic(&a, "parents");
    assert_eq!(dangling(&parents["id"], &kids["parent"]), 0);
}

/// Stores (one in five without visits), their visits (up to 3, by day) and each visit's items
/// (1 to 6, by line number): the items' model holds first siblings, whose `line` is set at
/// position 0 only.
fn stores(dir: &Path) -> PathBuf {
    let mut stores = String::from("id,kind\n");
    let mut visits = String::from("visit,store,day\n");
    let mut items = String::from("item,visit,line,what\n");
    let (mut v, mut k) = (0, 0);
    for i in 0..3000usize {
        stores.push_str(&format!("{i},{}\n", ["corner", "mall"][i % 2]));
        for j in 0..(i % 5 > 0) as usize * (1 + i % 3) {
            v += 1;
            visits.push_str(&format!("{v},{i},2021-0{}-{:02}\n", 1 + 2 * j, 1 + i % 28));
            for l in 0..1 + (i + j) % 6 {
                k += 1;
                let what = ["bread", "milk", "eggs"][(i + l) % 3];
                items.push_str(&format!("{k},{v},{},{what}\n", 1 + l));
            }
        }
    }
    write_fixture(
        dir,
        &[("stores", &stores), ("visits", &visits), ("items", &items)],
        "tables:
  stores: {input: stores.csv, primary_key: id, columns: {kind: {domain: [corner, mall]}}}
  visits:
    input: visits.csv
    primary_key: visit
    foreign_keys: [{columns: store, references: stores}]
    order_by: day
    max_children: 3
    columns: {day: {bounds: [0, 30000]}}
  items:
    input: items.csv
    primary_key: item
    foreign_keys: [{columns: visit, references: visits}]
    order_by: line
    max_children: 6
    columns: {line: {bounds: [0, 10]}, what: {domain: [bread, milk, eggs]}}
",
    )
}

/// The conditional table of `column` in a fitted network (`model["flat"]` or a sequence model):
/// for each code of its parent `by`, the weights of the column's codes.
fn table_by(model: &serde_json::Value, column: &str, by: &str) -> Vec<Vec<Vec<f64>>> {
    let names: Vec<&str> = model["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            model["columns"][a.as_u64().unwrap() as usize]["schema"]["name"]
                .as_str()
                .unwrap()
        })
        .collect();
    let node = model["network"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| names[n["child"].as_u64().unwrap() as usize] == column)
        .unwrap_or_else(|| panic!("no node {column}"));
    let parents: Vec<&str> = node["parents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| names[p.as_u64().unwrap() as usize])
        .collect();
    let k = parents
        .iter()
        .position(|p| *p == by)
        .unwrap_or_else(|| panic!("{column} has parents {parents:?}, not {by}"));
    let cards: Vec<usize> = serde_json::from_value(node["parent_cards"].clone()).unwrap();
    let card = node["card"].as_u64().unwrap() as usize;
    let probs: Vec<f64> = serde_json::from_value(node["probs"].clone()).unwrap();
    let stride: usize = cards[..k].iter().product();
    let mut by_code = vec![Vec::new(); cards[k]];
    for (c, row) in probs.chunks(card).enumerate() {
        by_code[(c / stride) % cards[k]].push(row.to_vec());
    }
    by_code
}

/// The spikes and whether there is a null code, of a column of a fitted network.
fn encoding_of(model: &serde_json::Value, column: &str) -> (Vec<f64>, bool) {
    let c = model["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["schema"]["name"] == column)
        .unwrap_or_else(|| panic!("no column {column}"));
    let spikes = serde_json::from_value(c["encoding"]["spikes"].clone()).unwrap();
    (spikes, c["encoding"]["null"] == true)
}

#[test]
fn under_dp_a_first_sibling_always_has_its_place_and_later_ones_never_do() {
    // A first sibling's `order_by` is set exactly at position 0 (later ones have a gap). Under
    // DP the noise puts weight on the wrong side; the fit takes it off (the rule is the
    // layout's, so public). Below the root's children the sequence model holds first siblings.
    let dir = tempfile::tempdir().unwrap();
    let spec = stores(dir.path());
    for noise in ["1", "2"] {
        let out = dir.path().join(format!("out-{noise}"));
        let extra = ["--epsilon", "4", "--noise-seed", noise, "--seed", "5"];
        ok(&run_entities(&spec, &out, "2000", &extra));
        let model: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("_model.json")).unwrap()).unwrap();
        let items = &model["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "items")
            .unwrap()["sequence"];
        let (spikes, has_null) = encoding_of(items, "#position");
        assert!(
            spikes.contains(&0.0) && spikes.contains(&1.0),
            "#position: {spikes:?}"
        );
        assert!(encoding_of(items, "line").1, "`line` has no null code");
        let table = table_by(items, "line", "#position");
        for (code, rows) in table.iter().enumerate() {
            // The position's codes are its spikes, then its bins (all above 1 here).
            let first = match spikes.get(code) {
                Some(x) => *x == 0.0,
                None if code + 1 == table.len() && has_null => continue,
                None => false,
            };
            for row in rows {
                let null = row[row.len() - 1];
                assert_eq!(
                    null,
                    if first { 0.0 } else { 1.0 },
                    "line given #position code {code} (noise {noise}): {row:?}"
                );
            }
        }
        let items = synthetic(&out, "items");
        assert!(!items["line"].is_empty());
        assert!(items["line"].iter().all(Option::is_some));
    }
}

/// `max_rows_per_entity` lowers what one entity contributes to a child table's model under DP
/// (the noise is scaled to it), changes nothing without DP, and is refused where it cannot
/// apply.
#[test]
fn max_rows_per_entity_bounds_a_child_tables_contribution_under_dp() {
    let dir = tempfile::tempdir().unwrap();
    let spec = households(dir.path());
    let text = std::fs::read_to_string(&spec).unwrap();
    let capped = dir.path().join("capped.yaml");
    std::fs::write(
        &capped,
        text.replace(
            "max_children: 4\n",
            "max_children: 4\n    max_rows_per_entity: 2\n",
        ),
    )
    .unwrap();
    let run = |spec: &Path, out: &Path, dp: &[&str]| {
        let mut extra = vec!["--seed", "5"];
        extra.extend_from_slice(dp);
        run_entities(spec, out, "300", &extra)
    };
    let dp = ["--epsilon", "4", "--noise-seed", "11"];
    let out = dir.path().join("dp");
    ok(&run(&capped, &out, &dp));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let notes = m["privacy"]["notes"].to_string();
    assert!(notes.contains("up to 2 rows"), "{notes}");
    assert!(!notes.contains("up to 4 rows"), "{notes}");
    let kids = synthetic(&out, "kids");
    let parents = synthetic(&out, "parents");
    assert_eq!(dangling(&parents["id"], &kids["parent"]), 0);
    // Without DP every row is learnt from: the same bytes as without the option.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&run(&capped, &a, &["--no-dp"]));
    ok(&run(&spec, &b, &["--no-dp"]));
    assert_eq!(
        parts(&a, &["parents", "kids"]),
        parts(&b, &["parents", "kids"])
    );
    for (bad, says) in [
        (
            text.replace(
                "max_children: 4\n",
                "max_children: 4\n    max_rows_per_entity: 0\n",
            ),
            "table `kids`: max_rows_per_entity must be at least 1",
        ),
        (
            text.replace(
                "primary_key: id}",
                "primary_key: id, max_rows_per_entity: 3}",
            ),
            "table `parents`: `max_rows_per_entity` applies to child tables",
        ),
    ] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, bad).unwrap();
        let o = run(&path, &dir.path().join("bad"), &dp);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
}

/// Shops founded in a year (an integer), each with up to 4 sales after 1 January of that year,
/// in time order; the last sale of every fourth shop is its `final` one, and every other shop
/// with sales closed 0 to 29 days after its last sale. Keys are strings spread over their
/// digits (`SH-007919`, `S0104729`).
fn shops(dir: &Path) -> PathBuf {
    let mut shops = String::from("id,founded,closed\n");
    let mut sales = String::from("sale,shop,kind,at\n");
    let mut k = 0;
    for i in 0..3000usize {
        let founded = 1990 + i % 20;
        let n = i * 7 % 5;
        let mut last = None;
        for j in 0..n {
            k += 1;
            let kind = if j + 1 == n && i % 4 == 0 {
                "final"
            } else {
                ["a", "b"][(i + j) % 2]
            };
            let day = 1 + (i + 9 * j) % 28;
            let month = 1 + 3 * j;
            sales.push_str(&format!(
                "S{:07},SH-{:06},{kind},{founded}-{month:02}-{day:02}\n",
                k * 104_729 % 10_000_000,
                i * 7919 % 1_000_000
            ));
            last = Some(format!("{founded}-{month:02}-{day:02}"));
        }
        let closed = match &last {
            Some(d) if i % 2 == 0 => {
                let day: usize = d[8..].parse().unwrap();
                let extra = i % 30;
                // Same month when it fits, else the next one (months here are 1..=10).
                if day + extra <= 28 {
                    format!("{}{:02}", &d[..8], day + extra)
                } else {
                    let m: usize = d[5..7].parse().unwrap();
                    format!("{}-{:02}-{:02}", &d[..4], m + 1, day + extra - 28)
                }
            }
            _ => String::new(),
        };
        shops.push_str(&format!(
            "SH-{:06},{founded},{closed}\n",
            i * 7919 % 1_000_000
        ));
    }
    write_fixture(
        dir,
        &[("shops", &shops), ("sales", &sales)],
        "tables:
  shops:
    input: shops.csv
    primary_key: id
    columns:
      closed: {after: sales.at}
  sales:
    input: sales.csv
    primary_key: sale
    foreign_keys: [{columns: shop, references: shops}]
    order_by: at
    anchor: founded
    last_when: {kind: final}
    max_children: 4
",
    )
}

#[test]
fn entity_times_follow_a_year_anchor_and_the_last_child_and_a_last_value_ends_the_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let spec = shops(dir.path());
    for dp in [false, true] {
        let out = dir.path().join(if dp { "dp" } else { "exact" });
        let mut extra = vec!["--seed", "4"];
        extra.extend(if dp {
            ["--epsilon", "4", "--noise-seed", "2"].as_slice()
        } else {
            ["--no-dp"].as_slice()
        });
        ok(&run_entities(&spec, &out, "2000", &extra));
        let (shops, sales) = (synthetic(&out, "shops"), synthetic(&out, "sales"));
        let founded: HashMap<&String, i64> = shops["id"]
            .iter()
            .flatten()
            .zip(&shops["founded"])
            .map(|(id, y)| (id, y.as_ref().unwrap().parse().unwrap()))
            .collect();
        let mut of_shop: HashMap<&String, Vec<(&String, &String)>> = HashMap::new();
        for ((s, at), kind) in sales["shop"].iter().zip(&sales["at"]).zip(&sales["kind"]) {
            of_shop
                .entry(s.as_ref().unwrap())
                .or_default()
                .push((at.as_ref().unwrap(), kind.as_ref().unwrap()));
        }
        assert!(of_shop.len() > 1000, "{}", of_shop.len());
        // Fresh string keys: distinct, every sale's shop resolves, and without DP in the real
        // keys' format (under DP 16 hex digits, as the manifest says).
        let ids: HashSet<&String> = shops["id"].iter().flatten().collect();
        let sale_ids: HashSet<&String> = sales["sale"].iter().flatten().collect();
        assert_eq!((ids.len(), sale_ids.len()), (2000, sales["sale"].len()));
        assert_eq!(dangling(&shops["id"], &sales["shop"]), 0);
        let shaped = |v: &str, prefix: &str, digits: usize| {
            v.len() == prefix.len() + digits
                && v.starts_with(prefix)
                && v[prefix.len()..].chars().all(|c| c.is_ascii_digit())
        };
        let hex = |v: &str| v.len() == 16 && v.chars().all(|c| c.is_ascii_hexdigit());
        if dp {
            assert!(ids.iter().all(|v| hex(v)) && sale_ids.iter().all(|v| hex(v)));
            let m = std::fs::read_to_string(out.join("_manifest.json")).unwrap();
            assert!(m.contains("fresh `id` keys are 16 hex digits"), "{m}");
        } else {
            assert!(
                ids.iter().all(|v| shaped(v, "SH-", 6)),
                "{:?}",
                ids.iter().next()
            );
            assert!(
                sale_ids.iter().all(|v| shaped(v, "S", 7)),
                "{:?}",
                sale_ids.iter().next()
            );
        }
        let (mut early, mut not_last, mut finals, mut before_last) = (0, 0, 0, 0);
        for (shop, v) in &mut of_shop {
            v.sort();
            // The first sale is placed from 1 January of its shop's year: in the data never
            // before it, and every later one comes after it.
            let year: i64 = v[0].0[..4].parse().unwrap();
            early += usize::from(year < founded[shop]);
            // `final` only on the last sale, by construction (DP too).
            not_last += v[..v.len() - 1]
                .iter()
                .filter(|(_, k)| *k == "final")
                .count();
            finals += usize::from(v[v.len() - 1].1 == "final");
            let i = shops["id"]
                .iter()
                .position(|x| x.as_ref() == Some(*shop))
                .unwrap();
            if let Some(closed) = &shops["closed"][i] {
                // Closed on or after the day of the last sale, by construction (DP too).
                before_last += usize::from(closed.as_str() < &v[v.len() - 1].0[..10]);
            }
        }
        assert_eq!(not_last, 0, "dp {dp}: `final` before the last sale");
        assert_eq!(before_last, 0, "dp {dp}: closed before its last sale");
        // The data's share: a quarter of the shops with sales end with a final sale (under DP
        // at this epsilon the share is noisier: 0.06 on this seed).
        let share = finals as f64 / of_shop.len() as f64;
        if dp {
            assert!(share > 0.02, "dp: {share:.3} end with `final`");
        } else {
            assert!(share > 0.15 && share < 0.35, "{share:.3} end with `final`");
            assert_eq!(early, 0, "a first sale before its shop's year");
        }
    }
}

/// Parents and kids where no parent has a second kid and `note` is always empty (`lone`), or a
/// neighbour (`busy`): one parent with six kids (two beyond `max_children`), one of them with a
/// note, and one kid whose parent does not exist (`orphans: drop`).
fn lone_or_busy(dir: &Path, busy: bool) -> PathBuf {
    let mut parents = String::from("id,region\n");
    let mut kids = String::from("kid,parent,kind,note,born\n");
    let mut k = 0;
    for i in 0..2000 {
        parents.push_str(&format!("{i},{}\n", ["north", "south", "east"][i % 3]));
        let n = if busy && i == 0 {
            6
        } else {
            usize::from(i % 2 == 0)
        };
        for j in 0..n {
            k += 1;
            let note = if busy && j == 1 { "x" } else { "" };
            let kind = ["a", "b"][(i + j) % 2];
            kids.push_str(&format!("{k},{i},{kind},{note},2020-01-{:02}\n", 1 + j));
        }
    }
    if busy {
        kids.push_str("99999,5000,a,,2020-01-01\n");
    }
    let name = if busy { "busy" } else { "lone" };
    std::fs::write(dir.join(format!("{name}_parents.csv")), parents).unwrap();
    std::fs::write(dir.join(format!("{name}_kids.csv")), kids).unwrap();
    let spec = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &spec,
        format!(
            "tables:
  parents: {{input: {name}_parents.csv, primary_key: id}}
  kids:
    input: {name}_kids.csv
    primary_key: kid
    foreign_keys: [{{columns: parent, references: parents}}]
    order_by: born
    max_children: 4
    orphans: drop
    columns:
      note: {{type: Utf8}}
"
        ),
    )
    .unwrap();
    spec
}

/// Each model of an entity model with its columns and roles: what a DP model's shape shows.
fn model_shape(model: &serde_json::Value) -> Vec<(String, Vec<(String, String)>)> {
    let columns = |m: &serde_json::Value| {
        m["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let name = c["schema"]["name"].as_str().unwrap().to_string();
                (name, c["role"].as_str().unwrap().to_string())
            })
            .collect::<Vec<_>>()
    };
    let mut shape = vec![("flat".to_string(), columns(&model["flat"]))];
    for t in model["tables"].as_array().unwrap() {
        if !t["sequence"].is_null() {
            shape.push((t["name"].to_string(), columns(&t["sequence"])));
        }
    }
    shape
}

#[test]
fn a_dp_entity_model_has_the_same_shape_on_neighbouring_data_and_publishes_no_counts() {
    let dir = tempfile::tempdir().unwrap();
    let fit = |busy: bool, dp: bool| {
        let spec = lone_or_busy(dir.path(), busy);
        let out = dir.path().join(format!("out_{busy}_{dp}"));
        let privacy: &[&str] = if dp {
            &["--epsilon", "2", "--noise-seed", "3"]
        } else {
            &["--no-dp"]
        };
        let o = run_entities(&spec, &out, "300", privacy);
        ok(&o);
        let read = |f: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(out.join(f)).unwrap()).unwrap()
        };
        (read("_model.json"), read("_manifest.json"), stderr(&o))
    };
    // Without DP the lone data's kids have no sequence model and no `note`: nothing to learn.
    let (lone, _, _) = fit(false, false);
    let (busy, manifest, _) = fit(true, false);
    assert_ne!(model_shape(&lone), model_shape(&busy));
    let notes = manifest["privacy"]["notes"].to_string();
    assert!(notes.contains("the 2 rows beyond the first 4"), "{notes}");
    // Under DP, whether some parent has a second kid, or some kid a note, must not show.
    let (lone, _, _) = fit(false, true);
    let (busy, manifest, log) = fit(true, true);
    let shape = model_shape(&busy);
    assert_eq!(model_shape(&lone), shape);
    let sequence = &shape.iter().find(|(m, _)| m.contains("kids")).unwrap().1;
    assert!(sequence.iter().any(|(c, _)| c == "note"), "{sequence:?}");
    assert!(
        shape[0].1.iter().any(|(c, _)| c == "kids.note"),
        "{shape:?}"
    );
    // The manifest states what was left out, without the exact counts; the log has them.
    let notes = manifest["privacy"]["notes"].to_string();
    assert!(
        notes.contains("rows beyond the first 4 children of a `parents` row were left out")
            && notes.contains("keys do not resolve")
            && notes.contains("does not give how many"),
        "{notes}"
    );
    assert!(
        !notes.contains("2 rows") && !notes.contains("1 rows"),
        "{notes}"
    );
    assert!(log.contains("the 2 rows beyond the first 4"), "{log}");
}

#[test]
fn an_interrupted_relational_run_resumes_from_its_stored_model() {
    let dir = tempfile::tempdir().unwrap();
    let spec = households(dir.path());
    let out = dir.path().join("out");
    // DP noise from the operating system: a second fit would give another model and other rows.
    let run = || {
        let args = [
            "run",
            "--spec",
            spec.to_str().unwrap(),
            "--entities",
            "2000",
            "--shard-rows",
            "500",
            "--epsilon",
            "8",
            "--seed",
            "4",
            "--output",
            out.to_str().unwrap(),
        ];
        std::process::Command::new(env!("CARGO_BIN_EXE_chimera"))
            .args(args)
            .env("CHIMERA_LOG", "info")
            .output()
            .unwrap()
    };
    ok(&run());
    let files = |t: &str| -> Vec<Vec<u8>> {
        (0..4)
            .map(|s| std::fs::read(out.join(t).join(format!("part-{s:05}.parquet"))).unwrap())
            .collect()
    };
    let (parents, kids) = (files("parents"), files("kids"));
    let model = std::fs::read(out.join("_model.json")).unwrap();
    // Cut the run short: shard 3 had committed its parents but not its kids when it stopped, so
    // the last manifest written lists shards 0 to 2 only, and there is no `_SUCCESS`.
    std::fs::remove_file(out.join("_SUCCESS")).unwrap();
    std::fs::remove_file(out.join("kids/part-00003.parquet")).unwrap();
    let path = out.join("_manifest.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["complete"] = false.into();
    for t in ["parents", "kids"] {
        let table = &mut m["tables"][t];
        let last = table["parts"].as_array_mut().unwrap().pop().unwrap();
        let rows = table["rows"].as_u64().unwrap() - last["rows"].as_u64().unwrap();
        table["rows"] = rows.into();
    }
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    // The same command again: no second fit (the stored model is reused), shard 3 again.
    let o = run();
    ok(&o);
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("fitted the entity models"),
        "{}",
        stderr(&o)
    );
    assert!(out.join("_SUCCESS").exists());
    assert_eq!(std::fs::read(out.join("_model.json")).unwrap(), model);
    assert!(files("parents") == parents && files("kids") == kids);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["tables"]["kids"]["parts"].as_array().unwrap().len(), 4);
    assert_eq!(m["tables"]["parents"]["rows"], 2000);
    // A finished run is not resumed but refused, as for one table.
    let o = run();
    assert!(
        !o.status.success() && stderr(&o).contains("--overwrite"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn shards_split_entities_without_breaking_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run_mimic(&out, "500", &["--no-dp", "--shard-rows", "200"]));
    let sp = synthetic(&out, "patients");
    let sa = synthetic(&out, "admissions");
    let st = synthetic(&out, "transfers");
    assert_eq!(sp["subject_id"].len(), 500);
    assert_eq!(
        std::fs::read_dir(out.join("admissions")).unwrap().count(),
        3
    );
    assert_eq!(dangling(&sp["subject_id"], &sa["subject_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &st["hadm_id"]), 0);
    let ids: Vec<i64> = {
        let b = read_parts(&out.join("admissions"));
        b.iter()
            .flat_map(|b| {
                b.column_by_name("hadm_id")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
}

/// Writes a copy of the example spec with `edit` applied, next to the example data.
fn edited_spec(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let text = std::fs::read_to_string(example().join("spec.yaml")).unwrap();
    let text = text.replace("data/", &format!("{}/data/", example().display()));
    let path = dir.join("spec.yaml");
    std::fs::write(&path, edit(&text)).unwrap();
    path
}

fn run_spec(spec: &Path, out: &Path) -> std::process::Output {
    run_entities(spec, out, "50", &["--no-dp"])
}

#[test]
fn bad_relational_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // Foreign keys that do not resolve: counted, and the user chooses.
    let spec = edited_spec(dir.path(), |t| t.replace("    orphans: drop\n", ""));
    let o = run_spec(&spec, &out);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("`transfers`")
            && e.contains("54 rows have no parent in `admissions`")
            && e.contains("orphans: drop"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // A cycle.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "    primary_key: subject_id\n",
            "    primary_key: subject_id\n    foreign_keys: [{columns: subject_id, references: transfers}]\n",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("cycle") && e.contains("patients → transfers"),
        "{e}"
    );
    // A child table with no parent column.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "      - {columns: hadm_id, references: admissions}\n      - {columns: subject_id, references: patients}\n      - {columns: [icd_code",
            "      - {columns: [icd_code",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`diagnoses_icd`") && e.contains("exactly one root"),
        "{e}"
    );
    // A foreign key naming a column the table does not have.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("columns: hadm_id, references: admissions}\n      - {columns: subject_id, references: patients}\n    order_by: intime", "columns: hadm, references: admissions}\n      - {columns: subject_id, references: patients}\n    order_by: intime")
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(e.contains("`transfers`") && e.contains("`hadm`"), "{e}");
    assert!(!out.join("_SUCCESS").exists());
    // The column that orders siblings must always be set.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("    order_by: admittime\n", "    order_by: deathtime\n")
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`admissions`") && e.contains("`order_by: deathtime` is empty in 260 rows"),
        "{e}"
    );
    // A last-child value that earlier siblings hold in the data.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("{hospital_expire_flag: 1}", "{hospital_expire_flag: 0}")
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`admissions`")
            && e.contains(
                "`last_when: {hospital_expire_flag: 0}` does not hold in the data: 175 rows"
            ),
        "{e}"
    );
    // A last-child value no row holds: warned (perhaps a typing slip), not stopped.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("{hospital_expire_flag: 1}", "{hospital_expire_flag: 2}")
    });
    let slip = dir.path().join("slip");
    let o = run_spec(&spec, &slip);
    ok(&o);
    assert!(
        stderr(&o).contains(
            "`last_when: {hospital_expire_flag: 2}`: no row of the data holds `2` (is it spelt"
        ),
        "{}",
        stderr(&o)
    );
    // A last child's value the data's last children do not hold.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "last_is: {eventtype: discharge}",
            "last_is: {eventtype: admit}",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`transfers`")
            && e.contains(
                "`last_is: {eventtype: admit}` does not hold in the data: the last child of 275 \
                 parent rows"
            ),
        "{e}"
    );
    // A declared structural zero the data breaks, and one naming no column.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "empty_when: {eventtype: discharge}",
            "empty_when: {eventtype: admit}",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`transfers`")
            && e.contains("`careunit`")
            && e.contains("`empty_when: {eventtype: admit}` does not hold in the data: "),
        "{e}"
    );
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "empty_when: {eventtype: discharge}",
            "empty_when: {event: discharge}",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`transfers`")
            && e.contains("`empty_when` names `event`, which is not a column"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
    // A declared parent outside the table and its parent.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "admission_location:\n        parents: [admission_type]\n",
            "admission_location:\n        parents: [transfers.careunit]\n",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`admissions`")
            && e.contains("`transfers.careunit`")
            && e.contains("or of its parent `patients`"),
        "{e}"
    );
    // A count's declared parent that is not a column of the parent table.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "count_parents: [edregtime~set]",
            "count_parents: [edregtim~set]",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`transfers`")
            && e.contains("`count_parents` names `edregtim~set`, which is not a column of the parent table `admissions`"),
        "{e}"
    );
    // A first-child rule naming a parent column that does not exist, a value outside the
    // column's domain, and one on a child of the root (whose first row the flat model draws).
    for (to, says) in [
        (
            "      edregtim: {eventtype: ED}",
            "table `admissions` has no column `edregtim`",
        ),
        (
            "      edregtime: {eventtype: EDD}",
            "`first_where: {edregtime: {eventtype: EDD}}`: `EDD` is not in the `domain` of `eventtype`",
        ),
    ] {
        let spec = edited_spec(dir.path(), |t| {
            t.replace("      edregtime: {eventtype: ED}", to)
        });
        let e = stderr(&run_spec(&spec, &out));
        assert!(e.contains(says), "{e}");
    }
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "    last_when: {hospital_expire_flag: 1}",
            "    last_when: {hospital_expire_flag: 1}\n    first_where: {deathtime: {admission_type: URGENT}}",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`admissions`")
            && e.contains("`first_where` holds for tables below the root's children"),
        "{e}"
    );
    // An anchor that is not a time or a year.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("anchor: anchor_year", "anchor: gender")
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`patients`") && e.contains("`anchor: gender`"),
        "{e}"
    );
    // A parent's time after its children's that does not hold in the data.
    let spec = edited_spec(dir.path(), |t| {
        t.replace(
            "dod: {after: admissions.dischtime, bounds: [0, 366]}",
            "# dod",
        )
        .replace(
            "anchor_year: {bounds: [2100, 2210], required: true}",
            "anchor_year: {after: admissions.dischtime}",
        )
    });
    let e = stderr(&run_spec(&spec, &out));
    assert!(
        e.contains("`patients`")
            && e.contains("`anchor_year` is declared `after: admissions.dischtime`"),
        "{e}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn an_entity_with_ten_thousand_children_is_clipped_and_stated() {
    let dir = tempfile::tempdir().unwrap();
    // One patient with 10,000 diagnoses on one admission, next to a few ordinary ones.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("patients.csv"),
        "subject_id,gender,age\n1,F,50\n2,M,60\n3,F,70\n4,M,40\n",
    )
    .unwrap();
    std::fs::write(
        data.join("admissions.csv"),
        "hadm_id,subject_id,kind\n10,1,A\n11,2,B\n12,3,A\n13,4,B\n14,1,B\n",
    )
    .unwrap();
    let mut dx = String::from("hadm_id,code\n");
    for i in 0..10_000 {
        dx.push_str(&format!("10,C{}\n", i % 7));
    }
    for h in [11, 12, 13, 14] {
        dx.push_str(&format!("{h},C1\n{h},C2\n"));
    }
    std::fs::write(data.join("dx.csv"), dx).unwrap();
    let spec = dir.path().join("spec.yaml");
    std::fs::write(
        &spec,
        "tables:
  patients: {input: data/patients.csv, primary_key: subject_id}
  admissions:
    input: data/admissions.csv
    primary_key: hadm_id
    foreign_keys: [{columns: subject_id, references: patients}]
  dx:
    input: data/dx.csv
    foreign_keys: [{columns: hadm_id, references: admissions}]
    max_children: 30
",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = run_spec(&spec, &out);
    ok(&o);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_manifest.json")).unwrap()).unwrap();
    let notes = m["privacy"]["notes"].to_string();
    assert!(
        notes.contains("more than 30 children (up to 10000)") && notes.contains("9970 rows"),
        "{notes}"
    );
    let sd = synthetic(&out, "dx");
    let sa = synthetic(&out, "admissions");
    let per = per_parent(&sa["hadm_id"], &sd["hadm_id"]);
    assert!(per.iter().all(|&n| n <= 30), "{per:?}");
}

#[test]
fn keys_and_links_are_inferred_without_a_spec() {
    let data = example().join("data");
    let mut args = vec!["infer-spec".to_string()];
    for t in [
        "patients",
        "admissions",
        "transfers",
        "diagnoses_icd",
        "d_icd_diagnoses",
    ] {
        args.push("--input".into());
        args.push(
            data.join(format!("{t}.csv.gz"))
                .to_string_lossy()
                .into_owned(),
        );
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = chimera(&args);
    ok(&o);
    let yaml = String::from_utf8(o.stdout).unwrap();
    for line in [
        "  patients:\n",
        "    primary_key: subject_id\n",
        "    primary_key: hadm_id\n",
        "    primary_key: transfer_id\n",
        "{columns: subject_id, references: patients}   # 275 of 275 values found",
        "{columns: hadm_id, references: admissions}   # 1136 of 1136 values found, 54 empty",
        "    order_by: admittime\n",
        "mark it `public: true`",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in\n{yaml}");
    }
    // It is YAML with one entry per table.
    let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(spec["tables"].as_mapping().unwrap().len(), 5);
}

#[test]
fn an_llm_writes_child_rows_that_keep_keys_domains_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let llm = crate::llm::tiny_model(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let args = ["--no-dp", "--seed", "4", "--llm", llm.to_str().unwrap()];
    ok(&run_mimic(&a, "6", &args));
    ok(&run_mimic(&b, "6", &args));
    // Random weights, yet every value fits its column: same seed, same bytes.
    let tables = ["patients", "admissions", "transfers", "diagnoses_icd"];
    assert_eq!(parts(&a, &tables), parts(&b, &tables));
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("_model.json")).unwrap()).unwrap();
    assert_eq!(model["llm"]["exemplars"], "synthetic");
    let (sp, sa, st, sd) = (
        synthetic(&a, "patients"),
        synthetic(&a, "admissions"),
        synthetic(&a, "transfers"),
        synthetic(&a, "diagnoses_icd"),
    );
    assert!(sa["hadm_id"].len() > 6, "later admissions are the LLM's");
    // The PGM fixes the shape: without the LLM, the same seed gives the same rows per parent
    // (the arrays of the LLM's nested JSON have exactly the drawn lengths); the values are the
    // LLM's.
    let none = dir.path().join("none");
    ok(&run_mimic(&none, "6", &["--no-dp", "--seed", "4"]));
    let (na, nt) = (
        synthetic(&none, "admissions"),
        synthetic(&none, "transfers"),
    );
    assert_eq!(na["subject_id"], sa["subject_id"]);
    assert_eq!(
        synthetic(&none, "diagnoses_icd")["hadm_id"].len(),
        sd["hadm_id"].len()
    );
    assert_eq!(nt["hadm_id"], st["hadm_id"]);
    let differ = |a: &Vec<Option<String>>, b: &Vec<Option<String>>| {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    };
    assert!(differ(&na["admission_type"], &sa["admission_type"]) > 0);
    // A presence column holds the LLM too: it writes an emergency registration's start and
    // end exactly where the networks drew one (a forced `null` elsewhere, not nullable there).
    let registered =
        |a: &Table| -> Vec<bool> { a["edregtime"].iter().map(Option::is_some).collect() };
    assert_eq!(registered(&sa), registered(&na));
    let ends: Vec<bool> = sa["edouttime"].iter().map(Option::is_some).collect();
    assert_eq!(ends, registered(&sa));
    assert!(
        ends.iter().any(|&e| e) && ends.iter().any(|&e| !e),
        "{ends:?}"
    );
    assert!(differ(&nt["careunit"], &st["careunit"]) > st["careunit"].len() / 4);
    // `empty_when`: the event type (its condition) stays as drawn, and the grammar writes a
    // discharge's care unit empty.
    assert_eq!(nt["eventtype"], st["eventtype"]);
    let discharges: Vec<bool> = st["eventtype"]
        .iter()
        .map(|e| e.as_deref() == Some("discharge"))
        .collect();
    assert!(discharges.iter().any(|&d| d));
    assert!(
        discharges
            .iter()
            .zip(&st["careunit"])
            .all(|(&d, u)| !d || u.is_none())
    );
    // Every other transfer has one (`required`: not nullable in the grammar).
    assert!(
        discharges
            .iter()
            .zip(&st["careunit"])
            .all(|(&d, u)| d || u.is_some())
    );
    // Without the care unit's rules the LLM writes the event type too, held by its grammar to
    // `last_is` and `last_when`: an admission's last transfer is its discharge, and only the
    // last.
    let spec = edited_spec(dir.path(), |t| {
        t.replace("empty_when: {eventtype: discharge}", "")
            .replace("required: true                       #", "#")
            .replace("required: true             #", "#")
            .replace("empty_when:                #", "#")
            .replace("          eventtype: discharge\n", "")
    });
    let (free, drawn) = (dir.path().join("free"), dir.path().join("drawn"));
    ok(&run_entities(&spec, &free, "6", &args));
    ok(&run_entities(&spec, &drawn, "6", &args[..3]));
    let (ft, dt) = (
        synthetic(&free, "transfers"),
        synthetic(&drawn, "transfers"),
    );
    assert_eq!(dt["hadm_id"], ft["hadm_id"]);
    assert!(
        differ(&dt["eventtype"], &ft["eventtype"]) > 0,
        "written by the LLM"
    );
    let last: Vec<bool> = (0..ft["hadm_id"].len())
        .map(|i| ft["hadm_id"].get(i + 1) != Some(&ft["hadm_id"][i]))
        .collect();
    for (l, e) in last.iter().zip(&ft["eventtype"]) {
        assert_eq!(
            *l,
            e.as_deref() == Some("discharge"),
            "{:?}",
            ft["eventtype"]
        );
    }
    // And to `first_where`: the first transfer is the emergency stay exactly where the
    // admission has a registration.
    let fa = synthetic(&free, "admissions");
    let registered: HashMap<&String, bool> = fa["hadm_id"]
        .iter()
        .zip(&fa["edregtime"])
        .map(|(h, r)| (h.as_ref().unwrap(), r.is_some()))
        .collect();
    for i in 0..ft["hadm_id"].len() {
        let h = ft["hadm_id"][i].as_ref().unwrap();
        if i == 0 || ft["hadm_id"][i - 1].as_ref() != Some(h) {
            assert_eq!(
                ft["eventtype"][i].as_deref() == Some("ED"),
                registered[h],
                "{:?}",
                ft["eventtype"]
            );
        }
    }
    assert_eq!(dangling(&sp["subject_id"], &sa["subject_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &st["hadm_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &sd["hadm_id"]), 0);
    // Categories from the modelled domain; codes from the dictionary; times in order.
    let real_types: HashSet<Option<String>> =
        real("transfers")["eventtype"].iter().cloned().collect();
    assert!(st["eventtype"].iter().all(|e| real_types.contains(e)));
    let dict = real("d_icd_diagnoses");
    let codes: HashSet<(Option<String>, Option<String>)> = dict["icd_code"]
        .iter()
        .cloned()
        .zip(dict["icd_version"].iter().cloned())
        .collect();
    for (c, v) in sd["icd_code"].iter().zip(&sd["icd_version"]) {
        assert!(codes.contains(&(c.clone(), v.clone())), "{c:?} {v:?}");
    }
    for (t, c) in [(&sa, "admittime"), (&st, "intime"), (&sd, "seq_num")] {
        assert!(t[c].iter().all(Option::is_some), "empty {c}");
    }
    assert_eq!(order_violations(&sa, "admittime", "dischtime"), 0);
    assert_eq!(order_violations(&st, "intime", "outtime"), 0);
    // The grammar holds the LLM to `last_when`: a death in hospital only in the last admission.
    let mut by_subject: HashMap<&String, Vec<(&String, Option<&String>)>> = HashMap::new();
    for ((s, a), f) in sa["subject_id"]
        .iter()
        .zip(&sa["admittime"])
        .zip(&sa["hospital_expire_flag"])
    {
        by_subject
            .entry(s.as_ref().unwrap())
            .or_default()
            .push((a.as_ref().unwrap(), f.as_ref()));
    }
    let early_deaths: usize = by_subject
        .values_mut()
        .map(|v| {
            v.sort();
            v[..v.len() - 1]
                .iter()
                .filter(|(_, f)| f.map(String::as_str) == Some("1"))
                .count()
        })
        .sum();
    assert_eq!(
        early_deaths, 0,
        "a death in hospital before the last admission"
    );
    // One request per entity, or several (whole admissions each) when an entity is longer
    // than half the context: the tiny model's byte-sized tokens make most of them so.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_chimera"))
        .args([
            "run",
            "--spec",
            example().join("spec.yaml").to_str().unwrap(),
        ])
        .args([
            "--entities",
            "6",
            "--output",
            dir.path().join("log").to_str().unwrap(),
        ])
        .args(args)
        .env("CHIMERA_LOG", "chimera_worker::llm::children=debug")
        .output()
        .unwrap();
    ok(&o);
    let prompts: Vec<&str> = std::str::from_utf8(&o.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.contains("LLM entity prompt"))
        .collect();
    let with_admissions: HashSet<&Option<String>> = sa["subject_id"].iter().collect();
    assert!(prompts.len() > with_admissions.len(), "{}", prompts.len());
    let later = prompts
        .iter()
        .filter(|p| p.contains("Its earlier rows are written"))
        .count();
    assert!(
        later > 0 && later < prompts.len(),
        "{later} of {}",
        prompts.len()
    );
    assert!(
        prompts
            .iter()
            .all(|p| p.contains("Example `transfers` rows"))
    );
    // knn-real: real rows as exemplars (Amalgam's rarity-weighted k = 3); the manifest says the
    // DP guarantee no longer covers the output, and a saved model cannot be sampled without
    // the real tables.
    let k = dir.path().join("k");
    let knn = [
        "--no-dp",
        "--llm",
        llm.to_str().unwrap(),
        "--exemplars",
        "knn-real",
    ];
    ok(&run_mimic(&k, "3", &knn));
    let manifest = std::fs::read_to_string(k.join("_manifest.json")).unwrap();
    assert!(
        manifest.contains("knn-real") && manifest.contains("DP guarantee"),
        "{manifest}"
    );
    let st = synthetic(&k, "transfers");
    assert!(st["eventtype"].iter().all(|e| real_types.contains(e)));
    let km = dir.path().join("km.json");
    std::fs::copy(k.join("_model.json"), &km).unwrap();
    let o = chimera(&[
        "sample",
        "--model",
        km.to_str().unwrap(),
        "--rows",
        "3",
        "--llm",
        llm.to_str().unwrap(),
        "--output",
        dir.path().join("kk").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("chimera run"), "{}", stderr(&o));
    // Fit once, sample with the LLM later: it must be named again.
    let m = dir.path().join("m.json");
    std::fs::copy(a.join("_model.json"), &m).unwrap();
    let c = dir.path().join("c");
    let o = chimera(&[
        "sample",
        "--model",
        m.to_str().unwrap(),
        "--rows",
        "6",
        "--output",
        c.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("pass --llm"), "{}", stderr(&o));
}

#[test]
fn smollm2_writes_whole_entities_that_keep_keys_codes_and_order() {
    // The real model (see DEVELOPERS.md) writing two patients' admissions, transfers and
    // diagnoses as nested JSON: about 100 rows, a minute and a half on 2 cores.
    let Some(llm) = crate::llm::smollm2() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    ok(&run_mimic(
        &out,
        "2",
        &["--no-dp", "--seed", "2", "--llm", llm.to_str().unwrap()],
    ));
    let (sp, sa, st, sd) = (
        synthetic(&out, "patients"),
        synthetic(&out, "admissions"),
        synthetic(&out, "transfers"),
        synthetic(&out, "diagnoses_icd"),
    );
    assert!(sd["hadm_id"].len() > 10, "{}", sd["hadm_id"].len());
    assert_eq!(dangling(&sp["subject_id"], &sa["subject_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &st["hadm_id"]), 0);
    assert_eq!(dangling(&sa["hadm_id"], &sd["hadm_id"]), 0);
    let dict = real("d_icd_diagnoses");
    let codes: HashSet<(Option<String>, Option<String>)> = dict["icd_code"]
        .iter()
        .cloned()
        .zip(dict["icd_version"].iter().cloned())
        .collect();
    for (c, v) in sd["icd_code"].iter().zip(&sd["icd_version"]) {
        assert!(codes.contains(&(c.clone(), v.clone())), "{c:?} {v:?}");
    }
    let real_units: HashSet<Option<String>> =
        real("transfers")["careunit"].iter().cloned().collect();
    assert!(st["careunit"].iter().all(|u| real_units.contains(u)));
    // A discharge has no care unit (`empty_when`: forced empty in the grammar), and every
    // other transfer has one (`required`: not nullable).
    assert!(
        st["eventtype"]
            .iter()
            .zip(&st["careunit"])
            .all(|(e, u)| (e.as_deref() == Some("discharge")) == u.is_none())
    );
    assert_eq!(order_violations(&sa, "admittime", "dischtime"), 0);
    assert_eq!(order_violations(&st, "intime", "outtime"), 0);
    for (t, c) in [(&sa, "admittime"), (&st, "intime"), (&sd, "seq_num")] {
        assert!(t[c].iter().all(Option::is_some), "empty {c}");
    }
}

#[test]
fn eval_spec_checks_keys_order_and_children_and_reports_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run_mimic(&out, "500", &["--no-dp", "--seed", "5"]));
    let json = dir.path().join("m.json");
    let report = dir.path().join("r.html");
    let spec = example().join("spec.yaml");
    ok(&chimera(&[
        "eval",
        "--spec",
        spec.to_str().unwrap(),
        "--synthetic",
        out.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let tables: Vec<&str> = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    // The entity tree's order: parents first, siblings by name.
    assert_eq!(
        tables,
        ["patients", "admissions", "diagnoses_icd", "transfers"]
    );
    assert_eq!(v["dangling_keys"], 0, "{}", v["links"]);
    assert_eq!(v["order_violations"], 0, "{}", v["orders"]);
    // `required` on a time after another: set where that one is set (93 real admissions have
    // neither).
    let end = v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["rule"] == "edouttime not empty where edregtime is set")
        .unwrap_or_else(|| panic!("{}", v["orders"]));
    assert_eq!(end["violations_real"], 0, "{end}");
    assert_eq!(end["violations_synthetic"], 0, "{end}");
    assert!(end["checked_synthetic"].as_u64().unwrap() > 500, "{end}");
    assert_eq!(v["guarantee"]["mode"], "none");
    // Keys are fresh identifiers: left out of each table's own metrics.
    let admissions = &v["tables"][1]["report"];
    let columns: Vec<&str> = admissions["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(columns.contains(&"admission_type"));
    assert!(!columns.contains(&"hadm_id") && !columns.contains(&"subject_id"));
    // So are the columns the run regenerates as identifiers (the admitting provider).
    assert!(!columns.contains(&"admit_provider_id"), "{columns:?}");
    assert!(
        v["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("admissions: `admit_provider_id` regenerated as fresh identifiers")),
        "{}",
        v["notes"]
    );
    // The spec drops the 54 transfers without an admission from the real side too.
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("transfers: 54 real rows")),
        "{}",
        v["notes"]
    );

    // Children per parent against this file's own count of the same tables.
    let link = |child: &str, parent: &str| {
        v["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["child"] == child && l["parent"] == parent)
            .unwrap_or_else(|| panic!("link {child} -> {parent}"))
            .clone()
    };
    let (rp, ra) = (real("patients"), real("admissions"));
    let (sp, sa) = (synthetic(&out, "patients"), synthetic(&out, "admissions"));
    let want = tvd(
        &per_parent(&rp["subject_id"], &ra["subject_id"]),
        &per_parent(&sp["subject_id"], &sa["subject_id"]),
    );
    let got = link("admissions", "patients")["children_per_parent"]["tvd"]
        .as_f64()
        .unwrap();
    assert!(
        (got - want).abs() < 1e-9,
        "admissions per patient: {got} vs {want}"
    );
    // The dictionary link is checked for dangling codes only.
    let dictionary = link("diagnoses_icd", "d_icd_diagnoses");
    assert_eq!(dictionary["dangling_synthetic"], 0);
    assert!(dictionary.get("children_per_parent").is_none());
    // Row and sibling orders were checked on real numbers of rows.
    let orders = v["orders"].as_array().unwrap();
    assert!(
        orders
            .iter()
            .any(|o| o["rule"] == "dischtime >= admittime within a row"
                && o["checked_synthetic"].as_u64().unwrap() > 100)
    );
    assert!(orders.iter().any(|o| {
        o["table"] == "transfers"
            && o["rule"]
                .as_str()
                .unwrap()
                .contains("previous sibling's outtime")
    }));
    // A death in hospital is the last admission, and the last transfer is at the discharge.
    for (table, rule, real) in [
        (
            "admissions",
            "hospital_expire_flag = 1 only on the last row by admittime",
            0,
        ),
        (
            "transfers",
            "the last intime is within an hour of admissions.dischtime",
            25,
        ),
        ("transfers", "careunit empty where eventtype = discharge", 0),
        (
            "transfers",
            "careunit not empty where eventtype != discharge",
            0,
        ),
        ("admissions", "hospital_expire_flag not empty", 0),
        (
            "transfers",
            "the last row by intime has eventtype = discharge",
            0,
        ),
        // The one registered real admission whose first transfer is not its ED stay.
        (
            "transfers",
            "the first row by intime has eventtype = ED exactly where admissions.edregtime is set",
            1,
        ),
    ] {
        assert!(
            orders.iter().any(|o| o["table"] == table
                && o["rule"] == rule
                && o["checked_synthetic"].as_u64().unwrap() > 10
                && o["violations_synthetic"] == 0
                && o["violations_real"] == real),
            "{rule}: {}",
            v["orders"]
        );
    }
    // A patient's death is on or after the day of the last discharge.
    assert!(orders.iter().any(|o| {
        o["table"] == "patients"
            && o["rule"] == "dod >= the latest admissions.dischtime"
            && o["checked_synthetic"].as_u64().unwrap() > 10
            && o["violations_synthetic"] == 0
            && o["violations_real"] == 0
    }));

    // A structural zero the data does not have is counted on both sides: every admit has a
    // care unit (275 real, as many synthetic as the output has admits).
    let admits = synthetic(&out, "transfers")["eventtype"]
        .iter()
        .filter(|e| e.as_deref() == Some("admit"))
        .count();
    let wrong = edited_spec(dir.path(), |t| {
        t.replace(
            "empty_when: {eventtype: discharge}",
            "empty_when: {eventtype: admit}",
        )
    });
    let json2 = dir.path().join("m2.json");
    ok(&chimera(&[
        "eval",
        "--spec",
        wrong.to_str().unwrap(),
        "--synthetic",
        out.to_str().unwrap(),
        "--json",
        json2.to_str().unwrap(),
    ]));
    let v2: serde_json::Value = serde_json::from_slice(&std::fs::read(&json2).unwrap()).unwrap();
    let rule = v2["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["rule"] == "careunit empty where eventtype = admit")
        .unwrap();
    assert_eq!(rule["violations_real"], 275, "{rule}");
    assert_eq!(rule["checked_synthetic"], admits as u64, "{rule}");
    assert_eq!(rule["violations_synthetic"], admits as u64, "{rule}");
    // And `required` now asks every discharge for a care unit (the real side without the
    // transfers `orphans: drop` leaves out).
    let discharges = |t: &Table| {
        (t["eventtype"].iter().zip(&t["hadm_id"]))
            .filter(|(e, a)| e.as_deref() == Some("discharge") && a.is_some())
            .count() as u64
    };
    let rule = v2["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["rule"] == "careunit not empty where eventtype != admit")
        .unwrap();
    let (rt, st) = (real("transfers"), synthetic(&out, "transfers"));
    assert_eq!(
        rule["checked_synthetic"],
        st["eventtype"].len() as u64 - admits as u64
    );
    assert_eq!(rule["violations_real"], discharges(&rt), "{rule}");
    assert_eq!(rule["violations_synthetic"], discharges(&st), "{rule}");
    assert!(discharges(&st) > 10);

    // The report draws a chart per child link and per column of every table.
    let charts = 3 + v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["report"]["columns"].as_array().unwrap().len())
        .sum::<usize>();
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("<canvas id=\"chart-").count(), charts);
    if let Some(browser) = crate::eval::chromium() {
        let profile = dir.path().join("profile");
        let (dom, console) = crate::eval::headless(&browser, &profile, &report, &["--dump-dom"]);
        assert!(
            dom.contains(&format!("data-charts=\"{charts}\"")),
            "charts not drawn"
        );
        assert!(console.is_empty(), "console messages: {console:?}");
    }
}

#[test]
fn eval_spec_judges_whole_entities() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ok(&run_mimic(&out, "200", &["--no-dp", "--seed", "6"]));
    let model = crate::llm::tiny_model(dir.path());
    let json = dir.path().join("m.json");
    let report = dir.path().join("r.html");
    let spec = example().join("spec.yaml");
    ok(&chimera(&[
        "eval",
        "--spec",
        spec.to_str().unwrap(),
        "--synthetic",
        out.to_str().unwrap(),
        "--judge",
        model.to_str().unwrap(),
        "--generator",
        model.to_str().unwrap(),
        "--judge-rows",
        "3",
        "--json",
        json.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let r = &v["realism"];
    for side in ["synthetic", "real"] {
        assert_eq!(r[side]["records"], 3, "{r}");
        let mean = r[side]["expected_mean"].as_f64().unwrap();
        assert!((1.0..=5.0).contains(&mean), "{side}: {mean}");
    }
    // Whole entities are long: a small context keeps fewer references, and says so.
    let references = r["references"].as_u64().unwrap();
    assert!((1..=3).contains(&references), "{r}");
    for side in ["train", "synthetic"] {
        let p = v["dlt"][side].as_f64().unwrap();
        assert!(p.is_finite() && p > 1.0, "{side}: {p}");
    }
    assert!(v["dlt"]["holdout"].is_null());
    assert!(
        v["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .starts_with("realism: entities are written")),
        "{}",
        v["notes"]
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("Realism: judge scores"));
}
