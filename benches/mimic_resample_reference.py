#!/usr/bin/env python3
"""The patient-resample reference for `chimera eval --spec` on the MIMIC-IV demo.

    python3 benches/mimic_resample_reference.py OUT REF SEED    # needs pandas and pyarrow
    chimera eval --spec examples/mimic/spec.yaml --synthetic REF --json ref.json

Writes 100 real demo patients drawn with replacement (each with all of their rows, fresh keys)
into REF, a copy of the chimera output folder OUT (its manifest and model, not its rows), so
that `chimera eval --spec` scores what a second sample of 100 patients from the same population
would score against the real tables: the reference for a model that had learnt that population.
"""
import shutil, sys, os
import numpy as np, pandas as pd
src, dst, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
D = "examples/mimic/data/"
times = {"admissions": ["admittime", "dischtime", "deathtime", "edregtime", "edouttime"],
         "transfers": ["intime", "outtime"], "patients": ["dod"]}
r = {t: pd.read_csv(f"{D}{t}.csv.gz", dtype={"icd_code": str}, na_values=["?"], keep_default_na=True)
     for t in ["patients", "admissions", "transfers", "diagnoses_icd"]}
r["transfers"] = r["transfers"][r["transfers"].hadm_id.notna()]
for t, cols in times.items():
    for c in cols:
        r[t][c] = pd.to_datetime(r[t][c])
ids = r["patients"].subject_id.sample(100, replace=True, random_state=seed).values
draw = pd.DataFrame({"subject_id": ids, "draw": np.arange(100)})
shutil.rmtree(dst, ignore_errors=True)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.parquet"))
for t, df in r.items():
    m = df.merge(draw, on="subject_id")
    m["subject_id"] = m["draw"] + 1
    if "hadm_id" in m:
        m["hadm_id"] = m["draw"] * 10**9 + m["hadm_id"].astype("int64")
    if "transfer_id" in m:
        m["transfer_id"] = m["draw"] * 10**9 + m["transfer_id"].astype("int64")
    m = m.drop(columns="draw")
    os.makedirs(f"{dst}/{t}", exist_ok=True)
    m.to_parquet(f"{dst}/{t}/part-0.parquet", index=False)
