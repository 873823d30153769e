"""Two API processes, two dashboards and the scheduler on one PostgreSQL database (issue 16, point 5):
what one process does, the others see, and nothing is done twice or lost.

Each test reads the outcome where it is kept: our database (the tables the processes write) and
the sandbox's own record of what PortOne was asked (its payments and its log of cancel requests),
never the processes' answers alone."""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select

from services.core.models import Payment, ReconciliationRun, Refund, RefundStatus, WebhookEvent, utcnow
from tests.e2e.conftest import UI_TIMEOUT_MS, login, wait_for_app
from tests.factories import APPROVED_CARD
from tests.multiprocess.conftest import (
    OPERATOR,
    REFUND_GRACE_SECONDS,
    REFUND_LEASE_SECONDS,
    Cluster,
    answer_json,
    log_of,
    refund_headers,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

PAID = Decimal("50000")  # the fee table's KRW amount: what every order here costs
SIGN_IN_TITLE = "체카 결제 운영 로그인"


# --- paying, as the customer's app and PortOne would ------------------------------------------------------


def new_order(api_url: str, n: int) -> str:
    answer = httpx.post(
        f"{api_url}/api/orders",
        json={"customer_email": f"mp{n}@example.com", "customer_name": "김체카", "customer_phone": "010-0000-0000"},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["merchant_uid"])


def checkout(cluster: Cluster, merchant_uid: str, **extra: Any) -> str:
    """The customer pays in PortOne's window (the sandbox); PortOne's imp_uid. No webhook is sent."""
    body = {"merchant_uid": merchant_uid, "amount": str(PAID), "card_number": APPROVED_CARD, **extra}
    answer = cluster.sandbox.http.post("/sandbox/checkout", json=body)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["imp_uid"])


def complete(api_url: str, imp_uid: str, merchant_uid: str) -> httpx.Response:
    return httpx.post(
        f"{api_url}/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid}, timeout=60
    )


def paid_payment(cluster: Cluster, api_url: str, n: int) -> tuple[str, str]:
    merchant_uid = new_order(api_url, n)
    imp_uid = checkout(cluster, merchant_uid)
    answer = complete(api_url, imp_uid, merchant_uid)
    assert answer.status_code == 200, answer.text
    return imp_uid, merchant_uid


def portone_payment(cluster: Cluster, imp_uid: str) -> dict[str, Any]:
    return cluster.sandbox.payment(imp_uid)


def cancels_sent(cluster: Cluster, imp_uid: str) -> list[dict[str, Any]]:
    """Every cancel request PortOne received for this payment, applied or refused (the sandbox's log)."""
    return [c for c in cluster.sandbox.calls()["cancels"] if (c.get("params") or {}).get("imp_uid") == imp_uid]


def reason_for(key: str) -> str:
    """The refund's reason names its idempotency key, so PortOne's log shows which key each cancel was."""
    return f"multiprocess refund {key}"


def refund(api_url: str, imp_uid: str, key: str, amount: Decimal) -> httpx.Response:
    return httpx.post(
        f"{api_url}/api/payments/{imp_uid}/refunds",
        json={"amount": str(amount), "reason": reason_for(key)},
        headers=refund_headers(key),
        timeout=90,
    )


def all_at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls in threads released together; their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def our_refunds(cluster: Cluster, imp_uid: str) -> list[Refund]:
    with cluster.session() as session:
        return list(session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == imp_uid).order_by(Refund.id)))


def our_payment(cluster: Cluster, imp_uid: str) -> Payment:
    with cluster.session() as session:
        rows = list(session.scalars(select(Payment).where(Payment.imp_uid == imp_uid)))
    assert len(rows) == 1, f"{len(rows)} rows for {imp_uid}"
    return rows[0]


