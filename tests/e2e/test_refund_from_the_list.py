"""In a real browser: from a payments-list row to refunded in two clicks, the reason preset already
chosen (the brief allows three clicks and one choice), the result shown on the list itself."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from services.core.db import Database
from services.core.models import Refund
from tests.e2e.conftest import OPERATOR, Stack, login, open_link, paid_payment, screenshot, wait_for_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BUYER_EMAIL = "e2e.dialog@example.com"
ROW_HEIGHT = 35  # Streamlit's data grid: header and rows
CHECKBOX_WIDTH = 34  # the row-selection column
REFUND_CELL_WIDTH = 70  # a "small" column


def _paid_payment(stack: Stack) -> str:
    return paid_payment(stack, email=BUYER_EMAIL, name="정다이얼", phone="010-5555-0202")


def _refunds_of(stack: Stack, imp_uid: str) -> list[tuple[Decimal, str, str]]:
    db = Database(stack.database_url)
    try:
        with db.read() as session:
            return [
                (r.amount, r.status, r.reason)
                for r in session.query(Refund).all()
                if r.payment is not None and r.payment.imp_uid == imp_uid
            ]
    finally:
        db.dispose()


def test_a_row_refunded_in_two_clicks_shown_in_place(page: Page, stack: Stack) -> None:
    imp_uid = _paid_payment(stack)
    login(page, stack, *OPERATOR)
    open_link(page, page.get_by_test_id("stSidebarNavLink").filter(has_text="결제 내역").first)
    search = page.get_by_label("검색", exact=True)
    search.fill(BUYER_EMAIL)
    search.press("Enter")
    wait_for_app(page)
    expect(page.get_by_text("1건 · 결제 ₩50,000").first).to_be_visible()

    # Click 1: the row's "↩ 환불" cell, the first column after the row's checkbox. The grid is drawn
    # on a canvas: the cell is clicked where it is drawn.
    grid = page.get_by_test_id("data-grid-canvas").first
    expect(grid).to_be_visible()
    dialog = page.get_by_role("dialog")
    for _ in range(3):  # a click landing while the grid is still being redrawn is lost: the test, not a person, retries
        box = grid.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + CHECKBOX_WIDTH + REFUND_CELL_WIDTH / 2, box["y"] + ROW_HEIGHT * 1.5)
        with contextlib.suppress(PlaywrightTimeout):
            dialog.get_by_label("환불 금액", exact=True).wait_for(timeout=10_000)
            break
    expect(dialog.get_by_label("환불 금액", exact=True)).to_have_value("50000")
    expect(dialog.get_by_role("radio", name="고객 요청 취소")).to_be_checked()  # the choice, already made
    wait_for_app(page)
    screenshot(page, "21-list-refund-dialog")

    # Click 2: confirm. The dialog closes and the list shows the refund.
    dialog.get_by_role("button", name="환불하기", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    wait_for_app(page)
    expect(page.get_by_test_id("stAlertContentSuccess").filter(has_text="환불했습니다: ₩50,000")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("1건 · 결제 ₩50,000 · 환불 ₩50,000").first).to_be_visible()
    screenshot(page, "22-list-refund-done")
    assert _refunds_of(stack, imp_uid) == [(Decimal(50000), "succeeded", "고객 요청 취소")]
