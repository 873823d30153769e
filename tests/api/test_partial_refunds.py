"""Partial refunds PortOne refuses (help/core-service/how-to-use/impossible-partial-cancel.md).

Where PortOne's payment record tells (escrow; phone, except through KG Inicis) our API refuses a
partial refund up front: 409 `full_refund_only`, nothing sent to PortOne, and the whole remainder
still refunds. Where only the card's acquirer knows (a foreign card: the sandbox's
`partial_cancel_refused_cards`), PortOne's refusal reaches the caller with the advice to refund
in full. V1 and V2 alike.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Refund, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order

FOREIGN_CARD = "5555-5555-5555-4444"


@pytest.fixture(params=["v1", "v2"])
def portone_version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _paid(api: httpx.Client, sandbox: SandboxControl, **checkout: Any) -> str:
    order = new_order(api)
    imp_uid = str(sandbox.checkout(order["merchant_uid"], order["amount"], **checkout)["imp_uid"])
    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert answer.is_success, answer.text
    return imp_uid


def _refund(api: httpx.Client, imp_uid: str, amount: str | None) -> httpx.Response:
    body: dict[str, object] = {"reason": "고객 요청"}
    if amount is not None:
        body["amount"] = amount
    return api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers())


@pytest.mark.parametrize(
    "checkout",
    [{"escrow": True}, {"pay_method": "phone", "card_number": None}],
    ids=["escrow", "phone"],
)
def test_a_partial_refund_the_record_forbids_is_refused_up_front_and_the_whole_refunds(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, checkout: dict[str, Any]
) -> None:
    imp_uid = _paid(api, sandbox, **checkout)
    partial = _refund(api, imp_uid, "10000")
    assert partial.status_code == 409, partial.text
    assert partial.json()["error"] == "full_refund_only" and "full refund only" in partial.json()["message"]
    assert sandbox.calls()["cancels"] == []  # nothing was sent to PortOne
    whole = _refund(api, imp_uid, "50000")
    assert whole.status_code == 201, whole.text
    assert sandbox.payment(imp_uid)["status"] == "cancelled"
    assert len(sandbox.calls()["cancels"]) == 1


def test_a_phone_payment_through_inicis_refunds_partially(api: httpx.Client, sandbox: SandboxControl) -> None:
    pg = "html5_inicis" if sandbox.version == "v1" else "inicis_v2"
    imp_uid = _paid(api, sandbox, pay_method="phone", card_number=None, pg=pg)
    assert _refund(api, imp_uid, "10000").status_code == 201


def test_a_partial_refund_only_portone_refuses_reaches_the_caller_with_the_advice(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(partial_cancel_refused_cards=[FOREIGN_CARD])
    imp_uid = _paid(api, sandbox, card_number=FOREIGN_CARD)
    refused = _refund(api, imp_uid, "10000")
    assert refused.status_code in (202, 502), refused.text
    assert "부분취소가 불가능" in refused.json()["message"]
    assert "refund the whole remainder" in refused.json()["message"]
    with runtime.db.read() as session:
        [attempt] = session.scalars(select(Refund)).all()
        assert attempt.status in (RefundStatus.FAILED, RefundStatus.UNKNOWN)
        assert "부분취소가 불가능" in (attempt.error_message or "")
    assert sandbox.payment(imp_uid)["cancel_amount"] == 0
    assert len(sandbox.calls()["cancels"]) == 1  # sent once, never again
