"""The alerts page's "Run reconciliation now": operators run it with a progress bar, everyone sees the runs."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard.format import kst
from services.core import job_lock
from services.core.models import ReconciliationRun
from services.payments import orders
from services.reconciliation import schedule as reconcile_schedule
from services.runtime import Runtime
from tests.factories import SandboxControl

PAGE = "views/alerts.py"


def _button(at: AppTest, key: str) -> object:
    return next(b for b in at.button if b.key == key)


def test_operator_runs_reconciliation_and_the_run_is_listed(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = orders.create_order(dashboard_runtime, customer_email="a@example.com", customer_name="김")
    imp_uid = sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"]  # no webhook reaches us
    at = open_app("operator")
    at.switch_page(PAGE).run()
    assert not at.exception
    _button(at, "reconcile_run").click().run()  # type: ignore[attr-defined]
    assert not at.exception, at.exception
    assert any(s.value.startswith("대조 완료") for s in at.success), [e.value for e in at.warning]
    with dashboard_runtime.db.read() as session:
        run = session.scalar(select(ReconciliationRun))
        assert run is not None and run.status == "finished" and run.payments_checked >= 1
    assert imp_uid
    listed = at.dataframe[-1].value
    assert len(listed) == 1 and listed.iloc[0]["실행자"] == "operator"


def test_viewer_sees_runs_but_cannot_start_one(open_app: Callable[..., AppTest]) -> None:
    at = open_app("viewer")
    at.switch_page(PAGE).run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "reconcile_run"]


def test_the_page_shows_the_last_scheduled_run_and_waits_for_a_run_in_progress(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    at = open_app("operator")
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any(c.value.startswith("정기 대조 (매 10분, 최근 2d): 아직 실행된 적이 없습니다") for c in at.caption), [
        c.value for c in at.caption
    ]
    summary = reconcile_schedule.run_once(dashboard_runtime)
    assert summary is not None
    at.switch_page(PAGE).run()
    [line] = [c.value for c in at.caption if c.value.startswith("정기 대조")]
    assert f"마지막 실행 {kst(summary.started_at)} — 완료, {summary.payments_checked:,}건 확인" in line, line
    # A run in progress (the scheduled one) holds the lock: "reconcile now" says so and starts nothing.
    with job_lock.held(dashboard_runtime, job_lock.RECONCILE):
        _button(at, "reconcile_run").click().run()  # type: ignore[attr-defined]
    assert not at.exception, at.exception
    assert any(w.value.startswith("다른 대조가 진행 중입니다") for w in at.warning), [w.value for w in at.warning]
    with dashboard_runtime.db.read() as session:
        assert len(session.scalars(select(ReconciliationRun)).all()) == 1
