"""The reconciliation rules on hand-made facts: the engine's shortcut never hides a difference,
and the subtle rules (webhook gap, refunds in flight) judge the cases they are about."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.alerts.store import AlertKind
from services.portone.types import Cancellation, GatewayPayment, PortOneStatus
from services.reconciliation.facts import Agreement, Facts, Finding, OurDelivery, OurOrder, OurPayment, OurRefund
from services.reconciliation.rules import RULES, RuleConfig, evaluate, quick_agreement

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CFG = RuleConfig()
PAID_AT = NOW - timedelta(days=2)
AMOUNTS = st.sampled_from([Decimal(50000), Decimal(5000), Decimal("38.50"), Decimal(0)])
STATUSES = st.sampled_from(["paid", "cancelled", "failed", "ready"])
CURRENCIES = st.sampled_from(["KRW", "USD"])
MOMENTS = st.sampled_from(
    [None, PAID_AT - timedelta(minutes=5), PAID_AT, PAID_AT + timedelta(seconds=3), PAID_AT + timedelta(hours=1), NOW]
)


def _near(draw: st.DrawFn, clean: object, others: st.SearchStrategy[object]) -> object:
    """Mostly the clean value, sometimes anything: cases close to the shortcut's boundary."""
    return clean if draw(st.integers(0, 99)) < 85 else draw(others)


@st.composite
def facts(draw: st.DrawFn) -> Facts:
    clean = _clean()
    g, p, o = clean.portone, clean.ours, clean.order
    assert g is not None and p is not None and o is not None
    currency = draw(CURRENCIES)
    cancellations = tuple(
        Cancellation(cancellation_id=f"c{i}", amount=draw(AMOUNTS), cancelled_at=draw(MOMENTS), reason=None)
        for i in range(draw(st.integers(0, 2)))
    )
    portone = replace(
        g,
        status=PortOneStatus(_near(draw, "paid", STATUSES)),
        amount=_near(draw, g.amount, AMOUNTS),
        cancel_amount=_near(draw, g.cancel_amount, AMOUNTS),
        currency=_near(draw, g.currency, CURRENCIES),
        started_at=_near(draw, g.started_at, st.just(NOW - timedelta(days=5))),
        paid_at=_near(draw, g.paid_at, MOMENTS),
        cancellations=_near(draw, (), st.just(cancellations)),
    )
    ours = OurPayment(
        "imp_1",
        "m1",
        _near(draw, p.status, STATUSES),
        _near(draw, p.amount, AMOUNTS),
        _near(draw, p.cancel_amount, AMOUNTS),
        _near(draw, p.currency, st.just(currency)),
        None,
    )
    refunds = tuple(
        OurRefund(
            i,
            draw(AMOUNTS),
            draw(st.sampled_from(["succeeded", "failed", "pending", "unknown"])),
            draw(st.sampled_from(["ops", "portone"])),
            draw(st.sampled_from([None, "c0"])),
            NOW - timedelta(hours=1),
        )
        for i in range(_near(draw, 0, st.integers(1, 2)))  # type: ignore[arg-type]
    )
    deliveries = tuple(
        OurDelivery(moment, draw(st.sampled_from(["processed", "rejected"])))
        for moment in draw(st.lists(MOMENTS.filter(lambda m: m is not None), max_size=2))
    )
    return Facts(
        imp_uid="imp_1",
        ours=_near(draw, ours, st.none()),  # type: ignore[arg-type]
        order=_near(draw, o, st.sampled_from([None, OurOrder("m1", draw(AMOUNTS), currency)])),  # type: ignore[arg-type]
        portone=portone,
        portone_checked=True,
        comparable=_near(draw, True, st.just(False)),  # type: ignore[arg-type]
        refunds=refunds,
        deliveries=_near(draw, clean.deliveries, st.just(deliveries)),  # type: ignore[arg-type]
    )


@settings(max_examples=2000, deadline=None)
@given(facts())
def test_the_engines_shortcut_never_skips_a_payment_a_rule_would_flag(case: Facts) -> None:
    shortcut = quick_agreement(case, CFG)
    event(f"shortcut taken: {shortcut}")
    if shortcut:
        assert not [v for v in evaluate(case, CFG, NOW) if isinstance(v.outcome, Finding)]


def _clean(**changes: object) -> Facts:
    portone = GatewayPayment(
        imp_uid="imp_1",
        merchant_uid="m1",
        status=PortOneStatus.PAID,
        amount=Decimal(50000),
        cancel_amount=Decimal(0),
        currency="KRW",
        started_at=PAID_AT - timedelta(seconds=30),
        paid_at=PAID_AT,
    )
    base = Facts(
        imp_uid="imp_1",
        ours=OurPayment("imp_1", "m1", "paid", Decimal(50000), Decimal(0), "KRW", None),
        order=OurOrder("m1", Decimal(50000), "KRW"),
        portone=portone,
        portone_checked=True,
        deliveries=(OurDelivery(PAID_AT + timedelta(seconds=2), "processed"),),
        other_paid=(),  # the order's only paid payment
    )
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def _found(case: Facts) -> set[str]:
    return {str(v.outcome.kind) for v in evaluate(case, CFG, NOW) if isinstance(v.outcome, Finding)}


