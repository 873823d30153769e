"""Reconciliation: a planted scenario with every kind of difference (KRW and USD), found exactly
once by a run, repaired where PortOne is the source of truth, and quiet on the next run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update

from services.alerts.store import AlertKind
from services.auth.access import Actor
from services.core.errors import Conflict, Forbidden
from services.core.models import (
    Alert,
    AlertStatus,
    AuditEntry,
    Order,
    Payment,
    Refund,
    RefundStatus,
    Role,
    WebhookEvent,
    utcnow,
)
from services.payments.verification import verify_payment
from services.reconciliation.engine import EngineOptions, RunProgress, start_run
from services.reconciliation.repair import repair
from services.reconciliation.runs import list_runs
from services.refunds.engine import refund
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl

FEE = {"KRW": Decimal("50000"), "USD": Decimal("38.50")}
K = AlertKind


@dataclass
class Scenario:
    uids: dict[str, str] = field(default_factory=dict)  # label -> imp_uid
    expected: set[tuple[str, str | None]] = field(default_factory=set)  # (kind, imp_uid) a run must find
    repaired: set[tuple[str, str | None]] = field(default_factory=set)  # of those, what a repair resolves
    preplanted: set[int] = field(default_factory=set)  # alert ids open before the run, differences gone
    forged: set[str] = field(default_factory=set)  # imp_uids the forgery policy cancels on repair
    since: datetime = field(default_factory=utcnow)

    def expect(self, label: str, *kinds: AlertKind, repaired: tuple[AlertKind, ...] = ()) -> None:
        uid = self.uids.get(label, label) if label != "-" else None
        for kind in kinds:
            self.expected.add((str(kind), uid))
        for kind in repaired:
            self.repaired.add((str(kind), uid))


def _bulk(sandbox: SandboxControl, specs: list[dict[str, Any]]) -> list[str]:
    response = sandbox.http.post("/sandbox/payments/bulk", json={"payments": specs})
    response.raise_for_status()
    return list(response.json()["imp_uids"])


def _spec(
    merchant_uid: str, currency: str, started: int, *, status: str = "paid", amount: Decimal | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "merchant_uid": merchant_uid,
        "amount": str(amount if amount is not None else FEE[currency]),
        "currency": currency,
        "status": status,
        "started_at": started,
        "name": "체카 탁송비",
        "buyer_name": "김체카",
        "buyer_email": "kim@example.com",
    }
    if status == "paid":
        spec["paid_at"] = started + 30
    elif status == "failed":
        spec["failed_at"] = started + 30
        spec["fail_reason"] = "카드 승인 거절"
    elif status == "ready":
        spec["pay_method"] = "vbank"
    return spec


def add_order(rt: Runtime, merchant_uid: str, currency: str, amount: Decimal | None = None) -> None:
    with rt.db.write() as session:
        session.add(
            Order(
                merchant_uid=merchant_uid,
                name="체카 탁송비",
                amount=amount if amount is not None else FEE[currency],
                currency=currency,
                pg="eximbay" if currency != "KRW" else "kcp",
                customer_email="kim@example.com",
                customer_name="김체카",
            )
        )


def add_delivery(
    rt: Runtime, imp_uid: str | None, at: datetime, *, result: str = "processed", detail: str = ""
) -> None:
    with rt.db.write() as session:
        session.add(
            WebhookEvent(
                received_at=at,
                body='{"imp_uid": "%s"}' % (imp_uid or ""),  # noqa: UP031
                content_type="application/json",
                imp_uid=imp_uid,
                result=result,
                verified=result == "processed",
                detail=detail or ("PortOne says paid" if result == "processed" else "PortOne has no such payment"),
                processed_at=at,
            )
        )


def _edit(rt: Runtime, imp_uid: str, **values: Any) -> None:
    with rt.db.write() as session:
        session.execute(update(Payment).where(Payment.imp_uid == imp_uid).values(**values))


def _at(second: int) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def plant(rt: Runtime, sandbox: SandboxControl) -> Scenario:
    """Plant every kind of difference (see the table below); returns what a run must find."""
    now = int(time.time())
    base = now - 5 * 86400
    scenario = Scenario(since=_at(now - 10 * 86400))
    # label: (currency, status at PortOne, has our order, recorded by us, webhook delivered, amount)
    plan: dict[str, tuple[str, str, bool, bool, bool, Decimal | None]] = {
        "C1": ("KRW", "paid", True, True, True, None),  # agree
        "C2": ("USD", "paid", True, True, True, None),
        "C3": ("KRW", "paid", True, True, True, None),  # partially refunded through our API
        "C4": ("USD", "failed", True, True, False, None),
        "C5": ("KRW", "ready", True, True, False, None),  # a young virtual account
        "M1": ("KRW", "paid", True, False, False, None),  # paid, never recorded
        "M2": ("USD", "paid", True, False, False, None),
        "S1": ("KRW", "paid", True, True, True, None),  # we say failed
        "S2": ("USD", "paid", True, True, True, None),  # cancelled in PortOne's console, webhook lost
        "S3": ("KRW", "paid", True, True, True, None),  # we say cancelled
        "A1": ("KRW", "paid", True, True, True, Decimal("5000")),  # forgery: order amount 50000
        "A2": ("USD", "paid", True, True, True, None),  # our row's amount tampered
        "A3": ("USD", "paid", True, True, True, Decimal("3.85")),  # forgery: order amount 38.50
        "R1": ("KRW", "paid", True, True, True, None),  # partial console cancel, webhook lost
        "R2": ("USD", "paid", True, True, True, None),  # a refund PortOne never made
        "O1": ("KRW", "paid", True, True, True, None),  # refund applied, answer lost
        "O2": ("USD", "paid", True, True, True, None),  # refund pending long past the lease
        "K1": ("KRW", "ready", True, True, False, None),  # virtual account unpaid for 5 days
        "K2": ("USD", "ready", True, True, False, None),
        "G1": ("KRW", "paid", True, True, False, None),  # recorded by /complete, no webhook ever
        "G2": ("USD", "paid", True, True, False, None),
        "V2": ("USD", "paid", True, True, True, None),  # a later delivery was rejected
        "N1": ("KRW", "paid", False, False, False, None),  # not our order
        "N2": ("USD", "paid", False, False, False, None),
    }
    started = {label: base + i * 600 for i, label in enumerate(plan)}
    started["C5"] = now - 3600
    specs = [
        _spec(f"rc-{label}-{now}", cur, started[label], status=status, amount=amount)
        for label, (cur, status, *_rest, amount) in plan.items()
    ]
    for label, uid in zip(plan, _bulk(sandbox, specs), strict=True):
        scenario.uids[label] = uid
    for label, (cur, _status, has_order, recorded, delivered, amount) in plan.items():
        uid, merchant_uid = scenario.uids[label], f"rc-{label}-{now}"
        if has_order:
            add_order(rt, merchant_uid, cur, amount)
        if delivered:
            add_delivery(rt, uid, _at(started[label] + 32))
        if recorded:
            verify_payment(rt, imp_uid=uid, source="complete")
    uid = scenario.uids
    # Nothing is open yet: every row so far agrees with PortOne (or is judged only by a run).
    with rt.db.read() as session:
        opened = session.execute(select(Alert.kind, Alert.imp_uid).where(Alert.status != AlertStatus.RESOLVED)).all()
    assert {(k, u) for k, u in opened} == {
        (str(K.STUCK_READY), uid["K1"]),
        (str(K.STUCK_READY), uid["K2"]),
        (str(K.WEBHOOK_GAP), uid["G1"]),
        (str(K.WEBHOOK_GAP), uid["G2"]),
    }, opened  # the real-time check on /complete already saw these
    refund(rt, imp_uid=uid["C3"], amount=Decimal(10000), reason="부분 환불", actor="kim", idempotency_key="c3")

    # Unknown to PortOne: rows of ours PortOne never heard of.
    for label, cur in (("U1", "KRW"), ("U2", "USD")):
        merchant_uid = f"rc-{label}-{now}"
        add_order(rt, merchant_uid, cur)
        with rt.db.write() as session:
            order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
            session.add(
                Payment(
                    imp_uid=f"imp_9{label[1]}{now % 10**10:010d}",
                    merchant_uid=merchant_uid,
                    order=order,
                    status="paid",
                    amount=FEE[cur],
                    currency=cur,
                    started_at=_at(base),
                    paid_at=_at(base + 30),
                    verified=True,
                )
            )
        uid[label] = f"imp_9{label[1]}{now % 10**10:010d}"
    _edit(rt, uid["S1"], status="failed")
    sandbox.console_cancel(uid["S2"])
    _edit(rt, uid["S3"], status="cancelled", cancel_amount=FEE["KRW"])
    with rt.db.write() as session:  # A1, A3: the order said more than was paid
        for label, cur in (("A1", "KRW"), ("A3", "USD")):
            order = session.scalar(select(Order).join(Payment).where(Payment.imp_uid == uid[label]))
            assert order is not None
            order.amount = FEE[cur]
    _edit(rt, uid["A2"], amount=Decimal("3.85"))
    sandbox.console_cancel(uid["R1"], Decimal(10000))
    _add_refund(rt, uid["R2"], Decimal("10.00"), RefundStatus.SUCCEEDED)
    _edit(rt, uid["R2"], cancel_amount=Decimal("10.00"))
    rt.gateway.cancel_payment(imp_uid=uid["O1"], amount=Decimal(20000), checksum=FEE["KRW"], reason="응답 유실")
    _add_refund(rt, uid["O1"], Decimal(20000), RefundStatus.UNKNOWN)
    _add_refund(rt, uid["O2"], Decimal("10.00"), RefundStatus.PENDING, age=timedelta(hours=1))
    add_delivery(rt, uid["V2"], _at(started["V2"] + 3600), result="rejected")
    add_delivery(rt, "imp_000000000404", _at(base + 100), result="rejected")
    add_delivery(rt, None, _at(base + 200), result="rejected", detail="no imp_uid in the body")
    uid["W1"] = "imp_000000000404"
    # Alerts left open for differences that are gone by now.
    with rt.db.write() as session:
        for kind in (K.STATUS_MISMATCH, K.REFUND_MISMATCH):
            alert = Alert(kind=kind, severity="high", imp_uid=uid["C1"], message="planted", status=AlertStatus.OPEN)
            session.add(alert)
            session.flush()
            scenario.preplanted.add(alert.id)

    e = scenario.expect
    e("M1", K.MISSING_IN_DB, K.WEBHOOK_GAP, repaired=(K.MISSING_IN_DB,))
    e("M2", K.MISSING_IN_DB, K.WEBHOOK_GAP, repaired=(K.MISSING_IN_DB,))
    e("U1", K.UNKNOWN_TO_PORTONE)
    e("U2", K.UNKNOWN_TO_PORTONE)
    e("S1", K.STATUS_MISMATCH, repaired=(K.STATUS_MISMATCH,))
    e("S2", K.STATUS_MISMATCH, K.REFUND_TOTAL_MISMATCH, repaired=(K.STATUS_MISMATCH, K.REFUND_TOTAL_MISMATCH))
    e("S3", K.STATUS_MISMATCH, K.REFUND_TOTAL_MISMATCH, repaired=(K.STATUS_MISMATCH, K.REFUND_TOTAL_MISMATCH))
    e("A1", K.AMOUNT_MISMATCH)  # cancelled by the forgery policy on repair; the alert stays for a person
    e("A2", K.AMOUNT_MISMATCH, repaired=(K.AMOUNT_MISMATCH,))
    e("A3", K.AMOUNT_MISMATCH)
    e("R1", K.REFUND_TOTAL_MISMATCH, repaired=(K.REFUND_TOTAL_MISMATCH,))
    e("R2", K.REFUND_TOTAL_MISMATCH)  # a refund only we know of: not safe to "repair"
    e(
        "O1",
        K.REFUND_OUTCOME_UNKNOWN,
        K.REFUND_TOTAL_MISMATCH,
        repaired=(K.REFUND_OUTCOME_UNKNOWN, K.REFUND_TOTAL_MISMATCH),
    )
    e("O2", K.REFUND_OUTCOME_UNKNOWN, repaired=(K.REFUND_OUTCOME_UNKNOWN,))
    e("K1", K.STUCK_READY)
    e("K2", K.STUCK_READY)
    e("G1", K.WEBHOOK_GAP)
    e("G2", K.WEBHOOK_GAP)
    e("V2", K.WEBHOOK_UNVERIFIED)
    e("W1", K.WEBHOOK_UNVERIFIED)
    e("-", K.WEBHOOK_UNVERIFIED)
    e("N1", K.PAYMENT_WITHOUT_ORDER, K.WEBHOOK_GAP)
    e("N2", K.PAYMENT_WITHOUT_ORDER, K.WEBHOOK_GAP)
    scenario.forged = {uid["A1"], uid["A3"]}
    return scenario


def _add_refund(rt: Runtime, imp_uid: str, amount: Decimal, status: RefundStatus, age: timedelta | None = None) -> None:
    with rt.db.write() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        created = utcnow() - (age or timedelta(0))
        session.add(
            Refund(
                payment=payment,
                amount=amount,
                currency=payment.currency,
                reason="planted",
                requested_by="kim",
                source="ops",
                status=status,
                checksum=payment.amount,
                cancel_amount_before=Decimal(0),
                created_at=created,
                completed_at=created if status == RefundStatus.SUCCEEDED else None,
                refunded_total=amount if status == RefundStatus.SUCCEEDED else None,
            )
        )


def open_alerts(rt: Runtime) -> set[tuple[str, str | None]]:
    with rt.db.read() as session:
        rows = session.execute(select(Alert.kind, Alert.imp_uid).where(Alert.status != AlertStatus.RESOLVED)).all()
    return {(kind, uid) for kind, uid in rows}


def alert_rows(rt: Runtime) -> list[Alert]:
    with rt.db.read() as session:
        return list(session.scalars(select(Alert).order_by(Alert.id)).all())


# -- the tests ------------------------------------------------------------------------------

FAST = EngineOptions(max_requests_per_second=0, concurrency=4, page_size=5, slice_payments=8)
OPERATOR = Actor("kim", Role.OPERATOR)
VIEWER = Actor("lee", Role.VIEWER)


def test_a_run_finds_every_planted_difference_once_repairs_what_is_safe_and_then_stays_quiet(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    scenario = plant(runtime, sandbox)
    assert len({kind for kind, _ in scenario.expected}) == 10  # every kind a run raises
    seen: list[RunProgress] = []

    first = start_run(runtime, since=scenario.since, actor=OPERATOR, progress=seen.append, options=FAST)

    assert open_alerts(runtime) == scenario.expected
    rows = alert_rows(runtime)
    keys = [(a.kind, a.imp_uid) for a in rows if a.id not in scenario.preplanted]
    assert sorted(keys, key=str) == sorted(scenario.expected, key=str)  # each exactly once, ever
    assert first.status == "finished"
    assert first.found_total == len(scenario.expected), str({k: c.found for k, c in first.counts.items()})
    assert first.new_total == len(scenario.expected) - 4  # /complete's real-time check opened four
    assert first.counts[str(K.STATUS_MISMATCH)].resolved == 1
    assert first.counts[str(K.REFUND_MISMATCH)].resolved == 1
    assert first.payments_checked >= 26
    for alert in rows:
        if alert.id in scenario.preplanted:
            assert alert.status == AlertStatus.RESOLVED
            assert alert.resolved_by == "system"
            assert alert.resolution_note is not None
            assert f"resolved automatically (reconciliation run #{first.run_id})" in alert.resolution_note
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[-1].phase == "finished"

    cancels_before = len(sandbox.calls()["cancels"])
    second = start_run(runtime, since=scenario.since, actor=OPERATOR, repair=True, options=FAST)

    assert second.new_total == 0
    assert open_alerts(runtime) == scenario.expected - scenario.repaired
    assert sum(c.repaired for c in second.counts.values()) == len(scenario.repaired)
    cancels = sandbox.calls()["cancels"][cancels_before:]
    assert {c["imp_uid"] for c in cancels} == scenario.forged  # no money moved but the forgery policy
    assert all(c["outcome"] == "applied" for c in cancels)
    for alert in alert_rows(runtime):
        if (alert.kind, alert.imp_uid) in scenario.repaired:
            assert alert.resolved_by == OPERATOR.username
            assert f"automatic repair in reconciliation run #{second.run_id}" in (alert.resolution_note or "")
    with runtime.db.read() as session:
        m1 = session.scalar(select(Payment).where(Payment.imp_uid == scenario.uids["M1"]))
        s3 = session.scalar(select(Payment).where(Payment.imp_uid == scenario.uids["S3"]))
        o1 = session.scalars(select(Refund).join(Payment).where(Payment.imp_uid == scenario.uids["O1"])).one()
        repaired = session.scalars(select(AuditEntry.target).where(AuditEntry.action == "reconcile.repaired")).all()
    assert m1 is not None and m1.status == "paid" and m1.order_id is not None
    assert s3 is not None and (s3.status, s3.cancel_amount) == ("paid", 0)
    assert o1.status == RefundStatus.SUCCEEDED and o1.portone_cancellation_id
    assert scenario.uids["R2"] in repaired  # tried, and left open: only we know of that refund

    third = start_run(runtime, since=scenario.since, actor=OPERATOR, options=FAST)

    assert third.new_total == 0 and third.resolved_total == 0
    assert third.found_total == len(scenario.expected - scenario.repaired)
    assert open_alerts(runtime) == scenario.expected - scenario.repaired
    assert [r.run_id for r in list_runs(runtime, 5, actor=VIEWER)] == [third.run_id, second.run_id, first.run_id]


def test_real_time_checks_open_and_resolve_alerts_on_complete_and_webhooks(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    now = int(time.time())
    merchant_uid = f"rt-{now}"
    add_order(runtime, merchant_uid, "USD")
    (imp_uid,) = _bulk(sandbox, [_spec(merchant_uid, "USD", now - 86400)])
    add_delivery(runtime, imp_uid, _at(now - 86400 + 31))
    verify_payment(runtime, imp_uid=imp_uid, source="complete")
    _edit(runtime, imp_uid, status="failed")
    run = start_run(runtime, since=_at(now - 2 * 86400), actor=OPERATOR, options=FAST)
    assert run.counts[str(K.STATUS_MISMATCH)].new == 1

    outcome = webhooks.receive(
        runtime, body=f'{{"imp_uid": "{imp_uid}", "status": "paid"}}'.encode(), content_type="application/json",
        source_ip="127.0.0.1",
    )  # fmt: skip

    assert outcome.result == webhooks.WebhookResult.PROCESSED
    assert open_alerts(runtime) == set()
    (alert,) = alert_rows(runtime)
    assert alert.resolution_note == (
        "PortOne and our record both say paid — resolved automatically (real-time check on webhook)"
    )
    rejected = webhooks.receive(
        runtime, body=b'{"imp_uid": "imp_123456789012"}', content_type="application/json", source_ip="127.0.0.1"
    )
    assert rejected.result == webhooks.WebhookResult.REJECTED
    assert open_alerts(runtime) == {(str(K.WEBHOOK_UNVERIFIED), "imp_123456789012")}


def test_an_operator_repairs_one_alert_and_a_viewer_may_not(runtime: Runtime, sandbox: SandboxControl) -> None:
    now = int(time.time())
    merchant_uid = f"rp-{now}"
    add_order(runtime, merchant_uid, "KRW")
    (imp_uid,) = _bulk(sandbox, [_spec(merchant_uid, "KRW", now - 86400)])
    add_delivery(runtime, imp_uid, _at(now - 86400 + 31))
    start_run(runtime, since=_at(now - 2 * 86400), actor=OPERATOR, options=FAST)
    (alert,) = alert_rows(runtime)
    assert (alert.kind, alert.imp_uid) == (K.MISSING_IN_DB, imp_uid)

    with pytest.raises(Forbidden):
        repair(runtime, alert_id=alert.id, actor=VIEWER)
    with pytest.raises(Forbidden):
        start_run(runtime, since=_at(now - 2 * 86400), actor=VIEWER)
    result = repair(runtime, alert_id=alert.id, actor=OPERATOR)

    assert result.resolved and result.kind == K.MISSING_IN_DB
    (alert,) = alert_rows(runtime)
    assert alert.resolved_by == "kim"
    assert alert.resolution_note == (
        "the payment is now recorded in our database — resolved automatically (repair by kim)"
    )
    with pytest.raises(Conflict):
        repair(runtime, alert_id=alert.id, actor=OPERATOR)
    with runtime.db.read() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.repaired")).one()
    assert entry.actor == "kim" and entry.target == imp_uid


def test_a_listed_row_we_cannot_read_is_logged_and_the_run_judges_the_rest(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """PortOne listing one payment without its amount: that row is not judged (never read as 0),
    the audit log names it, the run finishes and every other planted difference is found."""
    scenario = plant(runtime, sandbox)
    sandbox.configure(
        garble_next=10_000,
        garble_only="GET /payments/status",
        garble_body="missing_fields",
        garble_fields=["response.list.0.amount"],
    )
    run = start_run(runtime, since=scenario.since, actor=OPERATOR, options=FAST)
    sandbox.configure(garble_next=0)
    assert run.status == "finished"
    with runtime.db.read() as session:
        logged = session.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.payment_unreadable")).all()
    unreadable = {entry.target for entry in logged}
    assert unreadable and None not in unreadable and "(no id)" not in unreadable
    found = open_alerts(runtime)
    # Nothing raised from a row read as 0; an unreadable payment's earlier alerts stay as they were.
    assert {a for a in found - scenario.expected if a[1] not in unreadable} == set()
    assert {a for a in scenario.expected if a[1] not in unreadable} <= found


def test_abandoned_card_windows_are_neither_missing_nor_stuck_and_repair_leaves_paid_orders_paid(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A card window opened and left stays `ready` at PortOne (sdk/ko/v1-sdk/javascript-sdk/payrt.md)
    without a webhook: no money moved, no virtual account waits. Neither MISSING_IN_DB nor
    STUCK_READY, and a repairing run leaves the order its other attempt paid, paid."""
    now = int(time.time())
    started = now - 5 * 86400
    paid_order, left_order = "ab-paid-order", "ab-left-order"
    add_order(runtime, paid_order, "KRW")
    add_order(runtime, left_order, "KRW")
    card_ready = {**_spec(paid_order, "KRW", started), "status": "ready", "pay_method": "card"}
    card_ready.pop("paid_at")
    lone_ready = {**card_ready, "merchant_uid": left_order}
    ready_uid, paid_uid, lone_uid = _bulk(
        sandbox, [card_ready, {**_spec(paid_order, "KRW", started + 60), "pay_method": "card"}, lone_ready]
    )
    verify_payment(runtime, imp_uid=paid_uid, source="complete")
    add_delivery(runtime, paid_uid, datetime.fromtimestamp(started + 100, UTC))
    since = datetime.fromtimestamp(started - 3600, UTC)

    start_run(runtime, since=since, actor=OPERATOR, options=FAST)
    assert open_alerts(runtime) == set()
    start_run(runtime, since=since, actor=OPERATOR, repair=True, options=FAST)

    assert open_alerts(runtime) == set()
    with runtime.db.read() as session:
        raised = session.scalars(select(Alert.kind).where(Alert.imp_uid.in_([ready_uid, lone_uid]))).all()
    assert raised == []
    with runtime.db.read() as session:
        statuses = {uid: str(status) for uid, status in session.execute(select(Order.merchant_uid, Order.status))}
    assert statuses == {paid_order: "paid", left_order: "pending"}


