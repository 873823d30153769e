"""Webhook deliveries that arrive together are verified together, each with its own outcome."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from services.alerts.store import AlertKind
from services.core.models import Alert, Payment, WebhookEvent
from services.payments import orders
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from services.webhooks.batcher import WebhookBatcher
from tests.factories import SandboxControl, new_order

PORTONE_IP = "52.78.100.19"


def _delivery(body: object, content_type: str = "application/json") -> webhooks.Delivery:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return webhooks.Delivery(body=raw, content_type=content_type, source_ip=PORTONE_IP)


def _paid(runtime: Runtime, sandbox: SandboxControl, count: int) -> list[dict[str, str]]:
    hooks = []
    for index in range(count):
        order = orders.create_order(runtime, customer_email=f"c{index}@example.com", customer_name="고객")
        imp_uid = sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"]
        hooks.append({"imp_uid": imp_uid, "merchant_uid": order.merchant_uid, "status": "paid"})
    return hooks


def test_a_mixed_batch_takes_one_portone_lookup_and_judges_each_delivery(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    hooks = _paid(runtime, sandbox, 4)
    batch = [
        _delivery(hooks[0]),
        _delivery(hooks[1]),
        _delivery({**hooks[2], "status": "cancelled"}),  # claims what PortOne does not say
        _delivery(hooks[3]),
        _delivery(hooks[0]),  # duplicate
        _delivery({"imp_uid": "imp_000000000000", "merchant_uid": "nobody", "status": "paid"}),
        _delivery(b"\xff\xfe not text", "application/json"),
        _delivery({"merchant_uid": hooks[1]["merchant_uid"]}),  # no imp_uid
    ]
    before = sandbox.calls()["counts"]
    outcomes = webhooks.receive_many(runtime, batch)
    after = sandbox.calls()["counts"]

    results = [str(o.result) for o in outcomes]
    assert results == ["processed"] * 5 + ["rejected"] * 3
    assert "(the webhook claimed cancelled)" in outcomes[2].detail
    assert "PortOne has no payment" in outcomes[5].detail
    assert "unreadable body" in outcomes[6].detail and outcomes[7].detail == "no imp_uid in the body"
    # One batched look-up for the five payments named, none one by one.
    assert after.get("GET /payments", 0) - before.get("GET /payments", 0) == 1
    assert after.get("GET /payments/{imp_uid}", 0) == before.get("GET /payments/{imp_uid}", 0)
    with runtime.db.read() as session:
        payments = session.scalars(select(Payment)).all()
        assert sorted(p.imp_uid for p in payments) == sorted(h["imp_uid"] for h in hooks)
        assert all(p.status == "paid" and p.verified for p in payments)
        events = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert [e.id for e in events] == [o.event_id for o in outcomes]
        assert [e.result for e in events] == results and all(e.processed_at for e in events)
        assert [e.verified for e in events] == [True] * 5 + [False] * 3
        assert session.scalar(select(func.count()).select_from(Alert).where(Alert.kind == AlertKind.WEBHOOK_UNVERIFIED))


def test_portone_down_answers_every_delivery_of_the_batch_retry_later(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    hooks = _paid(runtime, sandbox, 3)
    sandbox.configure(error_rate=1.0)
    outcomes = webhooks.receive_many(runtime, [_delivery(h) for h in hooks])
    assert [str(o.result) for o in outcomes] == ["error"] * 3
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 0
        assert session.scalar(select(func.count()).select_from(WebhookEvent).where(WebhookEvent.result == "error")) == 3
    sandbox.configure(error_rate=0.0)
    retried = webhooks.receive_many(runtime, [_delivery(h) for h in hooks])
    assert [str(o.result) for o in retried] == ["processed"] * 3
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "paid")) == 3


def test_the_batcher_gives_each_of_many_concurrent_senders_its_own_outcome(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    hooks = _paid(runtime, sandbox, 6)
    unknown = {"imp_uid": "imp_999999999999", "merchant_uid": "x", "status": "paid"}
    bodies = [*hooks, *hooks, unknown, unknown]
    batcher = WebhookBatcher(runtime)
    try:
        futures = [batcher.submit(_delivery(body)) for body in bodies]
        outcomes = [future.result(timeout=60) for future in futures]
    finally:
        batcher.close()
    assert [str(o.result) for o in outcomes] == ["processed"] * 12 + ["rejected"] * 2
    assert len({o.event_id for o in outcomes}) == len(bodies)
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Payment).where(Payment.verified.is_(True))) == 6


def test_concurrent_webhooks_over_http_are_answered_one_by_one(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(webhook_url=None)  # only our deliveries below
    hooks = []
    for _ in range(8):
        order = new_order(api)
        imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
        hooks.append({"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"], "status": "paid"})
    bodies = [*hooks, *hooks[:4], {"imp_uid": "imp_123456789012", "merchant_uid": "m", "status": "paid"}]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        answers = list(pool.map(lambda body: api.post("/portone/webhook", json=body), bodies))
    assert [a.status_code for a in answers] == [200] * 12 + [400]
    with runtime.db.read() as session:
        paid = session.scalars(select(Payment.imp_uid).where(Payment.status == "paid", Payment.verified.is_(True)))
        assert sorted(paid) == sorted(h["imp_uid"] for h in hooks)


def test_text_no_database_can_hold_in_one_delivery_does_not_fail_its_batch(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    hooks = _paid(runtime, sandbox, 2)
    batch = [
        _delivery(hooks[0]),
        _delivery(b'{"imp_uid": "imp_\\u0000x", "merchant_uid": "m\\u0000", "status": "paid"}'),  # NUL via escape
        _delivery(b'{"imp_uid": "imp_\\ud800", "merchant_uid": "\\udfff", "status": "paid"}'),  # lone surrogates
        _delivery(b'{"imp_uid": "imp_\x00"}'),  # a raw NUL: not JSON, kept as received
        _delivery(hooks[1]),
    ]
    outcomes = webhooks.receive_many(runtime, batch)
    assert [str(o.result) for o in outcomes] == ["processed", "rejected", "rejected", "rejected", "processed"]
    with runtime.db.read() as session:
        events = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
        assert [e.id for e in events] == [o.event_id for o in outcomes]  # every delivery recorded
        assert events[1].imp_uid == "imp_\ufffdx" and events[2].merchant_uid == "\ufffd"
        assert "\x00" not in events[3].body and events[3].body.startswith('{"imp_uid": "imp_')
        paid = session.scalars(select(Payment.imp_uid).where(Payment.verified.is_(True))).all()
        assert sorted(paid) == sorted(h["imp_uid"] for h in hooks)