def test_a_clean_payment_agrees_with_every_rule_and_takes_the_shortcut() -> None:
    case = _clean()
    assert quick_agreement(case, CFG)
    verdicts = evaluate(case, CFG, NOW)
    assert all(isinstance(v.outcome, Agreement) for v in verdicts)
    assert len(verdicts) == len(RULES)


def test_cancels_we_sent_ourselves_need_no_webhook_but_console_cancels_do() -> None:
    assert _cancelled_by("ops") == set()
    assert _cancelled_by("portone") == {AlertKind.WEBHOOK_GAP}


def _cancelled_by(source: str) -> set[str]:
    portone = _clean().portone
    assert portone is not None
    cancelled = replace(
        portone,
        cancel_amount=Decimal(10000),
        cancellations=(Cancellation("c1", Decimal(10000), NOW - timedelta(hours=1), "환불"),),
    )
    case = _clean(
        portone=cancelled,
        ours=OurPayment("imp_1", "m1", "paid", Decimal(50000), Decimal(10000), "KRW", None),
        refunds=(OurRefund(1, Decimal(10000), "succeeded", source, "c1", NOW - timedelta(hours=1)),),
    )
    return _found(case)


def test_a_webhook_gap_waits_for_the_delay_and_a_late_verified_delivery_closes_it() -> None:
    assert _found(_clean(deliveries=())) == {AlertKind.WEBHOOK_GAP}
    portone = _clean().portone
    assert portone is not None
    recent = replace(portone, paid_at=NOW - timedelta(minutes=3))
    assert _found(_clean(portone=recent, deliveries=())) == set()  # within the delay: undecided
    late = (OurDelivery(PAID_AT + timedelta(hours=3), "processed"),)
    assert _found(_clean(deliveries=late)) == set()


def test_no_webhook_gap_is_claimed_where_the_webhook_log_was_purged() -> None:
    """Deliveries received before the purge's recorded horizon may be gone (services/system/retention.py):
    a change that old (or within the clock skew and margin of it) is undecided, never a gap; never
    purged, every change is judged however old."""
    assert CFG.webhook_log_purged_before is None
    portone = _clean().portone
    assert portone is not None
    old = replace(portone, started_at=NOW - timedelta(days=200), paid_at=NOW - timedelta(days=200))
    assert _found(_clean(portone=old, deliveries=())) == {AlertKind.WEBHOOK_GAP}  # never purged
    purged = RuleConfig(webhook_log_purged_before=NOW - timedelta(days=180))
    verdicts = evaluate(_clean(portone=old, deliveries=()), purged, NOW)
    assert AlertKind.WEBHOOK_GAP not in {v.outcome.kind for v in verdicts if v.outcome is not None}  # undecided
    kept = replace(portone, started_at=NOW - timedelta(days=170), paid_at=NOW - timedelta(days=170))
    assert AlertKind.WEBHOOK_GAP in {
        v.outcome.kind
        for v in evaluate(_clean(portone=kept, deliveries=()), purged, NOW)
        if isinstance(v.outcome, Finding)
    }
    at_the_edge = RuleConfig(webhook_log_purged_before=NOW - timedelta(days=170, minutes=30))
    assert not [
        v for v in evaluate(_clean(portone=kept, deliveries=()), at_the_edge, NOW) if isinstance(v.outcome, Finding)
    ]


def test_a_refund_in_flight_explains_portones_total_until_it_is_stale() -> None:
    portone = _clean().portone
    assert portone is not None
    applied = replace(portone, cancel_amount=Decimal(20000))
    ours = OurPayment("imp_1", "m1", "paid", Decimal(50000), Decimal(20000), "KRW", None)
    fresh = OurRefund(1, Decimal(20000), "pending", "ops", None, NOW - timedelta(seconds=30))
    stale = OurRefund(1, Decimal(20000), "pending", "ops", None, NOW - timedelta(hours=1))
    assert _found(_clean(portone=applied, ours=ours, refunds=(fresh,))) == set()
    assert _found(_clean(portone=applied, ours=ours, refunds=(stale,))) == {AlertKind.REFUND_OUTCOME_UNKNOWN}


def test_a_difference_with_our_row_newer_than_portones_answer_is_left_undecided() -> None:
    ours = OurPayment("imp_1", "m1", "cancelled", Decimal(50000), Decimal(50000), "KRW", None)
    assert _found(_clean(ours=ours)) == {AlertKind.STATUS_MISMATCH, AlertKind.REFUND_TOTAL_MISMATCH}
    assert _found(_clean(ours=ours, comparable=False)) == set()


def test_an_order_with_another_paid_payment_is_paid_twice() -> None:
    verdicts = evaluate(_clean(other_paid=("imp_0",)), CFG, NOW)
    [found] = [v for v in verdicts if isinstance(v.outcome, Finding)]
    assert found.outcome.kind == AlertKind.ORDER_PAID_TWICE and "imp_0" in found.outcome.message
    assert not [v for v in evaluate(_clean(other_paid=None), CFG, NOW) if v.outcome.kind == AlertKind.ORDER_PAID_TWICE]
