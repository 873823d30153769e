"""Reconciliation runs as stored: window, who started it, counts per alert kind, checkpoint.

A run's `checkpoint` says how far it got (`done_until`, a unix second: everything before it is
reconciled), with a heartbeat; a run still `running` whose heartbeat stopped is shown as
`interrupted` and can be resumed (services.reconciliation.engine.start_run(resume_run_id=...)).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.auth.access import Actor, Permission, require
from services.core.errors import Conflict, NotFound
from services.core.models import ReconciliationRun, utcnow
from services.reconciliation.alert_writer import WriteResult
from services.runtime import Runtime

RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
INTERRUPTED = "interrupted"  # shown for a `running` row whose heartbeat stopped (never stored)
HEARTBEAT_STALE_AFTER = timedelta(minutes=5)
MAX_LIST = 200


@dataclass(frozen=True)
class KindCount:
    found: int = 0  # differences of this kind seen by the run (open alerts, new or refreshed)
    new: int = 0  # alerts opened by the run
    resolved: int = 0  # open alerts the run found gone
    repaired: int = 0  # alerts resolved by the run's automatic repairs


@dataclass
class Tally:
    """Counters of a run in progress; saved with every checkpoint."""

    found: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    payments_checked: int = 0
    seen: set[tuple[str, str | None]] = field(default_factory=set)  # findings counted (this process)

    def add(self, result: WriteResult) -> None:
        """Count a slice's alert writes; a difference seen twice in one run counts once."""
        for kind, _imp_uid in result.found_keys - self.seen:
            self.found[kind] += 1
        self.seen |= result.found_keys
        self.new.update(result.new)
        self.resolved.update(result.resolved)

    def plus(self, result: WriteResult) -> Tally:
        """A copy with one slice's alert writes added."""
        copy = Tally(
            Counter(self.found),
            Counter(self.new),
            Counter(self.resolved),
            Counter(self.repaired),
            self.payments_checked,
        )
        copy.seen = set(self.seen)
        copy.add(result)
        return copy

    def counts(self) -> dict[str, dict[str, int]]:
        kinds = sorted(set(self.found) | set(self.new) | set(self.resolved) | set(self.repaired))
        return {
            kind: {
                "found": self.found[kind],
                "new": self.new[kind],
                "resolved": self.resolved[kind],
                "repaired": self.repaired[kind],
            }
            for kind in kinds
        }

    @classmethod
    def restore(cls, counts: dict[str, Any] | None, payments_checked: int) -> Tally:
        tally = cls(payments_checked=payments_checked)
        for kind, values in (counts or {}).items():
            for name in ("found", "new", "resolved", "repaired"):
                getattr(tally, name)[kind] = int(values.get(name, 0))
        return tally


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    status: str  # running | finished | failed | interrupted
    window_start: datetime
    window_end: datetime
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float  # time spent working (a resumed run adds its parts)
    payments_checked: int
    counts: dict[str, KindCount]
    repair: bool
    done_until: datetime | None  # everything before this is reconciled
    error: str | None

    @property
    def found_total(self) -> int:
        return sum(c.found for c in self.counts.values())

    @property
    def new_total(self) -> int:
        return sum(c.new for c in self.counts.values())

    @property
    def resolved_total(self) -> int:
        return sum(c.resolved + c.repaired for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly (for `python -m cli reconcile --json`)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "started_by": self.started_by,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": round(self.duration_seconds, 3),
            "payments_checked": self.payments_checked,
            "repair": self.repair,
            "found": self.found_total,
            "new": self.new_total,
            "resolved": self.resolved_total,
            "counts": {kind: vars(count) for kind, count in sorted(self.counts.items())},
            "done_until": self.done_until.isoformat() if self.done_until else None,
            "error": self.error,
        }


def _fromtimestamp(value: object) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(int(str(value)), tz=UTC)


