"""Refund service: unknown outcomes are settled by asking PortOne, never by sending again."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.core.errors import GatewayUnavailable
from services.core.models import Alert, Refund, RefundStatus
from services.payments import orders
from services.payments import verification as payments
from services.refunds import engine as refunds
from services.refunds import settlement
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid_payment(runtime: Runtime, sandbox: SandboxControl) -> str:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


@pytest.mark.reliability(
    area="fault",
    case="PortOne silent after a cancel, then unreachable while settling",
    outcome="refund unknown and alerted; settled later by asking PortOne; never resent",
)
def test_unknown_outcome_waits_for_portone_then_is_settled_without_resending(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    # The cancel is applied but its answer never comes, and PortOne stays unreachable a while.
    sandbox.configure(cancel_timeout_after_apply=1, cancel_hang_seconds=8)

    def portone_goes_down() -> None:
        time.sleep(1.0)  # after the cancel was received, before our 3 s timeout
        sandbox.configure(fail_next=50)

    outage = threading.Thread(target=portone_goes_down)
    outage.start()
    result = refunds.refund(
        runtime, imp_uid=imp_uid, amount="20000", reason="고객 요청", actor="kim", idempotency_key="k-unknown"
    )
    outage.join()
    assert result.status == RefundStatus.UNKNOWN
    with runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.imp_uid == imp_uid))
        assert alert is not None and alert.kind == "refund_outcome_unknown"

    sandbox.configure(fail_next=0)
    # The same intent again never resends: it asks PortOne and replays how the attempt ended.
    again = refunds.refund(
        runtime, imp_uid=imp_uid, amount="20000", reason="고객 요청", actor="kim", idempotency_key="k-unknown"
    )
    assert again.replayed and again.status == RefundStatus.SUCCEEDED
    assert settlement.settle_open_attempts(runtime, imp_uid=imp_uid) == 0  # nothing left open
    with runtime.db.read() as session:
        rows = session.scalars(select(Refund)).all()
        assert [(r.status, r.amount) for r in rows] == [("succeeded", Decimal(20000))]
        assert rows[0].portone_cancellation_id
    assert len(sandbox.calls()["cancels"]) == 1
    follow_up = refunds.refund(
        runtime, imp_uid=imp_uid, amount="30000", reason="나머지", actor="kim", idempotency_key="k-rest"
    )
    assert follow_up.status == RefundStatus.SUCCEEDED and follow_up.remaining == 0


@pytest.mark.reliability(
    area="fault",
    case="PortOne unreachable before a refund is sent",
    outcome="refund refused (503), nothing sent, nothing recorded as refunded",
)
def test_portone_unreachable_before_sending_changes_nothing(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    sandbox.configure(fail_next=50)
    with pytest.raises(GatewayUnavailable):
        refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k1")
    sandbox.configure(fail_next=0)
    assert sandbox.calls()["cancels"] == []
    again = refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k1")
    assert again.status == RefundStatus.SUCCEEDED and not again.replayed


@pytest.mark.reliability(
    area="fault",
    case="a refunding process crashed holding the payment's lease",
    outcome="lease expires; the next refund proceeds and settles the open attempt",
)
def test_lease_left_by_a_crashed_process_expires(runtime: Runtime, sandbox: SandboxControl) -> None:
    from datetime import timedelta

    from services.core.models import Payment, utcnow

    imp_uid = _paid_payment(runtime, sandbox)
    with runtime.db.write() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        payment.refund_lock_owner = "crashed-process"
        payment.refund_lock_expires_at = utcnow() + timedelta(seconds=1)
    result = refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k2")
    assert result.status == RefundStatus.SUCCEEDED


# -- virtual-account refunds need the customer's account (opi/ko/integration/cancel/v1/basic.md) ----

ACCOUNT = {"bank": "88", "holder": "홍길동", "number": "562-111-05948400"}


def _paid_virtual_account(runtime: Runtime, sandbox: SandboxControl, **extra: object) -> str:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김")
    answer = sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None, **extra)
    imp_uid = str(answer["imp_uid"])
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def _everything_stored(runtime: Runtime) -> str:
    """Every row of every table, as text: what a database dump would hold."""
    from services.core.models import Base

    with runtime.db.read() as session:
        return "\n".join(
            repr(tuple(row)) for table in Base.metadata.sorted_tables for row in session.execute(table.select())
        )


@pytest.mark.parametrize("portone_version", ["v1", "v2"])
def test_a_virtual_account_refund_without_the_account_is_refused_before_anything_is_sent(
    runtime: Runtime, sandbox: SandboxControl, portone_version: str
) -> None:
    from services.core.errors import RefundAccountRequired

    imp_uid = _paid_virtual_account(runtime, sandbox)
    with pytest.raises(RefundAccountRequired, match="refund_account"):
        refunds.refund(runtime, imp_uid=imp_uid, amount="10000", reason="고객 요청", actor="kim", idempotency_key="v1")
    assert sandbox.calls()["cancels"] == []
    with runtime.db.read() as session:
        assert session.scalars(select(Refund)).all() == []


@pytest.mark.parametrize("portone_version", ["v1", "v2"])
def test_a_virtual_account_is_refunded_to_the_account_given_and_only_its_masked_number_is_kept(
    runtime: Runtime, sandbox: SandboxControl, portone_version: str
) -> None:
    imp_uid = _paid_virtual_account(runtime, sandbox)
    result = refunds.refund(
        runtime,
        imp_uid=imp_uid,
        amount="10000",
        reason="고객 요청",
        actor="kim",
        idempotency_key="va-1",
        refund_account=ACCOUNT,
    )
    assert result.status == RefundStatus.SUCCEEDED and result.remaining == Decimal(40000)
    [sent] = sandbox.calls()["cancels"]
    expected = (
        {"holder": "홍길동", "bank": "BK88", "number": "56211105948400"}  # NHN KCP writes 신한 BK88 (pg-1.md)
        if portone_version == "v1"
        else {"bank": "SHINHAN", "number": "56211105948400", "holderName": "홍길동"}
    )
    assert sent["refund_account"] == expected
    with runtime.db.read() as session:
        [row] = session.scalars(select(Refund)).all()
        assert (row.refund_bank, row.refund_holder, row.refund_account_masked) == ("88", "홍길동", "**********8400")
    stored = _everything_stored(runtime)
    assert "56211105948400" not in stored and "05948400" not in stored


def test_a_replay_with_another_account_is_refused(runtime: Runtime, sandbox: SandboxControl) -> None:
    from services.core.errors import InvalidRequest

    imp_uid = _paid_virtual_account(runtime, sandbox)
    first = refunds.refund(
        runtime,
        imp_uid=imp_uid,
        amount="10000",
        reason="r",
        actor="kim",
        idempotency_key="va-2",
        refund_account=ACCOUNT,
    )
    assert first.status == RefundStatus.SUCCEEDED
    same = refunds.refund(
        runtime,
        imp_uid=imp_uid,
        amount="10000",
        reason="r",
        actor="kim",
        idempotency_key="va-2",
        refund_account=ACCOUNT,
    )
    assert same.replayed
    other = {**ACCOUNT, "number": "110-222-333333"}
    with pytest.raises(InvalidRequest, match="different refund request"):
        refunds.refund(
            runtime,
            imp_uid=imp_uid,
            amount="10000",
            reason="r",
            actor="kim",
            idempotency_key="va-2",
            refund_account=other,
        )
    assert len(sandbox.calls()["cancels"]) == 1


def test_a_virtual_account_through_a_pg_that_cannot_refund_one_is_refused_before_sending(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.core.errors import NotRefundable

    imp_uid = _paid_virtual_account(runtime, sandbox, pg="danal_tpay")
    with pytest.raises(NotRefundable, match="다날|danal"):
        refunds.refund(
            runtime,
            imp_uid=imp_uid,
            amount="1000",
            reason="r",
            actor="kim",
            idempotency_key="va-3",
            refund_account=ACCOUNT,
        )
    assert sandbox.calls()["cancels"] == []


def test_bad_refund_accounts_are_refused_without_echoing_the_number(runtime: Runtime, sandbox: SandboxControl) -> None:
    from services.core.errors import InvalidRequest

    imp_uid = _paid_virtual_account(runtime, sandbox)
    for account in (
        {**ACCOUNT, "bank": "999"},
        {**ACCOUNT, "number": "12ab5678901"},
        {**ACCOUNT, "holder": ""},
        {"bank": "88", "holder": "홍길동"},
    ):
        with pytest.raises(InvalidRequest) as caught:
            refunds.refund(
                runtime, imp_uid=imp_uid, amount="1000", reason="r", actor="kim", idempotency_key="va-4",
                refund_account=account,
            )  # fmt: skip
        assert "12ab5678901" not in str(caught.value) and "05948400" not in str(caught.value)
    assert sandbox.calls()["cancels"] == []


def test_a_full_refund_of_a_fully_refunded_payment_says_nothing_is_left(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.core.errors import NotRefundable

    imp_uid = _paid_payment(runtime, sandbox)
    refunds.refund(runtime, imp_uid=imp_uid, amount=None, reason="고객 요청", actor="kim", idempotency_key="all-1")
    with pytest.raises(NotRefundable, match="nothing left") as refused:
        refunds.refund(runtime, imp_uid=imp_uid, amount=None, reason="고객 요청", actor="kim", idempotency_key="all-2")
    assert refused.value.nothing_left
