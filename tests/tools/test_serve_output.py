"""`make serve` when its standard output stalls, closes, or serve itself is killed: a reader that stops
reading never holds up a request nor the stop (lines are dropped and counted instead); a reader that
closes (`serve | head`) stops serve and its children; SIGKILL on serve takes its children with it.
Real processes throughout: serve, its API, dashboard and scheduler, a sandbox pretending to be PortOne."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.core.migrate import WAITING_MESSAGE, sqlite_migration_lock
from tests.servers import free_port
from tests.tools.test_serve import ROOT, Process, _children_of, _in_groups, _sandbox, _secrets, _wait_until
from tools.processes import port_in_use

STARTUP_SECONDS = 120


@dataclass(frozen=True)
class Stalled:
    """Serve whose standard output is a pipe this test reads only when it chooses to."""

    popen: subprocess.Popen[bytes]
    api_url: str
    ports: tuple[int, int]
    children: dict[int, str]

    def left(self) -> dict[int, str]:
        """Processes still alive in the children's process groups (each child leads its own)."""
        return _in_groups(set(self.children))

    def ports_in_use(self) -> list[int]:
        return [port for port in self.ports if port_in_use("127.0.0.1", port)]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def _unread_serve(database_url: str, workers: int = 1) -> Iterator[Stalled]:
    api_port, dashboard_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    base = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    shared = {**base, **_secrets(), "PYTHONUNBUFFERED": "1"}
    with _sandbox({**shared, "SANDBOX_WEBHOOK_URL": f"{api_url}/portone/webhook"}) as sandbox_url:
        env = {
            **shared,
            "DATABASE_URL": database_url,
            "PORTONE_MODE": "test",
            "PORTONE_API_URL": sandbox_url,
            "PORTONE_V2_API_URL": sandbox_url,
            "API_PORT": str(api_port),
            "DASHBOARD_PORT": str(dashboard_port),
            "API_WORKERS": str(workers),
        }
        popen = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "tools/serve.py"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        children: dict[int, str] = {}
        try:
            # Ready without reading a line: both servers answer and all three children run.
            def ready() -> bool:
                children.clear()
                children.update(_children_of(popen.pid))  # check-config and migrate come and go first
                return (
                    len(children) == 3
                    and _healthy(f"{api_url}/healthz")
                    and _healthy(f"http://127.0.0.1:{dashboard_port}/_stcore/health")
                )

            _wait_until(lambda: ready() or popen.poll() is not None, "serve never got ready", STARTUP_SECONDS)
            assert popen.poll() is None, popen.communicate(timeout=30)
            yield Stalled(popen, api_url, (api_port, dashboard_port), dict(children))
        finally:
            for group in [popen.pid, *children]:
                try:
                    os.killpg(group, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            popen.wait(timeout=30)
            for stream in (popen.stdout, popen.stderr):
                if stream is not None:
                    stream.close()


def _read_lines(stream: object, into: list[str]) -> threading.Thread:
    def read() -> None:
        for raw in stream:  # type: ignore[attr-defined]
            into.append(raw.decode(errors="replace").rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def _gone_within(served: Stalled, seconds: float) -> None:
    _wait_until(lambda: not served.left() and not served.ports_in_use(), "children or ports left", seconds)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_standard_output_nobody_reads_holds_up_neither_requests_nor_the_stop(database_url: str) -> None:
    with _unread_serve(database_url) as served:
        slowest = 0.0
        with httpx.Client(base_url=served.api_url, timeout=5) as api:
            began = time.monotonic()
            for _ in range(2000):  # one request log line each: far more than a pipe holds
                started = time.monotonic()
                assert api.get("/healthz").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
            took = time.monotonic() - began
        assert slowest < 2 and took < 120, (slowest, took)

        stopping = time.monotonic()
        served.popen.send_signal(signal.SIGTERM)  # still nobody reads its output
        assert served.popen.wait(timeout=60) == 0
        assert time.monotonic() - stopping < 30
        _gone_within(served, 10)
        assert served.popen.stderr is not None
        said = served.popen.stderr.read().decode()
        assert "lines of output were dropped: standard output was full" in said, said


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_lines_dropped_while_nobody_read_are_counted_once_reading_resumes(database_url: str) -> None:
    with _unread_serve(database_url) as served:
        with httpx.Client(base_url=served.api_url, timeout=5) as api:
            for _ in range(2000):
                assert api.get("/healthz").status_code == 200
            lines: list[str] = []
            _read_lines(served.popen.stdout, lines)

            def counted() -> bool:
                api.get("/healthz")
                return any("lines of output were dropped" in line for line in lines)

            _wait_until(counted, "no line counted what was dropped", 30)
        [note] = [json.loads(line) for line in lines if "lines of output were dropped" in line]
        assert note["process"] == "serve"
        dropped = int(note["message"].split()[0])
        assert dropped > 0
        # What was queued while nobody read follows the note: every request is written or counted.
        requests = lambda: sum(1 for line in list(lines) if '"chekar.request"' in line)  # noqa: E731
        _wait_until(lambda: requests() + dropped >= 2000, f"{dropped} dropped, {requests()} written", 30)
        served.popen.send_signal(signal.SIGTERM)
        assert served.popen.wait(timeout=60) == 0
        _gone_within(served, 10)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_standard_output_that_closes_stops_serve_and_its_children(database_url: str) -> None:
    """As `make serve | head -n 5`: the reader takes a few lines and goes."""
    with _unread_serve(database_url) as served:
        assert served.popen.stdout is not None
        for _ in range(5):
            json.loads(served.popen.stdout.readline())
        served.popen.stdout.close()
        with httpx.Client(base_url=served.api_url, timeout=5) as api:

            def stopped() -> bool:
                try:
                    api.get("/healthz")  # a line to write, which finds the reader gone
                except httpx.HTTPError:
                    pass
                return served.popen.poll() is not None

            _wait_until(stopped, "serve went on with nobody to read it", 60)
        assert served.popen.returncode == 1
        _gone_within(served, 10)
        assert served.popen.stderr is not None
        said = served.popen.stderr.read().decode()
        assert "serve: stopped: standard output closed" in said, said
        assert "Traceback" not in said, said


@pytest.mark.parametrize(("database_url", "workers"), [("sqlite", 1), ("postgresql", 2)], indirect=["database_url"])
def test_serve_killed_takes_its_children_with_it(database_url: str, workers: int) -> None:
    with _unread_serve(database_url, workers) as served:
        lines: list[str] = []
        _read_lines(served.popen.stdout, lines)
        served.popen.send_signal(signal.SIGKILL)
        served.popen.wait(timeout=10)
        # SIGTERM from the kernel: the API (its workers too, in its process group) and the scheduler stop gracefully
        _gone_within(served, 15)


def test_serve_says_it_waits_for_the_migration_lock_and_stops_there_without_stopping_what_never_started(
    tmp_path: Path,
) -> None:
    """Another process migrating: serve's `release` says so while it waits (not a silent hang); SIGTERM
    then ends serve at once, naming nothing as stopped since nothing had started."""
    database = tmp_path / "serve.db"
    api_port, dashboard_port = free_port(), free_port()
    base = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    shared = {**base, **_secrets(), "PYTHONUNBUFFERED": "1"}
    with _sandbox(shared) as sandbox_url, sqlite_migration_lock(database):  # held as another migrating process would
        env = {
            **shared,
            "DATABASE_URL": f"sqlite:///{database}",
            "PORTONE_MODE": "test",
            "PORTONE_API_URL": sandbox_url,
            "PORTONE_V2_API_URL": sandbox_url,
            "API_PORT": str(api_port),
            "DASHBOARD_PORT": str(dashboard_port),
            "API_WORKERS": "1",
        }
        serve = Process.start([sys.executable, "tools/serve.py"], env)
        try:
            _wait_until(
                lambda: any(WAITING_MESSAGE in line for line in serve.lines) or serve.popen.poll() is not None,
                "serve never said it waits for the migration lock",
                STARTUP_SECONDS,
            )
            assert serve.popen.poll() is None, serve.lines
            os.killpg(serve.popen.pid, signal.SIGTERM)
            assert serve.finish(timeout=30) == 0
        finally:
            serve.stop()
    said = [record["message"] for record in serve.records() if record["process"] == "serve"]
    assert not any(message.startswith(("starting ", "stopping ")) for message in said), said
    assert said[-2:] == ["SIGTERM received", "stopped"], said
