"""CSV export of payments at scale: our export (services/reporting/exports.py, masked and formula-safe, the
path the dashboard and the API's signed links use) beside `pandas.read_sql` + `to_csv` of the same
rows and columns. Each side runs in its own fresh Python process, so its peak RSS is its own (VmHWM,
imports included); time is measured inside the process from the request to the last byte written
(imports excluded: a running API has them loaded).

    python -m bench.export_csv --database-url URL [--start 2025-01-01 --end 2025-12-31]

The database must already hold payments (bench/payments_page.py loads them). One side alone, as
the parent runs it: `python -m bench.export_csv --side ours|fetch|pandas --database-url URL --out FILE`
(prints one JSON line).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (VmRSS) or at its peak (VmHWM), from Linux's /proc.

    Not `getrusage(...).ru_maxrss`: a child started by a large parent inherits the parent's peak
    there (Linux records the pre-exec memory), which would charge a side with the parent's RSS."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # elsewhere: the best there is


def _ours(database_url: str, start: date, end: date, out: Path) -> int:
    from services.auth.access import Actor
    from services.core.config import Settings
    from services.core.db import Database
    from services.core.models import Role
    from services.reporting import exports
    from services.runtime import Runtime, make_gateway

    settings = Settings(database_url=database_url, portone_mode="sandbox")
    rt = Runtime(settings=settings, db=Database(database_url), gateway=make_gateway(settings))
    try:
        request = exports.prepare(
            actor=Actor("bench-operator", Role.OPERATOR),
            kind=exports.ExportKind.PAYMENTS,
            filters=exports.ExportFilters(start=start, end=end),
        )
        with out.open("wb") as file:
            for chunk in exports.stream(rt, request, via="bench"):  # what api/routes/exports.py sends, chunk by chunk
                file.write(chunk.encode("utf-8"))
    finally:
        rt.close()
    return _data_lines(out)


def _fetch(database_url: str, start: date, end: date, out: Path) -> int:
    """The floor under ours: the export's own query, rows fetched through the driver and dropped."""
    from sqlalchemy import create_engine

    from services.reporting import export_queries, exports

    engine = create_engine(database_url)
    rows = 0
    try:
        with engine.connect() as connection:
            query = export_queries.payments_query(exports.ExportFilters(start, end), engine.dialect.name)
            for part in connection.execution_options(yield_per=exports.DEFAULT_CHUNK_ROWS).execute(query).partitions():
                rows += len(part)
    finally:
        engine.dispose()
    out.write_bytes(b"")
    return rows


def _pandas(database_url: str, start: date, end: date, out: Path) -> int:
    """The naive way at its fastest: one plain SQL query (the same columns and rows as ours, raw
    driver values, no SQLAlchemy type processing) into a DataFrame, then `to_csv`."""
    import pandas as pd
    from sqlalchemy import create_engine, text

    from services.reporting import export_queries, exports
    from services.reporting import sales as reports

    query = export_queries.payments_query(exports.ExportFilters(start, end), "sqlite")
    columns = ", ".join(column.name for column in query.selected_columns)  # stored values (UTC times)
    sql = f"SELECT {columns} FROM payments WHERE paid_at >= :start AND paid_at < :end ORDER BY paid_at, id"  # noqa: S608
    first, after = reports.kst_bounds(start, end)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            params = _driver_params({"start": first, "end": after}, engine.dialect.name)
            frame = pd.read_sql_query(text(sql), connection, params=params)
    finally:
        engine.dispose()
    frame.to_csv(out, index=False)
    return len(frame)


def _driver_params(params: dict[str, Any], dialect: str) -> dict[str, Any]:
    """UTC times as the database stores them (SQLite: text `YYYY-MM-DD HH:MM:SS.ffffff`)."""
    from datetime import UTC, datetime

    if dialect != "sqlite":
        return params
    return {
        key: value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        if isinstance(value, datetime)
        else value
        for key, value in params.items()
    }


