"""POST /sandbox/payments/bulk: seeding as given, validation, and volume."""

from __future__ import annotations

import json
import time
from typing import Any

DAY = 86400


def test_bulk_fields_as_given(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    now = int(time.time())
    r = client.http.post("/sandbox/payments/bulk", json={"payments": [
        {"imp_uid": "imp_123456789012", "merchant_uid": "seed-1", "amount": 50000,
         "status": "paid", "started_at": now - 100, "paid_at": now - 90,
         "card_number": "4111111111111111", "card_name": "신한카드", "name": "상품",
         "buyer_email": "b@example.com", "custom_data": {"order": 1}},
        {"merchant_uid": "seed-2", "amount": "38.5", "currency": "usd", "status": "cancelled",
         "cancelled_at": now - 10, "cancel_history": [{"amount": "38.5", "reason": "고객 요청",
                                                      "cancelled_at": now - 10}]},
        {"merchant_uid": "seed-3", "amount": 20000, "status": "paid", "cancel_amount": 5000},
        {"merchant_uid": "seed-4", "amount": 1000, "status": "ready", "pay_method": "vbank",
         "vbank_num": "12345678901234", "vbank_date": now + DAY},
        {"merchant_uid": "seed-5", "amount": 1000, "status": "failed", "fail_reason": "한도초과"},
    ]})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["inserted"] == 5 and body["imp_uids"][0] == "imp_123456789012"
    p1, p2, p3, p4, p5 = (client.payment(u) for u in body["imp_uids"])

    assert (p1["started_at"], p1["paid_at"]) == (now - 100, now - 90)
    assert p1["card_number"] == "411111******1111" and p1["custom_data"] == '{"order":1}'
    assert p2["currency"] == "USD" and p2["pg_provider"] == "eximbay"
    assert p2["cancel_amount"] == 38.5 and p2["status"] == "cancelled"
    assert p2["cancel_history"][0]["reason"] == "고객 요청"
    assert p2["cancel_history"][0]["cancelled_at"] == now - 10
    assert p3["cancel_amount"] == 5000 and len(p3["cancel_history"]) == 1
    assert p4["vbank_num"] == "12345678901234" and p4["vbank_date"] == now + DAY
    assert p4["paid_at"] == 0
    assert p5["failed_at"] > 0 and p5["fail_reason"] == "한도초과"

    # Seeded payments behave like any other: cancellable, with checksum.
    assert client.cancel(imp_uid=p3["imp_uid"], amount=5000, checksum=15000)["code"] == 0
    time.sleep(0.1)
    assert receiver.received == []  # bulk sends no webhooks


def test_bulk_validation_is_all_or_nothing(client: Any) -> None:
    bad_batches = [
        {"payments": [{"merchant_uid": "a", "amount": 1}, {"merchant_uid": "b"}]},
        {"payments": [{"merchant_uid": "a", "amount": 1, "colour": "red"}]},
        {"payments": [{"merchant_uid": "a", "amount": 1, "status": "refunded"}]},
        {"payments": [{"merchant_uid": "a", "amount": 1, "paid_at": "yesterday"}]},
        {"payments": [{"merchant_uid": "a", "amount": 10, "cancel_amount": 11}]},
        {"payments": [{"imp_uid": "imp_1", "merchant_uid": "a", "amount": 1},
                      {"imp_uid": "imp_1", "merchant_uid": "b", "amount": 1}]},
        {"payments": "nope"},
    ]  # fmt: skip
    for batch in bad_batches:
        r = client.http.post("/sandbox/payments/bulk", json=batch)
        assert r.status_code == 400, batch
        assert r.json()["error"]
    assert client.get("/payments/status/all").json()["response"]["total"] == 0


def test_bulk_100k_and_window_paging(client: Any) -> None:
    now = int(time.time())
    start = now - 60 * DAY
    n = 100_000
    payments = [
        {"merchant_uid": f"vol-{i}", "amount": 1000 + i % 997, "status": "paid",
         "started_at": start + i * 30, "paid_at": start + i * 30 + 7}
        for i in range(n)
    ]  # fmt: skip
    body = json.dumps({"payments": payments}).encode()
    r = client.http.post("/sandbox/payments/bulk", content=body, timeout=120,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and r.json()["inserted"] == n

    # One day of paid_at, walked page by page in paid order.
    day_from, day_to = start + 10 * DAY, start + 11 * DAY - 1
    expected = [i for i in range(n) if day_from <= start + i * 30 + 7 <= day_to]
    seen: list[str] = []
    page = 1
    while True:
        r = client.get("/payments/status/paid", params={
            "from": day_from, "to": day_to, "limit": 1000, "page": page, "sorting": "paid"})  # fmt: skip
        data = r.json()["response"]
        assert data["total"] == len(expected)
        seen += [p["merchant_uid"] for p in data["list"]]
        if not data["next"]:
            break
        page = data["next"]
    assert seen == [f"vol-{i}" for i in expected]  # speed is the benchmarks' business, not a test's
    # Default sort (-started) over the whole set, deep page.
    deep = client.get("/payments/status/all", params={"limit": 1000, "page": 100})
    assert deep.json()["response"]["list"][-1]["merchant_uid"] == "vol-0"
