"""The dashboard's sign-in in a real browser, as a web app's: it survives a reload, a new tab and a
pasted link; a link opened signed out signs in and lands on its page; a second dashboard process on
the same database honours it; sign-out in one tab ends it everywhere. Cookies are kept per host,
not per port, so both dashboard processes on 127.0.0.1 see the same cookie, as behind one address."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import OPERATOR, UI_TIMEOUT_MS, Server, Stack, _wait_until_ready, wait_for_app
from tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SIGN_IN_TITLE = "체카 결제 운영 로그인"
DEEP_LINK = "/payment_detail?imp_uid=imp_000000000042"


def _dashboard(stack: Stack, workdir: Path, name: str) -> Server:
    """Another dashboard process on the stack's database, started and answering."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server(name, [sys.executable, "-m", "streamlit", "run", "dashboard_server.py", "--server.port", str(port),
                           "--server.address", "127.0.0.1", "--server.headless", "true",
                           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
                    f"{url}/_stcore/health", workdir / f"{name}.log")  # fmt: skip
    server.start(stack.env)
    try:
        _wait_until_ready([server])
    except BaseException:
        server.stop()
        raise
    return server


def _url(server: Server) -> str:
    return server.health_url.removesuffix("/_stcore/health")


@pytest.fixture(scope="module")
def second_dashboard(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = _dashboard(stack, tmp_path_factory.mktemp("second-dashboard"), "dashboard-2")
    try:
        yield _url(server)
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="ko-KR")
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def _open(context: BrowserContext, url: str) -> Page:
    tab = context.new_page()
    tab.goto(url)
    wait_for_app(tab)
    return tab


def _signed_out(tab: Page) -> None:
    expect(tab.get_by_role("heading", name=SIGN_IN_TITLE)).to_be_visible()
    expect(tab.get_by_role("button", name="로그아웃")).to_have_count(0)
    expect(tab.get_by_text("Page not found")).to_have_count(0)
    expect(tab.get_by_test_id("stSidebarNav")).to_have_count(0)  # neither the router's nor the file list


def _sign_in(tab: Page, username: str, password: str) -> None:
    tab.get_by_label("아이디").fill(username)
    tab.get_by_label("비밀번호", exact=True).fill(password)
    tab.get_by_role("button", name="로그인", exact=True).click()
    expect(tab.get_by_role("button", name="로그아웃")).to_be_visible()
    wait_for_app(tab)
    # The cookie arrives from the server a moment after the page shows signed in.
    for _ in range(100):
        if any(c["name"] == "chekar_session" for c in tab.context.cookies()):
            return
        tab.wait_for_timeout(100)
    raise AssertionError("the sign-in cookie was never set")


def _signed_in_on(tab: Page, heading: str) -> None:
    expect(tab.get_by_role("button", name="로그아웃")).to_be_visible()
    expect(tab.get_by_role("heading", name=heading)).to_be_visible()
    expect(tab.get_by_text("Page not found")).to_have_count(0)


def test_the_cookie_is_http_only_and_a_reload_keeps_the_sign_in(context: BrowserContext, stack: Stack) -> None:
    tab = _open(context, stack.dashboard_url)
    _signed_out(tab)
    _sign_in(tab, *OPERATOR)
    [cookie] = [c for c in context.cookies() if c["name"] == "chekar_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["value"] not in tab.url
    assert tab.evaluate("document.cookie").find("chekar_session") == -1  # out of scripts' reach
    tab.reload()
    wait_for_app(tab)
    _signed_in_on(tab, "개요")


def test_a_deep_link_in_a_new_tab_opens_its_page_signed_in(context: BrowserContext, stack: Stack) -> None:
    _sign_in(_open(context, stack.dashboard_url), *OPERATOR)
    tab = _open(context, stack.dashboard_url + DEEP_LINK)
    _signed_in_on(tab, "결제 상세")
    assert tab.url.endswith(DEEP_LINK)


def test_a_deep_link_signed_out_signs_in_and_lands_on_its_page(context: BrowserContext, stack: Stack) -> None:
    tab = _open(context, stack.dashboard_url + DEEP_LINK)
    _signed_out(tab)
    _sign_in(tab, *OPERATOR)
    _signed_in_on(tab, "결제 상세")
    assert tab.url.endswith(DEEP_LINK)


def test_the_first_visit_to_a_fresh_dashboard_by_a_link_shows_the_sign_in(
    context: BrowserContext, stack: Stack, tmp_path: Path
) -> None:
    server = _dashboard(stack, tmp_path, "dashboard-fresh")
    try:
        tab = _open(context, _url(server) + "/refunds")
        _signed_out(tab)
        expect(tab.get_by_test_id("stAlert")).to_have_count(0)  # no "signed out for inactivity": never signed in
        expect(tab.get_by_role("heading", name="환불")).to_have_count(0)  # the page did not run
        _sign_in(tab, *OPERATOR)
        _signed_in_on(tab, "환불")
    finally:
        server.stop()


def test_two_dashboard_processes_honour_one_sign_in_and_sign_out_ends_it_everywhere(
    context: BrowserContext, stack: Stack, second_dashboard: str
) -> None:
    first = _open(context, stack.dashboard_url)
    _sign_in(first, *OPERATOR)
    same_process = _open(context, stack.dashboard_url + "/payments")
    _signed_in_on(same_process, "결제 내역")
    other_process = _open(context, second_dashboard + "/payments")
    _signed_in_on(other_process, "결제 내역")

    first.get_by_role("button", name="로그아웃").click()
    wait_for_app(first)
    _signed_out(first)

    # The other tabs, still open, are signed out at their next action.
    for tab in (same_process, other_process):
        tab.get_by_test_id("stSidebarNavLink").filter(has_text="개요").first.click()
        wait_for_app(tab)
        _signed_out(tab)
        expect(tab.get_by_text("로그아웃되었습니다")).to_be_visible()
    # And a reload or a new tab stays signed out (the cookie is gone, the sign-in ended).
    other_process.reload()
    wait_for_app(other_process)
    _signed_out(other_process)
    assert not [c for c in context.cookies() if c["name"] == "chekar_session"]
