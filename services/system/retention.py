"""The retention purge: what only grows and is no record is deleted once it is old enough, in
small batches (each its own short transaction: no long lock on a busy database).

    purge(rt)          # run by `python -m cli scheduler` every hour; once by `python -m cli purge`

What goes, and why nothing needs it any more:
- `webhook_events` received RETENTION_DAYS ago (default 180): the body and what processing did;
  kept while the payment they name has an open WEBHOOK_UNVERIFIED alert (the evidence a person needs).
  The payment itself is recorded in `payments` (PortOne's record, re-fetched, never the body), and
  what changed it in `audit_log`. V2 replays are refused by `accepted_webhook_id`; PortOne retries
  a delivery for hours, not months, so a "replay" older than RETENTION_DAYS cannot come from
  PortOne's retry. Each purge first records its cutoff in `purge_horizons` (only ever moved
  forward); reconciliation judges no webhook gap for a change older than that recorded horizon
  (services.reconciliation.rules, `webhook_log_purged_before`): the deliveries that told us may be
  gone. It goes by what was deleted, not by its own RETENTION_DAYS: processes may differ.
- `reconciliation_runs` finished (or failed) RETENTION_DAYS ago, never a running one (a resume marks
  its failed run running before it starts, and a delete re-checks the condition), and never
  the newest run nor the newest finished run of each `started_by`: `/readyz`, `reconcile_stale`
  and the alerts page read the scheduler's last run. No table refers to runs (their alerts and
  audit entries name no run row).
- `dashboard_sessions` that ended (signed out, or past their idle or absolute limit) SESSION_KEEP_DAYS
  ago (default 30); the one-time sign-in codes live in the same rows.
- `export_link_grants` that expired a day ago (a link lives minutes).
- `notification_outbox` rows that services.notifications.dispatch would prune (its `expired`), so they
  also go when no dispatcher runs.

Never touched: audit_log (the record), payments, orders, refunds, refund_requests, alerts, users,
payment_snapshots. One purge at a time across processes (the `retention` job lock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, delete, func, or_, select, union
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.alerts.store import AlertKind
from services.core import job_lock
from services.core.models import (
    Alert,
    AlertStatus,
    DashboardSession,
    ExportLinkGrant,
    NotificationOutbox,
    PurgeHorizon,
    ReconciliationRun,
    WebhookEvent,
    utcnow,
)
from services.notifications.dispatch import expired as outbox_expired
from services.reconciliation.our_side import WEBHOOK_LOG
from services.reconciliation.runs import FAILED, FINISHED
from services.runtime import Runtime

log = logging.getLogger("chekar.retention")

LOCK = "retention"
BATCH_SIZE = 1_000
EVERY_SECONDS = 3_600.0  # the scheduler purges this often (and at its start)
EXPORT_LINK_KEEP = timedelta(days=1)
TABLES = ("webhook_events", "reconciliation_runs", "dashboard_sessions", "export_link_grants", "notification_outbox")


@dataclass
class PurgeResult:
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))  # dry run: would delete
    batches: int = 0  # delete transactions run
    dry_run: bool = False
    busy: bool = False  # another process was purging: nothing done

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


# Each table's condition gets (session, now) and says which rows are old enough to go.
Condition = Callable[[Runtime, Session, datetime], ColumnElement[bool]]


def _webhook_events(rt: Runtime, _session: Session, now: datetime) -> ColumnElement[bool]:
    """Received RETENTION_DAYS ago, except a delivery naming a payment whose WEBHOOK_UNVERIFIED alert
    is still open: that alert waits for a person (it can mean forged webhooks) and the rule would
    otherwise resolve it as "no rejected delivery names this payment" once its evidence was gone."""
    under_review = select(Alert.imp_uid).where(
        Alert.kind == AlertKind.WEBHOOK_UNVERIFIED,
        Alert.status != AlertStatus.RESOLVED,
        Alert.imp_uid.is_not(None),
    )
    return and_(
        WebhookEvent.received_at < now - timedelta(days=rt.settings.retention_days),
        or_(WebhookEvent.imp_uid.is_(None), WebhookEvent.imp_uid.not_in(under_review)),
    )


def _runs(rt: Runtime, session: Session, now: datetime) -> ColumnElement[bool]:
    newest = union(
        select(func.max(ReconciliationRun.id)).group_by(ReconciliationRun.started_by),
        select(func.max(ReconciliationRun.id))
        .where(ReconciliationRun.status == FINISHED)
        .group_by(ReconciliationRun.started_by),
    )
    kept = [int(run_id) for run_id in session.scalars(newest) if run_id is not None]
    return and_(
        ReconciliationRun.status.in_([FINISHED, FAILED]),
        ReconciliationRun.finished_at < now - timedelta(days=rt.settings.retention_days),
        ReconciliationRun.id.not_in(kept),
    )


def _sessions(rt: Runtime, _session: Session, now: datetime) -> ColumnElement[bool]:
    """Ended SESSION_KEEP_DAYS ago: by `ended_at`, or (never marked: nobody came back) by the idle or
    absolute limit (services/auth/sessions.py SessionPolicy) counted from its last action or start."""
    before = now - timedelta(days=rt.settings.session_keep_days)
    idle = timedelta(minutes=rt.settings.session_idle_minutes)
    lifetime = timedelta(hours=rt.settings.session_max_hours)
    return or_(
        DashboardSession.ended_at < before,
        and_(
            DashboardSession.ended_at.is_(None),
            or_(DashboardSession.last_seen_at < before - idle, DashboardSession.created_at < before - lifetime),
        ),
    )


def _export_links(_rt: Runtime, _session: Session, now: datetime) -> ColumnElement[bool]:
    return ExportLinkGrant.expires_at < now - EXPORT_LINK_KEEP


def _outbox(rt: Runtime, _session: Session, now: datetime) -> ColumnElement[bool]:
    return outbox_expired(rt.settings, now)


_PLAN: tuple[tuple[str, InstrumentedAttribute[Any], Condition], ...] = (
    ("webhook_events", WebhookEvent.id, _webhook_events),
    ("reconciliation_runs", ReconciliationRun.id, _runs),
    ("dashboard_sessions", DashboardSession.id, _sessions),
    ("export_link_grants", ExportLinkGrant.id, _export_links),
    ("notification_outbox", NotificationOutbox.id, _outbox),
)


def purge(
    rt: Runtime, *, now: datetime | None = None, batch_size: int = BATCH_SIZE, dry_run: bool = False
) -> PurgeResult:
    """Delete what is past its keep period, `batch_size` rows per transaction; what went, per table.
    `dry_run` counts instead. Returns `busy` (and does nothing) while another process purges."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or utcnow()
    if dry_run:
        return _count(rt, now)
    try:
        with job_lock.held(rt, LOCK, lease=timedelta(minutes=10)):
            result = PurgeResult()
            _record_horizon(rt, WEBHOOK_LOG, now - timedelta(days=rt.settings.retention_days))
            for table, key, condition in _PLAN:
                result.deleted[table], batches = _delete_in_batches(rt, key, condition, now, batch_size)
                result.batches += batches
    except job_lock.JobBusy:
        return PurgeResult(busy=True)
    if result.total:
        log.info("retention purge: %s", ", ".join(f"{n} {t}" for t, n in result.deleted.items() if n))
    return result


