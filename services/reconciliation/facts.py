"""What the reconciliation rules judge and what they answer.

Facts: one payment as we recorded it (`OurPayment`, its `OurOrder`, `OurRefund` attempts, the
webhook deliveries we received, `OurDelivery`) beside PortOne's record (`GatewayPayment`).
Answers: a `Finding` (the difference exists) or an `Agreement` (it is gone), one per rule, each
wrapped in a `Verdict` naming the payment. Plain values only: no database here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.alerts.store import AlertKind
from services.portone.types import GatewayPayment

RULE_KINDS: tuple[AlertKind, ...] = (
    AlertKind.MISSING_IN_DB,
    AlertKind.UNKNOWN_TO_PORTONE,
    AlertKind.STATUS_MISMATCH,
    AlertKind.AMOUNT_MISMATCH,
    AlertKind.REFUND_TOTAL_MISMATCH,
    AlertKind.REFUND_OUTCOME_UNKNOWN,
    AlertKind.REFUND_MISMATCH,
    AlertKind.STUCK_READY,
    AlertKind.WEBHOOK_GAP,
    AlertKind.WEBHOOK_UNVERIFIED,
    AlertKind.PAYMENT_WITHOUT_ORDER,
    AlertKind.UNSUPPORTED_CURRENCY,
    AlertKind.ORDER_PAID_TWICE,
)
ALL_KINDS = frozenset(RULE_KINDS)


# -- facts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OurPayment:
    imp_uid: str
    merchant_uid: str
    status: str
    amount: Decimal
    cancel_amount: Decimal
    currency: str
    synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class OurOrder:
    merchant_uid: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class OurRefund:
    id: int
    amount: Decimal
    status: str
    source: str
    cancellation_id: str | None
    created_at: datetime


class DeliveryResult(enum.StrEnum):
    PROCESSED = "processed"  # verified: re-fetched from PortOne and recorded
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"  # the delivery being processed right now (real-time checks)


@dataclass(frozen=True, slots=True)
class OurDelivery:
    """A webhook delivery naming the payment, as we received it (not services.webhooks' Delivery)."""

    received_at: datetime
    result: str
    detail: str | None = None


@dataclass(slots=True)
class Facts:
    """Everything the rules may look at for one payment (imp_uid None: deliveries naming none)."""

    imp_uid: str | None
    ours: OurPayment | None = None
    order: OurOrder | None = None
    portone: GatewayPayment | None = None
    portone_checked: bool = False  # PortOne was asked: `portone` None then means it has no such payment
    comparable: bool = True  # our row is not newer than PortOne's answer (else a difference may be a race)
    refunds: Sequence[OurRefund] = ()
    deliveries: Sequence[OurDelivery] = ()
    scope: frozenset[AlertKind] = ALL_KINDS
    # The order's other payments that are paid (not fully cancelled) as we recorded them; None: not
    # looked up (the rule then says nothing either way).
    other_paid: tuple[str, ...] | None = None

    @property
    def merchant_uid(self) -> str | None:
        if self.portone is not None:
            return self.portone.merchant_uid
        return self.ours.merchant_uid if self.ours is not None else None


@dataclass(frozen=True)
class Finding:
    kind: AlertKind
    message: str
    db_value: str | None = None
    portone_value: str | None = None


class Agreement:
    """The difference is gone. `note` says why; it is formatted only when an alert is resolved
    (most payments agree on every rule, and the engine judges them by the hundred thousand)."""

    __slots__ = ("_note", "kind")

    def __init__(self, kind: AlertKind, note: str | Callable[[], str]) -> None:
        self.kind = kind
        self._note = note

    @property
    def note(self) -> str:
        return self._note if isinstance(self._note, str) else self._note()

    def __repr__(self) -> str:
        return f"Agreement({self.kind!s}, {self.note!r})"


RuleOutcome = Finding | Agreement  # what one rule answers about one payment


@dataclass(frozen=True)
class Verdict:
    imp_uid: str | None
    merchant_uid: str | None
    outcome: RuleOutcome
