"""Sums an Nsight Compute CSV (--metrics gpu__time_duration.sum --csv) by kernel name and
grid: launches, total and mean microseconds, the 40 largest first (scripts/gpu/device.sh)."""
import collections
import csv
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
k, v, g = head.index("Kernel Name"), head.index("Metric Value"), head.index("Grid Size")
t = collections.defaultdict(lambda: [0, 0.0])
for r in rows:
    e = t[r[k].split("(")[0][:40] + " " + r[g]]
    e[0] += 1
    e[1] += float(r[v].replace(",", "")) / 1000
total = sum(e[1] for e in t.values())
print(f"{len(rows)} launches, {total:.0f} us")
for name, (n, us) in sorted(t.items(), key=lambda x: -x[1][1])[:40]:
    print(f"{name:60s} {n:6d} {us:10.1f} {us / n:8.2f}")
