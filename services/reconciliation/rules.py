"""Reconciliation rules: what counts as a difference between our records and PortOne's.

Each rule looks at the facts about one payment (our row, its order, our refund attempts, the
webhook deliveries we received, and PortOne's record) and answers with one of

- a `Finding`: the difference exists; an alert of the rule's kind is opened (or refreshed),
- an `Agreement`: the difference is gone; an open alert of that kind is resolved with a note,
- `None`: cannot tell yet (too recent, PortOne not asked, our record newer than PortOne's answer).

The same rules run in bulk (services.reconciliation.engine, a time window at a time) and in real time for the
payment at hand (`check_recorded`, called while /complete or a webhook records a payment, and
`check_rejected_webhook` when a delivery is rejected). Rules never change payments; repairs live
in services.reconciliation.engine.

| kind | fires when |
|---|---|
| MISSING_IN_DB | PortOne has a (virtual account ready, paid or cancelled) payment for one of our orders and we have no row (a card window left `ready` moved no money) |
| UNKNOWN_TO_PORTONE | we have a row and PortOne, asked for it, has no such payment |
| STATUS_MISMATCH | our status differs from PortOne's |
| AMOUNT_MISMATCH | PortOne's paid amount/currency differs from the order (forgery), or our row's from PortOne's |
| REFUND_TOTAL_MISMATCH | our cancel_amount, or our settled refund attempts, do not add up to PortOne's cancel_amount |
| REFUND_OUTCOME_UNKNOWN | a refund attempt is `unknown`, or `pending` for longer than the refund lease |
| REFUND_MISMATCH | (only resolved here, raised by services.refunds.engine) settled attempts now agree with PortOne |
| STUCK_READY | PortOne says `ready` for a virtual account (issued, not paid) for longer than the configured age |
| WEBHOOK_GAP | PortOne shows a change it notifies (paid, console cancel) and no verified webhook came after it within the delay |
| WEBHOOK_UNVERIFIED | the latest webhook delivery naming this payment was rejected, and no verified one came after it |
| PAYMENT_WITHOUT_ORDER | PortOne has a payment whose merchant_uid is no order of ours |
| UNSUPPORTED_CURRENCY | PortOne has a payment in a currency our fee table does not offer (recorded as given) |
| ORDER_PAID_TWICE | an order of ours has another paid payment beside this one (judged when a payment is recorded: /complete, webhooks, repairs, re-sync) |
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.alerts.store import SEVERITY, AlertKind
from services.core.config import DEFAULT_FEE_TABLE, Settings
from services.core.models import Alert, AlertStatus, AuditEntry, Payment, RefundStatus, WebhookEvent, fit, utcnow
from services.core.money import InvalidAmount, label
from services.portone.types import GatewayPayment, PortOneStatus

if TYPE_CHECKING:
    from services.core.models import Refund
    from services.payments.sync import Applied

# Defaults of the thresholds (Settings.reconcile_*, where each is explained).
STUCK_READY_HOURS = float(Settings.model_fields["reconcile_stuck_ready_hours"].default)
WEBHOOK_GAP_MINUTES = float(Settings.model_fields["reconcile_webhook_gap_minutes"].default)
WEBHOOK_CLOCK_SKEW_SECONDS = float(Settings.model_fields["reconcile_webhook_skew_seconds"].default)
MISSING_GRACE_MINUTES = float(Settings.model_fields["reconcile_missing_grace_minutes"].default)
SQL_IN_CHUNK = 500

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
_UNSETTLED = (RefundStatus.PENDING, RefundStatus.UNKNOWN)
_OUR_REFUND_SOURCES = frozenset({"ops", "api", "forgery"})  # cancels we sent ourselves: PortOne sends no webhook


@dataclass(frozen=True)
class RuleConfig:
    stuck_ready_after: timedelta = timedelta(hours=STUCK_READY_HOURS)
    webhook_gap_delay: timedelta = timedelta(minutes=WEBHOOK_GAP_MINUTES)
    webhook_clock_skew: timedelta = timedelta(seconds=WEBHOOK_CLOCK_SKEW_SECONDS)
    missing_grace: timedelta = timedelta(minutes=MISSING_GRACE_MINUTES)
    refund_pending_after: timedelta = timedelta(seconds=120)  # the refund lease: older = nobody holds it
    currencies: frozenset[str] = frozenset(DEFAULT_FEE_TABLE)  # the fee table's: what we sell in

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleConfig:
        return cls(
            stuck_ready_after=timedelta(hours=settings.reconcile_stuck_ready_hours),
            webhook_gap_delay=timedelta(minutes=settings.reconcile_webhook_gap_minutes),
            webhook_clock_skew=timedelta(seconds=settings.reconcile_webhook_skew_seconds),
            missing_grace=timedelta(minutes=settings.reconcile_missing_grace_minutes),
            refund_pending_after=timedelta(seconds=settings.refund_lock_lease_seconds),
            currencies=frozenset(code.upper() for code in settings.fee_table),
        )


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

    @classmethod
    def of(cls, payment: Payment) -> OurPayment:
        return cls(
            payment.imp_uid,
            payment.merchant_uid,
            payment.status,
            payment.amount,
            payment.cancel_amount,
            payment.currency,
            payment.synced_at,
        )


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

    @classmethod
    def of(cls, refund: Refund) -> OurRefund:
        created = refund.created_at or utcnow()
        return cls(refund.id, refund.amount, refund.status, refund.source, refund.portone_cancellation_id, created)


class DeliveryResult(enum.StrEnum):
    PROCESSED = "processed"  # verified: re-fetched from PortOne and recorded
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"  # the delivery being processed right now (real-time checks)


@dataclass(frozen=True, slots=True)
class Delivery:
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
    deliveries: Sequence[Delivery] = ()
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


Outcome = Finding | Agreement


@dataclass(frozen=True)
class Verdict:
    imp_uid: str | None
    merchant_uid: str | None
    outcome: Outcome


# -- helpers --------------------------------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    try:
        return label(amount, currency)
    except InvalidAmount:
        return f"{amount} {currency}"


def status_time(payment: GatewayPayment) -> datetime | None:
    """The time PortOne's /payments/status listing files a payment under (its current status's)."""
    moment = {
        PortOneStatus.PAID: payment.paid_at,
        PortOneStatus.CANCELLED: payment.cancelled_at,
        PortOneStatus.FAILED: payment.failed_at,
    }.get(payment.status)
    return moment or payment.started_at


def awaits_deposit(payment: GatewayPayment) -> bool:
    """A `ready` payment is an issued virtual account waiting for its deposit only when paid by
    virtual account: otherwise it is a payment window opened and left (a card `ready`, V2 READY),
    which PortOne keeps `ready` and announces by no V1 webhook (sdk/ko/v1-sdk/javascript-sdk/payrt.md,
    opi/ko/integration/webhook/readme-v1.md)."""
    return payment.status == PortOneStatus.READY and payment.pay_method == "vbank"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_ZERO = Decimal(0)


def _ledger(refunds: Sequence[OurRefund]) -> tuple[Decimal, Decimal]:
    """(settled total, total still in flight) of our refund attempts."""
    if not refunds:
        return _ZERO, _ZERO
    settled = sum((r.amount for r in refunds if r.status == RefundStatus.SUCCEEDED), _ZERO)
    in_flight = sum((r.amount for r in refunds if r.status in _UNSETTLED), _ZERO)
    return settled, in_flight


def _notified_change(facts: Facts) -> tuple[datetime, str] | None:
    """The latest change PortOne announces by webhook: payment (paid) or a cancel made outside our API."""
    g = facts.portone
    if g is None:
        return None
    if not g.cancellations:
        return None if g.paid_at is None else (g.paid_at, "marked it paid")
    changes: list[tuple[datetime, str]] = []
    if g.paid_at is not None:
        changes.append((g.paid_at, "marked it paid"))
    ours = {r.cancellation_id for r in facts.refunds if r.source in _OUR_REFUND_SOURCES and r.cancellation_id}
    in_flight = [r.amount for r in facts.refunds if r.status in _UNSETTLED]
    for cancellation in g.cancellations:
        if cancellation.cancellation_id in ours:
            continue
        if cancellation.amount in in_flight:  # our own attempt, not yet matched to PortOne's record
            in_flight.remove(cancellation.amount)
            continue
        moment = cancellation.cancelled_at or g.cancelled_at
        if moment is not None:
            changes.append((moment, f"recorded a cancel of {_money(cancellation.amount, g.currency)}"))
    return max(changes, key=lambda change: change[0]) if changes else None


# -- the rules ------------------------------------------------------------------------------


def _missing_in_db(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    g = f.portone
    kind = AlertKind.MISSING_IN_DB
    if g is None:
        return None
    if f.ours is not None:
        return Agreement(kind, "the payment is now recorded in our database")
    if f.order is None:
        return None  # not our order: PAYMENT_WITHOUT_ORDER says so
    if g.status in (PortOneStatus.FAILED, PortOneStatus.UNKNOWN):
        return Agreement(kind, lambda: f"PortOne now says {g.status}: no money moved")
    if g.status == PortOneStatus.READY and not awaits_deposit(g):
        return Agreement(kind, "a payment window opened and left: no money moved, nothing to wait for")
    moment = status_time(g)
    if moment is not None and moment > now - cfg.missing_grace:
        return None
    return Finding(
        kind,
        f"PortOne has a {g.status} payment of {_money(g.amount, g.currency)} for our order {g.merchant_uid} "
        "that we never recorded (neither /complete nor a webhook reached us)",
        db_value="no record",
        portone_value=f"{g.status} {_money(g.amount, g.currency)}",
    )


def _unknown_to_portone(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.UNKNOWN_TO_PORTONE
    p = f.ours
    if p is None or not f.portone_checked:
        return None
    if f.portone is not None:
        return Agreement(kind, "PortOne knows this payment")
    return Finding(
        kind,
        f"we hold a {p.status} payment of {_money(p.amount, p.currency)} that PortOne does not know",
        db_value=f"{p.status} {_money(p.amount, p.currency)}",
        portone_value="no such payment",
    )


def _status_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.STATUS_MISMATCH
    p, g = f.ours, f.portone
    if p is None or g is None:
        return None
    if p.status == g.status:
        return Agreement(kind, lambda: f"PortOne and our record both say {g.status}")
    if not f.comparable:
        return None
    return Finding(kind, f"we say {p.status}, PortOne says {g.status}", db_value=p.status, portone_value=g.status)


def _amount_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.AMOUNT_MISMATCH
    g, o, p = f.portone, f.order, f.ours
    if g is None:
        return None
    money_moved = g.status in (PortOneStatus.PAID, PortOneStatus.CANCELLED)
    if o is not None and money_moved and (g.amount != o.amount or g.currency != o.currency):
        tail = "cancelled at PortOne" if g.status == PortOneStatus.CANCELLED else "still paid at PortOne"
        return Finding(
            kind,
            f"paid amount or currency differs from the order: {tail}",
            db_value=_money(o.amount, o.currency),
            portone_value=_money(g.amount, g.currency),
        )
    if p is not None and f.comparable and (p.amount != g.amount or p.currency != g.currency):
        return Finding(
            kind,
            "our record's amount or currency differs from PortOne's",
            db_value=_money(p.amount, p.currency),
            portone_value=_money(g.amount, g.currency),
        )
    if o is None and p is None:
        return None
    return Agreement(kind, lambda: f"amount and currency agree: {_money(g.amount, g.currency)}")


def _refund_total_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.REFUND_TOTAL_MISMATCH
    p, g = f.ours, f.portone
    if p is None or g is None:
        return None
    settled, in_flight = _ledger(f.refunds)
    record_agrees = p.cancel_amount == g.cancel_amount
    ledger_agrees = settled <= g.cancel_amount <= settled + in_flight
    if record_agrees and ledger_agrees:
        return Agreement(kind, lambda: f"refunded total agrees with PortOne: {_money(g.cancel_amount, g.currency)}")
    if not f.comparable:
        return None
    ours = f"record {_money(p.cancel_amount, p.currency)}, refunds {_money(settled, p.currency)}"
    if in_flight:
        ours += f" (+{_money(in_flight, p.currency)} unsettled)"
    return Finding(
        kind,
        f"our refunded total differs from PortOne's cancel_amount {_money(g.cancel_amount, g.currency)}",
        db_value=ours,
        portone_value=_money(g.cancel_amount, g.currency),
    )


def _refund_outcome_unknown(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.REFUND_OUTCOME_UNKNOWN
    if f.ours is None:
        return None
    if not f.refunds:
        return Agreement(kind, "every refund attempt has a known outcome")
    stale = now - cfg.refund_pending_after
    unsettled = [
        r
        for r in f.refunds
        if r.status == RefundStatus.UNKNOWN or (r.status == RefundStatus.PENDING and r.created_at < stale)
    ]
    if unsettled:
        ids = ", ".join(f"#{r.id}" for r in unsettled)
        total = sum((r.amount for r in unsettled), Decimal(0))
        return Finding(
            kind,
            f"refund attempt {ids} has no known outcome: settle it from PortOne's cancel history, never resend",
            db_value=_money(total, f.ours.currency),
            portone_value=None if f.portone is None else _money(f.portone.cancel_amount, f.portone.currency),
        )
    if any(r.status == RefundStatus.PENDING for r in f.refunds):
        return None  # in flight right now
    return Agreement(kind, "every refund attempt has a known outcome")


def _refund_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    """Raised by services.refunds.engine when an attempt cannot be matched; resolved here once it can."""
    p, g = f.ours, f.portone
    if p is None or g is None or (f.refunds and any(r.status in _UNSETTLED for r in f.refunds)):
        return None
    settled, _ = _ledger(f.refunds)
    if settled == g.cancel_amount == p.cancel_amount:
        return Agreement(AlertKind.REFUND_MISMATCH, "every refund attempt is settled and matches PortOne's total")
    return None


def _stuck_ready(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.STUCK_READY
    g = f.portone
    if g is None:
        return None
    if g.status != PortOneStatus.READY:
        return Agreement(kind, lambda: f"no longer waiting for a deposit: PortOne says {g.status}")
    if not awaits_deposit(g):
        return Agreement(kind, "a payment window opened and left, not a virtual account: no deposit to wait for")
    if g.started_at is None or g.started_at > now - cfg.stuck_ready_after:
        return None
    hours = int(cfg.stuck_ready_after.total_seconds() // 3600)
    return Finding(
        kind,
        f"virtual account issued {_when(g.started_at)} and still unpaid after more than {hours} hours",
        db_value=None if f.ours is None else f.ours.status,
        portone_value=f"ready since {_when(g.started_at)}",
    )


def _webhook_gap(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.WEBHOOK_GAP
    if f.portone is None:
        return None
    change = _notified_change(f)
    if change is None:
        return Agreement(kind, "PortOne shows no change it announces by webhook")
    moment, what = change
    told = [
        d
        for d in f.deliveries
        if d.result != DeliveryResult.REJECTED and d.received_at >= moment - cfg.webhook_clock_skew
    ]
    if told:
        return Agreement(kind, lambda: f"a verified webhook told us after PortOne {what}")
    if now < moment + cfg.webhook_gap_delay:
        return None
    verified = [d.received_at for d in f.deliveries if d.result != DeliveryResult.REJECTED]
    minutes = int(cfg.webhook_gap_delay.total_seconds() // 60)
    return Finding(
        kind,
        f"PortOne {what} at {_when(moment)} and no verified webhook reached us within {minutes} minutes: "
        "check the webhook URL and PortOne's delivery log",
        db_value=f"last verified webhook {_when(max(verified))}" if verified else "no verified webhook",
        portone_value=f"{what} at {_when(moment)}",
    )


def _webhook_unverified(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.WEBHOOK_UNVERIFIED
    rejected = [d for d in f.deliveries if d.result == DeliveryResult.REJECTED]
    if not rejected:
        # Deliveries naming no payment are only ever seen a window at a time: never "gone".
        return None if f.imp_uid is None else Agreement(kind, "no rejected delivery names this payment")
    last = max(rejected, key=lambda d: d.received_at)
    if f.imp_uid is not None and any(
        d.result != DeliveryResult.REJECTED and d.received_at >= last.received_at for d in f.deliveries
    ):
        return Agreement(kind, "a later delivery for this payment was verified")
    who = "naming no payment" if f.imp_uid is None else "for this payment"
    return Finding(
        kind,
        f"{len(rejected)} webhook deliver{'y' if len(rejected) == 1 else 'ies'} {who} failed verification, "
        f"the last at {_when(last.received_at)}: "
        f"{last.detail or 'rejected'}",
        db_value=f"{len(rejected)} rejected",
        portone_value="no such payment" if f.portone_checked and f.portone is None and f.imp_uid else None,
    )


def _payment_without_order(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.PAYMENT_WITHOUT_ORDER
    source = f.portone or f.ours
    if source is None:
        return None
    if f.order is not None:
        order = f.order
        return Agreement(kind, lambda: f"order {order.merchant_uid} exists")
    return Finding(
        kind,
        f"PortOne has a payment for merchant_uid {source.merchant_uid!r}, which is not our order",
        portone_value=f"{_money(source.amount, source.currency)} {source.status}",
    )


def _unsupported_currency(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.UNSUPPORTED_CURRENCY
    source = f.portone or f.ours
    if source is None:
        return None
    if source.currency.upper() in cfg.currencies:
        return Agreement(kind, lambda: f"{source.currency} is a currency we offer")
    return Finding(
        kind,
        f"PortOne has a payment in {source.currency!r}, a currency we do not offer "
        f"(merchant_uid {source.merchant_uid!r}): recorded as PortOne gave it",
        db_value=None if f.ours is None else _money(f.ours.amount, f.ours.currency),
        portone_value=f"{_money(source.amount, source.currency)} {source.status}",
    )


def _order_paid_twice(f: Facts, cfg: RuleConfig, now: datetime) -> Outcome | None:
    kind = AlertKind.ORDER_PAID_TWICE
    if f.other_paid is None or f.portone is None or f.order is None:
        return None
    if f.portone.status != PortOneStatus.PAID or not f.other_paid:
        return Agreement(kind, "no other paid payment of this order")
    return Finding(
        kind,
        f"order {f.order.merchant_uid} is also paid by {', '.join(f.other_paid)}: the customer paid twice; "
        "refund one of them in full",
        portone_value=f"{_money(f.portone.amount, f.portone.currency)} {f.portone.status}",
    )


Rule = Callable[[Facts, RuleConfig, datetime], Outcome | None]
RULES: tuple[tuple[AlertKind, Rule], ...] = (
    (AlertKind.MISSING_IN_DB, _missing_in_db),
    (AlertKind.UNKNOWN_TO_PORTONE, _unknown_to_portone),
    (AlertKind.STATUS_MISMATCH, _status_mismatch),
    (AlertKind.AMOUNT_MISMATCH, _amount_mismatch),
    (AlertKind.REFUND_TOTAL_MISMATCH, _refund_total_mismatch),
    (AlertKind.REFUND_OUTCOME_UNKNOWN, _refund_outcome_unknown),
    (AlertKind.REFUND_MISMATCH, _refund_mismatch),
    (AlertKind.STUCK_READY, _stuck_ready),
    (AlertKind.WEBHOOK_GAP, _webhook_gap),
    (AlertKind.WEBHOOK_UNVERIFIED, _webhook_unverified),
    (AlertKind.PAYMENT_WITHOUT_ORDER, _payment_without_order),
    (AlertKind.UNSUPPORTED_CURRENCY, _unsupported_currency),
    (AlertKind.ORDER_PAID_TWICE, _order_paid_twice),
)


def evaluate(facts: Facts, cfg: RuleConfig, now: datetime, open_kinds: Container[str] | None = None) -> list[Verdict]:
    """Every rule in the facts' scope, on one payment. With `open_kinds` (the kinds of this
    payment's open alerts), agreements that would resolve nothing are left out."""
    verdicts = []
    merchant_uid = facts.merchant_uid
    for kind, rule in RULES:
        if kind not in facts.scope:
            continue
        outcome = rule(facts, cfg, now)
        if outcome is None or (open_kinds is not None and type(outcome) is Agreement and kind not in open_kinds):
            continue
        verdicts.append(Verdict(facts.imp_uid, merchant_uid, outcome))
    return verdicts