def _record_horizon(rt: Runtime, table: str, cutoff: datetime) -> None:
    """Committed before the rows go, and only ever moved forward (a purge with a longer
    RETENTION_DAYS than an earlier one deleted no less): what reconciliation reads as
    "may be gone" (services.reconciliation.our_side webhook_log_purged_before)."""
    with rt.db.write() as session:
        mark = session.get(PurgeHorizon, table, with_for_update=True)
        if mark is None:
            session.add(PurgeHorizon(table_name=table, purged_before=cutoff))
        elif mark.purged_before < cutoff:
            mark.purged_before = cutoff


def _delete_in_batches(
    rt: Runtime, key: InstrumentedAttribute[Any], condition: Condition, now: datetime, batch_size: int
) -> tuple[int, int]:
    """(rows deleted, transactions): the oldest `batch_size` matching ids, then those ids, until a
    batch comes back short."""
    deleted = batches = 0
    while True:
        with rt.db.write() as session:
            ids = list(session.scalars(select(key).where(condition(rt, session, now)).order_by(key).limit(batch_size)))
            if not ids:
                return deleted, batches
            # The condition again: a row changed since it was selected (a failed run being resumed,
            # services.reconciliation.runs claim_for_resume) is not deleted.
            gone = session.execute(
                delete(key.class_)
                .where(key.in_(ids), condition(rt, session, now))
                .execution_options(synchronize_session=False)
            )
            deleted += int(cast(CursorResult[Any], gone).rowcount)
        batches += 1
        if len(ids) < batch_size:
            return deleted, batches


def _count(rt: Runtime, now: datetime) -> PurgeResult:
    result = PurgeResult(dry_run=True)
    with rt.db.read() as session:
        for table, key, condition in _PLAN:
            where = condition(rt, session, now)
            result.deleted[table] = int(session.scalar(select(func.count(key)).where(where)) or 0)
    return result
