"""PortOne V2 may accept a cancel as REQUESTED (an asynchronous PG cancel) and finish it later.

While it is pending the payment read back shows nothing of it, so reading back must not judge it
unapplied (a resend would refund twice): the attempt stays unknown, new refunds wait, and once
PortOne shows the cancellation the attempt is settled as succeeded with one cancel sent. When
PortOne shows it FAILED the attempt is failed; when it stays unfinished past
`refund_requested_alert_minutes`, ops get an alert whose resolve action settles the attempt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Alert, AuditEntry, Payment, Refund
from services.refunds import settlement
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, make_runtime, new_order
from tests.reliability.fault_support import assert_state_equals_portone


@pytest.fixture
def portone_version() -> str:
    return "v2"


@pytest.fixture
def runtime_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def runtime(database_url: str, sandbox: SandboxControl, runtime_overrides: dict[str, Any]) -> Iterator[Runtime]:
    rt = make_runtime(
        database_url=database_url, portone_api_url=sandbox.url, portone_api_version="v2", **runtime_overrides
    )
    try:
        yield rt
    finally:
        rt.close()


def _refund(api: httpx.Client, imp_uid: str, amount: str) -> httpx.Response:
    return api.post(
        f"/api/payments/{imp_uid}/refunds", json={"reason": "고객 요청", "amount": amount}, headers=auth_headers()
    )


def _refunds(runtime: Runtime) -> list[tuple[str, Decimal]]:
    with runtime.db.read() as session:
        return [(r.status, r.amount) for r in session.scalars(select(Refund).order_by(Refund.id))]


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel accepted as REQUESTED (asynchronous PG cancel)",
    outcome="refund stays unknown, not failed; new refunds wait; settled succeeded once PortOne shows it; one cancel sent",
)
def test_a_requested_cancel_is_never_judged_unapplied(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    payment_id = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    assert api.post(
        "/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": order["merchant_uid"]}
    ).is_success
    sandbox.configure(cancel_requested_next=1)

    pending = _refund(api, payment_id, "20000")
    assert pending.status_code == 202, pending.text
    assert pending.json()["status"] == "unknown"
    # Reading back shows the payment untouched: the attempt must stay open, not become failed.
    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("unknown", Decimal(20000))]
    blocked = _refund(api, payment_id, "1000")
    assert blocked.status_code == 409 and "REQUESTED" in blocked.json()["message"]

    done = sandbox.http.post(f"/sandbox/v2/payments/{payment_id}/pending-cancellations/complete")
    assert done.status_code == 200 and len(done.json()["completed"]) == 1
    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("succeeded", Decimal(20000))]

    assert _refund(api, payment_id, "30000").status_code == 201
    assert len(sandbox.calls()["cancels"]) == 2
    portone = sandbox.payment(payment_id)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == payment_id))
        assert payment is not None and payment.cancel_amount == Decimal(str(portone["cancel_amount"])) == 50000
        succeeded = [r for r in payment.refunds if r.status == "succeeded"]
        assert sorted(r.portone_cancellation_id for r in succeeded) == sorted(
            c["cancellation_id"] for c in portone["cancel_history"]
        )
    assert _refunds(runtime) == [("succeeded", Decimal(20000)), ("succeeded", Decimal(30000))]


def _paid(api: httpx.Client, sandbox: SandboxControl) -> str:
    order = new_order(api)
    payment_id = str(sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"])
    answer = api.post("/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": order["merchant_uid"]})
    assert answer.is_success, answer.text
    return payment_id


def _requested(api: httpx.Client, sandbox: SandboxControl, payment_id: str, amount: str) -> None:
    sandbox.configure(cancel_requested_next=1)
    pending = _refund(api, payment_id, amount)
    assert pending.status_code == 202 and pending.json()["status"] == "unknown", pending.text


def _fail_pending(sandbox: SandboxControl, payment_id: str) -> None:
    failed = sandbox.http.post(f"/sandbox/v2/payments/{payment_id}/pending-cancellations/fail")
    assert failed.status_code == 200 and len(failed.json()["failed"]) == 1, failed.text


def _open_alerts(runtime: Runtime, kind: str) -> list[Alert]:
    with runtime.db.read() as session:
        return list(session.scalars(select(Alert).where(Alert.kind == kind, Alert.status != "resolved")).all())


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel accepted as REQUESTED, then refused by the PG (FAILED)",
    outcome="PortOne's cancellation status is read: the attempt ends failed, the payment takes refunds again; "
    "the next refund succeeds once",
)
def test_a_requested_cancel_that_fails_ends_the_attempt_failed(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    payment_id = _paid(api, sandbox)
    assert _refund(api, payment_id, "10000").status_code == 201  # partly cancelled: PortOne lists cancellations
    _requested(api, sandbox, payment_id, "20000")
    _fail_pending(sandbox, payment_id)

    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("succeeded", Decimal(10000)), ("failed", Decimal(20000))]
    again = _refund(api, payment_id, "20000")
    assert again.status_code == 201, again.text
    assert _refunds(runtime)[-1] == ("succeeded", Decimal(20000))
    assert sandbox.payment(payment_id)["cancel_amount"] == 30000
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel accepted as REQUESTED that PortOne never shows finished (it failed on a PAID payment, "
    "whose object lists no cancellations)",
    outcome="past refund_requested_alert_minutes ops get an alert; re-syncing asks PortOne again; the operator "
    "marks the attempt failed with a note (audited), the alert is resolved and the payment takes refunds again",
)
@pytest.mark.parametrize("runtime_overrides", [{"refund_requested_alert_minutes": 0.002}])
def test_a_requested_cancel_unfinished_past_the_limit_alerts_ops_who_settle_it(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.alerts import desk as alert_desk
    from services.auth.access import Actor
    from services.core.errors import Forbidden, InvalidRequest
    from services.core.models import Role

    payment_id = _paid(api, sandbox)
    _requested(api, sandbox, payment_id, "20000")
    _fail_pending(sandbox, payment_id)  # invisible: a PAID payment's object has no cancellations
    time.sleep(0.2)  # past the limit (0.12 s)

    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("unknown", Decimal(20000))]  # never judged from what PortOne cannot show
    [alert] = _open_alerts(runtime, "refund_cancel_overdue")
    assert alert.imp_uid == payment_id and alert.severity == "high"
    assert _refund(api, payment_id, "20000").status_code == 409

    operator, viewer = Actor("kim", Role.OPERATOR), Actor("viewer", Role.VIEWER)
    resynced = alert_desk.resync(runtime, actor=operator, alert_id=alert.id)
    assert resynced.outcome == "still_different"
    with pytest.raises(Forbidden):
        alert_desk.fail_requested_refunds(runtime, actor=viewer, alert_id=alert.id, note="PG사 확인")
    with pytest.raises(InvalidRequest):
        alert_desk.fail_requested_refunds(runtime, actor=operator, alert_id=alert.id, note=" ")
    row = alert_desk.fail_requested_refunds(
        runtime, actor=operator, alert_id=alert.id, note="PG사에 확인: 취소 실패 (ticket 123)"
    )
    assert row.status == "resolved" and row.resolved_by == "kim"
    assert _refunds(runtime) == [("failed", Decimal(20000))]
    with runtime.db.read() as session:
        [refund] = session.scalars(select(Refund)).all()
        assert refund.error_message is not None and "ticket 123" in refund.error_message
        [requested] = [c["cancellation_id"] for c in sandbox.calls()["cancels"] if c["outcome"] == "requested"]
        assert requested in refund.error_message and refund.portone_cancellation_id is None
        marked = session.scalars(select(AuditEntry).where(AuditEntry.action == "refund.marked_failed")).all()
        assert [(e.actor, e.target) for e in marked] == [("kim", payment_id)]

    assert _refund(api, payment_id, "20000").status_code == 201
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.parametrize("runtime_overrides", [{"refund_requested_alert_minutes": 0.002}])
def test_overdue_requested_cancels_are_found_without_a_refund_and_close_when_portone_finishes(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The sweep (run after every reconciliation) raises the alert for attempts nobody touched; once
    the PG finishes the cancel, re-syncing settles the attempt succeeded and resolves the alert."""
    from datetime import timedelta

    from services.alerts import desk as alert_desk
    from services.auth.access import Actor
    from services.core.models import Role, utcnow
    from services.reconciliation import engine as reconcile
    from services.reconciliation.engine import EngineOptions

    payment_id = _paid(api, sandbox)
    _requested(api, sandbox, payment_id, "20000")
    assert settlement.alert_overdue_requests(runtime) == 0  # not overdue yet
    assert _open_alerts(runtime, "refund_cancel_overdue") == []
    time.sleep(0.2)
    operator = Actor("kim", Role.OPERATOR)
    run = reconcile.start_run(
        runtime, since=utcnow() - timedelta(hours=1), actor=operator, options=EngineOptions(max_requests_per_second=0)
    )  # a scheduled reconciliation looks for them when it ends
    assert run.status == "finished"
    [alert] = _open_alerts(runtime, "refund_cancel_overdue")
    assert settlement.alert_overdue_requests(runtime) == 1  # still waiting: the same alert, refreshed
    assert [a.id for a in _open_alerts(runtime, "refund_cancel_overdue")] == [alert.id]

    done = sandbox.http.post(f"/sandbox/v2/payments/{payment_id}/pending-cancellations/complete")
    assert done.status_code == 200 and len(done.json()["completed"]) == 1
    resynced = alert_desk.resync(runtime, actor=operator, alert_id=alert.id)
    assert resynced.outcome == "resolved"
    assert _refunds(runtime) == [("succeeded", Decimal(20000))]
    assert settlement.alert_overdue_requests(runtime) == 0
    assert_state_equals_portone(runtime, sandbox)
