"""`python -m cli reconcile` as a real process: killed half-way and resumed, it leaves the
same alerts as one clean run; the scheduled mode repeats and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from services.auth.access import Actor
from services.core.models import Alert, AlertStatus, ReconciliationRun, Role
from services.reconciliation.engine import EngineOptions, start_run
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime, reconcile_cli
from tests.services.reconciliation.test_engine import open_alerts, plant

ROOT = Path(__file__).resolve().parents[2]
PROGRESS = re.compile(r"reconcile run #(\d+) \[[#-]+\]\s+(\d+)%")
LISTING = "GET /payments/status/{payment_status}"
TUNING = ["--max-rps", "0", "--concurrency", "2", "--page-size", "2", "--slice-size", "3"]


def _env(database_url: str, sandbox: SandboxControl) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_API_URL": sandbox.url,
        "PORTONE_MODE": "sandbox",
        "PYTHONUNBUFFERED": "1",
    }


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", "reconcile", *args]


def _alert_details(rt: Runtime) -> set[tuple[str, str | None, str, str | None, str | None]]:
    with rt.db.read() as session:
        rows = session.execute(
            select(Alert.kind, Alert.imp_uid, Alert.message, Alert.db_value, Alert.portone_value).where(
                Alert.status != AlertStatus.RESOLVED
            )
        ).all()
    return {tuple(row) for row in rows}  # type: ignore[misc]


def _kill_half_way(command: list[str], env: dict[str, str]) -> int:
    """Start the run, SIGKILL it once its progress bar passes 50%; returns the run's id."""
    process = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    lines = []
    try:
        for line in process.stderr:
            lines.append(line)
            match = PROGRESS.search(line)
            if match and 50 <= int(match.group(2)) < 100:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                return int(match.group(1))
        raise AssertionError(f"the run ended before it was half-way: {''.join(lines)}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        process.stderr.close()


@pytest.mark.reliability(
    area="fault",
    case="reconciliation process SIGKILLed half-way",
    outcome="--resume gives the same open alerts as one clean run",
)
def test_a_run_killed_half_way_and_resumed_leaves_the_same_alerts_as_one_clean_run(
    runtime: Runtime, sandbox: SandboxControl, database_url: str, tmp_path: Path
) -> None:
    scenario = plant(runtime, sandbox)
    pristine = None
    if database_url.startswith("sqlite:///"):
        pristine = tmp_path / "pristine.db"
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as source, sqlite3.connect(pristine) as copy:
            source.backup(copy)  # consistent, write-ahead log included
    env = _env(database_url, sandbox)
    sandbox.configure(latency_ms=120)  # time to see it half-way

    run_id = _kill_half_way(_command("--since", scenario.since.isoformat(), *TUNING), env)

    with runtime.db.read() as session:
        killed = session.get_one(ReconciliationRun, run_id)
    assert killed.status == "running" and killed.checkpoint is not None  # nobody could mark it
    window_end = int(killed.window_end.timestamp())
    assert int(killed.window_start.timestamp()) < killed.checkpoint["done_until"] <= window_end
    sandbox.configure(latency_ms=0)
    listed_before = sandbox.calls()["counts"].get(LISTING, 0)
    summary = reconcile_cli(env, "--resume", str(run_id), *TUNING)
    resume_listing = sandbox.calls()["counts"].get(LISTING, 0) - listed_before

    assert summary["run_id"] == run_id and summary["status"] == "finished"
    assert open_alerts(runtime) == scenario.expected
    with runtime.db.read() as session:
        kinds = session.execute(select(Alert.kind, Alert.imp_uid)).all()
    assert len(kinds) == len(set(kinds))  # never two alerts for one difference, open or resolved
    rerun = reconcile_cli(env, "--since", scenario.since.isoformat(), *TUNING)  # again: changes nothing
    assert (rerun["new"], rerun["resolved"], rerun["found"]) == (0, 0, len(scenario.expected))
    assert open_alerts(runtime) == scenario.expected
    if pristine is not None:  # the same run, clean, on a copy of the database as it was before
        clean = make_runtime(database_url=f"sqlite:///{pristine}", portone_api_url=sandbox.url)
        try:
            listed_before = sandbox.calls()["counts"].get(LISTING, 0)
            start_run(
                clean,
                since=killed.window_start,
                until=killed.window_end,
                actor=Actor("cli:test", Role.ADMIN),
                options=EngineOptions(max_requests_per_second=0, concurrency=2, page_size=2, slice_payments=3),
            )
            clean_listing = sandbox.calls()["counts"].get(LISTING, 0) - listed_before
            assert _alert_details(clean) == _alert_details(runtime)
            assert resume_listing < clean_listing  # it resumed: the first half was not listed again
        finally:
            clean.close()


def test_scheduled_mode_repeats_and_stops_cleanly_on_ctrl_c(sandbox: SandboxControl, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    make_runtime(database_url=database_url, portone_api_url=sandbox.url).close()
    env = _env(database_url, sandbox)
    twice = subprocess.run(  # noqa: S603
        _command("--since", "1d", "--every", "1s", "--max-runs", "2", "--json", "--quiet"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert twice.returncode == 0, twice.stderr
    runs = [json.loads(line) for line in twice.stdout.strip().splitlines()]
    assert [r["status"] for r in runs] == ["finished", "finished"]
    assert runs[0]["run_id"] != runs[1]["run_id"]

    with subprocess.Popen(  # noqa: S603
        _command("--since", "1d", "--every", "30m", "--json", "--quiet"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        first = json.loads(process.stdout.readline())  # one run done; now it sleeps for 30 minutes
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert time.monotonic() - started < 5
    assert first["status"] == "finished"


def test_the_old_command_line_names_the_new_one_and_runs_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services", "scheduler"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "python -m cli scheduler" in done.stderr and done.stdout == ""