def quick_agreement(f: Facts, cfg: RuleConfig) -> bool:
    """A shortcut for the common case (paid or failed, no refund, webhook on time): True only when
    no rule can find a difference, so a payment with no open alert need not be judged rule by rule.

    Conservative by construction; tests/services/reconciliation/test_rules.py checks it against the rules.
    """
    p, g, o = f.ours, f.portone, f.order
    if p is None or g is None or o is None or f.refunds or not f.comparable or f.imp_uid is None:
        return False
    status = g.status
    if p.status != status or (status != PortOneStatus.PAID and status != PortOneStatus.FAILED):
        return False
    if g.cancel_amount or p.cancel_amount or g.cancellations:
        return False
    if p.amount != g.amount or p.currency != g.currency or o.amount != g.amount or o.currency != g.currency:
        return False
    if g.currency not in cfg.currencies:
        return False
    told: datetime | None = None
    for delivery in f.deliveries:
        if delivery.result == DeliveryResult.REJECTED:
            return False
        if told is None or delivery.received_at > told:
            told = delivery.received_at
    return g.paid_at is None or (told is not None and told >= g.paid_at - cfg.webhook_clock_skew)


def is_difference(facts: Facts, verdicts: Sequence[Verdict]) -> bool:
    """Whether these verdicts include a record-against-PortOne difference worth a second look."""
    if facts.comparable and not verdicts:
        return False
    return not facts.comparable or any(
        isinstance(v.outcome, Finding) and v.outcome.kind in _RECHECKED for v in verdicts
    )


