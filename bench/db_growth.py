"""How big the database grows per 10,000 payments, written the way production writes them.

    python -m bench.db_growth [--payments 10000] [--database-url URL | --postgres] [--out FILE]

Against a sandbox on loopback (PortOne's double), through our services, over one day of traffic:
- each payment: an order (`services.payments.orders.create_order`, which registers it with PortOne),
  paid at PortOne (the sandbox's bulk control, paid times spread over the last 24 hours, buyers with
  Korean names, e-mails and phone numbers), a V1 webhook delivery (`services.webhooks.v1.receive_many`,
  real V1 bodies, recorded then verified at PortOne), `/complete` (`verification.complete`), and the
  delivery's repeat (PortOne's retry), so two deliveries per payment; every verification keeps
  PortOne's payload in `payment_snapshots`;
- 5% partially refunded through `services.refunds.engine.refund` (attempt, audit entries, snapshot);
- a scheduled reconciliation run (with repairs) every 10 minutes over the day: 144 runs.

Then the size: SQLite's file after VACUUM and its tables with their indexes (`dbstat`); PostgreSQL's
`pg_database_size` and each table's `pg_total_relation_size` (after VACUUM ANALYZE). Prints a table
per table group and writes JSON (--out); then runs the retention purge as the scheduler would the
day after RETENTION_DAYS had passed, and measures again. Without --database-url or --postgres a
scratch SQLite file is used; --postgres starts a throwaway server (tools/throwaway_postgres.py).
A --database-url must name an empty database: it is migrated and filled.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from bench.payments_page import DOMAINS, GIVEN, ROMAN, SURNAMES
from services.core.config import Settings
from services.core.migrate import upgrade
from services.core.models import Base, ReconciliationRun, utcnow
from services.payments.orders import create_order
from services.payments.verification import complete
from services.reconciliation.engine import start_run
from services.reconciliation.schedule import scheduler_actor
from services.refunds.engine import refund
from services.runtime import Runtime, build_runtime
from services.system.retention import purge
from services.webhooks.v1 import Delivery, receive_many

T = TypeVar("T")
REFUND_SHARE = 0.05
USD_SHARE = 0.2
DELIVERIES_PER_PAYMENT = 2
WEBHOOK_BATCH = 10  # deliveries the API's batcher gathers together under load
RUN_EVERY = timedelta(minutes=10)
DAY = timedelta(days=1)
BULK_CHUNK = 2_000
GROUPS = {
    "payments + orders": ("orders", "payments", "refunds"),
    "PortOne's payloads (payment_snapshots)": ("payment_snapshots",),
    "webhook log": ("webhook_events",),
    "audit": ("audit_log",),
    "reconciliation runs": ("reconciliation_runs",),
}


def _parallel(func: Callable[[T], Any], items: Sequence[T], workers: int) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


def _buyer(rng: random.Random, index: int) -> dict[str, str]:
    given = rng.randrange(len(ROMAN))
    return {
        "name": rng.choice(SURNAMES) + GIVEN[given],
        "email": f"{ROMAN[given]}{index}@{rng.choice(DOMAINS)}",
        "phone": f"010-{rng.randrange(10_000):04d}-{rng.randrange(10_000):04d}",
    }


def fill(rt: Runtime, sandbox_url: str, payments: int, *, workers: int = 4, seed: int = 16) -> dict[str, Any]:
    """Write `payments` payments and a day of scheduled runs; seconds per step."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    now = utcnow()
    buyers = [_buyer(rng, i) for i in range(payments)]
    currencies = ["USD" if rng.random() < USD_SHARE else "KRW" for _ in range(payments)]
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    orders = _parallel(
        lambda i: create_order(
            rt,
            customer_email=buyers[i]["email"],
            customer_name=buyers[i]["name"],
            customer_phone=buyers[i]["phone"],
            currency=currencies[i],
        ),
        range(payments),
        workers,
    )
    seconds["orders"] = time.perf_counter() - started

    started = time.perf_counter()
    paid_at = sorted(int((now - DAY * rng.random()).timestamp()) for _ in range(payments))
    specs = [
        {
            "merchant_uid": order.merchant_uid,
            "amount": str(order.amount),
            "currency": order.currency,
            "status": "paid",
            "pay_method": "card",
            "pg_provider": "kcp" if order.currency == "KRW" else "eximbay",
            "name": rt.settings.order_name,
            "buyer_name": buyers[i]["name"],
            "buyer_email": buyers[i]["email"],
            "buyer_tel": buyers[i]["phone"],
            "card_name": "신한카드",
            "card_number": "4092********1234",
            "started_at": paid_at[i] - 40,
            "paid_at": paid_at[i],
        }
        for i, order in enumerate(orders)
    ]
    imp_uids: list[str] = []
    for chunk in range(0, len(specs), BULK_CHUNK):
        made = httpx.post(
            f"{sandbox_url}/sandbox/payments/bulk", json={"payments": specs[chunk : chunk + BULK_CHUNK]}, timeout=300
        )
        made.raise_for_status()
        imp_uids += made.json()["imp_uids"]
    pairs = list(zip(imp_uids, [order.merchant_uid for order in orders], strict=True))
    seconds["pay"] = time.perf_counter() - started

    # The paid notice, /complete, then the notice's repeat (PortOne's retry), each on its own. The
    # notice comes before /complete here: the paid times lie back in the day, and a /complete with no
    # delivery yet would raise a webhook_gap alert that production (seconds apart) never sees.
    started = time.perf_counter()
    _webhooks(rt, pairs, workers)
    seconds["webhooks"] = time.perf_counter() - started
    started = time.perf_counter()
    _parallel(lambda pair: complete(rt, imp_uid=pair[0], merchant_uid=pair[1]), pairs, workers)
    seconds["complete"] = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(DELIVERIES_PER_PAYMENT - 1):
        _webhooks(rt, pairs, workers)
    seconds["webhooks"] += time.perf_counter() - started

    started = time.perf_counter()
    refunded = rng.sample(range(payments), round(payments * REFUND_SHARE))
    _parallel(
        lambda i: refund(
            rt,
            imp_uid=pairs[i][0],
            amount=Decimal("10000") if currencies[i] == "KRW" else Decimal("10.00"),
            reason="고객 요청 부분 환불",
            actor="api:customer-app",
            idempotency_key=f"growth-refund-{i}",
            source="api",
        ),
        refunded,
        workers,
    )
    seconds["refunds"] = time.perf_counter() - started

    started = time.perf_counter()
    window = rt.settings.reconcile_schedule_window_delta
    tick = now - DAY + RUN_EVERY
    while tick <= now:
        start_run(rt, since=tick - window, until=tick, actor=scheduler_actor(), repair=True)
        tick += RUN_EVERY
    seconds["reconciliation runs"] = time.perf_counter() - started
    with rt.db.read() as session:
        runs = session.scalar(select(func.count()).select_from(ReconciliationRun))
    return {"seconds": {k: round(v, 1) for k, v in seconds.items()}, "refunds": len(refunded), "runs": runs}


