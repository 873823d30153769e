"""In a real browser: an operator finds a payment by search, refunds part of it through the
confirmation dialog, sees the refund in the payment's history, and downloads the payments CSV."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from services.core.db import Database
from services.core.models import Refund
from tests.e2e.conftest import OPERATOR, Stack, login, open_link, paid_payment, screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BUYER_EMAIL = "e2e.refund@example.com"
OPEN_DETAIL = "열기"


def _paid_payment(stack: Stack) -> str:
    return paid_payment(stack, email=BUYER_EMAIL, name="최환불", phone="010-5555-0101")


def _go(page: Page, title: str) -> None:
    open_link(page, page.get_by_test_id("stSidebarNavLink").filter(has_text=title).first)


def test_search_partial_refund_history_and_csv(page: Page, stack: Stack) -> None:
    imp_uid = _paid_payment(stack)
    login(page, stack, *OPERATOR)

    # Find it by search on the payments page.
    _go(page, "결제 내역")
    search = page.get_by_label("검색", exact=True)
    search.fill(BUYER_EMAIL[:10])
    search.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("1건 · 결제 ₩50,000").first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, "10-payments-search")

    # Partial refund through the confirmation dialog.
    _go(page, "환불")
    page.get_by_label("imp_uid 또는 주문번호(merchant_uid)").fill(imp_uid)
    page.get_by_role("button", name="결제 불러오기").click()
    wait_for_app(page)
    amount = page.get_by_label("환불 금액", exact=True)
    expect(amount).to_have_value("50000")  # pre-filled with the whole remainder
    amount.fill("20000")
    page.get_by_label("환불 사유 (필수)").fill("고객 요청 부분 환불 (E2E)")
    page.get_by_role("button", name="환불 진행…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("환불 후 남는 금액")).to_be_visible()
    screenshot(page, "11-refund-dialog")
    dialog.get_by_role("button", name="환불 확정").click()
    wait_for_app(page)
    expect(page.get_by_text("환불했습니다: ₩20,000").first).to_be_visible()
    screenshot(page, "12-refund-done")

    db = Database(stack.database_url)
    try:
        with db.read() as session:
            refunds = session.query(Refund).all()
            assert [(r.amount, r.status) for r in refunds] == [(Decimal(20000), "succeeded")]
    finally:
        db.dispose()

    # The refund is in the payment's history.
    _go(page, "결제 상세")
    lookup = page.get_by_label("imp_uid 또는 주문번호(merchant_uid)")
    lookup.fill(imp_uid)
    lookup.press("Enter")
    wait_for_app(page)
    page.get_by_role("button", name=OPEN_DETAIL, exact=True).click()
    wait_for_app(page)
    expect(page.get_by_text("환불 내역").first).to_be_visible()
    expect(page.get_by_text("₩20,000").first).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    screenshot(page, "13-detail-history")

    # The payments CSV: UTF-8 with BOM, our payment's row, personal data masked for an operator.
    _go(page, "리포트")
    kind = page.get_by_role("combobox", name="내보낼 자료")  # the export kind: type to filter, Enter picks
    kind.click()
    page.keyboard.type("결제 내역")
    page.keyboard.press("Enter")
    expect(kind).to_have_value("결제 내역")
    wait_for_app(page)
    page.get_by_role("button", name="CSV 만들기").click()
    wait_for_app(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV 내려받기").first.click()
    raw = download.value.path().read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    ours = [row for row in rows if imp_uid in row]
    assert len(ours) == 1, rows[:3]
    assert BUYER_EMAIL not in raw.decode("utf-8-sig")  # masked
    assert any(cell in ("50000", "₩50,000", "50,000") for cell in ours[0]), ours[0]
    screenshot(page, "14-reports-export")
