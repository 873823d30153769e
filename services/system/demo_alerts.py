"""The demo's open alerts, at least one of every `AlertKind`.

Where the fault can be made in the sandbox cheaply, it is, and our code finds it as it would in
production: a forged amount, a virtual account forged and paid (no refund account), a payment for no
order of ours, a currency we do not offer, an order paid twice, a virtual account unpaid past its due
time, a webhook naming a payment PortOne does not know, a payment /complete told us of with no webhook
after it, a payment PortOne holds that we never recorded (found by a reconciliation run). The kinds that arise only from a fault
between us and PortOne (a lost cancel answer, a disagreeing total, a stale scheduler, ...) are written
with `raise_alert` on a real demo payment, their message starting with DEMO_NOTE so nobody takes them
for a real finding.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import func, select

from services.alerts.store import AlertKind, raise_alert
from services.auth.access import Actor
from services.core.errors import PaymentsError
from services.core.models import Alert, AlertStatus, Role
from services.payments import verification
from services.reconciliation.engine import start_run
from services.runtime import Runtime
from services.system.demo_plan import CARDS, Planned, korean_buyer, overseas_buyer
from services.system.demo_record import APPROVED_CARD, create_order, deliver_webhooks, hold_at_portone, payment_spec

DEMO_NOTE = "[데모 데이터 · demo data]"


def seed_alerts(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime, imp_uids: list[str]) -> int:
    """Open at least one alert of every kind; returns how many alerts are open afterwards."""
    _forged_card(rt, sandbox, rng)
    _forged_vbank(rt, sandbox, rng, now)
    _foreign_payments(rt, sandbox, rng, now)
    _paid_twice(rt, sandbox, rng, now)
    _stuck_vbank(rt, sandbox, rng, now)
    _unknown_webhook(rt)
    _no_webhook_after_complete(rt, sandbox, rng, now)
    missing = _missing_in_db(rt, sandbox, rng, now)
    _written(rt, imp_uids, missing)
    with rt.db.read() as session:
        return session.scalar(select(func.count()).select_from(Alert).where(Alert.status != AlertStatus.RESOLVED)) or 0


def _card(at: datetime, rng: random.Random, currency: str = "KRW") -> Planned:
    buyer = korean_buyer(rng) if currency == "KRW" else overseas_buyer(rng)
    return Planned(at, currency, "card", buyer, rng.choice(CARDS))


def _forged_card(rt: Runtime, sandbox: httpx.Client, rng: random.Random) -> None:
    """A buyer's browser changed the amount to 100 won: PortOne took it (prepare not enforced), our
    /complete refuses it, cancels it and raises AMOUNT_MISMATCH."""
    planned = _card(datetime.now().astimezone(), rng)
    order = create_order(rt, planned.buyer, "KRW")
    sandbox.post("/sandbox/config", json={"enforce_prepare": False}).raise_for_status()
    try:
        body = {"merchant_uid": order.merchant_uid, "amount": "100", "currency": "KRW", "card_number": APPROVED_CARD,
                "buyer_name": planned.buyer.name, "buyer_email": planned.buyer.email, "buyer_tel": planned.buyer.phone}  # fmt: skip
        paid = sandbox.post("/sandbox/checkout", json=body).json()
    finally:
        sandbox.post("/sandbox/config", json={"enforce_prepare": True}).raise_for_status()
    try:
        verification.complete(rt, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    except PaymentsError:
        pass  # ForgeryDetected: what the customer's app is told


def _forged_vbank(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> None:
    """A virtual account issued for 5,000 won instead of the fee and paid: the guard cannot cancel it
    without the buyer's account (FORGERY_REFUND_ACCOUNT_NEEDED, besides AMOUNT_MISMATCH)."""
    planned = Planned(now - timedelta(hours=30), "KRW", "vbank", korean_buyer(rng), ("우리은행", "020"),
                      deposit_after=timedelta(hours=5))  # fmt: skip
    order = create_order(rt, planned.buyer, "KRW")
    [uid] = hold_at_portone(sandbox, [payment_spec(planned, order, rng, amount=Decimal("5000"))])
    deliver_webhooks(rt, [(uid, order.merchant_uid, "paid", planned.at + planned.deposit_after)])


