"""The refund desk: permissions, maker-checker approval, idempotent intents and bulk refunds,
against the sandbox over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.auth.access import Actor
from services.core.errors import (
    ApprovalDecisionChanged,
    Conflict,
    Forbidden,
    GatewayUnavailable,
    InvalidRequest,
    NotRefundable,
    RefundExceedsRemaining,
)
from services.core.models import ApprovalStatus, AuditEntry, Payment, Refund, RefundRequest, RefundStatus, Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import approvals, bulk
from services.refunds import desk as refund_desk
from services.refunds import engine as refunds_engine
from services.refunds.bulk import BulkInputRow
from services.refunds.outcomes import DeskResult, RefundOutcome, outcome_of_error
from services.runtime import Runtime
from tests.factories import DECLINED_CARD, SandboxControl

KIM = Actor("kim", Role.OPERATOR)
PARK = Actor("park", Role.OPERATOR)
BOSS = Actor("boss", Role.ADMIN)
VIEWER = Actor("lee", Role.VIEWER)


def _paid(runtime: Runtime, sandbox: SandboxControl, currency: str = "KRW") -> tuple[str, str]:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카", currency=currency)
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, currency)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid, order.merchant_uid


def _strict(runtime: Runtime, krw: str = "30000", usd: str = "20.00") -> Runtime:
    """The same runtime with a lower approval threshold (the fee itself is below the default)."""
    settings = runtime.settings.model_copy(
        update={"refund_approval_threshold": {"KRW": Decimal(krw), "USD": Decimal(usd)}}
    )
    return Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)


def _cancels(sandbox: SandboxControl) -> list[dict[str, object]]:
    return list(sandbox.calls()["cancels"])


def test_a_viewer_calling_the_desk_directly_is_forbidden(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    with pytest.raises(Forbidden):
        refund_desk.request_refund(
            runtime, actor=VIEWER, imp_uid=imp_uid, amount="1000", reason="x", idempotency_key="v1"
        )
    with pytest.raises(Forbidden):
        refund_desk.refund_quote(runtime, actor=VIEWER, identifier=imp_uid)
    with pytest.raises(Forbidden):
        bulk.submit_bulk(
            runtime, actor=VIEWER, rows=[BulkInputRow(1, imp_uid)], default_reason="x", batch_id="b-viewer"
        )
    assert _cancels(sandbox) == []


def test_an_operator_refunds_once_per_intent(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = _paid(runtime, sandbox)
    quote = refund_desk.refund_quote(runtime, actor=KIM, identifier=merchant_uid)
    assert (quote.imp_uid, quote.remaining, quote.from_portone) == (imp_uid, Decimal(50000), True)

    first = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount="20000", reason="고객 요청", idempotency_key="intent-1"
    )
    again = refund_desk.request_refund(  # a double click: same intent, same key
        runtime, actor=KIM, imp_uid=imp_uid, amount="20000", reason="고객 요청", idempotency_key="intent-1"
    )
    assert first.outcome == again.outcome == RefundOutcome.REFUNDED
    assert (first.amount, first.remaining, first.replayed, again.replayed) == (
        Decimal(20000),
        Decimal(30000),
        False,
        True,
    )
    assert len(_cancels(sandbox)) == 1
    # The whole remainder once more: refunded, and a replay afterwards does not trip the remainder check.
    rest = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount=None, reason="나머지", idempotency_key="intent-2"
    )
    replay = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount=None, reason="나머지", idempotency_key="intent-2"
    )
    assert (rest.outcome, rest.remaining, replay.replayed) == (RefundOutcome.REFUNDED, Decimal(0), True)
    assert len(_cancels(sandbox)) == 2
    with pytest.raises(RefundExceedsRemaining):
        refund_desk.request_refund(runtime, actor=KIM, imp_uid=imp_uid, amount="1", reason="x", idempotency_key="k3")
    with pytest.raises(InvalidRequest):
        refund_desk.request_refund(runtime, actor=KIM, imp_uid=imp_uid, amount="1", reason=" ", idempotency_key="k4")
    assert len(_cancels(sandbox)) == 2


def test_above_the_threshold_a_different_operator_must_approve(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="big-1"
    )
    assert asked.outcome == RefundOutcome.AWAITING_APPROVAL and asked.request_id is not None
    replay = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="big-1"
    )
    assert (replay.outcome, replay.request_id, replay.replayed) == (
        RefundOutcome.AWAITING_APPROVAL,
        asked.request_id,
        True,
    )
    assert _cancels(sandbox) == []  # nothing sent to PortOne while it waits
    assert [r.id for r in approvals.list_requests(rt, actor=PARK)] == [asked.request_id]

    with pytest.raises(Forbidden):  # the maker is not the checker
        approvals.approve_request(rt, actor=KIM, request_id=asked.request_id)
    with pytest.raises(Forbidden):
        approvals.approve_request(rt, actor=VIEWER, request_id=asked.request_id)
    assert _cancels(sandbox) == []

    approved = approvals.approve_request(rt, actor=PARK, request_id=asked.request_id, note="확인함")
    assert (approved.outcome, approved.amount, approved.remaining) == (
        RefundOutcome.REFUNDED,
        Decimal(40000),
        Decimal(10000),
    )
    assert len(_cancels(sandbox)) == 1
    again = approvals.approve_request(rt, actor=BOSS, request_id=asked.request_id)  # a second click
    assert again.outcome == RefundOutcome.REFUNDED and again.replayed
    assert len(_cancels(sandbox)) == 1
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, asked.request_id)
        refund = session.get_one(Refund, request.refund_id)
        assert (request.status, request.requested_by, request.decided_by) == (ApprovalStatus.APPROVED, "kim", "park")
        assert (refund.status, refund.requested_by, refund.idempotency_key) == (RefundStatus.SUCCEEDED, "kim", "big-1")
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.target == imp_uid)))
    assert {"refund.approval_requested", "refund.approved", "refund.succeeded"} <= actions
    assert approvals.list_requests(rt, actor=PARK) == []


def test_a_rejected_request_sends_nothing(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(  # the whole remainder (50,000) is above 30,000
        rt, actor=KIM, imp_uid=imp_uid, amount=None, reason="전액 환불", idempotency_key="whole-1"
    )
    assert asked.outcome == RefundOutcome.AWAITING_APPROVAL and asked.amount is None
    assert asked.request_id is not None
    with pytest.raises(InvalidRequest):  # a rejection says why
        approvals.reject_request(rt, actor=PARK, request_id=asked.request_id, note="")
    approvals.reject_request(rt, actor=PARK, request_id=asked.request_id, note="고객이 취소를 철회함")
    with pytest.raises(Conflict):
        approvals.approve_request(rt, actor=BOSS, request_id=asked.request_id)
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, asked.request_id)
        assert (request.status, request.decided_by, request.decision_note) == (
            ApprovalStatus.REJECTED,
            "park",
            "고객이 취소를 철회함",
        )
        assert session.scalars(select(Refund)).all() == []
    assert _cancels(sandbox) == []


def test_approval_while_portone_is_down_keeps_the_request_waiting(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="45000", reason="x", idempotency_key="down-1"
    )
    assert asked.request_id is not None
    sandbox.configure(fail_next=50)
    with pytest.raises(GatewayUnavailable):
        approvals.approve_request(rt, actor=PARK, request_id=asked.request_id)
    sandbox.configure(fail_next=0)
    assert [r.id for r in approvals.list_requests(rt, actor=PARK)] == [asked.request_id]
    assert approvals.approve_request(rt, actor=PARK, request_id=asked.request_id).outcome == RefundOutcome.REFUNDED
    assert len(_cancels(sandbox)) == 1


def test_bulk_refund_reports_every_row(runtime: Runtime, sandbox: SandboxControl) -> None:
    first, _ = _paid(runtime, sandbox)
    second, second_order = _paid(runtime, sandbox)
    third, _ = _paid(runtime, sandbox)
    dollars, _ = _paid(runtime, sandbox, "USD")
    csv = (
        "\ufeffimp_uid,merchant_uid,금액,사유\n"
        f"{first},,10000,부분 환불\n"
        f",{second_order},,\n"  # by order number, the whole remainder, the batch's reason
        f"{third},,60000,너무 많이\n"
        "imp_does_not_exist,,,\n"
        f"{first},,5000,중복\n"
        f"{dollars},,12.25,달러 부분 환불\n"
    ).encode()
    rows = bulk.parse_bulk_csv(csv)
    assert [(r.line, r.identifier, r.amount) for r in rows[:2]] == [(1, first, "10000"), (2, second_order, None)]

    preview = bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄 환불")
    assert [r.check for r in preview.rows] == [
        None,
        None,
        RefundOutcome.EXCEEDS_REMAINDER,
        RefundOutcome.NOT_FOUND,
        RefundOutcome.DUPLICATE,
        None,
    ]
    assert preview.rows[1].imp_uid == second and preview.rows[1].amount == Decimal(50000)
    assert preview.totals == {"KRW": Decimal(60000), "USD": Decimal("12.25")} and not preview.needs_approval
    assert _cancels(sandbox) == []  # a preview sends nothing

    progress: list[tuple[int, int]] = []
    results = bulk.submit_bulk(
        runtime,
        actor=KIM,
        rows=rows,
        default_reason="일괄 환불",
        batch_id="batch-1",
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert [(r.line, r.outcome) for r in results] == [
        (1, RefundOutcome.REFUNDED),
        (2, RefundOutcome.REFUNDED),
        (3, RefundOutcome.EXCEEDS_REMAINDER),
        (4, RefundOutcome.NOT_FOUND),
        (5, RefundOutcome.DUPLICATE),
        (6, RefundOutcome.REFUNDED),
    ]
    assert [r.remaining for r in results if r.outcome == RefundOutcome.REFUNDED] == [
        Decimal(40000),
        Decimal(0),
        Decimal("26.25"),
    ]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert len(_cancels(sandbox)) == 3
    # The same batch again (a rerun of the confirm): every row replays, nothing is sent twice.
    rerun = bulk.submit_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄 환불", batch_id="batch-1")
    assert [r.outcome for r in rerun] == [r.outcome for r in results]
    assert [(r.remaining, r.refund_id) for r in rerun if r.outcome == RefundOutcome.REFUNDED] == [
        (r.remaining, r.refund_id) for r in results if r.outcome == RefundOutcome.REFUNDED
    ]
    assert len(_cancels(sandbox)) == 3
    assert sandbox.payment(first)["cancel_amount"] == 10000


def test_a_bulk_batch_above_the_threshold_waits_for_approval(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime, krw="60000")
    uids = [_paid(rt, sandbox)[0] for _ in range(2)]  # 2 × ₩40,000 = ₩80,000 > ₩60,000 in one batch
    rows = [BulkInputRow(line, uid, amount="40000") for line, uid in enumerate(uids, start=1)]
    results = bulk.submit_bulk(rt, actor=KIM, rows=rows, default_reason="일괄", batch_id="batch-big")
    assert [r.outcome for r in results] == [RefundOutcome.AWAITING_APPROVAL] * 2
    assert _cancels(sandbox) == []
    with pytest.raises(Forbidden):
        bulk.approve_batch(rt, actor=KIM, batch_id="batch-big")
    approved = bulk.approve_batch(rt, actor=PARK, batch_id="batch-big")
    assert [r.outcome for r in approved] == [RefundOutcome.REFUNDED] * 2
    assert len(_cancels(sandbox)) == 2
    assert approvals.list_requests(rt, actor=PARK) == []


def test_csv_errors_are_explained() -> None:
    with pytest.raises(InvalidRequest):
        bulk.parse_bulk_csv(b"")
    with pytest.raises(InvalidRequest):
        bulk.parse_bulk_csv(b"name,phone\nkim,010\n")
    korean_excel = "주문번호,환불사유\nchekar_1,고객 요청\n".encode("cp949")
    rows = bulk.parse_bulk_csv(korean_excel)
    assert [(r.identifier, r.reason) for r in rows] == [("chekar_1", "고객 요청")]


def test_a_payment_that_was_never_paid_cannot_be_filed_for_approval(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime)
    order = orders.create_order(rt, customer_email="a@example.com", customer_name="김")
    declined = str(sandbox.checkout(order.merchant_uid, order.amount, card_number=DECLINED_CARD)["imp_uid"])
    payments.complete(rt, imp_uid=declined, merchant_uid=order.merchant_uid)
    assert refund_desk.refund_quote(rt, actor=KIM, identifier=declined).remaining == 0
    with pytest.raises(Conflict):
        refund_desk.request_refund(rt, actor=KIM, imp_uid=declined, amount=None, reason="x", idempotency_key="f-1")
    with pytest.raises(Conflict):  # below the threshold PortOne's own status refuses it
        refund_desk.request_refund(rt, actor=KIM, imp_uid=declined, amount="1000", reason="x", idempotency_key="f-2")
    assert approvals.list_requests(rt, actor=PARK) == [] and _cancels(sandbox) == []


def test_a_payment_cancelled_in_portones_console_is_nothing_left_not_busy(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    sandbox.console_cancel(imp_uid)  # the whole amount, behind our back (no webhook delivered)
    with pytest.raises(NotRefundable) as refused:
        refund_desk.request_refund(
            runtime, actor=KIM, imp_uid=imp_uid, amount="1000", reason="고객 요청", idempotency_key="after-console"
        )
    assert outcome_of_error(refused.value) == RefundOutcome.NOTHING_LEFT
    assert "cancelled at PortOne" in str(refused.value)
    assert len(_cancels(sandbox)) == 0  # nothing sent by us


def test_amount_text_follows_one_strict_grammar(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    for typed in ["0,05", "1,00,000", "1e100", "1e3", "１０００"]:
        with pytest.raises(InvalidRequest):
            refund_desk.request_refund(
                runtime, actor=KIM, imp_uid=imp_uid, amount=typed, reason="고객 요청", idempotency_key=f"t-{typed}"
            )
    assert _cancels(sandbox) == []
    rows = [
        BulkInputRow(1, imp_uid, amount="20,000"),
        BulkInputRow(2, imp_uid, amount="1e100"),
        BulkInputRow(3, imp_uid, amount="0,05"),
        BulkInputRow(4, imp_uid, amount="1,00,000"),
    ]
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄")
    assert [r.check for r in preview.rows] == [
        None,
        RefundOutcome.INVALID,
        RefundOutcome.INVALID,
        RefundOutcome.INVALID,
    ]
    assert preview.rows[0].amount == Decimal(20000) and "groups of three" in (preview.rows[2].message or "")
    done = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount="20,000", reason="고객 요청", idempotency_key="t-ok"
    )
    assert (done.outcome, done.amount) == (RefundOutcome.REFUNDED, Decimal(20000))
    assert [c["amount"] for c in _cancels(sandbox)] == [20000]


def _refund_rows(rt: Runtime, key: str) -> list[Refund]:
    with rt.db.read() as session:
        return list(session.scalars(select(Refund).where(Refund.idempotency_key == key)))


def test_a_reject_arriving_while_an_approval_is_being_sent_is_refused(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """Approver A clicks approve; while PortOne is still working on the cancel, B rejects: B is told
    the request is already being executed, and the request, the refund row and PortOne agree."""
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="race-1"
    )
    assert asked.request_id is not None
    request_id = asked.request_id
    sandbox.configure(latency_ms=1500, latency_only="POST /payments/cancel")  # PortOne takes its time
    answers: dict[str, object] = {}

    def approve() -> None:
        try:
            answers["approve"] = approvals.approve_request(rt, actor=PARK, request_id=request_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            answers["approve"] = exc

    approver = threading.Thread(target=approve)
    approver.start()
    try:
        deadline = time.monotonic() + 10
        while not _refund_rows(rt, "race-1"):  # the attempt is recorded: the cancel is on its way
            assert time.monotonic() < deadline, "the approval never started sending"
            time.sleep(0.02)
        time.sleep(0.3)
        with pytest.raises(Conflict, match="being executed"):
            approvals.reject_request(rt, actor=BOSS, request_id=request_id, note="suspected fraud")
    finally:
        approver.join(timeout=30)
        sandbox.configure(latency_ms=0, latency_only=None)
    approved = answers["approve"]
    assert isinstance(approved, DeskResult), approved
    assert approved.outcome == RefundOutcome.REFUNDED
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, request_id)
        refund = session.get_one(Refund, request.refund_id)
        assert (request.status, request.decided_by) == (ApprovalStatus.APPROVED, "park")
        assert (refund.status, refund.amount) == (RefundStatus.SUCCEEDED, Decimal(40000))
    assert sandbox.payment(imp_uid)["cancel_amount"] == 40000
    assert len(_cancels(sandbox)) == 1


def test_a_reject_first_means_the_approval_sends_nothing(runtime: Runtime, sandbox: SandboxControl) -> None:
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="race-2"
    )
    assert asked.request_id is not None
    approvals.reject_request(rt, actor=BOSS, request_id=asked.request_id, note="suspected fraud")
    with pytest.raises(Conflict, match="rejected"):
        approvals.approve_request(rt, actor=PARK, request_id=asked.request_id)
    assert _cancels(sandbox) == [] and _refund_rows(rt, "race-2") == []


def test_approving_while_another_refund_is_unsettled_leaves_the_request_waiting(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    settings = _strict(runtime).settings.model_copy(update={"refund_unknown_grace_seconds": 2.0})
    rt = Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="lane-1"
    )
    assert asked.request_id is not None
    # Another refund of the payment whose answer was lost: PortOne may still apply it.
    sandbox.configure(fail_next=1, fail_only="POST /payments/cancel")
    lost = refund_desk.request_refund(
        rt, actor=PARK, imp_uid=imp_uid, amount="5000", reason="부분", idempotency_key="lane-lost"
    )
    assert lost.outcome == RefundOutcome.UNKNOWN
    sandbox.configure(fail_only=None)
    for _ in range(2):  # approving again says the same, never "unknown": nothing was sent
        with pytest.raises(Conflict, match="still awaiting approval"):
            approvals.approve_request(rt, actor=PARK, request_id=asked.request_id)
        assert [r.id for r in approvals.list_requests(rt, actor=PARK)] == [asked.request_id]
        assert _refund_rows(rt, "lane-1") == []
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, asked.request_id)
        assert (request.status, request.decided_by, request.refund_id) == (ApprovalStatus.AWAITING, None, None)
    time.sleep(2.2)  # the lost answer is settled (not applied): the lane is free again
    approved = approvals.approve_request(rt, actor=PARK, request_id=asked.request_id)
    assert (approved.outcome, approved.amount) == (RefundOutcome.REFUNDED, Decimal(40000))
    assert sandbox.payment(imp_uid)["cancel_amount"] == 40000


def test_splitting_a_bulk_refund_does_not_bypass_the_second_operator(runtime: Runtime, sandbox: SandboxControl) -> None:
    """Six payments (₩300,000) need approval as one batch; three batches of two by the same operator
    within the window need it too: the threshold applies to what one operator refunds in the window."""
    assert runtime.settings.refund_approval_threshold["KRW"] == Decimal(100000)
    uids = [_paid(runtime, sandbox)[0] for _ in range(6)]
    outcomes = []
    for batch in range(3):
        rows = [BulkInputRow(line, uid) for line, uid in enumerate(uids[batch * 2 : batch * 2 + 2], start=1)]
        assert bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄").needs_approval == (batch > 0)
        results = bulk.submit_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄", batch_id=f"split-{batch}")
        outcomes.append([r.outcome for r in results])
    assert outcomes == [
        [RefundOutcome.REFUNDED] * 2,
        [RefundOutcome.AWAITING_APPROVAL] * 2,
        [RefundOutcome.AWAITING_APPROVAL] * 2,
    ]
    assert len(_cancels(sandbox)) == 2
    # A rerun of the first batch replays it (its own refunds do not count against it).
    rows = [BulkInputRow(line, uid) for line, uid in enumerate(uids[:2], start=1)]
    rerun = bulk.submit_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄", batch_id="split-0")
    assert [r.outcome for r in rerun] == [RefundOutcome.REFUNDED] * 2 and len(_cancels(sandbox)) == 2
    # Single refunds count too, and so does the same operator's next one.
    more = [_paid(runtime, sandbox)[0] for _ in range(2)]
    single = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=more[0], amount="1000", reason="고객 요청", idempotency_key="after-split"
    )
    assert single.outcome == RefundOutcome.AWAITING_APPROVAL
    # Another operator has their own allowance; refunds a second person approved do not count.
    approved = bulk.approve_batch(runtime, actor=PARK, batch_id="split-1")
    assert [r.outcome for r in approved] == [RefundOutcome.REFUNDED] * 2
    other = refund_desk.request_refund(
        runtime, actor=PARK, imp_uid=more[1], amount="1000", reason="고객 요청", idempotency_key="park-1"
    )
    assert other.outcome == RefundOutcome.REFUNDED
    assert runtime.settings.refund_approval_window_hours == 24  # the default window: one day


def test_the_approval_window_is_configurable(runtime: Runtime, sandbox: SandboxControl) -> None:
    settings = _strict(runtime, krw="60000").settings.model_copy(update={"refund_approval_window_hours": 1 / 3600})
    rt = Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)  # a one-second window
    first, second, third = (_paid(rt, sandbox)[0] for _ in range(3))
    done = refund_desk.request_refund(rt, actor=KIM, imp_uid=first, amount=None, reason="x", idempotency_key="w-1")
    assert done.outcome == RefundOutcome.REFUNDED  # ₩50,000 of ₩60,000
    asked = refund_desk.request_refund(rt, actor=KIM, imp_uid=second, amount=None, reason="x", idempotency_key="w-2")
    assert asked.outcome == RefundOutcome.AWAITING_APPROVAL  # ₩100,000 in the window
    time.sleep(1.2)  # out of the window: the operator's allowance is back
    later = refund_desk.request_refund(rt, actor=KIM, imp_uid=third, amount=None, reason="y", idempotency_key="w-3")
    assert later.outcome == RefundOutcome.REFUNDED


def test_an_approval_abandoned_mid_execution_is_resumed_never_rejected(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A dashboard process that died right after claiming a request leaves it executing: it cannot
    be rejected (it may have been sent); once judged abandoned another approver resumes it, and
    the request's own idempotency key means PortOne is asked once."""
    fast = {"refund_lock_wait_seconds": 0.1, "refund_lock_lease_seconds": 0.1, "portone_timeout_seconds": 0.1}
    rt = Runtime(settings=_strict(runtime).settings.model_copy(update=fast), db=runtime.db, gateway=runtime.gateway)
    imp_uid, _ = _paid(rt, sandbox)
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="dead-1"
    )
    assert asked.request_id is not None
    assert approvals._claim(rt, asked.request_id, actor=PARK) is not None  # then the process died
    with pytest.raises(Conflict, match="being executed"):
        approvals.reject_request(rt, actor=BOSS, request_id=asked.request_id, note="suspected fraud")
    with pytest.raises(Conflict, match="being executed"):
        approvals.approve_request(rt, actor=BOSS, request_id=asked.request_id)
    assert [r.status for r in approvals.list_requests(rt, actor=BOSS)] == [ApprovalStatus.EXECUTING]
    time.sleep(0.8)  # past the longest a live approval could take (0.6 s with these settings)
    resumed = approvals.approve_request(rt, actor=BOSS, request_id=asked.request_id)
    assert (resumed.outcome, resumed.amount) == (RefundOutcome.REFUNDED, Decimal(40000))
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, asked.request_id)
        assert (request.status, request.decided_by) == (ApprovalStatus.APPROVED, "boss")
    assert len(_cancels(sandbox)) == 1 and sandbox.payment(imp_uid)["cancel_amount"] == 40000


