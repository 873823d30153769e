"""Overview figures: exact per currency, partial refunds on the day they happened, KST day edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from services.auth.access import Actor
from services.core.kst import KST
from services.core.models import Alert, Role
from services.payments import orders
from services.payments import verification as payments
from services.reporting.overview import overview, period_bounds
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl

VIEWER = Actor("viewer", Role.VIEWER)
NOW = datetime(2025, 3, 15, 12, 0, tzinfo=KST)  # Saturday noon in Seoul, 03:00 UTC


def kst(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=KST)  # type: ignore[misc]


def _record(
    runtime: Runtime,
    sandbox: SandboxControl,
    currency: str,
    paid_at: datetime,
    cancels: tuple[tuple[str, datetime], ...] = (),
    amount: str | None = None,
) -> str:
    """An order of ours and its payment at PortOne as given, recorded through verification."""
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카", currency=currency)
    paid_amount = Decimal(amount) if amount is not None else order.amount
    cancelled = sum((Decimal(a) for a, _ in cancels), Decimal(0))
    spec: dict[str, object] = {
        "merchant_uid": order.merchant_uid,
        "amount": str(paid_amount),
        "currency": currency,
        "status": "cancelled" if cancelled == paid_amount else "paid",
        "paid_at": int(paid_at.timestamp()),
    }
    if cancels:
        spec["cancel_history"] = [{"amount": a, "cancelled_at": int(at.timestamp())} for a, at in cancels]
    response = sandbox.http.post("/sandbox/payments/bulk", json={"payments": [spec]})
    response.raise_for_status()
    imp_uid = str(response.json()["imp_uids"][0])
    payments.verify_payment(runtime, imp_uid=imp_uid, source="sync")
    return imp_uid


def _figures(result: object, period: str) -> dict[str, tuple[int, Decimal, int, Decimal, Decimal]]:
    return {
        f.currency: (f.paid_count, f.paid_amount, f.refund_count, f.refund_amount, f.net_amount)
        for f in result.period(period).figures  # type: ignore[attr-defined]
    }


def test_period_bounds_are_kst_calendar_days() -> None:
    bounds = period_bounds(NOW)
    assert bounds["today"] == (datetime(2025, 3, 14, 15, tzinfo=UTC), datetime(2025, 3, 15, 15, tzinfo=UTC))
    assert bounds["week"][0] == datetime(2025, 3, 8, 15, tzinfo=UTC)  # KST 03-09 00:00
    assert bounds["month"][0] == datetime(2025, 2, 28, 15, tzinfo=UTC)  # KST 03-01 00:00
    # 00:30 in Seoul is still the previous day in UTC: "today" follows Seoul.
    early = period_bounds(datetime(2025, 3, 1, 0, 30, tzinfo=KST))
    assert early["today"][0] == datetime(2025, 2, 28, 15, tzinfo=UTC)
    assert early["month"][0] == early["today"][0]


def test_figures_per_currency_with_partial_refunds_by_kst_day(runtime: Runtime, sandbox: SandboxControl) -> None:
    # Paid at the first second of today (KST), partly refunded this morning.
    a = _record(runtime, sandbox, "KRW", kst(2025, 3, 15, 0, 0, 0), (("20000", kst(2025, 3, 15, 10)),))
    # Paid at the last second of yesterday, partly refunded one second after midnight.
    _record(runtime, sandbox, "KRW", kst(2025, 3, 14, 23, 59, 59), (("5000", kst(2025, 3, 15, 0, 0, 1)),))
    # USD today: one partial refund today, the rest tomorrow (after every period shown).
    _record(
        runtime,
        sandbox,
        "USD",
        kst(2025, 3, 15, 9),
        (("10.25", kst(2025, 3, 15, 9, 30)), ("28.25", kst(2025, 3, 16, 0, 0, 0))),
    )
    _record(runtime, sandbox, "KRW", kst(2025, 3, 9, 0, 0, 0))  # first second of the 7-day window
    _record(runtime, sandbox, "KRW", kst(2025, 3, 8, 23, 59, 59))  # just before it
    _record(runtime, sandbox, "KRW", kst(2025, 3, 1, 0, 0, 0))  # first second of the month (UTC: Feb 28)
    _record(runtime, sandbox, "KRW", kst(2025, 2, 28, 23, 59, 59))  # last second of February
    # A forged amount paid today is cancelled and alerted, never counted as revenue.
    _record(runtime, sandbox, "KRW", kst(2025, 3, 15, 11), amount="100")

    result = overview(runtime, actor=VIEWER, now=NOW)

    assert _figures(result, "today") == {
        "KRW": (1, Decimal(50000), 2, Decimal(25000), Decimal(25000)),
        "USD": (1, Decimal("38.50"), 1, Decimal("10.25"), Decimal("28.25")),
    }
    assert _figures(result, "week") == {
        "KRW": (3, Decimal(150000), 2, Decimal(25000), Decimal(125000)),
        "USD": (1, Decimal("38.50"), 1, Decimal("10.25"), Decimal("28.25")),
    }
    assert _figures(result, "month") == {
        "KRW": (5, Decimal(250000), 2, Decimal(25000), Decimal(225000)),
        "USD": (1, Decimal("38.50"), 1, Decimal("10.25"), Decimal("28.25")),
    }
    usd = next(f for f in result.period("today").figures if f.currency == "USD")
    assert str(usd.paid_amount) == "38.50" and str(usd.net_amount) == "28.25"  # exact, at the currency's precision
    assert result.currencies == ("KRW", "USD")
    assert result.has_payments
    with runtime.db.read() as session:  # whatever else verification flagged, counted by severity
        open_alerts = [a.severity for a in session.scalars(select(Alert)) if a.status != "resolved"]
    assert result.open_alerts == {s: open_alerts.count(s) for s in ("critical", "high", "medium", "low")}
    assert result.open_alerts["critical"] == 1  # the forged amount

    daily = {(d.day, d.currency): (d.count, d.amount) for d in result.daily}
    assert daily == {
        (date(2025, 2, 28), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 1), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 8), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 9), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 14), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 15), "KRW"): (1, Decimal(50000)),
        (date(2025, 3, 15), "USD"): (1, Decimal("38.50")),
    }
    assert (result.chart_start, result.chart_end) == (date(2025, 2, 14), date(2025, 3, 15))

    # The next morning the USD remainder's refund is today's; yesterday's figures left "today".
    tomorrow = overview(runtime, actor=VIEWER, now=NOW + timedelta(days=1))
    assert _figures(tomorrow, "today") == {"USD": (0, Decimal("0.00"), 1, Decimal("28.25"), Decimal("-28.25"))}
    assert a  # the payments exist at PortOne under their imp_uids


def test_last_webhook_and_empty_database(runtime: Runtime, sandbox: SandboxControl) -> None:
    empty = overview(runtime, actor=VIEWER, now=NOW)
    assert not empty.has_payments
    assert all(p.figures == () for p in empty.periods)
    assert empty.daily == ()
    assert empty.last_webhook is None
    assert empty.open_alerts == {"critical": 0, "high": 0, "medium": 0, "low": 0}

    imp_uid = _record(runtime, sandbox, "KRW", datetime.now(UTC) - timedelta(minutes=1))
    body = f'{{"imp_uid": "{imp_uid}", "merchant_uid": "x", "status": "paid"}}'.encode()
    webhooks.receive(runtime, body=body, content_type="application/json", source_ip="127.0.0.1")
    result = overview(runtime, actor=VIEWER)
    assert result.last_webhook is not None
    assert (result.last_webhook.imp_uid, result.last_webhook.result) == (imp_uid, "processed")
    assert result.last_webhook.claimed_status == "paid"
    assert _figures(result, "today")["KRW"][:2] == (1, Decimal(50000))


def test_navigation_and_overview_count_open_alerts_the_same_way_in_every_status(runtime: Runtime) -> None:
    from services.alerts.desk import open_count, status_counts
    from services.core.models import AlertStatus

    with runtime.db.write() as session:
        for index, (status, severity) in enumerate(
            [
                (AlertStatus.OPEN, "critical"),
                (AlertStatus.OPEN, "low"),
                (AlertStatus.ACKNOWLEDGED, "high"),
                (AlertStatus.ACKNOWLEDGED, "critical"),
                (AlertStatus.RESOLVED, "medium"),
            ]
        ):
            session.add(
                Alert(kind="status_mismatch", severity=severity, imp_uid=f"imp_{index}", message="m", status=status)
            )
    navigation = open_count(runtime, actor=VIEWER)
    figures = overview(runtime, actor=VIEWER, now=NOW)
    assert navigation == sum(figures.open_alerts.values())
    assert navigation == status_counts(runtime, actor=VIEWER)[AlertStatus.OPEN] == 2
    assert figures.open_alerts == {"critical": 1, "high": 0, "medium": 0, "low": 1}
