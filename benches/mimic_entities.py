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

import pandas as pd

OUT = sys.argv[1]
DATA = "examples/mimic/data/"
CATEGORICAL = {
    "patients": ["gender", "anchor_year_group"],
    "admissions": ["admission_type", "admission_location", "discharge_location", "insurance",
                   "language", "marital_status", "race", "hospital_expire_flag"],
    "transfers": ["eventtype", "careunit"],
    "diagnoses_icd": ["icd_version", "seq_num"],
}


def synthetic(t):
    return pd.concat(pd.read_parquet(f) for f in sorted(glob.glob(f"{OUT}/{t}/*.parquet")))


def real(t):
    return pd.read_csv(f"{DATA}{t}.csv.gz", dtype={"icd_code": str})


def tvd(a, b):
    return 0.5 * a.sub(b, fill_value=0).abs().sum()


def dist(df, cols):
    values = df[cols].astype(object)
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


# Reference: a resample of the real table's own size, drawn with replacement from it, against
# it (mean of 20 draws). A model that learnt the population perfectly and sampled as many rows
# as the real table has would score about this; the real rows are one such sample.
print("| table | rows | 1-way sim | 2-way sim | worst 1-way | 2-way of a real-sized resample of the real table |")
print("|---|---|---|---|---|---|")
for t, cols in CATEGORICAL.items():
    one = {c: 1 - tvd(dist(r[t], [c]), dist(s[t], [c])) for c in cols}
    worst = min(one, key=one.get)
    resample = sum(two_way(r[t].sample(len(r[t]), replace=True, random_state=i), r[t], cols)
                   for i in range(20)) / 20
    print(f"| {t} | {len(s[t])} | {sum(one.values()) / len(one):.3f} | {two_way(r[t], s[t], cols):.3f} "
          f"| {worst} {one[worst]:.3f} | {resample:.3f} |")

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
