"""Partial cancels PortOne refuses (help/core-service/how-to-use/impossible-partial-cancel.md):
escrow payments, phone payments except through KG Inicis, and cards whose acquirer refuses
(a foreign-issued or point-combined card: config `partial_cancel_refused_cards`)."""

from __future__ import annotations

from typing import Any

FOREIGN_CARD = "5555-5555-5555-4444"


def test_an_escrow_payment_is_cancelled_in_full_only(client: Any) -> None:
    imp_uid = client.paid("order-esc", 30000, escrow=True)
    assert client.payment(imp_uid)["escrow"] is True
    partial = client.cancel(imp_uid=imp_uid, amount=10000, checksum=30000, reason="부분")
    assert partial["code"] == -1 and partial["response"] is None
    assert "에스크로" in partial["message"] and "부분취소" in partial["message"]
    assert client.payment(imp_uid)["cancel_amount"] == 0
    full = client.cancel(imp_uid=imp_uid, checksum=30000, reason="전액")
    assert full["code"] == 0 and full["response"]["status"] == "cancelled"


def test_a_phone_payment_is_cancelled_in_full_only_except_through_inicis(client: Any) -> None:
    phone = client.paid("order-phone", 20000, pay_method="phone", card_number=None)
    partial = client.cancel(imp_uid=phone, amount=5000, reason="부분")
    assert partial["code"] == -1 and "휴대폰" in partial["message"]
    assert client.payment(phone)["cancel_amount"] == 0
    assert client.cancel(imp_uid=phone, amount=20000, reason="전액")["code"] == 0

    inicis = client.paid("order-phone-inicis", 20000, pay_method="phone", pg="html5_inicis", card_number=None)
    assert client.cancel(imp_uid=inicis, amount=5000, reason="부분")["code"] == 0


def test_a_card_the_config_names_is_cancelled_in_full_only(client: Any) -> None:
    client.config(partial_cancel_refused_cards=[FOREIGN_CARD])
    foreign = client.paid("order-foreign", 40000, card_number=FOREIGN_CARD)
    domestic = client.paid("order-domestic", 40000)
    partial = client.cancel(imp_uid=foreign, amount=1000, reason="부분")
    assert partial["code"] == -1 and "부분취소가 불가능" in partial["message"]
    assert client.cancel(imp_uid=domestic, amount=1000, reason="부분")["code"] == 0
    assert client.cancel(imp_uid=foreign, reason="전액")["response"]["status"] == "cancelled"


def test_console_partial_cancel_of_escrow_is_refused_too(client: Any) -> None:
    imp_uid = client.paid("order-esc-console", 30000, escrow=True)
    r = client.http.post(f"/sandbox/payments/{imp_uid}/cancel", json={"amount": "1000"})
    assert r.status_code >= 400 and "에스크로" in r.text
    assert client.payment(imp_uid)["cancel_amount"] == 0


def test_bulk_seeds_an_escrow_payment(client: Any) -> None:
    r = client.http.post(
        "/sandbox/payments/bulk",
        json={"payments": [{"merchant_uid": "bulk-esc", "amount": 9000, "status": "paid", "escrow": True}]},
    )
    assert r.status_code == 200, r.text
    payment = client.get("/payments/find/bulk-esc").json()["response"]
    assert payment["escrow"] is True
    assert client.cancel(imp_uid=payment["imp_uid"], amount=1000, reason="부분")["code"] == -1
