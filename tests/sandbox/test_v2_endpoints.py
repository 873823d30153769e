"""The sandbox's PortOne V2 REST endpoints: auth, the paths shared with V1, get, list, cancel and
pre-register, as the V2 API documents them (integer minor units, typed errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from sandbox.testing import RunningSandbox
from tests.v2_support import STORE_ID, auth, calls, checkout, configure


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as client:
        yield client


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_auth_secret_and_the_paths_shared_with_v1(http: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout(http, "auth-1", 50000)
    assert http.get("/payments/auth-1", headers=auth()).status_code == 200
    wrong = http.get("/payments/auth-1", headers=auth("not-the-secret"))
    assert wrong.status_code == 401 and wrong.json()["type"] == "UNAUTHORIZED"
    # No PortOne scheme: the request belongs to V1, which answers with its own envelope.
    v1 = http.get("/payments/auth-1")
    assert v1.status_code == 401 and v1.json() == {"code": -1, "message": "Unauthorized", "response": None}
    # V2-only paths answer V2 errors whatever the header.
    cancel = http.post("/payments/auth-1/cancel", json={"reason": "x"})
    assert cancel.status_code == 401 and cancel.json()["type"] == "UNAUTHORIZED"
    # The secret comes from PORTONE_V2_API_SECRET when set.
    monkeypatch.setenv("PORTONE_V2_API_SECRET", "secret-from-env")
    assert http.get("/payments/auth-1", headers=auth()).status_code == 401
    assert http.get("/payments/auth-1", headers=auth("secret-from-env")).status_code == 200


def test_v1_and_v2_payments_are_served_by_their_own_api(http: httpx.Client, sandbox: RunningSandbox) -> None:
    v2 = checkout(http, "both-v2", 50000)
    v1 = http.post(
        "/sandbox/checkout", json={"merchant_uid": "both-v1", "amount": 50000, "card_number": "4111111111111111"}
    ).json()
    assert v1["imp_uid"].startswith("imp_") and v2["paymentId"] == "both-v2"
    token = http.post("/users/getToken", json={"imp_key": "test-imp-key", "imp_secret": "test-imp-secret"}).json()
    bearer = {"Authorization": f"Bearer {token['response']['access_token']}"}
    assert http.get(f"/payments/{v1['imp_uid']}", headers=bearer).json()["response"]["merchant_uid"] == "both-v1"
    assert http.get("/payments/both-v2", headers=bearer).status_code == 404  # V1 does not know V2's
    assert http.get(f"/payments/{v1['imp_uid']}", headers=auth()).json()["type"] == "PAYMENT_NOT_FOUND"
    listed = http.get("/payments", headers=auth()).json()
    assert [p["id"] for p in listed["items"]] == ["both-v2"]
    # V1's multi-get on the same path still answers V1.
    assert http.get("/payments", params={"imp_uid[]": v1["imp_uid"]}, headers=bearer).json()["code"] == 0


def test_get_payment_store_and_not_found(http: httpx.Client) -> None:
    checkout(http, "get-1", "38.50", "USD", order_name="탁송비", buyer_email="kim@example.com")
    body = http.get("/payments/get-1", headers=auth(), params={"storeId": STORE_ID}).json()
    assert body["status"] == "PAID" and body["id"] == "get-1" and body["storeId"] == STORE_ID
    assert body["amount"]["total"] == 3850 and body["amount"]["cancelled"] == 0
    assert body["currency"] == "USD" and body["version"] == "V2" and body["orderName"] == "탁송비"
    assert body["customer"] == {"email": "kim@example.com"}
    assert body["paidAt"].endswith("Z") and body["receiptUrl"].endswith("/sandbox/v2/receipts/get-1")
    assert http.get(body["receiptUrl"]).status_code == 200
    other_store = http.get("/payments/get-1", headers=auth(), params={"storeId": "store-other"})
    assert other_store.status_code == 403 and other_store.json()["type"] == "FORBIDDEN"
    missing = http.get("/payments/nope", headers=auth())
    assert missing.status_code == 404 and missing.json()["type"] == "PAYMENT_NOT_FOUND"


def test_list_filters_sorting_and_pages(http: httpx.Client) -> None:
    for n in range(5):
        checkout(http, f"list-{n}", 1000 + n)
    checkout(http, "list-usd", "6.00", "USD")
    checkout(http, "list-failed", 1000, card_number="4000-0000-0000-0002")
    http.post("/payments/list-0/cancel", headers=auth(), json={"reason": "part", "amount": 100})

    def page(body: dict[str, object]) -> dict[str, object]:
        response = http.get("/payments", headers=auth(), params={"requestBody": json.dumps(body)})
        assert response.status_code == 200, response.text
        return dict(response.json())

    everything = page({"page": {"size": 100}})
    assert everything["page"] == {"number": 0, "size": 100, "totalCount": 7}
    ids = [p["id"] for p in everything["items"]]  # type: ignore[attr-defined]
    assert ids[0] == "list-failed" and ids[-1] == "list-0"  # newest request first
    ascending = page({"filter": {"sortOrder": "ASC"}, "page": {"size": 100}})
    assert [p["id"] for p in ascending["items"]] == ids[::-1]  # type: ignore[attr-defined]
    paid = page({"filter": {"status": ["PAID", "PARTIAL_CANCELLED"]}, "page": {"size": 100}})
    assert paid["page"]["totalCount"] == 6  # type: ignore[index]
    assert page({"filter": {"status": ["FAILED"]}})["page"]["totalCount"] == 1  # type: ignore[index]
    assert page({"filter": {"currency": "USD"}})["items"][0]["amount"]["total"] == 600  # type: ignore[index]
    second = page({"page": {"number": 1, "size": 3}})
    assert [p["id"] for p in second["items"]] == ids[3:6]  # type: ignore[attr-defined]
    future = datetime.now(UTC) + timedelta(days=1)
    assert page({"filter": {"from": _iso(future), "until": _iso(future + timedelta(days=1))}})["items"] == []
    # The body may also come as JSON (x-portone-query-or-body).
    as_body = http.request("GET", "/payments", headers=auth(), json={"page": {"size": 2}}).json()
    assert as_body["page"] == {"number": 0, "size": 2, "totalCount": 7}
    for bad in ({"page": {"size": 1001}}, {"filter": {"status": ["PAYED"]}}, {"filter": {"from": "yesterday"}}):
        refused = http.get("/payments", headers=auth(), params={"requestBody": json.dumps(bad)})
        assert refused.status_code == 400 and refused.json()["type"] == "INVALID_REQUEST", bad


def test_list_by_store_the_read_check_config_makes(http: httpx.Client) -> None:
    """One page of one payment of the store (GET /payments, filter.storeId): 200 for our store, 403
    FORBIDDEN for a store the secret may not read (ForbiddenError in v2.openapi.json), 401 for a
    secret PortOne refuses."""
    checkout(http, "store-1", 1000)
    now = datetime.now(UTC)
    window = {"from": _iso(now - timedelta(minutes=1)), "until": _iso(now + timedelta(seconds=1))}

    def listing(store_id: str, secret: str | None = None) -> httpx.Response:
        body = {"page": {"number": 0, "size": 1}, "filter": {"storeId": store_id, **window}}
        return http.get(
            "/payments", headers=auth(secret) if secret else auth(), params={"requestBody": json.dumps(body)}
        )

    ours = listing(STORE_ID)
    assert ours.status_code == 200 and [p["id"] for p in ours.json()["items"]] == ["store-1"], ours.text
    other = listing("store-00000000-1111-4222-8333-444444444444")
    assert other.status_code == 403 and other.json()["type"] == "FORBIDDEN"
    assert listing(STORE_ID, "not-the-secret").status_code == 401


def test_cancel_partial_full_and_every_refusal(http: httpx.Client) -> None:
    checkout(http, "c-1", 50000)
    checkout(http, "c-failed", 50000, card_number="4000-0000-0000-0002")

    def cancel(payment_id: str, **body: object) -> httpx.Response:
        return http.post(f"/payments/{payment_id}/cancel", headers=auth(), json=body)

    partial = cancel("c-1", reason="부분", amount=20000, currentCancellableAmount=50000)
    assert partial.status_code == 200
    cancellation = partial.json()["cancellation"]
    assert cancellation["status"] == "SUCCEEDED" and cancellation["totalAmount"] == 20000
    payment = http.get("/payments/c-1", headers=auth()).json()
    assert payment["status"] == "PARTIAL_CANCELLED" and payment["amount"]["cancelled"] == 20000
    assert [c["id"] for c in payment["cancellations"]] == [cancellation["id"]]

    refusals = [
        (cancel("c-1", reason="r", amount=1, currentCancellableAmount=50000), 409,
         "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN"),
        (cancel("c-1", reason="r", amount=30001), 409, "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT"),
        (cancel("c-failed", reason="r"), 409, "PAYMENT_NOT_PAID"),
        (cancel("c-none", reason="r"), 404, "PAYMENT_NOT_FOUND"),
        (cancel("c-1", amount=1), 400, "INVALID_REQUEST"),
        (http.post("/payments/c-1/cancel", headers=auth(), content=b'{"reason":"r","amount":10.5}'), 400,
         "INVALID_REQUEST"),
        (cancel("c-1", reason="r", storeId="store-other"), 403, "FORBIDDEN"),
    ]  # fmt: skip
    for response, status, kind in refusals:
        assert (response.status_code, response.json()["type"]) == (status, kind)
    assert http.get("/payments/c-1", headers=auth()).json()["amount"]["cancelled"] == 20000  # nothing moved

    rest = cancel("c-1", reason="나머지", currentCancellableAmount=30000)
    assert rest.json()["cancellation"]["totalAmount"] == 30000
    final = http.get("/payments/c-1", headers=auth()).json()
    assert final["status"] == "CANCELLED" and final["amount"]["cancelled"] == 50000
    assert cancel("c-1", reason="again").json()["type"] == "PAYMENT_ALREADY_CANCELLED"
    log = calls(http)["cancels"]
    assert [c["outcome"] for c in log] == ["applied", *["refused"] * 4, *["invalid"] * 3, "applied", "refused"]


def test_pre_register_is_enforced_at_checkout(http: httpx.Client) -> None:
    ok = http.post("/payments/pre-1/pre-register", headers=auth(), json={"totalAmount": 3850, "currency": "USD"})
    assert ok.status_code == 200 and ok.json() == {}
    refused = checkout(http, "pre-1", "38.51", "USD")
    assert refused["code"] == "PRE_REGISTERED_AMOUNT_MISMATCH" and refused["txId"] is None
    assert http.get("/payments/pre-1", headers=auth()).status_code == 404
    assert checkout(http, "pre-1", "38.50", "USD")["status"] == "PAID"
    again = http.post("/payments/pre-1/pre-register", headers=auth(), json={"totalAmount": 1})
    assert again.status_code == 409 and again.json()["type"] == "ALREADY_PAID"
    bad = http.post("/payments/pre-2/pre-register", headers=auth(), json={"totalAmount": "3850"})
    assert bad.status_code == 400 and bad.json()["type"] == "INVALID_REQUEST"


def test_faults_and_reset(http: httpx.Client) -> None:
    checkout(http, "f-1", 1000)
    configure(http, fail_next=1)
    assert http.get("/payments/f-1", headers=auth()).status_code == 500
    assert http.get("/payments/f-1", headers=auth()).status_code == 200
    configure(http, fail_next=1, fault_body="html")
    html = http.get("/payments/f-1", headers=auth())
    assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
    assert calls(http)["counts"]["GET /payments/{paymentId}"] == 3
    assert http.post("/sandbox/reset").status_code == 200
    assert http.get("/payments/f-1", headers=auth()).status_code == 404
    assert calls(http)["total"] == 1 and http.get("/sandbox/v2/config").json()["fault_body"] == "json"


def test_total_count_answers_either_reading(http: httpx.Client) -> None:
    """PageInfo.totalCount's title is "실제 반환된 객체 수" (schema/v2.openapi.json): config total_count
    "returned" answers the count of this page's items, "total" (default) every match."""
    for n in range(3):
        checkout(http, f"tc-{n}", 1000 + n)

    def count(size: int) -> object:
        body = json.dumps({"page": {"size": size}})
        return http.get("/payments", headers=auth(), params={"requestBody": body}).json()["page"]["totalCount"]

    assert count(2) == 3
    configure(http, total_count="returned")
    assert count(2) == 2 and count(10) == 3
