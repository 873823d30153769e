"""Sending what the outbox holds, outside any request: `dispatch_due` (run every
DISPATCH_EVERY_SECONDS by `python -m cli scheduler` and by the API, once by `python -m cli notify`).

- Batching: once the oldest waiting event is NOTIFY_BATCH_SECONDS old, every event waiting for
  its first try goes out together, one message per channel; so what happens within a minute
  arrives as one message, and nothing waits longer than that.
- Per channel: a channel that took an event is marked (`slack_sent_at`, `email_sent_at`) and is
  never sent it again; the other is retried after a backoff doubling from RETRY_FIRST up to
  RETRY_CAP, and given up after MAX_ATTEMPTS (logged by event key, no personal data).
- Sent and given-up events are kept KEEP (30 days), then deleted, also while no channel is
  configured (and then so is any event queued that long ago: nothing will send it).
- One dispatcher at a time across processes (the `notify` job lock). A dispatcher that dies
  between sending and marking sends that batch again: at least once, not exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update

from services.core import job_lock
from services.core.config import Settings
from services.core.models import NotificationOutbox, utcnow
from services.notifications.channels import ChannelError, post_to_slack, send_email
from services.notifications.labels import PRODUCT
from services.runtime import Runtime

log = logging.getLogger("chekar.notify")

LOCK = "notify"
DISPATCH_EVERY_SECONDS = 15.0
RETRY_FIRST = timedelta(seconds=30)
RETRY_CAP = timedelta(minutes=30)
MAX_ATTEMPTS = 10  # about three hours of trying
MAX_LINES = 20  # events named in one message; the rest are counted
MAX_ROWS = 500  # events handled per dispatch
KEEP = timedelta(days=30)  # sent or given-up events are deleted after this long


@dataclass
class DispatchResult:
    sent: list[str] = field(default_factory=list)  # event keys every channel took
    retrying: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # given up
    busy: bool = False  # another dispatcher held the lock


def backoff(attempts: int) -> timedelta:
    """How long after its `attempts`-th failed try an event is tried again."""
    doubled: timedelta = RETRY_FIRST * 2 ** max(attempts - 1, 0)
    return min(doubled, RETRY_CAP)


def _channels(settings: Settings) -> dict[str, Callable[[str, str], None]]:
    channels: dict[str, Callable[[str, str], None]] = {}
    if settings.notify_slack_enabled:
        channels["slack"] = lambda _subject, text: post_to_slack(settings, text)
    if settings.notify_email_enabled:
        channels["email"] = lambda subject, text: send_email(settings, subject, text)
    return channels


def compose(settings: Settings, rows: Sequence[NotificationOutbox], *, waiting: int = 0) -> tuple[str, str]:
    """(subject, text): Korean first, then English; a link to the dashboard for each event.
    `waiting`: how many events are due in all (more than `rows` when a batch is cut at MAX_ROWS)."""
    base = settings.dashboard_url
    total = max(waiting, len(rows))

    def line(row: NotificationOutbox) -> str:
        return f"{row.summary} — {base}{row.link_path}"

    if total == 1:
        return f"{PRODUCT} {rows[0].summary}", f"{PRODUCT} {line(rows[0])}"
    subject = f"{PRODUCT} 알림 {total}건 / {total} notifications"
    named = rows[:MAX_LINES]
    lines = [subject, *(f"• {line(row)}" for row in named)]
    if total > len(named):
        more = total - len(named)
        lines.append(f"• 외 {more}건 / and {more} more — {base}/alerts")
    return subject, "\n".join(lines)


def _due(channels: Sequence[str], now: datetime) -> ColumnElement[bool]:
    """Waiting for a channel that is configured, and due: new, or its retry's time has come."""
    return and_(
        NotificationOutbox.sent_at.is_(None),
        NotificationOutbox.failed_at.is_(None),
        or_(*(getattr(NotificationOutbox, f"{name}_sent_at").is_(None) for name in channels)),
        or_(
            and_(NotificationOutbox.attempts == 0, NotificationOutbox.created_at <= now),
            and_(NotificationOutbox.attempts > 0, NotificationOutbox.next_attempt_at <= now),
        ),
    )


def _batch(rt: Runtime, channels: Sequence[str], now: datetime) -> tuple[list[NotificationOutbox], int]:
    """The events to send now (those due for a retry, plus, once the oldest new event has waited the
    batch window, every new one), at most MAX_ROWS, and how many are due in all. Due is decided in
    SQL before the limit, so events still backing off never crowd out new ones."""
    window = timedelta(seconds=rt.settings.notify_batch_seconds)
    with rt.db.read() as session:
        where = _due(channels, now)
        oldest_new = session.scalar(
            select(func.min(NotificationOutbox.created_at)).where(where, NotificationOutbox.attempts == 0)
        )
        if oldest_new is not None and oldest_new > now - window:
            where = and_(where, NotificationOutbox.attempts > 0)  # still gathering the new ones
        due = session.scalars(
            select(NotificationOutbox).where(where).order_by(NotificationOutbox.id).limit(MAX_ROWS)
        ).all()
        if len(due) < MAX_ROWS:
            return list(due), len(due)
        count = session.scalar(select(func.count()).select_from(NotificationOutbox).where(where)) or 0
    return list(due), int(count)


