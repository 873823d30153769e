"""The deploy guide's nginx example, run for real in front of the dashboard and the API (HTTPS on
loopback, a throwaway certificate, the host names mapped to 127.0.0.1 in Chromium): Streamlit's
WebSocket passes, the sign-in cookie is Secure and survives a reload, and the API judges a webhook
by the address nginx saw, not by an X-Forwarded-For its sender wrote."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Playwright, expect
from sqlalchemy import create_engine, text

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.conftest import OPERATOR, UI_TIMEOUT_MS, Stack, wait_for_app
from tests.proxy_support import API_HOST, DASHBOARD_HOST, RunningNginx, render_nginx
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def nginx(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNginx]:
    dashboard_port = int(stack.dashboard_url.rsplit(":", 1)[1])
    api_port = int(stack.api_url.rsplit(":", 1)[1])
    site = render_nginx(
        tmp_path_factory.mktemp("nginx"),
        http_port=free_port(), https_port=free_port(), dashboard_port=dashboard_port, api_port=api_port,
    )  # fmt: skip
    proxy = RunningNginx(site)
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxied_context(nginx: RunningNginx, playwright_driver: Playwright) -> Iterator[BrowserContext]:
    """A browser of its own: the host names map to 127.0.0.1 only through a launch option."""
    rules = f"MAP {DASHBOARD_HOST} 127.0.0.1, MAP {API_HOST} 127.0.0.1"
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"]
    )
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="ko-KR", ignore_https_errors=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()
        browser.close()


def test_the_dashboard_works_through_nginx_with_a_secure_cookie(
    proxied_context: BrowserContext, nginx: RunningNginx
) -> None:
    url = f"https://{DASHBOARD_HOST}:{nginx.site.https_port}"
    tab = proxied_context.new_page()
    tab.goto(url)
    wait_for_app(tab)  # connected: the WebSocket came through the proxy
    tab.get_by_label("아이디").fill(OPERATOR[0])
    tab.get_by_label("비밀번호", exact=True).fill(OPERATOR[1])
    tab.get_by_role("button", name="로그인", exact=True).click()
    expect(tab.get_by_role("button", name="로그아웃")).to_be_visible()
    cookie = None
    for _ in range(100):
        cookie = next((c for c in proxied_context.cookies() if c["name"] == "chekar_session"), None)
        if cookie:
            break
        tab.wait_for_timeout(100)
    assert cookie is not None, "the sign-in cookie was never set through the proxy"
    assert cookie["secure"] and cookie["httpOnly"] and cookie["domain"] == DASHBOARD_HOST
    tab.reload()
    wait_for_app(tab)
    expect(tab.get_by_role("button", name="로그아웃")).to_be_visible()


def test_plain_http_is_sent_to_https(nginx: RunningNginx) -> None:
    answer = httpx.get(f"http://127.0.0.1:{nginx.site.http_port}/", headers={"Host": DASHBOARD_HOST})
    assert answer.status_code == 301
    assert answer.headers["location"] == f"https://{DASHBOARD_HOST}/"


def test_the_api_sees_the_address_nginx_saw_not_a_forged_forwarded_for(stack: Stack, nginx: RunningNginx) -> None:
    host = f"{API_HOST}:{nginx.site.https_port}"
    with httpx.Client(base_url=f"https://127.0.0.1:{nginx.site.https_port}", verify=False, timeout=30) as api:  # noqa: S501 - throwaway certificate
        assert api.get("/healthz", headers={"Host": host}).status_code == 200
        body = json.dumps({"imp_uid": "imp_proxy_forged_1", "merchant_uid": "proxy-forged-1", "status": "paid"})
        api.post(
            "/portone/webhook",
            content=body,
            headers={"Host": host, "Content-Type": "application/json", "X-Forwarded-For": "52.78.100.19"},
        )
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as connection:
            sources = (
                connection.execute(text("select source_ip from webhook_events where imp_uid = 'imp_proxy_forged_1'"))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert sources == ["127.0.0.1"]
