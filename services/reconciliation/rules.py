"""Reconciliation rules: what counts as a difference between our records and PortOne's.

Each rule looks at the facts about one payment (our row, its order, our refund attempts, the
webhook deliveries we received, and PortOne's record) and answers with one of

- a `Finding`: the difference exists; an alert of the rule's kind is opened (or refreshed),
- an `Agreement`: the difference is gone; an open alert of that kind is resolved with a note,
- `None`: cannot tell yet (too recent, PortOne not asked, our record newer than PortOne's answer).

The rules are pure: facts in (services.reconciliation.facts), verdicts out; they read no database
and change no payment. The same rules run in bulk (services.reconciliation.engine, a time window at
a time) and in real time for the payment at hand (services.reconciliation.realtime, while /complete
or a webhook records a payment, or a delivery is rejected). Verdicts become alerts through
services.reconciliation.alert_writer; repairs live in services.reconciliation.repair.

| kind | fires when |
|---|---|
| MISSING_IN_DB | PortOne has a (virtual account ready, paid or cancelled) payment for one of our orders and we have no row (a card window left `ready` moved no money) |
| UNKNOWN_TO_PORTONE | we have a row and PortOne, asked for it, has no such payment |
| STATUS_MISMATCH | our status differs from PortOne's |
| AMOUNT_MISMATCH | PortOne's paid amount/currency differs from the order (forgery), or our row's from PortOne's |
| REFUND_TOTAL_MISMATCH | our cancel_amount, or our settled refund attempts, do not add up to PortOne's cancel_amount |
| REFUND_OUTCOME_UNKNOWN | a refund attempt is `unknown`, or `pending` for longer than the refund lease |
| REFUND_MISMATCH | (only resolved here, raised by services.refunds.settlement) settled attempts now agree with PortOne |
| STUCK_READY | PortOne says `ready` for a virtual account (issued, not paid) for longer than the configured age |
| WEBHOOK_GAP | PortOne shows a change it notifies (paid, console cancel) and no verified webhook came after it within the delay (not judged for a change older than what the retention purge has deleted: its deliveries may be gone) |
| WEBHOOK_UNVERIFIED | the latest webhook delivery naming this payment was rejected, and no verified one came after it |
| PAYMENT_WITHOUT_ORDER | PortOne has a payment whose merchant_uid is no order of ours |
| UNSUPPORTED_CURRENCY | PortOne has a payment in a currency our fee table does not offer (recorded as given) |
| ORDER_PAID_TWICE | an order of ours has another paid payment beside this one (judged when a payment is recorded: /complete, webhooks, repairs, re-sync) |
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from services.alerts.store import AlertKind
from services.core.config import DEFAULT_FEE_TABLE, Settings
from services.core.models import RefundStatus
from services.core.money import InvalidAmount, label
from services.portone.types import GatewayPayment, PortOneStatus
from services.reconciliation.facts import (
    Agreement,
    DeliveryResult,
    Facts,
    Finding,
    OurRefund,
    RuleOutcome,
    Verdict,
)

# Defaults of the thresholds (Settings.reconcile_*, where each is explained).
STUCK_READY_HOURS = float(Settings.model_fields["reconcile_stuck_ready_hours"].default)
WEBHOOK_GAP_MINUTES = float(Settings.model_fields["reconcile_webhook_gap_minutes"].default)
WEBHOOK_CLOCK_SKEW_SECONDS = float(Settings.model_fields["reconcile_webhook_skew_seconds"].default)
MISSING_GRACE_MINUTES = float(Settings.model_fields["reconcile_missing_grace_minutes"].default)
_UNSETTLED = (RefundStatus.PENDING, RefundStatus.UNKNOWN)
# A change this close to what the purge deleted is not judged either: beside PortOne's clock skew,
# our own processes' clocks (the purge's cutoff, a receiver's received_at) may differ a little.
_PURGE_MARGIN = timedelta(hours=1)
_OUR_REFUND_SOURCES = frozenset({"ops", "api", "forgery"})  # cancels we sent ourselves: PortOne sends no webhook


@dataclass(frozen=True)
class RuleConfig:
    stuck_ready_after: timedelta = timedelta(hours=STUCK_READY_HOURS)
    webhook_gap_delay: timedelta = timedelta(minutes=WEBHOOK_GAP_MINUTES)
    webhook_clock_skew: timedelta = timedelta(seconds=WEBHOOK_CLOCK_SKEW_SECONDS)
    missing_grace: timedelta = timedelta(minutes=MISSING_GRACE_MINUTES)
    refund_pending_after: timedelta = timedelta(seconds=120)  # the refund lease: older = nobody holds it
    # Deliveries received before this may have been purged (services.reconciliation.our_side
    # webhook_log_purged_before, what the purge actually deleted; None: never purged).
    webhook_log_purged_before: datetime | None = None
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


# -- helpers --------------------------------------------------------------------------------


def _money_label(amount: Decimal, currency: str) -> str:
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
            changes.append((moment, f"recorded a cancel of {_money_label(cancellation.amount, g.currency)}"))
    return max(changes, key=lambda change: change[0]) if changes else None


# -- the rules ------------------------------------------------------------------------------


def _missing_in_db(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
        f"PortOne has a {g.status} payment of {_money_label(g.amount, g.currency)} for our order {g.merchant_uid} "
        "that we never recorded (neither /complete nor a webhook reached us)",
        db_value="no record",
        portone_value=f"{g.status} {_money_label(g.amount, g.currency)}",
    )


def _unknown_to_portone(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
    kind = AlertKind.UNKNOWN_TO_PORTONE
    p = f.ours
    if p is None or not f.portone_checked:
        return None
    if f.portone is not None:
        return Agreement(kind, "PortOne knows this payment")
    return Finding(
        kind,
        f"we hold a {p.status} payment of {_money_label(p.amount, p.currency)} that PortOne does not know",
        db_value=f"{p.status} {_money_label(p.amount, p.currency)}",
        portone_value="no such payment",
    )


def _status_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
    kind = AlertKind.STATUS_MISMATCH
    p, g = f.ours, f.portone
    if p is None or g is None:
        return None
    if p.status == g.status:
        return Agreement(kind, lambda: f"PortOne and our record both say {g.status}")
    if not f.comparable:
        return None
    return Finding(kind, f"we say {p.status}, PortOne says {g.status}", db_value=p.status, portone_value=g.status)


def _amount_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
            db_value=_money_label(o.amount, o.currency),
            portone_value=_money_label(g.amount, g.currency),
        )
    if p is not None and f.comparable and (p.amount != g.amount or p.currency != g.currency):
        return Finding(
            kind,
            "our record's amount or currency differs from PortOne's",
            db_value=_money_label(p.amount, p.currency),
            portone_value=_money_label(g.amount, g.currency),
        )
    if o is None and p is None:
        return None
    return Agreement(kind, lambda: f"amount and currency agree: {_money_label(g.amount, g.currency)}")


def _refund_total_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
    kind = AlertKind.REFUND_TOTAL_MISMATCH
    p, g = f.ours, f.portone
    if p is None or g is None:
        return None
    settled, in_flight = _ledger(f.refunds)
    record_agrees = p.cancel_amount == g.cancel_amount
    ledger_agrees = settled <= g.cancel_amount <= settled + in_flight
    if record_agrees and ledger_agrees:
        return Agreement(
            kind, lambda: f"refunded total agrees with PortOne: {_money_label(g.cancel_amount, g.currency)}"
        )
    if not f.comparable:
        return None
    ours = f"record {_money_label(p.cancel_amount, p.currency)}, refunds {_money_label(settled, p.currency)}"
    if in_flight:
        ours += f" (+{_money_label(in_flight, p.currency)} unsettled)"
    return Finding(
        kind,
        f"our refunded total differs from PortOne's cancel_amount {_money_label(g.cancel_amount, g.currency)}",
        db_value=ours,
        portone_value=_money_label(g.cancel_amount, g.currency),
    )


def _refund_outcome_unknown(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
            db_value=_money_label(total, f.ours.currency),
            portone_value=None if f.portone is None else _money_label(f.portone.cancel_amount, f.portone.currency),
        )
    if any(r.status == RefundStatus.PENDING for r in f.refunds):
        return None  # in flight right now
    return Agreement(kind, "every refund attempt has a known outcome")


def _refund_mismatch(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
    """Raised by services.refunds.settlement when an attempt cannot be matched; resolved here once it can."""
    p, g = f.ours, f.portone
    if p is None or g is None or (f.refunds and any(r.status in _UNSETTLED for r in f.refunds)):
        return None
    settled, _ = _ledger(f.refunds)
    if settled == g.cancel_amount == p.cancel_amount:
        return Agreement(AlertKind.REFUND_MISMATCH, "every refund attempt is settled and matches PortOne's total")
    return None


def _stuck_ready(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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


def _webhook_gap(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
    purged = cfg.webhook_log_purged_before
    if purged is not None and moment - cfg.webhook_clock_skew < purged + _PURGE_MARGIN:
        return None  # its deliveries may have been purged (services/system/retention.py): undecided
    verified = [d.received_at for d in f.deliveries if d.result != DeliveryResult.REJECTED]
    minutes = int(cfg.webhook_gap_delay.total_seconds() // 60)
    return Finding(
        kind,
        f"PortOne {what} at {_when(moment)} and no verified webhook reached us within {minutes} minutes: "
        "check the webhook URL and PortOne's delivery log",
        db_value=f"last verified webhook {_when(max(verified))}" if verified else "no verified webhook",
        portone_value=f"{what} at {_when(moment)}",
    )


def _webhook_unverified(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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


def _payment_without_order(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
        portone_value=f"{_money_label(source.amount, source.currency)} {source.status}",
    )


def _unsupported_currency(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
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
        db_value=None if f.ours is None else _money_label(f.ours.amount, f.ours.currency),
        portone_value=f"{_money_label(source.amount, source.currency)} {source.status}",
    )


def _order_paid_twice(f: Facts, cfg: RuleConfig, now: datetime) -> RuleOutcome | None:
    kind = AlertKind.ORDER_PAID_TWICE
    if f.other_paid is None or f.portone is None or f.order is None:
        return None
    if f.portone.status != PortOneStatus.PAID or not f.other_paid:
        return Agreement(kind, "no other paid payment of this order")
    return Finding(
        kind,
        f"order {f.order.merchant_uid} is also paid by {', '.join(f.other_paid)}: the customer paid twice; "
        "refund one of them in full",
        portone_value=f"{_money_label(f.portone.amount, f.portone.currency)} {f.portone.status}",
    )


Rule = Callable[[Facts, RuleConfig, datetime], RuleOutcome | None]
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
