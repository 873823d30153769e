"""Verdicts become alerts: one open alert per (kind, payment), opened, refreshed or resolved in bulk.

The one writer of alerts (services.alerts.store.raise_alert goes through it too), in the caller's
transaction; new and resolved alerts are written to the audit log, and new high or critical ones
queued for notification (services.notifications.outbox).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.alerts.store import SEVERITY
from services.core.models import Alert, AlertStatus, AuditEntry, fit, utcnow
from services.core.sequences import SQL_IN_CHUNK, chunked
from services.notifications import outbox as notify
from services.reconciliation.facts import RULE_KINDS, Finding, Verdict

_ATTRIBUTION: ContextVar[tuple[str, str] | None] = ContextVar("reconcile_attribution", default=None)


@contextmanager
def attributed_to(actor: str, where: str) -> Iterator[None]:
    """Alerts resolved inside this block (also by the real-time hook) name this actor and place."""
    token = _ATTRIBUTION.set((actor, where))
    try:
        yield
    finally:
        _ATTRIBUTION.reset(token)


class _OpenAlert(NamedTuple):
    id: int
    message: str
    db_value: str | None
    portone_value: str | None


@dataclass
class WriteResult:
    found: Counter[str] = field(default_factory=Counter)
    found_keys: set[tuple[str, str | None]] = field(default_factory=set)
    new: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    open_ids: dict[tuple[str, str | None], int] = field(default_factory=dict)  # the alert of each finding


def _open_alerts(
    session: Session, imp_uids: set[str | None], *, load_all: bool
) -> dict[tuple[str, str | None], _OpenAlert]:
    columns = select(Alert.id, Alert.kind, Alert.imp_uid, Alert.message, Alert.db_value, Alert.portone_value).where(
        Alert.status != AlertStatus.RESOLVED, Alert.kind.in_([str(k) for k in RULE_KINDS])
    )
    statements = []
    if load_all:
        statements.append(columns)
    else:
        named = sorted(uid for uid in imp_uids if uid is not None)
        statements.extend(columns.where(Alert.imp_uid.in_(chunk)) for chunk in chunked(named, SQL_IN_CHUNK))
        if None in imp_uids:
            statements.append(columns.where(Alert.imp_uid.is_(None)))
    found: dict[tuple[str, str | None], _OpenAlert] = {}
    for statement in statements:
        for row in session.execute(statement):
            if load_all and row.imp_uid not in imp_uids:
                continue
            found[(row.kind, row.imp_uid)] = _OpenAlert(row.id, row.message, row.db_value, row.portone_value)
    return found


def write_verdicts(
    session: Session,
    verdicts: Sequence[Verdict],
    *,
    actor: str,
    where: str,
    run_id: int | None = None,
    load_all_open: bool = False,
) -> WriteResult:
    """Open, refresh and resolve alerts for these verdicts, in bulk, in the caller's transaction.

    One open alert per (kind, imp_uid): a finding refreshes the open one, an agreement resolves it.
    New and resolved alerts are written to the audit log.
    """
    latest: dict[tuple[str, str | None], Verdict] = {}
    for verdict in verdicts:
        latest[(str(verdict.outcome.kind), verdict.imp_uid)] = verdict
    result = WriteResult()
    if not latest:
        return result
    existing = _open_alerts(session, {uid for _, uid in latest}, load_all=load_all_open)
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    resolves: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    detail = {"run_id": run_id} if run_id is not None else {}
    for key, verdict in latest.items():
        kind, imp_uid = key
        outcome = verdict.outcome
        current = existing.get(key)
        if isinstance(outcome, Finding):
            result.found[kind] += 1
            result.found_keys.add(key)
            values = {"message": outcome.message, "db_value": outcome.db_value, "portone_value": outcome.portone_value}
            if current is None:
                inserts.append(
                    {
                        "kind": kind,
                        "severity": SEVERITY[outcome.kind],
                        "imp_uid": imp_uid,
                        "merchant_uid": fit(Alert.__table__.c.merchant_uid, verdict.merchant_uid),
                        "status": AlertStatus.OPEN,
                        "created_at": now,
                        "updated_at": now,
                        **values,
                    }
                )
            else:
                result.open_ids[key] = current.id
                if (current.message, current.db_value, current.portone_value) != tuple(values.values()):
                    updates.append({"id": current.id, "updated_at": now, **values})
        elif current is not None:
            note = f"{outcome.note} — resolved automatically ({where})"
            resolves.append(
                {
                    "id": current.id,
                    "status": AlertStatus.RESOLVED,
                    "resolved_by": actor,
                    "resolution_note": note,
                    "updated_at": now,
                }
            )
            result.resolved[kind] += 1
            audits.append(
                {
                    "actor": actor,
                    "action": "alert.resolved",
                    "target": imp_uid,
                    "at": now,
                    "detail": {"alert_id": current.id, "kind": kind, "note": note, **detail},
                }
            )
    if inserts:
        created, opened_meanwhile = _insert_alerts(session, inserts)
        for row, alert_id in opened_meanwhile:
            result.open_ids[(row["kind"], row["imp_uid"])] = alert_id
            updates.append(
                {"id": alert_id, **{k: row[k] for k in ("updated_at", "message", "db_value", "portone_value")}}
            )
        notify.alerts_raised(session, [(alert_id, row["kind"], row["severity"]) for row, alert_id in created])
        for row, alert_id in created:
            result.new[row["kind"]] += 1
            result.open_ids[(row["kind"], row["imp_uid"])] = alert_id
            audits.append(
                {
                    "actor": "system",
                    "action": "alert.raised",
                    "target": row["imp_uid"],
                    "at": now,
                    "detail": {"alert_id": alert_id, "kind": row["kind"], "found_by": where, **detail},
                }
            )
    if updates:
        session.execute(update(Alert), updates)
    if resolves:
        session.execute(update(Alert), resolves)
    if audits:
        session.execute(insert(AuditEntry), audits)
    return result


def _insert_alerts(
    session: Session, rows: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], int]], list[tuple[dict[str, Any], int]]]:
    """Insert new open alerts: (created, opened meanwhile by a concurrent transaction).

    On PostgreSQL two transactions may both find no open alert and both insert one: the loser's
    insert violates the one-open-alert index, and it refreshes the winner's alert instead.
    """
    try:
        with session.begin_nested():
            ids = session.scalars(insert(Alert).returning(Alert.id, sort_by_parameter_order=True), rows).all()
        return list(zip(rows, ids, strict=True)), []
    except IntegrityError:
        pass
    created, opened_meanwhile = [], []
    for row in rows:
        try:
            with session.begin_nested():
                created.append((row, int(session.scalar(insert(Alert).values(**row).returning(Alert.id)) or 0)))
        except IntegrityError:
            open_id = session.scalar(
                select(Alert.id).where(
                    Alert.kind == row["kind"], Alert.imp_uid == row["imp_uid"], Alert.status != AlertStatus.RESOLVED
                )
            )
            if open_id is None:
                raise
            opened_meanwhile.append((row, open_id))
    return created, opened_meanwhile


def current_attribution(default_where: str) -> tuple[str, str]:
    """(actor, where) for alerts resolved now: the enclosing `attributed_to` block's, else the system's."""
    return _ATTRIBUTION.get() or ("system", default_where)
