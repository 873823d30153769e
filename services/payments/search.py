"""The payments list: filters, one search box, keyset pages and per-currency totals.

Every query is index-served, so the page stays fast at millions of payments:

- the date range (KST calendar days, turned into a half-open UTC interval) is a range on one time
  column: `started_at` (every payment, the default) or `paid_at` (only payments that were paid);
- newest-first pages walk `ix_payments_started_at_cover` (started_at, id, ...) or the paid_at
  indexes backwards from the cursor, so page 1,000 costs what page 1 costs; state, currency, PG
  and pay-method filters are checked on the index entries (all those columns are in it);
- the totals per currency read the same covering indexes (an index-only range scan), and the
  date range is capped at `MAX_RANGE_DAYS` (about a quarter), which bounds their cost;
- the search box never scans: `imp_uid` and `merchant_uid` match exactly (unique / plain index),
  buyer name, e-mail and phone match by prefix for those who see them whole (operators, admins:
  `access.sees_personal_data`) and by whole value only for viewers, who see them masked (a prefix
  search would let them recover the masked digits one guess at a time). A prefix is written as an
  index range (`>=`/`<` on SQLite's
  binary collation, the pattern operators `~>=~`/`~<~` with `varchar_pattern_ops` on PostgreSQL,
  so the result is the same whatever the database collation is). A narrow search is a UNION of
  id lookups (the few matching rows first, then ordered); a broad one is checked along the date
  range instead (see `search_condition`).

Measured at 1,000,000 payments with bench/payments_page.py (see its docstring).

Keyset cursors are opaque strings naming the sort, the time basis and the last row's key; a
cursor from another ordering is refused rather than silently misread.
"""

from __future__ import annotations

import base64
import enum
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, or_, select, union
from sqlalchemy.orm import InstrumentedAttribute, Session

from services.auth.access import Actor, Permission, require, sees_personal_data
from services.core.errors import InvalidRequest
from services.core.kst import kst_day_bounds, kst_today
from services.core.masking import mask_email, mask_phone
from services.core.models import Payment
from services.core.money import CURRENCY_EXPONENTS, minor_unit_exponent
from services.runtime import Runtime

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
DEFAULT_RANGE_DAYS = 7
MAX_RANGE_DAYS = 92  # bounds the totals' index scan; longer periods belong to reports
MAX_QUERY_LENGTH = 100

# PortOne V1 codes offered as filter choices (the list needs no query over a million rows).
PG_PROVIDERS = (
    "kcp",
    "eximbay",
    "html5_inicis",
    "tosspayments",
    "nice",
    "kicc",
    "ksnet",
    "danal_tpay",
    "kakaopay",
    "naverpay",
    "payco",
    "paypal",
)
PAY_METHODS = ("card", "trans", "vbank", "phone", "kakaopay", "naverpay", "payco", "tosspay", "paypal", "point")


class PaymentState(enum.StrEnum):
    """What ops see (dashboard.format.payment_state): PortOne's status refined by our checks."""

    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    CANCELLED = "cancelled"  # fully refunded
    FAILED = "failed"
    READY = "ready"  # virtual account issued, not yet deposited
    FORGERY = "forgery"  # paid amount or currency did not match our order (or no order of ours)


class TimeBasis(enum.StrEnum):
    STARTED = "started"  # when the payment was started: every payment, failed ones included
    PAID = "paid"  # when it was paid: only payments that were ever paid