def _foreign_payments(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> None:
    """Payments under merchant_uids we never issued (another shop on the same PortOne account): one in
    KRW (PAYMENT_WITHOUT_ORDER), one in JPY, a currency we do not offer (UNSUPPORTED_CURRENCY too)."""
    notices = []
    for currency, amount, hours in (("KRW", "33000", 20), ("JPY", "5500", 9)):
        at = now - timedelta(hours=hours)
        buyer = korean_buyer(rng)
        merchant_uid = f"legacy_shop_{at:%Y%m%d}_{rng.getrandbits(24):06x}"
        [uid] = hold_at_portone(sandbox, [{
            "merchant_uid": merchant_uid, "amount": amount, "currency": currency, "status": "paid",
            "pay_method": "card", "pg_provider": "kcp" if currency == "KRW" else "eximbay",
            "started_at": int(at.timestamp()), "paid_at": int(at.timestamp()) + 30, "name": "구 쇼핑몰 주문",
            "buyer_name": buyer.name, "buyer_email": buyer.email, "buyer_tel": buyer.phone,
            "card_number": APPROVED_CARD, "card_name": "현대카드",
        }])  # fmt: skip
        notices.append((uid, merchant_uid, "paid", at + timedelta(seconds=30)))
    deliver_webhooks(rt, notices)


def _paid_twice(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> None:
    """A buyer paid by card, then also into the virtual account issued earlier: ORDER_PAID_TWICE."""
    card = _card(now - timedelta(days=2, hours=3), rng)
    vbank = Planned(card.at - timedelta(minutes=20), "KRW", "vbank", card.buyer, ("하나은행", "081"),
                    deposit_after=timedelta(hours=7))  # fmt: skip
    order = create_order(rt, card.buyer, "KRW")
    uids = hold_at_portone(sandbox, [payment_spec(vbank, order, rng), payment_spec(card, order, rng)])
    deliver_webhooks(
        rt,
        [(uids[1], order.merchant_uid, "paid", card.at + timedelta(seconds=35)),
         (uids[0], order.merchant_uid, "paid", vbank.at + vbank.deposit_after)],
    )  # fmt: skip


def _stuck_vbank(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> None:
    """A virtual account issued four days ago and never paid (STUCK_READY: due after three days)."""
    planned = Planned(now - timedelta(days=4, hours=2), "KRW", "vbank", korean_buyer(rng), ("농협은행", "011"))
    order = create_order(rt, planned.buyer, "KRW")
    spec = payment_spec(planned, order, rng)
    spec.update(status="ready", paid_at=None)
    [uid] = hold_at_portone(sandbox, [spec])
    deliver_webhooks(rt, [(uid, order.merchant_uid, "ready", planned.at)])


def _unknown_webhook(rt: Runtime) -> None:
    """A delivery naming a payment PortOne does not know (a probe, or a misconfigured sender)."""
    deliver_webhooks(rt, [("imp_000000000001", "chekar_19700101_000000000000", "paid", datetime.now().astimezone())])


def _no_webhook_after_complete(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> None:
    """Paid three hours ago, recorded through the buyer's /complete, and PortOne's webhook never came
    (WEBHOOK_GAP: is the webhook URL right?)."""
    planned = _card(now - timedelta(hours=3), rng)
    order = create_order(rt, planned.buyer, "KRW")
    [uid] = hold_at_portone(sandbox, [payment_spec(planned, order, rng)])
    verification.complete(rt, imp_uid=uid, merchant_uid=order.merchant_uid)


def _missing_in_db(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> tuple[str, str] | None:
    """Paid at PortOne three days ago for one of our orders; neither /complete nor a webhook reached us.
    A reconciliation of the minutes around it finds it (MISSING_IN_DB) and leaves it for a person to
    repair; three days back, the scheduler's window (2 days by default) does not heal it on its own.
    Returns (imp_uid, merchant_uid) if that run could not be made (another run held the lock)."""
    planned = _card(now - timedelta(days=3, hours=2), rng)
    order = create_order(rt, planned.buyer, "KRW")
    [uid] = hold_at_portone(sandbox, [payment_spec(planned, order, rng)])
    try:
        start_run(rt, since=planned.at - timedelta(minutes=1), until=planned.at + timedelta(minutes=5),
                  actor=Actor("system:demo", Role.ADMIN))  # fmt: skip
    except PaymentsError:
        return uid, order.merchant_uid
    return None


def _written(rt: Runtime, imp_uids: list[str], missing: tuple[str, str] | None) -> None:
    """The kinds no cheap sandbox fault produces here, written directly on older demo payments (older
    than the scheduler's window, so its runs leave them open)."""
    older = imp_uids[: max(len(imp_uids) - 40, 1)]
    pick = [older[(len(older) * i) // 9] for i in range(1, 9)] if older else ["imp_000000000002"] * 8
    rows: list[tuple[AlertKind, str | None, str | None, str]] = [
        (AlertKind.UNKNOWN_TO_PORTONE, pick[0], None, "we recorded this payment and PortOne, asked for it, has none"),
        (AlertKind.STATUS_MISMATCH, pick[1], None, "our status paid differs from PortOne's cancelled"),
        (AlertKind.REFUND_TOTAL_MISMATCH, pick[2], None,
         "our refunded total 0 differs from PortOne's cancel_amount 10000"),
        (AlertKind.REFUND_MISMATCH, pick[3], None, "PortOne's cancel_amount disagrees with our refund attempt"),
        (AlertKind.REFUND_OUTCOME_UNKNOWN, pick[4], None,
         "the cancel's answer was lost and PortOne does not show it yet: settle it before refunding again"),
        (AlertKind.REFUND_CANCEL_OVERDUE, pick[5], None, "a V2 cancel is still REQUESTED after 60 minutes"),
        (AlertKind.RECONCILE_STALE, None, None, "no scheduled reconciliation finished in the last 30 minutes"),
    ]  # fmt: skip
    if missing is not None:  # the reconciliation could not run: its finding, written as it would be
        rows.append((AlertKind.MISSING_IN_DB, missing[0], missing[1],
                     "PortOne shows a paid payment for our order and we have no record of it"))  # fmt: skip
    with rt.db.write() as session:
        for kind, imp_uid, merchant_uid, message in rows:
            raise_alert(session, kind=kind, imp_uid=imp_uid, merchant_uid=merchant_uid,
                        message=f"{DEMO_NOTE} {message}")  # fmt: skip
