"""Frozen dataclasses that carry PortOne's answers into our code; no HTTP or SDK type leaks past them."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from services.core.errors import UnreadableAnswer
from services.portone.banks import RefundAccount

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_text(value: str) -> str:
    """Text others send us as our databases can hold it: NUL (which PostgreSQL refuses) and lone
    surrogates (a JSON "\\ud800", which no UTF-8 database takes) become U+FFFD. Buyers type
    PortOne's buyer fields at checkout and anyone can post a webhook, so they may hold anything;
    one odd character must not stop a payment, a delivery, or the batch it is written with."""
    return _UNSTORABLE.sub("\ufffd", value)


class PortOneStatus(enum.StrEnum):
    READY = "ready"
    PAID = "paid"
    CANCELLED = "cancelled"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> PortOneStatus:
        try:
            return cls(str(value))
        except ValueError:
            return cls.UNKNOWN


class CancellationState(enum.StrEnum):
    """A cancellation's own status (V2: PortOne may finish a cancel later, or refuse it)."""

    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Cancellation:
    cancellation_id: str
    amount: Decimal
    cancelled_at: datetime | None
    reason: str | None
    pg_tid: str | None = None
    receipt_url: str | None = None


@dataclass(frozen=True)
class GatewayPayment:
    imp_uid: str
    merchant_uid: str
    status: PortOneStatus
    amount: Decimal
    cancel_amount: Decimal
    currency: str
    name: str | None = None
    pg_provider: str | None = None
    pay_method: str | None = None
    card_name: str | None = None
    card_number: str | None = None
    buyer_name: str | None = None
    buyer_email: str | None = None
    buyer_tel: str | None = None
    receipt_url: str | None = None
    fail_reason: str | None = None
    started_at: datetime | None = None
    paid_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    # An escrow payment (V1 PaymentAnnotation `escrow`; V2 the payment's `escrow` object, present
    # only for one): PortOne cancels it in full only (services.refunds.full_only).
    escrow: bool = False
    cancellations: tuple[Cancellation, ...] = ()  # the cancellations that succeeded (money returned)
    # Every cancellation PortOne lists, by id, with its own status (V2 lists requested and failed
    # ones too, on a partly or fully cancelled payment; V1 cancels are synchronous: empty).
    cancellation_states: Mapping[str, CancellationState] = field(default_factory=dict, compare=False, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cancellable_amount(self) -> Decimal:
        return self.amount - self.cancel_amount


@dataclass(frozen=True)
class PaymentPage:
    payments: tuple[GatewayPayment, ...]
    total: int
    next_page: int | None
    # Rows PortOne listed that lack what a payment is read from: (its id if it has one, why).
    # One unreadable row never hides the readable rows beside it.
    unreadable: tuple[tuple[str | None, str], ...] = ()


def parse_rows(
    rows: Iterable[object], parse: Callable[[Any], GatewayPayment], id_field: str
) -> tuple[tuple[GatewayPayment, ...], tuple[tuple[str | None, str], ...]]:
    """Each listed row parsed on its own: (readable payments, unreadable rows with their ids)."""
    payments: list[GatewayPayment] = []
    unreadable: list[tuple[str | None, str]] = []
    for row in rows:
        try:
            payments.append(parse(row))
        except UnreadableAnswer as exc:
            ident = row.get(id_field) if isinstance(row, dict) else None
            unreadable.append((storable_text(ident) if isinstance(ident, str) and ident else None, str(exc)))
    return tuple(payments), tuple(unreadable)


@dataclass(frozen=True)
class Prepared:
    merchant_uid: str
    amount: Decimal
    currency: str | None


class PortOneGateway(Protocol):
    """What our services need from PortOne, whichever API version serves it."""

    def get_payment(self, imp_uid: str) -> GatewayPayment: ...

    def get_payments(self, imp_uids: Sequence[str]) -> list[GatewayPayment]: ...

    def find_by_merchant_uid(self, merchant_uid: str) -> GatewayPayment: ...

    def list_payments(
        self,
        *,
        status: str = "all",
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        limit: int = 1000,
        sorting: str = "-started",
    ) -> PaymentPage: ...

    def cancel_payment(
        self,
        *,
        imp_uid: str,
        amount: Decimal | None,
        checksum: Decimal,
        reason: str,
        refund_account: RefundAccount | None = None,
        pg_provider: str | None = None,
    ) -> GatewayPayment:
        """`refund_account`: where a virtual-account payment is paid back (V1 refund_holder/_bank/
        _account, V2 refundAccount; opi/ko/integration/cancel/v1/basic.md); `pg_provider`: the payment's PG,
        which decides how V1 writes the bank code (opi/ko/support/code-info/pg-1.md)."""
        ...

    def prepare(self, *, merchant_uid: str, amount: Decimal, currency: str) -> Prepared: ...

    def get_prepared(self, merchant_uid: str) -> Prepared: ...

    def close(self) -> None: ...