def _webhooks(rt: Runtime, pairs: Sequence[tuple[str, str]], workers: int) -> None:
    """One V1 delivery per payment, `WEBHOOK_BATCH` at a time (as the API's batcher gathers them)."""
    bodies = [
        json.dumps({"imp_uid": uid, "merchant_uid": merchant, "status": "paid"}).encode() for uid, merchant in pairs
    ]
    batches = [bodies[i : i + WEBHOOK_BATCH] for i in range(0, len(bodies), WEBHOOK_BATCH)]
    _parallel(
        lambda batch: receive_many(
            rt, [Delivery(body=body, content_type="application/json", source_ip="52.78.100.19") for body in batch]
        ),
        batches,
        workers,
    )


def _sqlite_sizes(database_url: str) -> tuple[int, dict[str, int], dict[str, int]]:
    """(file bytes after VACUUM, bytes per table with its indexes, rows per table)."""
    path = Path(str(make_url(database_url).database))
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.exec_driver_sql("VACUUM")
            owner = dict(
                connection.execute(
                    text("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")
                ).all()
            )
            per_table: dict[str, int] = {}
            for name, size in connection.execute(text("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")).all():
                table = owner.get(name, name)
                per_table[table] = per_table.get(table, 0) + int(size)
            rows = _rows(connection)
    finally:
        engine.dispose()
    return path.stat().st_size, per_table, rows


def _postgres_sizes(database_url: str) -> tuple[int, dict[str, int], dict[str, int]]:
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
            total = int(connection.scalar(text("SELECT pg_database_size(current_database())")) or 0)
            per_table = {
                str(name): int(size)
                for name, size in connection.execute(
                    text(
                        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
                    )
                ).all()
            }
            rows = _rows(connection)
    finally:
        engine.dispose()
    return total, per_table, rows


