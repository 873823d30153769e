"""Refund desk and virtual accounts: a resumed approval, account numbers in bulk results, oversized cells."""

from __future__ import annotations

import time
from decimal import Decimal

from services.auth.access import Actor
from services.core.models import ApprovalStatus, RefundRequest, Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import approvals, bulk
from services.refunds import desk as refund_desk
from services.refunds import engine as refunds
from services.refunds.outcomes import RefundOutcome
from services.runtime import Runtime
from tests.factories import SandboxControl

KIM = Actor("kim", Role.OPERATOR)
PARK = Actor("park", Role.OPERATOR)
BOSS = Actor("boss", Role.ADMIN)


def test_a_resumed_virtual_account_approval_whose_refund_was_sent_is_not_recorded_unrefunded(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """PARK approved a virtual-account refund and it was sent into the customer's account; PARK's
    dashboard process died before recording the decision (the request stays executing). Once it is
    judged abandoned BOSS resumes it, entering the customer's account as BOSS reads it (the holder
    written with a space). The refund was made: the request must not be recorded 'not refunded'
    (an operator reading that refunds the customer a second time)."""
    fast = {
        "refund_lock_wait_seconds": 0.1,
        "refund_lock_lease_seconds": 0.1,
        "portone_timeout_seconds": 0.1,
        "refund_approval_threshold": {"KRW": Decimal(100), "USD": Decimal("1.00")},
    }
    rt = Runtime(settings=runtime.settings.model_copy(update=fast), db=runtime.db, gateway=runtime.gateway)
    order = orders.create_order(rt, customer_email="a@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    filed = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=imp_uid, amount="1000", reason="이중 결제", idempotency_key="r13-va-resume"
    )
    assert filed.outcome == RefundOutcome.AWAITING_APPROVAL and filed.request_id is not None

    # PARK's approval, as approve_request runs it, up to the refund sent; then the process died.
    assert approvals._claim(rt, filed.request_id, actor=PARK) is not None
    sent = refunds.refund(
        rt, imp_uid=imp_uid, amount=Decimal(1000), reason="이중 결제", actor="kim", idempotency_key="r13-va-resume",
        source="ops", refund_account={"bank": "88", "holder": "홍길동", "number": "110-222-333444"},
    )  # fmt: skip
    assert sent.status == "succeeded"
    time.sleep(0.8)  # judged abandoned

    try:
        resumed = approvals.approve_request(
            rt, actor=BOSS, request_id=filed.request_id,
            refund_account={"bank": "88", "holder": "홍 길동", "number": "110222333444"},
        )  # fmt: skip
        outcome = resumed.outcome
    except Exception as exc:  # noqa: BLE001 - the outcome is what is asserted
        outcome = f"raised {type(exc).__name__}: {exc}"
    with rt.db.read() as session:
        request = session.get_one(RefundRequest, filed.request_id)
        status, note = request.status, request.decision_note or ""
    assert len(sandbox.calls()["cancels"]) == 1 and sandbox.payment(imp_uid)["cancel_amount"] == 1000
    assert status == ApprovalStatus.APPROVED
    assert "not refunded" not in note, note
    assert outcome == RefundOutcome.REFUNDED, outcome


def test_an_account_number_typed_in_the_bank_column_is_not_echoed_in_bulk_results(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A bulk CSV whose virtual-account row has its columns swapped (the account number under
    환불은행): the row is skipped, and neither the preview nor the results (shown, and downloaded as
    refund-results.csv) repeat the customer's account number whole."""
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    data = f"imp_uid,amount,환불은행,예금주,환불계좌\n{imp_uid},1000,110-222-333444,홍길동,88\n".encode()
    rows = bulk.parse_bulk_csv(data)
    preview = bulk.preview_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄")
    assert preview.rows[0].check is not None  # skipped
    results = bulk.submit_bulk(runtime, actor=KIM, rows=rows, default_reason="일괄", batch_id="r13-swap")
    shown = [preview.rows[0].message or "", preview.rows[0].refund_account or "", results[0].message or ""]
    assert all("333444" not in text for text in shown), shown
    assert sandbox.calls()["cancels"] == []


def test_a_bulk_csv_with_an_oversized_cell_is_refused_in_plain_words() -> None:
    """A CSV with one cell over Python's csv field limit (128 KiB; e.g. a spreadsheet cell pasted
    full, or an unclosed quote swallowing the rest of a large file) is refused as a bad file
    (InvalidRequest, shown by the refunds page), not raised as csv.Error, which the page does not
    catch (it catches PaymentsError only) and Streamlit shows as a stack trace."""
    from services.core.errors import InvalidRequest

    data = b'imp_uid,amount,reason\nimp_1,1000,"' + b"x" * 200_000 + b'"\n'
    try:
        bulk.parse_bulk_csv(data)
    except InvalidRequest:
        pass
    except Exception as exc:  # noqa: BLE001 - what escapes is the finding
        raise AssertionError(f"{type(exc).__module__}.{type(exc).__name__}: {exc}") from exc