def assert_refunds_agree_with_portone(cluster: Cluster, imp_uid: str) -> list[Refund]:
    """Our refunded total equals PortOne's cancel_amount, within what was paid; every attempt is
    settled; PortOne received (and applied) exactly one cancel per succeeded attempt, each key once."""
    refunds = our_refunds(cluster, imp_uid)
    unsettled = [(r.id, r.status) for r in refunds if r.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN)]
    assert not unsettled, f"{imp_uid}: refund attempts left half-recorded: {unsettled}"
    succeeded = [r for r in refunds if r.status == RefundStatus.SUCCEEDED]
    portone = portone_payment(cluster, imp_uid)
    refunded = sum((r.amount for r in succeeded), Decimal(0))
    assert refunded == our_payment(cluster, imp_uid).cancel_amount == Decimal(str(portone["cancel_amount"]))
    assert refunded <= Decimal(str(portone["amount"])) == PAID
    sent = cancels_sent(cluster, imp_uid)
    twice = {reason: n for reason, n in Counter(c["params"].get("reason") for c in sent).items() if n > 1}
    assert not twice, f"{imp_uid}: a refund was sent to PortOne more than once: {twice}"
    # Our own checks stop what PortOne would refuse: every cancel it received, it applied.
    assert all(c["outcome"] == "applied" for c in sent), [(c["params"].get("reason"), c["message"]) for c in sent]
    assert len(sent) == len(succeeded), (sent, [(r.idempotency_key, r.amount) for r in succeeded])
    assert {c["params"]["reason"] for c in sent} == {r.reason for r in succeeded}
    assert len(portone.get("cancel_history") or []) == len(succeeded)
    return refunds


# --- 1. refunds ---------------------------------------------------------------------------------------------


@pytest.mark.reliability(
    area="concurrency",
    case="20 partial refunds of one payment at once, spread over two API processes on one PostgreSQL, some keys repeated on the other process, asking more than was paid",
    outcome="our refunded total equals PortOne's cancel_amount, never above what was paid; PortOne receives one cancel per successful refund and no key twice; a repeated key answers the same refund",
)
def test_concurrent_refunds_of_one_payment_over_both_apis_never_exceed_it_and_each_is_sent_once(
    cluster: Cluster,
) -> None:
    imp_uid, _ = paid_payment(cluster, cluster.api_urls[0], 100)
    amounts = [Decimal(a) for a in (3000, 5000, 7000, 4000, 6000, 8000, 2000, 9000, 5000, 7000, 3000, 6000, 4000, 8000)]
    assert sum(amounts) > PAID  # more is asked than was paid
    keys = [f"mp1-{imp_uid}-{i:02d}" for i in range(len(amounts))]
    plan = [(cluster.api_urls[i % 2], keys[i], amounts[i]) for i in range(len(keys))]
    # The same key again, at the same moment, on the other API.
    plan += [(cluster.api_urls[(i + 1) % 2], keys[i], amounts[i]) for i in (0, 3, 5, 8, 10, 13)]
    random.Random(16).shuffle(plan)
    assert len(plan) == 20

    answers = all_at_once([partial(refund, url, imp_uid, key, amount) for url, key, amount in plan])

    by_key: dict[str, list[httpx.Response]] = {}
    for (_, key, _), answer in zip(plan, answers, strict=True):
        by_key.setdefault(key, []).append(answer)
        assert answer.status_code in (201, 409), f"{key}: {answer.status_code} {answer.text}"
    refunds = assert_refunds_agree_with_portone(cluster, imp_uid)
    rows = {r.idempotency_key: r for r in refunds}
    assert len(rows) == len(refunds)  # one row per key
    for key, key_answers in by_key.items():
        for answer in key_answers:
            if answer.status_code == 201:  # succeeded, first time or replayed: the same refund
                assert rows[key].status == RefundStatus.SUCCEEDED
                assert answer.json()["refund_id"] == rows[key].id
    succeeded_keys = {k for k, r in rows.items() if r.status == RefundStatus.SUCCEEDED}
    assert succeeded_keys and succeeded_keys != set(keys)  # some went through, not all could
    assert {k for k, a in by_key.items() if any(x.status_code == 201 for x in a)} == succeeded_keys


# --- 2. webhooks --------------------------------------------------------------------------------------------