def _rows(connection: Any) -> dict[str, int]:
    return {
        name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
        for name, table in Base.metadata.tables.items()
    }


def grouped(total: int, per_table: dict[str, int]) -> dict[str, int]:
    sizes = {group: sum(per_table.get(t, 0) for t in tables) for group, tables in GROUPS.items()}
    sizes["everything else"] = total - sum(sizes.values())  # the empty schema, catalogs, alerts, users, free pages
    return sizes


def measure(database_url: str) -> dict[str, Any]:
    sqlite = make_url(database_url).get_backend_name() == "sqlite"
    total, per_table, rows = (_sqlite_sizes if sqlite else _postgres_sizes)(database_url)
    return {
        "database": "SQLite" if sqlite else "PostgreSQL",
        "total_bytes": total,
        "groups_bytes": grouped(total, per_table),
        "tables_bytes": dict(sorted(per_table.items())),
        "rows": {name: count for name, count in sorted(rows.items()) if count},
    }


@contextmanager
def _sandbox() -> Iterator[str]:
    from sandbox.testing import run_sandbox_in_thread

    running = run_sandbox_in_thread()
    try:
        yield running.url
    finally:
        running.stop()


@contextmanager
def _database(database_url: str | None, postgres: bool) -> Iterator[str]:
    if database_url:
        yield database_url
    elif postgres:
        from tools.throwaway_postgres import running_postgres

        with running_postgres() as server:
            yield server.url(server.create_database("growth"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'growth.db'}"


def run(payments: int, *, database_url: str | None = None, postgres: bool = False, workers: int = 4) -> dict[str, Any]:
    with _database(database_url, postgres) as url, _sandbox() as sandbox_url:
        upgrade(url)
        empty = measure(url)["total_bytes"]  # the schema (and PostgreSQL's own catalogs) before any payment
        rt = build_runtime(
            Settings(
                database_url=url, portone_mode="sandbox", portone_api_url=sandbox_url, portone_timeout_seconds=30.0
            )
        )
        try:
            filled = fill(rt, sandbox_url, payments, workers=workers)
            grown = measure(url)
            purged = _purge_later(rt)
        finally:
            rt.close()
        after = measure(url)
        purged["total_bytes_after"] = after["total_bytes"]
        purged["groups_bytes_after"] = after["groups_bytes"]
        return {"payments": payments, **filled, **grown, "empty_bytes": empty, "purge": purged}


def _purge_later(rt: Runtime) -> dict[str, Any]:
    """The retention purge as the scheduler would run it the day after this day's deliveries and
    runs passed RETENTION_DAYS: what it deleted, in how many transactions, how long it took."""
    later = utcnow() + timedelta(days=rt.settings.retention_days + 1)
    started = time.perf_counter()
    result = purge(rt, now=later)
    return {"deleted": result.deleted, "batches": result.batches, "seconds": round(time.perf_counter() - started, 2)}


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.2f} MB"


def report(result: dict[str, Any]) -> str:
    per = 10_000 / result["payments"]
    lines = [
        f"{result['database']}, {result['payments']:,} payments "
        f"({result['refunds']} refunds, {result['runs']} reconciliation runs)",
        "",
        "| table group | size | per 10,000 payments |",
        "|---|---:|---:|",
    ]
    for group, size in result["groups_bytes"].items():
        lines.append(f"| {group} | {_mb(size)} | {_mb(round(size * per))} |")
    grown = result["total_bytes"] - result["empty_bytes"]
    lines.append(f"| **total** | {_mb(result['total_bytes'])} | |")
    lines.append(
        f"| **grown** (total less the empty database, {_mb(result['empty_bytes'])}) | {_mb(grown)} | {_mb(round(grown * per))} |"
    )
    purged = result["purge"]
    gone = ", ".join(f"{n:,} {table}" for table, n in purged["deleted"].items() if n)
    lines += [
        "",
        f"The purge RETENTION_DAYS + 1 day later: {gone} deleted in {purged['batches']} transactions, "
        f"{purged['seconds']} s; then {_mb(purged['total_bytes_after'])} "
        f"(webhook log {_mb(purged['groups_bytes_after']['webhook log'])}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=10_000)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="an empty database to fill (default: a scratch SQLite file)")
    where.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL server")
    parser.add_argument("--workers", type=int, default=4, help="threads writing at once")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = run(args.payments, database_url=args.database_url, postgres=args.postgres, workers=args.workers)
    print(report(result))
    print(json.dumps(result["rows"]))
    print(json.dumps(result["seconds"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
