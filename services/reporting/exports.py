"""CSV exports of payments, refunds, alerts and the sales summary, streamed in chunks.

Made for Excel: UTF-8 with a byte order mark (so Korean opens correctly), CRLF line ends.
Safe in Excel: every text cell starting with = + - @ TAB or CR gets a leading single quote
(OWASP "CSV injection"), while money and counts are written as plain numbers from their own
typed columns, never passed through that rule, so a negative net stays a number. Amounts are
exact Decimals at their currency's precision (KRW 50000, USD 38.50). Times are KST and the
column name says so.

Personal data (buyer name, e-mail, phone) is masked unless the actor asks for it and holds
`EXPORT_UNMASKED`. Every export, finished or abandoned, leaves an audit entry with who, what,
the filters, the row count and whether it was masked.

Small exports are built in memory for the dashboard's download button; large ones are streamed by
the API behind a short-lived, single-use signed link (services/reporting/export_links.py), so the dashboard
process never holds them.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from sqlalchemy import BigInteger, ColumnElement, Select, String, cast, func, literal_column, select
from sqlalchemy.orm import Session

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import InvalidRequest
from services.core.masking import mask_email, mask_name, mask_phone
from services.core.models import Alert, Payment, Refund
from services.core.money import CURRENCY_EXPONENTS, MAX_AMOUNT
from services.reporting import sales as reports
from services.runtime import Runtime

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"
BOM = "\ufeff"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
DEFAULT_CHUNK_ROWS = 1000
LANGUAGES = ("ko", "en")


class ExportKind(enum.StrEnum):
    PAYMENTS = "payments"
    REFUNDS = "refunds"
    ALERTS = "alerts"
    SUMMARY = "summary"


# -- filters and requests -------------------------------------------------------------------


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


@dataclass(frozen=True)
class ExportRequest:
    """A checked export: the actor may run it, with personal data masked or not."""

    kind: ExportKind
    filters: ExportFilters
    actor: Actor
    masked: bool
    language: str = "ko"

    @property
    def file_name(self) -> str:
        return f"chekar-{self.kind}-{self.filters.start:%Y%m%d}-{self.filters.end:%Y%m%d}.csv"


def prepare(
    *,
    actor: Actor,
    kind: ExportKind | str,
    filters: ExportFilters,
    include_personal_data: bool = False,
    language: str = "ko",
) -> ExportRequest:
    """Check who may export what. Personal data only on request, and only with EXPORT_UNMASKED."""
    require(actor, Permission.EXPORT_UNMASKED if include_personal_data else Permission.EXPORT_MASKED)
    try:
        export_kind = ExportKind(kind)
    except ValueError:
        raise InvalidRequest(f"unknown export {kind!r}") from None
    return ExportRequest(
        kind=export_kind,
        filters=filters,
        actor=actor,
        masked=not include_personal_data,
        language=language if language in LANGUAGES else "ko",
    )


# -- cells: formula neutralisation (masking: services.core.masking) ----------------------------------------------


def neutralise(text: str) -> str:
    """A text cell Excel would read as a formula gets a leading single quote (OWASP)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


@dataclass(frozen=True)
class Money:
    """An amount cell: written as a plain number at its currency's precision, never neutralised."""

    amount: Decimal
    currency: str

    def render(self) -> str:
        return money_text(self.amount, self.currency)


_QUANTA = {currency: Decimal(1).scaleb(-exponent) for currency, exponent in CURRENCY_EXPONENTS.items()}


def money_text(amount: Decimal, currency: str) -> str:
    """An amount as a plain number at its currency's precision (`money.normalize`'s rule, inlined:
    this runs for three cells of every exported payment). An amount that does not fit its
    currency's precision, or of a currency we do not know, is written as it is, never rounded."""
    magnitude = abs(amount)
    quantum = _QUANTA.get(currency.upper())
    if quantum is not None and magnitude.is_finite():
        exact = magnitude.quantize(quantum)
        if exact == magnitude and exact <= MAX_AMOUNT:
            magnitude = exact
    return f"{'-' if amount < 0 else ''}{magnitude:f}"


Cell = str | int | bool | Decimal | Money | datetime | None


