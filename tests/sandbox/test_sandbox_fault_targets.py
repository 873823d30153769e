"""Faults aimed at one endpoint (fail_only, latency_only, drop_only), and a delayed cancel that is
applied even though its client gave up waiting, as at PortOne."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest


def test_fail_only_hits_the_named_calls_alone(client: Any) -> None:
    imp_uid = client.paid("order-t1", 1000)
    client.token()
    client.config(fail_next=2, fail_only="POST /payments/cancel")
    assert client.get(f"/payments/{imp_uid}").status_code == 200  # not aimed at: passes, counter kept
    assert client.get("/payments/status/all").status_code == 200
    assert client.http.get("/sandbox/config").json()["fail_next"] == 2
    statuses = [client.post("/payments/cancel", json={"imp_uid": imp_uid, "amount": 100}).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert [c["outcome"] for c in client.calls()["cancels"]] == ["fault_500", "fault_500", "applied"]


def test_error_rate_narrowed_to_listing_pages(client: Any) -> None:
    imp_uid = client.paid("order-t2", 1000)
    client.token()
    client.config(error_rate=1.0, fail_only="GET /payments/status")
    assert client.get("/payments/status/all").status_code == 503
    assert client.get(f"/payments/{imp_uid}").status_code == 200


def test_latency_only_delays_the_named_calls_alone(client: Any) -> None:
    imp_uid = client.paid("order-t3", 1000)
    client.token()
    client.config(latency_ms=5000, latency_only="POST /payments/cancel")
    # Not delayed: answers well inside a timeout shorter than the latency.
    assert client.http.get(f"/payments/{imp_uid}", headers=client.headers(), timeout=2.5).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        client.http.post("/payments/cancel", json={"imp_uid": imp_uid}, headers=client.headers(), timeout=0.5)


def test_a_cancel_delayed_past_its_clients_timeout_is_still_applied(client: Any) -> None:
    """PortOne has the whole request before it is slow: the client giving up does not undo it."""
    imp_uid = client.paid("order-t4", 1000)
    client.token()
    client.config(latency_ms=800, latency_only="POST /payments/cancel")
    with pytest.raises(httpx.ReadTimeout):
        client.http.post(
            "/payments/cancel", json={"imp_uid": imp_uid, "amount": 300}, headers=client.headers(), timeout=0.2
        )
    assert client.payment(imp_uid)["cancel_amount"] == 0  # still working on it
    deadline = time.monotonic() + 10
    while client.payment(imp_uid)["cancel_amount"] == 0:
        assert time.monotonic() < deadline, "the delayed cancel was never applied"
        time.sleep(0.05)
    assert client.payment(imp_uid)["cancel_amount"] == 300
    [entry] = client.calls()["cancels"]
    assert entry["outcome"] == "applied"


def test_drop_only_cuts_the_named_calls_alone(client: Any) -> None:
    imp_uid = client.paid("order-t5", 1000)
    client.token()
    client.config(drop_next=1, drop_only="POST /payments/cancel")
    assert client.get(f"/payments/{imp_uid}").status_code == 200
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # cut off mid-answer
        client.post("/payments/cancel", json={"imp_uid": imp_uid})
    assert client.payment(imp_uid)["cancel_amount"] == 0  # dropped before PortOne looked at it
    assert client.http.get("/sandbox/config").json()["drop_next"] == 0


@pytest.mark.parametrize(("body", "status"), [("not_json", None), ("wrong_shape", 202), ("missing_fields", None)])
def test_garble_answers_the_named_call_unreadably_after_applying_it(client: Any, body: str, status: int | None) -> None:
    """PortOne applied the cancel; only its answer is unreadable (a proxy's page, a shape or fields
    a client cannot use), with PortOne's own status or the one set."""
    imp_uid = client.paid("order-g1", 1000)
    client.token()
    client.config(garble_next=1, garble_only="POST /payments/cancel", garble_body=body, garble_status=status)
    assert client.get(f"/payments/{imp_uid}").json()["response"]["imp_uid"] == imp_uid  # not aimed at
    answer = client.post("/payments/cancel", json={"imp_uid": imp_uid, "amount": 300})
    assert answer.status_code == (status or 200)
    if body == "not_json":
        assert answer.headers["content-type"].startswith("text/html")
    elif body == "wrong_shape":
        [envelope] = answer.json()
        assert envelope["response"]["cancel_amount"] == 300
    else:
        assert {"amount", "cancel_amount", "cancel_history", "status"}.isdisjoint(answer.json()["response"])
    assert client.payment(imp_uid)["cancel_amount"] == 300  # applied all the same
    assert [c["outcome"] for c in client.calls()["cancels"]] == ["applied"]
    assert client.http.get("/sandbox/config").json()["garble_next"] == 0
    again = client.post("/payments/cancel", json={"imp_uid": imp_uid, "amount": 300})
    assert again.json()["response"]["cancel_amount"] == 600  # one answer only


def test_garble_on_the_v2_side(client: Any) -> None:
    from tests.v2_support import auth, checkout

    checkout(client.http, "order-g2", 1000)
    patch = {"garble_next": 1, "garble_only": "POST /payments/{paymentId}/cancel", "garble_body": "missing_fields"}
    assert client.http.post("/sandbox/v2/config", json=patch).status_code == 200
    answer = client.http.post("/payments/order-g2/cancel", json={"reason": "x", "amount": 300}, headers=auth())
    assert answer.status_code == 200
    assert {"status", "totalAmount"}.isdisjoint(answer.json()["cancellation"])
    paid = client.http.get("/payments/order-g2", headers=auth()).json()
    assert paid["amount"]["cancelled"] == 300 and paid["status"] == "PARTIAL_CANCELLED"
    assert [c["outcome"] for c in client.http.get("/sandbox/v2/calls").json()["cancels"]] == ["applied"]
