#!/usr/bin/env python3
"""Computes the SDMetrics (and scipy) scores `tests/it/eval.rs` checks `chimera eval` against.

    pip install sdmetrics==0.32.0 scipy==1.17.1 pandas
    python3 tests/data/sdmetrics/expected.py > tests/data/sdmetrics/adult_expected.json

Real: tests/data/adult_2000.csv (training rows); synthetic: tests/data/adult_2000_synthetic.csv
(`chimera run --input tests/data/adult_2000.csv --rows 2000 --no-dp --seed 1`, as CSV); holdout:
tests/data/adult_holdout_2000.csv (the first 2,000 rows of adult.test). `?` is missing, as
chimera reads it.
"""
import itertools
import json
import warnings

import pandas as pd
from scipy.stats import chi2_contingency, wasserstein_distance
from scipy.stats.contingency import association
from sdmetrics.column_pairs import ContingencySimilarity, CorrelationSimilarity
from sdmetrics.single_column import CSTest, KSComplement, TVComplement
from sdmetrics.single_table import DCROverfittingProtection, NewRowSynthesis

warnings.filterwarnings("ignore")
D = "tests/data/"
read = lambda f: pd.read_csv(D + f, skipinitialspace=True, na_values=["?"])
real, syn, hold = read("adult_2000.csv"), read("adult_2000_synthetic.csv"), read("adult_holdout_2000.csv")
numeric = [c for c in real.columns if pd.api.types.is_numeric_dtype(real[c])]
categorical = [c for c in real.columns if c not in numeric]

one_way = {}
for c in real.columns:
    if c in numeric:
        one_way[c] = KSComplement.compute(real[c], syn[c])
    else:
        one_way[c] = TVComplement.compute(real[c], syn[c])

# ContingencySimilarity over every pair, numeric columns in 10 equal-width bins; SDMetrics drops
# nulls, so null is made a category of its own first, as chimera counts it.
def filled(df):
    out = df.copy()
    for c in categorical:
        out[c] = out[c].fillna("<null>")
    return out

rf, sf = filled(real), filled(syn)
pairs = []
for a, b in itertools.combinations(real.columns, 2):
    cont = [c for c in (a, b) if c in numeric]
    pairs.append(ContingencySimilarity.compute(rf[[a, b]], sf[[a, b]], continuous_column_names=cont,
                                               num_discrete_bins=10))
corr = [CorrelationSimilarity.compute(real[[a, b]], syn[[a, b]], coefficient="Pearson")
        for a, b in itertools.combinations(numeric, 2)]

# Chi-squared per categorical column, null a category: SDMetrics' CSTest (shares) and scipy's
# test of homogeneity on the counts without continuity correction.
cstest, counts_p = {}, {}
for c in categorical:
    cstest[c] = CSTest.compute(rf[c], sf[c])
    table = pd.concat([rf[c].value_counts(), sf[c].value_counts()], axis=1).fillna(0).T.values
    counts_p[c] = chi2_contingency(table, correction=False)[1] if table.shape[1] > 1 else 1.0

# Wasserstein distance over the real range, nulls dropped.
wasserstein = {}
for c in numeric:
    r, s = real[c].dropna(), syn[c].dropna()
    wasserstein[c] = wasserstein_distance(r, s) / (r.max() - r.min())

# Cramér's V (no bias correction) of every categorical pair, null a category.
def cramers_v(df, a, b):
    return association(pd.crosstab(df[a], df[b]).values, method="cramer", correction=False)

cramer = [1 - abs(cramers_v(rf, a, b) - cramers_v(sf, a, b))
          for a, b in itertools.combinations(categorical, 2)]

metadata = {"columns": {c: {"sdtype": "numerical" if c in numeric else "categorical"} for c in real.columns}}
nrs = NewRowSynthesis.compute_breakdown(real, syn, metadata)
dcr = DCROverfittingProtection.compute_breakdown(real, syn, hold, metadata, None)

print(json.dumps({
    "sdmetrics": "0.32.0",
    "one_way": one_way,
    "two_way_mean": sum(pairs) / len(pairs),
    "two_way_pairs": len(pairs),
    "correlation_mean": sum(corr) / len(corr),
    "correlation_pairs": len(corr),
    "cstest": cstest,
    "chi2_counts_p": counts_p,
    "wasserstein": wasserstein,
    "cramers_v_mean": sum(cramer) / len(cramer),
    "cramers_v_pairs": len(cramer),
    "new_row_synthesis": nrs["score"],
    "closer_to_training": dcr["synthetic_data_percentages"]["closer_to_training"],
}, indent=2))