@pytest.mark.reliability(
    area="concurrency",
    case="V1 webhooks of new payments (paid, virtual account issued, cancelled) delivered alternately to two API processes, some at once to both",
    outcome="each delivery recorded once and processed; one payment row each, its state PortOne's; a console cancel recorded once",
)
def test_webhooks_delivered_alternately_to_both_apis_are_each_recorded_once(cluster: Cluster) -> None:
    payments: list[tuple[str, str]] = []
    for n in range(10):
        merchant_uid = new_order(cluster.api_urls[n % 2], 200 + n)
        if n in (3, 7):  # a virtual account issued, not yet paid
            imp_uid = checkout(cluster, merchant_uid, pay_method="vbank")
        else:
            imp_uid = checkout(cluster, merchant_uid)
        if n in (4, 8):  # cancelled in PortOne's console
            cluster.sandbox.http.post(f"/sandbox/payments/{imp_uid}/cancel", json={}).raise_for_status()
        payments.append((imp_uid, merchant_uid))
    status = {imp_uid: str(portone_payment(cluster, imp_uid)["status"]) for imp_uid, _ in payments}
    assert sorted(Counter(status.values()).items()) == [("cancelled", 2), ("paid", 6), ("ready", 2)]

    deliveries: list[tuple[str, str, str]] = []  # (api, imp_uid, merchant_uid)
    for n, (imp_uid, merchant_uid) in enumerate(payments):
        deliveries.append((cluster.api_urls[n % 2], imp_uid, merchant_uid))
        # Some are delivered again (PortOne's retry, or its console and its API both telling),
        # to the other process at the same moment; a cancel four times, twice to each.
        repeats = 3 if status[imp_uid] == "cancelled" else 1 if n % 3 == 0 else 0
        deliveries += [(cluster.api_urls[(n + 1 + r) % 2], imp_uid, merchant_uid) for r in range(repeats)]

    def deliver(url: str, imp_uid: str, merchant_uid: str) -> httpx.Response:
        body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": status[imp_uid]}
        return httpx.post(f"{url}/portone/webhook", json=body, timeout=60)

    answers = all_at_once([partial(deliver, *d) for d in deliveries])

    for (url, imp_uid, _), answer in zip(deliveries, answers, strict=True):
        assert answer.status_code == 200, f"{imp_uid} at {url}: {answer.status_code} {answer.text}"
        assert answer.json()["result"] == "processed"
    answered_ids = [int(a.json()["event_id"]) for a in answers]
    assert len(set(answered_ids)) == len(deliveries)  # each delivery its own record
    imp_uids = [imp_uid for imp_uid, _ in payments]
    with cluster.session() as session:
        events = list(session.scalars(select(WebhookEvent).where(WebhookEvent.imp_uid.in_(imp_uids))))
        rows = Counter(session.scalars(select(Payment.imp_uid).where(Payment.imp_uid.in_(imp_uids))))
    assert sorted(e.id for e in events) == sorted(answered_ids)  # recorded once each, none lost, none extra
    assert all(e.result == "processed" and e.verified and e.processed_at is not None for e in events)
    assert Counter(e.imp_uid for e in events) == Counter(imp_uid for _, imp_uid, _ in deliveries)
    assert rows == Counter(imp_uids)  # one payment row each, whichever process got there first
    for imp_uid, _ in payments:
        portone = portone_payment(cluster, imp_uid)
        ours = our_payment(cluster, imp_uid)
        assert (ours.status, ours.amount, ours.cancel_amount, ours.verified) == (
            portone["status"],
            Decimal(str(portone["amount"])),
            Decimal(str(portone["cancel_amount"])),
            True,
        ), imp_uid
        # A console cancel is recorded as one refund row, not one per process that saw it.
        history = portone.get("cancel_history") or []
        refunds = our_refunds(cluster, imp_uid)
        assert sorted(r.portone_cancellation_id or "" for r in refunds) == sorted(
            h["cancellation_id"] for h in history
        ), imp_uid