class SortOrder(enum.StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    AMOUNT_DESC = "amount_desc"
    AMOUNT_ASC = "amount_asc"


def _choices(values: Any, allowed: Any = None, *, upper: bool = False) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        values = [values]
    cleaned = []
    for value in values:
        text = str(value).strip()
        text = text.upper() if upper else text
        if not text:
            continue
        if allowed is not None and text not in allowed:
            raise InvalidRequest(f"unknown filter value {text!r}")
        if text not in cleaned:
            cleaned.append(text)
    return tuple(cleaned)


@dataclass(frozen=True)
class PaymentFilters:
    """The payments page's filters. Dates are KST calendar days, both ends included."""

    date_from: date
    date_to: date
    time_basis: TimeBasis = TimeBasis.STARTED
    states: tuple[str, ...] = ()
    currencies: tuple[str, ...] = ()
    pg_providers: tuple[str, ...] = ()
    pay_methods: tuple[str, ...] = ()
    query: str = ""
    sort: SortOrder = SortOrder.NEWEST

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise InvalidRequest("the start date is after the end date")
        if (self.date_to - self.date_from).days + 1 > MAX_RANGE_DAYS:
            raise InvalidRequest(f"the date range is longer than {MAX_RANGE_DAYS} days")
        if len(self.query) > MAX_QUERY_LENGTH:
            raise InvalidRequest(f"the search text is longer than {MAX_QUERY_LENGTH} characters")
        if "\x00" in self.query:  # PostgreSQL cannot search for it; refused alike on SQLite
            raise InvalidRequest("the search text contains a NUL character (\\x00)")
        object.__setattr__(self, "time_basis", TimeBasis(self.time_basis))
        object.__setattr__(self, "sort", SortOrder(self.sort))
        object.__setattr__(self, "states", _choices(self.states, set(PaymentState)))
        object.__setattr__(self, "currencies", _choices(self.currencies, upper=True))
        object.__setattr__(self, "pg_providers", _choices(self.pg_providers))
        object.__setattr__(self, "pay_methods", _choices(self.pay_methods))
        object.__setattr__(self, "query", self.query.strip())

    @classmethod
    def default(cls, *, today: date | None = None, **overrides: Any) -> PaymentFilters:
        """The last seven KST days, every state, newest first."""
        last = today or kst_today()
        return cls(date_from=last - timedelta(days=DEFAULT_RANGE_DAYS - 1), date_to=last, **overrides)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        return kst_day_bounds(self.date_from, self.date_to)

    def to_dict(self, *, today: date | None = None) -> dict[str, Any]:
        """JSON-safe. A range ending today is kept as `last_days`, so a saved view keeps rolling."""
        data: dict[str, Any] = {
            "time_basis": str(self.time_basis),
            "states": list(self.states),
            "currencies": list(self.currencies),
            "pg_providers": list(self.pg_providers),
            "pay_methods": list(self.pay_methods),
            "query": self.query,
            "sort": str(self.sort),
        }
        if self.date_to == (today or kst_today()):
            data["last_days"] = (self.date_to - self.date_from).days + 1
        else:
            data["date_from"] = self.date_from.isoformat()
            data["date_to"] = self.date_to.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, today: date | None = None) -> PaymentFilters:
        """The inverse of `to_dict`; unknown keys are ignored, bad values raise InvalidRequest."""
        try:
            if "last_days" in data:
                last = today or kst_today()
                days = int(data["last_days"])
                if not 1 <= days <= MAX_RANGE_DAYS:
                    raise InvalidRequest(f"last_days must be 1 to {MAX_RANGE_DAYS}")
                first = last - timedelta(days=days - 1)
            else:
                first, last = date.fromisoformat(data["date_from"]), date.fromisoformat(data["date_to"])
            return cls(
                date_from=first,
                date_to=last,
                time_basis=TimeBasis(data.get("time_basis", TimeBasis.STARTED)),
                states=tuple(data.get("states") or ()),
                currencies=tuple(data.get("currencies") or ()),
                pg_providers=tuple(data.get("pg_providers") or ()),
                pay_methods=tuple(data.get("pay_methods") or ()),
                query=str(data.get("query") or ""),
                sort=SortOrder(data.get("sort", SortOrder.NEWEST)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"these saved filters cannot be read: {exc}") from None


@dataclass(frozen=True)
class PaymentRow:
    id: int
    imp_uid: str
    merchant_uid: str
    state: PaymentState | str
    status: str
    amount: Decimal
    cancel_amount: Decimal
    currency: str
    name: str | None
    pg_provider: str | None
    pay_method: str | None
    buyer_name: str | None
    buyer_email: str | None  # masked for viewers
    buyer_tel: str | None  # masked for viewers
    started_at: datetime | None
    paid_at: datetime | None


@dataclass(frozen=True)
class PaymentPage:
    rows: list[PaymentRow]
    next_cursor: str | None  # None: this is the last page
    masked: bool  # buyer e-mail and phone are masked for this actor


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    count: int
    paid: Decimal  # captured: payments that were paid (refunded or not)
    refunded: Decimal
    net: Decimal = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "net", self.paid - self.refunded)


@dataclass(frozen=True)
class FilterOptions:
    states: tuple[str, ...]
    currencies: tuple[str, ...]
    pg_providers: tuple[str, ...]
    pay_methods: tuple[str, ...]


# -- query building ---------------------------------------------------------------------------


