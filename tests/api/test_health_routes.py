"""`GET /healthz` (alive: asks nothing) and `GET /readyz` (database at head, PortOne accepting our
credentials, scheduled reconciliation not stale), over loopback HTTP against the sandbox."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from api.app import create_app
from services.core.migrate import upgrade
from services.runtime import Runtime
from services.system.health import PortOneProbeCache
from tests.database_access import not_writable, postgres_role
from tests.factories import SandboxControl, make_runtime
from tests.servers import free_port, serve_in_thread


@pytest.fixture
def served(runtime: Runtime) -> Iterator[tuple[FastAPI, httpx.Client]]:
    app = create_app(runtime)
    running = serve_in_thread(app)
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            yield app, client
    finally:
        running.stop()


def _ready(api: httpx.Client) -> httpx.Response:
    answer = api.get("/readyz")
    assert answer.status_code in (200, 503), answer.text
    assert "traceback" not in answer.text.lower()
    return answer


def test_healthz_is_alive_only(served: tuple[FastAPI, httpx.Client]) -> None:
    _, api = served
    assert api.get("/healthz").json() == {"status": "ok", "mode": "sandbox"}


def test_readyz_ready_with_every_check(served: tuple[FastAPI, httpx.Client]) -> None:
    _, api = served
    answer = _ready(api)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert set(body["checks"]) == {"database", "schema", "portone", "reconcile_schedule"}
    assert all(check == {"ok": True, "state": "ok"} for check in body["checks"].values()), body
    assert body["reconcile"]["stale"] is False and body["reconcile"]["last_run_at"] is None


def test_readyz_caches_portone_for_a_while_then_asks_again(
    served: tuple[FastAPI, httpx.Client], sandbox: SandboxControl
) -> None:
    app, api = served
    assert _ready(api).status_code == 200
    sandbox.configure(imp_key="another-key", imp_secret="another-secret")  # PortOne now refuses our key
    assert _ready(api).status_code == 200  # within 30 s: the last probe stands, PortOne is not asked
    app.state.portone_probes = PortOneProbeCache(ttl=0.3)
    _ready(api)
    time.sleep(0.4)
    answer = _ready(api)
    assert answer.status_code == 503, answer.text
    assert answer.json()["failed"] == ["portone"]
    assert answer.json()["checks"]["portone"] == {"ok": False, "state": "refused our key"}


def test_readyz_portone_unreachable_says_only_that(tmp_path: Path) -> None:
    rt = make_runtime(database_url=f"sqlite:///{tmp_path / 'r.db'}", portone_api_url=f"http://127.0.0.1:{free_port()}")
    running = serve_in_thread(create_app(rt))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as api:
            answer = _ready(api)
    finally:
        running.stop()
        rt.close()
    assert answer.status_code == 503 and answer.json()["failed"] == ["portone"]
    assert answer.json()["checks"]["portone"]["state"] == "unreachable"
    assert "127.0.0.1" not in answer.text and "ConnectError" not in answer.text  # no error text on a public route


def test_readyz_schema_behind_head(served: tuple[FastAPI, httpx.Client], runtime: Runtime) -> None:
    _, api = served
    with runtime.db.write() as session:
        session.execute(text("update alembic_version set version_num = '0010_notification_outbox'"))
    answer = _ready(api)
    assert answer.status_code == 503 and answer.json()["failed"] == ["schema"], answer.text
    assert answer.json()["checks"]["schema"] == {"ok": False, "state": "behind head"}


@pytest.mark.parametrize("portone_version", ["v2"])
def test_readyz_checks_v2_when_in_use(
    served: tuple[FastAPI, httpx.Client], sandbox: SandboxControl, portone_version: str
) -> None:
    app, api = served
    ready = _ready(api)
    assert ready.status_code == 200 and ready.json()["checks"]["portone_v2"] == {"ok": True, "state": "ok"}
    sandbox.http.post("/sandbox/v2/config", json={"store_id": "store-00000000-1111-4222-8333-444444444444"})
    app.state.portone_probes = PortOneProbeCache()  # a new process, as it were
    answer = _ready(api)
    assert answer.status_code == 503 and answer.json()["failed"] == ["portone_v2"], answer.text
    assert answer.json()["checks"]["portone_v2"] == {"ok": False, "state": "refused our store id"}


def _flood(url: str, readyz: int, healthz: int) -> tuple[list[tuple[float, httpx.Response]], list[float]]:
    """`readyz` GET /readyz and `healthz` GET /healthz at once, each on its own connection (a fresh
    client: no kept-alive connection the server may be closing); each one's time (and /readyz's answer)."""

    def timed(path: str) -> tuple[float, httpx.Response]:
        started = time.monotonic()
        answer = api.get(path)
        return time.monotonic() - started, answer

    limits = httpx.Limits(max_connections=readyz + healthz)
    with httpx.Client(base_url=url, timeout=30, limits=limits) as api, ThreadPoolExecutor(readyz + healthz) as pool:
        ready = [pool.submit(timed, "/readyz") for _ in range(readyz)]
        alive = [pool.submit(timed, "/healthz") for _ in range(healthz)]
        return [f.result() for f in ready], [f.result()[0] for f in alive]


def test_a_slow_portone_never_makes_readyz_or_healthz_callers_wait(
    served: tuple[FastAPI, httpx.Client], sandbox: SandboxControl
) -> None:
    """One /readyz caller probes PortOne; the others answer at once (the last result, or "checking"
    counted as not ready when there is none yet) instead of queueing on the probe and taking
    the API's request threads (40) from /healthz, orders and webhooks."""
    app, api = served
    delay, quick = 4.0, 2.5  # under the probe timeout (5 s); the old code held every caller the whole 4 s
    app.state.portone_probes = PortOneProbeCache(ttl=1.0)
    sandbox.configure(latency_ms=int(delay * 1000), latency_only="POST /users/getToken")
    try:
        # No result yet: one caller waits for its probe; the others are told "checking", not ready.
        ready, alive = _flood(str(api.base_url), readyz=60, healthz=20)
        slow = [answer for took, answer in ready if took >= quick]
        assert len(slow) == 1 and slow[0].status_code == 200, [(round(t, 2), a.status_code) for t, a in ready]
        for _, answer in (item for item in ready if item[1] is not slow[0]):
            assert answer.status_code == 503 and answer.json()["checks"]["portone"] == {
                "ok": False,
                "state": "checking",
            }
        assert max(alive) < quick, alive
        # The result has aged: one caller probes again; the others get the last result at once.
        time.sleep(1.6)
        ready, alive = _flood(str(api.base_url), readyz=60, healthz=20)
        assert sum(took >= quick for took, _ in ready) == 1, [round(t, 2) for t, _ in ready]
        assert all(answer.status_code == 200 for _, answer in ready), [a.text for _, a in ready]
        assert max(alive) < quick, alive
    finally:
        sandbox.configure(latency_ms=0, latency_only=None)


