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
the API behind a short-lived signed link (`issue_link` / `verify_link`), so the dashboard process
never holds them.
"""

from __future__ import annotations

import base64
import csv
import enum
import hashlib
import hmac
import io
import json
import time as clock
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeAlias
from urllib.parse import quote

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from services import audit, reports, users
from services.access import Actor, Permission, require
from services.errors import Forbidden, InvalidRequest, PaymentsError
from services.models import Alert, Payment, Refund, Role
from services.money import normalize
from services.runtime import Runtime

AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"
BOM = "\ufeff"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
DEFAULT_CHUNK_ROWS = 1000
LANGUAGES = ("ko", "en")
TOKEN_VERSION = 1


class ExportKind(enum.StrEnum):
    PAYMENTS = "payments"
    REFUNDS = "refunds"
    ALERTS = "alerts"
    SUMMARY = "summary"


class ExportLinkInvalid(PaymentsError):
    """The link's token is malformed or its signature does not match (HTTP 401)."""


class ExportLinkExpired(ExportLinkInvalid):
    """The link was genuine but is past its expiry (HTTP 401)."""


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


# -- cells: masking and formula neutralisation ----------------------------------------------


def neutralise(text: str) -> str:
    """A text cell Excel would read as a formula gets a leading single quote (OWASP)."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def mask_name(name: str | None) -> str | None:
    """김체카 -> 김*카, 김체 -> 김*, John Smith -> J********h."""
    if not name:
        return name
    if len(name) <= 2:
        return name[0] + "*" * (len(name) - 1) if len(name) == 2 else "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_email(email: str | None) -> str | None:
    """kim@example.com -> k**@example.com (the domain stays: it says which company, not who)."""
    if not email:
        return email
    local, at, domain = email.rpartition("@")
    if not at:
        return mask_name(email)
    return (local[:1] + "*" * max(len(local) - 1, 1)) + "@" + domain


def mask_phone(phone: str | None) -> str | None:
    """010-1234-5678 -> 010-****-5678: the first three and last four digits stay."""
    if not phone:
        return phone
    positions = [i for i, ch in enumerate(phone) if ch.isdigit()]
    keep = set(positions[:3] + positions[-4:]) if len(positions) >= 9 else set(positions[-2:])
    return "".join(ch if (not ch.isdigit() or i in keep) else "*" for i, ch in enumerate(phone))


@dataclass(frozen=True)
class Money:
    """An amount cell: written as a plain number at its currency's precision, never neutralised."""

    amount: Decimal
    currency: str

    def render(self) -> str:
        try:
            value = normalize(abs(self.amount), self.currency)
        except ValueError:
            value = abs(self.amount)
        return f"{'-' if self.amount < 0 else ''}{value:f}"


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
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([render(value) for value in row] for row in rows)
    return buffer.getvalue()


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


