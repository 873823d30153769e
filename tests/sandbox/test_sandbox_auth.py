"""POST /users/getToken and the token checks on every other V1 endpoint."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from sandbox.testing import run_sandbox_in_thread

UNAUTHORIZED = {"code": -1, "message": "Unauthorized", "response": None}


def test_get_token_json_and_form(client: Any) -> None:
    r = client.http.post("/users/getToken", json={"imp_key": "test-imp-key", "imp_secret": "test-imp-secret"})
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == 0
    token = body["response"]
    assert set(token) == {"access_token", "expired_at", "now"}
    assert token["expired_at"] - token["now"] in (1799, 1800)  # 30 minutes
    assert abs(token["now"] - time.time()) < 5

    form = client.http.post("/users/getToken", data={"imp_key": "test-imp-key", "imp_secret": "test-imp-secret"})
    assert form.status_code == 200
    # Still valid, so PortOne hands out the same token with the same expiry.
    assert form.json()["response"]["access_token"] == token["access_token"]
    assert form.json()["response"]["expired_at"] == token["expired_at"]


@pytest.mark.parametrize(
    "body",
    [
        {"imp_key": "test-imp-key", "imp_secret": "wrong"},
        {"imp_key": "wrong", "imp_secret": "test-imp-secret"},
        {"imp_key": "test-imp-key"},
        {},
    ],
)
def test_get_token_wrong_pair_is_401(client: Any, body: dict[str, str]) -> None:
    r = client.http.post("/users/getToken", json=body)
    assert r.status_code == 401
    assert r.json()["code"] == -1
    assert r.json()["response"] is None


def test_token_accepted_in_all_three_headers(client: Any) -> None:
    imp_uid = client.paid("order-auth")
    token = client.token()
    for headers in (
        {"Authorization": f"Bearer {token}"},
        {"Authorization": token},
        {"X-ImpTokenHeader": token},
    ):
        r = client.http.get(f"/payments/{imp_uid}", headers=headers)
        assert r.status_code == 200, headers
        assert r.json()["response"]["imp_uid"] == imp_uid


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/payments/imp_000000000000"),
        ("GET", "/payments?imp_uid[]=imp_000000000000"),
        ("GET", "/payments/find/order-x"),
        ("GET", "/payments/find/order-x/paid"),
        ("GET", "/payments/findAll/order-x/paid"),
        ("GET", "/payments/status/paid"),
        ("POST", "/payments/cancel"),
        ("POST", "/payments/prepare"),
        ("PUT", "/payments/prepare"),
        ("GET", "/payments/prepare/order-x"),
    ],
)
def test_missing_or_invalid_token_is_401(client: Any, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-ImpTokenHeader": "nope"}):
        r = client.http.request(method, path, headers=headers, json={})
        assert r.status_code == 401
        assert r.json() == UNAUTHORIZED


def test_token_expiry(client: Any) -> None:
    imp_uid = client.paid("order-expiry")
    old = client.token()
    # Lowering the TTL also shortens live tokens, so tests can force expiry.
    client.config(token_ttl_seconds=1)
    time.sleep(1.1)
    r = client.http.get(f"/payments/{imp_uid}", headers={"Authorization": old})
    assert r.status_code == 401
    assert r.json() == UNAUTHORIZED
    client.config(token_ttl_seconds=1800)
    new = client.token(fresh=True)
    assert new != old
    assert client.http.get(f"/payments/{imp_uid}", headers={"Authorization": new}).status_code == 200


def test_default_credentials_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTONE_IMP_KEY", raising=False)
    monkeypatch.delenv("PORTONE_IMP_SECRET", raising=False)
    with run_sandbox_in_thread() as sb, httpx.Client(base_url=sb.url, trust_env=False) as http:
        ok = http.post("/users/getToken", json={"imp_key": "sandbox-imp-key", "imp_secret": "sandbox-imp-secret"})
        assert ok.status_code == 200
        monkeypatch.setenv("PORTONE_IMP_KEY", "env-key")
        monkeypatch.setenv("PORTONE_IMP_SECRET", "env-secret")
        assert (
            http.post(
                "/users/getToken", json={"imp_key": "sandbox-imp-key", "imp_secret": "sandbox-imp-secret"}
            ).status_code
            == 401
        )
        assert http.post("/users/getToken", data={"imp_key": "env-key", "imp_secret": "env-secret"}).status_code == 200
