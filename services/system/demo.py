"""Demo data for `make run` (sandbox mode only): a business's last quarter, recorded by the code paths
production uses. Seeds once; a second run does nothing.

How: each order is created by `orders.create_order` (the fee table decides the amount and PortOne is
told it); the sandbox then holds the buyer's payment at its past moment (`POST /sandbox/payments/bulk`,
the only way to give PortOne's record a past `paid_at`); our side learns of it as production does, from
PortOne's webhook (`services.webhooks.v1.receive_many`: stored, PortOne asked, recorded, real-time rules
run) or, for a declined card, from the customer's /complete. Refunds go through the refund engine
against the sandbox; a pending refund waits in the approvals queue. The alerts come from
`services.system.demo_alerts`.

Past timestamps: the rows our code writes are stamped with the moment they are written, so a quarter
seeded in seconds would show as one day. After each step, the stamps of what it wrote (order created,
webhook received, refund completed) are moved back to the moment the plan says it happened
(`demo_record.backdate`); PortOne's side already holds that moment. Nothing else of a row is touched.
"""

from __future__ import annotations

import dataclasses
import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
from pydantic import SecretStr
from sqlalchemy import func, select, update

from services.auth.access import Actor
from services.core import job_lock
from services.core.errors import InvalidRequest, PaymentsError
from services.core.models import Order, Payment, Refund, Role, utcnow
from services.notifications.outbox import NOTIFY
from services.payments import verification as payments
from services.refunds import approvals
from services.refunds import engine as refunds
from services.runtime import Runtime
from services.system import demo_alerts
from services.system.demo_plan import Planned, korean_buyer, plan_quarter
from services.system.demo_record import create_order, deliver_webhooks, hold_at_portone, payment_spec

OPERATORS = ("ops.seoyeon", "ops.jiho", "ops.minjun")  # who made the demo refunds (not accounts)
ESCROW_DAYS_AGO = 12
WORKERS = 4
SEED_LOCK = "seed-demo"


def seed_demo(rt: Runtime, *, days: int = 90, seed: int = 7) -> str:
    """Seed `days` KST days of demo data unless any order exists; says what it did and how long it took.

    Sandbox mode only (InvalidRequest otherwise). Its alerts are made up: nothing is queued for
    Slack or e-mail. One seeding at a time (the `seed-demo` job lock): a second says so and seeds nothing.
    """
    if rt.settings.portone_mode != "sandbox":
        raise InvalidRequest("seed-demo only runs in sandbox mode")
    quiet = Runtime(
        settings=rt.settings.model_copy(update={"notify_slack_webhook_url": SecretStr(""), "notify_smtp_host": ""}),
        db=rt.db.with_session_info({NOTIFY: False}),
        gateway=rt.gateway,
    )
    try:
        with job_lock.held(quiet, SEED_LOCK, lease=timedelta(minutes=5)):
            return _seed(quiet, days=days, seed=seed)
    except job_lock.JobBusy:
        return "another seed-demo run is in progress; nothing seeded"


def _seed(rt: Runtime, *, days: int, seed: int) -> str:
    started = time.monotonic()
    with rt.db.read() as session:
        existing = session.scalar(select(func.count()).select_from(Order)) or 0
    if existing:
        return f"demo data already present ({existing} orders); nothing seeded"
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    now = utcnow()
    plan = _with_escrow(plan_quarter(rng, now, days=days), now)
    with httpx.Client(base_url=rt.settings.portone_api_url, timeout=30) as sandbox:
        seeded = _seed_payments(rt, sandbox, rng, plan)
        refunded = _seed_refunds(rt, seeded)
        waiting = _seed_waiting_vbank(rt, sandbox, rng, now)
        approval = _seed_pending_approval(rt, seeded)
        alerts = demo_alerts.seed_alerts(rt, sandbox, rng, now, [imp_uid for _, imp_uid in seeded])
    counts: dict[str, int] = {}
    for planned, _ in seeded:
        key = "escrow" if planned.escrow else planned.method
        counts[key] = counts.get(key, 0) + 1
    usd = sum(1 for planned, _ in seeded if planned.currency == "USD")
    took = time.monotonic() - started
    return (
        f"demo data seeded in {took:.1f} s: {len(seeded)} payments over {days} days "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; USD {usd}), "
        f"refunds {refunded}, virtual account awaiting deposit {waiting}, pending approval {approval}, "
        f"open alerts {alerts}"
    )


def _with_escrow(plan: list[Planned], now: datetime) -> list[Planned]:
    """One KRW card payment about ESCROW_DAYS_AGO becomes the demo's escrow payment (never refunded:
    PortOne refunds escrow in full only, and the refunds page shows that)."""
    target = now - timedelta(days=ESCROW_DAYS_AGO)
    candidates = [i for i, p in enumerate(plan) if p.currency == "KRW" and p.method == "card"]
    if not candidates:
        return plan
    index = min(candidates, key=lambda i: abs(plan[i].at - target))
    plan[index] = dataclasses.replace(plan[index], escrow=True, refund=None, refund_at=None)
    return plan


