#!/usr/bin/env python3
"""Fidelity of synthetic MIMIC-IV demo entities against the real tables.

    chimera run --spec examples/mimic/spec.yaml --entities 5000 --no-dp --seed 1 --output /tmp/mo
    python3 benches/mimic_entities.py /tmp/mo          # needs pandas and pyarrow

Prints, per table, the total-variation distance (TVD) of children per parent, the mean 1-way
similarity (1 - TVD) of the categorical columns, the mean 2-way similarity (1 - TVD of the joint)
over pairs of them, and the datetime-order and dangling-key counts. Transfers are compared with
the real transfers that have an admission (the spec drops the 54 that do not).
"""
import glob
import itertools
import sys

import numpy as np
import pandas as pd

OUT = sys.argv[1]
# Optional: another chimera output to compare against instead of the demo (a large synthetic
# population standing in for full MIMIC-IV, to see what DP gives at that scale); the
# resampling references are then left out.
POPULATION = sys.argv[2] if len(sys.argv) > 2 else None
DATA = "examples/mimic/data/"
CATEGORICAL = {
    "patients": ["gender", "anchor_year_group"],
    "admissions": ["admission_type", "admission_location", "discharge_location", "insurance",
                   "language", "marital_status", "race", "hospital_expire_flag"],
    "transfers": ["eventtype", "careunit"],
    "diagnoses_icd": ["icd_version", "seq_num"],
}


def synthetic(t, out=OUT):
    return pd.concat(pd.read_parquet(f) for f in sorted(glob.glob(f"{out}/{t}/*.parquet")))


def real(t):
    if POPULATION:
        return synthetic(t, POPULATION)
    # "?" is one of chimera's default null tokens (as "", "NA", "NULL"): `language` is "?" where
    # it is unknown, read as empty and written as null, so the real table is read the same way.
    return pd.read_csv(f"{DATA}{t}.csv.gz", dtype={"icd_code": str}, na_values=["?"],
                       keep_default_na=True)


def tvd(a, b):
    return 0.5 * a.sub(b, fill_value=0).abs().sum()


def dist(df, cols):
    values = df[cols].copy()
    # A whole-number column with empty cells is read as floats: compare 1 with 1, not 1.0.
    for c in cols:
        v = values[c]
        if v.dtype.kind == "f" and (v.dropna() % 1 == 0).all():
            values[c] = v.astype("Int64")
    values = values.astype(object)
    return values.where(values.notna(), "<null>").astype(str).value_counts(normalize=True)


def per_parent(parent, child, key):
    return child.groupby(key).size().reindex(parent[key], fill_value=0).value_counts(normalize=True)


r = {t: real(t) for t in CATEGORICAL}
r["transfers"] = r["transfers"][r["transfers"].hadm_id.notna()]
s = {t: synthetic(t) for t in CATEGORICAL}
print(f"entities: {len(s['patients'])}")
print("children per parent TVD: admissions/patient %.3f, transfers/admission %.3f, diagnoses/admission %.3f" % (
    tvd(per_parent(r["patients"], r["admissions"], "subject_id"), per_parent(s["patients"], s["admissions"], "subject_id")),
    tvd(per_parent(r["admissions"], r["transfers"], "hadm_id"), per_parent(s["admissions"], s["transfers"], "hadm_id")),
    tvd(per_parent(r["admissions"], r["diagnoses_icd"], "hadm_id"), per_parent(s["admissions"], s["diagnoses_icd"], "hadm_id")),
))
def two_way(x, y, cols):
    return sum(1 - tvd(dist(x, list(p)), dist(y, list(p)))
               for p in itertools.combinations(cols, 2)) / (len(cols) * (len(cols) - 1) / 2)


# References (means of 20 draws), each against the real table:
# - rows: a resample of the real table's rows, as many as it has, with replacement. A model that
#   learnt the population perfectly and sampled as many rows would score about this.
# - patients: a resample of the 100 real patients with replacement, each with all of their rows.
#   Patients, not rows, are the sampling unit of this data (one patient has 20 admissions), so
#   this is what a second draw of 100 patients from the same population would score.
def with_entities(i):
    ids = r["patients"].subject_id.sample(len(r["patients"]), replace=True, random_state=i)
    draw = pd.DataFrame({"subject_id": ids.values, "draw": range(len(ids))})
    return {t: df.merge(draw, on="subject_id") for t, df in r.items()}


