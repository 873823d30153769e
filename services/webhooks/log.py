"""The webhook log: every delivery we received, what verification and processing made of it, and
replaying one.

A replay re-processes the stored body through services.webhooks.v1.receive, which takes the body
only as a hint of which payment to re-fetch from PortOne; nothing in it is trusted. The replay is
recorded as a new event whose source says who replayed which event, and in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import InvalidRequest, NotFound
from services.core.kst import kst_day_bounds
from services.core.models import WebhookEvent
from services.runtime import Runtime
from services.webhooks import v1 as webhooks

RESULTS = ("received", "processed", "rejected", "error")
MAX_PAGE_SIZE = 200
MAX_SOURCE = 64


@dataclass(frozen=True)
class WebhookRow:
    id: int
    received_at: datetime
    source_ip: str | None
    content_type: str | None
    imp_uid: str | None
    merchant_uid: str | None
    claimed_status: str | None
    verified: bool
    result: str
    detail: str | None
    processed_at: datetime | None

    @property
    def is_replay(self) -> bool:
        return (self.source_ip or "").startswith("replay ")


@dataclass(frozen=True)
class WebhookEventDetail:
    event: WebhookRow
    body: str


@dataclass(frozen=True)
class WebhookPage:
    rows: list[WebhookRow]
    next_before_id: int | None  # pass as `before_id` for the next (older) page; None: no more


@dataclass(frozen=True)
class ReplayResult:
    original_id: int
    event_id: int
    result: str
    detail: str


def _row(event: WebhookEvent) -> WebhookRow:
    return WebhookRow(
        id=event.id,
        received_at=event.received_at,
        source_ip=event.source_ip,
        content_type=event.content_type,
        imp_uid=event.imp_uid,
        merchant_uid=event.merchant_uid,
        claimed_status=event.claimed_status,
        verified=event.verified,
        result=event.result,
        detail=event.detail,
        processed_at=event.processed_at,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_events(
    rt: Runtime,
    *,
    actor: Actor,
    result: str | None = None,
    imp_uid: str | None = None,
    start: date | None = None,
    end: date | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> WebhookPage:
    """Newest first, paged by id (keyset). `imp_uid` matches from the start (imp_ or a full id);
    `start`/`end` are KST calendar days, inclusive."""
    require(actor, Permission.VIEW)
    limit = min(max(limit, 1), MAX_PAGE_SIZE)
    stmt = select(WebhookEvent)
    if result:
        if result not in RESULTS:
            raise InvalidRequest(f"result must be one of {', '.join(RESULTS)}")
        stmt = stmt.where(WebhookEvent.result == result)
    search = (imp_uid or "").strip()
    if search:
        stmt = stmt.where(WebhookEvent.imp_uid.like(_escape_like(search) + "%", escape="\\"))
    if start is not None and end is not None and end < start:
        raise InvalidRequest("the end date is before the start date")
    if start is not None:
        stmt = stmt.where(WebhookEvent.received_at >= kst_day_bounds(start, start)[0])
    if end is not None:
        stmt = stmt.where(WebhookEvent.received_at < kst_day_bounds(end, end)[1])
    if before_id is not None:
        stmt = stmt.where(WebhookEvent.id < before_id)
    with rt.db.read() as session:
        events = session.scalars(stmt.order_by(WebhookEvent.id.desc()).limit(limit + 1)).all()
    rows = [_row(e) for e in events[:limit]]
    return WebhookPage(rows=rows, next_before_id=rows[-1].id if len(events) > limit else None)


def get_event(rt: Runtime, *, actor: Actor, event_id: int) -> WebhookEventDetail:
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        event = session.get(WebhookEvent, event_id)
        if event is None:
            raise NotFound(f"no webhook event #{event_id}")
        return WebhookEventDetail(event=_row(event), body=event.body)


def result_counts(rt: Runtime, *, actor: Actor) -> dict[str, int]:
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        rows = session.execute(select(WebhookEvent.result, func.count()).group_by(WebhookEvent.result)).all()
    counts = dict.fromkeys(RESULTS, 0)
    counts.update({str(r): int(n) for r, n in rows})
    return counts


def replay_source(original_id: int, username: str) -> str:
    return f"replay #{original_id} by {username}"[:MAX_SOURCE]


def replay(rt: Runtime, *, actor: Actor, event_id: int) -> ReplayResult:
    """Process a stored delivery again, as a new event (PortOne is asked afresh)."""
    require(actor, Permission.REPLAY_WEBHOOK)
    with rt.db.read() as session:
        original = session.get(WebhookEvent, event_id)
        if original is None:
            raise NotFound(f"no webhook event #{event_id}")
        body, content_type, imp_uid = original.body, original.content_type or "", original.imp_uid
    outcome = webhooks.receive(
        rt,
        body=body.encode("utf-8"),
        content_type=content_type,
        source_ip=replay_source(event_id, actor.username),
    )
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor.username,
            action="webhook.replayed",
            target=imp_uid,
            original_event_id=event_id,
            event_id=outcome.event_id,
            result=str(outcome.result),
        )
    return ReplayResult(
        original_id=event_id, event_id=outcome.event_id, result=str(outcome.result), detail=outcome.detail
    )