def render(value: Cell) -> str:
    """One cell as CSV text. Only `str` values are text; everything else is typed and safe."""
    if value is None:
        return ""
    if isinstance(value, Money):
        return value.render()
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.astimezone(reports.KST).strftime("%Y-%m-%d %H:%M:%S")
    return neutralise(str(value))


def csv_text(rows: Sequence[Sequence[Cell]]) -> str:
    return csv_lines([[render(value) for value in row] for row in rows])


def csv_lines(rows: Iterable[Sequence[str]]) -> str:
    """Rows of cells already rendered (by `render`) as CSV text."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


def csv_chunk(rows: Iterable[list[str]], text_cells: Sequence[int]) -> str:
    """Rows of cell strings as CSV text, the cells at `text_cells` neutralised (`render`'s rule
    for text; the others, money, times and flags, are written as they are).

    Exports write a million rows, so the usual row is joined in one go and checked once; a row
    that may need quoting or neutralising (rare: a comma or quote in a name, a negative amount)
    goes the careful way. Both give what `csv_lines` of the rendered cells gives."""
    lines = []
    for cells in rows:
        line = ",".join(cells)
        # Already a correct CSV line unless a cell holds a comma (the count), a quote or a line
        # break (it needs quoting) or starts with a formula trigger. Plain `in` tests: C speed.
        if (
            line.count(",") != len(cells) - 1
            or '"' in line
            or "\r" in line
            or "\n" in line
            or ",=" in line
            or ",+" in line
            or ",-" in line
            or ",@" in line
            or ",\t" in line
            or line.startswith(FORMULA_TRIGGERS)
        ):
            for index in text_cells:
                cells[index] = neutralise(cells[index])
            line = csv_lines([cells])[:-2]
        lines.append(line)
    lines.append("")
    return "\r\n".join(lines)


def _same(value: str | None) -> str | None:
    return value


# -- what each export contains --------------------------------------------------------------

KST_SUFFIX = {"ko": " (KST UTC+09:00)", "en": " (KST UTC+09:00)"}


@dataclass(frozen=True)
class Column:
    key: str
    ko: str
    en: str
    kst_time: bool = False

    def header(self, language: str) -> str:
        base = self.ko if language == "ko" else self.en
        return base + (KST_SUFFIX[language] if self.kst_time else "")


PAYMENT_COLUMNS = (
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("status", "상태", "status"),
    Column("paid_at", "결제시각", "paid_at", kst_time=True),
    Column("cancelled_at", "취소시각", "cancelled_at", kst_time=True),
    Column("currency", "통화", "currency"),
    Column("amount", "결제금액", "amount"),
    Column("cancel_amount", "환불금액", "refunded_amount"),
    Column("remaining", "잔액", "remaining_amount"),
    Column("pg_provider", "PG사", "pg_provider"),
    Column("pay_method", "결제수단", "pay_method"),
    Column("card_name", "카드사", "card_name"),
    Column("card_number", "카드번호(마스킹)", "card_number_masked"),
    Column("buyer_name", "구매자명", "buyer_name"),
    Column("buyer_email", "구매자 이메일", "buyer_email"),
    Column("buyer_tel", "구매자 전화번호", "buyer_phone"),
    Column("name", "주문명", "order_name"),
    Column("verified", "주문금액 일치", "matches_order"),
)
REFUND_COLUMNS = (
    Column("refund_id", "환불번호", "refund_id"),
    Column("refunded_at", "환불시각", "refunded_at", kst_time=True),
    Column("requested_at", "요청시각", "requested_at", kst_time=True),
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("status", "상태", "status"),
    Column("currency", "통화", "currency"),
    Column("amount", "환불금액", "amount"),
    Column("reason", "사유", "reason"),
    Column("requested_by", "요청자", "requested_by"),
    Column("source", "경로", "source"),
    Column("cancellation_id", "포트원 취소번호", "portone_cancellation_id"),
    Column("error_message", "오류", "error_message"),
    Column("buyer_name", "구매자명", "buyer_name"),
)
ALERT_COLUMNS = (
    Column("alert_id", "알림번호", "alert_id"),
    Column("created_at", "발생시각", "raised_at", kst_time=True),
    Column("kind", "종류", "kind"),
    Column("severity", "심각도", "severity"),
    Column("status", "상태", "status"),
    Column("imp_uid", "포트원 결제번호", "imp_uid"),
    Column("merchant_uid", "주문번호", "merchant_uid"),
    Column("db_value", "우리 기록", "db_value"),
    Column("portone_value", "포트원 기록", "portone_value"),
    Column("message", "내용", "message"),
    Column("acknowledged_by", "확인자", "acknowledged_by"),
    Column("resolved_by", "해결자", "resolved_by"),
    Column("resolution_note", "해결 메모", "resolution_note"),
    Column("updated_at", "최종변경", "updated_at", kst_time=True),
)
SUMMARY_COLUMNS = (
    Column("period", "기간(KST)", "period_kst"),
    Column("currency", "통화", "currency"),
    Column("pg_provider", "PG사", "pg_provider"),
    Column("pay_method", "결제수단", "pay_method"),
    Column("paid_count", "결제건수", "paid_count"),
    Column("gross", "결제금액", "gross"),
    Column("refund_count", "환불건수", "refund_count"),
    Column("refunds", "환불금액", "refunds"),
    Column("net", "순매출", "net"),
)
COLUMNS = {
    ExportKind.PAYMENTS: PAYMENT_COLUMNS,
    ExportKind.REFUNDS: REFUND_COLUMNS,
    ExportKind.ALERTS: ALERT_COLUMNS,
    ExportKind.SUMMARY: SUMMARY_COLUMNS,
}


def header_line(kind: ExportKind, language: str) -> str:
    return csv_text([[column.header(language) for column in COLUMNS[kind]]])


# Each export is one query and one row function. The query selects times already as KST text (the
# database formats them: `render`'s rule for a datetime, without a Python datetime per cell) and
# money as exact integer hundredths, and runs without the ORM; the row function turns a row into
# cell strings (personal data masked when asked) and `csv_chunk` neutralises the text cells. At a
# million rows this is most of an export's time, so it is written for speed (bench/export_csv.py).

RowCells: TypeAlias = Callable[[Any], list[str]]


def kst_text(column: Any, dialect: str, label: str) -> ColumnElement[str]:
    """A stored UTC time as KST text, `YYYY-MM-DD HH:MM:SS` (seconds truncated, like `render`)."""
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
    REAL, which `round` makes exact again, as `reports.minor_sum` does)."""
    return cast(func.round(column * 100), BigInteger).label(label)


