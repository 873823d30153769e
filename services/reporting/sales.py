"""Daily and monthly sales summaries per currency, PG and pay method, aggregated in SQL.

Periods are KST calendar days or months (Korea keeps no daylight saving time, so KST is UTC+9
all year). What counts:

- gross: verified payments (amount and currency equal to their order) by the KST day they were
  paid; a payment later refunded stays in the gross of the day it was paid;
- refunds: succeeded refunds of those payments by the KST day the refund went through (our own
  refunds and cancellations made in PortOne's console alike);
- net = gross - refunds, per period, so a day with more refunds than sales has a negative net.

Forgeries and payments for no order of ours (unverified) are left out of both: they are alerts,
not sales. Money is summed in minor units (integers) so SQLite's floating-point storage can never
leak into a total; currencies are never added together.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, String, func, literal_column, select

from services.auth.access import Actor, Permission, require
from services.core.errors import InvalidRequest
from services.core.kst import kst_day_bounds
from services.core.models import Payment, Refund, RefundStatus
from services.core.money import normalize
from services.core.sql import from_hundredths, minor_sum
from services.runtime import Runtime

MAX_RANGE_DAYS = 3 * 366
UNKNOWN = ""  # PG or pay method PortOne did not report


class Granularity(enum.StrEnum):
    DAY = "day"
    MONTH = "month"


@dataclass(frozen=True)
class SummaryRow:
    """One period x currency x PG x pay method cell of the report."""

    period: str  # "2025-03-31" (day) or "2025-03" (month), KST
    currency: str
    pg_provider: str
    pay_method: str
    paid_count: int
    gross: Decimal
    refund_count: int
    refunds: Decimal

    @property
    def net(self) -> Decimal:
        return self.gross - self.refunds


@dataclass(frozen=True)
class Totals:
    """A roll-up of summary rows for one currency (and one period, PG or method if grouped so)."""

    currency: str
    paid_count: int
    gross: Decimal
    refund_count: int
    refunds: Decimal

    @property
    def net(self) -> Decimal:
        return self.gross - self.refunds


def kst_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """A report's KST days `start`..`end` as a half-open UTC interval (`kst.kst_day_bounds`), once
    the range is checked: not reversed, at most `MAX_RANGE_DAYS` long."""
    if end < start:
        raise InvalidRequest("the end date is before the start date")
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidRequest(f"choose a range of at most {MAX_RANGE_DAYS} days")
    return kst_day_bounds(start, end)


def month_bounds(first_month: date, last_month: date) -> tuple[date, date]:
    """The first day of `first_month`'s month and the last day of `last_month`'s month."""
    start = first_month.replace(day=1)
    following = (last_month.replace(day=1) + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


def periods(start: date, end: date, granularity: Granularity) -> list[str]:
    """Every period label from start to end, as `summary` writes them (for charts without gaps)."""
    if granularity == Granularity.DAY:
        return [(start + timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]
    labels, month = [], start.replace(day=1)
    while month <= end:
        labels.append(f"{month:%Y-%m}")
        month = (month + timedelta(days=32)).replace(day=1)
    return labels


def kst_period(column: Any, granularity: Granularity, *, sqlite: bool) -> ColumnElement[str]:
    """SQL for the KST day ("YYYY-MM-DD") or month ("YYYY-MM") of a stored UTC time."""
    # Constants are rendered inline (fixed strings, never user input): PostgreSQL only matches a
    # SELECT expression with its GROUP BY when no bound parameter differs between the two.
    day = granularity == Granularity.DAY
    if sqlite:  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC
        sqlite_fmt: ColumnElement[str] = literal_column("'%Y-%m-%d'" if day else "'%Y-%m'")
        return func.strftime(sqlite_fmt, column, literal_column("'+9 hours'"), type_=String)
    pg_fmt: ColumnElement[str] = literal_column("'YYYY-MM-DD'" if day else "'YYYY-MM'")
    return func.to_char(func.timezone(literal_column("'Asia/Seoul'"), column), pg_fmt, type_=String)


def refund_time() -> Any:
    """When a refund counts: when it went through, or when it was requested while unsettled (the
    sales report and the refunds export place a refund on the same day)."""
    return func.coalesce(Refund.completed_at, Refund.created_at)


def summary(
    rt: Runtime,
    *,
    actor: Actor,
    start: date,
    end: date,
    granularity: Granularity = Granularity.DAY,
    currency: str | None = None,
) -> list[SummaryRow]:
    """Gross, refunds and counts per period, currency, PG and pay method for KST days start..end."""
    require(actor, Permission.VIEW)
    first, after = kst_bounds(start, end)
    cells: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    with rt.db.read() as session:
        sqlite = rt.db.is_sqlite
        paid_period = kst_period(Payment.paid_at, granularity, sqlite=sqlite).label("period")
        paid = (
            select(
                paid_period,
                Payment.currency,
                Payment.pg_provider,
                Payment.pay_method,
                func.count(),
                minor_sum(Payment.amount),
            )
            .where(Payment.paid_at >= first, Payment.paid_at < after, Payment.verified.is_(True))
            .group_by(paid_period, Payment.currency, Payment.pg_provider, Payment.pay_method)
        )
        refunded_at = refund_time()
        refund_period = kst_period(refunded_at, granularity, sqlite=sqlite).label("period")
        refunded = (
            select(
                refund_period,
                Payment.currency,
                Payment.pg_provider,
                Payment.pay_method,
                func.count(),
                minor_sum(Refund.amount),
            )
            .join(Payment, Refund.payment_id == Payment.id)
            .where(
                Refund.status == RefundStatus.SUCCEEDED,
                refunded_at >= first,
                refunded_at < after,
                Payment.verified.is_(True),
            )
            .group_by(refund_period, Payment.currency, Payment.pg_provider, Payment.pay_method)
        )
        if currency:
            paid = paid.where(Payment.currency == currency)
            refunded = refunded.where(Payment.currency == currency)
        for period, cur, pg, method, count, hundredths in session.execute(paid):
            cell = _cell(cells, period, cur, pg, method)
            cell["paid_count"] += int(count)
            cell["gross"] += from_hundredths(hundredths, cur)
        for period, cur, pg, method, count, hundredths in session.execute(refunded):
            cell = _cell(cells, period, cur, pg, method)
            cell["refund_count"] += int(count)
            cell["refunds"] += from_hundredths(hundredths, cur)
    return [SummaryRow(*key, **values) for key, values in sorted(cells.items())]


def _cell(
    cells: dict[tuple[str, str, str, str], dict[str, Any]], period: str, cur: str, pg: str | None, method: str | None
) -> dict[str, Any]:
    key = (period, cur, pg or UNKNOWN, method or UNKNOWN)
    if key not in cells:
        zero = _zero(cur)
        cells[key] = {"paid_count": 0, "gross": zero, "refund_count": 0, "refunds": zero}
    return cells[key]


def _zero(currency: str) -> Decimal:
    try:
        return normalize(Decimal(0), currency)
    except ValueError:
        return Decimal("0.00")


def roll_up(rows: Iterable[SummaryRow], *, by: str | tuple[str, ...] | None = None) -> dict[tuple[str, ...], Totals]:
    """Totals per currency, or per currency and one or more of period, pg_provider, pay_method.

    Keys are (currency, *group values); with `by=None` the key is (currency, "").
    """
    fields = (by,) if isinstance(by, str) else tuple(by or ())
    for name in fields:
        if name not in ("period", "pg_provider", "pay_method"):
            raise ValueError(f"cannot roll up by {name!r}")
    sums: dict[tuple[str, ...], list[Any]] = {}
    for row in rows:
        key = (row.currency, *(str(getattr(row, name)) for name in fields)) if fields else (row.currency, "")
        acc = sums.setdefault(key, [0, _zero(row.currency), 0, _zero(row.currency)])
        acc[0] += row.paid_count
        acc[1] += row.gross
        acc[2] += row.refund_count
        acc[3] += row.refunds
    return {key: Totals(key[0], *values) for key, values in sorted(sums.items())}
