"""The sign-in cookie's routes (dashboard/session_cookie.py) over loopback HTTP: a one-time code
becomes an HttpOnly, SameSite=Lax cookie (Secure behind HTTPS); other sites cannot post to them;
sign-out clears the cookie and ends its sign-in."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette

from dashboard.session_cookie import COOKIE, END_PATH, ROUTES, START_PATH
from services.auth import dashboard_sessions
from services.runtime import Runtime
from tests.servers import serve_in_thread


@pytest.fixture
def client(dashboard_runtime: Runtime) -> Iterator[httpx.Client]:
    """The routes served as Streamlit's server mounts them, on the dashboard's database."""
    served = serve_in_thread(Starlette(routes=ROUTES))
    try:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            yield http
    finally:
        served.stop()


def test_a_code_becomes_an_http_only_cookie_once(dashboard_runtime: Runtime, client: httpx.Client) -> None:
    live, code = dashboard_sessions.start(dashboard_runtime, username="operator")
    origin = str(client.base_url).rstrip("/")
    answer = client.post(START_PATH, json={"code": code}, headers={"Origin": origin})
    assert answer.status_code == 200
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{COOKIE}=")
    assert "httponly" in header.lower() and "samesite=lax" in header.lower() and "path=/" in header.lower()
    assert "secure" not in header.lower()  # plain HTTP on loopback
    token = answer.cookies[COOKIE]
    assert dashboard_sessions.resolve(dashboard_runtime, token=token).id == live.id
    again = client.post(START_PATH, json={"code": code})
    assert again.status_code == 401 and "set-cookie" not in again.headers


def test_behind_https_the_cookie_is_secure(dashboard_runtime: Runtime, client: httpx.Client) -> None:
    _, code = dashboard_sessions.start(dashboard_runtime, username="operator")
    # A TLS-terminating proxy on this host says so; uvicorn trusts that header from loopback only.
    answer = client.post(START_PATH, json={"code": code}, headers={"X-Forwarded-Proto": "https"})
    assert answer.status_code == 200 and "secure" in answer.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Content-Type": "application/json"},  # another site's fetch
        {"Content-Type": "text/plain"},  # a cross-site form's simple request
        {"Content-Type": "application/x-www-form-urlencoded"},
    ],
)
def test_other_sites_cannot_sign_anyone_in(
    dashboard_runtime: Runtime, client: httpx.Client, headers: dict[str, str]
) -> None:
    _, code = dashboard_sessions.start(dashboard_runtime, username="operator")
    answer = client.post(START_PATH, content=f'{{"code": "{code}"}}', headers=headers)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    # The code is still unused: the real page can still exchange it.
    assert client.post(START_PATH, json={"code": code}).status_code == 200


def test_sign_out_clears_the_cookie_and_ends_the_sign_in(dashboard_runtime: Runtime, client: httpx.Client) -> None:
    live, code = dashboard_sessions.start(dashboard_runtime, username="operator")
    token = client.post(START_PATH, json={"code": code}).cookies[COOKIE]
    refused = client.post(END_PATH, json={}, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert dashboard_sessions.resolve(dashboard_runtime, token=token).id == live.id
    answer = client.post(END_PATH, json={})
    assert answer.status_code == 200
    header = answer.headers["set-cookie"].lower()
    assert header.startswith(f'{COOKIE}=""') and "max-age=0" in header
    with pytest.raises(dashboard_sessions.SessionEnded):
        dashboard_sessions.resolve(dashboard_runtime, token=token)
