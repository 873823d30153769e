"""Soak: a sustained mixed load on our API for a bounded time, then checks that nothing was lost,
nothing doubled, nothing answered 5xx and the API's memory stayed flat.

    python -m bench.soak [--seconds 600] [--database sqlite|postgresql | --database-url URL]

The sandbox and our API run as real processes on loopback (bench/stack.py). Until the time is
up, closed-loop workers keep sending:

- customers: POST /api/orders, pay at the sandbox (/sandbox/checkout; some declined, some virtual
  accounts deposited a moment later), then POST /api/payments/complete, except for a share that
  never calls back (their payment reaches us only by PortOne's webhook);
- webhooks: beside the sandbox's own (sent twice each, plus one per API cancel), duplicates,
  stale "ready" claims arriving after "paid" (out of order), bursts of the same delivery, and
  deliveries naming a payment PortOne does not know;
- refunds: partial refunds through POST /api/payments/{imp_uid}/refunds with the internal token
  and an Idempotency-Key, a share sent twice at once (a double click);
- dashboard reads: the services the dashboard pages call (payment search + totals, overview,
  payment detail with PortOne's live record), in a thread, as the Streamlit pages do.

Once the time is up the workers finish what they started, the sandbox's deliveries drain, and:

- no 5xx: from our API to any request (ours or the sandbox's webhook deliveries), and no request
  without an answer;
- no lost event: every webhook answered by our API is one webhook_events row, processed; every
  payment the sandbox holds as paid (or cancelled by our refunds) is in our database with
  PortOne's status and refunded total; every refund answered 201 is a succeeded refund row;
- no doubled event: one payment row per imp_uid, one webhook_events row per delivery, one
  succeeded refund per cancel the sandbox applied (none refused), each one the load asked for,
  one refund per idempotency key;
- memory flat: see `memory_verdict`.

Results go to stdout and bench/results/soak.json; the exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.stack import Stack, running_stack
from services.auth.access import Actor
from services.core.config import Settings
from services.core.db import Database
from services.core.jsonutil import loads
from services.core.models import Payment, Refund, RefundStatus, Role, WebhookEvent
from services.payments.detail import payment_detail
from services.payments.search import PaymentFilters, payment_totals, search_payments
from services.reporting.overview import overview
from services.runtime import build_runtime

RESULTS = Path(__file__).resolve().parent / "results"
APPROVED_CARD = "4111-1111-1111-1111"
DECLINED_CARD = "4000-0000-0000-0002"

# The mix (shares of each worker's iterations)
USD_SHARE = 0.2
DECLINED_SHARE = 0.05
VBANK_SHARE = 0.05
NO_CALLBACK_SHARE = 0.15  # the browser never calls /complete: only the webhook brings the payment
DOUBLE_CLICK_SHARE = 0.2
REFUND_AMOUNTS = {"KRW": Decimal(1000), "USD": Decimal("1.25")}

# Memory: the API's RSS is sampled every second. The first WARMUP_SHARE of the run (at least
# WARMUP_MIN_SECONDS, at most WARMUP_MAX_SECONDS) is left out: imports finishing, pools and
# caches (SQLAlchemy's statement cache, the thread pool, SQLite's page cache) filling to their
# bounds. Of the rest, the median of the last quarter is compared with the median of the first
# quarter: medians ignore the spikes of a garbage collection or a burst, and a leak, which grows
# with the work done, shows as the last quarter sitting above the first. Allowed growth is
# MEMORY_GROWTH_FLOOR_MIB or MEMORY_GROWTH_SHARE of the first quarter, whichever is larger: the
# allocator keeps freed arenas and fragments, so a healthy process still drifts by a few MiB.
WARMUP_SHARE = 0.2
WARMUP_MIN_SECONDS = 3.0
WARMUP_MAX_SECONDS = 60.0
MEMORY_GROWTH_FLOOR_MIB = 16.0
MEMORY_GROWTH_SHARE = 0.10
DRAIN_SECONDS = 120.0


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Kind:
    """What one kind of request did: count, answers by status, latencies."""

    count: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, status: int | str, seconds: float) -> None:
        self.count += 1
        self.statuses[str(status)] += 1
        self.latencies_ms.append(seconds * 1000)

    def summary(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1) if ordered else None

        return {
            "count": self.count,
            "per_second": round(self.count / seconds, 2) if seconds else None,
            "statuses": dict(sorted(self.statuses.items())),
            "p50_ms": pct(0.5),
            "p99_ms": pct(0.99),
        }


@dataclass
class Ledger:
    """Everything the load did, for the checks."""

    kinds: dict[str, Kind] = field(default_factory=lambda: defaultdict(Kind))
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # 5xx and requests without an answer
    webhooks_answered: int = 0  # our deliveries that reached the handler (any status but 413/403)
    created: dict[str, str] = field(default_factory=dict)  # imp_uid -> merchant_uid, paid or not
    completed: set[str] = field(default_factory=set)  # /complete was called (any answer)
    paid: dict[str, str] = field(default_factory=dict)  # imp_uid -> currency, once our API said paid
    refund_keys: set[str] = field(default_factory=set)  # every Idempotency-Key sent
    refund_answers: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))  # key -> refund ids
    refunds_succeeded: set[int] = field(default_factory=set)
    dashboard_errors: list[str] = field(default_factory=list)


class Load:
    """The workers, sharing one ledger and two HTTP clients."""

    def __init__(
        self, api: httpx.AsyncClient, sandbox: httpx.AsyncClient, token: str, ledger: Ledger, rng: random.Random
    ) -> None:
        self.api, self.sandbox, self.token, self.ledger, self.rng = api, sandbox, token, ledger, rng
        self.stop = asyncio.Event()

    async def call(self, kind: str, send: Awaitable[httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await send
        except httpx.HTTPError as exc:
            self.ledger.kinds[kind].add(type(exc).__name__, time.perf_counter() - started)
            self.ledger.server_errors.append({"kind": kind, "error": f"{type(exc).__name__}: {exc}"})
            return None
        self.ledger.kinds[kind].add(response.status_code, time.perf_counter() - started)
        if response.status_code >= 500:
            self.ledger.server_errors.append(
                {"kind": kind, "status": response.status_code, "body": response.text[:500]}
            )
        return response

    # customers
    async def customer(self) -> None:
        while not self.stop.is_set():
            currency = "USD" if self.rng.random() < USD_SHARE else "KRW"
            order = await self.call(
                "order",
                self.api.post(
                    "/api/orders",
                    json={"customer_email": "soak@example.com", "customer_name": "부하 시험", "currency": currency},
                ),
            )
            if order is None or order.status_code != 201:
                continue
            created = loads(order.content)  # amounts as Decimal
            merchant_uid, amount = created["merchant_uid"], created["amount"]
            roll = self.rng.random()
            how = "declined" if roll < DECLINED_SHARE else "vbank" if roll < DECLINED_SHARE + VBANK_SHARE else "card"
            body: dict[str, Any] = {"merchant_uid": merchant_uid, "amount": str(amount), "currency": currency}
            body["card_number"] = DECLINED_CARD if how == "declined" else APPROVED_CARD
            if currency != "KRW":
                body["pg"] = "eximbay"
            if how == "vbank":
                body.update(pay_method="vbank", card_number=None)
            paid = await self.call("checkout", self.sandbox.post("/sandbox/checkout", json=body))
            if paid is None or paid.status_code != 200 or not paid.json().get("imp_uid"):
                continue
            imp_uid = paid.json()["imp_uid"]
            self.ledger.created[imp_uid] = merchant_uid
            if how == "card" and self.rng.random() < NO_CALLBACK_SHARE:
                continue  # the browser was closed: only the sandbox's webhook tells us
            await self.complete(imp_uid, merchant_uid, currency)
            if how == "vbank":  # the customer transfers a moment later: a "paid" webhook follows "ready"
                await asyncio.sleep(self.rng.uniform(0, 0.2))
                await self.call("deposit", self.sandbox.post(f"/sandbox/payments/{imp_uid}/deposit"))

    async def complete(self, imp_uid: str, merchant_uid: str, currency: str) -> None:
        answer = await self.call(
            "complete",
            self.api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid}),
        )
        self.ledger.completed.add(imp_uid)
        if answer is not None and answer.status_code == 200:
            self.ledger.paid[imp_uid] = currency

    # webhooks beside the sandbox's own
    async def webhook(self, body: dict[str, str]) -> None:
        answer = await self.call("webhook", self.api.post("/portone/webhook", json=body))
        if answer is not None and answer.status_code not in (403, 413):
            self.ledger.webhooks_answered += 1

    async def webhooks(self) -> None:
        while not self.stop.is_set():
            if not self.ledger.created:
                await asyncio.sleep(0.05)
                continue
            imp_uid = self.rng.choice(list(self.ledger.created)[-200:])  # recent ones race their /complete
            body = {"imp_uid": imp_uid, "merchant_uid": self.ledger.created[imp_uid], "status": "paid"}
            roll = self.rng.random()
            if roll < 0.35:  # a duplicate of PortOne's "paid"
                await self.webhook(body)
            elif roll < 0.65:  # out of order: a stale "ready" after "paid"
                await self.webhook({**body, "status": "ready"})
            elif roll < 0.75:  # a wrong claim: the re-fetch decides, not the body
                await self.webhook({**body, "status": "cancelled"})
            elif roll < 0.95:  # a burst of the same delivery at once
                await asyncio.gather(*(self.webhook(body) for _ in range(3)))
            else:  # a payment PortOne does not know: 400
                await self.webhook({**body, "imp_uid": f"imp_{uuid.uuid4().hex[:12]}"})

    # refunds
    async def refund_once(self, imp_uid: str, amount: Decimal, key: str) -> None:
        self.ledger.refund_keys.add(key)
        answer = await self.call(
            "refund",
            self.api.post(
                f"/api/payments/{imp_uid}/refunds",
                json={"amount": str(amount), "reason": "부하 시험 부분 환불"},
                headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
            ),
        )
        if answer is None:
            return
        refund_id = answer.json().get("refund_id")
        if refund_id is not None:
            self.ledger.refund_answers[key].add(int(refund_id))
        if answer.status_code == 201:
            self.ledger.refunds_succeeded.add(int(refund_id))

    async def refunds(self) -> None:
        while not self.stop.is_set():
            if not self.ledger.paid:
                await asyncio.sleep(0.05)
                continue
            imp_uid = self.rng.choice(list(self.ledger.paid))
            amount, key = REFUND_AMOUNTS[self.ledger.paid[imp_uid]], uuid.uuid4().hex
            clicks = 2 if self.rng.random() < DOUBLE_CLICK_SHARE else 1
            await asyncio.gather(*(self.refund_once(imp_uid, amount, key) for _ in range(clicks)))


# -- dashboard reads (a thread, like a Streamlit page calling services) -------------------------


def dashboard_reads(
    database_url: str, sandbox_url: str, ledger: Ledger, stop: threading.Event, rng: random.Random
) -> None:
    rt = build_runtime(Settings(database_url=database_url, portone_mode="sandbox", portone_api_url=sandbox_url))
    viewer, operator = Actor("soak-viewer", Role.VIEWER), Actor("soak-operator", Role.OPERATOR)
    reads: list[tuple[str, Callable[[], object]]] = [
        ("dashboard: payments page", lambda: search_payments(rt, actor=viewer, filters=PaymentFilters.default())),
        ("dashboard: payment totals", lambda: payment_totals(rt, actor=viewer, filters=PaymentFilters.default())),
        ("dashboard: overview", lambda: overview(rt, actor=viewer)),
        (
            "dashboard: payment detail",
            lambda: payment_detail(rt, actor=operator, imp_uid=rng.choice(list(ledger.paid))),
        ),
    ]
    try:
        while not stop.is_set():
            for kind, read in reads:
                if kind == "dashboard: payment detail" and not ledger.paid:
                    continue
                started = time.perf_counter()
                try:
                    read()
                except Exception as exc:  # noqa: BLE001 - every failure is reported, none stops the load
                    ledger.kinds[kind].add("error", time.perf_counter() - started)
                    ledger.dashboard_errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:500])
                else:
                    ledger.kinds[kind].add("ok", time.perf_counter() - started)
            stop.wait(0.2)  # an operator's pace, not a benchmark
    finally:
        rt.close()


# -- memory --------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int | None:
    """The process's resident set size, from /proc (Linux, as CI; psutil is not a pinned dependency)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextmanager
