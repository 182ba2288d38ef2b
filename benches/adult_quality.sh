#!/bin/bash
# Fidelity and ML efficacy on the UCI Adult split (train 39,074 / test 9,768, seed 0).
# usage: benches/adult_quality.sh SEED... (env: B=path/to/chimera, EXTRA="--no-dp" or "--spec examples/adult.spec.yaml")
# prints per seed: 1-way, 2-way (10 quantile bins), correlation similarity, MLE AUC; then the mean.
set -e
B=${B:-target/release/chimera}
W=${W:-/tmp/chimera-bench}
mkdir -p "$W"
[ -f "$W/train.parquet" ] || $B split --input examples/adult.csv --test-fraction 0.2 --seed 0 --train "$W/train.parquet" --test "$W/test.parquet" --quiet
for s in "$@"; do
  $B run --input "$W/train.parquet" --rows 39074 --output "$W/o-$s" --overwrite --quiet --noise-seed $s --seed $s $EXTRA
  $B eval --real "$W/train.parquet" --synthetic "$W/o-$s" --test "$W/test.parquet" --target income 2>/dev/null \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print(round(d['one_way']['mean'],4), round(d['two_way']['mean'],4), round(d['correlation']['mean'],4), round(d['ml_efficacy']['gradient_boosting']['synthetic']['auc'],4))"
done | awk '{a+=$1;b+=$2;c+=$3;d+=$4;n++; print} END {printf "MEAN %.4f %.4f %.4f %.4f\n",a/n,b/n,c/n,d/n}'
