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

Ctrl-C or SIGTERM stops all four, as does a standard output that closes; one nobody reads drops lines
rather than holding up a child (tools/processes.py `Output`); if this dies, the kernel stops them.
If one of them dies, the others are stopped and this exits non-zero, naming it. Ports: --api-port/--sandbox-port/--dashboard-port, or API_PORT/SANDBOX_PORT/DASHBOARD_PORT.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as `python tools/devserver.py`: the repository root holds `tools`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.processes import (  # noqa: E402
    HOST,
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
)

STOP_GRACE_SECONDS = 10.0
FLUSH_SECONDS = 5.0
_output: list[Output] = []  # the one Output, made by main


def _write(line: str) -> None:
    if _output:
        _output[0].write(line)
    else:
        print(line, flush=True)


def say(message: str) -> None:
    _write(f"devserver | {message}")


def _prefixed(name: str, line: str) -> None:
    _write(f"{name:>9} | {line}")


def _dropped(count: int) -> str:
    return f"devserver | {count} lines of output were dropped: standard output was not being read"


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


def _announce(child: Child) -> None:
    say(f"{child.name} is up at {child.url}" if child.port is not None else f"{child.name} is running")


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
    busy = [f"{c.name} port {c.port}" for c in children if c.port is not None and port_in_use(HOST, c.port)]
    if busy:
        raise SystemExit(
            f"devserver: already in use: {', '.join(busy)}. Stop what uses it, or pick other ports "
            "(make run API_PORT=... SANDBOX_PORT=... DASHBOARD_PORT=...)."
        )

    output = Output(_dropped)
    _output[:] = [output]
    handle_stop_signals()
    try:
        run_step("migrate", [python, "-m", "cli", "migrate"], env, say=say, program="devserver")
        for child in children:
            say(f"starting {child.name}: {' '.join(child.argv[1:])}")
            child.start(env, _prefixed)
        dead = wait_until_ready(children, args.startup_timeout, on_ready=_announce, program="devserver")
        seed_output = ""
        if dead is None and env["PORTONE_MODE"] == "sandbox":
            seed_output = run_step(
                "seed-demo", [python, "-m", "cli", "seed-demo"], env, say=say, program="devserver", echo=False
            )
        if dead is None:
            for line in banner(children, env, seed_output).splitlines():
                _write(line)
            dead = first_dead(children)
        say(f"{dead.name} exited with code {dead.exit_code()}; stopping the others")
        stop_all(children, STOP_GRACE_SECONDS, say)
        print(f"devserver: {dead.name} died (exit {dead.exit_code()})", file=sys.stderr, flush=True)
        return 1
    except Stop as stop:
        ignore_stop_signals()  # a second Ctrl-C or SIGTERM must not interrupt the shutdown
        say(f"{stop} received")
        stop_all(children, STOP_GRACE_SECONDS, say)
        return 1 if output.closed else 0
    finally:
        ignore_stop_signals()
        stop_all(children, STOP_GRACE_SECONDS, say)
        output.close(FLUSH_SECONDS, "devserver")


if __name__ == "__main__":
    sys.exit(main())
