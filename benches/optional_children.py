#!/usr/bin/env python3
"""Entities with no child rows: does "no child" leak into a first child's empty values?

In the flat row an entity without orders has its first order's columns empty, the same code a
real order with an empty value has. This bench makes customers of whom 30% have no orders, and
orders whose `coupon` is empty 10% of the time, `note` 50% and `amount` never, all independent
of everything else, then prints the share of empty values on first and later synthetic orders.

    python3 benches/optional_children.py make /tmp/oc               # data and spec
    chimera run --spec /tmp/oc/spec.yaml --entities 20000 --epsilon 1 --seed 1 --output /tmp/oc/out
    python3 benches/optional_children.py check /tmp/oc/out          # needs pandas and pyarrow

`make` also writes `spec_required.yaml`, the same spec with `amount: {required: true}`.
"""
import csv
import os
import random
import sys

SPEC = """tables:
  customers:
    input: customers.csv
    primary_key: id
    columns:
      region: {domain: [north, south, east, west]}
      tier: {domain: [a, b, c]}
      age: {bounds: [18, 80]}
  orders:
    input: orders.csv
    primary_key: order_id
    foreign_keys: [{columns: customer, references: customers}]
    order_by: day
    max_children: 5
    columns:
      coupon: {domain: [SAVE5, SAVE10, FREESHIP]}
      note: {domain: [gift, rush, fragile]}
      amount: {bounds: [0, 200]%s}
      day: {bounds: [0, 60]}
"""


def make(folder, customers=20000):
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(1)
    with open(f"{folder}/customers.csv", "w", newline="") as fc, \
            open(f"{folder}/orders.csv", "w", newline="") as fo:
        wc, wo = csv.writer(fc), csv.writer(fo)
        wc.writerow(["id", "region", "tier", "age"])
        wo.writerow(["order_id", "customer", "day", "coupon", "amount", "note"])
        order = 0
        for i in range(customers):
            wc.writerow([i, rng.choice(["north", "south", "east", "west"]),
                         rng.choice(["a", "b", "c"]), rng.randint(18, 80)])
            n = 0 if rng.random() < 0.3 else rng.randint(1, 5)
            for k in range(n):
                order += 1
                coupon = "" if rng.random() < 0.1 else rng.choice(["SAVE5", "SAVE10", "FREESHIP"])
                amount = round(rng.lognormvariate(3, 0.5), 2)
                note = "" if rng.random() < 0.5 else rng.choice(["gift", "rush", "fragile"])
                wo.writerow([order, i, 10 * k + rng.randint(1, 9), coupon, amount, note])
    with open(f"{folder}/spec.yaml", "w") as f:
        f.write(SPEC % "")
    with open(f"{folder}/spec_required.yaml", "w") as f:
        f.write(SPEC % ", required: true")


def check(out):
    import pyarrow.dataset as ds

    def table(name):
        return ds.dataset(f"{out}/{name}", format="parquet").to_table().to_pandas()

    customers, orders = table("customers"), table("orders")
    orders = orders.sort_values(["customer", "day"])
    orders["position"] = orders.groupby("customer").cumcount()
    share = 1 - orders["customer"].nunique() / len(customers)
    print(f"customers {len(customers)}, without orders {share:.3f}, orders {len(orders)}")
    for column in ["coupon", "note", "amount"]:
        first = orders[orders.position == 0][column].isna().mean()
        later = orders[orders.position > 0][column].isna().mean()
        print(f"{column}: empty on first orders {first:.3f}, on later ones {later:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    make(sys.argv[2]) if sys.argv[1] == "make" else check(sys.argv[2])
