"""Read-only figures for the dashboard's overview: SQL aggregates over bounded time ranges.

Periods are calendar days in Asia/Seoul (KST, UTC+9 all year): "today" starts at KST midnight,
"7 days" is today and the six days before it, "month" starts on the 1st of the KST month. Each
ends at the next KST midnight (exclusive).

- paid: payments whose `paid_at` falls in the period, verified against their order (a forgery or
  a payment without an order of ours is not revenue), whatever happened to them later;
- refunds: successful refund rows (ours, API, PortOne console) completed in the period, of such
  payments: a payment paid on Monday and refunded on Tuesday counts on each day it happened;
- net = paid - refunds, per currency (currencies are never added together).

Every query is a range on an indexed time column (`paid_at`, `refunds.completed_at` joined by
key, `received_at`), so they stay fast at a million payments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, ColumnExpressionArgument, Date, cast, func, select
from sqlalchemy.orm import Session

from services.auth.access import Actor, Permission, require
from services.core import money
from services.core.kst import kst_midnight, kst_today
from services.core.models import Alert, Payment, Refund, RefundStatus, WebhookEvent, alert_is_open
from services.runtime import Runtime

SEVERITIES = ("critical", "high", "medium", "low")
PERIODS = ("today", "week", "month")
CHART_DAYS = 30


@dataclass(frozen=True)
class PeriodFigures:
    """One currency's money in one period."""

    currency: str
    paid_count: int
    paid_amount: Decimal
    refund_count: int
    refund_amount: Decimal

    @property
    def net_amount(self) -> Decimal:
        return self.paid_amount - self.refund_amount


@dataclass(frozen=True)
class Period:
    key: str  # today | week | month
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    figures: tuple[PeriodFigures, ...]  # one per currency seen in the period, sorted by currency


@dataclass(frozen=True)
class DailyVolume:
    day: date  # KST calendar day
    currency: str
    count: int
    amount: Decimal


@dataclass(frozen=True)
class LastWebhook:
    received_at: datetime
    result: str  # received | processed | ignored | rejected | error
    claimed_status: str | None
    imp_uid: str | None
    verified: bool


@dataclass(frozen=True)
class Overview:
    generated_at: datetime
    periods: tuple[Period, ...]
    open_alerts: dict[str, int]  # severity -> open alerts (models.alert_is_open), every severity present
    last_webhook: LastWebhook | None
    daily: tuple[DailyVolume, ...]  # the last CHART_DAYS KST days, only days with payments
    chart_start: date
    chart_end: date  # inclusive
    has_payments: bool  # any payment at all (any status, any time)

    def period(self, key: str) -> Period:
        return next(p for p in self.periods if p.key == key)

    @property
    def currencies(self) -> tuple[str, ...]:
        seen = {f.currency for p in self.periods for f in p.figures} | {d.currency for d in self.daily}
        return tuple(sorted(seen))


def period_bounds(now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """UTC [start, end) of today, the last 7 days and this month, in KST calendar days."""
    today = kst_today(now)
    end = kst_midnight(today + timedelta(days=1))
    return {
        "today": (kst_midnight(today), end),
        "week": (kst_midnight(today - timedelta(days=6)), end),
        "month": (kst_midnight(today.replace(day=1)), end),
    }


def _amount(value: object, currency: str) -> Decimal:
    return money.normalize(Decimal(str(value if value is not None else 0)), currency)


def _paid_in(session: Session, start: datetime, end: datetime) -> dict[str, tuple[int, Decimal]]:
    rows = session.execute(
        select(Payment.currency, func.count(), func.sum(Payment.amount))
        .where(Payment.paid_at >= start, Payment.paid_at < end, Payment.verified.is_(True))
        .group_by(Payment.currency)
    ).all()
    return {cur: (int(n), _amount(total, cur)) for cur, n, total in rows}


def _refunded_in(session: Session, start: datetime, end: datetime) -> dict[str, tuple[int, Decimal]]:
    rows = session.execute(
        select(Refund.currency, func.count(), func.sum(Refund.amount))
        .join(Payment, Payment.id == Refund.payment_id)
        .where(
            Refund.completed_at >= start,
            Refund.completed_at < end,
            Refund.status == RefundStatus.SUCCEEDED,
            Payment.verified.is_(True),
        )
        .group_by(Refund.currency)
    ).all()
    return {cur: (int(n), _amount(total, cur)) for cur, n, total in rows}


def _period(session: Session, key: str, start: datetime, end: datetime) -> Period:
    paid, refunded = _paid_in(session, start, end), _refunded_in(session, start, end)
    figures = []
    for cur in sorted(set(paid) | set(refunded)):
        paid_count, paid_amount = paid.get(cur, (0, _amount(0, cur)))
        refund_count, refund_amount = refunded.get(cur, (0, _amount(0, cur)))
        figures.append(PeriodFigures(cur, paid_count, paid_amount, refund_count, refund_amount))
    return Period(key=key, start=start, end=end, figures=tuple(figures))


def _kst_day(session: Session, column: ColumnExpressionArgument[datetime | None]) -> ColumnElement[Any]:
    """The KST calendar day of a UTC timestamp column, computed by the database."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("Asia/Seoul", column), Date)
    # SQLite keeps UTC as 'YYYY-MM-DD HH:MM:SS.ffffff' text; Seoul has no daylight saving time.
    return func.date(column, "+9 hours")


def _daily(session: Session, start: datetime, end: datetime) -> tuple[DailyVolume, ...]:
    day = _kst_day(session, Payment.paid_at).label("day")
    rows = session.execute(
        select(day, Payment.currency, func.count(), func.sum(Payment.amount))
        .where(Payment.paid_at >= start, Payment.paid_at < end, Payment.verified.is_(True))
        .group_by(day, Payment.currency)
        .order_by(day, Payment.currency)
    ).all()
    return tuple(
        DailyVolume(date.fromisoformat(str(d)[:10]), cur, int(n), _amount(total, cur)) for d, cur, n, total in rows
    )


def _open_alerts(session: Session) -> dict[str, int]:
    rows = session.execute(select(Alert.severity, func.count()).where(alert_is_open()).group_by(Alert.severity)).all()
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, n in rows:
        counts[str(severity)] = counts.get(str(severity), 0) + int(n)
    return counts


def _last_webhook(session: Session) -> LastWebhook | None:
    event = session.scalar(select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(1))
    if event is None:
        return None
    return LastWebhook(event.received_at, event.result, event.claimed_status, event.imp_uid, event.verified)


def overview(rt: Runtime, *, actor: Actor, now: datetime | None = None) -> Overview:
    """Everything the overview page shows, in one read session."""
    require(actor, Permission.VIEW)
    now = now or datetime.now(UTC)
    bounds = period_bounds(now)
    today = kst_today(now)
    chart_start = today - timedelta(days=CHART_DAYS - 1)
    with rt.db.read() as session:
        periods = tuple(_period(session, key, *bounds[key]) for key in PERIODS)
        daily = _daily(session, kst_midnight(chart_start), bounds["today"][1])
        has_payments = session.scalar(select(Payment.id).limit(1)) is not None
        return Overview(
            generated_at=now,
            periods=periods,
            open_alerts=_open_alerts(session),
            last_webhook=_last_webhook(session),
            daily=daily,
            chart_start=chart_start,
            chart_end=today,
            has_payments=has_payments,
        )
