"""Smoke test in a real browser: an operator signs in, pays a KRW test payment, sees it arrive,
and every page in the navigation renders without an exception (a screenshot of each)."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from services.core.db import Database
from services.core.models import Payment, WebhookEvent
from tests.e2e.conftest import ADMIN, OPERATOR, Stack, login, open_link, screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _wait_for_processed_webhook(database_url: str, imp_uid: str, timeout: float = 20) -> Payment:
    """The sandbox's webhook reached our API and was processed; returns the payment as recorded."""
    db = Database(database_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with db.read() as session:
                payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
                processed = session.scalar(
                    select(WebhookEvent.id).where(WebhookEvent.imp_uid == imp_uid, WebhookEvent.result == "processed")
                )
            if payment is not None and processed is not None:
                return payment
            if time.monotonic() > deadline:
                raise AssertionError(f"no processed webhook for {imp_uid} within {timeout}s")
            time.sleep(0.1)
    finally:
        db.dispose()


def _no_exception(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)


def _go(page: Page, title: str) -> None:
    open_link(page, page.get_by_test_id("stSidebarNavLink").filter(has_text=title).first)


def test_operator_pays_krw_sees_it_arrive_and_every_page_renders(page: Page, stack: Stack) -> None:
    login(page, stack, *OPERATOR)

    # Overview, empty: it says what to do next.
    expect(page.get_by_role("heading", name="개요")).to_be_visible()
    expect(page.get_by_text("아직 결제가 없습니다 — 테스트 결제를 실행")).to_be_visible()
    _no_exception(page)
    screenshot(page, "01-overview-empty")

    # Its next step: the test payment page; pay KRW 50,000 with the test card.
    page.get_by_role("button", name="테스트 결제 실행").click()
    wait_for_app(page)
    expect(page.get_by_role("heading", name="테스트 결제")).to_be_visible()
    expect(page.get_by_role("combobox", name="통화")).to_have_value("KRW · ₩50,000")
    expect(page.get_by_role("radio", name="4111-1111-1111-1111")).to_be_checked()
    page.get_by_role("button", name="테스트 결제 실행").click()
    expect(page.get_by_text("결제가 승인되고 확인되었습니다")).to_be_visible()
    wait_for_app(page)
    expect(page.get_by_text("결제완료", exact=True).first).to_be_visible()
    shown = page.get_by_text(re.compile(r"imp_\d{6,}")).first.inner_text()
    imp_uid = re.search(r"imp_\d{6,}", shown).group(0)  # type: ignore[union-attr]
    screenshot(page, "02-test-payment-paid")

    # It arrived: recorded as paid and verified, and PortOne's webhook reached the API too.
    payment = _wait_for_processed_webhook(stack.database_url, imp_uid)
    assert (payment.status, payment.amount, payment.currency, payment.verified) == ("paid", Decimal(50000), "KRW", True)

    # The overview shows it at once (the test payment dropped its 30 s cache).
    _go(page, "개요")
    expect(page.get_by_test_id("stMetricValue").filter(has_text="₩50,000").first).to_be_visible()
    expect(page.get_by_text("처리됨")).to_be_visible()  # the last webhook
    _no_exception(page)
    screenshot(page, "03-overview-with-payment")

    # From the result, its detail page.
    _go(page, "테스트 결제")
    page.get_by_role("button", name="결제 상세 보기").click()
    wait_for_app(page)
    expect(page).to_have_url(f"{stack.dashboard_url}/payment_detail")
    _no_exception(page)
    screenshot(page, "04-payment-detail")

    # Every page in the operator's navigation renders without an exception.
    view_more = page.get_by_test_id("stSidebarNavViewButton")
    if view_more.count():
        view_more.click()
    links = page.get_by_test_id("stSidebarNavLink")
    titles = [text.strip().splitlines()[-1] for text in links.all_inner_texts()]  # after the icon's name
    assert {"개요", "결제 내역", "테스트 결제"} <= set(titles), titles
    assert "관리" not in titles  # operators do not administer users
    for index in range(len(titles)):
        open_link(page, links.nth(index))
        _no_exception(page)
        path = screenshot(page, f"nav-{index + 1:02d}-{page.url.rsplit('/', 1)[-1] or 'overview'}")
        assert path.stat().st_size > 0


def test_admin_sees_users_audit_log_and_health(page: Page, stack: Stack) -> None:
    login(page, stack, *ADMIN)
    _go(page, "관리")
    expect(page.get_by_role("heading", name="관리", exact=True)).to_be_visible()
    _no_exception(page)
    screenshot(page, "05-admin-users")
    page.get_by_role("tab", name="감사 로그").click()
    expect(page.get_by_role("heading", name="감사 로그")).to_be_visible()
    screenshot(page, "06-admin-audit-log")
    page.get_by_role("tab", name="시스템 상태").click()
    expect(page.get_by_text("샌드박스", exact=True).last).to_be_visible()
    # database at head, PortOne answering; the scheduled reconciliation waiting for its first run
    expect(page.get_by_text("정상", exact=True)).to_have_count(2)  # database, PortOne
    expect(page.get_by_text("대기 중", exact=True)).to_have_count(1)  # the scheduler has not run here
    _no_exception(page)
    screenshot(page, "07-admin-health")
