"""Every page as an admin sees it after `make run`: the demo quarter loaded, each page drawn without an
exception, and a screenshot of each kept in test-artifacts/screenshots (demo-NN-page.png) to look at."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ADMIN, Stack, login, open_link, screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_page_with_the_demo_quarter_renders_and_is_kept_as_a_screenshot(page: Page, demo_stack: Stack) -> None:
    login(page, demo_stack, *ADMIN)
    view_more = page.get_by_test_id("stSidebarNavViewButton")
    if view_more.count():
        view_more.click()
    links = page.get_by_test_id("stSidebarNavLink")
    titles = [text.strip().splitlines()[-1] for text in links.all_inner_texts()]
    assert {"개요", "결제 내역", "환불", "리포트", "관리"} <= set(titles), titles
    assert any(title.startswith("알림 (") for title in titles), titles  # the demo leaves open alerts
    for index in range(len(titles)):
        open_link(page, links.nth(index))
        wait_for_app(page)
        expect(page.get_by_test_id("stException")).to_have_count(0)
        name = page.url.rsplit("/", 1)[-1].split("?")[0] or "overview"
        assert screenshot(page, f"demo-{index + 1:02d}-{name}").stat().st_size > 0