# -- virtual-account refunds: the customer's account ----------------------------------------------

ACCOUNT = {"bank": "88", "holder": "홍길동", "number": "110-222-333444"}


def _paid_virtual_account(runtime: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid, order.merchant_uid


def test_the_desk_asks_for_the_account_of_a_virtual_account_payment(runtime: Runtime, sandbox: SandboxControl) -> None:
    from services.core.errors import RefundAccountRequired

    imp_uid, merchant_uid = _paid_virtual_account(runtime, sandbox)
    quote = refund_desk.refund_quote(runtime, actor=KIM, identifier=merchant_uid)
    assert quote.needs_refund_account
    with pytest.raises(RefundAccountRequired):
        refund_desk.request_refund(
            runtime, actor=KIM, imp_uid=imp_uid, amount="1000", reason="x", idempotency_key="d-va-1"
        )
    assert outcome_of_error(RefundAccountRequired("x")) == RefundOutcome.ACCOUNT_NEEDED
    done = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount="1000", reason="x", idempotency_key="d-va-2",
        refund_account=ACCOUNT,
    )  # fmt: skip
    assert done.outcome == RefundOutcome.REFUNDED
    assert done.refund is not None and done.refund.refund_account == {
        "bank": "88", "holder": "홍길동", "number": "********3444"
    }  # fmt: skip
    [sent] = _cancels(sandbox)
    assert sent["refund_account"] == {"holder": "홍길동", "bank": "BK88", "number": "110222333444"}


