"""Scheduled reconciliation: what a lost webhook left behind is healed with no person acting.

PortOne V1 sends each webhook once (opi/ko/integration/webhook/readme-v1.md: redelivery only when
its support switches it on), so a webhook lost while our API was down, or answered 503, is never
sent again. `python -m cli scheduler` (started by `make run`; run it beside the API in
production) reconciles the last RECONCILE_SCHEDULE_WINDOW every RECONCILE_SCHEDULE_MINUTES with
automatic repairs: a payment PortOne took that we never recorded is recorded, a status or refund
total a lost webhook would have changed is re-synced from PortOne (see services.reconciliation.repair.repair;
money never moves, except the existing forgery policy).

- One run at a time across processes: start_run holds the `reconcile` job lock
  (services/core/job_lock.py). A tick that finds it held (a dashboard or command-line run) is skipped.
- The last scheduled run (time, outcome) is read from `reconciliation_runs` (started_by
  `scheduler`): `/healthz` and the alerts page show it.
- The retention purge (services/system/retention.py) runs at the start and then every hour, after
  a tick's run; its failure is logged and never stops reconciliation.
- No scheduled run finished for RECONCILE_STALE_MINUTES raises a `reconcile_stale` alert (names no
  payment); the API checks that every minute (`Watchdog`), so a scheduler that died is noticed.
  The next finished scheduled run resolves it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.alerts.store import SEVERITY, AlertKind
from services.audit import trail as audit
from services.auth.access import Actor
from services.core import job_lock
from services.core.errors import PaymentsError
from services.core.models import Alert, AlertStatus, JobLock, ReconciliationRun, Role, utcnow
from services.notifications import outbox as notify
from services.reconciliation.engine import start_run
from services.reconciliation.runs import FAILED, FINISHED, RunSummary, summary_of
from services.runtime import Runtime
from services.system import retention

log = logging.getLogger("chekar.scheduler")

SCHEDULER = "scheduler"  # started_by of scheduled runs
WATCH_EVERY_SECONDS = 60.0


def scheduler_actor() -> Actor:
    return Actor(SCHEDULER, Role.ADMIN)


@dataclass(frozen=True)
class ScheduleState:
    last_run: RunSummary | None  # the newest scheduled run, whatever its outcome
    last_finished_at: datetime | None  # when the newest scheduled run that finished did
    stale: bool  # no scheduled run finished for `stale_after`
    every: timedelta
    window: str  # RECONCILE_SCHEDULE_WINDOW as set: 2d, 12h, ...
    stale_after: timedelta

    def as_dict(self) -> dict[str, object]:
        """For `/healthz`: times and outcome only (no error text: it is public)."""
        run = self.last_run
        return {
            "every_minutes": self.every.total_seconds() / 60,
            "window": self.window,
            "last_run_at": run.started_at.isoformat() if run else None,
            "last_run_status": run.status if run else None,
            "last_run_finished_at": run.finished_at.isoformat() if run and run.finished_at else None,
            "last_finished_at": self.last_finished_at.isoformat() if self.last_finished_at else None,
            "stale": self.stale,
        }


def schedule_state(
    rt: Runtime, *, watching_since: datetime | None = None, now: datetime | None = None
) -> ScheduleState:
    """The last scheduled run, and whether the schedule is stale. With no scheduled run ever
    finished, it is stale once whoever asks (`watching_since`: e.g. the API's start) has waited
    RECONCILE_STALE_MINUTES for one."""
    now = now or utcnow()
    settings = rt.settings
    stale_after = timedelta(minutes=settings.reconcile_stale_minutes)
    with rt.db.read() as session:
        newest = _newest_scheduled_run(session)
        last_run = summary_of(newest, now=now) if newest is not None else None
        last_finished_at = session.scalar(
            select(ReconciliationRun.finished_at)
            .where(ReconciliationRun.started_by == SCHEDULER, ReconciliationRun.status == FINISHED)
            .order_by(ReconciliationRun.id.desc())
            .limit(1)
        )
    since = last_finished_at or watching_since
    return ScheduleState(
        last_run=last_run,
        last_finished_at=last_finished_at,
        stale=since is not None and now - since > stale_after,
        every=timedelta(minutes=settings.reconcile_schedule_minutes),
        window=settings.reconcile_schedule_window,
        stale_after=stale_after,
    )


def check_stale(rt: Runtime, *, watching_since: datetime | None = None) -> ScheduleState:
    """Raise the `reconcile_stale` alert when the schedule is stale (one open at a time), resolve
    it when it is not."""
    state = schedule_state(rt, watching_since=watching_since)
    with rt.db.write() as session:
        # Serialises the check across processes (PostgreSQL; SQLite writers are serial anyway), so
        # two watchers cannot both open the alert.
        session.get(JobLock, job_lock.RECONCILE, with_for_update=True)
        open_alert = session.scalars(
            select(Alert).where(Alert.kind == AlertKind.RECONCILE_STALE, Alert.status != AlertStatus.RESOLVED)
        ).first()
        now = utcnow()
        if state.stale:
            message = _stale_message(state)
            if open_alert is None:
                alert = Alert(
                    kind=str(AlertKind.RECONCILE_STALE),
                    severity=SEVERITY[AlertKind.RECONCILE_STALE],
                    imp_uid=None,
                    merchant_uid=None,
                    message=message,
                    status=AlertStatus.OPEN,
                    created_at=now,
                    updated_at=now,
                )
                session.add(alert)
                session.flush()
                notify.alert_raised(session, alert_id=alert.id, kind=alert.kind, severity=alert.severity)
                audit.record(
                    session, actor="system", action="alert.raised", target=None, alert_id=alert.id, kind=alert.kind
                )
                log.error("reconcile_stale: %s", message)
            elif open_alert.message != message:
                open_alert.message = message
                open_alert.updated_at = now
        elif open_alert is not None:
            note = "a scheduled reconciliation finished — resolved automatically"
            open_alert.status = AlertStatus.RESOLVED
            open_alert.resolved_by = "system"
            open_alert.resolution_note = note
            open_alert.updated_at = now
            audit.record(
                session, actor="system", action="alert.resolved", target=None, alert_id=open_alert.id, note=note
            )
    return state


def _stale_message(state: ScheduleState) -> str:
    minutes = f"{state.stale_after.total_seconds() / 60:g}"
    if state.last_run is None:
        return (
            f"no scheduled reconciliation has run (expected every {state.every}); is `python -m cli scheduler` running?"
        )
    last = state.last_run
    finished = (
        f"last finished at {state.last_finished_at:%Y-%m-%d %H:%M} UTC" if state.last_finished_at else "none finished"
    )
    return (
        f"no scheduled reconciliation finished in {minutes} minutes ({finished}); the last one started "
        f"{last.started_at:%Y-%m-%d %H:%M} UTC and is {last.status}"
    )


def run_once(rt: Runtime) -> RunSummary | None:
    """One scheduled run over the last window, with repairs; None when another run holds the lock.
    Raises PaymentsError when the run failed (stored as failed)."""
    until = utcnow()
    since = until - rt.settings.reconcile_schedule_window_delta
    try:
        return start_run(rt, since=since, until=until, actor=scheduler_actor(), repair=True)
    except job_lock.JobBusy as busy:
        log.info("scheduled reconciliation skipped: %s", busy)
        return None


class Watchdog:
    """A thread that runs `check_stale` every minute (or sooner for a short RECONCILE_STALE_MINUTES)
    from the moment it starts; the API runs one. `on_stale` is called after a check that found the
    schedule stale (the API wakes its notification dispatcher: the scheduler's own is gone)."""

    def __init__(self, rt: Runtime, *, every: float | None = None, on_stale: Callable[[], None] | None = None) -> None:
        self.rt = rt
        self.on_stale = on_stale
        self.started = utcnow()
        stale_seconds = rt.settings.reconcile_stale_minutes * 60
        self.every = every if every is not None else max(min(WATCH_EVERY_SECONDS, stale_seconds / 4), 0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconcile-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if check_stale(self.rt, watching_since=self.started).stale and self.on_stale is not None:
                    self.on_stale()
            except Exception as exc:  # noqa: BLE001 - a watchdog reports and carries on
                log.warning("reconciliation staleness check failed: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _notify_failed(rt: Runtime) -> None:
    """Queue a notification of the newest scheduled run when it is stored as failed (its id is
    the key: a run is told once)."""
    try:
        with rt.db.write() as session:
            newest = _newest_scheduled_run(session)
            if newest is not None and newest.status == FAILED:
                notify.reconcile_failed(session, run_id=newest.id)
    except Exception as exc:  # noqa: BLE001 - the schedule carries on; the stale alert still follows
        log.warning("could not queue the failed run's notification: %s", type(exc).__name__)


def serve(rt: Runtime, *, stop: threading.Event, max_runs: int = 0) -> int:
    """Run every RECONCILE_SCHEDULE_MINUTES (the first at once) until `stop` is set; how many ran."""
    every = rt.settings.reconcile_schedule_minutes * 60
    window = rt.settings.reconcile_schedule_window
    log.info("scheduled reconciliation: every %g minutes over the last %s", every / 60, window)
    ran = 0
    serving_since = utcnow()
    purged_at: datetime | None = None
    while not stop.is_set():
        started = utcnow()
        try:
            summary = run_once(rt)
        except PaymentsError as exc:
            log.error("scheduled reconciliation failed: %s", exc)
            _notify_failed(rt)
        except Exception:
            log.exception("scheduled reconciliation failed")
            _notify_failed(rt)
        else:
            if summary is not None:
                repaired = sum(c.repaired for c in summary.counts.values())
                log.info(
                    "scheduled reconciliation #%s %s: %s payments checked, %s new alerts, %s repaired",
                    summary.run_id,
                    summary.status,
                    summary.payments_checked,
                    summary.new_total,
                    repaired,
                )
        try:
            check_stale(rt, watching_since=serving_since)
        except Exception as exc:  # noqa: BLE001 - the API's watchdog checks too
            log.warning("reconciliation staleness check failed: %s: %s", type(exc).__name__, exc)
        if purged_at is None or (utcnow() - purged_at).total_seconds() >= retention.EVERY_SECONDS:
            purged_at = utcnow()
            _purge(rt)
        ran += 1
        if max_runs and ran >= max_runs:
            break
        stop.wait(max(every - (utcnow() - started).total_seconds(), 0.0))
    return ran


def _purge(rt: Runtime) -> None:
    try:
        retention.purge(rt)
    except Exception as exc:  # noqa: BLE001 - retention waits for the next hour; reconciliation goes on
        log.error("retention purge failed: %s: %s", type(exc).__name__, exc)


def _newest_scheduled_run(session: Session) -> ReconciliationRun | None:
    return session.scalars(
        select(ReconciliationRun)
        .where(ReconciliationRun.started_by == SCHEDULER)
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    ).first()
