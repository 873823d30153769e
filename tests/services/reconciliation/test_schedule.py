"""Scheduled reconciliation heals a lost webhook with no person acting; never two runs at once
across processes; its last run is in /readyz; `reconcile_stale` when it stops.

Real parts only: the suite's sandbox over loopback HTTP, our API and `python -m cli scheduler`
as real processes (or our API served on loopback), SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services.alerts.store import AlertKind
from services.auth.access import Actor
from services.core import job_lock
from services.core.migrate import upgrade
from services.core.models import Alert, AlertStatus, AuditEntry, JobLock, Payment, ReconciliationRun, Role, utcnow
from services.reconciliation import schedule as reconcile_schedule
from services.reconciliation.engine import start_run
from services.runtime import Runtime
from tests.factories import INTERNAL_TOKEN, SandboxControl, make_runtime
from tests.servers import free_port, serve_in_thread

ROOT = Path(__file__).resolve().parents[3]
EVERY_SECONDS = 3.0  # the schedule's interval here (10 minutes by default)
OPERATOR = Actor("operator", Role.OPERATOR)


def _env(database_url: str, sandbox: SandboxControl, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORTONE_MODE": "sandbox",
        "PORTONE_API_URL": sandbox.url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "RECONCILE_SCHEDULE_MINUTES": str(EVERY_SECONDS / 60),
        "RECONCILE_SCHEDULE_WINDOW": "1h",
        "RECONCILE_MISSING_GRACE_MINUTES": "0",  # a payment a second old may already be missing
        **extra,
    }


def _wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _api_process(env: dict[str, str], port: int) -> Iterator[httpx.Client]:
    """`python -m api` on `port`, answering /healthz; stopped (SIGTERM) at the end of the block."""
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "api", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def answers() -> bool:
                assert process.poll() is None, f"the API exited with {process.returncode}"
                try:
                    return client.get("/healthz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            _wait_until(answers, "the API never answered /healthz")
            yield client
    finally:
        _stop(process)


@contextmanager
def _scheduler_process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", "scheduler", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        _stop(process)
        if process.stderr is not None:
            process.stderr.close()


def _scheduled_runs(rt: Runtime) -> list[ReconciliationRun]:
    with rt.db.read() as session:
        return list(
            session.scalars(
                select(ReconciliationRun)
                .where(ReconciliationRun.started_by == reconcile_schedule.SCHEDULER)
                .order_by(ReconciliationRun.id)
            )
        )


@pytest.mark.reliability(
    area="fault",
    case="API down when PortOne sends a payment's only webhook (PortOne V1 sends it once)",
    outcome="the webhook is lost; one scheduled reconciliation run after the API is back records the payment paid, "
    "with no person acting; the customer app reads its order paid",
)
def test_a_webhook_lost_while_the_api_was_down_is_healed_by_the_next_scheduled_run(
    database_url: str, sandbox: SandboxControl
) -> None:
    upgrade(database_url)
    env = _env(database_url, sandbox)
    port = free_port()
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    try:
        with _api_process(env, port) as api:
            created = api.post("/api/orders", json={"customer_email": "kim@example.com", "customer_name": "김체카"})
            assert created.status_code == 201, created.text
            order = created.json()
        sandbox.configure(webhook_url=f"http://127.0.0.1:{port}/portone/webhook")
        # The API is stopped: the customer pays, and PortOne's one webhook meets a closed port.
        paid = sandbox.checkout(order["merchant_uid"], order["amount"])
        imp_uid = paid["imp_uid"]
        paid_at = utcnow()

        def delivery() -> dict[str, Any] | None:
            found = [d for d in sandbox.http.get("/sandbox/webhooks").json()["deliveries"] if d["imp_uid"] == imp_uid]
            return found[0] if found and found[0]["state"] == "failed" else None

        lost = _wait_until(delivery, "the webhook was never attempted")
        assert len(lost["attempts"]) == 1 and lost["attempts"][0]["status_code"] is None, lost
        with _api_process(env, port) as api, _scheduler_process(env) as scheduler:

            def order_paid() -> bool:
                answer = api.get(f"/api/orders/{order['merchant_uid']}")
                assert answer.status_code == 200, answer.text
                return bool(answer.json()["status"] == "paid")

            _wait_until(order_paid, "the scheduled reconciliation never recorded the payment", timeout=90)

            def run_that_repaired_it_ended() -> bool:  # the payment is recorded mid-run; let the run end
                runs = [run for run in _scheduled_runs(rt) if run.started_at >= paid_at - timedelta(seconds=1)]
                return bool(runs) and runs[0].status != "running"

            _wait_until(run_that_repaired_it_ended, "the scheduled run never ended", timeout=60)
            assert scheduler.poll() is None, scheduler.stderr.read() if scheduler.stderr else ""
            health = api.get("/readyz").json()["reconcile"]
        with rt.db.read() as session:
            payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
            assert payment is not None and (payment.status, payment.verified) == ("paid", True)
            repaired = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "reconcile.repaired", AuditEntry.target == imp_uid)
            ).all()
        assert len(repaired) == 1 and repaired[0].actor == reconcile_schedule.SCHEDULER, repaired
        # Within one scheduled run: the first run that started after the payment repaired it.
        first = next(run for run in _scheduled_runs(rt) if run.started_at >= paid_at - timedelta(seconds=1))
        assert first.status == "finished" and (first.counts or {})["missing_in_db"]["repaired"] == 1, first.counts
        assert [d["state"] for d in sandbox.http.get("/sandbox/webhooks").json()["deliveries"]] == ["failed"]
        assert health["last_run_status"] in ("finished", "running") and health["stale"] is False, health
    finally:
        rt.close()


HOLD_LOCK = """
import sys
from services.core import job_lock
from services.core.config import Settings
from services.runtime import build_runtime