_RECHECKED = frozenset(
    {
        AlertKind.MISSING_IN_DB,
        AlertKind.STATUS_MISMATCH,
        AlertKind.AMOUNT_MISMATCH,
        AlertKind.REFUND_TOTAL_MISMATCH,
        AlertKind.WEBHOOK_GAP,
    }
)


# -- writing alerts -------------------------------------------------------------------------


_ATTRIBUTION: ContextVar[tuple[str, str] | None] = ContextVar("reconcile_attribution", default=None)


@contextmanager
def attributed_to(actor: str, where: str) -> Iterator[None]:
    """Alerts resolved inside this block (also by the real-time hook) name this actor and place."""
    token = _ATTRIBUTION.set((actor, where))
    try:
        yield
    finally:
        _ATTRIBUTION.reset(token)


class _OpenAlert(NamedTuple):
    id: int
    message: str
    db_value: str | None
    portone_value: str | None


@dataclass
class WriteResult:
    found: Counter[str] = field(default_factory=Counter)
    found_keys: set[tuple[str, str | None]] = field(default_factory=set)
    new: Counter[str] = field(default_factory=Counter)
    resolved: Counter[str] = field(default_factory=Counter)
    open_ids: dict[tuple[str, str | None], int] = field(default_factory=dict)  # the alert of each finding