@pytest.mark.reliability(
    area="concurrency",
    case="console cancels (partial, full, two partial) of payments we hold, each announced four times at once over two API processes",
    outcome="one refund row per PortOne cancellation; our refunded total and status equal PortOne's",
)
def test_cancels_of_known_payments_announced_to_both_apis_at_once_are_recorded_once(cluster: Cluster) -> None:
    """Payments we already hold, cancelled in PortOne's console (in part, in full, twice in part),
    each cancel announced four times at once, twice to each API: one refund row per cancellation."""
    payments = [paid_payment(cluster, cluster.api_urls[n % 2], 300 + n) for n in range(4)]
    cancels = [["10000"], [], ["5000", "7000"], ["20000"]]  # [] = the whole payment
    for (imp_uid, _), amounts in zip(payments, cancels, strict=True):
        for amount in amounts or [None]:
            body = {"reason": "console"} if amount is None else {"amount": amount, "reason": "console"}
            cluster.sandbox.http.post(f"/sandbox/payments/{imp_uid}/cancel", json=body).raise_for_status()

    def deliver(url: str, imp_uid: str, merchant_uid: str) -> httpx.Response:
        body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "cancelled"}
        return httpx.post(f"{url}/portone/webhook", json=body, timeout=60)

    deliveries = [(url, imp_uid, merchant_uid) for imp_uid, merchant_uid in payments for url in cluster.api_urls * 2]
    answers = all_at_once([partial(deliver, *d) for d in deliveries])

    assert [a.status_code for a in answers] == [200] * len(deliveries), [a.text for a in answers]
    for imp_uid, _ in payments:
        portone = portone_payment(cluster, imp_uid)
        refunds = our_refunds(cluster, imp_uid)
        assert sorted(r.portone_cancellation_id or "" for r in refunds) == sorted(
            h["cancellation_id"] for h in portone["cancel_history"]
        ), imp_uid
        ours = our_payment(cluster, imp_uid)
        assert (ours.status, ours.cancel_amount) == (portone["status"], Decimal(str(portone["cancel_amount"])))
        assert sum((r.amount for r in refunds), Decimal(0)) == ours.cancel_amount


# --- 3. reconciliations -------------------------------------------------------------------------------------


def _runs(cluster: Cluster) -> list[ReconciliationRun]:
    with cluster.session() as session:
        return list(session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.started_at)))


def _running(cluster: Cluster, started_by: str) -> ReconciliationRun | None:
    return next((r for r in _runs(cluster) if r.status == "running" and r.started_by == started_by), None)


def _nothing_running(cluster: Cluster) -> bool:
    return not any(r.status == "running" for r in _runs(cluster))


@pytest.fixture
def context(browser: Browser) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


BUSY = "다른 대조가 진행 중입니다"  # reconcile.busy: the lock is held by another run
DONE = "대조 완료"  # reconcile.done


def _reconcile_button(page: Page, cluster: Cluster) -> Any:
    page.goto(cluster.dashboard_urls[0] + "/alerts")
    wait_for_app(page)
    page.get_by_text("포트원과 대조", exact=True).click()
    button = page.get_by_role("button", name="지금 대조 실행")
    expect(button).to_be_visible()
    return button


def _press_run_while_the_scheduler_runs(page: Page, cluster: Cluster) -> None:
    """Press the button while a scheduled run holds the lock; the page says another run is in
    progress. A press that came just after the scheduled run ended ran a run of its own: again."""
    for _ in range(3):
        button = _reconcile_button(page, cluster)
        wait_until("a scheduled run in progress", lambda: _running(cluster, "scheduler"), timeout=60, every=0.05)
        button.click()
        expect(page.get_by_text(BUSY).or_(page.get_by_text(DONE))).to_be_visible(timeout=90_000)
        wait_for_app(page)
        if page.get_by_text(BUSY).count():
            return
    pytest.fail("three presses of the button never met a scheduled run in progress")


def _start_a_dashboard_run(page: Page, cluster: Cluster) -> None:
    """Press the button when no run holds the lock; returns once the dashboard's run is running.
    The scheduler may take the lock first: then the page says so and the button is pressed again."""
    for _ in range(3):
        button = _reconcile_button(page, cluster)
        wait_until("no run in progress", lambda: _nothing_running(cluster), timeout=60, every=0.05)
        button.click()
        started = wait_until(
            "the dashboard's run or its refusal",
            lambda: _running(cluster, OPERATOR[0]) or page.get_by_text(BUSY).count(),
            timeout=60,
            every=0.05,
        )
        if isinstance(started, ReconciliationRun):
            return
        wait_for_app(page)
    pytest.fail("the scheduler took the lock before each of three presses of the button")


