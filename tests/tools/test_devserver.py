"""`make run` (tools/devserver.py) shares serve's parts (tools/processes.py): a standard output nobody
reads holds up no request, and SIGKILL on the supervisor takes all four children with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port
from tests.tools.test_serve import ROOT, _children_of, _in_groups, _wait_until
from tools.processes import port_in_use


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_make_run_unread_holds_up_no_request_and_dies_with_its_children(tmp_path: Path) -> None:
    ports = {"api": free_port(), "sandbox": free_port(), "dashboard": free_port()}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PORTONE_", "SANDBOX_"))}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "tools/devserver.py", *(f"--{name}-port={port}" for name, port in ports.items())]
    devserver = subprocess.Popen(  # noqa: S603 - our own interpreter and script
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{ports['api']}"
    children: dict[int, str] = {}
    try:

        def ready() -> bool:
            children.clear()
            children.update({pid: cmd for pid, cmd in _children_of(devserver.pid).items() if "seed-demo" not in cmd})
            return len(children) == 4 and _healthy(f"{api_url}/healthz")

        _wait_until(lambda: ready() or devserver.poll() is not None, "make run never got ready", 120)
        assert devserver.poll() is None
        with httpx.Client(base_url=api_url, timeout=5) as api:
            began = time.monotonic()
            for _ in range(2000):  # nobody reads devserver's output meanwhile
                assert api.get("/healthz").status_code == 200
            assert time.monotonic() - began < 120

        devserver.send_signal(signal.SIGKILL)
        devserver.wait(timeout=10)
        _wait_until(
            lambda: not _in_groups(set(children)) and not any(port_in_use("127.0.0.1", p) for p in ports.values()),
            "children or ports left after make run was killed",
            15,
        )
    finally:
        for group in [devserver.pid, *children]:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        devserver.wait(timeout=30)
        for stream in (devserver.stdout, devserver.stderr):
            if stream is not None:
                stream.close()
