"""The V2 webhook receiver (services/webhooks/v2.py) on both databases, with the V2 adapter reading
from the sandbox: a signed delivery is verified, then the payment is re-fetched from PortOne before
anything changes; forged, tampered, stale, unsigned and replayed deliveries are refused; every
delivery is recorded as a WebhookEvent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from services.core.models import Alert, Order, Payment, WebhookEvent, utcnow
from services.payments.orders import create_order
from services.portone.v2 import PortOneV2Client
from services.runtime import Runtime
from services.webhooks.v2 import Rejection, V2WebhookResult, receive
from tests.factories import SandboxControl, make_runtime
from tests.reliability.test_fault_database import HOLD_WRITE_LOCK, release
from tests.v2_support import STORE_ID, calls, checkout, configure, deliveries, gateway_swapped, signed, v2_gateway

OTHER_SECRET = "whsec_" + "b3RoZXItd2ViaG9vay1zZWNyZXQ="


@pytest.fixture(scope="module")
def shared_v2(sandbox_server: str) -> Iterator[PortOneV2Client]:
    gateway = v2_gateway(sandbox_server)
    yield gateway
    gateway.close()


@pytest.fixture
def rt(runtime: Runtime, shared_v2: PortOneV2Client) -> Iterator[Runtime]:
    with gateway_swapped(runtime, shared_v2) as swapped:
        yield swapped


def _paid_order(rt: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    """An order of ours paid through V2 (USD 38.50); returns (paymentId, the Transaction.Paid body)."""
    order = create_order(rt, customer_email="kim@example.com", customer_name="Kim", currency="USD")
    checkout(sandbox.http, order.merchant_uid, order.amount, "USD")
    # The checkout also sends Transaction.Ready (the window opened, webhook readme-v2.md): the Paid one.
    [delivery] = [d for d in deliveries(sandbox.http, order.merchant_uid) if d["type"] == "Transaction.Paid"]
    return order.merchant_uid, delivery["body"]


def _deliver(rt: Runtime, body: str | bytes, headers: dict[str, str]) -> Any:
    raw = body.encode() if isinstance(body, str) else body
    return receive(rt, body=raw, headers=headers, content_type="application/json", source_ip="127.0.0.1")


def _gets(sandbox: SandboxControl) -> int:
    return int(calls(sandbox.http)["counts"].get("GET /payments/{paymentId}", 0))


def _events(rt: Runtime) -> list[WebhookEvent]:
    with rt.db.read() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def _payment(rt: Runtime, payment_id: str) -> Payment | None:
    with rt.db.read() as session:
        return session.scalar(select(Payment).where(Payment.imp_uid == payment_id))


def test_a_signed_delivery_is_processed_after_a_re_fetch_and_its_replay_refused(
    rt: Runtime, sandbox: SandboxControl
) -> None:
    payment_id, body = _paid_order(rt, sandbox)
    headers = signed(body, webhook_id="msg_valid_1")
    before = _gets(sandbox)
    outcome = _deliver(rt, body, headers)
    assert outcome.result == V2WebhookResult.PROCESSED and outcome.payment_id == payment_id
    assert _gets(sandbox) == before + 1  # PortOne was asked; the webhook itself is not trusted
    payment = _payment(rt, payment_id)
    assert payment is not None and (payment.status, payment.currency, str(payment.amount)) == ("paid", "USD", "38.50")
    assert payment.verified
    with rt.db.read() as session:
        assert session.scalar(select(Order.status).where(Order.merchant_uid == payment_id)) == "paid"

    replay = _deliver(rt, body, headers)
    assert (replay.result, replay.reason) == (V2WebhookResult.REJECTED, Rejection.REPLAYED)
    assert _gets(sandbox) == before + 1  # a replay fetches nothing
    first, second = _events(rt)
    assert (first.result, first.verified, first.imp_uid, first.claimed_status) == (
        "processed", True, payment_id, "Transaction.Paid")  # fmt: skip
    assert (second.result, second.verified) == ("rejected", False) and "replayed" in (second.detail or "")
    assert first.body == second.body == body
    assert first.detail and first.detail.startswith('webhook-id="msg_valid_1"; ')


@pytest.mark.reliability(
    area="hostile input",
    case="V2 webhook forged, tampered, stale or unsigned",
    outcome="refused (4xx), recorded and alerted; nothing changes",
)
def test_forged_tampered_stale_and_unsigned_deliveries_are_refused_and_recorded(
    rt: Runtime, sandbox: SandboxControl
) -> None:
    payment_id, body = _paid_order(rt, sandbox)
    tampered = body.replace('"Transaction.Paid"', '"Transaction.Cancelled"')
    now = int(time.time())
    attempts = [
        (body, signed(body, webhook_id="msg_2", secret=OTHER_SECRET), Rejection.BAD_SIGNATURE),
        (tampered, signed(body, webhook_id="msg_2"), Rejection.BAD_SIGNATURE),
        (body, signed(body, webhook_id="msg_2", at=now - 600), Rejection.STALE_TIMESTAMP),
        (body, signed(body, webhook_id="msg_2", at=now + 600), Rejection.STALE_TIMESTAMP),
        (body, {"content-type": "application/json"}, Rejection.UNSIGNED),
        (body, {**signed(body, webhook_id="msg_2"), "webhook-signature": "v1,bm90IGEgc2lnbmF0dXJl"},
         Rejection.BAD_SIGNATURE),
        (b"\xff\xfe", signed(b"\xff\xfe", webhook_id="msg_3"), Rejection.UNREADABLE),
    ]  # fmt: skip
    before = _gets(sandbox)
    for raw, headers, reason in attempts:
        outcome = _deliver(rt, raw, headers)
        assert (outcome.result, outcome.reason) == (V2WebhookResult.REJECTED, reason), (headers, reason)
    assert _gets(sandbox) == before and _payment(rt, payment_id) is None  # nothing fetched, nothing changed
    events = _events(rt)
    assert len(events) == len(attempts) and {e.result for e in events} == {"rejected"}
    assert [e.detail.split("; ", 1)[1].split(":")[0] for e in events if e.detail] == [str(a[2]) for a in attempts]
    with rt.db.read() as session:  # and reconciliation's rule raised them for ops to see
        assert "webhook_unverified" in {a.kind for a in session.scalars(select(Alert))}

    # Refused deliveries of an id do not make its genuine delivery a replay.
    genuine = _deliver(rt, body, signed(body, webhook_id="msg_2"))
    assert genuine.result == V2WebhookResult.PROCESSED


def test_unavailable_portone_then_retry_other_events_and_unknown_payments(rt: Runtime, sandbox: SandboxControl) -> None:
    payment_id, body = _paid_order(rt, sandbox)
    configure(sandbox.http, fail_next=3)
    failed = _deliver(rt, body, signed(body, webhook_id="msg_retry"))
    assert failed.result == V2WebhookResult.ERROR and _payment(rt, payment_id) is None
    retried = _deliver(rt, body, signed(body, webhook_id="msg_retry"))  # PortOne's retry: same id
    assert retried.result == V2WebhookResult.PROCESSED and _payment(rt, payment_id) is not None

    billing = json.dumps({"type": "BillingKey.Issued", "timestamp": "2024-04-25T10:00:00.000Z",
                          "data": {"storeId": STORE_ID, "billingKey": "billing-key-1"}})  # fmt: skip
    ignored = _deliver(rt, billing, signed(billing, webhook_id="msg_billing"))
    assert ignored.result == V2WebhookResult.IGNORED
    assert _deliver(rt, billing, signed(billing, webhook_id="msg_billing")).reason == Rejection.REPLAYED

    stranger = body.replace(payment_id, "not-a-payment-of-portone")
    unknown = _deliver(rt, stranger, signed(stranger, webhook_id="msg_unknown"))
    assert (unknown.result, unknown.reason) == (V2WebhookResult.REJECTED, Rejection.UNKNOWN_PAYMENT)
    assert [e.result for e in _events(rt)] == ["error", "processed", "ignored", "rejected", "rejected"]


@pytest.mark.reliability(
    area="hostile input",
    case="V2 webhook replayed at the same moment as the original",
    outcome="exactly one delivery accepted (unique webhook-id claim), the others refused as replays",
)
def test_replays_racing_the_original_are_accepted_once(rt: Runtime, sandbox: SandboxControl) -> None:
    from concurrent.futures import ThreadPoolExecutor

    payment_id, body = _paid_order(rt, sandbox)
    headers = signed(body, webhook_id="msg_race_1")
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(lambda _: _deliver(rt, body, headers), range(6)))
    assert sorted(str(o.result) for o in outcomes) == ["processed"] + ["rejected"] * 5
    assert {o.reason for o in outcomes if o.result == V2WebhookResult.REJECTED} == {Rejection.REPLAYED}
    with rt.db.read() as session:
        claims = session.scalars(select(WebhookEvent.accepted_webhook_id).where(WebhookEvent.imp_uid == payment_id))
        assert [c for c in claims if c] == ["msg_race_1"]


def test_a_delivery_that_ended_in_error_is_processed_when_portone_retries_it(
    rt: Runtime, sandbox: SandboxControl
) -> None:
    payment_id, body = _paid_order(rt, sandbox)
    headers = signed(body, webhook_id="msg_retry_1")
    configure(sandbox.http, fail_next=5)  # PortOne cannot be asked: every read attempt fails
    first = _deliver(rt, body, headers)
    assert first.result == V2WebhookResult.ERROR
    configure(sandbox.http, fail_next=0)
    retried = _deliver(rt, body, signed(body, webhook_id="msg_retry_1"))
    assert retried.result == V2WebhookResult.PROCESSED
    payment = _payment(rt, payment_id)
    assert payment is not None and payment.status == "paid"


LOCK_HELD_SECONDS = 1.5  # longer than the busy timeout below: the first write gives up, the next waits
BUSY_TIMEOUT_SECONDS = 1.0


class _WriteLockOnPaymentRead(httpx.HTTPTransport):
    """Loopback HTTP to the sandbox; when the receiver first reads the payment from PortOne (after
    it claimed the webhook-id), another process takes SQLite's write lock for a moment."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.holder: subprocess.Popen[str] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.holder is None and request.method == "GET" and "/payments/" in request.url.path:
            self.holder = subprocess.Popen(  # noqa: S603 - our own interpreter
                [sys.executable, "-c", HOLD_WRITE_LOCK, self.path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == "locked"
            threading.Timer(LOCK_HELD_SECONDS, release, args=(self.holder,)).start()
        return super().handle_request(request)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_delivery_that_failed_on_a_locked_database_is_processed_when_portone_retries_it(
    database_url: str, sandbox: SandboxControl, sandbox_server: str
) -> None:
    path = database_url.removeprefix("sqlite:///")
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox_server,
        portone_api_version="v2",
        sqlite_busy_timeout_seconds=BUSY_TIMEOUT_SECONDS,
    )
    transport = _WriteLockOnPaymentRead(path)
    gateway = v2_gateway(sandbox_server, transport=transport)
    try:
        with gateway_swapped(rt, gateway):
            payment_id, body = _paid_order(rt, sandbox)
            try:
                first = _deliver(rt, body, signed(body, webhook_id="msg_locked_1"))
                assert first.result == V2WebhookResult.ERROR  # 503: PortOne retries
            except OperationalError:
                pass  # the API answers 503 database_unavailable: PortOne retries
            holder = transport.holder
            assert holder is not None and holder.wait(timeout=30) == 0
            for pipe in (holder.stdin, holder.stdout):
                if pipe is not None:
                    pipe.close()
            retried = _deliver(rt, body, signed(body, webhook_id="msg_locked_1"))
            assert retried.result == V2WebhookResult.PROCESSED, retried.detail
            payment = _payment(rt, payment_id)
            assert payment is not None and payment.status == "paid"
    finally:
        gateway.close()
        rt.close()


def test_a_claim_left_without_a_result_by_a_crash_is_free_after_the_limit(rt: Runtime, sandbox: SandboxControl) -> None:
    payment_id, body = _paid_order(rt, sandbox)
    with rt.db.write() as session:  # what a process killed between claim and finish leaves behind
        for webhook_id, age in (("msg_crashed_1", timedelta(minutes=10)), ("msg_busy_1", timedelta(seconds=10))):
            session.add(
                WebhookEvent(
                    received_at=utcnow() - age,
                    content_type="application/json",
                    body=body,
                    imp_uid=payment_id,
                    detail=f'webhook-id="{webhook_id}"; received',
                    accepted_webhook_id=webhook_id,
                )
            )
    retried = _deliver(rt, body, signed(body, webhook_id="msg_crashed_1"))
    assert retried.result == V2WebhookResult.PROCESSED, retried.detail
    # A claim younger than the limit may still be processing: a second delivery is a replay.
    racing = _deliver(rt, body, signed(body, webhook_id="msg_busy_1"))
    assert (racing.result, racing.reason) == (V2WebhookResult.REJECTED, Rejection.REPLAYED)
    with rt.db.read() as session:
        claims = session.scalars(select(WebhookEvent.accepted_webhook_id).where(WebhookEvent.imp_uid == payment_id))
        assert sorted(c for c in claims if c) == ["msg_busy_1", "msg_crashed_1"]