def sampling(pids: dict[str, int], samples: dict[str, list[tuple[float, int]]], t0: float) -> Iterator[None]:
    """Every second, each process's RSS as (seconds since t0, bytes)."""
    stop = threading.Event()

    def sample() -> None:
        while True:
            now = time.monotonic() - t0
            for name, pid in pids.items():
                rss = rss_bytes(pid)
                if rss is not None:
                    samples[name].append((round(now, 2), rss))
            if stop.wait(1.0):
                return

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def warmup_seconds(seconds: float) -> float:
    return min(WARMUP_MAX_SECONDS, max(WARMUP_MIN_SECONDS, WARMUP_SHARE * seconds))


def memory_verdict(samples: list[tuple[float, int]], warmup: float, end: float) -> dict[str, Any]:
    """Flat when the median RSS of the last quarter of the measured window (after warm-up, until
    the load stopped) is at most max(MEMORY_GROWTH_FLOOR_MIB, MEMORY_GROWTH_SHARE x first
    quarter's median) above the first quarter's median. Also reported: the least-squares slope
    over the measured window, in MiB per minute."""
    window = [(t, rss / 2**20) for t, rss in samples if warmup <= t <= end]
    if len(window) < 8:
        return {"flat": False, "reason": f"only {len(window)} samples after warm-up; run longer"}
    quarter = len(window) // 4
    first = statistics.median(m for _, m in window[:quarter])
    last = statistics.median(m for _, m in window[-quarter:])
    allowed = max(MEMORY_GROWTH_FLOOR_MIB, MEMORY_GROWTH_SHARE * first)
    times, mib = [t for t, _ in window], [m for _, m in window]
    slope = statistics.linear_regression(times, mib).slope * 60 if len(set(times)) > 1 else 0.0
    return {
        "flat": last - first <= allowed,
        "samples": len(window),
        "warmup_seconds": round(warmup, 1),
        "first_quarter_median_mib": round(first, 1),
        "last_quarter_median_mib": round(last, 1),
        "growth_mib": round(last - first, 1),
        "allowed_growth_mib": round(allowed, 1),
        "slope_mib_per_minute": round(slope, 2),
        "peak_mib": round(max(mib), 1),
    }