def dispatch_due(rt: Runtime, *, now: datetime | None = None) -> DispatchResult:
    """Send what is due, one message per channel; mark what each channel took; back off the rest."""
    channels = _channels(rt.settings)
    if not channels:  # none (any more): what an earlier configuration queued still ages out
        _prune(rt, now or utcnow())
        return DispatchResult()
    try:
        with job_lock.held(rt, LOCK, lease=timedelta(minutes=5)):
            return _dispatch(rt, channels, now or utcnow())
    except job_lock.JobBusy:
        return DispatchResult(busy=True)


def expired(settings: Settings, now: datetime) -> ColumnElement[bool]:
    """The events to delete: sent or given up KEEP ago; and, while no channel is configured (nothing
    will send them), also those queued KEEP ago and still waiting. The one rule, for this dispatcher
    and for the retention purge (services/system/retention.py), which runs it when no dispatcher does."""
    old = now - KEEP
    stale = [NotificationOutbox.sent_at < old, NotificationOutbox.failed_at < old]
    if not _channels(settings):
        stale.append(NotificationOutbox.created_at < old)
    return or_(*stale)


def _prune(rt: Runtime, now: datetime) -> None:
    with rt.db.write() as session:
        session.execute(delete(NotificationOutbox).where(expired(rt.settings, now)))


def _dispatch(rt: Runtime, channels: dict[str, Callable[[str, str], None]], now: datetime) -> DispatchResult:
    _prune(rt, now)
    rows, waiting = _batch(rt, list(channels), now)
    result = DispatchResult()
    if not rows:
        return result
    errors: list[str] = []
    for name, send in channels.items():
        column = getattr(NotificationOutbox, f"{name}_sent_at")
        pending = [row for row in rows if getattr(row, f"{name}_sent_at") is None]
        if not pending:
            continue
        try:
            send(*compose(rt.settings, pending, waiting=waiting - (len(rows) - len(pending))))
        except ChannelError as exc:
            errors.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - channels raise ChannelError; anything else is still this channel's
            errors.append(f"{name}: {type(exc).__name__}")
            continue
        took = utcnow()
        # Marked at once, in its own transaction: a failure later (another channel, the database)
        # cannot make this channel be sent the batch again.
        with rt.db.write() as session:
            session.execute(
                update(NotificationOutbox)
                .where(NotificationOutbox.id.in_([row.id for row in pending]), column.is_(None))
                .values({column: took})
            )
        for row in pending:
            setattr(row, f"{name}_sent_at", took)
    done = utcnow()
    with rt.db.write() as session:
        for row in rows:
            values: dict[str, object] = {"attempts": row.attempts + 1}
            if all(getattr(row, f"{name}_sent_at") for name in channels):
                values["sent_at"] = done
                result.sent.append(row.event_key)
            else:
                values["last_error"] = "; ".join(errors)[:500]
                if row.attempts + 1 >= MAX_ATTEMPTS:
                    values["failed_at"] = done
                    result.failed.append(row.event_key)
                    log.error("notification %s given up after %s attempts: %s", row.event_key, row.attempts + 1, errors)
                else:
                    values["next_attempt_at"] = now + backoff(row.attempts + 1)
                    result.retrying.append(row.event_key)
            session.execute(update(NotificationOutbox).where(NotificationOutbox.id == row.id).values(**values))
    if errors:
        log.warning("notifications not delivered, retrying later: %s", "; ".join(errors))
    return result


class Dispatcher:
    """A thread running `dispatch_due` every DISPATCH_EVERY_SECONDS (or sooner when woken). The
    scheduler process and the API each run one (the API's tells of a scheduler that died; the
    `notify` lock keeps one sender at a time)."""

    def __init__(self, rt: Runtime, *, every: float = DISPATCH_EVERY_SECONDS) -> None:
        self.rt = rt
        self.every = every
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notify-dispatcher", daemon=True)

    def start(self) -> Dispatcher:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while True:  # at once on start (what waited while the scheduler was down), then every `every`
            try:
                dispatch_due(self.rt)
            except Exception as exc:  # noqa: BLE001 - a dispatcher reports and carries on
                log.warning("notification dispatch failed: %s", type(exc).__name__)
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                return

    def wake(self) -> None:
        """Dispatch now rather than at the next tick (something was just queued)."""
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
