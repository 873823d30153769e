"""Run Chekar Payments Ops for real (``make serve``): the Procfile's processes under one supervisor.

1. reads the settings: refuses sandbox mode ("make serve talks to PortOne") and, through Settings,
   placeholder secrets;
2. ``python -m cli check-config --at-start``: every setting, the database and PortOne, said in plain
   words (a failed check stops here, before anything is migrated or started; PortOne unreachable is
   only a warning, so a blip at start-up does not leave webhooks unanswered, while a refused key fails);
3. the Procfile's ``release`` (``python -m cli migrate``: once, under a database lock);
4. starts the Procfile's ``api`` (API_WORKERS uvicorn processes), ``dashboard`` and ``scheduler``,
   each with LOG_FORMAT=json, and waits until each answers;
5. writes one JSON object per line on standard output: its own (``"process": "serve"``), its
   children's JSON lines with ``"process"`` added, and any other child line wrapped as
   ``{"process": ..., "message": ...}``.

SIGTERM or Ctrl-C: SIGTERM to every child (the API finishes requests in flight for up to 30 s, the
scheduler stores an interrupted run as failed), SIGKILL after STOP_GRACE_SECONDS, exit 0. If a child
dies, the others are stopped and this exits 1 naming it. A standard output nobody reads never holds
up a request: lines are dropped and counted (tools/processes.py `Output`); one that closes (``| head``)
stops everything, exit 1. If this process dies, even by SIGKILL, the kernel sends its children SIGTERM. The Procfile is the one list of commands:
a platform that runs processes itself (systemd, supervisord, a container platform) runs its lines.
Hosts and ports: API_HOST/API_PORT (127.0.0.1:8000), DASHBOARD_HOST/DASHBOARD_PORT (127.0.0.1:8501),
behind a reverse proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python tools/serve.py`: the repository root holds `tools`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ValidationError  # noqa: E402
from pydantic_settings.exceptions import SettingsError  # noqa: E402

from services.core.config import Settings  # noqa: E402
from services.system.config_check import settings_problems  # noqa: E402
from tools.processes import (  # noqa: E402
    ROOT,
    Child,
    Output,
    Stop,
    first_dead,
    handle_stop_signals,
    ignore_stop_signals,
    port_in_use,
    run_step,
    stop_all,
    wait_until_ready,
    write_briefly,
)

PROGRAM = "serve"
PROCFILE = ROOT / "Procfile"
RELEASE = "release"
# Above the API's own graceful shutdown (api/__main__.py GRACEFUL_SHUTDOWN_SECONDS, 30 s).
STOP_GRACE_SECONDS = 40.0
STARTUP_TIMEOUT_SECONDS = 120.0
# How each Procfile process is asked whether it is up: (host option, port option, health path).
PROBES = {
    "api": ("--host", "--port", "/healthz"),
    "dashboard": ("--server.address", "--server.port", "/_stcore/health"),
}
SANDBOX_REFUSAL = "make serve talks to PortOne; use make run for the sandbox"
_VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")
# Seconds the output may take to write what is queued once everything has stopped.
FLUSH_SECONDS = 5.0
_output: list[Output] = []  # the one Output, made by main (importing this module starts no thread)


def _line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)


def _dropped(count: int) -> str:
    message = f"{count} lines of output were dropped: standard output was not being read"
    return _line({"time": _now(), "process": PROGRAM, "message": message})


def _emit(record: Mapping[str, Any]) -> None:
    """Queue one JSON line for standard output: never blocks, never raises."""
    line = _line(record)
    if _output:
        _output[0].write(line)
    else:  # before main made the Output (nothing of ours calls it then)
        print(line, flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def say(message: str) -> None:
    _emit({"time": _now(), "process": PROGRAM, "message": message})


def child_line(name: str, line: str) -> None:
    """A child's output line as one JSON object: its own JSON with `process` added, or wrapped."""
    if not line.strip():
        return
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        _emit({"process": name, **{k: v for k, v in parsed.items() if k != "process"}})
    else:
        _emit({"time": _now(), "process": name, "message": line})


