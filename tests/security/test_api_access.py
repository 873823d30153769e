"""Who may call each API route. Every route the app serves (read from the app's own routing, the
ones hidden from the OpenAPI schema included) must be classified here, so a new route cannot ship
without saying how it is protected; each is then called with no credential, wrong ones and the
right one."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from api.app import create_app
from services.auth import accounts as users
from services.auth.access import Actor
from services.core.config import Settings
from services.core.kst import kst_today
from services.core.models import Role
from services.reporting import export_links, exports
from services.runtime import Runtime
from tests.factories import INTERNAL_TOKEN, sign_in_as
from tests.v2_support import signed

PUBLIC = "public"  # the app and PortOne call it; what it is told is verified (PortOne is re-asked)
INTERNAL = "internal token"  # Authorization: Bearer $INTERNAL_API_TOKEN
SIGNED_LINK = "signed link"  # ?token= made by the dashboard for one sign-in, one export, once, minutes
SIGNATURE = "webhook signature"  # PortOne V2 Standard Webhooks
SCHEMA = "schema"  # FastAPI's own: the OpenAPI document and its viewers (no data)

ROUTES = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,  # kinds of failure only ("unreachable", "refused our key"), never error text
    ("POST", "/api/orders"): PUBLIC,
    ("GET", "/api/orders/{merchant_uid}"): PUBLIC,  # the customer app reads its order; no personal data
    ("POST", "/api/payments/complete"): PUBLIC,
    ("POST", "/portone/webhook"): PUBLIC,
    ("POST", "/api/payments/{imp_uid}/refunds"): INTERNAL,
    ("GET", "/api/exports/{kind}.csv"): SIGNED_LINK,
    ("POST", "/portone/webhook/v2"): SIGNATURE,
    ("GET", "/openapi.json"): SCHEMA,
    ("GET", "/docs"): SCHEMA,
    ("GET", "/docs/oauth2-redirect"): SCHEMA,
    ("GET", "/redoc"): SCHEMA,
}
CONCRETE = {
    "/api/orders/{merchant_uid}": "/api/orders/chekar_20261207_000000000000",
    "/api/payments/{imp_uid}/refunds": "/api/payments/imp_000000000001/refunds",
    "/api/exports/{kind}.csv": "/api/exports/payments.csv",
}
WRONG = [
    {},
    {"Authorization": "Bearer not-the-token"},
    {"Authorization": f"Bearer {INTERNAL_TOKEN}x"},
    {"Authorization": f"Bearer {INTERNAL_TOKEN[:-1]}"},
    {"Authorization": f"Basic {INTERNAL_TOKEN}"},
    {"Authorization": INTERNAL_TOKEN},
    {"Authorization": "Bearer"},
]


def _served(routes: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every endpoint, through included routers too (HEAD is GET's shadow)."""
    for route in routes:
        if isinstance(route, APIRoute | Route):
            yield from ((method, route.path) for method in sorted(route.methods or ()) if method != "HEAD")
        elif hasattr(route, "original_router"):  # FastAPI's lazily included router
            prefix = getattr(route.include_context, "prefix", "")
            yield from ((m, prefix + p) for m, p in _served(route.original_router.routes))
        else:
            raise AssertionError(f"unclassifiable route object {route!r}: say how it is reached")


def _settings_only(**settings: Any) -> Any:
    """What create_app reads of a runtime before serving: its settings (sandbox mode by default)."""
    return SimpleNamespace(settings=Settings(**{"portone_mode": "sandbox", **settings}))


def test_every_route_says_how_it_is_protected() -> None:
    assert set(_served(create_app(_settings_only()).routes)) == set(ROUTES)


def test_live_api_serves_no_schema() -> None:
    served = set(_served(create_app(_settings_only(), schema_public=False).routes))
    assert served == {route for route, protection in ROUTES.items() if protection != SCHEMA}


def _call(api: httpx.Client, method: str, path: str, headers: dict[str, str], **params: str) -> httpx.Response:
    url = CONCRETE.get(path, path)
    if method == "GET":
        return api.get(url, headers=headers, params=params)
    return api.post(url, json={"reason": "x", "amount": "1000"}, headers={**headers, "Idempotency-Key": "k"})


@pytest.mark.reliability(
    area="access",
    case="API routes called with no token, a wrong token, a token in the wrong scheme",
    outcome="internal routes 401; signed-link and signed-webhook routes refuse; public routes never ask",
)
def test_access_by_route(api: httpx.Client, runtime: Runtime) -> None:
    for (method, path), protection in ROUTES.items():
        for headers in WRONG:
            answer = _call(api, method, path, headers)
            assert answer.status_code < 500, (method, path, answer.text)
            if protection == INTERNAL:
                assert answer.status_code == 401 and answer.json()["error"] == "unauthorized", (path, headers)
            elif protection == SIGNED_LINK:
                assert answer.status_code == 401, (path, headers)
            elif protection == SIGNATURE:
                assert answer.status_code == 400 and answer.json()["result"] == "rejected", (path, answer.text)
            else:
                assert answer.status_code not in (401, 403), (path, headers)
    # The right credential gets past each gate.
    token = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    answer = _call(api, "POST", "/api/payments/{imp_uid}/refunds", token)
    assert answer.status_code == 404, answer.text  # past the gate: the payment is unknown
    for forged in ("eyJmYWtlIjp0cnVlfQ.c2ln", "", "a.b.c", "x" * 4000):
        assert _call(api, "GET", "/api/exports/{kind}.csv", {}, token=forged).status_code == 401, forged
    users.create_user(runtime, username="viewer", password="viewer-password-1", role="viewer", actor=None)
    day = kst_today()
    request = exports.prepare(
        actor=Actor("viewer", Role.VIEWER),
        kind="payments",
        filters=exports.ExportFilters(start=day - timedelta(days=1), end=day),
    )
    link = export_links.issue_link(runtime, request, sign_in=sign_in_as("viewer"))
    answer = _call(api, "GET", "/api/exports/{kind}.csv", {}, token=link.token)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv"), answer.text
    body = json.dumps({"type": "Transaction.Paid", "data": {"paymentId": "nobody", "storeId": "x"}})
    answer = api.post("/portone/webhook/v2", content=body, headers=signed(body, webhook_id="msg_access"))
    assert answer.status_code < 500 and answer.json().get("error") not in ("bad_signature", "unsigned"), answer.text


@pytest.mark.reliability(
    area="access",
    case="internal API token compared in constant time",
    outcome="every presented token, of any length, is checked by hmac.compare_digest; none by ==",
)
def test_internal_token_is_compared_in_constant_time(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison itself cannot be timed reliably in a test; what can be checked is that each
    token reaches the constant-time comparison (none is refused early by length or prefix) and
    that its verdict is the one applied."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    presented = [
        "",
        "x",
        INTERNAL_TOKEN[:-1],
        INTERNAL_TOKEN + "x",
        "y" * len(INTERNAL_TOKEN),
        "z" * 500,
        INTERNAL_TOKEN,
    ]
    for token in presented:
        answer = _call(api, "POST", "/api/payments/{imp_uid}/refunds", {"Authorization": f"Bearer {token}".strip()})
        assert answer.status_code == (404 if token == INTERNAL_TOKEN else 401), (token, answer.text)
    assert seen == [(token.encode(), INTERNAL_TOKEN.encode()) for token in presented]