rt = build_runtime(Settings(database_url=sys.argv[1], portone_mode="sandbox", portone_api_url=sys.argv[2]))
with job_lock.held(rt, job_lock.RECONCILE):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it (or kills this process)
rt.close()
"""


@contextmanager
def _lock_held_by_another_process(database_url: str, sandbox: SandboxControl) -> Iterator[subprocess.Popen[str]]:
    holder = subprocess.Popen(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", HOLD_LOCK, database_url, sandbox.url],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()


@pytest.mark.reliability(
    area="concurrency",
    case="a reconciliation run started while another process runs one (scheduler, dashboard, command line)",
    outcome="refused (JobBusy) or skipped by the scheduler, nothing recorded; once the holder ends, or dies, "
    "the next run goes ahead",
)
def test_two_runs_never_overlap_across_processes(database_url: str, sandbox: SandboxControl) -> None:
    upgrade(database_url)
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url)
    env = _env(database_url, sandbox)
    try:
        with _lock_held_by_another_process(database_url, sandbox) as holder:
            with pytest.raises(job_lock.JobBusy):
                start_run(rt, since=utcnow() - timedelta(hours=1), actor=OPERATOR)
            with _scheduler_process(env, "--max-runs", "1") as scheduler:
                assert scheduler.wait(timeout=60) == 0
            assert _scheduled_runs(rt) == []  # the scheduler's tick found the lock held and skipped
            with rt.db.read() as session:
                assert session.scalars(select(ReconciliationRun)).all() == []
            assert holder.stdin is not None
            holder.stdin.close()  # the holder finishes and releases the lock
            assert holder.wait(timeout=30) == 0
        with _scheduler_process(env, "--max-runs", "1") as scheduler:
            assert scheduler.wait(timeout=60) == 0
        [run] = _scheduled_runs(rt)
        assert run.status == "finished"
        # A holder killed outright (no release): a process of this machine that is gone holds nothing.
        with _lock_held_by_another_process(database_url, sandbox) as holder:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
        assert start_run(rt, since=utcnow() - timedelta(hours=1), actor=OPERATOR).status == "finished"
        # A holder on another machine holds it until its lease ends.
        with rt.db.write() as session:
            session.execute(
                update(JobLock)
                .where(JobLock.name == job_lock.RECONCILE)
                .values(holder="elsewhere:4242:cafe", acquired_at=utcnow(), lease_until=utcnow() + timedelta(minutes=1))
            )
        with pytest.raises(job_lock.JobBusy, match="elsewhere:4242"):
            start_run(rt, since=utcnow() - timedelta(hours=1), actor=OPERATOR)
        with rt.db.write() as session:
            session.execute(update(JobLock).values(lease_until=utcnow() - timedelta(seconds=1)))
        assert start_run(rt, since=utcnow() - timedelta(hours=1), actor=OPERATOR).status == "finished"
        with rt.db.read() as session:
            row = session.get_one(JobLock, job_lock.RECONCILE)
            assert row.holder is None  # released after each run
    finally:
        rt.close()


def test_reconcile_stale_is_raised_when_no_scheduled_run_finishes_and_resolved_by_the_next(
    database_url: str, sandbox: SandboxControl
) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, reconcile_stale_minutes=0.05)
    from api.app import create_app

    served = serve_in_thread(create_app(rt))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as api:
            ready = api.get("/readyz")
            assert ready.status_code == 200 and ready.json()["reconcile"]["last_run_at"] is None, ready.text

            def stale_alert() -> Alert | None:
                with rt.db.read() as session:
                    return session.scalars(
                        select(Alert).where(Alert.kind == AlertKind.RECONCILE_STALE, Alert.status == AlertStatus.OPEN)
                    ).first()

            # The API's watchdog notices that no scheduled run finished (the scheduler is not running).
            alert = _wait_until(stale_alert, "no reconcile_stale alert was raised", timeout=30)
            assert alert.imp_uid is None and alert.severity == "high" and "scheduler" in alert.message
            ready = api.get("/readyz")
            assert ready.status_code == 503 and ready.json()["failed"] == ["reconcile_schedule"], ready.text
            assert ready.json()["checks"]["reconcile_schedule"] == {"ok": False, "state": "stale"}
            health = ready.json()["reconcile"]
            assert health["stale"] is True and health["last_run_status"] is None, health
            assert api.get("/healthz").status_code == 200  # alive all the same
            time.sleep(0.5)  # further checks refresh the one open alert, never add another
            with rt.db.read() as session:
                kinds = session.scalars(select(Alert.kind).where(Alert.status != AlertStatus.RESOLVED)).all()
                assert kinds.count(AlertKind.RECONCILE_STALE) == 1

            summary = reconcile_schedule.run_once(rt)  # what the scheduler does on each tick
            assert summary is not None and summary.status == "finished" and summary.repair
            reconcile_schedule.check_stale(rt)
            with rt.db.read() as session:
                assert session.get_one(Alert, alert.id).status == AlertStatus.RESOLVED
            ready = api.get("/readyz")
            assert ready.status_code == 200 and ready.json()["failed"] == [], ready.text
            health = ready.json()["reconcile"]
            assert health["last_run_status"] == "finished" and health["stale"] is False, health
            assert health["last_run_at"] == summary.started_at.isoformat()
    finally:
        served.stop()
        rt.close()
