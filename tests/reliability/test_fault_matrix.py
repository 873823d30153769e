"""PortOne failing at each step (5xx, too slow, connection dropped), then recovery: afterwards our
records equal PortOne's (`assert_state_equals_portone`).

Steps: /complete and the webhook re-fetch the payment; a refund sends a cancel; a reconciliation run
reads PortOne's listing. The database's faults are in test_fault_database.py, killed processes in
test_fault_kills.py. More rows live beside the code they exercise (marked `fault` in README's
table): tests/services/refunds/test_engine.py, tests/api/test_payment_flow.py (the cancel timing out after
PortOne applied it), tests/api/test_v2_pending_cancel.py, tests/cli/test_reconcile.py.

Our PortOne timeout is 1 s here (10 s in production), so a hung PortOne costs seconds, not tens.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Refund
from services.portone.v1 import READ_ATTEMPTS
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers
from tests.reliability.fault_support import (
    READS_FAILING,
    applied_cancels,
    assert_state_equals_portone,
    deliver_webhook,
    paid_at_portone,
    paid_rows,
    wait_for_delivery,
)

TIMEOUT = 1.0  # our PortOne timeout in this module
TOO_SLOW_MS = int((TIMEOUT + 1) * 1000)  # PortOne answering past it
GRACE = 3.0  # how long PortOne may still apply a cancel whose answer we lost


@pytest.fixture
def runtime_overrides() -> dict[str, Any]:
    return {"portone_timeout_seconds": TIMEOUT, "refund_unknown_grace_seconds": GRACE}


def _webhook_url(api: httpx.Client) -> str:
    return f"{api.base_url}/portone/webhook"


def _complete(api: httpx.Client, imp_uid: str, merchant_uid: str) -> httpx.Response:
    return api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})


def _refund(api: httpx.Client, imp_uid: str, amount: str, key: str | None = None) -> httpx.Response:
    body = {"amount": amount, "reason": "고객 요청"}
    return api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers(key))


def _refund_statuses(runtime: Runtime, imp_uid: str) -> list[tuple[str, str]]:
    from services.core.models import Payment

    with runtime.db.read() as session:
        rows = session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == imp_uid).order_by(Refund.id))
        return [(r.status, str(r.amount)) for r in rows]


# -- /complete --------------------------------------------------------------------------------


# PortOne's read broken one way, and healed.
READ_FAULTS = {
    "5xx": ({"fail_next": READS_FAILING}, {"fail_next": 0}),
    "too slow": ({"latency_ms": TOO_SLOW_MS, "latency_only": "GET /payments"}, {"latency_ms": 0}),
    "dropped": ({"drop_next": READS_FAILING}, {"drop_next": 0}),
}


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx, too slow (past our timeout) or dropping the connection while /complete or a webhook re-fetches the payment",
    outcome="503 (the app or PortOne retries), no trace, nothing recorded as paid; the retry, or PortOne's webhook after a failed /complete, records it paid once",
)
@pytest.mark.parametrize("fault", READ_FAULTS)
@pytest.mark.parametrize(
    ("step", "recovery"),
    [("/api/payments/complete", "retry"), ("/api/payments/complete", "webhook"), ("/portone/webhook", "retry")],
)
def test_portone_failing_while_the_payment_is_re_fetched(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, fault: str, step: str, recovery: str
) -> None:
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "paid"}
    broken, healed = READ_FAULTS[fault]
    sandbox.configure(**broken)
    answer = api.post(step, json=body)
    assert answer.status_code == 503 and "Traceback" not in answer.text, answer.text
    if step == "/api/payments/complete":
        assert answer.json()["error"] == "portone_unavailable", answer.text
    assert paid_rows(runtime) == 0
    sandbox.configure(**healed)
    if recovery == "retry":
        again = api.post(step, json=body)
        assert again.status_code == 200, again.text
    else:
        assert deliver_webhook(sandbox, _webhook_url(api), imp_uid)["state"] == "delivered"
    assert paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


# -- the webhook ------------------------------------------------------------------------------


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx on every read while a webhook re-fetches the payment",
    outcome="503, so PortOne redelivers (for a merchant who asked PortOne to switch redelivery on); the redelivery records it paid once",
)
def test_portone_failing_during_webhook(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _merchant_uid = paid_at_portone(api, sandbox)
    # PortOne's redelivery, which its support switches on when asked (readme-v1.md: up to 5 times a
    # minute apart; 500 ms apart here); reads of the payment fail until told. Without it, the
    # scheduled reconciliation heals a lost webhook (tests/services/reconciliation/test_schedule.py).
    sandbox.configure(webhook_retries=True, webhook_retry_interval_ms=500, error_rate=1.0, fail_only="GET /payments")
    sandbox.configure(webhook_url=_webhook_url(api))
    [sent] = sandbox.http.post("/sandbox/webhooks/send", json={"imp_uid": imp_uid}).json()["deliveries"]
    first = wait_for_delivery(sandbox, sent["id"], until=("retrying", "failed", "delivered"))
    assert first["state"] == "retrying" and {a["status_code"] for a in first["attempts"]} == {503}, first
    assert paid_rows(runtime) == 0
    sandbox.configure(error_rate=0.0)  # PortOne answers again: the next redelivery goes through
    delivered = wait_for_delivery(sandbox, sent["id"])
    assert delivered["state"] == "delivered", delivered
    assert {a["status_code"] for a in delivered["attempts"][:-1]} == {503}
    assert delivered["attempts"][-1]["status_code"] == 200
    assert paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


# -- refunds ----------------------------------------------------------------------------------


def _refund_answer_lost(api: httpx.Client, sandbox: SandboxControl, **fault: Any) -> str:
    """A paid payment whose refund of 20000 is sent under `fault` and gets no answer: 202 unknown,
    PortOne not showing it (yet), and a second refund told to wait (409). Its imp_uid."""
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    assert _complete(api, imp_uid, merchant_uid).status_code == 200
    sandbox.configure(**fault)
    lost = _refund(api, imp_uid, "20000")
    assert lost.status_code == 202 and lost.json()["status"] == "unknown", (fault, lost.text)
    assert sandbox.payment(imp_uid)["cancel_amount"] == 0  # not applied (yet): not a failure either
    # PortOne may still apply it (we cannot tell a lost answer from a slow one): no second refund yet.
    waits = _refund(api, imp_uid, "20000")
    assert waits.status_code == 409 and "may still apply" in waits.json()["message"], (fault, waits.text)
    return imp_uid


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx or a dropped connection on a refund's cancel call (PortOne did not apply it)",
    outcome="202 unknown, new refunds wait; after the grace settled failed by asking PortOne; the next one refunds once",
)
def test_cancel_refused_by_a_fault_is_settled_failed_never_doubled(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    faults = {"5xx": {"fail_next": 1, "fail_only": "POST /payments/cancel"}, "dropped": {"drop_next": 1}}
    faulted: dict[str, str] = {}
    for name, fault in faults.items():
        faulted[name] = _refund_answer_lost(api, sandbox, **fault, drop_only="POST /payments/cancel")
    time.sleep(GRACE)  # PortOne has had its time: not shown means not applied
    for name, imp_uid in faulted.items():
        again = _refund(api, imp_uid, "20000")
        assert again.status_code == 201, (name, again.text)
        assert _refund_statuses(runtime, imp_uid) == [("failed", "20000.00"), ("succeeded", "20000.00")], name
        assert applied_cancels(sandbox, imp_uid) == 1, name
    assert [c["outcome"] for c in sandbox.calls()["cancels"] if c["imp_uid"] is None] == ["fault_500"]
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="a refund's cancel timing out while PortOne is still applying it",
    outcome="202 unknown, a second refund waits (409); settled succeeded once PortOne shows it; one cancel sent",
)
def test_cancel_timing_out_before_portone_applied_it(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.refunds import settlement

    # PortOne takes the cancel, then works on it past our timeout (and well inside the grace).
    imp_uid = _refund_answer_lost(api, sandbox, latency_ms=TOO_SLOW_MS, latency_only="POST /payments/cancel")
    deadline = time.monotonic() + 30
    while sandbox.payment(imp_uid)["cancel_amount"] == 0:
        assert time.monotonic() < deadline, "PortOne never applied the delayed cancel"
        time.sleep(0.05)
    sandbox.configure(latency_ms=0)
    assert settlement.settle_with_lease(runtime, imp_uid=imp_uid) == 1
    assert _refund_statuses(runtime, imp_uid) == [("succeeded", "20000.00")]
    assert len(sandbox.calls()["cancels"]) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="the operator retries (same idempotency key) a refund whose cancel answer was lost, once PortOne applied it",
    outcome="the retry asks PortOne and answers how it ended (201 succeeded), never a stale 'unknown'; one cancel sent",
)
def test_retrying_a_lost_refund_with_its_key_learns_how_it_ended(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    assert _complete(api, imp_uid, merchant_uid).status_code == 200
    sandbox.configure(latency_ms=TOO_SLOW_MS, latency_only="POST /payments/cancel")
    lost = _refund(api, imp_uid, "20000", key="lost-then-retried")
    assert lost.status_code == 202 and lost.json()["status"] == "unknown", lost.text
    deadline = time.monotonic() + 30
    while sandbox.payment(imp_uid)["cancel_amount"] == 0:
        assert time.monotonic() < deadline, "PortOne never applied the delayed cancel"
        time.sleep(0.05)
    sandbox.configure(latency_ms=0)
    retry = _refund(api, imp_uid, "20000", key="lost-then-retried")
    assert retry.status_code == 201 and retry.json()["status"] == "succeeded", retry.text
    assert _refund_statuses(runtime, imp_uid) == [("succeeded", "20000.00")]
    assert len(sandbox.calls()["cancels"]) == 1
    assert_state_equals_portone(runtime, sandbox)


# PortOne's cancel call, as each version's `garble_only` names it.
CANCEL_CALLS = {"v1": "POST /payments/cancel", "v2": "POST /payments/{paymentId}/cancel"}


@pytest.mark.reliability(
    area="fault",
    case="PortOne applying a refund's cancel, then answering 2xx with a body we cannot read "
    "(not JSON, JSON of the wrong shape, fields missing), V1 and V2",
    outcome="an unknown outcome settled by reading the payment back: 201 succeeded, never 'failed, nothing "
    "changed'; the operator's retry replays it; one cancel applied",
)
@pytest.mark.parametrize("portone_version", ["v1", "v2"])
@pytest.mark.parametrize(
    ("database_url", "body", "status"),
    [
        ("sqlite", "not_json", 200),
        ("sqlite", "wrong_shape", 200),
        ("sqlite", "missing_fields", 200),
        ("sqlite", "not_json", 202),
        ("postgresql", "missing_fields", 201),
    ],
    indirect=["database_url"],
)
def test_cancel_applied_then_answered_unreadably_is_settled_never_failed(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, portone_version: str, body: str, status: int
) -> None:
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    assert _complete(api, imp_uid, merchant_uid).status_code == 200
    sandbox.configure(garble_next=1, garble_only=CANCEL_CALLS[portone_version], garble_body=body, garble_status=status)
    answer = _refund(api, imp_uid, "20000", key="garbled-refund")
    assert answer.status_code == 201 and answer.json()["status"] == "succeeded", answer.text
    assert sandbox.configure()["garble_next"] == 0  # the answer was garbled
    assert applied_cancels(sandbox, imp_uid) == 1
    retry = _refund(api, imp_uid, "20000", key="garbled-refund")  # the operator retries: replayed, not resent
    assert retry.status_code == 201 and retry.json()["replayed"] is True, retry.text
    assert applied_cancels(sandbox, imp_uid) == 1
    assert _refund_statuses(runtime, imp_uid) == [("succeeded", "20000.00")]
    assert_state_equals_portone(runtime, sandbox)


# -- reconciliation ---------------------------------------------------------------------------


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx, too slow, or dropping connections throughout a reconciliation run",
    outcome="the run stops as failed (resumable), no alert raised from a half-read; resumed once healthy it finds every planted difference",
)
# The transport faults are database-independent: PostgreSQL runs the 5xx case.
@pytest.mark.parametrize(
    ("database_url", "fault"),
    [("sqlite", "5xx"), ("postgresql", "5xx"), ("sqlite", "timeout"), ("sqlite", "dropped")],
    indirect=["database_url"],
)
def test_reconciliation_with_portone_failing_then_resumed(
    runtime: Runtime, sandbox: SandboxControl, fault: str
) -> None:
    from services.auth.access import Actor
    from services.core.errors import GatewayError
    from services.core.models import ReconciliationRun, Role
    from services.reconciliation.engine import EngineOptions, start_run
    from tests.services.reconciliation.test_engine import open_alerts, plant

    scenario = plant(runtime, sandbox)
    before = open_alerts(runtime)
    operator = Actor("kim", Role.OPERATOR)
    options = EngineOptions(max_requests_per_second=0, concurrency=2)
    faults = {
        "5xx": {"error_rate": 1.0},
        "timeout": {"latency_ms": TOO_SLOW_MS},
        "dropped": {"drop_next": 1000},
    }
    sandbox.configure(**faults[fault])
    with pytest.raises(GatewayError):
        start_run(runtime, since=scenario.since, actor=operator, options=options)
    assert open_alerts(runtime) == before
    with runtime.db.read() as session:
        failed = session.scalars(select(ReconciliationRun)).all()
        assert [run.status for run in failed] == ["failed"]
    sandbox.configure(error_rate=0.0, latency_ms=0, drop_next=0)
    resumed = start_run(runtime, actor=operator, options=options, resume_run_id=failed[0].id)
    assert resumed.status == "finished"
    assert open_alerts(runtime) == scenario.expected


@pytest.mark.reliability(
    area="fault",
    case="PortOne failing now and then on listing pages during a reconciliation run",
    outcome="read retries absorb it: the run finishes and finds every planted difference, nothing else",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reconciliation_with_transient_listing_failures(runtime: Runtime, sandbox: SandboxControl) -> None:
    from services.auth.access import Actor
    from services.core.models import Role
    from services.reconciliation.engine import EngineOptions, start_run
    from tests.services.reconciliation.test_engine import open_alerts, plant

    scenario = plant(runtime, sandbox)
    # Fewer failures than one read's attempts: wherever they land, every page is read in the end.
    sandbox.configure(fail_next=READ_ATTEMPTS - 1, fail_only="GET /payments/status")
    summary = start_run(
        runtime,
        since=scenario.since,
        actor=Actor("kim", Role.OPERATOR),
        options=EngineOptions(max_requests_per_second=0, concurrency=2),
    )
    assert summary.status == "finished"
    assert sandbox.http.get("/sandbox/config").json()["fail_next"] == 0  # the failures did happen
    assert open_alerts(runtime) == scenario.expected


# -- reads we cannot trust ----------------------------------------------------------------------


def _signed_v2_webhook(api: httpx.Client, payment_id: str) -> httpx.Response:
    """A V2 Transaction.Paid webhook for the payment, signed as PortOne signs it."""
    import json
    import uuid
    from datetime import UTC, datetime

    from tests.v2_support import STORE_ID, signed

    data = {"paymentId": payment_id, "storeId": STORE_ID, "transactionId": uuid.uuid4().hex}
    at = datetime.now(UTC).isoformat()
    body = json.dumps({"type": "Transaction.Paid", "timestamp": at, "data": data}, separators=(",", ":"))
    return api.post("/portone/webhook/v2", content=body, headers=signed(body, webhook_id=f"msg_{uuid.uuid4().hex}"))


@pytest.mark.reliability(
    area="fault",
    case="PortOne answering the re-fetch of /complete or a webhook with a payment missing its amount "
    "(or status, or currency)",
    outcome="unreadable, so PortOne counts as unavailable (503, retried): never read as 0 won, so a real "
    "payment is never judged forged and cancelled; our record stays as it was",
)
@pytest.mark.parametrize("missing", ["amount", "status", "currency", "id"])
@pytest.mark.parametrize("step", ["complete", "webhook"])
@pytest.mark.parametrize("portone_version", ["v1", "v2"])
def test_a_payment_read_without_its_amount_is_unreadable_never_zero(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, portone_version: str, missing: str, step: str
) -> None:
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    if step == "webhook":
        assert _complete(api, imp_uid, merchant_uid).status_code == 200
    fields = {
        "v1": {"amount": "response.amount", "status": "response.status", "currency": "response.currency",
               "id": "response.imp_uid"},
        "v2": {"amount": "amount.total", "status": "status", "currency": "currency", "id": "id"},
    }[portone_version]  # fmt: skip
    garbled = {"garble_next": 1, "garble_only": "GET /payments/", "garble_body": "missing_fields"}
    sandbox.configure(**garbled, garble_fields=[fields[missing]])
    if step == "complete":
        answer = _complete(api, imp_uid, merchant_uid)
    elif portone_version == "v1":
        answer = api.post("/portone/webhook", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "paid"})
    else:
        answer = _signed_v2_webhook(api, imp_uid)
    assert answer.status_code == 503, answer.text
    assert sandbox.configure()["garble_next"] == 0  # the read was garbled
    assert applied_cancels(sandbox, imp_uid) == 0
    assert paid_rows(runtime) == (1 if step == "webhook" else 0)
    sandbox.configure(garble_next=0)
    assert _complete(api, imp_uid, merchant_uid).status_code == 200  # healed: recorded once, as paid
    assert applied_cancels(sandbox, imp_uid) == 0
    assert_state_equals_portone(runtime, sandbox)