def _readyz_once(database_url: str, sandbox: SandboxControl, portone_url: str | None = None) -> httpx.Response:
    rt = make_runtime(database_url=database_url, portone_api_url=portone_url or sandbox.url)
    running = serve_in_thread(create_app(rt))
    try:
        with httpx.Client(base_url=running.url, timeout=30) as api:
            return _ready(api)
    finally:
        running.stop()
        rt.close()


def test_readyz_a_postgresql_user_that_cannot_write_is_not_ready(
    fresh_postgres_url: str, sandbox: SandboxControl
) -> None:
    upgrade(fresh_postgres_url)
    grants = ("grant select on all tables in schema public to {role}",)
    with postgres_role(fresh_postgres_url, *grants) as url:
        answer = _readyz_once(url, sandbox)
    assert answer.status_code == 503, answer.text
    assert answer.json()["checks"]["database"] == {"ok": False, "state": "cannot write"}
    assert "database" in answer.json()["failed"]


def test_readyz_a_sqlite_file_that_cannot_be_written_is_not_ready(tmp_path: Path, sandbox: SandboxControl) -> None:
    path = tmp_path / "r.db"
    upgrade(f"sqlite:///{path}")
    with not_writable(path):
        answer = _readyz_once(f"sqlite:///{path}", sandbox)
    assert answer.status_code == 503, answer.text
    assert answer.json()["checks"]["database"] == {"ok": False, "state": "cannot write"}


def test_readyz_a_server_answering_empty_json_is_not_portone(tmp_path: Path, sandbox: SandboxControl) -> None:
    """Something answers 200 `{}` at PortOne's address (a wrong address, a proxy): not ready."""

    class EmptyJson(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), EmptyJson)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    database_url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(database_url)
    try:
        answer = _readyz_once(database_url, sandbox, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["checks"]["portone"] == {"ok": False, "state": "answered, but not as PortOne does"}