def _state_condition(state: str) -> ColumnElement[bool]:
    # The state columns are in the date range's covering index: rows are filtered without a
    # table look-up (no index leads with status since migration 0005).
    status = Payment.status
    verified = Payment.verified.is_(True)
    conditions: dict[str, ColumnElement[bool]] = {
        PaymentState.PAID: and_(status == "paid", Payment.cancel_amount == 0, verified),
        PaymentState.PARTIALLY_REFUNDED: and_(status == "paid", Payment.cancel_amount > 0, verified),
        PaymentState.CANCELLED: and_(status == "cancelled", verified),
        PaymentState.FAILED: status == "failed",
        PaymentState.READY: status == "ready",
        PaymentState.FORGERY: and_(status.in_(("paid", "cancelled")), Payment.verified.is_(False)),
    }
    return conditions[state]


def _next_string(text: str) -> str | None:
    """The smallest string above every string that starts with `text` (code point order)."""
    last = ord(text[-1])
    if last >= 0x10FFFF:
        return None
    following = last + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates cannot be stored
        following = 0xE000
    return text[:-1] + chr(following)


def _prefix(column: Any, prefix: str, dialect: str) -> ColumnElement[bool]:
    upper = _next_string(prefix)
    if dialect == "postgresql":
        low = column.op("~>=~", is_comparison=True)(prefix)
        return and_(low, column.op("~<~", is_comparison=True)(upper)) if upper else low
    return and_(column >= prefix, column < upper) if upper else column >= prefix


_PHONE_LIKE = re.compile(r"^[+0-9()\- ]+$")


def _phone_variants(text: str) -> list[str]:
    """As typed, digits only, and the Korean dashed form (010-1234-5678) of a partial number."""
    digits = re.sub(r"\D", "", text)
    variants = [text, digits]
    if digits.startswith("0") and len(digits) > 3:
        if digits.startswith("02"):  # Seoul: 02-123-4567 / 02-1234-5678
            head, rest = digits[:2], digits[2:]
        else:
            head, rest = digits[:3], digits[3:]
        middle = 3 if len(digits) == len(head) + 7 else 4
        dashed = f"{head}-{rest[:middle]}" + (f"-{rest[middle:]}" if len(rest) > middle else "")
        variants.append(dashed)
    return list(dict.fromkeys(v for v in variants if v))


def search_condition(text: str, dialect: str, *, broad: bool = False, whole: bool = False) -> ColumnElement[bool]:
    """imp_uid / merchant_uid exactly; e-mail, phone and name by prefix (index ranges only), or
    by whole value only when `whole` (for actors who see them masked).

    A narrow search is `id IN (SELECT id ... UNION SELECT id ...)`: one indexed lookup per term
    finds the few matching rows first. A broad one ("010" matches most phone numbers) is plain
    OR-ed conditions checked while walking the date range, which then costs no more than the
    range itself; `is_broad` tells them apart with capped index counts.
    """
    text = text.strip()
    ids = [select(Payment.id).where(term) for term in _id_terms(text)]
    if broad:  # the exact ids stay lookups; buyer prefixes are checked on the covering index entries
        return or_(Payment.id.in_(union(*ids)), *_buyer_terms(text, dialect, walk=True, whole=whole))
    buyers = (select(Payment.id).where(term) for term in _buyer_terms(text, dialect, whole=whole))
    return Payment.id.in_(union(*ids, *buyers))


BROAD_SEARCH_ROWS = 2000


def is_broad(session: Session, text: str, dialect: str, *, whole: bool = False) -> bool:
    """More than BROAD_SEARCH_ROWS matches overall (each count stops there: index-only, cheap)."""
    total = 0
    text = text.strip()
    for term in [*_id_terms(text), *_buyer_terms(text, dialect, whole=whole)]:
        capped = select(Payment.id).where(term).limit(BROAD_SEARCH_ROWS + 1 - total).subquery()
        total += int(session.scalar(select(func.count()).select_from(capped)) or 0)
        if total > BROAD_SEARCH_ROWS:
            return True
    return False


def _id_terms(text: str) -> list[ColumnElement[bool]]:
    return [Payment.imp_uid == text, Payment.merchant_uid == text]