def summary_of(run: ReconciliationRun, *, now: datetime | None = None) -> RunSummary:
    checkpoint = run.checkpoint or {}
    status = run.status
    heartbeat = checkpoint.get("heartbeat")
    if status == RUNNING and heartbeat:
        if datetime.fromisoformat(str(heartbeat)) < (now or utcnow()) - HEARTBEAT_STALE_AFTER:
            status = INTERRUPTED
    counts = {
        kind: KindCount(**{k: int(v) for k, v in values.items() if k in KindCount.__dataclass_fields__})
        for kind, values in (run.counts or {}).items()
    }
    return RunSummary(
        run_id=run.id,
        status=status,
        window_start=run.window_start,
        window_end=run.window_end,
        started_by=run.started_by,
        started_at=run.started_at,
        finished_at=run.finished_at,
        duration_seconds=float(checkpoint.get("active_seconds", 0.0)),
        payments_checked=run.payments_checked,
        counts=counts,
        repair=bool(checkpoint.get("repair", False)),
        done_until=_fromtimestamp(checkpoint.get("done_until")),
        error=run.error,
    )


def create_run(rt: Runtime, *, since: datetime, until: datetime, started_by: str, repair: bool) -> int:
    with rt.db.write() as session:
        run = ReconciliationRun(
            window_start=since,
            window_end=until,
            started_by=started_by[:100],
            status=RUNNING,
            payments_checked=0,
            counts={},
            checkpoint={"repair": repair, "active_seconds": 0.0, "heartbeat": utcnow().isoformat()},
        )
        session.add(run)
        session.flush()
        return run.id


def claim_for_resume(rt: Runtime, run_id: int) -> ReconciliationRun:
    """The run to resume, marked running (no finished_at) before any work, in one transaction with
    the row locked: the retention purge deletes only finished or failed runs, and checks that again
    as it deletes, so it never takes a run from under its resume. Raises NotFound (saying when the
    purge took it) or Conflict (already finished)."""
    with rt.db.write() as session:
        run = session.get(ReconciliationRun, run_id, with_for_update=True)
        if run is None:
            newest = session.scalar(select(func.max(ReconciliationRun.id))) or 0
            if 0 < run_id <= newest:
                raise NotFound(
                    f"reconciliation run #{run_id} is no longer kept: finished and failed runs are deleted "
                    "RETENTION_DAYS after they end; start a new run over the same window"
                )
            raise NotFound(f"no reconciliation run #{run_id}")
        if run.status == FINISHED:
            raise Conflict(f"reconciliation run #{run_id} already finished")
        run.status = RUNNING
        run.finished_at = None
        run.error = None
        run.checkpoint = {**(run.checkpoint or {}), "heartbeat": utcnow().isoformat()}
        session.flush()
        return run


def store(
    session: Session,
    run_id: int,
    tally: Tally,
    checkpoint: dict[str, Any],
    *,
    status: str = RUNNING,
    error: str | None = None,
) -> RunSummary:
    """Store the run's counters and checkpoint (and, when it ends, its status) in this transaction."""
    run = session.get_one(ReconciliationRun, run_id)
    run.counts = tally.counts()
    run.payments_checked = tally.payments_checked
    run.checkpoint = {**checkpoint, "heartbeat": utcnow().isoformat()}
    run.status = status
    run.error = error
    run.finished_at = utcnow() if status != RUNNING else None
    session.flush()
    return summary_of(run)


def save(
    rt: Runtime,
    run_id: int,
    tally: Tally,
    checkpoint: dict[str, Any],
    *,
    status: str = RUNNING,
    error: str | None = None,
) -> RunSummary:
    with rt.db.write() as session:
        return store(session, run_id, tally, checkpoint, status=status, error=error)


def list_runs(rt: Runtime, limit: int = 20, *, actor: Actor) -> list[RunSummary]:
    """The newest runs first, for the dashboard."""
    require(actor, Permission.VIEW)
    limit = min(max(limit, 1), MAX_LIST)
    with rt.db.read() as session:
        runs = session.scalars(select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit)).all()
        now = utcnow()
        return [summary_of(run, now=now) for run in runs]
