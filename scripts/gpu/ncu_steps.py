"""Splits an Nsight Compute CSV (--metrics gpu__time_duration.sum --csv) of decodes into
steps (a step begins at its embedding lookup) and prints, per complete step, its launches,
kernel time and the largest kernels by name and grid (scripts/gpu/device.sh)."""
import collections
import csv
import sys

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
k, v, g = head.index("Kernel Name"), head.index("Metric Value"), head.index("Grid Size")
steps, cur = [], None
for r in rows:
    name = r[k].split("(")[0][:40]
    if name.startswith("embed"):
        if cur is not None:
            steps.append(cur)
        cur = []
    if cur is not None:
        cur.append((name + " " + r[g], float(r[v].replace(",", "")) / 1000))
print(f"{len(rows)} launches, {len(steps)} complete steps")
for i, s in enumerate(steps):
    t = collections.defaultdict(lambda: [0, 0.0])
    for name, us in s:
        t[name][0] += 1
        t[name][1] += us
    total = sum(us for _, us in s)
    print(f"step {i}: {len(s)} launches, {total:.0f} us of kernels")
    for name, (n, us) in sorted(t.items(), key=lambda x: -x[1][1])[:16]:
        print(f"  {name:60s} {n:5d} {us:9.1f} {us / n:8.2f}")