def expand(text: str, env: Mapping[str, str]) -> str:
    """`${NAME}` and `${NAME:-default}` as a shell expands them (unset or empty: the default)."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)


def procfile(env: Mapping[str, str], path: Path = PROCFILE) -> dict[str, list[str]]:
    """The Procfile's processes in order, each command expanded and split, run with this interpreter
    (`python ...` and `streamlit ...` as `sys.executable [-m streamlit] ...`)."""
    commands: dict[str, list[str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, command = line.partition(":")
        argv = shlex.split(expand(command.strip(), env))
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        elif argv[0] == "streamlit":
            argv = [sys.executable, "-m", "streamlit", *argv[1:]]
        commands[name.strip()] = argv
    return commands


def _option(argv: Sequence[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def child_of(name: str, argv: list[str]) -> Child:
    if name not in PROBES:
        return Child(name, argv, None, "")
    host_option, port_option, health = PROBES[name]
    port = _option(argv, port_option)
    if port is None or not port.isdigit():
        raise SystemExit(f"{PROGRAM}: the Procfile's {name} line has no {port_option} number")
    return Child(name, argv, int(port), health, host=_option(argv, host_option) or "127.0.0.1")


def read_settings() -> Settings:
    """The settings, or SystemExit in plain words (never a value: secrets stay out of the output)."""
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        reasons = "; ".join(settings_problems(exc))
        raise SystemExit(f"{PROGRAM}: refusing to start: {reasons}") from None
    except tomllib.TOMLDecodeError:
        raise SystemExit(f"{PROGRAM}: refusing to start: .streamlit/secrets.toml is not valid TOML") from None
    if settings.portone_mode == "sandbox":
        raise SystemExit(f"{PROGRAM}: refusing to start: PORTONE_MODE is sandbox; {SANDBOX_REFUSAL}")
    return settings


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    # The Procfile's ${API_WORKERS}: as Settings reads it (the environment, else .streamlit/secrets.toml).
    env["API_WORKERS"] = str(settings.api_workers)
    env["LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"  # children's lines appear as they happen
    return env


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="make serve",
        description=(__doc__ or "").splitlines()[0],
        epilog="Takes no options: it reads the environment (README, 'Production: make serve').",
    ).parse_args(argv)
    env = child_environment(read_settings())
    commands = procfile(env)
    python = sys.executable
    children = [child_of(name, command) for name, command in commands.items() if name != RELEASE]
    busy = [f"{c.name} {c.host}:{c.port}" for c in children if c.port is not None and port_in_use(c.host, c.port)]
    if busy:
        raise SystemExit(f"{PROGRAM}: already in use: {', '.join(busy)}; stop what uses it or set another port")

    output = Output(_dropped)
    _output[:] = [output]
    handle_stop_signals()
    try:
        run_step("check-config", [python, "-m", "cli", "check-config", "--at-start"], env, say=say, program=PROGRAM)
        if RELEASE in commands:
            run_step(RELEASE, commands[RELEASE], env, say=say, program=PROGRAM)
        for child in children:
            say(f"starting {child.name}: {' '.join(child.argv[1:])}")
            child.start(env, child_line)
        dead = wait_until_ready(children, STARTUP_TIMEOUT_SECONDS, on_ready=_announce, program=PROGRAM)
        if dead is None:
            say("ready: " + ", ".join(c.name if c.port is None else f"{c.name} {c.url}" for c in children))
            dead = first_dead(children)
        say(f"{dead.name} exited with code {dead.exit_code()}; stopping the others")
        stop_all(children, STOP_GRACE_SECONDS, say)
        say(f"{dead.name} died (exit {dead.exit_code()})")
        print(f"{PROGRAM}: {dead.name} died (exit {dead.exit_code()})", file=sys.stderr, flush=True)
        return 1
    except Stop as stop:
        ignore_stop_signals()  # a second Ctrl-C or SIGTERM must not interrupt the shutdown
        say("standard output closed" if output.closed else f"{stop} received")  # only queued: cannot hold up stopping
        stop_all(children, STOP_GRACE_SECONDS, say)
        say("stopped")
        if output.closed:
            write_briefly(2, f"{PROGRAM}: stopped: standard output closed\n".encode(), timeout=2)
            return 1
        return 0
    finally:
        ignore_stop_signals()
        stop_all(children, STOP_GRACE_SECONDS, say)
        output.close(FLUSH_SECONDS, PROGRAM)


def _announce(child: Child) -> None:
    say(f"{child.name} is up at {child.url}" if child.port is not None else f"{child.name} is running")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
