"""The database failing under a request: PostgreSQL unreachable or stopped mid-request, SQLite
write-locked by another process. The API answers 503 database_unavailable (a readable message, no
stack trace), nothing is half-written, and once the database is back the retry (or PortOne's
redelivery) leaves our records equal to PortOne's."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.reliability.fault_support import assert_state_equals_portone, deliver_webhook, paid_at_portone, paid_rows

HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextmanager
def write_locked_by_another_process(path: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holds SQLite's write lock (BEGIN EXCLUSIVE) until it is told to commit."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_WRITE_LOCK, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            yield holder
        finally:
            if holder.poll() is None:
                release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0


def _assert_database_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "database_unavailable"
    _assert_no_internals(answer)


def _assert_webhook_refused_for_retry(answer: httpx.Response) -> None:
    """503: PortOne delivers it again later."""
    assert answer.status_code == 503, answer.text
    _assert_no_internals(answer)


def _assert_no_internals(answer: httpx.Response) -> None:
    text = answer.text.lower()
    assert "traceback" not in text and "sqlalchemy" not in text and "psycopg" not in text, answer.text


@pytest.mark.reliability(
    area="fault",
    case="database unreachable (PostgreSQL refusing connections)",
    outcome="503 database_unavailable with a readable message, no stack trace; nothing half-written; /healthz alive, /readyz 503 database unreachable",
)
def test_database_unreachable_answers_503(sandbox: SandboxControl) -> None:
    from api.app import create_app
    from services.core.config import Settings
    from services.core.db import Database
    from services.runtime import make_gateway
    from tests.servers import free_port, serve_in_thread

    url = f"postgresql+psycopg://chekar@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"
    settings = Settings(database_url=url, portone_mode="sandbox", portone_api_url=sandbox.url)
    runtime = Runtime(settings=settings, db=Database(url), gateway=make_gateway(settings))
    served = serve_in_thread(create_app(runtime))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as api:
            assert api.get("/healthz").json() == {"status": "ok", "mode": "sandbox"}  # alive: asks nothing
            ready = api.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["database"] == {"ok": False, "state": "unreachable"}
            assert ready.json()["failed"] == ["database", "schema", "reconcile_schedule"], ready.text
            assert ready.json()["reconcile"] is None
            _assert_no_internals(ready)
            for method, path, body in [
                ("POST", "/api/orders", {"customer_email": "a@example.com", "customer_name": "김"}),
                ("POST", "/portone/webhook", {"imp_uid": "imp_1", "merchant_uid": "m", "status": "paid"}),
            ]:
                answer = api.request(method, path, json=body)
                _assert_database_unavailable(answer)
    finally:
        served.stop()
        runtime.close()


@pytest.mark.reliability(
    area="fault",
    case="PostgreSQL stopped while /complete waits for PortOne, a webhook arriving meanwhile",
    outcome="both 503 database_unavailable, nothing half-written; once restarted the retry and the redelivery record it paid once",
)
def test_postgresql_stopped_mid_request(sandbox: SandboxControl) -> None:
    from api.app import create_app
    from tests.servers import serve_in_thread
    from tools.throwaway_postgres import running_postgres

    with running_postgres() as server:
        url = server.url(server.create_database())
        runtime = make_runtime(database_url=url, portone_api_url=sandbox.url)
        served = serve_in_thread(create_app(runtime))

        try:
            with httpx.Client(base_url=served.url, timeout=60) as api:
                imp_uid, merchant_uid = paid_at_portone(api, sandbox)
                body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid}
                sandbox.configure(latency_ms=1500, latency_only="GET /payments/")  # /complete is asking PortOne
                answers: list[httpx.Response] = []
                complete = threading.Thread(
                    target=lambda: answers.append(api.post("/api/payments/complete", json=body))
                )
                complete.start()
                _wait_for_call(sandbox, "GET /payments/{imp_uid}")
                server.pause()  # PostgreSQL goes away under the request
                complete.join(timeout=60)
                [answer] = answers
                _assert_database_unavailable(answer)
                sandbox.configure(latency_ms=0)
                _assert_webhook_refused_for_retry(api.post("/portone/webhook", json={**body, "status": "paid"}))

                server.resume()
                _assert_recovered_once(api, runtime, sandbox, body)
        finally:
            served.stop()
            runtime.close()


def _assert_recovered_once(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, body: dict[str, str]) -> None:
    """Nothing half-written by the refused requests; the app's retry and PortOne's redelivery
    then record the payment paid, once."""
    assert paid_rows(runtime) == 0
    again = api.post("/api/payments/complete", json=body)
    assert again.status_code == 200 and again.json()["status"] == "paid", again.text
    assert deliver_webhook(sandbox, f"{api.base_url}/portone/webhook", body["imp_uid"])["state"] == "delivered"
    assert paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


def _wait_for_call(sandbox: SandboxControl, endpoint: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not sandbox.calls()["counts"].get(endpoint):
        assert time.monotonic() < deadline, f"{endpoint} never reached PortOne"
        time.sleep(0.02)


@pytest.mark.reliability(
    area="fault",
    case="SQLite write-locked by another process during /complete, released within the busy timeout",
    outcome="the request waits for the lock, then records the payment once; nothing lost",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_locked_during_complete(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = paid_at_portone(api, sandbox)
    with write_locked_by_another_process(str(runtime.db.engine.url.database)) as holder:
        released = threading.Event()

        def release_later() -> None:
            time.sleep(1.0)
            release(holder)
            released.set()

        threading.Thread(target=release_later, daemon=True).start()
        answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": merchant_uid})
        assert released.is_set()  # it really waited for the other writer
    assert answer.status_code == 200, answer.text
    assert paid_rows(runtime) == 1
    assert_state_equals_portone(runtime, sandbox)


@pytest.mark.reliability(
    area="fault",
    case="SQLite write-locked by another process past the busy timeout (/complete, webhook)",
    outcome="503 database_unavailable, nothing half-written; once released the retry and the redelivery record it paid once",
)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_database_locked_past_the_busy_timeout(database_url: str, sandbox: SandboxControl) -> None:
    from api.app import create_app
    from tests.servers import serve_in_thread

    runtime = make_runtime(database_url=database_url, portone_api_url=sandbox.url, sqlite_busy_timeout_seconds=0.5)
    served = serve_in_thread(create_app(runtime))
    try:
        with httpx.Client(base_url=served.url, timeout=60) as api:
            imp_uid, merchant_uid = paid_at_portone(api, sandbox)
            body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid}
            with write_locked_by_another_process(str(runtime.db.engine.url.database)):
                _assert_database_unavailable(api.post("/api/payments/complete", json=body))
                _assert_webhook_refused_for_retry(api.post("/portone/webhook", json={**body, "status": "paid"}))
                order = {"customer_email": "a@example.com", "customer_name": "김"}
                _assert_database_unavailable(api.post("/api/orders", json=order))
            _assert_recovered_once(api, runtime, sandbox, body)
    finally:
        served.stop()
        runtime.close()
