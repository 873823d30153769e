"""Bad input gets a clear 4xx, never a 500 or a stack trace, and nothing stored is lost."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import INTERNAL_TOKEN, SandboxControl, auth_headers, new_order


@pytest.mark.reliability(
    area="hostile input",
    case="malformed, oversized or wrongly typed order bodies",
    outcome="4xx with a readable message; nothing stored",
)
@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"customer_email": "not-an-email", "customer_name": "김"}, 400, "customer_email"),
        ({"customer_email": "a@b.co", "customer_name": ""}, 400, "customer_name"),
        ({"customer_email": "a@b.co", "customer_name": "김", "currency": "XYZ"}, 400, "not offered"),
        ({"customer_email": "a@b.co", "customer_name": "김", "amount": 1}, 201, ""),  # amount is ignored
        ({"customer_name": "김"}, 400, "customer_email"),
        ([], 400, "JSON object"),
    ],
)
def test_order_input(api: httpx.Client, body: object, status: int, fragment: str) -> None:
    answer = api.post("/api/orders", json=body)
    assert answer.status_code == status, answer.text
    if status == 201:
        assert answer.json()["amount"] == 50000
    else:
        assert fragment in answer.json()["message"]


def test_complete_input(api: httpx.Client, sandbox: SandboxControl) -> None:
    assert api.post("/api/payments/complete", content=b"{nope").status_code == 400
    assert api.post("/api/payments/complete", json={"imp_uid": "imp_1"}).status_code == 400
    unknown_order = api.post("/api/payments/complete", json={"imp_uid": "imp_1", "merchant_uid": "nope"})
    assert unknown_order.status_code == 404
    order = new_order(api)
    unknown_payment = api.post(
        "/api/payments/complete", json={"imp_uid": "imp_999999999999", "merchant_uid": order["merchant_uid"]}
    )
    assert unknown_payment.status_code == 404
    other = new_order(api)
    imp_uid = sandbox.checkout(other["merchant_uid"], "50000")["imp_uid"]
    crossed = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert crossed.status_code == 400 and "another order" in crossed.json()["message"]


def test_declined_card_is_not_paid(api: httpx.Client, sandbox: SandboxControl) -> None:
    from tests.factories import DECLINED_CARD

    order = new_order(api)
    declined = sandbox.checkout(order["merchant_uid"], "50000", card_number=DECLINED_CARD)
    assert declined["success"] is False
    answer = api.post(
        "/api/payments/complete", json={"imp_uid": declined["imp_uid"], "merchant_uid": order["merchant_uid"]}
    )
    assert answer.status_code == 409 and answer.json()["status"] == "failed"


@pytest.mark.reliability(
    area="hostile input",
    case="bad refund amounts and bodies over the API",
    outcome="4xx with a readable message; nothing sent to PortOne",
)
def test_refund_input(api: httpx.Client, sandbox: SandboxControl) -> None:
    order = new_order(api, "USD")
    imp_uid = sandbox.checkout(order["merchant_uid"], "38.50", "USD")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    url = f"/api/payments/{imp_uid}/refunds"
    no_token = api.post(url, json={"reason": "x"}, headers={"Idempotency-Key": "k1"})
    assert no_token.status_code == 401
    wrong = api.post(url, json={"reason": "x"}, headers={"Authorization": "Bearer nope", "Idempotency-Key": "k"})
    assert wrong.status_code == 401
    no_key = api.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"})
    assert no_key.status_code == 400 and "Idempotency-Key" in no_key.json()["message"]
    cases = [
        ({"reason": "x", "amount": "1.005"}, 400, "at most 2 decimals"),
        ({"reason": "x", "amount": "-1"}, 400, "positive"),
        ({"reason": "x", "amount": "abc"}, 400, "not a number"),
        ({"reason": "x", "amount": "NaN"}, 400, "finite"),
        ({"reason": "", "amount": "1"}, 400, "reason"),
        ({"amount": "1"}, 400, "reason"),
        ({"reason": "x", "amount": "38.51"}, 409, "remainder"),
    ]
    for body, status, fragment in cases:
        answer = api.post(url, json=body, headers=auth_headers())
        assert answer.status_code == status, (body, answer.text)
        assert fragment in answer.json()["message"], (body, answer.text)
    unknown = api.post("/api/payments/imp_nope/refunds", json={"reason": "x"}, headers=auth_headers())
    assert unknown.status_code == 404
    # Nothing was sent to PortOne by any of these.
    assert sandbox.calls()["cancels"] == []


@pytest.mark.reliability(
    area="hostile input",
    case="refund amounts people mistype over the API (1e100, 0,05, 1,00,000)",
    outcome="400 with a readable message; nothing sent to PortOne",
)
def test_refund_amount_text_follows_one_strict_grammar(api: httpx.Client, sandbox: SandboxControl) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    url = f"/api/payments/{imp_uid}/refunds"
    for amount, fragment in [
        ("1e100", "digits"),
        ("0,05", "groups of three"),
        ("1,00,000", "groups of three"),
        ("5.", "no decimals"),
    ]:
        answer = api.post(url, json={"reason": "x", "amount": amount}, headers=auth_headers())
        assert answer.status_code == 400, (amount, answer.text)
        assert fragment in answer.json()["message"], (amount, answer.text)
    huge = api.post(url, content=b'{"reason": "x", "amount": 1e100}', headers=auth_headers())
    assert huge.status_code == 400 and "too large" in huge.json()["message"], huge.text
    assert sandbox.calls()["cancels"] == []
    grouped = api.post(url, json={"reason": "x", "amount": "20,000"}, headers=auth_headers())
    assert grouped.status_code == 201 and grouped.json()["amount"] == 20000, grouped.text