def _money_cells() -> Callable[[int, str], str]:
    """`money_text` of hundredths, remembered: a fee table makes the same few amounts recur."""
    seen: dict[tuple[int, str], str] = {}

    def money(units: int, currency: str) -> str:
        key = (units, currency)
        text = seen.get(key)
        if text is None:
            text = money_text(Decimal(units).scaleb(-2), currency)
            if len(seen) < 10_000:
                seen[key] = text
        return text

    return money


def _payments_query(filters: ExportFilters, dialect: str) -> AnySelect:
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


def _payment_cells(masked: bool) -> RowCells:
    name, email, phone = (mask_name, mask_email, mask_phone) if masked else (_same, _same, _same)
    money = _money_cells()

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


def _refund_time() -> Any:
    return func.coalesce(Refund.completed_at, Refund.created_at)


def _refunds_query(filters: ExportFilters, dialect: str) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    refunded_at = _refund_time()
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


def _refund_cells(masked: bool) -> RowCells:
    name = mask_name if masked else _same
    money = _money_cells()

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


def _alerts_query(filters: ExportFilters, dialect: str) -> AnySelect:
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


def _alert_cells(masked: bool) -> RowCells:  # noqa: ARG001 - alerts hold no personal data
    def cells(row: Any) -> list[str]:
        alert_id, created_at, *texts, updated_at = row
        return [str(alert_id), created_at or "", *(value or "" for value in texts), updated_at or ""]

    return cells


