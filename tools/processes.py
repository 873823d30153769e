"""Child processes for the supervisors (tools/devserver.py for `make run`, tools/serve.py for `make serve`).

Each child runs in its own process group (stopped with everything it spawned), its output is read
line by line by a pump thread and handed to a writer the supervisor chooses (devserver prefixes the
name, serve writes JSON), readiness is a health URL answering (or, with no port, still running),
and stopping is SIGTERM to every group, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# (child name, one line of its output without the newline)
LineWriter = Callable[[str, str], None]


class Stop(Exception):
    """A signal asked us to stop."""


def raise_stop(signum: int, _frame: object) -> None:
    """Signal handler: SIGTERM / SIGINT become `Stop`, unwinding the supervisor's main loop."""
    raise Stop(signal.Signals(signum).name)


def ignore_stop_signals() -> None:
    """While stopping: a second SIGTERM or Ctrl-C would unwind the shutdown and orphan the children."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None  # None: no server (the scheduler)
    health_path: str
    host: str = HOST
    process: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def probe_url(self) -> str:
        """Where readiness is asked: a wildcard listen address is reached over loopback."""
        host = HOST if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104 - compared, not bound
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.health_path}"

    def start(self, env: dict[str, str], write: LineWriter) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop it (and anything it spawned) ourselves
        )
        stdout = self.process.stdout
        if stdout is None:  # cannot happen with stdout=PIPE; keeps the type checker honest
            raise RuntimeError(f"{self.name}: no output pipe")
        self._pump = threading.Thread(target=_pump_lines, args=(self.name, stdout, write), daemon=True)
        self._pump.start()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def answers(self) -> bool:
        if self.port is None:
            return self.exit_code() is None
        try:
            with urllib.request.urlopen(self.probe_url, timeout=2) as response:  # noqa: S310
                return int(response.status) < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except (OSError, ValueError):
            return False

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return False
        if self._pump is not None:
            self._pump.join(timeout=2)
        return True


def _pump_lines(name: str, stream: IO[bytes], write: LineWriter) -> None:
    for raw in iter(stream.readline, b""):
        write(name, raw.decode(errors="replace").rstrip("\r\n"))
    stream.close()


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on `host`:`port` (a wildcard address is asked over loopback)."""
    host = HOST if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def run_step(
    name: str, argv: list[str], env: dict[str, str], *, say: Callable[[str], None], program: str, echo: bool = True
) -> str:
    """Run a one-off command to completion and return its standard output; a failure stops everything
    (SystemExit naming the step)."""
    say(f"running {' '.join(argv[1:])}")
    result = subprocess.run(  # noqa: S603 - our own interpreter and modules
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    output = (result.stdout + result.stderr).rstrip()
    if echo or result.returncode != 0:
        for line in output.splitlines():
            say(f"  {line}")
    if result.returncode != 0:
        raise SystemExit(f"{program}: {name} failed (exit {result.returncode})")
    return result.stdout.rstrip()


def wait_until_ready(
    children: list[Child], timeout: float, *, on_ready: Callable[[Child], None], program: str
) -> Child | None:
    """Wait for every child to answer. Returns a child that exited meanwhile, or None when all answer;
    SystemExit naming the silent ones after `timeout` seconds."""
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        for child in list(pending):
            if child.exit_code() is not None:
                return child
            if child.answers():
                on_ready(child)
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{c.name} ({c.probe_url})" if c.port is not None else c.name for c in pending)
            raise SystemExit(f"{program}: no answer within {timeout:.0f}s from {names}")
        time.sleep(0.3)
    return None


def first_dead(children: list[Child], poll_seconds: float = 0.5) -> Child:
    """Block until one child exits; that child."""
    while True:
        dead = next((c for c in children if c.exit_code() is not None), None)
        if dead is not None:
            return dead
        time.sleep(poll_seconds)


def stop_all(children: list[Child], grace_seconds: float, say: Callable[[str], None]) -> None:
    """SIGTERM to every running child, up to `grace_seconds` for all of them together, then SIGKILL."""
    running = [c for c in children if c.exit_code() is None]
    if not running:
        return
    say("stopping " + ", ".join(c.name for c in running))
    for child in running:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    for child in running:
        if not child.wait(deadline - time.monotonic()):
            say(f"{child.name} did not stop in {grace_seconds:.0f}s; killing it")
            child.signal(signal.SIGKILL)
            child.wait(5)
