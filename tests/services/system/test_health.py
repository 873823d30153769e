"""Health: database and schema revision, PortOne reachability; a dependency down is reported, never raised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.auth.access import Actor
from services.core.config import Settings
from services.core.models import Role
from services.runtime import Runtime, build_runtime
from services.system.health import check
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