def _payments_query(filters: ExportFilters) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    stmt = select(
        Payment.imp_uid,
        Payment.merchant_uid,
        Payment.status,
        Payment.paid_at,
        Payment.cancelled_at,
        Payment.currency,
        Payment.amount,
        Payment.cancel_amount,
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


def _payment_row(row: Any, masked: bool) -> list[Cell]:
    cur = row.currency
    return [
        row.imp_uid,
        row.merchant_uid,
        row.status,
        row.paid_at,
        row.cancelled_at,
        cur,
        Money(row.amount, cur),
        Money(row.cancel_amount, cur),
        Money(row.amount - row.cancel_amount, cur),
        row.pg_provider,
        row.pay_method,
        row.card_name,
        row.card_number,
        mask_name(row.buyer_name) if masked else row.buyer_name,
        mask_email(row.buyer_email) if masked else row.buyer_email,
        mask_phone(row.buyer_tel) if masked else row.buyer_tel,
        row.name,
        bool(row.verified),
    ]


def _refund_time() -> Any:
    return func.coalesce(Refund.completed_at, Refund.created_at)


def _refunds_query(filters: ExportFilters) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    refunded_at = _refund_time()
    stmt = (
        select(
            Refund.id,
            Refund.completed_at,
            Refund.created_at,
            Payment.imp_uid,
            Payment.merchant_uid,
            Refund.status,
            Refund.currency,
            Refund.amount,
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


def _refund_row(row: Any, masked: bool) -> list[Cell]:
    return [
        row.id,
        row.completed_at,
        row.created_at,
        row.imp_uid,
        row.merchant_uid,
        row.status,
        row.currency,
        Money(row.amount, row.currency),
        row.reason,
        row.requested_by,
        row.source,
        row.portone_cancellation_id,
        row.error_message,
        mask_name(row.buyer_name) if masked else row.buyer_name,
    ]


def _alerts_query(filters: ExportFilters) -> AnySelect:
    first, after = reports.kst_bounds(filters.start, filters.end)
    stmt = select(
        Alert.id,
        Alert.created_at,
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
        Alert.updated_at,
    ).where(Alert.created_at >= first, Alert.created_at < after)
    if filters.status:
        stmt = stmt.where(Alert.status == filters.status)
    if filters.alert_kind:
        stmt = stmt.where(Alert.kind == filters.alert_kind)
    if filters.severity:
        stmt = stmt.where(Alert.severity == filters.severity)
    return stmt.order_by(Alert.created_at, Alert.id)


def _alert_row(row: Any, masked: bool) -> list[Cell]:  # noqa: ARG001 - alerts hold no personal data
    return list(row)


_QUERIES: dict[ExportKind, tuple[Callable[[ExportFilters], AnySelect], Callable[[Any, bool], list[Cell]]]] = {
    ExportKind.PAYMENTS: (_payments_query, _payment_row),
    ExportKind.REFUNDS: (_refunds_query, _refund_row),
    ExportKind.ALERTS: (_alerts_query, _alert_row),
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
    query, _ = _QUERIES[request.kind]
    with rt.db.read() as session:
        counted = query(request.filters).order_by(None).subquery()
        return int(session.scalar(select(func.count()).select_from(counted)) or 0)


def _chunks(session: Session, request: ExportRequest, chunk_rows: int) -> Generator[list[list[Cell]], None, None]:
    query, to_cells = _QUERIES[request.kind]
    result = session.execute(query(request.filters).execution_options(yield_per=chunk_rows))
    try:
        for partition in result.partitions():
            yield [to_cells(row, request.masked) for row in partition]
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
            with rt.db.read() as session, closing(_chunks(session, request, chunk_rows)) as parts:
                for part in parts:
                    counted[0] += len(part)
                    yield csv_text(part)
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


# -- signed links for large exports ---------------------------------------------------------


@dataclass(frozen=True)
class ExportLink:
    url: str
    token: str
    expires_at: datetime = field(compare=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(rt: Runtime, body: str) -> str:
    secret = rt.settings.export_link_secret.get_secret_value().encode()
    return _b64(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def make_token(rt: Runtime, request: ExportRequest, *, now: float | None = None) -> tuple[str, datetime]:
    issued = clock.time() if now is None else now
    expires = int(issued) + rt.settings.export_link_ttl_seconds
    payload = {
        "v": TOKEN_VERSION,
        "u": request.actor.username,
        "r": str(request.actor.role),
        "k": str(request.kind),
        "f": request.filters.to_dict(),
        "m": request.masked,
        "l": request.language,
        "exp": expires,
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(rt, body)}", datetime.fromtimestamp(expires, UTC)


def issue_link(rt: Runtime, request: ExportRequest, *, now: float | None = None) -> ExportLink:
    """A link to the API that streams this export, valid for `export_link_ttl_seconds`."""
    require(request.actor, Permission.EXPORT_MASKED if request.masked else Permission.EXPORT_UNMASKED)
    token, expires_at = make_token(rt, request, now=now)
    base = rt.settings.api_public_url.rstrip("/")
    with rt.db.write() as session:
        audit.record(
            session,
            actor=request.actor.username,
            action="export.link_issued",
            target=str(request.kind),
            filters=request.filters.to_dict(),
            masked=request.masked,
            expires_at=expires_at.isoformat(),
        )
    return ExportLink(
        url=f"{base}/api/exports/{request.kind}.csv?token={quote(token)}", token=token, expires_at=expires_at
    )


def verify_link(rt: Runtime, token: str, *, kind: str, now: float | None = None) -> ExportRequest:
    """Check a link's token for export `kind` and re-check its user as of now.

    Raises ExportLinkInvalid / ExportLinkExpired (malformed, forged, expired: 401) or Forbidden
    (another export, user gone or disabled, role changed, permission lost: 403).
    """
    body, dot, signature = (token or "").strip().partition(".")
    if not dot or not body or not signature:
        raise ExportLinkInvalid("this export link is malformed")
    try:
        expected = _sign(rt, body)
        if not hmac.compare_digest(expected.encode(), signature.encode("ascii")):
            raise ExportLinkInvalid("this export link's signature does not match")
        payload = json.loads(_unb64(body))
        if not isinstance(payload, dict) or payload.get("v") != TOKEN_VERSION:
            raise ExportLinkInvalid("this export link is of an unknown version")
        expires = int(payload["exp"])
        request = ExportRequest(
            kind=ExportKind(payload["k"]),
            filters=ExportFilters.from_dict(payload["f"]),
            actor=Actor(str(payload["u"]), Role(payload["r"])),
            masked=bool(payload["m"]),
            language=str(payload.get("l") or "ko"),
        )
    except (ValueError, KeyError, TypeError, UnicodeError, InvalidRequest) as exc:
        raise ExportLinkInvalid(f"this export link is malformed: {exc}") from None
    if (clock.time() if now is None else now) >= expires:
        raise ExportLinkExpired("this export link has expired; create a new one in the dashboard")
    if str(request.kind) != kind:
        raise Forbidden(f"this link is for the {request.kind} export, not {kind}")
    current = users.current_actor(rt, request.actor.username)  # Forbidden when gone or disabled
    if current.role != request.actor.role:
        raise Forbidden("your role changed since this link was made; create a new one")
    require(current, Permission.EXPORT_MASKED if request.masked else Permission.EXPORT_UNMASKED)
    return request
