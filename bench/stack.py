"""Start the sandbox and the API as real processes on free loopback ports, for benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url}")


@dataclass(frozen=True)
class Stack:
    sandbox_url: str
    api_url: str
    database_url: str
    env: dict[str, str]
    sandbox_pid: int | None = None
    api_pid: int | None = None  # for sampling its memory (bench/soak.py)


@contextmanager
def running_stack(database_url: str, *, api: bool = True, log_dir: Path | None = None) -> Iterator[Stack]:
    """The sandbox (and our API, wired to it) as subprocesses; stopped on exit.

    With `log_dir`, each process's stderr goes to `<name>.log` there (else it is discarded)."""
    sandbox_port, api_port = free_port(), free_port()
    sandbox_url, api_url = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{api_port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox_url,
        "INTERNAL_API_TOKEN": "bench-internal-token",
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": ROOT, "env": env}
    subprocess.run([sys.executable, "-m", "cli", "migrate"], check=True, **quiet)  # noqa: S603
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def output(name: str) -> dict[str, object]:
        if log_dir is None:
            return quiet
        logs.append((log_dir / f"{name}.log").open("ab"))
        return {**quiet, "stderr": logs[-1]}

    try:
        sandbox = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "sandbox", "--port", str(sandbox_port), "--log-level", "warning"],
            **output("sandbox"),
        )
        processes.append(sandbox)
        _wait(f"{sandbox_url}/sandbox/config", sandbox, "sandbox")
        if api:
            server = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "api", "--port", str(api_port), "--log-level", "warning"], **output("api")
            )
            processes.append(server)
            _wait(f"{api_url}/healthz", server, "api")
        yield Stack(
            sandbox_url=sandbox_url,
            api_url=api_url,
            database_url=database_url,
            env=env,
            sandbox_pid=processes[0].pid,
            api_pid=processes[1].pid if api else None,
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()
