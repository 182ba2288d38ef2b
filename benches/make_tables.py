"""Benchmark inputs: Adult repeated to 10 million rows, and an unseen 50-column gzip table.

usage: python3 benches/make_tables.py OUT_DIR
"""
import gzip
import random
import sys

out = sys.argv[1]
lines = open("examples/adult.csv").read().split("\n")
body = "\n".join(l for l in lines[1:] if l) + "\n"
with open(f"{out}/adult10m.csv", "w") as f:
    f.write(lines[0] + "\n")
    for _ in range(205):  # 205 x 48,842 = 10,012,610 rows
        f.write(body)

# 50 columns, 100k rows, `;` separators, gzip, 15% missing (empty or NA), dates, skewed floats.
random.seed(1)
cols = [("cat%d" % j if j % 5 < 2 else "num%d" % j if j % 5 < 4 else "when%d" % j, j % 5) for j in range(50)]
with gzip.open(f"{out}/wide.csv.gz", "wt") as f:
    f.write(";".join(c for c, _ in cols) + "\n")
    for i in range(100_000):
        base = random.random()
        row = []
        for j, (c, k) in enumerate(cols):
            if random.random() < 0.15:
                row.append("NA" if j % 2 else "")
            elif k < 2:
                row.append(random.choice(["alpha", "beta", "gamma", "delta", "eps"][: 2 + j % 4]) if random.random() > base * 0.3 else "zeta")
            elif k == 2:
                row.append(str(int(base * 100 + random.gauss(0, 5))))
            elif k == 3:
                row.append("%.3f" % random.lognormvariate(base, 1))
            else:
                row.append("20%02d-%02d-%02d" % (10 + int(base * 10), 1 + random.randrange(12), 1 + random.randrange(28)))
        f.write(";".join(row) + "\n")
