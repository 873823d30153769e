"""Sales summaries: exact sums per currency by KST day and month, partial refunds, forgeries left out.

All data is made through the real services against the sandbox: orders, checkouts, completes and
refunds; past-dated payments are PortOne records (sandbox bulk insert) fetched by verify_payment.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.auth.access import Actor
from services.core.errors import Forbidden, ForgeryDetected, InvalidRequest
from services.core.kst import kst_today
from services.core.models import Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import engine as refunds
from services.reporting import sales as reports
from services.runtime import Runtime
from tests.factories import SandboxControl

VIEWER = Actor("viewer", Role.VIEWER)


def paid(runtime: Runtime, sandbox: SandboxControl, currency: str = "KRW", **buyer: str) -> str:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카", currency=currency)
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, currency, **buyer)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def paid_in_the_past(
    runtime: Runtime, sandbox: SandboxControl, paid_at: datetime, cancels: list[tuple[str, datetime]] = ()
) -> str:
    """An order of ours paid at `paid_at` (and cancelled in PortOne's console at the given times)."""
    order = orders.create_order(runtime, customer_email="lee@example.com", customer_name="이체카")
    spec: dict[str, object] = {
        "merchant_uid": order.merchant_uid,
        "amount": str(order.amount),
        "currency": order.currency,
        "status": "paid",
        "paid_at": int(paid_at.timestamp()),
        "buyer_name": "이체카",
    }
    if cancels:
        spec["cancel_history"] = [
            {"amount": a, "cancelled_at": int(t.timestamp()), "reason": "콘솔"} for a, t in cancels
        ]
    response = sandbox.http.post("/sandbox/payments/bulk", json={"payments": [spec]})
    response.raise_for_status()
    imp_uid = str(response.json()["imp_uids"][0])
    payments.verify_payment(runtime, imp_uid=imp_uid, source="sync")
    return imp_uid


def forgery(runtime: Runtime, sandbox: SandboxControl) -> str:
    sandbox.configure(enforce_prepare=False)
    order = orders.create_order(runtime, customer_email="x@example.com", customer_name="위조")
    imp_uid = str(sandbox.checkout(order.merchant_uid, "100")["imp_uid"])
    with pytest.raises(ForgeryDetected):
        payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    sandbox.configure(enforce_prepare=True)
    return imp_uid


def test_today_sums_exact_per_currency_with_partial_refunds(runtime: Runtime, sandbox: SandboxControl) -> None:
    first = kst_today()
    krw_a = paid(runtime, sandbox)
    paid(runtime, sandbox)
    usd = paid(runtime, sandbox, "USD")
    usd_b = paid(runtime, sandbox, "USD")
    forgery(runtime, sandbox)
    refunds.refund(runtime, imp_uid=krw_a, amount="20000", reason="부분", actor="kim", idempotency_key="r1")
    refunds.refund(runtime, imp_uid=usd, amount="10.25", reason="partial", actor="kim", idempotency_key="r2")
    refunds.refund(runtime, imp_uid=usd_b, amount="0.10", reason="partial", actor="kim", idempotency_key="r3")
    refunds.refund(runtime, imp_uid=usd_b, amount="0.20", reason="partial", actor="kim", idempotency_key="r4")

    day = kst_today()  # the same as `first` unless the test ran across midnight KST
    rows = reports.summary(runtime, actor=VIEWER, start=first, end=day)
    totals = reports.roll_up(rows)
    krw, usd_totals = totals[("KRW", "")], totals[("USD", "")]
    assert (krw.paid_count, krw.gross, krw.refund_count, krw.refunds, krw.net) == (
        2,
        Decimal("100000"),
        1,
        Decimal("20000"),
        Decimal("80000"),
    )
    assert (usd_totals.paid_count, usd_totals.gross, usd_totals.refunds, usd_totals.net) == (
        2,
        Decimal("77.00"),
        Decimal("10.55"),
        Decimal("66.45"),
    )
    assert str(usd_totals.net) == "66.45" and str(krw.gross) == "100000"  # currency precision kept
    assert {(r.currency, r.pg_provider, r.pay_method) for r in rows} == {
        ("KRW", "kcp", "card"),
        ("USD", "eximbay", "card"),
    }
    assert {r.period for r in rows} <= {first.isoformat(), day.isoformat()}
    only_usd = reports.summary(runtime, actor=VIEWER, start=first, end=day, currency="USD")
    assert [r.currency for r in only_usd] == ["USD"]


def test_kst_day_and_month_buckets_and_a_negative_net(runtime: Runtime, sandbox: SandboxControl) -> None:
    # 2025-03-31 23:59:59 KST and 2025-04-01 00:30 KST: one UTC day, two KST days and months.
    paid_in_the_past(runtime, sandbox, datetime(2025, 3, 31, 14, 59, 59, tzinfo=UTC))
    paid_in_the_past(
        runtime,
        sandbox,
        datetime(2025, 3, 31, 15, 30, tzinfo=UTC),
        cancels=[("5000", datetime(2025, 4, 2, 1, 0, tzinfo=UTC)), ("2500", datetime(2025, 4, 2, 2, 0, tzinfo=UTC))],
    )
    rows = reports.summary(runtime, actor=VIEWER, start=date(2025, 3, 31), end=date(2025, 4, 2))
    by_day = reports.roll_up(rows, by="period")
    assert by_day[("KRW", "2025-03-31")].gross == Decimal("50000")
    assert by_day[("KRW", "2025-04-01")].gross == Decimal("50000")
    april_2 = by_day[("KRW", "2025-04-02")]
    assert (april_2.paid_count, april_2.gross, april_2.refund_count, april_2.refunds) == (0, 0, 2, Decimal("7500"))
    assert april_2.net == Decimal("-7500")

    months = reports.roll_up(
        reports.summary(
            runtime,
            actor=VIEWER,
            start=date(2025, 3, 1),
            end=date(2025, 4, 30),
            granularity=reports.Granularity.MONTH,
        ),
        by="period",
    )
    assert {key: (t.gross, t.refunds) for key, t in months.items()} == {
        ("KRW", "2025-03"): (Decimal("50000"), Decimal("0")),
        ("KRW", "2025-04"): (Decimal("50000"), Decimal("7500")),
    }
    # A range that ends the day before leaves the second payment out entirely.
    march_31 = reports.summary(runtime, actor=VIEWER, start=date(2025, 3, 31), end=date(2025, 3, 31))
    assert [(r.paid_count, r.gross, r.refunds) for r in march_31] == [(1, Decimal("50000"), Decimal("0"))]


def test_empty_range_bad_range_and_no_actor(runtime: Runtime) -> None:
    assert reports.summary(runtime, actor=VIEWER, start=date(2020, 1, 1), end=date(2020, 1, 31)) == []
    with pytest.raises(InvalidRequest):
        reports.summary(runtime, actor=VIEWER, start=date(2020, 2, 1), end=date(2020, 1, 1))
    with pytest.raises(Forbidden):
        reports.summary(runtime, actor=None, start=date(2020, 1, 1), end=date(2020, 1, 1))  # type: ignore[arg-type]


def test_month_bounds() -> None:
    assert reports.month_bounds(date(2024, 2, 15), date(2024, 2, 3)) == (date(2024, 2, 1), date(2024, 2, 29))
    assert reports.month_bounds(date(2024, 11, 5), date(2025, 1, 9)) == (date(2024, 11, 1), date(2025, 1, 31))


def test_periods_cover_the_range_without_gaps() -> None:
    assert reports.periods(date(2024, 2, 27), date(2024, 3, 1), reports.Granularity.DAY) == [
        "2024-02-27",
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    assert reports.periods(date(2024, 11, 1), date(2025, 2, 28), reports.Granularity.MONTH) == [
        "2024-11",
        "2024-12",
        "2025-01",
        "2025-02",
    ]