@pytest.mark.reliability(
    area="concurrency",
    case="the scheduler's reconciliation, the dashboard's run button and python -m cli reconcile started while another run holds the lock",
    outcome="one run at a time: the button says another run is in progress, the command line exits non-zero saying so; no two runs overlap in reconciliation_runs",
)
def test_a_scheduled_and_a_dashboard_reconciliation_started_together_run_one_after_the_other(
    cluster: Cluster, context: BrowserContext
) -> None:
    scheduler = cluster.servers["scheduler"]
    assert scheduler.process is not None and scheduler.process.poll() is None, log_of(scheduler)
    page = context.new_page()
    login(page, cluster.stack(0), *OPERATOR)
    started = utcnow()
    # PortOne's listing answers slowly, so each run lasts seconds: long enough to be caught running,
    # short enough to leave the scheduler idle between its runs (every 6 s).
    cluster.sandbox.configure(latency_ms=1500, latency_only="GET /payments/status")
    try:
        # A scheduled run holds the lock: the button's run is refused, and the page says why.
        _press_run_while_the_scheduler_runs(page, cluster)

        # The dashboard's run holds the lock: `python -m cli reconcile` started meanwhile is refused.
        _start_a_dashboard_run(page, cluster)
        cluster.sandbox.configure(latency_ms=5000)  # its listing slower still: it outlasts the command's start
        refused = cluster.run_cli("reconcile", "--since", "1h", "--quiet", check=False)
        assert _running(cluster, OPERATOR[0]) is not None  # still running after the refusal
        assert refused.returncode != 0, refused.stdout
        assert "another reconcile run is in progress" in refused.stderr
        expect(page.get_by_text(DONE)).to_be_visible(timeout=90_000)
    finally:
        cluster.sandbox.configure(latency_ms=0, latency_only=None)

    wait_until("no run in progress", lambda: _nothing_running(cluster), timeout=60)
    runs = [r for r in _runs(cluster) if r.started_at >= started]
    assert {r.started_by for r in runs} >= {"scheduler", OPERATOR[0]}
    assert all(r.status == "finished" and r.finished_at is not None for r in runs), [(r.id, r.status) for r in runs]
    for earlier, later in itertools.pairwise(_runs(cluster)):  # every run of the module, one at a time
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, (
            f"run #{earlier.id} ({earlier.started_by}, {earlier.started_at}–{earlier.finished_at}) overlaps "
            f"run #{later.id} ({later.started_by}, from {later.started_at})"
        )


# --- 4. sessions --------------------------------------------------------------------------------------------


def _cookie_set(tab: Page) -> bool:
    return any(c["name"] == "chekar_session" for c in tab.context.cookies())


def _signed_out(tab: Page) -> None:
    expect(tab.get_by_role("heading", name=SIGN_IN_TITLE)).to_be_visible()
    expect(tab.get_by_role("button", name="로그아웃")).to_have_count(0)


@pytest.mark.reliability(
    area="access",
    case="a dashboard sign-in used on a second dashboard process (same host, another port), and signed out there",
    outcome="the second process honours it without the sign-in form; its sign-out ends the sign-in on the first at its next action",
)
def test_a_sign_in_on_one_dashboard_works_on_the_other_and_a_sign_out_there_ends_it(
    cluster: Cluster, context: BrowserContext
) -> None:
    dashboard_b = cluster.dashboard_urls[1]
    first = context.new_page()
    login(first, cluster.stack(0), *OPERATOR)
    wait_until("the sign-in cookie", lambda: _cookie_set(first), timeout=30, every=0.1)

    other = context.new_page()  # the same browser: cookies are per host, not per port
    other.goto(dashboard_b + "/payments")
    wait_for_app(other)
    expect(other.get_by_role("button", name="로그아웃")).to_be_visible()
    expect(other.get_by_role("heading", name="결제 내역")).to_be_visible()
    expect(other.get_by_role("heading", name=SIGN_IN_TITLE)).to_have_count(0)
    expect(other.get_by_label("비밀번호", exact=True)).to_have_count(0)

    other.get_by_role("button", name="로그아웃").click()
    wait_for_app(other)
    _signed_out(other)

    # Dashboard A, still open, is signed out at its next action.
    first.get_by_test_id("stSidebarNavLink").filter(has_text="결제 내역").first.click()
    wait_for_app(first)
    _signed_out(first)
    expect(first.get_by_text("로그아웃되었습니다")).to_be_visible()


# --- 5. a process killed under load -------------------------------------------------------------------------