@pytest.mark.parametrize("portone_version", ["v1", "v2"])
@pytest.mark.parametrize(("empty_first_page", "total_count"), [("ok", "total"), ("out_of_range", "returned")])
def test_a_run_lists_every_payment_under_either_paging_reading(
    database_url: str, sandbox: SandboxControl, portone_version: str, empty_first_page: str, total_count: str
) -> None:
    """V1 may refuse page 1 of an empty window (400, a page past the data) and V2's page.totalCount
    may count only the page's items ("실제 반환된 객체 수"): a run still lists and judges every payment."""
    from tests.factories import make_runtime

    sandbox.http.post("/sandbox/config", json={"empty_first_page": empty_first_page}).raise_for_status()
    sandbox.http.post("/sandbox/v2/config", json={"total_count": total_count}).raise_for_status()
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        portone_api_version=portone_version,
        reconcile_missing_grace_minutes=0,
    )
    try:
        since = utcnow() - timedelta(minutes=1)
        uids = []
        for n in range(12):
            merchant_uid = f"paging-{portone_version}-{n}"
            add_order(rt, merchant_uid, "KRW")
            paid = sandbox.checkout(merchant_uid, FEE["KRW"])
            assert paid["success"], paid
            uids.append(paid["imp_uid"])
        time.sleep(1.1)  # the run's window ends at a whole second
        run = start_run(rt, since=since, actor=OPERATOR, options=FAST)
        assert run.status == "finished"
        missing = {uid for kind, uid in open_alerts(rt) if kind == str(K.MISSING_IN_DB)}
        assert missing == set(uids)
        # A window with nothing in it: V1's page 1 may be a 400; the run finishes, finding nothing.
        a_day_ago = utcnow() - timedelta(days=1)
        empty = start_run(rt, since=a_day_ago - timedelta(days=1), until=a_day_ago, actor=OPERATOR, options=FAST)
        assert (empty.status, empty.found_total) == ("finished", 0)
    finally:
        rt.close()
