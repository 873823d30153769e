"""Who may deliver webhooks: the sender allow-list (WEBHOOK_ALLOWED_IPS) guards the V1 and the V2
route alike, and outside sandbox mode the V2 route exists only with a real V2 webhook secret, never
on the sandbox's published one. Our API over loopback, real databases; uvicorn's own proxy-header
handling (X-Forwarded-For trusted from 127.0.0.1 only) names the sender."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from api.app import create_app
from services.core.config import SANDBOX_V2_WEBHOOK_SECRET, Settings
from services.core.migrate import upgrade
from services.runtime import Runtime, build_runtime
from tests.factories import INTERNAL_TOKEN, SandboxControl, make_runtime
from tests.security.test_api_access import _served
from tests.servers import serve_in_thread
from tests.v2_support import signed

PORTONE_SENDER = "203.0.113.9"  # TEST-NET-3: stands for one of PortOne's published senders
REAL_V2_WEBHOOK_SECRET = "whsec_" + "cmVhbC1saXZlLXYyLXdlYmhvb2stc2VjcmV0LTAxMjM0NQ=="
V2_BODY = json.dumps({"type": "Transaction.Paid", "data": {"paymentId": "nobody", "storeId": "x"}})


@contextmanager
def _serving(rt: Runtime) -> Iterator[httpx.Client]:
    served = serve_in_thread(create_app(rt))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            yield client
    finally:
        served.stop()


def _live(database_url: str, sandbox: SandboxControl, **overrides: Any) -> Runtime:
    upgrade(database_url)
    return build_runtime(
        Settings(
            database_url=database_url,
            portone_mode="live",
            portone_api_url=sandbox.url,
            portone_imp_key="live-imp-key-0123456789",
            portone_imp_secret="live-imp-secret-0123456789",
            internal_api_token=INTERNAL_TOKEN,
            export_link_secret="live-export-link-secret-0123456789",
            portone_api_version="v1",
            **overrides,
        )
    )


@pytest.mark.reliability(
    area="access",
    case="webhooks from a sender outside WEBHOOK_ALLOWED_IPS (V1 and V2 routes)",
    outcome="403 on both routes before anything is processed; the listed sender gets past the gate",
)
def test_the_allow_list_covers_every_webhook_route(database_url: str, sandbox: SandboxControl) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, webhook_allowed_ips=[PORTONE_SENDER])
    try:
        with _serving(rt) as api:
            v1 = {"imp_uid": "imp_000000000001", "merchant_uid": "m-1", "status": "paid"}
            stranger = api.post("/portone/webhook", json=v1)
            assert stranger.status_code == 403, stranger.text
            stranger = api.post("/portone/webhook/v2", content=V2_BODY, headers=signed(V2_BODY, webhook_id="msg_ip1"))
            assert stranger.status_code == 403 and stranger.json()["error"] == "forbidden", stranger.text
            spoofed = {"X-Forwarded-For": "198.51.100.7"}  # another outsider, relayed by the local proxy
            answer = api.post(
                "/portone/webhook/v2", content=V2_BODY, headers={**signed(V2_BODY, webhook_id="msg_ip2"), **spoofed}
            )
            assert answer.status_code == 403, answer.text
            via_proxy = {"X-Forwarded-For": PORTONE_SENDER}
            answer = api.post("/portone/webhook", json=v1, headers=via_proxy)
            assert answer.status_code != 403, answer.text
            answer = api.post(
                "/portone/webhook/v2", content=V2_BODY, headers={**signed(V2_BODY, webhook_id="msg_ip3"), **via_proxy}
            )
            assert answer.status_code != 403 and answer.json().get("error") != "bad_signature", answer.text
    finally:
        rt.close()


@pytest.mark.reliability(
    area="access",
    case="live mode on V1 without a V2 webhook secret: a V2 webhook signed with the sandbox's published secret",
    outcome="no V2 route (404); nothing recorded or asked of PortOne",
)
def test_live_v1_serves_no_v2_route_on_the_published_secret(database_url: str, sandbox: SandboxControl) -> None:
    rt = _live(database_url, sandbox)
    try:
        assert ("POST", "/portone/webhook/v2") not in set(_served(create_app(rt).routes))
        with _serving(rt) as api:
            headers = signed(V2_BODY, webhook_id="msg_published", secret=SANDBOX_V2_WEBHOOK_SECRET)
            answer = api.post("/portone/webhook/v2", content=V2_BODY, headers=headers)
            assert answer.status_code == 404, answer.text
    finally:
        rt.close()


def test_live_v1_with_a_real_v2_secret_serves_v2_and_refuses_the_published_one(
    database_url: str, sandbox: SandboxControl
) -> None:
    rt = _live(database_url, sandbox, portone_v2_webhook_secret=REAL_V2_WEBHOOK_SECRET)
    try:
        with _serving(rt) as api:
            headers = signed(V2_BODY, webhook_id="msg_forged", secret=SANDBOX_V2_WEBHOOK_SECRET)
            answer = api.post("/portone/webhook/v2", content=V2_BODY, headers=headers)
            assert answer.status_code == 400 and answer.json()["error"] == "bad_signature", answer.text
            headers = signed(V2_BODY, webhook_id="msg_real", secret=REAL_V2_WEBHOOK_SECRET)
            answer = api.post("/portone/webhook/v2", content=V2_BODY, headers=headers)
            assert answer.status_code != 404 and answer.json().get("error") != "bad_signature", answer.text
    finally:
        rt.close()
