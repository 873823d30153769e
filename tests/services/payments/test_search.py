"""The payments list service: filters, search, keyset paging, totals, masking and saved views,
on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.auth.access import Actor
from services.auth.accounts import create_user
from services.core.errors import Forbidden, InvalidRequest, NotFound
from services.core.models import Payment, Role
from services.payments import orders, saved_views
from services.payments import search as payment_search
from services.payments import verification as payments
from services.payments.search import (
    PaymentFilters,
    PaymentState,
    SortOrder,
    TimeBasis,
    kst_day_bounds,
    payment_totals,
    search_payments,
)
from services.runtime import Runtime
from tests.factories import SandboxControl

OPERATOR = Actor("kim", Role.OPERATOR)
VIEWER = Actor("lee", Role.VIEWER)
DAY = date(2026, 11, 21)  # a KST calendar day: 2026-11-20 15:00 UTC to 2026-11-21 15:00 UTC
_numbers = itertools.count(1)


def _insert(rt: Runtime, **fields: Any) -> str:
    """One payment row written directly (test data only; the app writes them via services.payments.sync)."""
    number = next(_numbers)
    started = fields.pop("started_at", datetime(2026, 11, 21, 3, 0, tzinfo=UTC))
    status = fields.pop("status", "paid")
    values: dict[str, Any] = {
        "imp_uid": f"imp_t{number:06d}",
        "merchant_uid": f"chekar_t_{number:06d}",
        "status": status,
        "amount": Decimal(50000),
        "currency": "KRW",
        "pg_provider": "kcp",
        "pay_method": "card",
        "buyer_name": "김민준",
        "buyer_email": f"buyer{number}@example.com",
        "buyer_tel": f"010-1000-{number:04d}",
        "started_at": started,
        "paid_at": started if status in ("paid", "cancelled") else None,
        "verified": True,
        **fields,
    }
    with rt.db.write() as session:
        session.add(Payment(**values))
    return str(values["imp_uid"])


def _ids(rt: Runtime, filters: PaymentFilters, actor: Actor = OPERATOR) -> set[str]:
    page = search_payments(rt, actor=actor, filters=filters, limit=500)
    assert page.next_cursor is None
    return {row.imp_uid for row in page.rows}


def _day(**overrides: Any) -> PaymentFilters:
    return PaymentFilters(date_from=DAY, date_to=DAY, **overrides)


def test_kst_day_bounds_are_utc() -> None:
    assert kst_day_bounds(DAY, DAY) == (datetime(2026, 11, 20, 15, tzinfo=UTC), datetime(2026, 11, 21, 15, tzinfo=UTC))


def test_each_filter_changes_the_results(runtime: Runtime) -> None:
    before_midnight = _insert(runtime, started_at=datetime(2026, 11, 20, 14, 59, 59, tzinfo=UTC))  # 11-20 KST
    paid = _insert(runtime, started_at=datetime(2026, 11, 20, 15, 0, tzinfo=UTC))  # 00:00 on 11-21 KST
    partial = _insert(runtime, cancel_amount=Decimal(20000))
    cancelled = _insert(runtime, status="cancelled", cancel_amount=Decimal(50000))
    failed = _insert(runtime, status="failed", fail_reason="declined")
    ready = _insert(runtime, status="ready", pay_method="vbank")
    forgery = _insert(runtime, status="cancelled", amount=Decimal(1000), cancel_amount=Decimal(1000), verified=False)
    usd = _insert(runtime, currency="USD", amount=Decimal("38.50"), pg_provider="eximbay")
    trans = _insert(runtime, pay_method="trans", pg_provider="html5_inicis")
    late_paid = _insert(  # started on 11-21 KST, paid (deposit) on 11-22 KST
        runtime, pay_method="vbank", paid_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    )
    day = {paid, partial, cancelled, failed, ready, forgery, usd, trans, late_paid}

    assert _ids(runtime, _day()) == day
    assert _ids(runtime, PaymentFilters(date_from=DAY - timedelta(days=1), date_to=DAY)) == day | {before_midnight}
    assert _ids(runtime, _day(states=(PaymentState.PAID,))) == {paid, usd, trans, late_paid}
    assert _ids(runtime, _day(states=(PaymentState.PARTIALLY_REFUNDED,))) == {partial}
    assert _ids(runtime, _day(states=(PaymentState.CANCELLED,))) == {cancelled}
    assert _ids(runtime, _day(states=(PaymentState.FAILED, PaymentState.READY))) == {failed, ready}
    assert _ids(runtime, _day(states=(PaymentState.FORGERY,))) == {forgery}
    assert _ids(runtime, _day(currencies=("usd",))) == {usd}
    assert _ids(runtime, _day(pg_providers=("html5_inicis",))) == {trans}
    assert _ids(runtime, _day(pay_methods=("vbank",))) == {ready, late_paid}
    # The paid-time basis: only payments paid that KST day (the deposit on 11-22 moves).
    assert _ids(runtime, _day(time_basis=TimeBasis.PAID)) == {paid, partial, cancelled, forgery, usd, trans}
    next_day = DAY + timedelta(days=1)
    assert _ids(runtime, PaymentFilters(date_from=next_day, date_to=next_day, time_basis=TimeBasis.PAID)) == {late_paid}
    assert _ids(runtime, _day(states=(PaymentState.PAID,), currencies=("KRW",), pay_methods=("card",))) == {paid}


@pytest.mark.parametrize("strategy", ["narrow", "broad"])
def test_search_is_exact_for_ids_and_prefix_for_buyers(
    runtime: Runtime, strategy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if strategy == "broad":  # every search counts as broad: checked along the date range instead
        monkeypatch.setattr(payment_search, "BROAD_SEARCH_ROWS", 0)
    kim = _insert(runtime, buyer_name="김민준", buyer_email="Minjun.Kim@example.com", buyer_tel="010-2345-6789")
    lee = _insert(runtime, buyer_name="이민준", buyer_email="seoyeon@example.com", buyer_tel="010-3456-7890")
    smith = _insert(runtime, buyer_name="John Smith", buyer_email="john@example.com", buyer_tel="+1 415 555 0100")
    _insert(runtime, buyer_name="100%", buyer_email="percent@example.com", buyer_tel="010-9999-0000")

    assert _ids(runtime, _day(query=kim)) == {kim}
    assert _ids(runtime, _day(query=kim[:-1])) == set()  # imp_uid: whole value only
    merchant = f"chekar_t_{int(lee[5:]):06d}"
    assert _ids(runtime, _day(query=merchant)) == {lee}
    assert _ids(runtime, _day(query="김민")) == {kim}  # name prefix, not any substring
    assert _ids(runtime, _day(query="민준")) == set()
    assert _ids(runtime, _day(query="Minjun.K")) == {kim}  # e-mail prefix as typed...
    assert _ids(runtime, _day(query="seoyeon@")) == {lee}
    assert _ids(runtime, _day(query="Seoyeon@")) == {lee}  # ...or lowercased
    assert _ids(runtime, _day(query="01023456789")) == {kim}  # digits only finds the dashed number
    assert _ids(runtime, _day(query="010-3456")) == {lee}
    assert _ids(runtime, _day(query="+1 415")) == {smith}
    assert _ids(runtime, _day(query="%")) == set()  # LIKE wildcards mean nothing here
    assert _ids(runtime, _day(query="_")) == set()
    # The search stays within the other filters.
    assert _ids(runtime, _day(query="김민", states=(PaymentState.FAILED,))) == set()


@pytest.mark.parametrize("sort", list(SortOrder))
def test_keyset_paging_visits_every_row_exactly_once(runtime: Runtime, sort: SortOrder) -> None:
    base = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    for index in range(23):
        # Many ties on time and on amount: the id breaks them.
        _insert(
            runtime,
            started_at=base + timedelta(minutes=index // 4),
            amount=Decimal(50000 - 10000 * (index % 3)),
        )
    filters = _day(sort=sort)
    seen: list[tuple[Any, int]] = []
    cursor = None
    pages = 0
    while True:
        page = search_payments(runtime, actor=OPERATOR, filters=filters, cursor=cursor, limit=4)
        pages += 1
        key = (
            (lambda r: r.amount) if sort in (SortOrder.AMOUNT_DESC, SortOrder.AMOUNT_ASC) else (lambda r: r.started_at)
        )
        seen += [(key(row), row.id) for row in page.rows]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 6
    ids = [row_id for _, row_id in seen]
    assert len(ids) == len(set(ids)) == 23
    descending = sort in (SortOrder.NEWEST, SortOrder.AMOUNT_DESC)
    assert seen == sorted(seen, reverse=descending)


def test_a_cursor_from_another_ordering_is_refused(runtime: Runtime) -> None:
    for _ in range(3):
        _insert(runtime)
    cursor = search_payments(runtime, actor=OPERATOR, filters=_day(), limit=1).next_cursor
    assert cursor is not None
    with pytest.raises(InvalidRequest):
        search_payments(runtime, actor=OPERATOR, filters=_day(sort=SortOrder.AMOUNT_ASC), cursor=cursor, limit=1)
    with pytest.raises(InvalidRequest):
        search_payments(runtime, actor=OPERATOR, filters=_day(), cursor="not-a-cursor", limit=1)
    with pytest.raises(InvalidRequest):
        PaymentFilters(date_from=DAY - timedelta(days=200), date_to=DAY)
    with pytest.raises(Forbidden):
        search_payments(runtime, actor=None, filters=_day())  # type: ignore[arg-type]


def test_totals_per_currency_cover_every_page(runtime: Runtime) -> None:
    for _ in range(60):
        _insert(runtime)  # 60 × ₩50,000 paid
    _insert(runtime, cancel_amount=Decimal(20000))
    _insert(runtime, status="cancelled", cancel_amount=Decimal(50000))
    _insert(runtime, status="failed")  # counted, never paid
    _insert(runtime, currency="USD", amount=Decimal("38.50"), pg_provider="eximbay")
    _insert(runtime, currency="USD", amount=Decimal("38.50"), cancel_amount=Decimal("10.25"), pg_provider="eximbay")
    _insert(runtime, started_at=datetime(2026, 11, 19, 3, 0, tzinfo=UTC))  # outside the day

    totals = {t.currency: t for t in payment_totals(runtime, actor=VIEWER, filters=_day())}
    krw, usd = totals["KRW"], totals["USD"]
    assert (krw.count, krw.paid, krw.refunded, krw.net) == (63, Decimal(3100000), Decimal(70000), Decimal(3030000))
    assert (usd.count, usd.paid, usd.refunded, usd.net) == (2, Decimal("77.00"), Decimal("10.25"), Decimal("66.75"))
    assert str(usd.net) == "66.75"
    assert set(totals) == {"KRW", "USD"}
    only_failed = payment_totals(runtime, actor=VIEWER, filters=_day(states=(PaymentState.FAILED,)))
    assert [(t.currency, t.count, t.paid) for t in only_failed] == [("KRW", 1, Decimal(0))]


def _paid_payment(runtime: Runtime, sandbox: SandboxControl, name: str, email: str, phone: str) -> str:
    order = orders.create_order(runtime, customer_email=email, customer_name=name, customer_phone=phone)
    imp_uid = str(
        sandbox.checkout(order.merchant_uid, order.amount, buyer_name=name, buyer_email=email, buyer_tel=phone)[
            "imp_uid"
        ]
    )
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def test_viewers_see_email_and_phone_masked(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = _paid_payment(runtime, sandbox, "김체카", "kim@example.com", "010-1234-5678")
    filters = PaymentFilters.default()
    viewer_row = search_payments(runtime, actor=VIEWER, filters=filters).rows[0]
    operator_page = search_payments(runtime, actor=OPERATOR, filters=filters)
    admin_row = search_payments(runtime, actor=Actor("boss", Role.ADMIN), filters=filters).rows[0]
    assert viewer_row.imp_uid == imp_uid
    assert (viewer_row.buyer_email, viewer_row.buyer_tel) == ("k***@example.com", "010-****-5678")
    assert (operator_page.rows[0].buyer_email, operator_page.rows[0].buyer_tel) == ("kim@example.com", "010-1234-5678")
    assert (admin_row.buyer_email, admin_row.buyer_tel) == ("kim@example.com", "010-1234-5678")
    assert not operator_page.masked
    assert viewer_row.state == PaymentState.PAID and viewer_row.amount == Decimal(50000)
    # Searching by the full e-mail works for a viewer too, and still shows it masked.
    found = search_payments(runtime, actor=VIEWER, filters=PaymentFilters.default(query="kim@example.com"))
    assert [r.buyer_email for r in found.rows] == ["k***@example.com"]


def test_saved_views_are_per_user(runtime: Runtime) -> None:
    for username in ("kim", "lee"):
        create_user(runtime, username=username, password="password-12345", role="operator", actor=None)
    kim, lee = Actor("kim", Role.OPERATOR), Actor("lee", Role.OPERATOR)
    today = date(2026, 11, 28)
    rolling = PaymentFilters.default(today=today, states=(PaymentState.FAILED,), currencies=("KRW",))
    fixed = PaymentFilters(date_from=date(2026, 11, 1), date_to=date(2026, 11, 15), query="김민")
    saved_views.save_view(runtime, actor=kim, name="실패 건", filters=rolling, today=today)
    saved_views.save_view(runtime, actor=kim, name="11월 전반", filters=fixed, today=today)
    saved_views.save_view(runtime, actor=lee, name="실패 건", filters=fixed, today=today)  # same name, other user

    mine = {v.name: v for v in saved_views.list_views(runtime, actor=kim, today=today + timedelta(days=3))}
    assert set(mine) == {"실패 건", "11월 전반"}
    # A range ending on the day it was saved keeps rolling; a fixed range stays fixed.
    assert mine["실패 건"].filters == PaymentFilters.default(
        today=today + timedelta(days=3), states=(PaymentState.FAILED,), currencies=("KRW",)
    )
    assert mine["11월 전반"].filters == fixed
    assert [v.filters for v in saved_views.list_views(runtime, actor=lee, today=today)] == [fixed]

    saved_views.save_view(runtime, actor=kim, name="실패 건", filters=fixed, today=today)  # replaces
    assert len(saved_views.list_views(runtime, actor=kim)) == 2
    with pytest.raises(NotFound):  # another user's view is invisible
        saved_views.delete_view(runtime, actor=lee, view_id=mine["11월 전반"].id)
    saved_views.delete_view(runtime, actor=kim, view_id=mine["11월 전반"].id)
    assert [v.name for v in saved_views.list_views(runtime, actor=kim)] == ["실패 건"]
    with pytest.raises(InvalidRequest):
        saved_views.save_view(runtime, actor=kim, name="  ", filters=fixed)
    with pytest.raises(Forbidden):  # not a dashboard user
        saved_views.list_views(runtime, actor=Actor("ghost", Role.ADMIN))
