"""Run Chekar Payments Ops locally: the PortOne sandbox, the API and the dashboard (``make run``).

1. sets sandbox-mode defaults (any of them already in the environment wins):
   PORTONE_MODE=sandbox, PORTONE_API_URL=http://127.0.0.1:<sandbox port>,
   SANDBOX_WEBHOOK_URL=http://127.0.0.1:<api port>/portone/webhook; DATABASE_URL is left to the app;
2. ``python -m cli migrate``;
3. starts ``python -m sandbox``, ``python -m api``, ``streamlit run dashboard_server.py`` and ``python -m cli scheduler``
   (the scheduled reconciliation that heals lost webhooks: RECONCILE_SCHEDULE_MINUTES, RECONCILE_SCHEDULE_WINDOW)
   and waits until each answers (the scheduler has no port: running is answering);
4. in sandbox mode, ``python -m cli seed-demo`` (seeds once; later runs change nothing);
5. prints the URLs (and what seed-demo printed, e.g. the admin login), then waits.

Ctrl-C or SIGTERM stops all four. If one of them dies, the others are stopped and this exits non-zero,
naming it. Ports: --api-port/--sandbox-port/--dashboard-port, or API_PORT/SANDBOX_PORT/DASHBOARD_PORT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 10.0
_print_lock = threading.Lock()


def say(message: str) -> None:
    with _print_lock:
        print(f"devserver | {message}", flush=True)


class Stop(Exception):
    """A signal asked us to stop."""


@dataclass
class Child:
    name: str
    argv: list[str]
    port: int | None  # None: no server (the scheduler)
    health_path: str
    process: subprocess.Popen[bytes] | None = None
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
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
        self._pump = threading.Thread(target=_prefix_lines, args=(self.name, stdout), daemon=True)
        self._pump.start()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def answers(self) -> bool:
        if self.port is None:
            return self.exit_code() is None
        try:
            with urllib.request.urlopen(self.url + self.health_path, timeout=2) as response:  # noqa: S310
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


def _prefix_lines(name: str, stream: IO[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with _print_lock:
            print(f"{name:>9} | {line}", flush=True)
    stream.close()


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def env_port(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api-port", type=int, default=env_port("API_PORT", 8000))
    parser.add_argument("--sandbox-port", type=int, default=env_port("SANDBOX_PORT", 8090))
    parser.add_argument("--dashboard-port", type=int, default=env_port("DASHBOARD_PORT", 8501))
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds to wait for each server")
    return parser.parse_args(argv)


def child_environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PORTONE_MODE", "sandbox")
    if env["PORTONE_MODE"] == "sandbox":
        env.setdefault("PORTONE_API_URL", f"http://{HOST}:{args.sandbox_port}")
        env.setdefault("SANDBOX_WEBHOOK_URL", f"http://{HOST}:{args.api_port}/portone/webhook")
        env.setdefault("SANDBOX_V2_WEBHOOK_URL", f"http://{HOST}:{args.api_port}/portone/webhook/v2")
    env["PYTHONUNBUFFERED"] = "1"  # children's logs appear as they happen
    return env


def run_step(name: str, argv: list[str], env: dict[str, str], *, echo: bool = True) -> str:
    """Run a one-off command to completion and return its standard output; a failure stops everything."""
    say(f"running {' '.join(argv[1:])}")
    result = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    output = (result.stdout + result.stderr).rstrip()
    if echo or result.returncode != 0:
        for line in output.splitlines():
            say(f"  {line}")
    if result.returncode != 0:
        raise SystemExit(f"devserver: {name} failed (exit {result.returncode})")
    return result.stdout.rstrip()


def wait_until_ready(children: list[Child], timeout: float) -> Child | None:
    """Wait for every child to answer. Returns a child that exited meanwhile, or None when all answer."""
    pending = list(children)
    deadline = time.monotonic() + timeout
    while pending:
        for child in list(pending):
            if child.exit_code() is not None:
                return child
            if child.answers():
                say(f"{child.name} is up at {child.url}" if child.port is not None else f"{child.name} is running")
                pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(f"{c.name} ({c.url}{c.health_path})" for c in pending)
            raise SystemExit(f"devserver: no answer within {timeout:.0f}s from {names}")
        time.sleep(0.3)
    return None


def stop_all(children: list[Child]) -> None:
    running = [c for c in children if c.exit_code() is None]
    if not running:
        return
    say("stopping " + ", ".join(c.name for c in running))
    for child in running:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        if not child.wait(deadline - time.monotonic()):
            say(f"{child.name} did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it")
            child.signal(signal.SIGKILL)
            child.wait(5)


def banner(children: list[Child], env: dict[str, str], seed_output: str) -> str:
    by_name = {c.name: c for c in children}
    lines = [
        "",
        "=" * 72,
        f"  Chekar Payments Ops is running  (PORTONE_MODE={env['PORTONE_MODE']})",
        "",
        f"  Dashboard         {by_name['dashboard'].url.replace(HOST, 'localhost')}",
        f"  API               {by_name['api'].url.replace(HOST, 'localhost')}   (docs: /docs)",
        f"  PortOne sandbox   {by_name['sandbox'].url.replace(HOST, 'localhost')}",
        f"  Database          {env.get('DATABASE_URL') or 'default (SQLite under data/)'}",
        f"  Reconciliation    every {env.get('RECONCILE_SCHEDULE_MINUTES') or '10'} min over the last "
        f"{env.get('RECONCILE_SCHEDULE_WINDOW') or '2d'} (python -m cli scheduler)",
    ]
    if seed_output:
        lines += ["", "  Demo data (python -m cli seed-demo):"]
        lines += [f"    {line}" for line in seed_output.splitlines()]
    lines += ["", "  Ctrl-C stops everything.", "=" * 72, ""]
    return "\n".join(lines)


def _raise_stop(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = child_environment(args)
    python = sys.executable
    children = [
        Child("sandbox", [python, "-m", "sandbox", "--port", str(args.sandbox_port)], args.sandbox_port,
              "/sandbox/config"),
        Child("api", [python, "-m", "api", "--port", str(args.api_port)], args.api_port, "/healthz"),
        Child("dashboard", [python, "-m", "streamlit", "run", "dashboard_server.py", "--server.port", str(args.dashboard_port),
                            "--server.address", HOST, "--server.headless", "true",
                            "--browser.gatherUsageStats", "false"], args.dashboard_port, "/_stcore/health"),
        Child("scheduler", [python, "-m", "cli", "scheduler"], None, ""),
    ]  # fmt: skip
    busy = [f"{c.name} port {c.port}" for c in children if c.port is not None and port_in_use(c.port)]
    if busy:
        raise SystemExit(
            f"devserver: already in use: {', '.join(busy)}. Stop what uses it, or pick other ports "
            "(make run API_PORT=... SANDBOX_PORT=... DASHBOARD_PORT=...)."
        )

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        run_step("migrate", [python, "-m", "cli", "migrate"], env)
        for child in children:
            say(f"starting {child.name}: {' '.join(child.argv[1:])}")
            child.start(env)
        dead = wait_until_ready(children, args.startup_timeout)
        seed_output = ""
        if dead is None and env["PORTONE_MODE"] == "sandbox":
            seed_output = run_step("seed-demo", [python, "-m", "cli", "seed-demo"], env, echo=False)
        if dead is None:
            print(banner(children, env, seed_output), flush=True)
        while dead is None:
            dead = next((c for c in children if c.exit_code() is not None), None)
            time.sleep(0.5)
        say(f"{dead.name} exited with code {dead.exit_code()}; stopping the others")
        stop_all(children)
        print(f"devserver: {dead.name} died (exit {dead.exit_code()})", file=sys.stderr, flush=True)
        return 1
    except Stop as stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the shutdown
        say(f"{stop} received")
        stop_all(children)
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(children)


if __name__ == "__main__":
    sys.exit(main())