draws = [] if POPULATION else [with_entities(i) for i in range(20)]
print("| table | rows | 1-way sim | 2-way sim | worst 1-way | reference 2-way: rows resampled "
      "| reference 2-way: patients resampled |")
print("|---|---|---|---|---|---|---|")
for t, cols in CATEGORICAL.items():
    one = {c: 1 - tvd(dist(r[t], [c]), dist(s[t], [c])) for c in cols}
    worst = min(one, key=one.get)
    if POPULATION:
        rows_ref = entity_ref = "-"
    else:
        rows_ref = "%.3f" % (sum(two_way(r[t].sample(len(r[t]), replace=True, random_state=i),
                                         r[t], cols) for i in range(20)) / 20)
        entity_ref = "%.3f" % (sum(two_way(d[t], r[t], cols) for d in draws) / len(draws))
    print(f"| {t} | {len(s[t])} | {sum(one.values()) / len(one):.3f} | {two_way(r[t], s[t], cols):.3f} "
          f"| {worst} {one[worst]:.3f} | {rows_ref} | {entity_ref} |")


# What admissions' 2-way similarity rewards, with as many patients as the output (means of 5
# draws; only against the demo). Most admissions belong to a few patients (one has 20 of 275),
# so the joint of patient-level columns (race, insurance, marital status) over admissions is
# set by which patients were admitted most:
# - copies: whole real patients drawn with replacement;
# - counts shuffled: every real patient's own admissions, each of their columns exact, but as
#   many (drawn from their own) as another real patient had: what even a model that knew every
#   real patient's profile would score if it did not know who was admitted most.
def admission_references(n, draws=5):
    adm = r["admissions"]
    rows = adm.groupby("subject_id").indices
    ids = np.array(sorted(rows))
    count = np.array([len(rows[i]) for i in ids])
    copies, shuffled = [], []
    for i in range(draws):
        rng = np.random.default_rng(i)
        picked = rng.integers(len(ids), size=n)
        copies.append(two_way(adm.iloc[np.concatenate([rows[ids[j]] for j in picked])], adm,
                              CATEGORICAL["admissions"]))
        donors = rng.integers(len(ids), size=n)
        take = [rng.choice(rows[ids[j]], size=count[k]) for j, k in zip(picked, donors)]
        shuffled.append(two_way(adm.iloc[np.concatenate(take)], adm, CATEGORICAL["admissions"]))
    return np.mean(copies), np.mean(shuffled)


if not POPULATION:
    n = len(s["patients"])
    copied, shuffled = admission_references(n)
    print(f"admissions 2-way of {n} real patients drawn whole (copies): {copied:.3f}; with each "
          f"one's number of admissions taken from another real patient: {shuffled:.3f}")

a, tr, d, p = s["admissions"], s["transfers"], s["diagnoses_icd"], s["patients"]
violations = ((a.dischtime < a.admittime).sum() + (a.edouttime < a.edregtime).sum()
              + (tr.outtime < tr.intime).sum())
a2 = a.sort_values(["subject_id", "admittime"])
overlap = (a2.admittime < a2.groupby("subject_id").dischtime.shift()).sum()
dangling = ((~a.subject_id.isin(p.subject_id)).sum() + (~tr.hadm_id.isin(a.hadm_id)).sum()
            + (~d.hadm_id.isin(a.hadm_id)).sum())
dictionary = synthetic("d_icd_diagnoses")
codes = set(zip(dictionary.icd_code, dictionary.icd_version))
unknown = sum((c, v) not in codes for c, v in zip(d.icd_code, d.icd_version))
print(f"datetime-order violations: {violations}, overlapping admissions: {overlap}, "
      f"dangling keys: {dangling}, codes not in the dictionary: {unknown}")