# -- draining and checking -----------------------------------------------------------------------


def drain_sandbox_webhooks(sandbox: httpx.Client, timeout: float = DRAIN_SECONDS) -> list[dict[str, Any]]:
    """Wait until the sandbox has no delivery in flight; its deliveries."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = sandbox.get("/sandbox/webhooks").json()["deliveries"]
        busy = [d for d in deliveries if d["state"] in ("pending", "sending", "retrying")]
        if not busy or time.monotonic() > deadline:
            return list(deliveries)
        time.sleep(0.25)


def portone_payments(sandbox: httpx.Client, imp_uids: list[str]) -> dict[str, dict[str, Any]]:
    """PortOne's record of each payment, read through its V1 API, 100 at a time."""
    token = sandbox.post(
        "/users/getToken", json={"imp_key": "sandbox-imp-key", "imp_secret": "sandbox-imp-secret"}
    ).json()["response"]["access_token"]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(imp_uids), 100):
        chunk = imp_uids[start : start + 100]
        response = sandbox.get(
            "/payments", params=[("imp_uid[]", uid) for uid in chunk], headers={"Authorization": f"Bearer {token}"}
        )
        for payment in loads(response.content)["response"] or []:
            found[payment["imp_uid"]] = payment
    return found


def check(database_url: str, sandbox: httpx.Client, ledger: Ledger, deliveries: list[dict[str, Any]]) -> dict[str, Any]:
    attempts = [a for d in deliveries for a in d["attempts"]]
    sandbox_5xx = [a for a in attempts if (a.get("status_code") or 0) >= 500]
    sandbox_unanswered = [a for a in attempts if a.get("status_code") is None]
    sandbox_answered = [a for a in attempts if a.get("status_code") not in (None, 403, 413)]
    undelivered = [d["id"] for d in deliveries if d["state"] != "delivered"]
    portone = portone_payments(sandbox, sorted(ledger.created))
    calls = sandbox.get("/sandbox/calls").json()
    cancels = Counter(c["outcome"] for c in calls["cancels"])

    db = Database(database_url)
    try:
        with db.read() as session:
            events = session.scalar(select(func.count()).select_from(WebhookEvent)) or 0
            unprocessed = (
                session.scalar(
                    select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
                )
                or 0
            )
            payment_rows = session.execute(select(Payment.imp_uid, Payment.status, Payment.cancel_amount)).all()
            refunds = session.execute(
                select(Refund.id, Refund.status, Refund.amount, Refund.idempotency_key, Payment.imp_uid).join(Payment)
            ).all()
    finally:
        db.dispose()

    ours = {row.imp_uid: row for row in payment_rows}
    # The payments that must be in our records: whatever PortOne holds as paid (or cancelled by
    # our refunds, or left waiting for a deposit), and any other we called /complete for.
    expected = [uid for uid, p in portone.items() if p["status"] != "failed" or uid in ledger.completed]
    lost = [uid for uid in expected if uid not in ours]
    differing = [
        {"imp_uid": uid, "ours": [ours[uid].status, str(ours[uid].cancel_amount)],
         "portone": [portone[uid]["status"], str(portone[uid]["cancel_amount"])]}
        for uid in expected
        if uid in ours
        and (ours[uid].status != portone[uid]["status"]
             or Decimal(str(ours[uid].cancel_amount)) != Decimal(str(portone[uid]["cancel_amount"])))
    ]  # fmt: skip
    succeeded = [r for r in refunds if r.status == RefundStatus.SUCCEEDED]
    refunded_by_payment: dict[str, Decimal] = defaultdict(Decimal)
    for r in succeeded:
        refunded_by_payment[r.imp_uid] += Decimal(str(r.amount))
    refund_sums_differing = [
        uid
        for uid in set(refunded_by_payment) | {u for u, p in portone.items() if Decimal(str(p["cancel_amount"]))}
        if refunded_by_payment.get(uid, Decimal(0)) != Decimal(str(portone[uid]["cancel_amount"]))
    ]
    row_by_key = {r.idempotency_key: r.id for r in refunds}
    keys_answered_differently = [
        key for key, ids in ledger.refund_answers.items() if len(ids) > 1 or row_by_key.get(key) not in ids
    ]
    succeeded_ids = {r.id for r in succeeded}
    checks = {
        "5xx_from_api_to_driver": sum(1 for e in ledger.server_errors if "status" in e),
        "driver_requests_without_answer": sum(1 for e in ledger.server_errors if "error" in e),
        "5xx_from_api_to_sandbox_webhooks": len(sandbox_5xx),
        "sandbox_webhooks_without_answer": len(sandbox_unanswered),
        "sandbox_webhooks_not_delivered": len(undelivered),
        "webhook_events_missing": ledger.webhooks_answered + len(sandbox_answered) - events,
        "webhook_events_unprocessed": unprocessed,
        "payments_lost": len(lost),
        "payments_differing_from_portone": len(differing),
        "payment_rows_doubled": len(payment_rows) - len(ours),
        "refunds_answered_201_without_row": len(ledger.refunds_succeeded - succeeded_ids),
        "refunds_succeeded_not_asked_by_the_load": sum(
            1 for r in succeeded if r.idempotency_key not in ledger.refund_keys
        ),
        "refunds_succeeded_vs_cancels_applied": len(succeeded) - cancels.get("applied", 0),
        "cancels_refused_by_portone": sum(n for outcome, n in cancels.items() if outcome != "applied"),
        "payments_whose_refunds_differ_from_portone": len(refund_sums_differing),
        "refunds_left_open": sum(1 for r in refunds if r.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN)),
        "idempotency_keys_answered_with_another_refund": len(keys_answered_differently),
        "dashboard_read_errors": len(ledger.dashboard_errors),
    }
    details = {
        "server_errors": ledger.server_errors[:20],
        "lost": lost[:20],
        "differing": differing[:20],
        "refund_sums_differing": refund_sums_differing[:20],
        "keys_answered_differently": keys_answered_differently[:20],
        "dashboard_errors": ledger.dashboard_errors[:20],
        "sandbox_5xx": sandbox_5xx[:20],
    }
    totals = {
        "payments_created_at_sandbox": len(ledger.created),
        "payments_in_our_db": len(ours),
        "webhook_events": events,
        "sandbox_webhook_deliveries": len(deliveries),
        "sandbox_webhook_attempts": len(attempts),
        "refunds_succeeded": len(succeeded),
        "cancels_at_sandbox": dict(cancels),
    }
    return {"checks": checks, "totals": totals, "details": details}


