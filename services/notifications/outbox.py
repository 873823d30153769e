"""Queueing: one tiny insert in the event's own transaction; sending is services.notifications.dispatch.

A row is queued only when a channel is configured: the runtime marks its write sessions with
`NOTIFY` (services.runtime.build_runtime), so code that holds only a session can tell. The event
key is unique and a duplicate is ignored (INSERT ... ON CONFLICT DO NOTHING), so an event raised
twice is told once. Summaries name no person: kinds, ids, amounts, and a dashboard link.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.core.models import NotificationOutbox, utcnow
from services.core.sequences import chunked
from services.notifications.labels import alert_kind_words, severity_words

NOTIFY = "chekar.notify"  # Session.info key: True when a notification channel is configured
NOTIFIED_SEVERITIES = frozenset({"critical", "high"})
CURRENCY = re.compile(r"[A-Z]{3}")
INSERT_CHUNK = 500  # rows per INSERT: 4,000 parameters, within SQLite's and PostgreSQL's limits


def enabled(session: Session) -> bool:
    return bool(session.info.get(NOTIFY))


def _event(*, key: str, kind: str, severity: str, summary: str, link_path: str, now: datetime) -> dict[str, Any]:
    return {
        "event_key": key[:120],
        "kind": kind[:40],
        "severity": severity[:16],
        "summary": summary[:500],
        "link_path": link_path[:200],
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
    }


def _insert(session: Session, events: list[dict[str, Any]]) -> None:
    """One multi-row INSERT ... ON CONFLICT DO NOTHING per INSERT_CHUNK events."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for chunk in chunked(events, INSERT_CHUNK):
        session.execute(dialect.insert(NotificationOutbox).values(chunk).on_conflict_do_nothing())


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    severity: str,
    summary: str,
    link_path: str,
    now: datetime | None = None,
) -> None:
    """Queue one event (nothing when no channel is configured; nothing when `key` is queued already)."""
    if not enabled(session):
        return
    event = _event(key=key, kind=kind, severity=severity, summary=summary, link_path=link_path, now=now or utcnow())
    _insert(session, [event])


def alert_link(alert_id: int) -> str:
    return f"/alerts?alert={alert_id}"


def _alert_event(alert_id: int, kind: str, severity: str, now: datetime) -> dict[str, Any]:
    return _event(
        key=f"alert:{alert_id}",
        kind=kind,
        severity=severity,
        summary=f"{severity_words(severity)}: {alert_kind_words(kind)} 알림 #{alert_id} / alert #{alert_id}",
        link_path=alert_link(alert_id),
        now=now,
    )


def alert_raised(session: Session, *, alert_id: int, kind: str, severity: str) -> None:
    """A new alert: queued when high or critical."""
    alerts_raised(session, [(alert_id, kind, severity)])


def alerts_raised(session: Session, alerts: Iterable[tuple[int, str, str]]) -> None:
    """New alerts (id, kind, severity), those high or critical queued together (a reconciliation
    can raise thousands: a statement per chunk, not per alert)."""
    if not enabled(session):
        return
    now = utcnow()
    events = [
        _alert_event(alert_id, kind, severity, now) for alert_id, kind, severity in alerts
        if severity in NOTIFIED_SEVERITIES
    ]  # fmt: skip
    if events:
        _insert(session, events)


def approval_waiting(
    session: Session, *, request_id: int, currency: str, amount: Decimal | None, batch_id: str | None
) -> None:
    """A refund request filed to wait for a second operator; a bulk batch is one event."""
    if batch_id:  # typed by an operator: in the key as a digest only, never in the message
        digest = hashlib.sha256(batch_id.encode()).hexdigest()[:40]
        enqueue(
            session,
            key=f"approval:batch:{digest}",
            kind="refund_approval",
            severity="high",
            summary=f"일괄 환불 승인 대기 (요청 #{request_id}부터) / bulk refunds awaiting approval (from request #{request_id})",
            link_path="/refunds",
        )
        return
    currency = currency if CURRENCY.fullmatch(currency) else "?"  # PortOne's text: only a plain code is shown
    how_much = f"{amount} {currency}" if amount is not None else f"전액 / full remainder, {currency}"
    enqueue(
        session,
        key=f"approval:{request_id}",
        kind="refund_approval",
        severity="high",
        summary=f"환불 승인 대기 #{request_id} / refund awaiting approval #{request_id} ({how_much})",
        link_path=f"/refunds?request={request_id}",
    )


def reconcile_failed(session: Session, *, run_id: int) -> None:
    """A scheduled reconciliation run that failed."""
    enqueue(
        session,
        key=f"reconcile:{run_id}",
        kind="reconcile_failed",
        severity="high",
        summary=f"정기 대조 실패 #{run_id} / scheduled reconciliation #{run_id} failed",
        link_path="/alerts",
    )
