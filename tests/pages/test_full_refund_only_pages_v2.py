"""PortOne V2 answers a partial refund the PG refuses (a foreign card) with 502 PG_PROVIDER: an
unknown outcome, settled by reading back, never resent. The refunds page says so and passes on the
PG's words with the advice to refund in full (AppTest, the dashboard on PortOne V2)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.auth.accounts import create_user
from services.core.models import Refund
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.pages.conftest import PASSWORDS

FOREIGN_CARD = "5555-5555-5555-4444"


@pytest.fixture
def portone_version() -> str:
    return "v2"


@pytest.fixture
def dashboard_runtime(tmp_path: Path, sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    url = f"sqlite:///{tmp_path / 'dashboard.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("PORTONE_MODE", "sandbox")
    monkeypatch.setenv("PORTONE_API_URL", sandbox.url)
    monkeypatch.setenv("PORTONE_API_VERSION", "v2")
    rt = make_runtime(database_url=url, portone_api_url=sandbox.url, portone_api_version="v2")
    for role, password in PASSWORDS.items():
        create_user(rt, username=role, password=password, role=role, actor=None)
    try:
        yield rt
    finally:
        rt.close()


def test_a_v2_partial_refund_the_pg_refuses_shows_the_pg_words_and_the_advice(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(partial_cancel_refused_cards=[FOREIGN_CARD])
    order = orders.create_order(dashboard_runtime, customer_email="kim@example.com", customer_name="김체카")
    paid = sandbox.checkout(order.merchant_uid, order.amount, card_number=FOREIGN_CARD)
    payments.complete(dashboard_runtime, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    at = open_app("operator")
    at.switch_page("views/refunds.py").run()
    at.text_input(key="refunds.identifier").input(order.merchant_uid)
    at.button(key="refunds.load").click().run()
    at.text_input(key="refunds.amount").input("20000")
    at.text_area(key="refunds.reason").input("고객 요청")
    at.button(key="refunds.start").click().run()
    at.button(key="refunds.single.confirm").click().run()
    assert not at.exception, at.exception
    text = "\n".join(str(e.value) for kind in (at.success, at.info, at.warning, at.error) for e in kind)
    assert "응답을 받지 못했습니다" in text  # unknown, being settled by reading back
    assert "PG사가 오류를 알려 왔습니다" in text and "부분취소가 불가능" in text
    assert "남은 금액 전부로 다시 환불하세요" in text
    assert len(sandbox.calls()["cancels"]) == 1 and sandbox.payment(str(paid["imp_uid"]))["cancel_amount"] == 0
    with dashboard_runtime.db.read() as session:
        assert [r.status for r in session.scalars(select(Refund))] == ["unknown"]
