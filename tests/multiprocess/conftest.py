"""Several processes, one database: the sandbox, two API processes, two dashboard processes and the
scheduler, each a real subprocess, over one throwaway PostgreSQL database migrated once with
`python -m cli migrate`. Started once for the module (`cluster`), stopped at its end.

The processes are the ones tests/e2e/conftest.py starts (its `Server`, reused), with settings that
make what is slow in production quick here: a scheduled reconciliation every 6 s over the last
hour, refund leases of a few seconds, and no grace for a payment missing from our records.
The sandbox sends no webhook of its own (no webhook URL is set): the tests post each delivery
themselves, as PortOne would, to the API they choose.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from tests.e2e.conftest import ROOT, Server, Stack, _run, _wait_until_ready
from tests.factories import INTERNAL_TOKEN, SandboxControl
from tests.postgres_server import PostgresServer
from tests.servers import free_port

OPERATOR = ("mp-operator", "mp-operator-password")
REFUND_LEASE_SECONDS = 5  # a killed API's refund lease lapses quickly
REFUND_GRACE_SECONDS = 3  # an unanswered cancel not shown by PortOne after this long was not applied
SCHEDULE_MINUTES = "0.1"  # a scheduled reconciliation every 6 s
WAIT_SECONDS = 90.0

T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], *, timeout: float = WAIT_SECONDS, every: float = 0.2) -> T:
    """Poll `probe` until it gives something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def api_server(name: str, port: int, workdir: Path) -> Server:
    url = f"http://127.0.0.1:{port}"
    return Server(name, [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
                  f"{url}/healthz", workdir / f"{name}.log")  # fmt: skip


def dashboard_server(name: str, port: int, workdir: Path) -> Server:
    url = f"http://127.0.0.1:{port}"
    return Server(name, [sys.executable, "-m", "streamlit", "run", "dashboard_server.py", "--server.port", str(port),
                         "--server.address", "127.0.0.1", "--server.headless", "true",
                         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                  f"{url}/_stcore/health", workdir / f"{name}.log")  # fmt: skip


def url_of(server: Server) -> str:
    return server.health_url.rsplit("/", 1)[0].removesuffix("/_stcore")


@dataclass
class Cluster:
    """The running processes, the database they share, and clients for the sandbox."""

    workdir: Path
    env: dict[str, str]
    database_url: str
    engine: Engine
    sandbox: SandboxControl
    servers: dict[str, Server]

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url

    @property
    def api_urls(self) -> tuple[str, str]:
        return url_of(self.servers["api-a"]), url_of(self.servers["api-b"])

    @property
    def dashboard_urls(self) -> tuple[str, str]:
        return url_of(self.servers["dashboard-a"]), url_of(self.servers["dashboard-b"])

    def stack(self, dashboard: int = 0) -> Stack:
        """The e2e helpers' view of one dashboard (tests.e2e.conftest.login takes a Stack)."""
        return Stack(self.sandbox_url, self.api_urls[0], self.dashboard_urls[dashboard], self.database_url, self.env)

    def session(self) -> Session:
        return Session(self.engine)

    def restart(self, name: str) -> Server:
        """Start the process `name` again on its port (after it was killed)."""
        old = self.servers[name]
        old.stop()
        server = Server(f"{name}-restarted", old.argv, old.health_url, self.workdir / f"{name}-restarted.log")
        server.start(self.env)
        _wait_until_ready([server])
        self.servers[name] = server
        return server

    def run_cli(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "cli", *args],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"python -m cli {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


def refund_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {INTERNAL_TOKEN}", "Idempotency-Key": key}


@pytest.fixture(scope="module")
def cluster(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("multiprocess")
    database = postgres_server.create_database()
    database_url = postgres_server.url(database)
    ports = {name: free_port() for name in ("sandbox", "api-a", "api-b", "dashboard-a", "dashboard-b")}
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox_url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "API_PUBLIC_URL": f"http://127.0.0.1:{ports['api-a']}",
        "REFUND_LOCK_LEASE_SECONDS": str(REFUND_LEASE_SECONDS),
        "REFUND_UNKNOWN_GRACE_SECONDS": str(REFUND_GRACE_SECONDS),
        "RECONCILE_SCHEDULE_MINUTES": SCHEDULE_MINUTES,
        "RECONCILE_SCHEDULE_WINDOW": "1h",
        "RECONCILE_MISSING_GRACE_MINUTES": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SANDBOX_WEBHOOK_URL", None)  # the tests deliver every webhook themselves
    python = sys.executable
    servers = {
        "sandbox": Server("sandbox", [python, "-m", "sandbox", "--port", str(ports["sandbox"])],
                          f"{sandbox_url}/sandbox/health", workdir / "sandbox.log"),
        "api-a": api_server("api-a", ports["api-a"], workdir),
        "api-b": api_server("api-b", ports["api-b"], workdir),
        "dashboard-a": dashboard_server("dashboard-a", ports["dashboard-a"], workdir),
        "dashboard-b": dashboard_server("dashboard-b", ports["dashboard-b"], workdir),
        "scheduler": Server("scheduler", [python, "-m", "cli", "scheduler"], f"{sandbox_url}/sandbox/health",
                            workdir / "scheduler.log"),
    }  # fmt: skip
    engine = create_engine(database_url, pool_pre_ping=True)
    try:
        servers["sandbox"].start(env)  # needs no database: boots while we migrate
        _run([python, "-m", "cli", "migrate"], env)
        for name, server in servers.items():
            if name != "sandbox":
                server.start(env)
        _run([python, "-m", "cli", "users", "add", OPERATOR[0], "--role", "operator"], env, stdin=OPERATOR[1] + "\n")
        _wait_until_ready([s for name, s in servers.items() if name != "scheduler"])
        with httpx.Client(base_url=sandbox_url, timeout=30) as http:
            yield Cluster(workdir, env, database_url, engine, SandboxControl(sandbox_url, http), servers)
    finally:
        for server in reversed(servers.values()):  # restarted ones replace the killed
            with contextlib.suppress(Exception):
                server.stop()
        engine.dispose()
        postgres_server.drop_database(database)


def log_of(server: Server) -> str:
    try:
        return server.log_path.read_text(errors="replace")
    except OSError:
        return ""


def answer_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
