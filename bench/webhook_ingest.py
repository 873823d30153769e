"""Webhook ingestion: sustained deliveries per second through POST /portone/webhook, each
re-fetched from the sandbox, with 20% duplicates and shuffled (out-of-order) delivery.

    python -m bench.webhook_ingest --payments 3000 [--concurrency 32]

Checks afterwards: zero lost (every payment recorded), zero double-applied (one row each,
one event per delivery, no refund rows). The peer is the same deliveries sent one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx
from sqlalchemy import func, insert, select

from bench.stack import running_stack
from services.core.db import Database
from services.core.models import Order, Payment, WebhookEvent, utcnow

DUPLICATE_SHARE = 0.2
SERIAL_SAMPLE = 600  # deliveries sent one at a time for the peer figure


@dataclass(frozen=True)
class IngestResult:
    deliveries: int
    concurrency: int
    seconds: float
    per_second: float
    non_2xx: int


def seed(sandbox_url: str, database_url: str, count: int, rng: random.Random) -> list[dict[str, str]]:
    """Paid payments at the sandbox, each with its order in our database."""
    rows = []
    for index in range(count):
        usd = rng.random() < 0.2
        rows.append(
            {
                "merchant_uid": f"bench_{index:07d}",
                "amount": "38.50" if usd else "50000",
                "currency": "USD" if usd else "KRW",
                "status": "paid",
                "pg_provider": "eximbay" if usd else "kcp",
            }
        )
    created = httpx.post(f"{sandbox_url}/sandbox/payments/bulk", json={"payments": rows}, timeout=300)
    created.raise_for_status()
    imp_uids = created.json()["imp_uids"]
    db = Database(database_url)
    now = utcnow()
    with db.write() as session:
        session.execute(
            insert(Order),
            [
                {
                    "merchant_uid": row["merchant_uid"],
                    "name": "체카 탁송비",
                    "amount": row["amount"],
                    "currency": row["currency"],
                    "customer_email": "bench@example.com",
                    "customer_name": "벤치",
                    "status": "pending",
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
            ],
        )
    db.dispose()
    return [
        {"imp_uid": uid, "merchant_uid": row["merchant_uid"], "status": "paid"}
        for uid, row in zip(imp_uids, rows, strict=True)
    ]


async def deliver(api_url: str, bodies: list[dict[str, str]], concurrency: int) -> IngestResult:
    """POST every body with `concurrency` connections kept alive.

    The driver is aiohttp: httpx's async client spends about 2 ms of CPU per request here, which on
    a 2-core machine would measure the driver rather than the API.
    """
    pending = list(reversed(bodies))
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while pending:
            body = pending.pop()
            async with session.post("/portone/webhook", json=body) as response:
                await response.read()
                if response.status >= 300:
                    failures += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=api_url, connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    return IngestResult(len(bodies), concurrency, seconds, len(bodies) / seconds, failures)


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process so far, from Linux's /proc (0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verify(database_url: str, payments: int, deliveries: int) -> dict[str, int]:
    db = Database(database_url)
    with db.read() as session:
        recorded = session.scalar(select(func.count()).select_from(Payment)) or 0
        distinct = session.scalar(select(func.count(func.distinct(Payment.imp_uid)))) or 0
        verified = session.scalar(select(func.count()).select_from(Payment).where(Payment.verified.is_(True))) or 0
        events = session.scalar(select(func.count()).select_from(WebhookEvent)) or 0
        processed = (
            session.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.result == "processed"))
            or 0
        )
    db.dispose()
    return {
        "lost": payments - distinct,
        "double_applied": recorded - distinct,
        "unverified": distinct - verified,
        "events_missing": deliveries - events,
        "events_not_processed": events - processed,
    }


def run(payments: int, concurrency: int, *, seed_value: int = 1) -> dict[str, object]:
    rng = random.Random(seed_value)  # noqa: S311 - reproducible data
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        with running_stack(database_url) as stack:
            bodies = seed(stack.sandbox_url, database_url, payments, rng)
            bodies += rng.sample(bodies, int(len(bodies) * DUPLICATE_SHARE))
            rng.shuffle(bodies)
            # The peer: a sample sent one at a time (the way one request after another is handled);
            # then every other delivery at full concurrency, which is the figure.
            sample = min(SERIAL_SAMPLE, len(bodies) // 4)
            serial = asyncio.run(deliver(stack.api_url, bodies[:sample], 1))
            cpu_before = _cpu_seconds(stack.api_pid)
            concurrent = asyncio.run(deliver(stack.api_url, bodies[sample:], concurrency))
            api_cpu = _cpu_seconds(stack.api_pid) - cpu_before
            checks = verify(database_url, payments, len(bodies))
    return {
        "serial": asdict(serial),
        "concurrent": asdict(concurrent),
        "checks": checks,
        # CPU the API process spent per delivery in the concurrent run: Python holds one core.
        "api_cpu_ms_per_delivery": round(api_cpu / concurrent.deliveries * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(run(args.payments, args.concurrency), indent=2))


if __name__ == "__main__":
    main()