def _seed_payments(
    rt: Runtime, sandbox: httpx.Client, rng: random.Random, plan: list[Planned]
) -> list[tuple[Planned, str]]:
    with ThreadPoolExecutor(WORKERS) as pool:  # as concurrent customers would: the prepare calls overlap
        made = list(pool.map(lambda planned: create_order(rt, planned.buyer, planned.currency), plan))
    specs = [payment_spec(planned, order, rng) for planned, order in zip(plan, made, strict=True)]
    imp_uids = hold_at_portone(sandbox, specs)
    notices = [
        (uid, order.merchant_uid, "paid", datetime.fromtimestamp(spec["paid_at"], planned.at.tzinfo))
        for planned, order, spec, uid in zip(plan, made, specs, imp_uids, strict=True)
        if spec["status"] == "paid"
    ]
    deliver_webhooks(rt, notices)
    for planned, order, uid in zip(plan, made, imp_uids, strict=True):
        if planned.method == "declined":  # PortOne sends no webhook for a failure: the customer's /complete tells us
            payments.complete(rt, imp_uid=uid, merchant_uid=order.merchant_uid)
    with rt.db.write() as session:  # by merchant_uid (unique), not the primary key: one UPDATE per order
        for p, o in zip(plan, made, strict=True):
            session.execute(
                update(Order)
                .where(Order.merchant_uid == o.merchant_uid)
                .values(created_at=p.at - timedelta(minutes=2), prepared_at=p.at - timedelta(minutes=2))
            )
        for p, uid in zip(plan, imp_uids, strict=True):
            session.execute(update(Payment).where(Payment.imp_uid == uid).values(created_at=p.at))
    return list(zip(plan, imp_uids, strict=True))


def _seed_refunds(rt: Runtime, seeded: list[tuple[Planned, str]]) -> int:
    """Refunds asked of the engine by one of the operators; each is then dated to its planned moment,
    some days after the payment (see the module's doc)."""
    asked = [
        (i, planned, uid, planned.refund_at)
        for i, (planned, uid) in enumerate(seeded)
        if planned.refund and planned.refund_at is not None
    ]
    with ThreadPoolExecutor(WORKERS) as pool:  # one payment each: their leases never meet
        list(pool.map(lambda item: _refund_one(rt, *item), asked))
    return len(asked)


def _refund_one(rt: Runtime, index: int, planned: Planned, imp_uid: str, refund_at: datetime) -> None:
    partial = {"KRW": Decimal("20000"), "USD": Decimal("10.00")}[planned.currency]
    result = refunds.refund(
        rt,
        imp_uid=imp_uid,
        amount=partial if planned.refund == "partial" else None,
        reason=planned.reason,
        actor=OPERATORS[index % len(OPERATORS)],
        idempotency_key=f"demo-refund-{imp_uid}",
    )
    with rt.db.write() as session:
        session.execute(
            update(Refund)
            .where(Refund.id == result.refund_id)
            .values(created_at=refund_at, completed_at=refund_at + timedelta(seconds=2))
        )
        session.execute(update(Payment).where(Payment.imp_uid == imp_uid).values(cancelled_at=refund_at))


def _seed_waiting_vbank(rt: Runtime, sandbox: httpx.Client, rng: random.Random, now: datetime) -> int:
    """A virtual account issued two hours ago, still awaiting the buyer's deposit (PortOne's `ready`
    webhook told us)."""
    issued = Planned(now - timedelta(hours=2), "KRW", "vbank", korean_buyer(rng), ("신한은행", "088"))
    order = create_order(rt, issued.buyer, "KRW")
    spec = payment_spec(issued, order, rng)
    spec.update(status="ready", paid_at=None)
    [imp_uid] = hold_at_portone(sandbox, [spec])
    deliver_webhooks(rt, [(imp_uid, order.merchant_uid, "ready", issued.at)])
    return 1


def _seed_pending_approval(rt: Runtime, seeded: list[tuple[Planned, str]]) -> int:
    """A refund request one operator filed and a second must approve (maker-checker): the latest
    unrefunded KRW card payment, refunded in full."""
    candidates = [
        uid for planned, uid in seeded if planned.method == "card" and planned.currency == "KRW"
        and planned.refund is None and not planned.escrow
    ]  # fmt: skip
    if not candidates:
        return 0
    try:
        approvals.file_request(
            rt,
            actor=Actor(OPERATORS[0], Role.OPERATOR),
            payment_imp_uid=candidates[-1],
            currency="KRW",
            amount=None,
            reason="고객 요청: 탁송 취소 (이중 결제 확인 후 전액 환불)",
            key=f"demo-approval-{candidates[-1]}",
        )
    except PaymentsError:
        return 0
    return 1
