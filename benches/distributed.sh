#!/bin/bash
# Distributed sampling on one machine: a coordinator and worker processes on loopback.
# usage: benches/distributed.sh big|leases   (env: B=path/to/chimera, W=work folder)
#   big:    50,000,000 Adult-shaped rows, 50 shards, 4 workers; coordinator CPU time vs wall time
#   leases: 1,000 shards of 1,000 rows leased by 32 worker processes; p50/p99 lease latency
set -euo pipefail
B=${B:-target/release/chimera}
W=${W:-/tmp/chimera-dist}
mode=${1:-big}
mkdir -p "$W"
[ -f "$W/train.parquet" ] || $B split --input examples/adult.csv --test-fraction 0.2 --seed 0 \
  --train "$W/train.parquet" --test "$W/test.parquet" --quiet
echo "bench-token-$$" > "$W/token"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$mode" = big ]; then rows=50000000; shard=1000000; workers=4; threads=1
else rows=1000000; shard=1000; workers=32; threads=1; fi
rm -rf "$W/out" "$W"/report-*.json
/usr/bin/time -f "%e %U %S %M" -o "$W/coord.time" $B coordinator --input "$W/train.parquet" \
  --rows $rows --shard-rows $shard --output "$W/out" --listen 127.0.0.1:$port \
  --token-file "$W/token" --linger 0.5 --quiet --overwrite &
coord=$!
start=$(date +%s.%N)
pids=()
for i in $(seq 1 $workers); do
  $B worker --coordinator http://127.0.0.1:$port --token-file "$W/token" --threads $threads \
    --report "$W/report-$i.json" --quiet &
  pids+=($!)
done
for p in "${pids[@]}"; do wait $p; done
wait $coord
end=$(date +%s.%N)
python3 - "$W" "$start" "$end" $rows <<'PY'
import json, glob, sys
w, start, end, rows = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
wall = end - start
e, u, s, rss = open(f"{w}/coord.time").read().split()
cpu = float(u) + float(s)
m = json.load(open(f"{w}/out/_manifest.json"))
parts = next(iter(m["tables"].values()))["parts"]
shards = [p["shard"] for p in parts]
assert len(shards) == len(set(shards)), "a shard committed twice"
assert sum(p["rows"] for p in parts) == rows, "rows lost"
lat = sorted(x for f in glob.glob(f"{w}/report-*.json") for x in json.load(open(f))["lease_micros"])
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"rows {rows}  shards {len(shards)} (each once)  wall {wall:.2f} s  rows/s {rows / wall:,.0f}")
print(f"coordinator: cpu {cpu:.2f} s = {100 * cpu / wall:.2f}% of wall, peak RSS {int(rss) // 1024} MB")
print(f"lease latency over {len(lat)} leases: p50 {q(0.5):.2f} ms  p99 {q(0.99):.2f} ms  max {lat[-1] / 1000:.2f} ms")
PY
