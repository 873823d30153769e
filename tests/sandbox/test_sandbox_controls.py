"""Fault injection, /sandbox/config, /sandbox/calls, /sandbox/reset and the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def test_config_defaults_and_partial_update(client: Any) -> None:
    cfg = client.http.get("/sandbox/config").json()
    assert cfg["enforce_prepare"] is True
    assert cfg["latency_ms"] == 0 and cfg["error_rate"] == 0 and cfg["fail_next"] == 0
    assert cfg["cancel_timeout_after_apply"] == 0 and cfg["cancel_hang_seconds"] == 10
    assert cfg["token_ttl_seconds"] == 1800
    # readme-v1.md: sent once; redelivery (5 times, a minute apart) only when PortOne switches it on
    assert cfg["webhook_retries"] is False and cfg["webhook_retry_interval_ms"] == 60_000
    assert cfg["webhook_content_type"] == "json" and cfg["webhook_hold"] is False
    assert cfg["imp_secret"] == "***"

    updated = client.config(latency_ms=5, webhook_drop_rate=0.25)
    assert updated["latency_ms"] == 5 and updated["webhook_drop_rate"] == 0.25
    assert updated["enforce_prepare"] is True  # untouched
    for bad in ({"no_such_key": 1}, {"error_rate": 2}, {"webhook_content_type": "xml"},
                {"fail_next": -1}):  # fmt: skip
        assert client.http.post("/sandbox/config", json=bad).status_code == 400


def test_latency(client: Any) -> None:
    client.token()
    client.config(latency_ms=300)
    started = time.monotonic()
    assert client.get("/payments/status/all").status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fail_next(client: Any) -> None:
    client.token()
    client.config(fail_next=2)
    statuses = [client.get("/payments/status/all").status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert client.http.get("/sandbox/config").json()["fail_next"] == 0
    body = client.http.post("/users/getToken", json={}).json()  # counts are per V1 call
    assert body["code"] == -1


def test_error_rate_is_reproducible_with_seed(client: Any) -> None:
    def run() -> list[int]:
        client.http.post("/sandbox/reset")
        client.token(fresh=True)
        client.config(error_rate=0.5, seed=42)
        return [client.get("/payments/status/all").status_code for _ in range(30)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 503}
    body = client.get("/payments/status/all")
    assert body.status_code in (200, 503)


def test_injected_cancel_failure_is_logged_and_not_applied(client: Any) -> None:
    imp_uid = client.paid("order-f1", 1000)
    client.token()
    client.config(fail_next=1)
    r = client.post("/payments/cancel", json={"imp_uid": imp_uid})
    assert r.status_code == 500 and r.json()["code"] == -1
    assert client.payment(imp_uid)["cancel_amount"] == 0
    [entry] = client.calls()["cancels"]
    assert entry["outcome"] == "fault_500" and entry["params"] == {"imp_uid": imp_uid}


def test_calls_log(client: Any) -> None:
    imp_uid = client.paid("order-f2", 1000)
    client.payment(imp_uid)
    client.payment(imp_uid)
    client.http.get(f"/payments/{imp_uid}")  # unauthorized, still counted
    client.cancel(imp_uid=imp_uid, amount=100, reason="r1")
    client.cancel(imp_uid=imp_uid, amount=5000)
    calls = client.calls()
    assert calls["counts"]["GET /payments/{imp_uid}"] == 3
    assert calls["counts"]["POST /payments/cancel"] == 2
    assert calls["counts"]["POST /users/getToken"] == 1
    applied, refused = calls["cancels"]
    assert applied["outcome"] == "applied" and applied["amount"] == 100
    assert applied["params"] == {"imp_uid": imp_uid, "amount": 100, "reason": "r1"}
    assert applied["cancellation_id"]
    assert refused["outcome"] == "refused" and refused["message"]
    assert calls["cancel_summary"] == {"applied": 1, "refused": 1}
    assert [c["status"] for c in calls["recent"] if c["endpoint"] == "GET /payments/{imp_uid}"] == [
        200, 200, 401]  # fmt: skip


def test_reset_clears_everything(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url, latency_ms=1)
    imp_uid = client.paid("order-f3", 1000)
    client.post("/payments/prepare", json={"merchant_uid": "p", "amount": 1})
    old_token = client.token()
    receiver.wait_for(1)
    assert client.http.post("/sandbox/reset").json() == {"ok": True}
    assert client.http.get(f"/payments/{imp_uid}", headers={"Authorization": old_token}).status_code == 401
    assert client.token(fresh=True) != old_token
    assert client.get(f"/payments/{client.paid('order-f4')}").status_code == 200
    assert client.get(f"/payments/{imp_uid}").status_code == 404
    assert client.get("/payments/prepare/p").status_code == 404
    assert client.http.get("/sandbox/config").json()["latency_ms"] == 0
    assert [d["state"] for d in client.deliveries()] == ["no_url"]
    assert client.calls()["counts"] == {"POST /users/getToken": 1, "GET /payments/{imp_uid}": 3,
                                        "GET /payments/prepare/{merchant_uid}": 1}  # fmt: skip


def test_apps_are_independent(sandbox: Any, make_client: Any) -> None:
    from sandbox.testing import run_sandbox_in_thread

    with run_sandbox_in_thread() as other:
        mine = make_client(sandbox.url)
        theirs = make_client(other.url, "sandbox-imp-key", "sandbox-imp-secret")
        imp_uid = mine.paid("order-independent")
        assert mine.get(f"/payments/{imp_uid}").status_code == 200
        if os.environ.get("PORTONE_IMP_KEY") is None:
            assert theirs.get(f"/payments/{imp_uid}").status_code == 404


def test_python_m_sandbox(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PORTONE_IMP_KEY": "cli-key",
           "PORTONE_IMP_SECRET": "cli-secret"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            while True:
                try:
                    r = http.post("/users/getToken", json={"imp_key": "cli-key",
                                                           "imp_secret": "cli-secret"})  # fmt: skip
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "sandbox CLI did not start"
                    time.sleep(0.05)
            assert r.status_code == 200 and r.json()["code"] == 0
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=10)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it captured.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert b"Traceback" not in err


def test_v2_requested_cancels_fail_or_complete(client: Any) -> None:
    """A V2 cancel accepted as REQUESTED: the PG may refuse it (FAILED, nothing cancelled) or finish
    it; a partly cancelled payment lists every cancellation with its status, a PAID one none."""
    from tests.v2_support import auth, checkout

    checkout(client.http, "order-req", 10000)
    client.http.post("/sandbox/v2/config", json={"cancel_requested_next": 1}).raise_for_status()
    first = client.http.post("/payments/order-req/cancel", json={"reason": "x", "amount": 1000}, headers=auth())
    assert first.json()["cancellation"]["status"] == "REQUESTED"
    paid = client.http.get("/payments/order-req", headers=auth()).json()
    assert paid["status"] == "PAID" and "cancellations" not in paid  # PaidPayment has none
    failed = client.http.post("/sandbox/v2/payments/order-req/pending-cancellations/fail")
    assert failed.status_code == 200 and failed.json()["failed"] == [first.json()["cancellation"]["id"]]
    assert failed.json()["payment"]["amount"]["cancelled"] == 0

    done = client.http.post("/payments/order-req/cancel", json={"reason": "y", "amount": 2000}, headers=auth())
    assert done.json()["cancellation"]["status"] == "SUCCEEDED"
    client.http.post("/sandbox/v2/config", json={"cancel_requested_next": 1}).raise_for_status()
    pending = client.http.post("/payments/order-req/cancel", json={"reason": "z", "amount": 3000}, headers=auth())
    payment = client.http.get("/payments/order-req", headers=auth()).json()
    assert payment["status"] == "PARTIAL_CANCELLED" and payment["amount"]["cancelled"] == 2000
    assert [(c["id"], c["status"]) for c in payment["cancellations"]] == [
        (first.json()["cancellation"]["id"], "FAILED"),
        (done.json()["cancellation"]["id"], "SUCCEEDED"),
        (pending.json()["cancellation"]["id"], "REQUESTED"),
    ]
    assert client.http.post("/sandbox/v2/payments/nope/pending-cancellations/fail").status_code == 404