def _buyer_terms(text: str, dialect: str, *, walk: bool = False, whole: bool = False) -> list[ColumnElement[bool]]:
    """Prefix conditions on the buyer's e-mail, phone or name, by what `text` looks like; with
    `whole`, equality instead (the text must be the whole stored value, in one of its forms).
    `walk`: checked along the date range, so on SQLite (whose planner would otherwise pick these
    columns' own indexes) they are made non-indexable."""

    def col(column: InstrumentedAttribute[str | None]) -> Any:
        return column.concat("") if walk and dialect == "sqlite" else column

    def match(column: InstrumentedAttribute[str | None], value: str) -> ColumnElement[bool]:
        return col(column) == value if whole else _prefix(col(column), value, dialect)

    if "@" in text:
        return [match(Payment.buyer_email, v) for v in dict.fromkeys((text, text.lower()))]
    if _PHONE_LIKE.match(text) and sum(ch.isdigit() for ch in text) >= 2:
        return [match(Payment.buyer_tel, v) for v in _phone_variants(text)]
    if whole:  # an e-mail is whole only with its @
        return [match(Payment.buyer_name, text)]
    emails = [match(Payment.buyer_email, v) for v in dict.fromkeys((text, text.lower()))]
    return [match(Payment.buyer_name, text), *emails]


def _time_column(basis: TimeBasis) -> InstrumentedAttribute[datetime | None]:
    return Payment.paid_at if basis == TimeBasis.PAID else Payment.started_at


def filter_conditions(
    filters: PaymentFilters, dialect: str, *, broad: bool = False, whole: bool = False
) -> list[ColumnElement[bool]]:
    """The filters as conditions; `whole`: buyer fields match whole values only (masked actors)."""
    column = _time_column(filters.time_basis)
    start, end = filters.utc_bounds()
    conditions: list[ColumnElement[bool]] = [column >= start, column < end]
    if filters.states:
        conditions.append(or_(*(_state_condition(state) for state in filters.states)))
    if filters.currencies:
        conditions.append(Payment.currency.in_(filters.currencies))
    if filters.pg_providers:
        conditions.append(Payment.pg_provider.in_(filters.pg_providers))
    if filters.pay_methods:
        conditions.append(Payment.pay_method.in_(filters.pay_methods))
    if filters.query:
        conditions.append(search_condition(filters.query, dialect, broad=broad, whole=whole))
    return conditions


# -- cursors ------------------------------------------------------------------------------------


def _sort_column(filters: PaymentFilters) -> tuple[Any, bool]:
    """(the keyset column, descending?)"""
    if filters.sort in (SortOrder.AMOUNT_DESC, SortOrder.AMOUNT_ASC):
        return Payment.amount, filters.sort == SortOrder.AMOUNT_DESC
    return _time_column(filters.time_basis), filters.sort == SortOrder.NEWEST


