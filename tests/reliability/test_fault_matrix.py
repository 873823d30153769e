"""Faults at each step, then recovery: afterwards our records equal PortOne's.

More rows of the matrix live beside the code they exercise (marked `fault` in README's table):
refunds (tests/services/test_refunds.py), the cancel timing out after PortOne applied it
(tests/api/test_payment_flow.py), a V2 cancel left REQUESTED (tests/api/test_v2_pending_cancel.py),
a reconciliation process SIGKILLed half-way (tests/services/test_reconcile_cli.py).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.models import Payment, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order

READS_FAILING = 10  # more 500s than our client's read retries


def assert_state_equals_portone(runtime: Runtime, sandbox: SandboxControl) -> None:
    """Every payment we hold matches PortOne's record: status, amounts, refunds."""
    with runtime.db.read() as session:
        payments = session.scalars(select(Payment)).all()
        assert payments
        for payment in payments:
            portone = sandbox.payment(payment.imp_uid)
            assert (payment.status, payment.amount, payment.cancel_amount) == (
                portone["status"],
                Decimal(str(portone["amount"])),
                Decimal(str(portone["cancel_amount"])),
            ), payment.imp_uid
            succeeded = sum((r.amount for r in payment.refunds if r.status == RefundStatus.SUCCEEDED), Decimal(0))
            assert succeeded == payment.cancel_amount


def _paid_at_portone(api: httpx.Client, sandbox: SandboxControl) -> tuple[str, str]:
    sandbox.configure(webhook_url=None)  # the deliveries below are the test's own
    order = new_order(api)
    return sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"], order["merchant_uid"]


def _paid_rows(runtime: Runtime) -> int:
    with runtime.db.read() as session:
        return len(session.scalars(select(Payment.id).where(Payment.status == "paid")).all())


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx on every read while /complete re-fetches the payment",
    outcome="503 to the app, nothing recorded as paid; the retry records it paid once",
)
def test_portone_failing_during_complete(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    sandbox.configure(fail_next=READS_FAILING)
    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
    assert answer.status_code == 503 and answer.json()["error"] == "portone_unavailable"
    assert _paid_rows(runtime) == 0
    sandbox.configure(fail_next=0)
    again = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
    assert again.status_code == 200 and again.json()["status"] == "paid"
    assert _paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="PortOne 5xx on every read while a webhook re-fetches the payment",
    outcome="503 so PortOne retries, delivery logged; the redelivery records it paid once",
)
def test_portone_failing_during_webhook(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    hook = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "paid"}
    sandbox.configure(fail_next=READS_FAILING)
    answer = api.post("/portone/webhook", json=hook)
    assert answer.status_code == 503 and answer.json()["result"] == "error"
    assert _paid_rows(runtime) == 0
    sandbox.configure(fail_next=0)
    assert api.post("/portone/webhook", json=hook).status_code == 200
    assert _paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="SQLite write-locked by another process during /complete",
    outcome="the request waits for the lock (busy timeout), then records the payment once; nothing lost",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_locked_during_complete(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    path = str(runtime.db.engine.url.database)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(1.5)
        other.execute("COMMIT")
        released.set()

    threading.Thread(target=release_later, daemon=True).start()
    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
    assert released.is_set()  # it really waited for the other writer
    assert answer.status_code == 200, answer.text
    other.close()
    assert _paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="API process SIGKILLed after PortOne applied a refund, before our commit",
    outcome="the open attempt is settled by asking PortOne: succeeded once, one cancel sent; state equal",
)
def test_api_killed_between_portone_answer_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.stack import running_stack
    from services import refunds
    from tests.factories import auth_headers, make_runtime

    database_url = f"sqlite:///{tmp_path / 'killed.db'}"
    monkeypatch.setenv("REFUND_LOCK_LEASE_SECONDS", "2")  # the dead process's lease lapses quickly
    monkeypatch.setenv("PORTONE_TIMEOUT_SECONDS", "60")  # our API waits for PortOne: it dies waiting
    with running_stack(database_url) as stack, httpx.Client(base_url=stack.sandbox_url, timeout=30) as http:
        control = SandboxControl(url=stack.sandbox_url, http=http, version="v1")
        with httpx.Client(base_url=stack.api_url, timeout=90) as api:
            order = new_order(api)
            imp_uid = control.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
            body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
            assert api.post("/api/payments/complete", json=body).status_code == 200
            control.configure(cancel_timeout_after_apply=1, cancel_hang_seconds=60)
            headers = {**auth_headers(), "Authorization": "Bearer bench-internal-token"}

            def refund() -> None:
                try:
                    api.post(
                        f"/api/payments/{imp_uid}/refunds",
                        json={"amount": "20000", "reason": "고객 요청"},
                        headers=headers,
                    )
                except httpx.TransportError:
                    pass  # the API died under this request

            threading.Thread(target=refund, daemon=True).start()
            deadline = time.monotonic() + 30
            while not control.calls()["cancels"]:
                assert time.monotonic() < deadline, "the cancel never reached the sandbox"
                time.sleep(0.05)
            assert stack.api_pid is not None
            os.kill(stack.api_pid, signal.SIGKILL)  # PortOne applied it; our answer never came

        rt = make_runtime(database_url=database_url, portone_api_url=stack.sandbox_url, refund_lock_lease_seconds=2)
        try:
            with rt.db.read() as session:
                payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
                assert payment is not None and [r.status for r in payment.refunds] == ["pending"]
            time.sleep(2.2)
            assert refunds.settle_with_lease(rt, imp_uid=imp_uid) == 1
            with rt.db.read() as session:
                payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
                assert payment is not None
                assert [(r.status, r.amount) for r in payment.refunds] == [("succeeded", Decimal(20000))]
            assert len(control.calls()["cancels"]) == 1
            assert_state_equals_portone(rt, control)
        finally:
            rt.close()


