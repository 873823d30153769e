"""POST /payments/cancel: partial/full, checksum, refusals, concurrency, timeout-after-apply."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest


def test_partial_then_full_cancel_with_checksum(client: Any) -> None:
    imp_uid = client.paid("order-c1", 10000)
    body = client.cancel(imp_uid=imp_uid, amount=3000, checksum=10000, reason="부분 환불")
    assert body["code"] == 0
    p = body["response"]
    assert p["status"] == "paid"  # partial cancel keeps paid
    assert p["cancel_amount"] == 3000
    assert p["cancelled_at"] > 0
    assert p["cancel_reason"] == "부분 환불"
    [entry] = p["cancel_history"]
    assert set(entry) == {"pg_tid", "amount", "cancelled_at", "reason", "cancellation_id",
                          "receipt_url"}  # fmt: skip
    assert entry["amount"] == 3000 and entry["reason"] == "부분 환불"
    assert entry["pg_tid"] == p["pg_tid"] and entry["cancellation_id"]
    assert p["cancel_receipt_urls"] == [entry["receipt_url"]]
    assert client.http.get(entry["receipt_url"]).status_code == 200

    stale = client.cancel(imp_uid=imp_uid, amount=1000, checksum=10000)
    assert stale["code"] == -1 and stale["response"] is None
    assert "checksum" in stale["message"]

    rest = client.cancel(imp_uid=imp_uid, checksum=7000, reason="전액")  # amount omitted
    assert rest["code"] == 0
    p = rest["response"]
    assert p["status"] == "cancelled" and p["cancel_amount"] == 10000
    assert [h["amount"] for h in p["cancel_history"]] == [3000, 7000]
    assert len(p["cancel_receipt_urls"]) == 2
    assert len({h["cancellation_id"] for h in p["cancel_history"]}) == 2

    again = client.cancel(imp_uid=imp_uid)
    # PortOne answers a cancel of a fully cancelled payment, and of a missing one, with code 1
    # (HTTP 200, a non-zero code with its message: v1.openapi.json ResponseAnnotation).
    assert again["code"] == 1 and again["message"] == "이미 전액취소된 주문입니다." and again["response"] is None


def test_amount_zero_means_full_and_over_remainder_refused(client: Any) -> None:
    imp_uid = client.paid("order-c2", 5000)
    over = client.cancel(imp_uid=imp_uid, amount=5001)
    assert over["code"] == -1 and over["response"] is None
    assert client.payment(imp_uid)["cancel_amount"] == 0
    full = client.cancel(imp_uid=imp_uid, amount=0)
    assert full["response"]["status"] == "cancelled"
    assert full["response"]["cancel_amount"] == 5000


def test_cancel_by_merchant_uid_and_form_encoding(client: Any) -> None:
    client.paid("order-c3", 20000)
    r = client.post("/payments/cancel", data={"merchant_uid": "order-c3", "amount": "5000",
                                              "checksum": "20000", "reason": "form"})  # fmt: skip
    assert r.status_code == 200 and r.json()["code"] == 0
    assert r.json()["response"]["cancel_amount"] == 5000


def test_unknown_imp_uid_wins_over_valid_merchant_uid(client: Any) -> None:
    client.paid("order-c4", 1000)
    body = client.cancel(imp_uid="imp_000000000000", merchant_uid="order-c4")
    assert body["code"] == 1 and body["message"] == "취소할 결제건이 존재하지 않습니다." and body["response"] is None
    assert client.get("/payments/find/order-c4").json()["response"]["cancel_amount"] == 0


def test_cancel_refusals_for_unpaid_and_bad_requests(client: Any) -> None:
    failed = client.checkout("order-c5", 1000, card_number="4000000000000002")
    assert client.cancel(imp_uid=failed["imp_uid"])["code"] == -1
    r = client.post("/payments/cancel", json={"reason": "no id"})
    assert r.status_code == 400 and r.json()["code"] == -1
    imp_uid = client.paid("order-c6", 1000)
    r = client.post("/payments/cancel", json={"imp_uid": imp_uid, "amount": "lots"})
    assert r.status_code == 400
    assert client.cancel(imp_uid=imp_uid, amount="0.5")["code"] == -1  # KRW has no decimals
    assert client.cancel(imp_uid=imp_uid, amount=-1)["code"] == -1


def test_usd_partial_cancel_is_exact(client: Any) -> None:
    imp_uid = client.paid("order-usd", "38.5", currency="USD", pg="eximbay")
    body = client.cancel(imp_uid=imp_uid, amount="10.25", checksum="38.50")
    assert body["code"] == 0
    r = client.post("/payments/cancel", json={"imp_uid": imp_uid, "amount": 0.1, "checksum": 28.25})
    assert r.json()["code"] == 0
    raw = client.get(f"/payments/{imp_uid}").text
    assert '"cancel_amount":10.35,' in raw
    assert '"amount":0.1,' in raw


def _parallel(n: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_cancels_never_exceed_remainder(client: Any) -> None:
    imp_uid = client.paid("order-race", 10000)
    token = client.token()

    def cancel(_: int) -> int:
        with httpx.Client(base_url=client.url, trust_env=False, timeout=10) as http:
            r = http.post("/payments/cancel", headers={"Authorization": token},
                          json={"imp_uid": imp_uid, "amount": 1000})  # fmt: skip
            code: int = r.json()["code"]
            return code

    codes = _parallel(20, cancel)
    assert codes.count(0) == 10 and codes.count(1) == 10  # the rest: already fully cancelled (code 1)
    p = client.payment(imp_uid)
    assert p["cancel_amount"] == 10000 and p["status"] == "cancelled"
    assert len(p["cancel_history"]) == 10
    assert client.calls()["cancel_summary"] == {"applied": 10, "refused": 10}


def test_concurrent_cancels_with_same_checksum_apply_once(client: Any) -> None:
    imp_uid = client.paid("order-race2", 10000)
    token = client.token()

    def cancel(_: int) -> int:
        with httpx.Client(base_url=client.url, trust_env=False, timeout=10) as http:
            r = http.post("/payments/cancel", headers={"X-ImpTokenHeader": token},
                          data={"imp_uid": imp_uid, "amount": "1000", "checksum": "10000"})  # fmt: skip
            code: int = r.json()["code"]
            return code

    codes = _parallel(20, cancel)
    assert codes.count(0) == 1
    assert client.payment(imp_uid)["cancel_amount"] == 1000


def test_cancel_timeout_after_apply_applies_exactly_once(client: Any, wait: Any) -> None:
    imp_uid = client.paid("order-hang", 10000)
    client.config(cancel_timeout_after_apply=1, cancel_hang_seconds=1.5)
    with pytest.raises(httpx.ReadTimeout):
        client.http.post("/payments/cancel", headers=client.headers(), timeout=0.5,
                         json={"imp_uid": imp_uid, "amount": 4000, "checksum": 10000})  # fmt: skip
    # The outcome is unknown to the client, but the cancel was applied.
    wait(lambda: client.calls()["cancels"])
    p = client.payment(imp_uid)
    assert p["cancel_amount"] == 4000 and p["status"] == "paid"
    # A blind retry with the same checksum is refused: no double refund.
    retry = client.cancel(imp_uid=imp_uid, amount=4000, checksum=10000)
    assert retry["code"] == -1
    calls = client.calls()
    assert [c["outcome"] for c in calls["cancels"]] == ["applied", "refused"]
    assert calls["cancels"][0]["response_delayed_seconds"] == 1.5
    assert calls["cancels"][1]["response_delayed_seconds"] is None
    assert calls["counts"]["POST /payments/cancel"] == 2
    assert client.http.get("/sandbox/config").json()["cancel_timeout_after_apply"] == 0


def test_console_cancel_sends_webhook(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    imp_uid = client.paid("order-console", 10000)
    receiver.wait_for(1)
    r = client.http.post(f"/sandbox/payments/{imp_uid}/cancel", json={"amount": 2500,
                                                                       "reason": "콘솔"})  # fmt: skip
    assert r.status_code == 200
    cancellation_id = r.json()["cancellation_id"]
    hook = receiver.wait_for(2)[1]["body"]
    assert hook == {"imp_uid": imp_uid, "merchant_uid": "order-console", "status": "cancelled",
                    "cancellation_id": cancellation_id}  # fmt: skip
    p = client.payment(imp_uid)
    assert p["status"] == "paid" and p["cancel_amount"] == 2500
    assert p["cancel_history"][0]["cancellation_id"] == cancellation_id

    full = client.http.post(f"/sandbox/payments/{imp_uid}/cancel", json={})
    assert full.json()["payment"]["status"] == "cancelled"
    assert receiver.wait_for(3)[2]["body"]["status"] == "cancelled"
    assert client.http.post(f"/sandbox/payments/{imp_uid}/cancel", json={}).status_code == 409
    assert client.http.post("/sandbox/payments/imp_000000000000/cancel", json={}).status_code == 404
    # Console cancels are not V1 calls.
    assert client.calls()["cancels"] == []


def test_api_cancel_sends_no_webhook_by_default(client: Any, receiver: Any, wait: Any) -> None:
    client.config(webhook_url=receiver.url)
    imp_uid = client.paid("order-api-cancel", 1000)
    receiver.wait_for(1)
    client.cancel(imp_uid=imp_uid)
    client.config(webhook_on_api_cancel=True)
    imp2 = client.paid("order-api-cancel-2", 1000)
    receiver.wait_for(2)  # deliveries are independent: keep the order for the asserts
    body = client.cancel(imp_uid=imp2)
    hooks = receiver.wait_for(3)
    assert [h["body"]["imp_uid"] for h in hooks] == [imp_uid, imp2, imp2]
    assert hooks[2]["body"]["cancellation_id"] == body["response"]["cancel_history"][0]["cancellation_id"]


# -- virtual-account refunds (opi/ko/integration/cancel/v1/basic.md, cancel/v1/virtual-account.md) --


def test_a_paid_virtual_account_is_refunded_only_to_an_account_given_with_the_cancel(client: Any) -> None:
    imp_uid = client.checkout("order-vb-c1", 30000, pay_method="vbank", card_number=None)["imp_uid"]
    assert client.http.post(f"/sandbox/payments/{imp_uid}/deposit").status_code == 200

    missing = client.cancel(imp_uid=imp_uid, amount=10000, checksum=30000, reason="환불",
                            refund_holder="홍길동", refund_bank="BK88")  # fmt: skip
    assert missing["code"] != 0 and missing["response"] is None
    assert "refund_account" in missing["message"] and "가상계좌" in missing["message"]
    assert client.payment(imp_uid)["cancel_amount"] == 0

    done = client.cancel(imp_uid=imp_uid, amount=10000, checksum=30000, reason="환불",
                         refund_holder="홍길동", refund_bank="BK88", refund_account="56211105948400")  # fmt: skip
    assert done["code"] == 0 and done["response"]["cancel_amount"] == 10000
    [kept] = [c for c in client.calls()["cancels"] if c["outcome"] == "applied"]
    assert kept["refund_account"] == {"holder": "홍길동", "bank": "BK88", "number": "56211105948400"}


def test_a_card_cancel_needs_no_refund_account(client: Any) -> None:
    imp_uid = client.paid("order-vb-c2", 5000)
    assert client.cancel(imp_uid=imp_uid, amount=1000, checksum=5000)["code"] == 0


def test_a_pg_that_cannot_refund_a_virtual_account_refuses_even_with_one(client: Any) -> None:
    # help/core-service/how-to-use/impossible-partial-cancel.md: 다날 cannot refund a virtual account.
    imp_uid = client.checkout("order-vb-c3", 30000, pay_method="vbank", pg="danal_tpay", card_number=None)["imp_uid"]
    assert client.http.post(f"/sandbox/payments/{imp_uid}/deposit").status_code == 200
    refused = client.cancel(imp_uid=imp_uid, refund_holder="홍길동", refund_bank="088", refund_account="5621110594")
    assert refused["code"] != 0 and "환불" in refused["message"]
    assert client.payment(imp_uid)["cancel_amount"] == 0


def test_v2_virtual_account_cancel_needs_refund_account(client: Any) -> None:
    from tests.v2_support import auth, checkout

    http = client.http
    assert checkout(http, "v2-vb-c1", 30000, pay_method="virtual_account")["status"] == "VIRTUAL_ACCOUNT_ISSUED"
    assert http.post("/sandbox/v2/payments/v2-vb-c1/deposit").status_code == 200
    missing = http.post("/payments/v2-vb-c1/cancel", headers=auth(), json={"reason": "환불", "amount": 10000})
    assert missing.status_code == 400 and missing.json()["type"] == "INVALID_REQUEST"
    assert "refundAccount" in missing.json()["message"]
    bad_bank = http.post("/payments/v2-vb-c1/cancel", headers=auth(), json={
        "reason": "환불", "amount": 10000,
        "refundAccount": {"bank": "88", "number": "56211105948400", "holderName": "홍길동"}})  # fmt: skip
    assert bad_bank.status_code == 400 and bad_bank.json()["type"] == "INVALID_REQUEST"
    account = {"bank": "SHINHAN", "number": "56211105948400", "holderName": "홍길동"}
    done = http.post("/payments/v2-vb-c1/cancel", headers=auth(),
                     json={"reason": "환불", "amount": 10000, "refundAccount": account})  # fmt: skip
    assert done.status_code == 200 and done.json()["cancellation"]["status"] == "SUCCEEDED"
    [kept] = [c for c in http.get("/sandbox/v2/calls").json()["cancels"] if c["outcome"] == "applied"]
    assert kept["refund_account"] == account


def test_v2_a_pg_that_cannot_refund_a_virtual_account_answers_pg_provider_error(client: Any) -> None:
    from tests.v2_support import auth, checkout

    http = client.http
    checkout(http, "v2-vb-c2", 30000, pay_method="virtual_account", pg="danal")
    assert http.post("/sandbox/v2/payments/v2-vb-c2/deposit").status_code == 200
    account = {"bank": "SHINHAN", "number": "56211105948400", "holderName": "홍길동"}
    refused = http.post("/payments/v2-vb-c2/cancel", headers=auth(), json={"reason": "환불", "refundAccount": account})
    assert refused.status_code == 502 and refused.json()["type"] == "PG_PROVIDER"
    assert refused.json()["pgCode"] and refused.json()["pgMessage"]