def _encode_cursor(filters: PaymentFilters, value: Any, row_id: int) -> str:
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    payload = {"s": str(filters.sort), "b": str(filters.time_basis), "v": text, "i": row_id}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(filters: PaymentFilters, cursor: str) -> tuple[Any, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if payload["s"] != filters.sort or payload["b"] != filters.time_basis:
            raise InvalidRequest("this page link belongs to another sort order; start from the first page")
        row_id = int(payload["i"])
        if filters.sort in (SortOrder.AMOUNT_DESC, SortOrder.AMOUNT_ASC):
            return Decimal(str(payload["v"])), row_id
        moment = datetime.fromisoformat(str(payload["v"]))
        if moment.tzinfo is None:
            raise ValueError("naive time in cursor")
        return moment, row_id
    except InvalidRequest:
        raise
    except (ValueError, KeyError, TypeError, ArithmeticError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"this page link is not valid: {exc}") from None


def _after_cursor(column: Any, descending: bool, value: Any, row_id: int) -> ColumnElement[bool]:
    # `column <= v` alone is an index range; the OR only trims rows equal to v.
    if descending:
        return and_(column <= value, or_(column < value, Payment.id < row_id))
    return and_(column >= value, or_(column > value, Payment.id > row_id))


_ROW_COLUMNS = (
    Payment.id,
    Payment.imp_uid,
    Payment.merchant_uid,
    Payment.status,
    Payment.verified,
    Payment.amount,
    Payment.cancel_amount,
    Payment.currency,
    Payment.name,
    Payment.pg_provider,
    Payment.pay_method,
    Payment.buyer_name,
    Payment.buyer_email,
    Payment.buyer_tel,
    Payment.started_at,
    Payment.paid_at,
)


def _quantized(value: Any, currency: str) -> Decimal:
    """A database number at its currency's precision (SQLite hands sums back through a float)."""
    try:
        places = minor_unit_exponent(currency)
    except ValueError:
        places = 2
    return Decimal(str(value or 0)).quantize(Decimal(1).scaleb(-places))


def payment_state(status: str, cancel_amount: Decimal, verified: bool) -> PaymentState | str:
    if not verified and status in ("paid", "cancelled"):
        return PaymentState.FORGERY
    if status == "paid" and cancel_amount > 0:
        return PaymentState.PARTIALLY_REFUNDED
    try:
        return PaymentState(status)
    except ValueError:
        return status


def _row(values: Any, masked: bool) -> PaymentRow:
    currency = values.currency
    amount = _quantized(values.amount, currency)
    cancel = _quantized(values.cancel_amount, currency)
    return PaymentRow(
        id=values.id,
        imp_uid=values.imp_uid,
        merchant_uid=values.merchant_uid,
        state=payment_state(values.status, cancel, values.verified),
        status=values.status,
        amount=amount,
        cancel_amount=cancel,
        currency=currency,
        name=values.name,
        pg_provider=values.pg_provider,
        pay_method=values.pay_method,
        buyer_name=values.buyer_name,
        buyer_email=mask_email(values.buyer_email) if masked else values.buyer_email,
        buyer_tel=mask_phone(values.buyer_tel) if masked else values.buyer_tel,
        started_at=values.started_at,
        paid_at=values.paid_at,
    )


def page_query(
    filters: PaymentFilters, dialect: str, cursor: str | None, limit: int, *, broad: bool = False, whole: bool = False
) -> Select[*tuple[Any, ...]]:
    column, descending = _sort_column(filters)
    query = select(*_ROW_COLUMNS).where(*filter_conditions(filters, dialect, broad=broad, whole=whole))
    if cursor:
        value, row_id = _decode_cursor(filters, cursor)
        query = query.where(_after_cursor(column, descending, value, row_id))
    if descending:
        query = query.order_by(column.desc(), Payment.id.desc())
    else:
        query = query.order_by(column.asc(), Payment.id.asc())
    return query.limit(limit + 1)


def search_payments(
    rt: Runtime,
    *,
    actor: Actor,
    filters: PaymentFilters,
    cursor: str | None = None,
    limit: int = PAGE_SIZE,
) -> PaymentPage:
    """One page of payments matching `filters`, after `cursor` (None: the first page)."""
    require(actor, Permission.VIEW)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"page size must be 1 to {MAX_PAGE_SIZE}")
    masked = not sees_personal_data(actor)
    dialect = rt.db.engine.dialect.name
    with rt.db.read() as session:
        broad = bool(filters.query) and is_broad(session, filters.query, dialect, whole=masked)
        found = session.execute(page_query(filters, dialect, cursor, limit, broad=broad, whole=masked)).all()
    rows = [_row(values, masked) for values in found[:limit]]
    next_cursor = None
    if len(found) > limit:
        last = found[limit - 1]
        column, _ = _sort_column(filters)
        key = last.amount if column is Payment.amount else getattr(last, column.key)
        next_cursor = _encode_cursor(filters, key, last.id)
    return PaymentPage(rows=rows, next_cursor=next_cursor, masked=masked)


def payment_totals(rt: Runtime, *, actor: Actor, filters: PaymentFilters) -> list[CurrencyTotal]:
    """Count, paid, refunded and net per currency over everything `filters` match (all pages)."""
    require(actor, Permission.VIEW)
    whole = not sees_personal_data(actor)  # counts would tell what the rows do not show
    dialect = rt.db.engine.dialect.name
    paid = case((Payment.paid_at.is_not(None), Payment.amount), else_=0)
    with rt.db.read() as session:
        broad = bool(filters.query) and is_broad(session, filters.query, dialect, whole=whole)
        query = (
            select(Payment.currency, func.count(), func.sum(paid), func.sum(Payment.cancel_amount))
            .where(*filter_conditions(filters, dialect, broad=broad, whole=whole))
            .group_by(Payment.currency)
            .order_by(Payment.currency)
        )
        found = session.execute(query).all()
    return [
        CurrencyTotal(
            currency=currency,
            count=int(count),
            paid=_quantized(paid_sum, currency),
            refunded=_quantized(refunded_sum, currency),
        )
        for currency, count, paid_sum, refunded_sum in found
    ]


def filter_options(rt: Runtime) -> FilterOptions:
    """Choices for the filter widgets, from configuration and PortOne's codes (no table scan)."""
    currencies = tuple(sorted(set(rt.settings.fee_table) | {"KRW", "USD"}, key=_currency_order))
    return FilterOptions(
        states=tuple(PaymentState),
        currencies=currencies,
        pg_providers=PG_PROVIDERS,
        pay_methods=PAY_METHODS,
    )


def _currency_order(currency: str) -> tuple[int, str]:
    return (0 if currency == "KRW" else 1 if currency in CURRENCY_EXPONENTS else 2, currency)