_QUERIES: dict[
    ExportKind, tuple[Callable[[ExportFilters, str], AnySelect], Callable[[bool], RowCells], Sequence[int]]
] = {
    ExportKind.PAYMENTS: (_payments_query, _payment_cells, PAYMENT_TEXT_CELLS),
    ExportKind.REFUNDS: (_refunds_query, _refund_cells, REFUND_TEXT_CELLS),
    ExportKind.ALERTS: (_alerts_query, _alert_cells, ALERT_TEXT_CELLS),
}


def _summary_rows(rt: Runtime, request: ExportRequest) -> list[list[Cell]]:
    f = request.filters
    rows = reports.summary(
        rt,
        actor=request.actor,
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


# -- producing the file ---------------------------------------------------------------------


def estimate_rows(rt: Runtime, request: ExportRequest) -> int:
    """How many data rows the export would have now (one COUNT query; the summary is computed)."""
    if request.kind == ExportKind.SUMMARY:
        return len(_summary_rows(rt, request))
    query = _QUERIES[request.kind][0]
    with rt.db.read() as session:
        counted = query(request.filters, rt.db.engine.dialect.name).order_by(None).subquery()
        return int(session.scalar(select(func.count()).select_from(counted)) or 0)


def _chunks(session: Session, request: ExportRequest, chunk_rows: int) -> Generator[tuple[int, str], None, None]:
    """(rows, CSV text) per `chunk_rows` rows."""
    query, row_cells, text_cells = _QUERIES[request.kind]
    connection = session.connection()  # Core rows, no ORM: the same transaction, a fraction of the cost
    statement = query(request.filters, connection.dialect.name)
    result = connection.execution_options(yield_per=chunk_rows).execute(statement)
    cells = row_cells(request.masked)
    try:
        for partition in result.partitions():
            yield len(partition), csv_chunk(map(cells, partition), text_cells)
    finally:
        result.close()  # also when the reader stops early: frees PostgreSQL's server-side cursor


def stream(
    rt: Runtime, request: ExportRequest, *, chunk_rows: int = DEFAULT_CHUNK_ROWS, via: str = "dashboard"
) -> Iterator[str]:
    """The CSV as text chunks: BOM and header first, then one chunk per `chunk_rows` rows.

    Rows are read with `yield_per` (a server-side cursor on PostgreSQL), so memory stays at one
    chunk whatever the size. The audit entry is written when the stream ends, finished or not.
    """
    return _stream(rt, request, chunk_rows=chunk_rows, via=via, counted=[0])


def _stream(rt: Runtime, request: ExportRequest, *, chunk_rows: int, via: str, counted: list[int]) -> Iterator[str]:
    if chunk_rows < 1:
        raise InvalidRequest("chunk_rows must be at least 1")
    completed = False
    try:
        yield BOM + header_line(request.kind, request.language)
        if request.kind == ExportKind.SUMMARY:
            summary = _summary_rows(rt, request)
            for at in range(0, len(summary), chunk_rows):
                part = summary[at : at + chunk_rows]
                counted[0] += len(part)
                yield csv_text(part)
        else:
            with rt.db.read() as session, closing(_chunks(session, request, chunk_rows)) as chunks:
                for rows, text in chunks:
                    counted[0] += rows
                    yield text
        completed = True
    finally:
        _audit_export(rt, request, rows=counted[0], completed=completed, via=via)


@dataclass(frozen=True)
class ExportFile:
    data: bytes
    rows: int
    file_name: str


def build_file(rt: Runtime, request: ExportRequest, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ExportFile:
    """The whole file in memory, for the dashboard's download button (small exports only)."""
    counted = [0]
    text = "".join(_stream(rt, request, chunk_rows=chunk_rows, via="dashboard", counted=counted))
    return ExportFile(data=text.encode("utf-8"), rows=counted[0], file_name=request.file_name)


def export_bytes(rt: Runtime, request: ExportRequest, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> bytes:
    return build_file(rt, request, chunk_rows=chunk_rows).data


def _audit_export(rt: Runtime, request: ExportRequest, *, rows: int, completed: bool, via: str) -> None:
    with rt.db.write() as session:
        audit.record(
            session,
            actor=request.actor.username,
            action="export.csv",
            target=str(request.kind),
            filters=request.filters.to_dict(),
            rows=rows,
            masked=request.masked,
            completed=completed,
            via=via,
            role=str(request.actor.role),
        )
