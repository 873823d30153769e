"""Our API as a real process, SIGKILLed between PortOne's answer and our commit; recovery by one
`python -m cli reconcile --repair` run (a real process too), then our records equal PortOne's.

PortOne here is the suite's sandbox; the API process reaches it over loopback HTTP and waits for it
(PORTONE_TIMEOUT_SECONDS=60), so the kill lands while PortOne holds the answer back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Payment, Refund, utcnow
from services.runtime import Runtime
from tests.factories import INTERNAL_TOKEN, SandboxControl, auth_headers, make_runtime, new_order, reconcile_cli
from tests.reliability.fault_support import applied_cancels, assert_state_equals_portone, paid_rows
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 2  # the dead process's refund lease lapses quickly


def _env(database_url: str, sandbox: SandboxControl) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox.url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "PORTONE_TIMEOUT_SECONDS": "60",
        "REFUND_LOCK_LEASE_SECONDS": str(LEASE_SECONDS),
        "RECONCILE_MISSING_GRACE_MINUTES": "0",  # a payment a second old may already be missing
    }


@contextmanager
def api_process(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """`python -m api` on a free port, and a client for it; stopped afterwards if still alive."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, f"the API exited with {process.returncode}"
                try:
                    if client.get("/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API never answered /healthz"
                time.sleep(0.1)
            yield process, client
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _in_background(call: object) -> threading.Thread:
    def run() -> None:
        try:
            call()  # type: ignore[operator]
        except httpx.TransportError:
            pass  # the API died under this request

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def _reconcile(env: dict[str, str]) -> dict[str, object]:
    """One `python -m cli reconcile --repair` run over the last hour; its JSON summary."""
    summary = reconcile_cli(env, "--since", "1h", "--repair", "--max-rps", "0")
    assert summary["status"] == "finished", summary
    return summary


def _paid_and_completed(api: httpx.Client, sandbox: SandboxControl) -> tuple[str, str]:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
    body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
    assert api.post("/api/payments/complete", json=body).status_code == 200
    return imp_uid, order["merchant_uid"]


def _refund_rows(runtime: Runtime, imp_uid: str) -> list[tuple[str, Decimal]]:
    with runtime.db.read() as session:
        rows = session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == imp_uid).order_by(Refund.id))
        return [(r.status, r.amount) for r in rows]


@pytest.mark.reliability(
    area="fault",
    case="API process SIGKILLed after PortOne applied a refund, before our commit",
    outcome="attempt left pending; one reconciliation run settles it from PortOne: succeeded once, one cancel sent",
)
def test_api_killed_between_portone_refund_and_our_commit(database_url: str, sandbox: SandboxControl) -> None:
    sandbox.configure(webhook_url=None)
    runtime = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    env = _env(database_url, sandbox)
    try:
        with api_process(env) as (process, api):
            imp_uid, _ = _paid_and_completed(api, sandbox)
            # PortOne applies the cancel, then holds its answer back; our API waits for it.
            sandbox.configure(cancel_timeout_after_apply=1, cancel_hang_seconds=60)
            body = {"amount": "20000", "reason": "고객 요청"}
            _in_background(lambda: api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers()))
            _wait_until(lambda: applied_cancels(sandbox, imp_uid) == 1, "the cancel never reached PortOne")
            _kill(process)
        assert _refund_rows(runtime, imp_uid) == [("pending", Decimal(20000))]
        assert sandbox.payment(imp_uid)["cancel_amount"] == 20000
        with runtime.db.read() as session:
            refund = session.scalars(select(Refund)).one()
            lease = session.scalar(select(Payment.refund_lock_expires_at).where(Payment.imp_uid == imp_uid))
        # The dead process's lease lapses, and its attempt is then stale to reconciliation.
        settled_after = max(lease or utcnow(), refund.created_at + timedelta(seconds=LEASE_SECONDS))
        _wait_until(lambda: utcnow() > settled_after, "the lease never lapsed", timeout=LEASE_SECONDS + 10)

        summary = _reconcile(env)
        assert summary["counts"]["refund_outcome_unknown"]["repaired"] == 1, summary  # type: ignore[index]
        assert _refund_rows(runtime, imp_uid) == [("succeeded", Decimal(20000))]
        assert len(sandbox.calls()["cancels"]) == 1  # settled by asking, never resent
        assert_state_equals_portone(runtime, sandbox)
    finally:
        runtime.close()


@pytest.mark.reliability(
    area="fault",
    case="API process SIGKILLed while /complete waits for PortOne's answer",
    outcome="nothing recorded; one reconciliation run records it paid; after a restart the app's retry gets paid, one row",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_killed_while_complete_waits_for_portone(database_url: str, sandbox: SandboxControl) -> None:
    sandbox.configure(webhook_url=None)  # no webhook to the rescue: reconciliation alone
    runtime = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    env = _env(database_url, sandbox)
    try:
        with api_process(env) as (process, api):
            order = new_order(api)
            imp_uid = sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"]
            body = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}
            sandbox.configure(latency_ms=60_000, latency_only="GET /payments/")
            _in_background(lambda: api.post("/api/payments/complete", json=body))
            _wait_until(
                lambda: sandbox.calls()["counts"].get("GET /payments/{imp_uid}"), "/complete never asked PortOne"
            )
            _kill(process)
        sandbox.configure(latency_ms=0)
        assert paid_rows(runtime) == 0

        summary = _reconcile(env)
        assert summary["counts"]["missing_in_db"]["repaired"] == 1, summary  # type: ignore[index]
        assert paid_rows(runtime) == 1
        with api_process(env) as (_restarted, api):
            again = api.post("/api/payments/complete", json=body)
            assert again.status_code == 200 and again.json()["status"] == "paid", again.text
        assert paid_rows(runtime) == 1
        assert_state_equals_portone(runtime, sandbox)
    finally:
        runtime.close()
