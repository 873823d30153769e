"""A payment in a currency we do not offer (anyone can open a PortOne window with our merchant
code: Eximbay takes NZD, MNT, …) is recorded exactly as PortOne gives it and alerted; it never
fails a webhook, its batch-mates, or a reconciliation run."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services.alerts.store import AlertKind
from services.core.models import Alert, AlertStatus, Payment, WebhookEvent
from services.payments import orders
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl, reconcile_cli, wait_for_webhooks

PORTONE_IP = "52.78.100.19"


def _delivery(body: dict[str, str]) -> webhooks.Delivery:
    return webhooks.Delivery(body=json.dumps(body).encode(), content_type="application/json", source_ip=PORTONE_IP)


def _ours_paid(runtime: Runtime, sandbox: SandboxControl, count: int) -> list[dict[str, str]]:
    hooks = []
    for index in range(count):
        order = orders.create_order(runtime, customer_email=f"c{index}@example.com", customer_name="고객")
        imp_uid = sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"]
        hooks.append({"imp_uid": imp_uid, "merchant_uid": order.merchant_uid, "status": "paid"})
    return hooks


def _stranger_nzd(sandbox: SandboxControl, merchant_uid: str = "stranger-nzd-1") -> dict[str, str]:
    """10.00 NZD through Eximbay, opened by someone else with our merchant code."""
    answer = sandbox.checkout(merchant_uid, "10.00", "NZD", pg="eximbay")
    assert answer["success"], answer
    return {"imp_uid": answer["imp_uid"], "merchant_uid": merchant_uid, "status": "paid"}


def _open_kinds(runtime: Runtime, imp_uid: str) -> set[str]:
    with runtime.db.read() as session:
        return set(
            session.scalars(select(Alert.kind).where(Alert.imp_uid == imp_uid, Alert.status != AlertStatus.RESOLVED))
        )


def _recorded(runtime: Runtime, imp_uid: str) -> Payment:
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
    assert payment is not None, f"{imp_uid} not recorded"
    return payment


def test_an_nzd_payment_in_a_batch_is_recorded_and_alerted_and_its_batch_mates_are_processed(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    ours = _ours_paid(runtime, sandbox, 3)
    stranger = _stranger_nzd(sandbox)
    batch = [_delivery(ours[0]), _delivery(stranger), _delivery(ours[1]), _delivery(ours[2])]

    outcomes = webhooks.receive_many(runtime, batch)

    assert [str(o.result) for o in outcomes] == ["processed"] * 4, [o.detail for o in outcomes]
    for hook in ours:
        assert _recorded(runtime, hook["imp_uid"]).status == "paid"
    payment = _recorded(runtime, stranger["imp_uid"])
    assert (payment.amount, payment.currency, payment.status, payment.verified) == (
        Decimal("10.00"),
        "NZD",
        "paid",
        False,
    )
    assert {AlertKind.UNSUPPORTED_CURRENCY, AlertKind.PAYMENT_WITHOUT_ORDER} <= _open_kinds(
        runtime, stranger["imp_uid"]
    )
    with runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.kind == AlertKind.UNSUPPORTED_CURRENCY))
        assert alert is not None and alert.severity == "high"
        assert alert.portone_value is not None and "10.00 NZD" in alert.portone_value


def test_webhooks_over_loopback_each_get_their_own_answer_when_one_is_in_nzd(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    ours = _ours_paid(runtime, sandbox, 3)
    stranger = _stranger_nzd(sandbox)
    wait_for_webhooks(runtime, stranger["imp_uid"])  # the sandbox's own delivery first
    bodies = [ours[0], stranger, ours[1], ours[2]]
    with ThreadPoolExecutor(max_workers=4) as pool:  # together: the batcher judges them in one batch
        answers = list(pool.map(lambda body: api.post("/portone/webhook", json=body), bodies))
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert _recorded(runtime, stranger["imp_uid"]).amount == Decimal("10.00")
    assert AlertKind.UNSUPPORTED_CURRENCY in _open_kinds(runtime, stranger["imp_uid"])
    with runtime.db.read() as session:
        results = set(session.scalars(select(WebhookEvent.result)))
    assert results == {"processed"}


def test_reconcile_cli_over_a_window_with_an_nzd_payment_completes_and_alerts(
    runtime: Runtime, sandbox: SandboxControl, database_url: str
) -> None:
    ours = _ours_paid(runtime, sandbox, 2)
    stranger = _stranger_nzd(sandbox)
    unknown = _bulk(sandbox, merchant_uid="stranger-zzz-3", amount="7.5", currency="ZZZ")
    _bulk(sandbox, merchant_uid="stranger-huge-3", amount="123456789012345678901234567", currency="KRW")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_API_URL": sandbox.url,
        "PORTONE_MODE": "sandbox",
        "PYTHONUNBUFFERED": "1",
    }
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    for _ in range(2):  # every later run over the window works too
        reconcile_cli(env, "--since", since, "--max-rps", "0")
    assert {AlertKind.UNSUPPORTED_CURRENCY, AlertKind.PAYMENT_WITHOUT_ORDER} <= _open_kinds(
        runtime, stranger["imp_uid"]
    )
    with runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.kind == AlertKind.UNSUPPORTED_CURRENCY))
        assert alert is not None and alert.portone_value is not None and "10.00 NZD" in alert.portone_value
    assert AlertKind.UNSUPPORTED_CURRENCY in _open_kinds(runtime, unknown)
    for hook in ours:
        assert AlertKind.UNSUPPORTED_CURRENCY not in _open_kinds(runtime, hook["imp_uid"])


@pytest.mark.parametrize("portone_version", ["v2"])
def test_a_v2_nzd_payment_keeps_its_minor_units_exactly(
    runtime: Runtime, sandbox: SandboxControl, portone_version: str
) -> None:
    from services.payments.verification import verify_payment

    stranger = _stranger_nzd(sandbox, "stranger-nzd-v2")
    verified = verify_payment(runtime, imp_uid=stranger["imp_uid"], source="webhook")
    assert (verified.amount, verified.currency, verified.has_order) == (Decimal("10.00"), "NZD", False)
    assert AlertKind.UNSUPPORTED_CURRENCY in _open_kinds(runtime, stranger["imp_uid"])


def _bulk(sandbox: SandboxControl, **spec: object) -> str:
    """A payment as PortOne shows it, placed straight into the sandbox (no checkout rules)."""
    now = int(datetime.now(UTC).timestamp())
    body = {"payments": [{"status": "paid", "paid_at": now, "started_at": now, **spec}]}
    response = sandbox.http.post("/sandbox/payments/bulk", json=body)
    response.raise_for_status()
    return str(response.json()["imp_uids"][0])


def test_a_currency_code_nobody_knows_is_recorded_as_given_and_alerted(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _bulk(sandbox, merchant_uid="stranger-zzz-1", amount="10.505", currency="ZZZ")
    [outcome] = webhooks.receive_many(runtime, [_delivery({"imp_uid": imp_uid, "merchant_uid": "stranger-zzz-1"})])
    assert str(outcome.result) == "processed", outcome.detail
    payment = _recorded(runtime, imp_uid)
    assert payment.currency == "ZZZ" and Decimal(str(payment.raw["amount"])) == Decimal("10.505")
    assert {AlertKind.UNSUPPORTED_CURRENCY, AlertKind.PAYMENT_WITHOUT_ORDER} <= _open_kinds(runtime, imp_uid)


def test_one_delivery_that_cannot_be_recorded_never_fails_its_batch_mates(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    ours = _ours_paid(runtime, sandbox, 3)
    # More than our money columns hold (20 digits): this payment cannot be stored on PostgreSQL.
    huge = _bulk(sandbox, merchant_uid="stranger-huge-1", amount="123456789012345678901234567", currency="KRW")
    batch = [_delivery(ours[0]), _delivery({"imp_uid": huge, "merchant_uid": "stranger-huge-1"})]
    batch += [_delivery(ours[1]), _delivery(ours[2])]

    outcomes = webhooks.receive_many(runtime, batch)

    results = [str(o.result) for o in outcomes]
    assert results[0] == results[2] == results[3] == "processed", [o.detail for o in outcomes]
    assert results[1] in ("processed", "error")  # its own answer: 503 (PortOne retries) where it cannot be stored
    for hook in ours:
        assert _recorded(runtime, hook["imp_uid"]).status == "paid"


def test_the_detail_page_and_overview_show_a_payment_in_an_unknown_currency(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.auth.access import Actor
    from services.core.models import Role
    from services.payments.detail import payment_detail
    from services.reporting.overview import overview

    viewer = Actor("viewer", Role.VIEWER)
    imp_uid = _bulk(sandbox, merchant_uid="stranger-zzz-2", amount="10.50", currency="ZZZ")
    webhooks.receive_many(runtime, [_delivery({"imp_uid": imp_uid, "merchant_uid": "stranger-zzz-2"})])
    detail = payment_detail(runtime, actor=viewer, imp_uid=imp_uid, live=True)
    assert detail is not None
    figures = overview(runtime, actor=viewer)
    assert figures.open_alerts["high"] >= 2  # unsupported currency, payment without order


def test_one_unreadable_row_in_a_batched_look_up_never_fails_its_batch_mates(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """PortOne's batched answer has one payment without its amount: that answer is unreadable, not
    PortOne being down; each delivery is then judged on its own and the readable ones are recorded."""
    ours = _ours_paid(runtime, sandbox, 3)
    sandbox.configure(
        garble_next=1, garble_only="GET /payments", garble_body="missing_fields", garble_fields=["response.0.amount"]
    )
    outcomes = webhooks.receive_many(runtime, [_delivery(hook) for hook in ours])
    assert sandbox.configure()["garble_next"] == 0  # the batched look-up was garbled
    assert [str(o.result) for o in outcomes] == ["processed"] * 3, [o.detail for o in outcomes]
    for hook in ours:
        assert _recorded(runtime, hook["imp_uid"]).status == "paid"
