"""Which rows each export holds: the filters, one SQL query per export kind, and the function that
turns the query's rows into cell strings.

The query selects times already as KST text (the database formats them: `export_writer.render`'s
rule for a datetime, without a Python datetime per cell) and money as exact integer hundredths, and
runs without the ORM; the row function writes the cells in the order of the kind's columns
(services/reporting/export_columns.py), personal data masked when asked (services.core.masking),
and names the text cells `export_writer.csv_chunk` must neutralise. Query and row function are
kept side by side because the row function unpacks the query's columns by position. At a million
rows this is most of an export's time, so it is written for speed (bench/export_csv.py).

The summary export is no query of its own: it is the sales report (services/reporting/sales.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, ColumnElement, Select, String, cast, func, literal_column, select

from services.auth.access import Actor
from services.core.errors import InvalidRequest
from services.core.masking import mask_email, mask_name, mask_phone
from services.core.models import Alert, Payment, Refund
from services.reporting import sales as reports
from services.reporting.export_columns import ExportKind
from services.reporting.export_writer import Cell, Money, memoised_money_text_of_hundredths
from services.runtime import Runtime

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"
RowCells: TypeAlias = Callable[[Any], list[str]]


@dataclass(frozen=True)
class ExportFilters:
    """What to export: KST calendar days `start`..`end` (inclusive) plus optional narrowing.

    Payments are selected by the day they were paid, refunds by the day they went through (or
    were requested, while unsettled), alerts by the day they were raised; `status` means the
    PortOne status, the refund status or the alert status respectively.
    """

    start: date
    end: date
    currency: str | None = None
    status: str | None = None
    alert_kind: str | None = None
    severity: str | None = None
    granularity: str = reports.Granularity.DAY

    def __post_init__(self) -> None:
        reports.kst_bounds(self.start, self.end)  # validates the range
        if self.granularity not in tuple(reports.Granularity):
            raise InvalidRequest(f"granularity must be day or month, not {self.granularity!r}")

    def to_dict(self) -> dict[str, str]:
        data = {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "currency": self.currency,
            "status": self.status,
            "alert_kind": self.alert_kind,
            "severity": self.severity,
            "granularity": str(self.granularity),
        }
        return {key: value for key, value in data.items() if value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportFilters:
        try:
            return cls(
                start=date.fromisoformat(str(data["start"])),
                end=date.fromisoformat(str(data["end"])),
                currency=_opt(data.get("currency")),
                status=_opt(data.get("status")),
                alert_kind=_opt(data.get("alert_kind")),
                severity=_opt(data.get("severity")),
                granularity=str(data.get("granularity") or reports.Granularity.DAY),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidRequest(f"invalid export filters: {exc}") from None


def _opt(value: object) -> str | None:
    return str(value).strip() or None if value is not None else None


# -- SQL cells ---------------------------------------------------------------------------------


def kst_text(column: Any, dialect: str, label: str) -> ColumnElement[str]:
    """A stored UTC time as KST text, `YYYY-MM-DD HH:MM:SS` (seconds truncated, like `export_writer.render`)."""
    if dialect == "sqlite":
        # Stored as 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC. The fraction is cut off first: SQLite's
        # date functions round to milliseconds (…59.9996 would become the next second). KST has
        # been UTC+9 since 1988.
        fmt: ColumnElement[str] = literal_column("'%Y-%m-%d %H:%M:%S'")
        seconds = func.substr(column, 1, 19)
        return func.strftime(fmt, seconds, literal_column("'+9 hours'"), type_=String).label(label)
    local = func.timezone(literal_column("'Asia/Seoul'"), column)
    return func.to_char(local, literal_column("'YYYY-MM-DD HH24:MI:SS'"), type_=String).label(label)


def hundredths(column: Any, label: str) -> ColumnElement[int]:
    """An amount as an exact integer number of hundredths (NUMERIC(20, 2); SQLite keeps it as a
    REAL, which `round` makes exact again, as `services.core.sql.minor_sum` does)."""
    return cast(func.round(column * 100), BigInteger).label(label)


# -- one query and one row function per export kind --------------------------------------------


def _same(value: str | None) -> str | None:
    """Personal data as stored, for an unmasked export (the masking functions' stand-in)."""
    return value


def payments_query(filters: ExportFilters, dialect: str) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    stmt = select(
        Payment.imp_uid,
        Payment.merchant_uid,
        Payment.status,
        kst_text(Payment.paid_at, dialect, "paid_at"),
        kst_text(Payment.cancelled_at, dialect, "cancelled_at"),
        Payment.currency,
        hundredths(Payment.amount, "amount"),
        hundredths(Payment.cancel_amount, "cancel_amount"),
        Payment.pg_provider,
        Payment.pay_method,
        Payment.card_name,
        Payment.card_number,
        Payment.buyer_name,
        Payment.buyer_email,
        Payment.buyer_tel,
        Payment.name,
        Payment.verified,
    ).where(Payment.paid_at >= first, Payment.paid_at < after)
    if filters.currency:
        stmt = stmt.where(Payment.currency == filters.currency)
    if filters.status:
        stmt = stmt.where(Payment.status == filters.status)
    return stmt.order_by(Payment.paid_at, Payment.id)


PAYMENT_TEXT_CELLS = (0, 1, 2, 5, 9, 10, 11, 12, 13, 14, 15, 16)


def payment_cells(masked: bool) -> RowCells:
    name, email, phone = (mask_name, mask_email, mask_phone) if masked else (_same, _same, _same)
    money = memoised_money_text_of_hundredths()

    def cells(row: Any) -> list[str]:
        (imp_uid, merchant_uid, status, paid_at, cancelled_at, cur, amount, cancel_amount, pg_provider,
         pay_method, card_name, card_number, buyer_name, buyer_email, buyer_tel, order_name, verified) = row  # fmt: skip
        return [
            imp_uid or "",
            merchant_uid or "",
            status or "",
            paid_at or "",
            cancelled_at or "",
            cur or "",
            money(amount, cur),
            money(cancel_amount, cur),
            money(amount - cancel_amount, cur),
            pg_provider or "",
            pay_method or "",
            card_name or "",
            card_number or "",
            name(buyer_name) or "",
            email(buyer_email) or "",
            phone(buyer_tel) or "",
            order_name or "",
            "Y" if verified else "N",
        ]

    return cells


def refunds_query(filters: ExportFilters, dialect: str) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    refunded_at = reports.refund_time()
    stmt = (
        select(
            Refund.id,
            kst_text(Refund.completed_at, dialect, "completed_at"),
            kst_text(Refund.created_at, dialect, "created_at"),
            Payment.imp_uid,
            Payment.merchant_uid,
            Refund.status,
            Refund.currency,
            hundredths(Refund.amount, "amount"),
            Refund.reason,
            Refund.requested_by,
            Refund.source,
            Refund.portone_cancellation_id,
            Refund.error_message,
            Payment.buyer_name,
        )
        .join(Payment, Refund.payment_id == Payment.id)
        .where(refunded_at >= first, refunded_at < after)
    )
    if filters.currency:
        stmt = stmt.where(Refund.currency == filters.currency)
    if filters.status:
        stmt = stmt.where(Refund.status == filters.status)
    return stmt.order_by(Refund.id)


REFUND_TEXT_CELLS = (3, 4, 5, 6, 8, 9, 10, 11, 12, 13)


def refund_cells(masked: bool) -> RowCells:
    name = mask_name if masked else _same
    money = memoised_money_text_of_hundredths()

    def cells(row: Any) -> list[str]:
        (refund_id, completed_at, created_at, imp_uid, merchant_uid, status, cur, amount, reason, requested_by,
         source, cancellation_id, error_message, buyer_name) = row  # fmt: skip
        return [
            str(refund_id),
            completed_at or "",
            created_at or "",
            imp_uid or "",
            merchant_uid or "",
            status or "",
            cur or "",
            money(amount, cur),
            reason or "",
            requested_by or "",
            source or "",
            cancellation_id or "",
            error_message or "",
            name(buyer_name) or "",
        ]

    return cells


def alerts_query(filters: ExportFilters, dialect: str) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    stmt = select(
        Alert.id,
        kst_text(Alert.created_at, dialect, "created_at"),
        Alert.kind,
        Alert.severity,
        Alert.status,
        Alert.imp_uid,
        Alert.merchant_uid,
        Alert.db_value,
        Alert.portone_value,
        Alert.message,
        Alert.acknowledged_by,
        Alert.resolved_by,
        Alert.resolution_note,
        kst_text(Alert.updated_at, dialect, "updated_at"),
    ).where(Alert.created_at >= first, Alert.created_at < after)
    if filters.status:
        stmt = stmt.where(Alert.status == filters.status)
    if filters.alert_kind:
        stmt = stmt.where(Alert.kind == filters.alert_kind)
    if filters.severity:
        stmt = stmt.where(Alert.severity == filters.severity)
    return stmt.order_by(Alert.created_at, Alert.id)


ALERT_TEXT_CELLS = tuple(range(2, 13))


def alert_cells(masked: bool) -> RowCells:  # noqa: ARG001 - alerts hold no personal data
    def cells(row: Any) -> list[str]:
        alert_id, created_at, *texts, updated_at = row
        return [str(alert_id), created_at or "", *(value or "" for value in texts), updated_at or ""]

    return cells


@dataclass(frozen=True)
class RowExport:
    """An export read row by row from the database: its query, its row function and the
    positions of its text cells (the ones `csv_chunk` neutralises)."""

    query: Callable[[ExportFilters, str], AnySelect]
    row_cells: Callable[[bool], RowCells]
    text_cells: Sequence[int]


ROW_EXPORTS = {
    ExportKind.PAYMENTS: RowExport(payments_query, payment_cells, PAYMENT_TEXT_CELLS),
    ExportKind.REFUNDS: RowExport(refunds_query, refund_cells, REFUND_TEXT_CELLS),
    ExportKind.ALERTS: RowExport(alerts_query, alert_cells, ALERT_TEXT_CELLS),
}


def summary_cells(rt: Runtime, actor: Actor, f: ExportFilters) -> list[list[Cell]]:
    """The summary export's rows: the sales report for the filters' days, money as typed cells."""
    rows = reports.summary(
        rt,
        actor=actor,
        start=f.start,
        end=f.end,
        granularity=reports.Granularity(f.granularity),
        currency=f.currency,
    )
    return [
        [
            r.period,
            r.currency,
            r.pg_provider,
            r.pay_method,
            r.paid_count,
            Money(r.gross, r.currency),
            r.refund_count,
            Money(r.refunds, r.currency),
            Money(r.net, r.currency),
        ]
        for r in rows
    ]
