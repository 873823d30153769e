"""Who may call each API route. Every route in our OpenAPI schema must be classified here, so a
new route cannot ship without saying how it is protected."""

from __future__ import annotations

import httpx
import pytest

from api.app import create_app
from tests.factories import INTERNAL_TOKEN

PUBLIC = "public"  # the app and PortOne call it; what it is told is verified (PortOne is re-asked)
INTERNAL = "internal token"  # Authorization: Bearer $INTERNAL_API_TOKEN
SIGNED_LINK = "signed link"  # ?token= made by the dashboard for one user, one export, minutes
SIGNATURE = "webhook signature"  # PortOne V2 Standard Webhooks

ROUTES = {
    ("get", "/healthz"): PUBLIC,
    ("post", "/api/orders"): PUBLIC,
    ("post", "/api/payments/complete"): PUBLIC,
    ("post", "/portone/webhook"): PUBLIC,
    ("post", "/api/payments/{imp_uid}/refunds"): INTERNAL,
    ("get", "/api/exports/{kind}.csv"): SIGNED_LINK,
    ("post", "/portone/webhook/v2"): SIGNATURE,
}
CONCRETE = {
    "/api/payments/{imp_uid}/refunds": "/api/payments/imp_000000000001/refunds",
    "/api/exports/{kind}.csv": "/api/exports/payments.csv",
}


def test_every_route_says_how_it_is_protected() -> None:
    schema = create_app(object()).openapi()  # type: ignore[arg-type]
    served = {(method, path) for path, operations in schema["paths"].items() for method in operations}
    assert served == set(ROUTES)


def _call(api: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    url = CONCRETE.get(path, path)
    if method == "get":
        return api.get(url, headers=headers)
    return api.post(url, json={"reason": "x", "amount": "1000"}, headers={**headers, "Idempotency-Key": "k"})


@pytest.mark.reliability(
    area="access",
    case="API routes called with no token, a wrong token, a token in the wrong scheme",
    outcome="internal routes 401; signed-link and signed-webhook routes refuse; public routes never ask",
)
def test_access_by_route(api: httpx.Client) -> None:
    wrong = [
        {},
        {"Authorization": "Bearer not-the-token"},
        {"Authorization": f"Basic {INTERNAL_TOKEN}"},
        {"Authorization": INTERNAL_TOKEN},
    ]
    for (method, path), protection in ROUTES.items():
        for headers in wrong:
            answer = _call(api, method, path, headers)
            assert answer.status_code < 500, (method, path, answer.text)
            if protection == INTERNAL:
                assert answer.status_code == 401 and answer.json()["error"] == "unauthorized", (path, headers)
            elif protection == SIGNED_LINK:
                assert answer.status_code == 401, (path, headers)
            elif protection == SIGNATURE:
                assert answer.status_code == 400 and answer.json()["result"] == "rejected", (path, answer.text)
            else:
                assert answer.status_code != 401, (path, headers)
        if protection == INTERNAL:  # the right token gets past the gate (the payment is unknown: 404)
            answer = _call(api, method, path, {"Authorization": f"Bearer {INTERNAL_TOKEN}"})
            assert answer.status_code == 404, answer.text
    forged = api.get("/api/exports/payments.csv", params={"token": "eyJmYWtlIjp0cnVlfQ.c2ln"})
    assert forged.status_code == 401