def _chunks(items: Sequence[Any], size: int = SQL_IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _open_alerts(
    session: Session, imp_uids: set[str | None], *, load_all: bool
) -> dict[tuple[str, str | None], _OpenAlert]:
    columns = select(Alert.id, Alert.kind, Alert.imp_uid, Alert.message, Alert.db_value, Alert.portone_value).where(
        Alert.status != AlertStatus.RESOLVED, Alert.kind.in_([str(k) for k in RULE_KINDS])
    )
    statements = []
    if load_all:
        statements.append(columns)
    else:
        named = sorted(uid for uid in imp_uids if uid is not None)
        statements.extend(columns.where(Alert.imp_uid.in_(chunk)) for chunk in _chunks(named))
        if None in imp_uids:
            statements.append(columns.where(Alert.imp_uid.is_(None)))
    found: dict[tuple[str, str | None], _OpenAlert] = {}
    for statement in statements:
        for row in session.execute(statement):
            if load_all and row.imp_uid not in imp_uids:
                continue
            found[(row.kind, row.imp_uid)] = _OpenAlert(row.id, row.message, row.db_value, row.portone_value)
    return found


def write_verdicts(
    session: Session,
    verdicts: Sequence[Verdict],
    *,
    actor: str,
    where: str,
    run_id: int | None = None,
    load_all_open: bool = False,
) -> WriteResult:
    """Open, refresh and resolve alerts for these verdicts, in bulk, in the caller's transaction.

    One open alert per (kind, imp_uid): a finding refreshes the open one, an agreement resolves it.
    New and resolved alerts are written to the audit log.
    """
    latest: dict[tuple[str, str | None], Verdict] = {}
    for verdict in verdicts:
        latest[(str(verdict.outcome.kind), verdict.imp_uid)] = verdict
    result = WriteResult()
    if not latest:
        return result
    existing = _open_alerts(session, {uid for _, uid in latest}, load_all=load_all_open)
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    resolves: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    detail = {"run_id": run_id} if run_id is not None else {}
    for key, verdict in latest.items():
        kind, imp_uid = key
        outcome = verdict.outcome
        current = existing.get(key)
        if isinstance(outcome, Finding):
            result.found[kind] += 1
            result.found_keys.add(key)
            values = {"message": outcome.message, "db_value": outcome.db_value, "portone_value": outcome.portone_value}
            if current is None:
                inserts.append(
                    {
                        "kind": kind,
                        "severity": SEVERITY[outcome.kind],
                        "imp_uid": imp_uid,
                        "merchant_uid": fit(Alert.__table__.c.merchant_uid, verdict.merchant_uid),
                        "status": AlertStatus.OPEN,
                        "created_at": now,
                        "updated_at": now,
                        **values,
                    }
                )
            else:
                result.open_ids[key] = current.id
                if (current.message, current.db_value, current.portone_value) != tuple(values.values()):
                    updates.append({"id": current.id, "updated_at": now, **values})
        elif current is not None:
            note = f"{outcome.note} — resolved automatically ({where})"
            resolves.append(
                {
                    "id": current.id,
                    "status": AlertStatus.RESOLVED,
                    "resolved_by": actor,
                    "resolution_note": note,
                    "updated_at": now,
                }
            )
            result.resolved[kind] += 1
            audits.append(
                {
                    "actor": actor,
                    "action": "alert.resolved",
                    "target": imp_uid,
                    "at": now,
                    "detail": {"alert_id": current.id, "kind": kind, "note": note, **detail},
                }
            )
    if inserts:
        created, opened_meanwhile = _insert_alerts(session, inserts)
        for row, alert_id in opened_meanwhile:
            result.open_ids[(row["kind"], row["imp_uid"])] = alert_id
            updates.append(
                {"id": alert_id, **{k: row[k] for k in ("updated_at", "message", "db_value", "portone_value")}}
            )
        for row, alert_id in created:
            result.new[row["kind"]] += 1
            result.open_ids[(row["kind"], row["imp_uid"])] = alert_id
            audits.append(
                {
                    "actor": "system",
                    "action": "alert.raised",
                    "target": row["imp_uid"],
                    "at": now,
                    "detail": {"alert_id": alert_id, "kind": row["kind"], "found_by": where, **detail},
                }
            )
    if updates:
        session.execute(update(Alert), updates)
    if resolves:
        session.execute(update(Alert), resolves)
    if audits:
        session.execute(insert(AuditEntry), audits)
    return result


def _insert_alerts(
    session: Session, rows: list[dict[str, Any]]
) -> tuple[list[tuple[dict[str, Any], int]], list[tuple[dict[str, Any], int]]]:
    """Insert new open alerts: (created, opened meanwhile by a concurrent transaction).

    On PostgreSQL two transactions may both find no open alert and both insert one: the loser's
    insert violates the one-open-alert index, and it refreshes the winner's alert instead.
    """
    try:
        with session.begin_nested():
            ids = session.scalars(insert(Alert).returning(Alert.id, sort_by_parameter_order=True), rows).all()
        return list(zip(rows, ids, strict=True)), []
    except IntegrityError:
        pass
    created, opened_meanwhile = [], []
    for row in rows:
        try:
            with session.begin_nested():
                created.append((row, int(session.scalar(insert(Alert).values(**row).returning(Alert.id)) or 0)))
        except IntegrityError:
            open_id = session.scalar(
                select(Alert.id).where(
                    Alert.kind == row["kind"], Alert.imp_uid == row["imp_uid"], Alert.status != AlertStatus.RESOLVED
                )
            )
            if open_id is None:
                raise
            opened_meanwhile.append((row, open_id))
    return created, opened_meanwhile


# -- real-time checks -----------------------------------------------------------------------


def load_deliveries(session: Session, imp_uids: Sequence[str]) -> dict[str, list[Delivery]]:
    """The verified and rejected webhook deliveries naming these payments."""
    found: dict[str, list[Delivery]] = {}
    for chunk in _chunks(list(imp_uids)):
        rows = session.execute(
            select(WebhookEvent.imp_uid, WebhookEvent.received_at, WebhookEvent.result, WebhookEvent.detail).where(
                WebhookEvent.imp_uid.in_(chunk),
                WebhookEvent.result.in_([DeliveryResult.PROCESSED, DeliveryResult.REJECTED]),
            )
        )
        for imp_uid, received_at, outcome, text in rows:
            if imp_uid is not None:
                found.setdefault(imp_uid, []).append(Delivery(received_at, outcome, text))
    return found


def _attribution(default_where: str) -> tuple[str, str]:
    return _ATTRIBUTION.get() or ("system", default_where)


def check_recorded(
    session: Session, fetched: GatewayPayment, applied: Applied, *, source: str, settings: Settings
) -> None:
    """Run every rule on a payment just recorded from PortOne (inside the recording transaction)."""
    check_recorded_many(session, [(fetched, applied)], source=source, settings=settings)


def check_recorded_many(
    session: Session, recorded: Sequence[tuple[GatewayPayment, Applied]], *, source: str, settings: Settings
) -> None:
    """Run every rule on payments just recorded from PortOne, in the recording transaction.

    Our rows were just copied from PortOne's answers, so a record-against-PortOne difference here
    can only be a stale answer racing a newer one: such rules only ever resolve in real time.
    """
    if not recorded:
        return
    deliveries_by_uid = load_deliveries(session, [fetched.imp_uid for fetched, _ in recorded])
    # Only a paid payment can make its order paid twice; the others agree without a look-up.
    paid_by_order = _paid_payments_by_order(
        session, {applied.payment.merchant_uid for fetched, applied in recorded if fetched.status == PortOneStatus.PAID}
    )
    cfg = RuleConfig.from_settings(settings)
    now = utcnow()
    verdicts: list[Verdict] = []
    for fetched, applied in recorded:
        payment = applied.payment
        ours = OurPayment.of(payment)
        deliveries = list(deliveries_by_uid.get(fetched.imp_uid, []))
        if source == "webhook":
            deliveries.append(Delivery(now, DeliveryResult.IN_PROGRESS))
        same = (ours.status, ours.cancel_amount, ours.amount, ours.currency) == (
            fetched.status,
            fetched.cancel_amount,
            fetched.amount,
            fetched.currency,
        )
        order = applied.order
        facts = Facts(
            imp_uid=fetched.imp_uid,
            ours=ours,
            order=None if order is None else OurOrder(order.merchant_uid, order.amount, order.currency),
            portone=fetched,
            portone_checked=True,
            comparable=same,
            refunds=tuple(OurRefund.of(r) for r in payment.refunds),
            deliveries=tuple(deliveries),
            other_paid=tuple(uid for uid in paid_by_order.get(payment.merchant_uid, ()) if uid != fetched.imp_uid),
        )
        verdicts.extend(evaluate(facts, cfg, now))
    actor, where = _attribution(f"real-time check on {source}")
    write_verdicts(session, verdicts, actor=actor, where=where)


def _paid_payments_by_order(session: Session, merchant_uids: set[str]) -> dict[str, list[str]]:
    """The imp_uids of each order's paid (not fully cancelled) payments, as we recorded them."""
    found: dict[str, list[str]] = {}
    for chunk in _chunks(sorted(uid for uid in merchant_uids if uid)):
        rows = session.execute(
            select(Payment.merchant_uid, Payment.imp_uid).where(
                Payment.merchant_uid.in_(chunk), Payment.status == PortOneStatus.PAID
            )
        )
        for merchant_uid, imp_uid in rows:
            found.setdefault(merchant_uid, []).append(imp_uid)
    return found


def check_rejected_webhook(session: Session, event: WebhookEvent) -> None:
    """A webhook delivery was rejected: open (or refresh) the WEBHOOK_UNVERIFIED alert it belongs to."""
    rejected = Delivery(event.received_at or utcnow(), DeliveryResult.REJECTED, event.detail)
    if event.imp_uid is None:
        deliveries: list[Delivery] = [rejected]
    else:
        deliveries = load_deliveries(session, [event.imp_uid]).get(event.imp_uid, [])
        if not any(d.result == DeliveryResult.REJECTED and d.received_at == rejected.received_at for d in deliveries):
            deliveries.append(rejected)
    facts = Facts(imp_uid=event.imp_uid, deliveries=tuple(deliveries), scope=frozenset({AlertKind.WEBHOOK_UNVERIFIED}))
    verdicts = evaluate(facts, RuleConfig(), utcnow())
    actor, where = _attribution("real-time check on a rejected webhook")
    write_verdicts(session, verdicts, actor=actor, where=where)