def _data_lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file) - 1  # minus the header (no cell holds a line break here)


SIDES = {"ours": _ours, "pandas": _pandas, "fetch": _fetch}


def side(name: str, database_url: str, start: date, end: date, out: Path) -> dict[str, Any]:
    """Run one side in this process; what the parent reads back. Imports come before the clock
    (the API process has them loaded already) but count in the peak RSS."""
    import services.reporting.exports  # noqa: F401
    import services.runtime  # noqa: F401

    if name == "pandas":
        import pandas  # noqa: F401
    baseline = _rss_mb()
    begin = time.perf_counter()
    rows = SIDES[name](database_url, start, end, out)
    seconds = time.perf_counter() - begin
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "bytes": out.stat().st_size,
        "rss_before_mb": baseline,
        "peak_rss_mb": _rss_mb("VmHWM"),
    }


def run_side(name: str, database_url: str, start: date, end: date, out: Path) -> dict[str, Any]:
    """One side in a fresh Python process (so its peak RSS is its own)."""
    command = [sys.executable, "-m", "bench.export_csv", "--side", name, "--database-url", database_url]
    command += ["--start", start.isoformat(), "--end", end.isoformat(), "--out", str(out)]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"export side {name!r} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds_with_startup"] = round(time.perf_counter() - began, 2)
    return result


def check_masked_and_safe(path: Path, sample: int = 5000) -> dict[str, Any]:
    """Read back the first rows of our file: BOM, masked phones and e-mails, no formula cells."""
    with path.open(encoding="utf-8", newline="") as file:
        bom = file.read(1) == "\ufeff"
        reader = csv.reader(file)
        header = next(reader)
        phone, email = (
            header.index(next(h for h in header if "전화" in h)),
            header.index(next(h for h in header if "이메일" in h)),
        )
        rows = [row for _, row in zip(range(sample), reader, strict=False)]
    return {
        "bom": bom,
        "phones_masked": all("*" in row[phone] for row in rows),
        "emails_masked": all(re.match(r"^[^@]\*+@", row[email]) for row in rows),
        "formula_cells": sum(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row),
        "sampled": len(rows),
    }


def run(database_url: str, start: date, end: date, *, floor: bool = True) -> dict[str, Any]:
    """Ours, then (with `floor`) the driver-only fetch, then pandas, on the same rows; files deleted."""
    with tempfile.TemporaryDirectory(prefix="chekar-export-bench-") as scratch:
        ours_file = Path(scratch) / "ours.csv"
        ours = run_side("ours", database_url, start, end, ours_file)
        ours["checks"] = check_masked_and_safe(ours_file)
        ours_file.unlink()
        fetch = run_side("fetch", database_url, start, end, Path(scratch) / "fetch.csv") if floor else None
        peer = run_side("pandas", database_url, start, end, Path(scratch) / "pandas.csv")
    rows = {ours["rows"], peer["rows"], *([fetch["rows"]] if fetch else [])}
    if len(rows) != 1:
        raise RuntimeError(f"the sides exported different numbers of rows: {sorted(rows)}")
    result = {"ours": ours, "pandas": peer, "start": start.isoformat(), "end": end.isoformat()}
    if fetch is not None:
        result["fetch_only"] = fetch
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--start", type=date.fromisoformat, default=None, help="KST day (default: a year ago)")
    parser.add_argument("--end", type=date.fromisoformat, default=None, help="KST day (default: tomorrow)")
    parser.add_argument("--side", choices=tuple(SIDES), default=None, help="run one side here (internal)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    end = args.end or date.today() + timedelta(days=1)  # noqa: DTZ011 - a generous KST day range
    start = args.start or end - timedelta(days=367)
    if args.side:
        print(json.dumps(side(args.side, args.database_url, start, end, args.out)))
    else:
        print(json.dumps(run(args.database_url, start, end), indent=2))


if __name__ == "__main__":
    main()