@pytest.mark.reliability(
    area="fault",
    case="database unreachable (PostgreSQL refusing connections)",
    outcome="503 database_unavailable with a readable message, no stack trace; nothing half-written",
)
def test_database_unreachable_answers_503(sandbox: SandboxControl) -> None:
    from api.app import create_app
    from services.config import Settings
    from services.db import Database
    from services.runtime import Runtime, make_gateway
    from tests.servers import free_port, serve_in_thread

    url = f"postgresql+psycopg://chekar@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    settings = Settings(database_url=url, portone_mode="sandbox", portone_api_url=sandbox.url)
    runtime = Runtime(settings=settings, db=Database(url), gateway=make_gateway(settings))
    served = serve_in_thread(create_app(runtime))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as api:
            for method, path, body in [
                ("GET", "/healthz", None),
                ("POST", "/api/orders", {"customer_email": "a@example.com", "customer_name": "김"}),
                ("POST", "/portone/webhook", {"imp_uid": "imp_1", "merchant_uid": "m", "status": "paid"}),
            ]:
                answer = api.request(method, path, json=body)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json()["error"] == "database_unavailable"
                assert "Traceback" not in answer.text and "psycopg" not in answer.text
    finally:
        served.stop()
        runtime.close()


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
    from services.access import Actor
    from services.errors import GatewayError
    from services.models import ReconciliationRun, Role
    from services.reconcile import EngineOptions, start_run
    from tests.services.test_reconcile import open_alerts, plant

    scenario = plant(runtime, sandbox)
    before = open_alerts(runtime)
    operator = Actor("kim", Role.OPERATOR)
    options = EngineOptions(max_requests_per_second=0, concurrency=2)
    faults = {
        "5xx": {"error_rate": 1.0},
        "timeout": {"latency_ms": int((runtime.settings.portone_timeout_seconds + 1) * 1000)},
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
    case="PortOne too slow (past our timeout) while /complete or a webhook re-fetches the payment",
    outcome="503 (the app or PortOne retries), nothing recorded as paid; the retry records it paid once",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("path", ["/api/payments/complete", "/portone/webhook"])
def test_portone_timing_out_during_complete(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, path: str
) -> None:
    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": "paid"}
    timeout = runtime.settings.portone_timeout_seconds
    sandbox.configure(latency_ms=int((timeout + 1) * 1000))
    answer = api.post(path, json=body)
    assert answer.status_code == 503, answer.text
    assert _paid_rows(runtime) == 0
    sandbox.configure(latency_ms=0)
    again = api.post(path, json=body)
    assert again.status_code == 200, again.text
    assert _paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="connection to PortOne dropped mid-answer while /complete and a webhook re-fetch",
    outcome="503 (PortOne or the app retries), nothing recorded as paid; the retry records it paid once",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_connection_dropped_during_complete_and_webhook(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid}
    sandbox.configure(drop_next=READS_FAILING)
    answer = api.post("/api/payments/complete", json=body)
    assert answer.status_code == 503 and answer.json()["error"] == "portone_unavailable"
    sandbox.configure(drop_next=READS_FAILING)
    hook = api.post("/portone/webhook", json={**body, "status": "paid"})
    assert hook.status_code == 503
    assert _paid_rows(runtime) == 0
    sandbox.configure(drop_next=0)
    assert api.post("/api/payments/complete", json=body).status_code == 200
    assert api.post("/portone/webhook", json={**body, "status": "paid"}).status_code == 200
    assert _paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="connection dropped on the refund's cancel call (before PortOne applied it)",
    outcome="outcome settled by asking PortOne: failed, nothing refunded; the next refund goes through once",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_connection_dropped_on_the_cancel(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    from tests.factories import auth_headers

    imp_uid, merchant_uid = _paid_at_portone(api, sandbox)
    assert api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid}).is_success
    sandbox.configure(drop_next=1, drop_only="POST /payments/cancel")
    body = {"amount": "20000", "reason": "고객 요청"}
    dropped = api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers())
    assert dropped.status_code == 502 and dropped.json()["status"] == "failed", dropped.text
    assert sandbox.payment(imp_uid)["cancel_amount"] == 0
    assert api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers()).status_code == 201
    assert len([c for c in sandbox.calls()["cancels"] if c["outcome"] == "applied"]) == 1
    assert_state_equals_portone(runtime, sandbox)
