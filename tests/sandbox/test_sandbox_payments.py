"""Payment lookups: single, multiple (207), by merchant_uid, by status (paging), prepare."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from sandbox.payments import PAYMENT_FIELDS

DAY = 86400


def test_get_payment_fields(client: Any) -> None:
    imp_uid = client.paid("order-1", 50000, name="티셔츠", buyer_name="홍길동",
                          buyer_email="a@example.com", buyer_tel="010-1234-5678")  # fmt: skip
    p = client.payment(imp_uid)
    assert list(p) == list(PAYMENT_FIELDS)
    assert re.fullmatch(r"imp_\d{12}", p["imp_uid"])
    assert p["merchant_uid"] == "order-1"
    assert p["amount"] == 50000 and isinstance(p["amount"], int)
    assert p["cancel_amount"] == 0
    assert p["currency"] == "KRW"
    assert p["status"] == "paid"
    assert p["pg_provider"] == "kcp"
    assert p["pay_method"] == "card"
    assert p["card_number"] == "411111******1111"
    assert p["card_name"]
    assert p["name"] == "티셔츠" and p["buyer_name"] == "홍길동"
    assert p["paid_at"] >= p["started_at"] > 0
    assert p["failed_at"] == 0 and p["cancelled_at"] == 0
    assert p["cancel_history"] == [] and p["cancel_receipt_urls"] == []
    receipt = client.http.get(p["receipt_url"])
    assert receipt.status_code == 200
    assert "text/html" in receipt.headers["content-type"]
    assert imp_uid in receipt.text


def test_get_unknown_payment_is_404_envelope(client: Any) -> None:
    r = client.get("/payments/imp_000000000000")
    assert r.status_code == 404
    assert r.json()["code"] != 0
    assert r.json()["response"] is None
    assert r.json()["message"]


def test_multiple_payments_200_207_404(client: Any) -> None:
    a = client.paid("order-a")
    b = client.paid("order-b")
    r = client.get("/payments", params=[("imp_uid[]", a), ("imp_uid[]", b)])
    assert r.status_code == 200
    assert sorted(p["imp_uid"] for p in r.json()["response"]) == sorted([a, b])

    r = client.get("/payments", params=[("imp_uid[]", a), ("imp_uid[]", "imp_000000000001")])
    assert r.status_code == 207
    assert [p["imp_uid"] for p in r.json()["response"]] == [a]

    r = client.get("/payments", params=[("merchant_uid[]", "order-b"), ("merchant_uid[]", "nope")])
    assert r.status_code == 207
    assert [p["imp_uid"] for p in r.json()["response"]] == [b]

    r = client.get("/payments", params=[("imp_uid[]", "imp_000000000001")])
    assert r.status_code == 404
    assert r.json()["response"] is None


def test_find_by_merchant_uid_latest_and_status(client: Any) -> None:
    failed = client.checkout("order-retry", card_number="4000-0000-0000-0002")
    assert not failed["success"]
    paid = client.paid("order-retry")

    found = client.get("/payments/find/order-retry").json()["response"]
    assert found["imp_uid"] == paid  # latest by -started (ties: the later one)
    found = client.get("/payments/find/order-retry", params={"sorting": "started"}).json()
    assert found["response"]["imp_uid"] == failed["imp_uid"]
    assert client.get("/payments/find/order-retry/failed").json()["response"]["imp_uid"] == (failed["imp_uid"])
    assert client.get("/payments/find/order-retry/paid").json()["response"]["imp_uid"] == paid
    assert client.get("/payments/find/order-retry/cancelled").status_code == 404
    assert client.get("/payments/find/no-such-order").status_code == 404
    assert client.get("/payments/find/order-retry", params={"sorting": "bogus"}).status_code == 400

    every = client.get("/payments/findAll/order-retry/paid").json()["response"]
    assert every["total"] == 1 and every["list"][0]["imp_uid"] == paid
    every = client.get("/payments/findAll/order-retry").json()["response"]
    assert every["total"] == 2
    assert client.get("/payments/findAll/no-such-order").status_code == 404


def _seed(client: Any, payments: list[dict[str, Any]]) -> list[str]:
    r = client.http.post("/sandbox/payments/bulk", json={"payments": payments})
    assert r.status_code == 200, r.text
    imp_uids: list[str] = r.json()["imp_uids"]
    return imp_uids


def test_status_listing_paging(client: Any) -> None:
    now = int(time.time())
    _seed(client, [
        {"merchant_uid": f"o{i}", "amount": 1000 + i, "status": "paid",
         "started_at": now - 3600 + i, "paid_at": now - 3600 + i + 5}
        for i in range(45)
    ])  # fmt: skip
    r = client.get("/payments/status/paid")
    assert r.status_code == 200
    page1 = r.json()["response"]
    assert page1["total"] == 45
    assert (page1["previous"], page1["next"]) == (0, 2)
    assert len(page1["list"]) == 20
    started = [p["started_at"] for p in page1["list"]]
    assert started == sorted(started, reverse=True)  # default -started

    page3 = client.get("/payments/status/paid", params={"page": 3}).json()["response"]
    assert len(page3["list"]) == 5
    assert (page3["previous"], page3["next"]) == (2, 0)

    seen = []
    for page in (1, 2, 3):
        data = client.get("/payments/status/paid", params={"page": page, "sorting": "paid"})
        seen += [p["merchant_uid"] for p in data.json()["response"]["list"]]
    assert seen == [f"o{i}" for i in range(45)]

    big = client.get("/payments/status/all", params={"limit": 1000}).json()["response"]
    assert big["total"] == 45 and len(big["list"]) == 45 and big["next"] == 0

    assert client.get("/payments/status/paid", params={"page": 4}).status_code == 400
    assert client.get("/payments/status/paid", params={"page": 0}).status_code == 400
    assert client.get("/payments/status/paid", params={"limit": 1001}).status_code == 400
    assert client.get("/payments/status/refunded").status_code == 400
    assert client.get("/payments/status/paid", params={"sorting": "amount"}).status_code == 400
    empty = client.get("/payments/status/failed").json()["response"]
    assert empty == {"total": 0, "previous": 0, "next": 0, "list": []}


def test_status_from_to_uses_status_timestamp_and_90_day_default(client: Any) -> None:
    now = int(time.time())
    base = now - 10 * DAY
    _seed(client, [
        # started long ago but paid recently: paid filters on paid_at
        {"merchant_uid": "late-paid", "amount": 1000, "status": "paid",
         "started_at": base - 200 * DAY, "paid_at": base},
        {"merchant_uid": "ready", "amount": 1000, "status": "ready", "started_at": base + 10},
        {"merchant_uid": "failed", "amount": 1000, "status": "failed", "started_at": base + 20,
         "failed_at": base + 30},
        {"merchant_uid": "cancelled", "amount": 1000, "status": "cancelled",
         "started_at": base - 100 * DAY, "paid_at": base - 100 * DAY, "cancelled_at": base + 40},
        {"merchant_uid": "old", "amount": 1000, "status": "paid", "started_at": now - 120 * DAY},
    ])  # fmt: skip

    def listed(status: str, **params: Any) -> list[str]:
        r = client.get(f"/payments/status/{status}", params={"limit": 100, **params})
        assert r.status_code == 200, r.text
        return sorted(p["merchant_uid"] for p in r.json()["response"]["list"])

    # Default window: the last 90 days, each payment judged by its status time.
    assert listed("all") == ["cancelled", "failed", "late-paid", "ready"]
    assert listed("paid") == ["late-paid"]
    assert listed("paid", **{"from": base, "to": base}) == ["late-paid"]
    assert listed("paid", **{"from": base + 1}) == []
    assert listed("cancelled", **{"from": base + 40, "to": base + 40}) == ["cancelled"]
    assert listed("failed", **{"from": base + 25, "to": base + 35}) == ["failed"]
    assert listed("ready", **{"from": base, "to": base + 10}) == ["ready"]
    assert listed("all", **{"from": now - 121 * DAY, "to": now - 119 * DAY}) == ["old"]
    too_wide = client.get("/payments/status/all", params={"from": now - 200 * DAY, "to": now})
    assert too_wide.status_code == 400


def test_prepare_endpoints(client: Any) -> None:
    r = client.post("/payments/prepare", json={"merchant_uid": "prep-1", "amount": 50000})
    assert r.status_code == 200
    assert r.json()["response"] == {"merchant_uid": "prep-1", "amount": 50000, "currency": None}

    dup = client.post("/payments/prepare", json={"merchant_uid": "prep-1", "amount": 100})
    assert dup.status_code == 200 and dup.json()["code"] == -1

    r = client.post("/payments/prepare", data={"merchant_uid": "prep-2", "amount": "38.5",
                                                 "currency": "USD"})  # fmt: skip
    assert r.json()["response"] == {"merchant_uid": "prep-2", "amount": 38.5, "currency": "USD"}
    assert '"amount":38.5' in r.text

    r = client.put("/payments/prepare", json={"merchant_uid": "prep-1", "amount": 45000})
    assert r.status_code == 200
    assert r.json()["response"]["amount"] == 45000
    got = client.get("/payments/prepare/prep-1").json()["response"]
    assert got == {"merchant_uid": "prep-1", "amount": 45000, "currency": None}

    assert client.put("/payments/prepare", json={"merchant_uid": "nope", "amount": 1}).status_code == 404
    assert client.get("/payments/prepare/nope").status_code == 404
    assert client.post("/payments/prepare", json={"merchant_uid": "x"}).status_code == 400
    bad = client.post("/payments/prepare", json={"merchant_uid": "x", "amount": 1.5, "currency": "KRW"})
    assert bad.status_code == 400


@pytest.mark.parametrize("n", [100, 101])
def test_multiple_lookup_limit(client: Any, n: int) -> None:
    imp_uid = client.paid("order-many")
    r = client.get("/payments", params=[("imp_uid[]", imp_uid)] * n)
    assert r.status_code == (200 if n <= 100 else 400)


def test_empty_first_page_answers_either_way(client: Any) -> None:
    """Page 1 of an empty window: 200 with an empty list, or 400 like any page past the data
    (schema/v1.openapi.json allows 400 "데이터 범위를 넘어선 page인 경우"): config empty_first_page."""
    client.paid("o-one", 1000)
    assert client.get("/payments/status/failed").status_code == 200
    client.config(empty_first_page="out_of_range")
    refused = client.get("/payments/status/failed")
    assert refused.status_code == 400 and refused.json()["code"] != 0 and refused.json()["response"] is None
    assert client.get("/payments/findAll/o-one/failed").status_code == 400
    assert client.get("/payments/status/paid").json()["response"]["total"] == 1  # not empty: as before
