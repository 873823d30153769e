"""One entry point for every benchmark: `make bench` (full sizes) or `make bench-smoke` (small
sizes, run in CI so the suite never rots). Each case is measured beside its peer in the same run;
the table goes to stdout and bench/results/ (`latest.md` / `latest.json`, smoke runs `smoke.*`),
with the machine it ran on.

    python -m bench.run [--smoke] [--only NAME ...] [--rows N]
    python -m bench.run --render     # latest.md and README again from latest.json, nothing measured

A full-size run also rewrites README.md's Benchmarks block (between `<!-- bench:start -->` and
`<!-- bench:end -->`) from latest.md. `--only` (substring of a case name, e.g. `--only export
postgresql`) re-measures some cases: they replace their rows in latest.json, the others keep the
figures of the run that measured them (the table then says so). `--rows` changes the payments
table size (for trying things out; the README is only rewritten at the full 1,000,000).

The payments table is loaded once per database per run (scratch SQLite file; a throwaway
PostgreSQL server from the local binaries, tools/throwaway_postgres.py) and shared by the
payments-page, dashboard and export cases; everything is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
README = ROOT / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
FULL_ROWS, SMOKE_ROWS = 1_000_000, 3000
DAYS = 365  # the payments table spans a year

PAGE_TARGET_MS, PAGE_TARGET_RATIO = 30.0, 100.0
RENDER_TARGET_MS = 1000.0
EXPORT_TARGET_SECONDS, EXPORT_TARGET_MB = 8.0, 150.0


@dataclass
class Context:
    """What the cases of one run share: the size and the loaded payments tables."""

    smoke: bool
    rows: int
    stack: ExitStack
    _urls: dict[str, str] = field(default_factory=dict)
    loads: dict[str, float] = field(default_factory=dict)

    def payments(self, database: str) -> str:
        """URL of a database holding `rows` payments over DAYS days ("sqlite" or "postgresql")."""
        if database not in self._urls:
            from bench import payments_page

            if database == "sqlite":
                scratch = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="chekar-bench-"))
                url = f"sqlite:///{Path(scratch) / 'payments.db'}"
            else:
                from tools.throwaway_postgres import running_postgres

                server = self.stack.enter_context(running_postgres())
                url = server.url(server.create_database("bench_payments"))
            seconds = payments_page.load(url, self.rows, days=DAYS)
            print(f"loaded {self.rows:,} payments into {database} in {seconds:.1f} s", flush=True)
            self._urls[database], self.loads[database] = url, round(seconds, 1)
        return self._urls[database]


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Context], dict[str, Any]]
    summary: Callable[[dict[str, Any]], tuple[str, str, str]]  # -> (ours, peer, verdict)
    details: Callable[[dict[str, Any]], str] | None = None


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def _faster(ours: float, peer: float, what: str = "faster", opposite: str = "slower") -> str:
    """`12x faster` (peer / ours) or, when ours is the larger, `1.3x slower`."""
    if ours <= peer:
        ratio = peer / max(ours, 1e-9)
        return f"{ratio:,.0f}x {what}" if ratio >= 10 else f"{ratio:.1f}x {what}"
    return f"{ours / peer:.1f}x {opposite}"


# -- payments page: the service queries at scale, on both databases -----------------------------

# Why a query costs what it does, for the verdict when it misses the target ({range_rows}: payments
# in 92 days at this table size). The totals are the cost: they cover every page of the filter.
PAGE_WHY = {
    "filter change: the widest range (92 days)": "its totals add up all {range_rows} payments of 92 days",
    "filter change: USD, 90 days, paid basis": "its totals walk 90 days of paid times for the 8% in USD",
    "search: broad prefix '010' (92 days)": "a prefix most phones share: the totals check all {range_rows} payments of 92 days",
    "search: broad prefix '010' (7 days)": "a prefix most phones share: checked along the whole week",
    "search: e-mail prefix (92 days)": "thousands share this prefix here, so it is checked along all 92 days like a broad one",
}


def _page_case(database: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from bench import payments_page
        from services.core.config import Settings
        from services.core.db import Database
        from services.runtime import Runtime, make_gateway

        url = ctx.payments(database)
        settings = Settings(database_url=url, portone_mode="sandbox")
        rt = Runtime(settings=settings, db=Database(url), gateway=make_gateway(settings))
        try:
            timings = payments_page.measure_services(rt, 3 if ctx.smoke else 7)
        finally:
            rt.close()
        timings.append(payments_page.measure_naive(url, 1))
        print(payments_page._table(timings), flush=True)
        return {
            "rows": ctx.rows,
            "load_seconds": ctx.loads[database],
            "timings": {t.name: {"p50_ms": _ms(t.p50), "p95_ms": _ms(t.p95), "rows": t.rows} for t in timings},
        }

    return run


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _page_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    from bench.payments_page import NAIVE

    timings = dict(r["timings"])
    naive = timings.pop(NAIVE)["p50_ms"]
    first = timings["first page (default filters) + totals"]["p50_ms"]
    p50s = {name: t["p50_ms"] for name, t in timings.items()}
    slowest = max(p50s, key=lambda name: p50s[name])
    over = [name for name, p50 in p50s.items() if p50 >= PAGE_TARGET_MS or naive / max(p50, 0.1) < PAGE_TARGET_RATIO]
    ours = (
        f"first page + totals p50 {first:g} ms; all {len(p50s)} filter / search / sort / page queries: "
        f"median {statistics.median(p50s.values()):g} ms, slowest {p50s[slowest]:g} ms ({slowest})"
    )
    peer = f"pandas: whole table, then filter {naive / 1000:.1f} s"
    target = f"target p50 < {PAGE_TARGET_MS:g} ms and ≥ {PAGE_TARGET_RATIO:g}x"
    first_ok = first < PAGE_TARGET_MS and naive / first >= PAGE_TARGET_RATIO
    verdict = f"first page {_faster(first, naive)} ({target}) {_mark(first_ok)}"
    if over:
        worst = p50s[slowest]
        why = PAGE_WHY.get(slowest, "").format(range_rows=f"~{round(r['rows'] * 92 / DAYS, -3):,.0f}")
        verdict += (
            f"; {len(over)} of {len(p50s)} queries miss it {_mark(False)} (each in the details): slowest {worst:g} ms = "
            f"{worst / PAGE_TARGET_MS:.1f}x the target, {_faster(worst, naive)} than pandas"
            + (f" ({why})" if why else "")
        )
    else:
        verdict += f"; every query meets it, the slowest {_faster(p50s[slowest], naive)} {_mark(True)}"
    return ours, peer, verdict


def _page_details(r: dict[str, Any]) -> str:
    lines = ["| query | p50 ms | p95 ms | rows shown |", "|---|---:|---:|---:|"]
    for name, t in r["timings"].items():
        lines.append(f"| {name} | {t['p50_ms']:g} | {t['p95_ms']:g} | {t['rows']} |")
    return "\n".join(lines) + f"\n\n{r['rows']:,} payments over {DAYS} days, loaded in {r['load_seconds']} s."


# -- dashboard: the payments page rendered through Streamlit's AppTest --------------------------


def _dashboard(ctx: Context) -> dict[str, Any]:
    from bench import payments_page

    url = ctx.payments("sqlite")
    timings = payments_page.measure_apptest(url, query=payments_page._newest_imp_uid(url))
    timings.append(payments_page.measure_naive_apptest(url))
    return {
        "rows": ctx.rows,
        "timings": {t.name: {"seconds": round(t.p50, 3), "rows": t.rows} for t in timings},
    }


def _dashboard_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    t = r["timings"]
    render = t["AppTest: render views/payments.py"]["seconds"] * 1000
    change = t["AppTest: filter change (failed + partly refunded)"]["seconds"] * 1000
    search = t["AppTest: search (exact imp_uid)"]["seconds"] * 1000
    naive = t["AppTest: naive page (pandas whole table)"]["seconds"] * 1000
    ok = max(render, change, search) < RENDER_TARGET_MS
    return (
        f"render {render:.0f} ms; filter change {change:.0f} ms; search {search:.0f} ms",
        f"a page reading the whole table with pandas {naive / 1000:.1f} s",
        f"{_faster(render, naive)}; every run < {RENDER_TARGET_MS / 1000:g} s {_mark(ok)}",
    )


# -- CSV export: our streaming export against pandas, each in its own process --------------------


def _export_case(database: str) -> Callable[[Context], dict[str, Any]]:
    def run(ctx: Context) -> dict[str, Any]:
        from bench import export_csv
        from services.core.kst import kst_today

        url = ctx.payments(database)
        end = kst_today() + timedelta(days=1)
        # The driver-only floor explains a miss at full size; smoke runs skip its process.
        result = export_csv.run(url, end - timedelta(days=DAYS + 2), end, floor=not ctx.smoke)
        result["table_rows"] = ctx.rows
        return result

    return run


def _export_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    ours, peer, floor = r["ours"], r["pandas"], r.get("fetch_only")
    checks = ours["checks"]
    safe = checks["bom"] and checks["phones_masked"] and checks["emails_masked"] and not checks["formula_cells"]
    fast, small = ours["seconds"] < EXPORT_TARGET_SECONDS, ours["peak_rss_mb"] < EXPORT_TARGET_MB
    verdict = (
        f"{_faster(ours['seconds'], peer['seconds'])}, "
        f"{_faster(ours['peak_rss_mb'], peer['peak_rss_mb'], 'less memory', 'more memory')}; "
        f"time {_mark(fast)} (target < {EXPORT_TARGET_SECONDS:g} s"
    )
    if not fast:
        verdict += f": {ours['seconds'] / EXPORT_TARGET_SECONDS:.1f}x over"
        if floor:
            verdict += (
                f"; the database driver alone takes {floor['seconds']:.1f} s to hand over these rows, "
                "the rest is Python masking and writing"
            )
    verdict += f"), memory {_mark(small)} (target < {EXPORT_TARGET_MB:g} MB); masked and formula-safe {_mark(safe)}"
    return (
        f"{ours['rows']:,} rows in {ours['seconds']:.1f} s, peak RSS {ours['peak_rss_mb']:.0f} MB "
        f"({ours['bytes'] / 2**20:.0f} MB of CSV)",
        f"pandas read_sql + to_csv {peer['seconds']:.1f} s, peak RSS {peer['peak_rss_mb']:.0f} MB",
        verdict,
    )


def _export_details(r: dict[str, Any]) -> str:
    lines = ["| side | seconds | peak RSS MB | RSS after imports MB |", "|---|---:|---:|---:|"]
    for key, label in (
        ("ours", "ours (services/reporting/exports.py)"),
        ("fetch_only", "driver fetch only"),
        ("pandas", "pandas"),
    ):
        if key not in r:  # smoke runs skip the driver-only floor
            continue
        side = r[key]
        lines.append(f"| {label} | {side['seconds']} | {side['peak_rss_mb']} | {side['rss_before_mb']} |")
    return (
        "\n".join(lines)
        + f"\n\nAll payments paid {r['start']} to {r['end']} (KST) of a {r['table_rows']:,}-payment table, "
        "time from the request to the last byte written, each side in a fresh process (peak RSS: its VmHWM, imports included)."
    )


# -- the other cases --------------------------------------------------------------------------------


def _client_lookups(ctx: Context) -> dict[str, Any]:
    from bench import client_lookups

    return client_lookups.run(200 if ctx.smoke else 3000)


def _client_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    ok = r["ratio"] >= 2
    return (
        f"{r['ours']['per_second']}/s",
        f"iamport-rest-client {r['iamport_rest_client']['per_second']}/s",
        f"{r['ratio']}x (target ≥ 2x) {_mark(ok)}",
    )


def _webhooks(ctx: Context) -> dict[str, Any]:
    from bench import webhook_ingest

    return webhook_ingest.run(200 if ctx.smoke else 3000, 32)


def _webhook_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    checks = r["checks"]
    clean = checks["lost"] == 0 and checks["double_applied"] == 0
    rate = r["concurrent"]["per_second"]
    verdict = f"{rate:.0f}/s (target ≥ 300/s) {_mark(rate >= 300)}"
    cpu = r.get("api_cpu_ms_per_delivery")
    if rate < 300 and cpu:
        verdict += (
            f" ({300 / rate:.2f}x short: the API process spends {cpu} ms of CPU per delivery, HTTP handling"
            " and ORM recording in one Python process; the sandbox and the load driver share the other core)"
        )
    verdict += f"; lost {checks['lost']}, doubled {checks['double_applied']} {_mark(clean)}"
    return (f"{rate:.0f}/s at 32 concurrent", f"one at a time {r['serial']['per_second']:.0f}/s", verdict)


def _reconcile(ctx: Context) -> dict[str, Any]:
    from bench import reconcile

    if ctx.smoke:
        return reconcile.run(1000, naive_sample=100, concurrency=4, max_rps=0.0)
    return reconcile.run(100_000, naive_sample=5000, concurrency=4, max_rps=0.0)


def _reconcile_summary(r: dict[str, Any]) -> tuple[str, str, str]:
    speedup, vs_download = r["engine_speedup_vs_naive"], r["engine_vs_download"]
    ok = speedup >= 20 and vs_download <= 2
    return (
        f"{r['engine_seconds']:.2f} s for {r['engine_payments_checked']:,} payments",
        f"naive {r['naive_seconds_extrapolated']:.1f} s (sampled), download only {r['download_seconds']:.2f} s",
        f"{speedup}x naive (≥ 20x), {vs_download}x download (≤ 2x) {_mark(ok)}",
    )


CASES = [
    Case("Payments page query (SQLite)", _page_case("sqlite"), _page_summary, _page_details),
    Case("Payments page query (PostgreSQL)", _page_case("postgresql"), _page_summary, _page_details),
    Case("Dashboard: payments page through AppTest (SQLite)", _dashboard, _dashboard_summary),
    Case("CSV export of payments, masked (SQLite)", _export_case("sqlite"), _export_summary, _export_details),
    Case("CSV export of payments, masked (PostgreSQL)", _export_case("postgresql"), _export_summary, _export_details),
    Case("Reconciliation against the sandbox", _reconcile, _reconcile_summary),
    Case("PortOne V1 client look-ups", _client_lookups, _client_summary),
    Case("Webhook ingestion (20% duplicates, shuffled)", _webhooks, _webhook_summary),
]


# -- the table -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gb": _memory_gb(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    try:
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return round(kib / 2**20, 1)


def select_cases(only: list[str] | None) -> list[Case]:
    """Cases whose name contains every word of one of the `only` patterns (all cases if none)."""
    if not only:
        return list(CASES)

    def matches(case: Case, pattern: str) -> bool:
        return all(word in case.name.lower() for word in pattern.lower().split())

    chosen = [case for case in CASES if any(matches(case, pattern) for pattern in only)]
    if not chosen:
        names = "\n  ".join(case.name for case in CASES)
        raise SystemExit(f"no case matches {only}; the cases are:\n  {names}")
    return chosen


def render_markdown(results: dict[str, Any]) -> str:
    """The table (every case in CASES order that has a result), machine line, then details."""
    cases = results["cases"]
    lines = ["| case | ours | peer (same run) | verdict |", "|---|---|---|---|"]
    details = []
    for case in CASES:
        if case.name not in cases:
            continue
        ours, peer, verdict = case.summary(cases[case.name])
        lines.append(f"| {case.name} | {ours} | {peer} | {verdict} |")
        if case.details is not None:
            details.append(f"**{case.name}**\n\n{case.details(cases[case.name])}")
    m = results["machine"]
    memory = f", {m['memory_gb']} GB" if m.get("memory_gb") else ""
    text = "\n".join(lines) + "\n\n"
    text += f"{m['cpus']} CPUs ({m.get('cpu', 'unknown')}){memory}, Python {m['python']}, {m['platform']}"
    text += " (smoke sizes)" if results["smoke"] else ""
    runs = sorted({c.get("run", m["date"]) for c in cases.values()})
    if len(runs) > 1:  # --only runs replaced some rows
        text += f"; rows from {len(runs)} runs started {', '.join(runs)} (each case's run: latest.json)"
    else:
        text += f"; run started {runs[0]}"
    text += ".\n"
    if details:
        text += "\n<details><summary>Each query and side</summary>\n\n" + "\n\n".join(details) + "\n\n</details>\n"
    return text


def update_readme(table: str, readme: Path | None = None) -> bool:
    """Replace the README block between the bench markers with `table`; False if there are none."""
    readme = readme or README
    text = readme.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if not pattern.search(text):
        return False
    block = f"{README_START}\n{table.strip()}\n\nGenerated by `python -m bench.run` (`make bench`).\n{README_END}"
    readme.write_text(pattern.sub(lambda _: block, text, count=1))
    return True


@contextmanager
def _context(smoke: bool, rows: int) -> Iterator[Context]:
    with ExitStack() as stack:
        yield Context(smoke=smoke, rows=rows, stack=stack)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="small sizes: checks the suite runs, not the figures")
    parser.add_argument("--only", nargs="*", default=None, help="case names (every word a substring)")
    parser.add_argument("--rows", type=int, default=None, help="payments table size (default 1,000,000; smoke 3,000)")
    parser.add_argument(
        "--render", action="store_true", help="measure nothing: redo latest.md and README from latest.json"
    )
    args = parser.parse_args(argv)
    if args.render:
        table = render_markdown(json.loads((RESULTS / "latest.json").read_text()))
        (RESULTS / "latest.md").write_text(table)
        print(table)
        if update_readme(table):
            print("README.md's benchmark block rewritten from latest.json")
        return
    chosen = select_cases(args.only)
    rows = args.rows or (SMOKE_ROWS if args.smoke else FULL_ROWS)
    official = not args.smoke and rows == FULL_ROWS
    name = "latest" if official else "smoke" if args.smoke else f"rows-{rows}"
    RESULTS.mkdir(exist_ok=True)
    previous = RESULTS / f"{name}.json"
    results: dict[str, Any] = {"machine": machine(), "smoke": args.smoke, "rows": rows, "cases": {}}
    if args.only and previous.exists():  # keep the other cases' figures from their own runs
        results["cases"] = json.loads(previous.read_text()).get("cases", {})
    started_all = time.perf_counter()
    with _context(args.smoke, rows) as ctx:
        for case in chosen:
            print(f"== {case.name}", flush=True)
            started = time.perf_counter()
            result = case.run(ctx)
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
            result["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            result["run"] = results["machine"]["date"]
            results["cases"][case.name] = result
            print("| " + " | ".join((case.name, *case.summary(result))) + " |", flush=True)
    results["wall_seconds"] = round(time.perf_counter() - started_all, 1)
    table = render_markdown(results)
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n" + table)
    print(f"{len(chosen)} case(s) in {results['wall_seconds']} s; written to {RESULTS / name}.md and .json")
    if official and update_readme(table):
        print(f"README.md's benchmark block rewritten from {name}.md")


if __name__ == "__main__":
    main()