@dataclass
class Balancer:
    """A client in front of both APIs, as a load balancer: each request to the next API in turn; a
    connection that could not be made is tried on the other API, while a request cut off after it
    was sent is not sent again (nginx's proxy_next_upstream does the same for a POST): its answer
    is lost (None), as a client's would be."""

    urls: tuple[str, str]
    on_send: Callable[[str, str, dict[str, str]], None]  # (api, path, headers) before each send
    failovers: int = 0

    def __post_init__(self) -> None:
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def post(self, path: str, **kwargs: Any) -> httpx.Response | None:
        with self._lock:
            first = next(self._turn) % 2
        for attempt, index in enumerate((first, 1 - first)):
            self.on_send(self.urls[index], path, kwargs.get("headers") or {})
            try:
                return httpx.post(self.urls[index] + path, timeout=90, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if attempt:
                    raise
                with self._lock:
                    self.failovers += 1
            except httpx.TransportError:
                return None
        raise AssertionError("unreachable")


def _finished_scheduled_run_after(cluster: Cluster, moment: datetime) -> ReconciliationRun | None:
    return next(
        (r for r in _runs(cluster) if r.started_by == "scheduler" and r.status == "finished" and r.started_at > moment),
        None,
    )


@pytest.mark.reliability(
    area="fault",
    case="one of two API processes SIGKILLed under load (/complete, webhooks, refunds) while PortOne holds a refund it sent; the client fails over to the other process",
    outcome="nothing lost: every payment PortOne took is ours, every refund answered 201 recorded once, none sent twice, the one in flight settled by the next scheduled run and replayed to the client's retry; restarted, the process serves",
)
def test_killing_one_api_process_under_load_loses_nothing(cluster: Cluster) -> None:
    api_a = cluster.api_urls[0]
    victim = cluster.servers["api-a"]
    assert victim.process is not None
    payments: list[tuple[str, str]] = []
    for n in range(12):
        merchant_uid = new_order(cluster.api_urls[n % 2], 500 + n)
        payments.append((checkout(cluster, merchant_uid), merchant_uid))
    # PortOne holds each cancel a moment before applying it (having read it whole: it is applied
    # even when the sender is gone by then), so the kill lands while API A waits for one.
    cluster.sandbox.configure(latency_ms=800, latency_only="POST /payments/cancel")
    killed = threading.Event()
    killed_during: list[str] = []  # the key of the refund A had recorded as pending, and was sending
    refunds_to_a = itertools.count(1)

    def kill_a_once_recorded(key: str) -> None:
        def recorded() -> bool:
            with cluster.session() as session:
                status = session.scalar(select(Refund.status).where(Refund.idempotency_key == key))
            return status == RefundStatus.PENDING

        wait_until(f"API A to record refund {key}", recorded, timeout=60, every=0.02)
        os.killpg(victim.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
        killed_during.append(key)
        killed.set()

    def on_send(url: str, path: str, headers: dict[str, str]) -> None:
        # The third refund sent to A: A is killed once it has recorded the attempt, while PortOne
        # holds the cancel it sent (or just before it sends it).
        if url == api_a and path.endswith("/refunds") and next(refunds_to_a) == 3:
            threading.Thread(target=kill_a_once_recorded, args=(headers["Idempotency-Key"],), daemon=True).start()

    balancer = Balancer(cluster.api_urls, on_send)
    answers: dict[str, httpx.Response | None] = {}
    lost: list[str] = []
    lock = threading.Lock()

    def load(payment: tuple[str, str]) -> None:
        imp_uid, merchant_uid = payment
        completed = balancer.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
        webhook = balancer.post(
            "/portone/webhook", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "paid"}
        )
        for name, answer in (("complete", completed), ("webhook", webhook)):
            if answer is None:
                with lock:
                    lost.append(f"{name} {imp_uid}")
            else:
                assert answer.status_code == 200, answer.text
        for step, amount in enumerate((Decimal(10000), Decimal(15000))):
            key = f"mp5-{imp_uid}-{step}"
            answer = balancer.post(
                f"/api/payments/{imp_uid}/refunds",
                json={"amount": str(amount), "reason": reason_for(key)},
                headers=refund_headers(key),
            )
            with lock:
                answers[key] = answer
            if answer is None:  # the client does not know what happened: it asks no more of this payment
                with lock:
                    lost.append(f"refund {key}")
                break

    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(load, payments))
    finally:
        cluster.sandbox.configure(latency_ms=0, latency_only=None)
    load_ended = utcnow()
    assert killed.is_set() and victim.process.poll() is not None, "API A was never killed"
    assert balancer.failovers > 0  # requests after the kill went to B
    lost_keys = [key for key, answer in answers.items() if answer is None]
    assert killed_during[0] in lost_keys, (killed_during, lost)  # A died with a refund half-recorded

    # What was in flight is healed by the scheduler: its next run once the dead process's refund
    # lease and PortOne's grace for an unanswered cancel have passed.
    heal_from = load_ended + timedelta(seconds=REFUND_LEASE_SECONDS + REFUND_GRACE_SECONDS)
    wait_until(
        "a scheduled reconciliation after the load",
        lambda: _finished_scheduled_run_after(cluster, heal_from),
        timeout=90,
        every=0.5,
    )

    for imp_uid, _ in payments:
        portone = portone_payment(cluster, imp_uid)
        assert portone["status"] == "paid"
        ours = our_payment(cluster, imp_uid)  # every payment PortOne took is ours too
        assert ours.status == "paid" and ours.verified, imp_uid
        refunds = assert_refunds_agree_with_portone(cluster, imp_uid)  # all settled, none sent twice
        rows = {r.idempotency_key: r for r in refunds}
        assert len(rows) == len(refunds)
        for step in (0, 1):
            key = f"mp5-{imp_uid}-{step}"
            answer = answers.get(key)
            if key not in answers:  # not asked: the payment's first refund lost its answer
                assert key not in rows, key
            elif answer is None:  # its answer lost with A: settled from PortOne's record since
                assert key not in rows or rows[key].status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED), key
            elif answer.status_code in (201, 202):  # succeeded, or PortOne's answer lost: settled since
                assert rows[key].status == RefundStatus.SUCCEEDED or answer.status_code == 202, key
                assert answer_json(answer)["refund_id"] == rows[key].id
            else:  # refused while an earlier attempt of the payment was unsettled: nothing sent
                assert answer.status_code == 409, f"{key}: {answer.status_code} {answer.text}"
                assert key not in rows or rows[key].status != RefundStatus.SUCCEEDED, key
    with cluster.session() as session:
        unsettled = session.scalar(
            select(func.count())
            .select_from(Refund)
            .where(Refund.status.in_([RefundStatus.PENDING, RefundStatus.UNKNOWN]))
        )
    assert unsettled == 0

    # The client whose answer was lost asks again with the same key (A is gone: at B): a refund
    # A recorded is answered as it was settled (replayed, never sent again); one A never recorded
    # is made now. Either way PortOne received that refund once.
    for key in lost_keys:
        imp_uid = key.removeprefix("mp5-").rsplit("-", 1)[0]
        with cluster.session() as session:
            before = session.scalars(select(Refund).where(Refund.idempotency_key == key)).one_or_none()
        assert key not in killed_during or before is not None
        again = refund(cluster.api_urls[1], imp_uid, key, Decimal(10000 if key.endswith("-0") else 15000))
        if before is None:
            assert again.status_code == 201, again.text
        else:
            assert again.status_code == (201 if before.status == RefundStatus.SUCCEEDED else 502), again.text
            assert (again.json()["refund_id"], again.json()["replayed"]) == (before.id, True), again.text
        assert_refunds_agree_with_portone(cluster, imp_uid)

    # A comes back and serves: a refund replayed (the same refund, not a second one), and a new order.
    cluster.restart("api-a")
    imp_uid, key, row_id = next(
        (imp_uid, r.idempotency_key, r.id)
        for imp_uid, _ in payments
        for r in our_refunds(cluster, imp_uid)
        if r.status == RefundStatus.SUCCEEDED and r.idempotency_key
    )
    replay = refund(api_a, imp_uid, key, Decimal(10000 if key.endswith("-0") else 15000))
    assert replay.status_code == 201, replay.text
    assert (replay.json()["refund_id"], replay.json()["replayed"]) == (row_id, True)
    assert new_order(api_a, 599)
