"""Webhook delivery: body, content types, retries, duplicates, drops, hold/flush, shutdown."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx

from sandbox.config import SandboxConfig
from sandbox.testing import run_sandbox_in_thread


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/webhook"


def test_paid_webhook_json_body(client: Any, receiver: Any, wait: Any) -> None:
    client.config(webhook_url=receiver.url)
    imp_uid = client.paid("order-w1")
    [hook] = receiver.wait_for(1)
    assert hook["path"] == "/webhook"
    assert hook["content_type"].startswith("application/json")
    assert hook["body"] == {"imp_uid": imp_uid, "merchant_uid": "order-w1", "status": "paid"}
    [d] = wait(lambda: [d for d in client.deliveries() if d["state"] == "delivered"])
    assert d["attempts"][0]["status_code"] == 200 and d["event"] == "checkout"


def test_failed_payment_sends_no_webhook(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    client.checkout("order-w-failed", card_number="4000000000000002")
    client.paid("order-w-after")
    assert [h["body"]["merchant_uid"] for h in receiver.wait_for(1)] == ["order-w-after"]


def test_notice_url_overrides_config(client: Any, receiver: Any) -> None:
    client.config(webhook_url=_closed_port_url())
    imp_uid = client.paid("order-w2", notice_url=receiver.url + "?from=notice")
    hook = receiver.wait_for(1)[0]
    assert hook["path"] == "/webhook?from=notice" and hook["body"]["imp_uid"] == imp_uid


def test_form_content_type(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url, webhook_content_type="form")
    imp_uid = client.paid("order-w3")
    hook = receiver.wait_for(1)[0]
    assert hook["content_type"] == "application/x-www-form-urlencoded"
    assert hook["body"] == {"imp_uid": imp_uid, "merchant_uid": "order-w3", "status": "paid"}


def test_a_webhook_is_sent_once_by_default(client: Any, receiver: Any, wait: Any) -> None:
    """readme-v1.md: "웹훅은 기본적으로 1회 전송되도록 설정되어 있습니다" - no redelivery unless PortOne's
    support switched it on, whatever the answer."""
    cfg = client.http.get("/sandbox/config").json()
    assert cfg["webhook_retries"] is False and cfg["webhook_retry_interval_ms"] == 60_000
    client.config(webhook_url=receiver.url)
    receiver.responses = [503]
    client.paid("order-w-once")
    [d] = wait(lambda: [d for d in client.deliveries() if d["state"] == "failed"])
    time.sleep(1.5)  # longer than any retry delay the sandbox ever used by default
    assert [h["answered"] for h in receiver.received] == [503]
    assert [a["status_code"] for a in client.deliveries()[0]["attempts"]] == [503] and d["event"] == "checkout"
    client.paid("order-w-once-closed", notice_url=_closed_port_url())
    [closed] = wait(lambda: [d for d in client.deliveries() if d["merchant_uid"] == "order-w-once-closed"
                             and d["state"] == "failed"])  # fmt: skip
    time.sleep(1.5)
    assert len(closed["attempts"]) == 1 and closed["attempts"][0]["status_code"] is None


def test_retry_on_5xx_when_switched_on(client: Any, receiver: Any, wait: Any) -> None:
    client.config(webhook_url=receiver.url, webhook_retries=True, webhook_retry_interval_ms=50)
    receiver.responses = [500, 503]
    client.paid("order-w4")
    hooks = receiver.wait_for(3)
    assert [h["answered"] for h in hooks] == [500, 503, 200]
    [d] = wait(lambda: [d for d in client.deliveries() if d["state"] == "delivered"])
    assert [a["status_code"] for a in d["attempts"]] == [500, 503, 200]


def test_a_4xx_answer_is_never_redelivered(client: Any, receiver: Any, wait: Any) -> None:
    """readme-v1.md: redelivery only for a network error or a 5xx answer."""
    client.config(webhook_url=receiver.url, webhook_retries=True, webhook_retry_interval_ms=20)
    receiver.responses = [404]
    client.paid("order-w4xx")
    [d] = wait(lambda: [d for d in client.deliveries() if d["state"] == "failed"])
    time.sleep(0.5)
    assert [h["answered"] for h in receiver.received] == [404]
    assert [a["status_code"] for a in d["attempts"]] == [404]


def test_connection_error_retried_then_failed(client: Any, wait: Any) -> None:
    # PortOne's redelivery: at most 5 more attempts, a minute apart (20 ms here).
    client.config(webhook_url=_closed_port_url(), webhook_retries=True, webhook_retry_interval_ms=20)
    client.paid("order-w5")
    [d] = wait(lambda: [d for d in client.deliveries() if d["state"] == "failed"])
    assert len(d["attempts"]) == 6
    assert all(a["status_code"] is None and a["error"] for a in d["attempts"])
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(d["attempts"], d["attempts"][1:], strict=False)]
    assert all(gap >= 0.015 for gap in gaps), gaps


def test_answer_never_waits_for_webhook(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    receiver.delay = 4.0  # the webhook takes 4 s to be answered; the checkout must not wait for it
    started = time.monotonic()
    client.paid("order-w6")
    assert time.monotonic() - started < 2.0
    receiver.wait_for(1, timeout=15)


def test_duplicates(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url, webhook_duplicates=2)
    imp_uid = client.paid("order-w7")
    hooks = receiver.wait_for(3)
    assert all(h["body"]["imp_uid"] == imp_uid for h in hooks)
    assert sorted(d["copy"] for d in client.deliveries()) == [0, 1, 2]


def test_drop_rate_logs_but_does_not_send(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url, webhook_drop_rate=1.0)
    client.paid("order-w8")
    time.sleep(0.2)
    assert receiver.received == []
    assert [d["state"] for d in client.deliveries()] == ["dropped"]


def test_hold_and_flush_reverse(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url, webhook_hold=True)
    uids = [client.paid(f"order-h{i}") for i in range(4)]
    time.sleep(0.1)
    assert receiver.received == []
    listing = client.http.get("/sandbox/webhooks").json()
    assert listing["held"] == 4
    r = client.http.post("/sandbox/webhooks/flush", json={"order": "reverse"})
    assert r.json()["flushed"] == 4
    hooks = receiver.wait_for(4)
    assert [h["body"]["imp_uid"] for h in hooks] == uids[::-1]
    assert client.http.post("/sandbox/webhooks/flush", json={"order": "random"}).status_code == 400


def test_hold_then_flush_shuffle_is_seeded(client: Any, receiver: Any) -> None:
    def run() -> list[str]:
        client.http.post("/sandbox/reset")
        receiver.received.clear()
        client.config(webhook_url=receiver.url, webhook_hold=True, seed=7)
        for i in range(6):
            client.paid(f"order-s{i}")
        client.http.post("/sandbox/webhooks/flush", json={"order": "shuffle"})
        return [h["body"]["merchant_uid"] for h in receiver.wait_for(6)]

    first, second = run(), run()
    assert first == second
    assert sorted(first) == [f"order-s{i}" for i in range(6)]


def test_send_stale_webhook(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    imp_uid = client.paid("order-w9")
    client.cancel(imp_uid=imp_uid)
    receiver.wait_for(1)
    r = client.http.post("/sandbox/webhooks/send", json={"imp_uid": imp_uid, "status": "paid"})
    assert r.status_code == 200
    receiver.wait_for(2)  # deliveries are independent; keep the order for the asserts
    r = client.http.post("/sandbox/webhooks/send", json={"imp_uid": imp_uid})
    hooks = receiver.wait_for(3)
    assert hooks[1]["body"]["status"] == "paid"  # stale on purpose
    assert hooks[2]["body"]["status"] == "cancelled"
    assert hooks[2]["body"]["cancellation_id"]
    missing = client.http.post("/sandbox/webhooks/send", json={"imp_uid": "imp_000000000000"})
    assert missing.status_code == 404


def test_no_url_is_logged(client: Any) -> None:
    client.paid("order-w10")
    [d] = client.deliveries()
    assert d["state"] == "no_url" and d["attempts"] == []


def test_shutdown_with_pending_deliveries_is_clean(receiver: Any) -> None:
    receiver.delay = 8.0
    cfg = SandboxConfig(webhook_url=receiver.url, webhook_retries=True, webhook_retry_interval_ms=5000,
                        webhook_timeout_seconds=10)  # fmt: skip
    sb = run_sandbox_in_thread(cfg)
    with httpx.Client(base_url=sb.url, trust_env=False) as http:
        for i in range(3):
            http.post("/sandbox/checkout", json={"merchant_uid": f"o{i}", "amount": 1000,
                                                 "card_number": "4111111111111111"})  # fmt: skip
        time.sleep(0.1)
    started = time.monotonic()
    sb.stop()
    assert not sb.thread.is_alive()
    assert time.monotonic() - started < 4.0  # it did not wait for the 8 s deliveries