# -- the run --------------------------------------------------------------------------------------


async def drive(stack: Stack, seconds: float, workers: dict[str, int], ledger: Ledger, rng: random.Random) -> float:
    """The load until `seconds` have passed and every worker has finished its flow; the time taken."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(60.0)
    async with (
        httpx.AsyncClient(base_url=stack.api_url, limits=limits, timeout=timeout, trust_env=False) as api,
        httpx.AsyncClient(base_url=stack.sandbox_url, limits=limits, timeout=timeout, trust_env=False) as sandbox,
    ):
        load = Load(api, sandbox, stack.env["INTERNAL_API_TOKEN"], ledger, rng)
        roles = {"customers": load.customer, "webhooks": load.webhooks, "refunds": load.refunds}
        tasks = [asyncio.create_task(roles[role]()) for role, count in workers.items() for _ in range(count)]
        started = time.monotonic()
        await asyncio.sleep(seconds)
        load.stop.set()  # each worker finishes the flow it is in
        await asyncio.gather(*tasks)
        return time.monotonic() - started


T = TypeVar("T")


def _in_own_thread(call: Callable[[], T]) -> T:
    """Run `call` in a fresh thread: it gets its own event loop even when this thread already
    runs one (pytest after a Playwright test, a notebook)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def run(
    seconds: float,
    database_url: str | None = None,
    *,
    customers: int = 6,
    webhook_workers: int = 2,
    refund_workers: int = 2,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the soak and return its report; `report["failures"]` names the checks that failed."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible mix
    ledger = Ledger()
    workers = {"customers": customers, "webhooks": webhook_workers, "refunds": refund_workers}
    samples: dict[str, list[tuple[float, int]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="chekar-soak-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'soak.db'}"
        with (
            running_stack(url, log_dir=Path(tmp)) as stack,
            httpx.Client(base_url=stack.sandbox_url, timeout=120, trust_env=False) as sandbox,
        ):
            assert stack.api_pid is not None and stack.sandbox_pid is not None
            sandbox.post(
                "/sandbox/config",
                json={
                    "webhook_url": f"{stack.api_url}/portone/webhook",
                    "webhook_duplicates": 1,  # PortOne may deliver a webhook more than once
                    "webhook_on_api_cancel": True,
                    "webhook_timeout_seconds": 60,
                },
            ).raise_for_status()
            t0 = time.monotonic()
            stop_reads = threading.Event()
            reader = threading.Thread(
                target=dashboard_reads,
                args=(url, stack.sandbox_url, ledger, stop_reads, random.Random(seed + 1)),  # noqa: S311
                name="dashboard-reads",
            )
            with sampling({"api": stack.api_pid, "sandbox": stack.sandbox_pid}, samples, t0):
                reader.start()
                try:
                    elapsed = _in_own_thread(lambda: asyncio.run(drive(stack, seconds, workers, ledger, rng)))
                finally:
                    stop_reads.set()
                    reader.join()
                load_end = time.monotonic() - t0
                deliveries = drain_sandbox_webhooks(sandbox)
            results = check(url, sandbox, ledger, deliveries)
        api_log = (Path(tmp) / "api.log").read_text(errors="replace")[-4000:]
    memory = {name: memory_verdict(values, warmup_seconds(seconds), load_end) for name, values in samples.items()}
    failures = [name for name, value in results["checks"].items() if value != 0]
    if not memory["api"]["flat"]:
        failures.append("api_memory_not_flat" if "growth_mib" in memory["api"] else "api_memory_too_few_samples")
    return {
        "seconds": round(elapsed, 1),
        "database": make_url(url).get_backend_name(),
        "workers": workers,
        "throughput": {kind: k.summary(elapsed) for kind, k in sorted(ledger.kinds.items())},
        "memory": memory,
        **results,
        "rss_samples_mib": {name: [(t, round(b / 2**20, 1)) for t, b in values] for name, values in samples.items()},
        "api_log_tail": api_log if failures else "",
        "failures": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--database-url", help="an existing, empty database instead of a throwaway one")
    parser.add_argument("--customers", type=int, default=6)
    parser.add_argument("--webhook-workers", type=int, default=2)
    parser.add_argument("--refund-workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url is None and args.database == "postgresql":
            from tools.throwaway_postgres import running_postgres

            server = stack.enter_context(running_postgres())
            url = server.url(server.create_database("soak"))
        report = run(
            args.seconds,
            url,
            customers=args.customers,
            webhook_workers=args.webhook_workers,
            refund_workers=args.refund_workers,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(summary(report))
    print(f"full report: {args.out}")
    raise SystemExit(1 if report["failures"] else 0)


def summary(report: dict[str, Any]) -> str:
    lines = [f"soak: {report['seconds']} s on {report['database']}, workers {report['workers']}", ""]
    lines.append(f"{'kind':<28}{'count':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}  answers")
    for kind, k in report["throughput"].items():
        lines.append(
            f"{kind:<28}{k['count']:>8}{k['per_second']:>9}{k['p50_ms']!s:>9}{k['p99_ms']!s:>9}  {k['statuses']}"
        )
    lines.append("")
    for name, m in report["memory"].items():
        if "growth_mib" in m:
            lines.append(
                f"RSS {name}: first quarter {m['first_quarter_median_mib']} MiB, last quarter "
                f"{m['last_quarter_median_mib']} MiB (growth {m['growth_mib']}, allowed {m['allowed_growth_mib']}; "
                f"slope {m['slope_mib_per_minute']} MiB/min; peak {m['peak_mib']}) {'flat' if m['flat'] else 'NOT FLAT'}"
            )
        else:
            lines.append(f"RSS {name}: {m['reason']}")
    lines.append("")
    lines += [f"{name:<48}{value}" for name, value in report["checks"].items()]
    lines.append(f"totals: {report['totals']}")
    lines.append("FAILED: " + ", ".join(report["failures"]) if report["failures"] else "all checks passed")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
