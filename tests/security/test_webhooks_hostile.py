"""Forged webhook deliveries at the size limit, with the wrong content type, and with bytes no
database stores, on the V1 and V2 routes (the forged-content cases are in tests/api/test_webhooks.py
and tests/services/webhooks/test_v2.py): a 4xx that says why, PortOne not asked, never a 5xx."""

from __future__ import annotations

import json
import socket

import httpx
import pytest
from sqlalchemy import select

from services.core.models import WebhookEvent
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.v2_support import signed

ROUTES = ("/portone/webhook", "/portone/webhook/v2")


def _portone_asked(sandbox: SandboxControl) -> int:
    """Payment look-ups PortOne answered, V1 and V2 (token requests are not look-ups)."""
    v1, v2 = sandbox.calls()["counts"], sandbox.http.get("/sandbox/v2/calls").json()["counts"]
    return sum(n for counts in (v1, v2) for endpoint, n in counts.items() if endpoint.startswith("GET /payments"))


@pytest.mark.reliability(
    area="hostile input",
    case="webhook body larger than the limit (V1 and V2)",
    outcome="413 before PortOne is asked or anything is processed; one byte less is read as usual",
)
def test_bodies_over_the_limit_are_refused(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    limit = runtime.settings.webhook_max_body_bytes
    asked = _portone_asked(sandbox)
    for route in ROUTES:
        for size, too_large in ((limit + 1, True), (limit * 20, True), (limit, False)):
            body = b'{"imp_uid": "imp_000000000001", "pad": "' + b"x" * (size - 42) + b'"}'
            assert len(body) == size
            headers = signed(body, webhook_id=f"msg_{size}") if route.endswith("v2") else {}
            answer = api.post(route, content=body, headers={"content-type": "application/json", **headers})
            assert (answer.status_code == 413) == too_large and answer.status_code < 500, (route, size, answer.text)
            if too_large:
                assert answer.json()["error"] == "too_large", answer.text
    assert _portone_asked(sandbox) == asked + 1  # only V1's delivery at the limit named a payment
    with runtime.db.read() as session:
        assert "processed" not in set(session.scalars(select(WebhookEvent.result)))


@pytest.mark.reliability(
    area="hostile input",
    case="webhook with the wrong or no content type, or NUL bytes in its body (V1 and V2)",
    outcome="the verdict of the same body as JSON, or a 4xx; never 5xx; V2's signature still decides",
)
def test_content_type_and_raw_bytes_do_not_change_the_verdict(api: httpx.Client, runtime: Runtime) -> None:
    types = ("application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "")
    body = json.dumps({"type": "Transaction.Paid", "timestamp": "2026-11-21T00:00:00Z", "data": {"paymentId": "p"}})
    verdicts = set()
    for number, content_type in enumerate(types):
        headers = {**signed(body, webhook_id=f"msg_type_{number}"), "content-type": content_type}
        answer = api.post("/portone/webhook/v2", content=body, headers=headers)
        assert answer.status_code < 500, (content_type, answer.text)
        verdicts.add((answer.status_code, answer.json().get("error")))
        tampered = body.replace('"p"', '"q"')
        refused = api.post("/portone/webhook/v2", content=tampered, headers={**headers, "webhook-id": f"msg_t{number}"})
        assert (refused.status_code, refused.json()["error"]) == (400, "bad_signature"), refused.text
        v1 = api.post(
            "/portone/webhook", content=b'{"imp_uid": "imp_000000000001"}', headers={"content-type": content_type}
        )
        assert v1.status_code == 400, (content_type, v1.text)  # PortOne does not know it, whatever the type
    assert len(verdicts) == 1, verdicts  # the content type did not change V2's verdict
    nul = b'{"imp_uid": "imp_\x00", "merchant_uid": "\x00", "status": "paid\x00"}'
    answer = api.post("/portone/webhook", content=nul, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    answer = api.post("/portone/webhook/v2", content=nul, headers=signed(nul, webhook_id="msg_nul"))
    assert (answer.status_code, answer.json()["error"]) == (400, "unreadable"), answer.text
    with runtime.db.read() as session:  # recorded (and so alerted) like any refused delivery
        assert session.get(WebhookEvent, answer.json()["event_id"]) is not None


@pytest.mark.reliability(
    area="hostile input",
    case="request body that never ends (chunked, no last chunk) on the webhook and JSON routes",
    outcome="413 / 400 once the limit is passed, without waiting for the end; nothing processed",
)
def test_a_body_that_never_ends_is_refused_at_the_limit(api: httpx.Client, runtime: Runtime) -> None:
    host, port = str(api.base_url.host), int(api.base_url.port or 80)
    limit = runtime.settings.webhook_max_body_bytes
    routes = {"/portone/webhook": 413, "/portone/webhook/v2": 413, "/api/orders": 400}
    for route, expected in routes.items():
        with socket.create_connection((host, port), timeout=20) as conn:
            conn.sendall(
                f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )
            chunk = b"x" * 4096
            for _ in range(2 * limit // len(chunk)):  # twice the limit, and never the last chunk
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            answer = b""
            while b"\r\n\r\n" not in answer:  # times out (fails) if the API waits for the end
                received = conn.recv(65536)
                assert received, (route, answer)
                answer += received
        assert answer.startswith(f"HTTP/1.1 {expected} ".encode()), (route, answer[:200])
    with runtime.db.read() as session:
        assert "processed" not in set(session.scalars(select(WebhookEvent.result)))
