"""An open refund dialog is no way around the role gate: Streamlit reruns only the dialog when one of its
widgets is used, so the dialog itself must ask again who is signed in before it refunds."""

from __future__ import annotations

import contextlib

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from services.auth.access import Actor, Role
from services.auth.accounts import set_role
from services.core.config import Settings
from services.runtime import build_runtime
from tests.e2e.conftest import ADMIN, Stack, _add_user_in_process, login, open_link, paid_payment, wait_for_app
from tests.e2e.test_refund_from_the_list import _refunds_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _set_role(stack: Stack, username: str, role: str, *, active: bool) -> None:
    rt = build_runtime(Settings(database_url=stack.database_url, portone_api_url=stack.sandbox_url))
    try:
        set_role(rt, username=username, role=role, active=active, actor=Actor(ADMIN[0], Role.ADMIN))
    finally:
        rt.close()


@pytest.mark.parametrize(("role", "active"), [("viewer", True), ("operator", False)], ids=["demoted", "disabled"])
def test_an_operator_demoted_or_disabled_while_the_dialog_is_open_refunds_nothing(
    page: Page, stack: Stack, role: str, active: bool
) -> None:
    user = (f"e2e-dialog-{role}-{active}", "e2e-dialog-operator-password")
    _add_user_in_process(stack.database_url, stack.sandbox_url, *user, role="operator")
    # a buyer of its own: the other e2e tests search the shared stack by their buyers' e-mail
    imp_uid = paid_payment(
        stack, email=f"e2e.access.{role}.{active}@example.com", name="권한변경", phone="010-0000-0303"
    )
    login(page, stack, *user)
    open_link(page, page.get_by_test_id("stSidebarNavLink").filter(has_text="결제 상세").first)
    page.get_by_label("imp_uid 또는 주문번호(merchant_uid)").fill(imp_uid)
    page.get_by_role("button", name="열기", exact=True).click()
    wait_for_app(page)
    page.get_by_role("button", name="이 결제 환불하기").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("환불 금액", exact=True)).to_have_value("50000")
    wait_for_app(page)

    _set_role(stack, user[0], role, active=active)  # an admin acts while the dialog is open
    dialog.get_by_label("환불 금액", exact=True).fill("10000")
    dialog.get_by_label("환불 금액", exact=True).press("Enter")
    wait_for_app(page)
    confirm = dialog.get_by_role("button", name="환불하기", exact=True)
    with contextlib.suppress(PlaywrightTimeout):  # the dialog may already have closed on the last touch
        confirm.click(timeout=3000)
    wait_for_app(page)
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert _refunds_of(stack, imp_uid) == []
