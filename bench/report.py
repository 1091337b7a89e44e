#!/usr/bin/env python3
"""Prints the suite's one table (markdown) from a bench/run.sh results directory.

    python3 bench/report.py bench/results/suite-<stamp>

Every figure is the median [min-max] over the runs; every ratio is computed from
medians of the same run, against the best peer measured next to opsq. The targets are
PRODUCT.md section 7's.
"""
import json
import pathlib
import statistics
import sys

OPSQ_PREFIX = "opsq"
DURABLE_PEERS = {"graphile-worker", "graphile-worker(batched)", "pg-boss", "procrastinate"}


def load(path):
    p = pathlib.Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def med(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def fmt(values, f="{:.0f}"):
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return f.format(m)
    return f"{f.format(m)} [{f.format(min(values))}-{f.format(max(values))}]"


def by_peer(records, phase):
    out = {}
    for r in records:
        if r.get("phase") == phase and "error" not in r:
            out.setdefault(r["peer"], []).append(r)
    return out


def verdict(ok):
    return "meets" if ok else "**misses**"


def main():
    out = pathlib.Path(sys.argv[1])
    harness = load(out / "harness.jsonl")
    s64 = load(out / "s64.jsonl")
    w3 = load(out / "w3.jsonl")
    w4 = load(out / "w4.jsonl")
    w5 = load(out / "w5.jsonl")
    lines = []
    targets = []

    w1, w2, s = by_peer(harness, "W1"), by_peer(harness, "W2"), by_peer(harness, "S")
    s64p = by_peer(s64, "S64")
    peers = list(dict.fromkeys([r["peer"] for r in harness if r.get("phase") in ("W1", "W2", "S")]))
    peers += [p for p in s64p if p not in peers]
    if peers:
        lines += ["| queue | runs | W1 drain jobs/s | W1 bulk submit jobs/s | W1 e2e s | W2 p50 ms | W2 p99 ms "
                  "| S jobs/s | S64 jobs/s |", "|---|---|---|---|---|---|---|---|---|"]
        for p in peers:
            a, b, c, d = w1.get(p, []), w2.get(p, []), s.get(p, []), s64p.get(p, [])
            lines.append(f"| {p} | {max(len(a), len(b), len(c), len(d))} "
                         f"| {fmt([r['drain_rate'] for r in a])} | {fmt([r['enqueue_rate'] for r in a])} "
                         f"| {fmt([r['e2e_s'] for r in a], '{:.2f}')} "
                         f"| {fmt([r['p50_ms'] for r in b], '{:.2f}')} | {fmt([r['p99_ms'] for r in b], '{:.2f}')} "
                         f"| {fmt([r['enqueue_rate'] for r in c])} | {fmt([r['enqueue_rate'] for r in d])} |")
        lines.append("")

    def best(phase_map, key, pick, only=None):
        cands = {p: med([r[key] for r in rs]) for p, rs in phase_map.items()
                 if not p.startswith(OPSQ_PREFIX) and (only is None or p in only)}
        cands = {p: v for p, v in cands.items() if v == v}
        if not cands:
            return None, float("nan")
        p = pick(cands, key=cands.get)
        return p, cands[p]

    def against_best(label, phase_map, key, needs, higher_is_better, unit="", only=None, f="{:.0f}"):
        """One target row per opsq variant: its median over the best peer's median."""
        bp, bv = best(phase_map, key, max if higher_is_better else min, only)
        for name, need in needs:
            if name in phase_map and bp:
                v = med([r[key] for r in phase_map[name]])
                ok = v / bv >= need if higher_is_better else v / bv <= need
                sign = ">=" if higher_is_better else "<="
                targets.append(f"| {label}, {name} vs {bp} | {f.format(v)} / {f.format(bv)}{unit} = {v / bv:.2f}x "
                               f"| {sign} {need}x | {verdict(ok)} |")

    against_best("W1 drain", w1, "drain_rate",
                 (("opsq-sqlite", 2.0), ("opsq-pg", 1.5), ("opsq-sqlite(ext)", 2.0), ("opsq-pg(ext)", 1.5)), True)
    against_best("W2 p50", w2, "p50_ms",
                 (("opsq-sqlite", 0.5), ("opsq-pg", 0.5), ("opsq-sqlite(ext)", 1.0), ("opsq-pg(ext)", 1.0)), False,
                 unit=" ms", f="{:.2f}")
    against_best("S64", s64p, "enqueue_rate", (("opsq-sqlite", 3), ("opsq-pg", 3)), True, only=DURABLE_PEERS)

    if w3:
        lines += ["| status reads (W3/W4) | jobs stored | opsq req/s | trivial axum req/s | ratio | opsq p99 ms |",
                  "|---|---|---|---|---|---|"]
        for r in w3:
            o, t = r["opsq"], r["trivial"]
            lines.append(f"| {r['label']} | {r['jobs']} | {o['rps']['median']:.0f} [{o['rps']['min']:.0f}-"
                         f"{o['rps']['max']:.0f}] | {t['rps']['median']:.0f} | {r['ratio']:.3f} "
                         f"| {o['p99_ms']['median']:.2f} [{o['p99_ms']['min']:.2f}-{o['p99_ms']['max']:.2f}] |")
        lines.append("")
        for r in w3:
            if r["label"] in ("sqlite-100k", "pg-100k"):
                ok = r["ratio"] >= 0.6 and r["opsq"]["p99_ms"]["median"] < 5
                targets.append(f"| W3, {r['label']} vs trivial axum | {r['ratio']:.3f}x, p99 "
                               f"{r['opsq']['p99_ms']['median']:.2f} ms | >= 0.6x, p99 < 5 ms | {verdict(ok)} |")
        rates = {r["label"]: r["opsq"]["rps"]["median"] for r in w3}
        if "sqlite-1k" in rates and "sqlite-1M" in rates:
            g = rates["sqlite-1M"] / rates["sqlite-1k"]
            targets.append(f"| W4 status reads, 1M vs 1k stored | {g:.2f}x | >= 0.8x | {verdict(g >= 0.8)} |")
    g4 = by_peer(w4, "W1")
    if "opsq-sqlite@1k" in g4 and "opsq-sqlite@1M" in g4:
        a = med([r["drain_rate"] for r in g4["opsq-sqlite@1k"]])
        b = med([r["drain_rate"] for r in g4["opsq-sqlite@1M"]])
        lines += ["| growth (W4) W1 | runs | drain jobs/s | bulk submit jobs/s |", "|---|---|---|---|"]
        for p in ("opsq-sqlite@1k", "opsq-sqlite@1M"):
            lines.append(f"| {p} | {len(g4[p])} | {fmt([r['drain_rate'] for r in g4[p]])} "
                         f"| {fmt([r['enqueue_rate'] for r in g4[p]])} |")
        lines.append("")
        targets.append(f"| W4 W1 drain, 1M vs 1k stored | {b:.0f} / {a:.0f} = {b / a:.2f}x | >= 0.8x "
                       f"| {verdict(b / a >= 0.8)} |")
    if w5:
        rss = [r["rss_mb"] for r in w5]
        lines += [f"W5: `opsq serve` idle with 1M jobs stored: resident {fmt(rss)} MB "
                  f"(peak {fmt([r['hwm_mb'] for r in w5])} MB)", ""]
        targets.append(f"| W5 idle resident, 1M jobs | {med(rss):.0f} MB | < 64 MB | {verdict(med(rss) < 64)} |")
    http = [r for r in harness if r.get("phase") == "HTTP"]
    if http:
        lines += [f"Loopback HTTP ceiling (harness, axum hello, wrk -t1 -c64): {fmt([r['rps'] for r in http])} req/s", ""]
    if targets:
        lines += ["| target (PRODUCT.md 7) | measured | needed | |", "|---|---|---|---|"] + targets
    print("\n".join(lines))


if __name__ == "__main__":
    main()
