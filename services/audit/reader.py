"""Reading the audit log (services/audit/trail.py writes it): filtered, newest first, keyset-paged.

Entries are append-only and their ids only grow, so "newest first" is id descending and a page
continues below the last id seen: no OFFSET, constant cost however deep the operator pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, select

from services.auth.access import Actor, Permission, require
from services.core.errors import InvalidRequest
from services.core.kst import kst_midnight
from services.core.models import AuditEntry
from services.runtime import Runtime

MAX_PAGE_SIZE = 500
ACTION_CHOICES_LIMIT = 200


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # exact user name (or system component)
    action: str | None = None  # exact action, e.g. refund.requested
    target: str | None = None  # exact target: imp_uid, merchant_uid, user name
    since: date | None = None  # first KST day included
    until: date | None = None  # last KST day included


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class AuditPage:
    rows: tuple[AuditRow, ...]
    next_before_id: int | None  # pass as before_id for the next (older) page; None: this is the last


def _filtered(query: Select[Any], flt: AuditFilter) -> Select[Any]:
    if flt.since and flt.until and flt.since > flt.until:
        raise InvalidRequest("the start date is after the end date")
    if flt.actor and flt.actor.strip():
        query = query.where(AuditEntry.actor == flt.actor.strip())
    if flt.action and flt.action.strip():
        query = query.where(AuditEntry.action == flt.action.strip())
    if flt.target and flt.target.strip():
        query = query.where(AuditEntry.target == flt.target.strip())
    if flt.since:
        query = query.where(AuditEntry.at >= kst_midnight(flt.since))
    if flt.until:
        query = query.where(AuditEntry.at < kst_midnight(flt.until + timedelta(days=1)))
    return query


def list_entries(
    rt: Runtime, *, actor: Actor, filters: AuditFilter | None = None, before_id: int | None = None, limit: int = 50
) -> AuditPage:
    """One page of entries matching `filters`, newest first, older than `before_id`."""
    require(actor, Permission.VIEW_AUDIT)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"page size must be between 1 and {MAX_PAGE_SIZE}")
    query = _filtered(select(AuditEntry), filters or AuditFilter())
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    with rt.db.read() as session:
        entries = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)).all()
    rows = tuple(AuditRow(e.id, e.at, e.actor, e.action, e.target, e.detail) for e in entries[:limit])
    return AuditPage(rows=rows, next_before_id=rows[-1].id if len(entries) > limit else None)


def known_actions(rt: Runtime, *, actor: Actor) -> list[str]:
    """The distinct actions recorded so far, for the filter's choices."""
    require(actor, Permission.VIEW_AUDIT)
    with rt.db.read() as session:
        return list(
            session.scalars(
                select(AuditEntry.action).distinct().order_by(AuditEntry.action).limit(ACTION_CHOICES_LIMIT)
            )
        )
