"""One entry point for every benchmark: `make bench` (full sizes) or `make bench-smoke` (small
sizes, run in CI so the suite never rots). Each case is measured beside its peer in the same run;
the table goes to stdout, bench/results/latest.md and latest.json, with the machine it ran on.

    python -m bench.run [--smoke] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[bool], dict[str, Any]]  # smoke -> result
    summary: Callable[[dict[str, Any]], tuple[str, str, str]]  # -> (ours, peer, verdict)


def _client_lookups(smoke: bool) -> dict[str, Any]:
    from bench import client_lookups

    return client_lookups.run(200 if smoke else 3000)


def _client_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    ok = r["ratio"] >= 2
    return (
        f"{r['ours']['per_second']}/s",
        f"iamport-rest-client {r['iamport_rest_client']['per_second']}/s",
        f"{r['ratio']}x (target ≥ 2x) {'✅' if ok else '❌'}",
    )


def _webhooks(smoke: bool) -> dict[str, Any]:
    from bench import webhook_ingest

    return webhook_ingest.run(200 if smoke else 3000, 32)


def _webhook_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    checks = r["checks"]
    clean = checks["lost"] == 0 and checks["double_applied"] == 0
    rate = r["concurrent"]["per_second"]
    verdict = f"{rate:.0f}/s (target ≥ 300/s) {'✅' if rate >= 300 else '❌'}; lost {checks['lost']}, doubled {checks['double_applied']} {'✅' if clean else '❌'}"
    return (f"{rate:.0f}/s at 32 concurrent", f"one at a time {r['serial']['per_second']:.0f}/s", verdict)


def _payments_page(smoke: bool) -> dict[str, Any]:
    from bench import payments_page

    timings = payments_page.run(
        rows=3000 if smoke else 1_000_000, database_url=None, runs=3 if smoke else 7, naive_runs=1, apptest=True
    )
    return {
        t.name: {"p50_ms": round(t.p50 * 1000, 1), "p95_ms": round(t.p95 * 1000, 1), "rows": t.rows} for t in timings
    }


def _payments_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    first = r["first page (default filters) + totals"]["p50_ms"]
    naive = r["naive: whole table into pandas + filter"]["p50_ms"]
    render = r["AppTest: render pages/payments.py"]["p50_ms"]
    ratio = naive / first if first else 0
    ok = first < 30 and ratio >= 100
    return (
        f"first page + totals p50 {first} ms; AppTest render {render} ms",
        f"pandas whole table {naive:.0f} ms",
        f"{ratio:.0f}x (target p50 < 30 ms and ≥ 100x) {'✅' if ok else '❌'}",
    )


def _reconcile(smoke: bool) -> dict[str, Any]:
    from bench import reconcile

    if smoke:
        return reconcile.run(1000, naive_sample=100, concurrency=4, max_rps=0.0)
    return reconcile.run(100_000, naive_sample=5000, concurrency=4, max_rps=0.0)


def _reconcile_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    speedup, vs_download = r["engine_speedup_vs_naive"], r["engine_vs_download"]
    ok = speedup >= 20 and vs_download <= 2
    return (
        f"{r['engine_seconds']:.2f} s for {r['engine_payments_checked']:,} payments",
        f"naive {r['naive_seconds_extrapolated']:.1f} s (sampled), download only {r['download_seconds']:.2f} s",
        f"{speedup}x naive (≥ 20x), {vs_download}x download (≤ 2x) {'✅' if ok else '❌'}",
    )


CASES = [
    Case("Payments page query (SQLite)", _payments_page, _payments_summary),
    Case("Reconciliation against the sandbox", _reconcile, _reconcile_summary),
    Case("PortOne V1 client look-ups", _client_lookups, _client_summary),
    Case("Webhook ingestion (20% duplicates, shuffled)", _webhooks, _webhook_summary),
]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small sizes: checks the suite runs, not the figures")
    parser.add_argument("--only", nargs="*", default=None, help="case names (substring match)")
    args = parser.parse_args()
    chosen = [c for c in CASES if not args.only or any(o.lower() in c.name.lower() for o in args.only)]
    results: dict[str, Any] = {"machine": machine(), "smoke": args.smoke, "cases": {}}
    lines = ["| case | ours | peer (same run) | verdict |", "|---|---|---|---|"]
    for case in chosen:
        started = time.perf_counter()
        result = case.run(args.smoke)
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        results["cases"][case.name] = result
        ours, peer, verdict = case.summary(result)
        lines.append(f"| {case.name} | {ours} | {peer} | {verdict} |")
        print(lines[-1], flush=True)
    m = results["machine"]
    table = "\n".join(lines) + f"\n\n{m['date']}, Python {m['python']}, {m['cpus']} CPUs, {m['platform']}"
    table += " (smoke sizes)\n" if args.smoke else "\n"
    RESULTS.mkdir(exist_ok=True)
    name = "smoke" if args.smoke else "latest"
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n" + table)


if __name__ == "__main__":
    main()
