#!/usr/bin/env python3
"""Markdown tables (median of the repetitions, with min-max) from harness JSON lines.
Usage: python3 report.py results/*.jsonl"""
import json
import statistics
import sys


def load(files):
    groups = {}
    for fn in files:
        with open(fn) as f:
            for line in f:
                r = json.loads(line)
                p = r["params"]
                key = (r["workload"], r["peer"], p.get("sub_mode", "lib"), p["subs"], p["rate"],
                       p["conns"], "\x1f".join(r.get("opts", [])), r.get("label") or "")
                groups.setdefault(key, []).append(r)
    return groups


def med(recs, k, fmt="{:,.0f}", rng=False):
    vals = [r[k] for r in recs if r.get(k) is not None]
    if not vals:
        return "-"
    m = fmt.format(statistics.median(vals))
    if rng and len(vals) > 1:
        m += f" ({fmt.format(min(vals))}-{fmt.format(max(vals))})"
    return m


def name(r, k):
    hidden = ("version=", "parley=", "database=")       # paths and URLs of this machine
    tags = [t for t in k[6].split("\x1f") + [k[7]] if t and not t.startswith(hidden)]
    base = r["server"] if r["server"] != "command" else r["version"].split("-")[0]
    return base + (" [" + ", ".join(tags) + "]" if tags else "")


def ver(r):
    return r["version"].replace("nats-server: v", "").replace("mosquitto version ", "") \
        .replace("Prosody ", "").replace("version=", "")


def logins(recs):
    """The logins made at once during the run, and their latency."""
    done = [r for r in recs if r.get("logins")]
    if not done:
        return "-"
    p50, p99 = (statistics.median(r[k] for r in done) / 1000 for k in ("login_p50_us", "login_p99_us"))
    return f"{done[0]['logins']}: {p50:,.0f} / {p99:,.0f}"


def main(files):
    g = load(files)
    print("### W1 fan-out (median of n, min-max)\n")
    print("| peer | version | S | subscribers | n | deliveries/s | publish msg/s | server CPU s "
          "per 1M deliveries | server CPU | loadgen CPU | server RSS MB | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(x for x in g if x[0] == "w1"):
        recs = g[k]
        r = recs[0]
        rss = statistics.median(x["server_rss_kb"] for x in recs) / 1024
        print(f"| {name(r, k)} | {ver(r)} | {k[3]} | {k[2]} | "
              f"{len(recs)} | {med(recs, 'deliveries_per_s', rng=True)} | "
              f"{med(recs, 'publish_rate')} | "
              f"{med(recs, 'server_cpu_s_per_1M_deliveries', '{:.2f}', rng=True)} | "
              f"{med(recs, 'server_cpu_util', '{:.0%}')} | {med(recs, 'loadgen_cpu_util', '{:.0%}')}"
              f" | {rss:.0f} | {med(recs, 'lost_after_drain')} |")
    print("\n### W2 latency, us (median of n; app = user-space receive, kernel = SO_TIMESTAMPNS)\n")
    print("| peer | version | S | rate msg/s | subscribers | n | app p50 / p99 / p99.9 | "
          "kernel p50 / p99 / p99.9 | max (app) | server CPU s per 1M deliveries | "
          "server CPU | loadgen CPU | logins at once: p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted(x for x in g if x[0] == "w2"):
        recs = g[k]
        r = recs[0]
        app = " / ".join(med(recs, q) for q in ("p50_us", "p99_us", "p99_9_us"))
        ker = " / ".join(med(recs, q) for q in ("k_p50_us", "k_p99_us", "k_p99_9_us"))
        print(f"| {name(r, k)} | {ver(r)} | {k[3]} | {k[4]:.0f} | "
              f"{k[2]} | {len(recs)} | {app} | {ker} | {med(recs, 'max_us')} | "
              f"{med(recs, 'server_cpu_s_per_1M_deliveries', '{:.1f}', rng=True)} | "
              f"{med(recs, 'server_cpu_util', '{:.0%}')} | "
              f"{med(recs, 'loadgen_cpu_util', '{:.0%}')} | {logins(recs)} |")
    print("\n### W3 idle connections (median of n, min-max)\n")
    print("| peer | version | N | n | RSS KB per connection | RSS before -> after MB | "
          "connects/s | server CPU ms per connect | idle server CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in sorted(x for x in g if x[0] == "w3"):
        recs = g[k]
        r = recs[0]
        b = statistics.median(x["server_rss_before_kb"] for x in recs) / 1024
        a = statistics.median(x["server_rss_after_kb"] for x in recs) / 1024
        print(f"| {name(r, k)} | {ver(r)} | {k[5]:,} | {len(recs)} | "
              f"{med(recs, 'rss_per_conn_kb', '{:.1f}', rng=True)} | {b:.1f} -> {a:.1f} | "
              f"{med(recs, 'connects_per_s')} | "
              f"{med(recs, 'server_cpu_ms_per_connect', '{:.2f}')} | "
              f"{med(recs, 'idle_server_cpu_util', '{:.1%}')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
