"""Shared fixtures: real databases (SQLite file and a throwaway PostgreSQL server), the PortOne
sandbox over loopback HTTP, and our API served by uvicorn. Nothing of ours is mocked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser import browser, playwright_driver  # noqa: F401 - session fixtures for every browser test
from tests.factories import SandboxControl
from tests.webhook_receiver import WebhookReceiver

pytest_plugins = ["tests.postgres_server", "tests.reliability_report"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that takes this runs twice: on a SQLite file and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chekar-test.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[str]:
    from sandbox.testing import run_sandbox_in_thread

    running = run_sandbox_in_thread()
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture
def portone_version() -> str:
    """The PortOne API version under test; modules that cover both override it with params."""
    return "v1"


@pytest.fixture
def sandbox(sandbox_server: str, portone_version: str) -> Iterator[SandboxControl]:
    with httpx.Client(base_url=sandbox_server, timeout=30) as client:
        control = SandboxControl(url=sandbox_server, http=client, version=portone_version)
        control.reset()
        yield control
        control.reset()


@pytest.fixture
def runtime(database_url: str, sandbox: SandboxControl, portone_version: str) -> Iterator[object]:
    from tests.factories import make_runtime

    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, portone_api_version=portone_version)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def api(runtime: object, sandbox: SandboxControl) -> Iterator[httpx.Client]:
    """Our API on loopback, with the sandbox delivering webhooks to it."""
    from api.app import create_app
    from tests.servers import serve_in_thread

    served = serve_in_thread(create_app(runtime))  # type: ignore[arg-type]
    sandbox.http.post("/sandbox/config", json={"webhook_url": f"{served.url}/portone/webhook"}).raise_for_status()
    sandbox.http.post("/sandbox/v2/config", json={"webhook_url": f"{served.url}/portone/webhook/v2"}).raise_for_status()
    try:
        with httpx.Client(base_url=served.url, timeout=60) as client:
            yield client
    finally:
        served.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A loopback HTTP server that records what is posted to it (webhook and notification targets)."""
    running = WebhookReceiver()
    try:
        yield running
    finally:
        running.close()
