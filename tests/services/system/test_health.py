"""Health: database and schema revision, PortOne reachability; a dependency down is reported, never raised."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text

from services.auth.access import Actor
from services.core.config import Settings
from services.core.models import Role, utcnow
from services.runtime import Runtime, build_runtime
from services.system.health import PortOneProbeCache, check, probe_portone
from tests.factories import SandboxControl, make_runtime
from tests.servers import free_port

ADMIN = Actor("admin", Role.ADMIN)


def test_healthy_database_at_head_and_portone_answering(runtime: Runtime) -> None:
    health = check(runtime, actor=ADMIN)
    assert health.mode == "sandbox" and not health.is_live
    assert health.database.reachable and health.database.at_head, health.database
    assert health.database.revision == health.database.heads[0]
    assert health.portone.reachable and health.portone.authorized, health.portone
    assert health.portone.latency_ms is not None and health.portone.latency_ms >= 0
    assert health.ok


def test_portone_failing_is_reported_not_raised(runtime: Runtime, sandbox: SandboxControl) -> None:
    sandbox.configure(fail_next=20)  # more than the client's retries
    health = check(runtime, actor=ADMIN)
    assert not health.portone.reachable and not health.ok
    assert health.portone.error is not None and "500" in health.portone.error
    assert health.database.ok  # the database is still fine


def test_wrong_credentials_are_reachable_but_unauthorized(runtime: Runtime, sandbox: SandboxControl) -> None:
    sandbox.configure(imp_key="another-key", imp_secret="another-secret")
    health = check(runtime, actor=ADMIN)
    assert health.portone.reachable and not health.portone.authorized
    assert not health.ok


@pytest.fixture
def unreachable_runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(database_url=f"sqlite:///{tmp_path / 'h.db'}", portone_api_url=f"http://127.0.0.1:{free_port()}")
    try:
        yield rt
    finally:
        rt.close()


def test_unreachable_portone(unreachable_runtime: Runtime) -> None:
    health = check(unreachable_runtime, actor=ADMIN)
    assert not health.portone.reachable
    assert health.portone.api_url.startswith("http://127.0.0.1:")
    assert health.portone.error and "unreachable" in health.portone.error


def test_unmigrated_database_is_not_at_head(tmp_path: Path, sandbox: SandboxControl) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'new.db'}", portone_api_url=sandbox.url)
    rt = build_runtime(settings)
    try:
        health = check(rt, actor=ADMIN)
    finally:
        rt.close()
    assert health.database.reachable and health.database.revision is None
    assert not health.database.at_head and not health.ok
    assert health.portone.ok


def test_a_database_migrated_by_newer_code_is_ahead(runtime: Runtime) -> None:
    with runtime.db.write() as session:
        session.execute(text("update alembic_version set version_num = '0099_from_newer_code'"))
    database = check(runtime, actor=ADMIN).database
    assert database.reachable and not database.known_revision and database.schema == "ahead"
    assert not database.ok


def test_an_older_revision_is_behind(runtime: Runtime) -> None:
    with runtime.db.write() as session:
        session.execute(text("update alembic_version set version_num = '0010_notification_outbox'"))
    health = check(runtime, actor=ADMIN)
    assert health.database.schema == "behind" and not health.ok
    assert [c.name for c in health.checks if not c.ok] == ["schema"]


@pytest.mark.parametrize("portone_version", ["v2"])
def test_v2_in_use_is_probed_with_its_store(runtime: Runtime, sandbox: SandboxControl, portone_version: str) -> None:
    health = check(runtime, actor=ADMIN)
    assert health.portone_v2 is not None and health.portone_v2.ok and health.portone_v2.api == "v2"
    assert health.portone.ok and health.portone.api == "v1"  # V1 payments keep working beside V2
    sandbox.http.post("/sandbox/v2/config", json={"store_id": "store-00000000-1111-4222-8333-444444444444"})
    refused = check(runtime, actor=ADMIN).portone_v2
    assert refused is not None and refused.reachable and not refused.authorized and refused.refused == "store"


def test_v1_only_does_not_probe_v2(runtime: Runtime) -> None:
    assert check(runtime, actor=ADMIN).portone_v2 is None


def test_the_schedule_goes_stale_after_a_watch_without_a_finished_run(runtime: Runtime) -> None:
    long_ago = utcnow() - timedelta(minutes=31)  # RECONCILE_STALE_MINUTES is 30
    health = check(runtime, actor=ADMIN, watching_since=long_ago)
    assert health.schedule is not None and health.schedule.stale and not health.ok
    assert [(c.name, c.state) for c in health.checks if not c.ok] == [("reconcile_schedule", "stale")]
    assert check(runtime, actor=ADMIN, watching_since=utcnow()).ok


def test_the_probe_cache_asks_portone_again_only_when_it_expires(runtime: Runtime, sandbox: SandboxControl) -> None:
    probes = PortOneProbeCache(ttl=0.5)
    first, _ = probes.get(runtime.settings)
    sandbox.configure(imp_key="another-key", imp_secret="another-secret")
    assert probes.get(runtime.settings)[0] is first  # cached: PortOne not asked
    time.sleep(0.6)
    again, _ = probes.get(runtime.settings)
    assert again is not first and again.refused == "key" and not again.ok


def test_v1_and_v2_are_probed_at_once(sandbox: SandboxControl) -> None:
    """Both slow: the probe takes about the slower one's time, not the sum (it holds one /readyz
    caller that long)."""
    import services.portone.v2  # noqa: F401 - the SDK's import (about a second) is not what is timed

    delay = 2.0

    class SlowV2(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            body = b'{"items": [], "page": {"number": 0, "size": 0, "totalCount": 0}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowV2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = Settings(
        portone_mode="sandbox",
        portone_api_url=sandbox.url,
        portone_api_version="v2",
        portone_v2_api_url=f"http://127.0.0.1:{server.server_address[1]}",
    )
    sandbox.configure(latency_ms=int(delay * 1000), latency_only="POST /users/getToken")
    try:
        started = time.monotonic()
        v1, v2 = probe_portone(settings)
        took = time.monotonic() - started
    finally:
        sandbox.configure(latency_ms=0, latency_only=None)
        server.shutdown()
        server.server_close()
    assert v1.ok and v2 is not None and v2.ok, (v1, v2)
    assert took < 2 * delay - 0.5, took