def when(s):
    """Times at second precision: dates after 2262 (possible under DP noise) do not fit pandas'
    default nanoseconds."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.astype("datetime64[s]")
    values = [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in s]
    return pd.Series(np.array(values, dtype="datetime64[s]"), index=s.index)


# Coherence of an admission with its patient: MIMIC shifts each patient's dates so that they are
# `anchor_age` in `anchor_year`, `dod` (date of death) is on or after the last discharge, and a
# death in hospital (`hospital_expire_flag`, `deathtime`, discharge to DIED) ends the patient's
# admissions.
def coherence(a, p):
    m = a.merge(p[["subject_id", "anchor_age", "anchor_year", "dod"]], on="subject_id")
    admit = when(m.admittime)
    age = admit.dt.year - m.anchor_year + m.anchor_age
    dod = when(m.dod)
    last = admit == admit.groupby(m.subject_id).transform("max")
    died = m.hospital_expire_flag == 1
    return {
        "admitted before birth": int((age < 0).sum()),
        "admitted aged under 18": int((age < 18).sum()),
        "admitted after death (dod)": int((admit.dt.normalize() > dod).sum()),
        "died in hospital, not the last admission": int((died & ~last).sum()),
        "died in hospital, no dod": int((died & dod.isna()).sum()),
        "discharged to DIED without hospital_expire_flag, or the reverse":
            int(((m.discharge_location == "DIED") != died).sum()),
        "deathtime without hospital_expire_flag, or the reverse":
            int((m.deathtime.notna() != died).sum()),
        "deathtime before the discharge, or a day or more after it":
            int(((when(m.deathtime) < when(m.dischtime)) |
                 (when(m.deathtime) >= when(m.dischtime) + pd.Timedelta(days=1))).sum()),
        "dod before the day of the last discharge":
            int((dod < when(m.dischtime).dt.normalize()).sum()),
    }


# The emergency department: an admission's registration (`edregtime`, `edouttime`) and its
# `ED` transfer are one stay.
def emergency(a, tr):
    reg = a.edregtime.notna()
    ed = a.hadm_id.isin(tr.hadm_id[tr.eventtype == "ED"])
    er = a.admission_location == "EMERGENCY ROOM"
    return {
        "ED registrations without their end, or ends without one":
            int((reg != a.edouttime.notna()).sum()),
        "admissions from the emergency room without an ED registration":
            int((er & ~reg).sum()),
        "admissions with an ED transfer but no ED registration": int((ed & ~reg).sum()),
        "admissions with an ED registration but no ED transfer": int((reg & ~ed).sum()),
        "transfers other than a discharge without an outtime, or discharges with one":
            int(((tr.eventtype == "discharge") == tr.outtime.notna()).sum()),
    }


# Transfers inside their admission: the first starts at the emergency registration (or the
# admission), the last one is the discharge, at `dischtime`.
def inside(tr, a):
    tr = tr.assign(_row=np.arange(len(tr)))
    m = tr.merge(a[["hadm_id", "admittime", "dischtime", "edregtime"]], on="hadm_id")
    t = {c: when(m[c]) for c in ["intime", "outtime", "admittime", "dischtime", "edregtime"]}
    hour = np.timedelta64(3600, "s")
    start = pd.concat([t["admittime"], t["edregtime"]], axis=1).min(axis=1)
    # The last transfer: the latest `intime`; of transfers that start together, the one
    # written last (chimera writes siblings in order).
    order = pd.DataFrame({"hadm_id": m.hadm_id, "intime": t["intime"], "row": m._row})
    last_rows = order.sort_values(["intime", "row"]).groupby("hadm_id").tail(1).index
    last = pd.Series(m.index.isin(last_rows), index=m.index)
    return {
        "transfers starting over an hour before the admission (or its ED registration)":
            int((t["intime"] < start - hour).sum()),
        "transfers starting over an hour after the discharge": int((t["intime"] > t["dischtime"] + hour).sum()),
        "admissions whose last transfer is over an hour from the discharge":
            int((last & ((t["intime"] - t["dischtime"]).abs() > hour)).sum()),
        "discharge transfers that are not their admission's last":
            int(((m.eventtype == "discharge") & ~last).sum()),
        "admissions whose last transfer is not a discharge":
            int((last & (m.eventtype != "discharge")).groupby(m.hadm_id).any().sum()),
        "admissions with no admit transfer, or several":
            int(((m.eventtype == "admit").groupby(m.hadm_id).sum() != 1).sum()),
        "ED transfers after another transfer":
            int(((m.eventtype == "ED") & ~t["intime"].eq(t["intime"].groupby(m.hadm_id).transform("min"))).sum()),
        "discharge transfers with a care unit":
            int(((m.eventtype == "discharge") & m.careunit.notna()).sum()),
    }


print("| coherence | real | synthetic |")
print("|---|---|---|")
cr, cs = coherence(r["admissions"], r["patients"]), coherence(a, p)
cr.update(inside(r["transfers"], r["admissions"]))
cs.update(inside(tr, a))
cr.update(emergency(r["admissions"], r["transfers"]))
cs.update(emergency(a, tr))
for k in cr:
    print(f"| {k} | {cr[k]} | {cs[k]} |")