def test_a_virtual_account_refund_above_the_threshold_takes_the_account_at_approval(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    strict = _strict(runtime, krw="100")
    imp_uid, _ = _paid_virtual_account(runtime, sandbox)
    filed = refund_desk.request_refund(
        strict, actor=KIM, imp_uid=imp_uid, amount="1000", reason="x", idempotency_key="d-va-3",
        refund_account=ACCOUNT,
    )  # fmt: skip
    assert filed.outcome == RefundOutcome.AWAITING_APPROVAL
    from services.core.errors import RefundAccountRequired

    # The number is never stored, so the approver enters the customer's account again.
    with pytest.raises(RefundAccountRequired):
        approvals.approve_request(strict, actor=PARK, request_id=filed.request_id or 0)
    assert _cancels(sandbox) == []
    approved = approvals.approve_request(strict, actor=PARK, request_id=filed.request_id or 0, refund_account=ACCOUNT)
    assert approved.outcome == RefundOutcome.REFUNDED and len(_cancels(sandbox)) == 1


def test_bulk_csv_takes_the_refund_account_columns(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid_virtual_account(runtime, sandbox)
    bare, _ = _paid_virtual_account(runtime, sandbox)
    card, _ = _paid(runtime, sandbox)
    data = (
        "imp_uid,amount,환불은행,예금주,환불계좌\n"
        f"{imp_uid},1000,88,홍길동,110-222-333444\n"
        f"{bare},1000,,,\n"
        f"{card},1000,,,\n"
    ).encode()
    rows = bulk.parse_bulk_csv(data)
    assert (rows[0].refund_bank, rows[0].refund_holder, rows[0].refund_account) == ("88", "홍길동", "110-222-333444")
    assert "333444" not in repr(rows[0])
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄")
    assert [r.check for r in preview.rows] == [None, RefundOutcome.ACCOUNT_NEEDED, None]
    assert preview.rows[0].refund_account == "신한은행 ********3444 (홍길동)"
    results = bulk.submit_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄", batch_id="b-va")
    assert [r.outcome for r in results] == [
        RefundOutcome.REFUNDED,
        RefundOutcome.ACCOUNT_NEEDED,
        RefundOutcome.REFUNDED,
    ]
    assert {c["refund_account"]["number"] for c in _cancels(sandbox) if c.get("refund_account")} == {"110222333444"}


def test_an_order_number_finds_its_paid_payment_in_the_quote_and_the_bulk_preview_alike(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The order's paid payment wins over a newer declined retry, for one refund and for a batch."""
    imp_uid, merchant_uid = _paid(runtime, sandbox)
    with runtime.db.write() as session:  # a retry of the order, declined after it was paid: newer
        session.add(
            Payment(imp_uid="imp_declined_retry", merchant_uid=merchant_uid, status="failed",
                    amount=Decimal(50000), cancel_amount=Decimal(0), currency="KRW")
        )  # fmt: skip
    assert refund_desk.refund_quote(runtime, actor=KIM, identifier=merchant_uid).imp_uid == imp_uid
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=[BulkInputRow(line=1, identifier=merchant_uid)])
    assert [row.imp_uid for row in preview.rows] == [imp_uid]


def test_an_identifier_that_is_one_payments_imp_uid_and_anothers_order_means_the_imp_uid_everywhere(
    runtime: Runtime,
) -> None:
    """PortOne V2 payments carry their order's id as imp_uid, so an order paid once through V1 and once
    through V2 has an identifier that is both. The quote and a bulk row both mean the exact imp_uid
    (the bulk look-up used to let database row order pick the other payment)."""
    with runtime.db.write() as session:
        session.add_all(
            [
                Payment(imp_uid="ord-both", merchant_uid="ord-both", status="paid",
                        amount=Decimal(50000), cancel_amount=Decimal(0), currency="KRW"),
                Payment(imp_uid="imp_999000111222", merchant_uid="ord-both", status="paid",
                        amount=Decimal(50000), cancel_amount=Decimal(0), currency="KRW"),
            ]
        )  # fmt: skip
    assert refund_desk.refund_quote(runtime, actor=KIM, identifier="ord-both").imp_uid == "ord-both"
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=[BulkInputRow(line=1, identifier="ord-both")])
    assert [row.imp_uid for row in preview.rows] == ["ord-both"]


def test_the_approval_decision_a_dialog_announced_must_still_hold_when_it_is_confirmed(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The dialog says before confirming whether a refund goes out now or waits for a second operator;
    if the figures changed meanwhile, the desk refuses rather than do the other thing."""
    rt = _strict(runtime)
    imp_uid, _ = _paid(rt, sandbox)
    with pytest.raises(ApprovalDecisionChanged):  # announced "waits for approval", but 10,000 goes out now
        refund_desk.request_refund(
            rt, actor=KIM, imp_uid=imp_uid, amount="10000", reason="고객 요청 취소",
            idempotency_key="told-approval", expect_approval=True,
        )  # fmt: skip
    assert _cancels(sandbox) == []
    with pytest.raises(ApprovalDecisionChanged):  # announced "goes out now", but 40,000 needs approval
        refund_desk.request_refund(
            rt, actor=KIM, imp_uid=imp_uid, amount="40000", reason="고객 요청 취소",
            idempotency_key="told-now", expect_approval=False,
        )  # fmt: skip
    assert approvals.list_requests(rt, actor=PARK) == [] and _cancels(sandbox) == []
    done = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="10000", reason="고객 요청 취소",
        idempotency_key="told-now-right", expect_approval=False,
    )  # fmt: skip
    assert done.outcome == RefundOutcome.REFUNDED


@pytest.mark.parametrize("reason", ["\u200b", "\x00", "a\x00b", "\u200b \u200b", "\x07알림", "\u202e"])
def test_a_reason_with_no_visible_character_or_a_control_character_is_refused(reason: str) -> None:
    with pytest.raises(InvalidRequest):
        refunds_engine.checked_reason(reason)


def test_a_reason_may_hold_any_visible_text_and_line_breaks() -> None:
    assert refunds_engine.checked_reason("  고객 요청 취소\n(전화 확인)  ") == "고객 요청 취소\n(전화 확인)"
