"""The refund desk and payments PortOne refunds in full only (impossible-partial-cancel.md): the
quote says so, and a partial refund of one is refused before it is queued or sent, in the bulk
preview too. Through the sandbox and a real database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.auth.access import Actor
from services.core.errors import FullRefundOnly
from services.core.models import Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import approvals, bulk
from services.refunds import desk as refund_desk
from services.refunds.bulk import BulkInputRow
from services.refunds.outcomes import RefundOutcome, outcome_of_error
from services.runtime import Runtime
from tests.factories import SandboxControl

KIM = Actor("kim", Role.OPERATOR)


def _paid(runtime: Runtime, sandbox: SandboxControl, **checkout: Any) -> str:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, **checkout)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def _strict(runtime: Runtime) -> Runtime:
    """Every refund above 1 won needs approval: a refused request must not even be queued."""
    settings = runtime.settings.model_copy(update={"refund_approval_threshold": {"KRW": Decimal(1)}})
    return Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)


@pytest.mark.parametrize(
    ("checkout", "reason"),
    [({"escrow": True}, "escrow"), ({"pay_method": "phone", "card_number": None}, "phone"), ({}, None)],
    ids=["escrow", "phone", "card"],
)
def test_the_quote_says_full_only_and_why(
    runtime: Runtime, sandbox: SandboxControl, checkout: dict[str, Any], reason: str | None
) -> None:
    imp_uid = _paid(runtime, sandbox, **checkout)
    quote = refund_desk.refund_quote(runtime, actor=KIM, identifier=imp_uid)
    assert quote.full_only == reason and quote.remaining == 50000
    sandbox.configure(fail_next=50)  # PortOne unreachable: our copy of its record says the same
    try:
        assert refund_desk.refund_quote(runtime, actor=KIM, identifier=imp_uid).full_only == reason
    finally:
        sandbox.configure(fail_next=0)


def test_a_partial_request_of_an_escrow_payment_is_refused_before_approval_or_sending(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(runtime, sandbox, escrow=True)
    strict = _strict(runtime)
    with pytest.raises(FullRefundOnly) as refused:
        refund_desk.request_refund(strict, actor=KIM, imp_uid=imp_uid, amount="1000", reason="x", idempotency_key="p1")
    assert outcome_of_error(refused.value) == RefundOutcome.FULL_ONLY
    assert approvals.list_requests(strict, actor=KIM) == []
    assert sandbox.calls()["cancels"] == []
    whole = refund_desk.request_refund(
        runtime, actor=KIM, imp_uid=imp_uid, amount=None, reason="x", idempotency_key="w"
    )
    assert whole.outcome == RefundOutcome.REFUNDED


def test_bulk_preview_skips_a_partial_row_of_an_escrow_payment(runtime: Runtime, sandbox: SandboxControl) -> None:
    escrow = _paid(runtime, sandbox, escrow=True)
    ordinary = _paid(runtime, sandbox)
    rows = [
        BulkInputRow(line=1, identifier=escrow, amount="1000"),
        BulkInputRow(line=2, identifier=ordinary, amount="1000"),
        BulkInputRow(line=3, identifier=escrow),
    ]
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="x")
    assert [r.check for r in preview.rows] == [RefundOutcome.FULL_ONLY, None, RefundOutcome.DUPLICATE]
