"""Many operators refunding the same payment at once: threads calling the services directly, and
separate OS processes each with its own runtime, on SQLite and PostgreSQL. Every intent is sent
twice at the same moment (a double click). `check_invariants` runs after every run."""

from __future__ import annotations

import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from services.auth.access import Actor
from services.core.errors import PaymentsError
from services.core.models import Payment, RefundStatus, Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import desk as refund_desk
from services.refunds import engine as refunds
from services.refunds.outcomes import outcome_of_error
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.reliability.refund_operator import OperatorJob, run_operators

PAID = Decimal(50000)  # the KRW fee; every refund below is under the approval threshold


@dataclass(frozen=True)
class Answer:
    key: str
    refund_id: int | None
    outcome: str
    message: str | None = None
    pid: int | None = None  # the operator process that got this answer


@dataclass(frozen=True)
class Tally:
    succeeded: int
    refunded: Decimal


def check_invariants(runtime: Runtime, sandbox: SandboxControl, imp_uid: str, answers: list[Answer]) -> Tally:
    """What must hold after any number of concurrent refunds of one payment."""
    portone = sandbox.payment(imp_uid)
    sent = [c for c in sandbox.calls()["cancels"] if imp_uid in (c.get("imp_uid"), c["params"].get("imp_uid"))]
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        rows = list(payment.refunds)
        ours_cancel_amount, paid = payment.cancel_amount, payment.amount
    succeeded = [r for r in rows if r.status == RefundStatus.SUCCEEDED]
    refunded = sum((r.amount for r in succeeded), Decimal(0))
    # The sum of succeeded refunds is PortOne's refunded total, and ours; never above what was paid.
    assert refunded == Decimal(str(portone["cancel_amount"])) == ours_cancel_amount
    assert refunded <= paid == Decimal(str(portone["amount"]))
    # No cancellation sent twice: PortOne received one cancel per succeeded refund, each applied
    # (a refused one would mean two refunds computed the same remainder), each claimed by one row.
    assert [c["outcome"] for c in sent] == ["applied"] * len(succeeded), sent
    cancellation_ids = sorted(r.portone_cancellation_id or "" for r in succeeded)
    assert cancellation_ids == sorted(c["cancellation_id"] for c in sent)
    assert cancellation_ids == sorted(c["cancellation_id"] for c in portone["cancel_history"])
    # No attempt left without an outcome.
    assert [r.id for r in rows if r.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN)] == []
    # Each idempotency key used once: at most one row per key, and every answer given for a key
    # names that row (the second click replays the first answer).
    row_by_key = {r.idempotency_key: r.id for r in rows}
    assert None not in row_by_key and len(row_by_key) == len(rows)
    given: dict[str, set[int]] = defaultdict(set)
    for answer in answers:
        if answer.refund_id is not None:
            given[answer.key].add(answer.refund_id)
    for key, ids in given.items():
        assert ids == {row_by_key[key]}, (key, ids)
    refunded_keys = {a.key for a in answers if a.outcome == "refunded"}
    assert refunded_keys == {r.idempotency_key for r in succeeded}
    for answer in answers:  # a key that refunded answered "refunded" to both clicks
        assert answer.key not in refunded_keys or answer.outcome == "refunded", answer
    return Tally(succeeded=len(succeeded), refunded=refunded)


def _paid_payment(runtime: Runtime, sandbox: SandboxControl) -> str:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"])
    assert payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid).status == "paid"
    return imp_uid


def _desk(runtime: Runtime, actor: Actor, imp_uid: str, amount: str, key: str) -> Answer:
    try:
        answer = refund_desk.request_refund(
            runtime, actor=actor, imp_uid=imp_uid, amount=amount, reason="동시 환불 시험", idempotency_key=key
        )
    except PaymentsError as exc:
        return Answer(key, None, str(outcome_of_error(exc)), str(exc))
    return Answer(key, answer.refund.refund_id if answer.refund else None, str(answer.outcome))


def _service(runtime: Runtime, actor: Actor, imp_uid: str, amount: str, key: str) -> Answer:
    try:
        result = refunds.refund(
            runtime, imp_uid=imp_uid, amount=amount, reason="동시 환불 시험", actor=actor.username, idempotency_key=key
        )
    except PaymentsError as exc:
        return Answer(key, None, str(outcome_of_error(exc)), str(exc))
    return Answer(key, result.refund_id, "refunded" if result.status == RefundStatus.SUCCEEDED else str(result.status))


# Refused before anything was sent: above the remainder, or nothing left (PortOne shows the
# payment cancelled).
REFUSED = {"exceeds_remainder", "nothing_left", "failed", "rejected"}


def _refused_or_refunded(answer: Answer) -> bool:
    """Refunded or refused; never "busy" from waiting for another refund."""
    return answer.outcome in {"refunded"} | REFUSED


@pytest.mark.reliability(
    area="concurrency",
    case="many operators refunding one payment at once (threads, double clicks)",
    outcome="refunded total = PortOne's, never above paid; one cancel per refund; one refund per key",
)
def test_operators_in_threads_refunding_one_payment(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    # 8 operators x 3 intents of 3,000 KRW = 72,000 KRW asked of 50,000: exactly 16 fit. Half the
    # operators use the refund desk (the dashboard's path), half the refund service (the API's).
    calls: list[tuple[Callable[..., Answer], Actor, str]] = []
    for operator in range(8):
        actor = Actor(f"operator{operator}", Role.OPERATOR)
        path = _desk if operator % 2 == 0 else _service
        for intent in range(3):
            key = f"{actor.username}-{intent}-{uuid.uuid4().hex[:8]}"
            calls += [(path, actor, key)] * 2  # a double click: the same key twice at once
    start = threading.Barrier(len(calls))

    def run(call: tuple[Callable[..., Answer], Actor, str]) -> Answer:
        path, actor, key = call
        start.wait(timeout=60)
        return path(runtime, actor, imp_uid, "3000", key)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(run, calls))

    assert [a for a in answers if not _refused_or_refunded(a)] == []
    tally = check_invariants(runtime, sandbox, imp_uid, answers)
    assert tally == Tally(succeeded=16, refunded=Decimal(48000))


@pytest.mark.reliability(
    area="concurrency",
    case="operators in separate OS processes refunding one payment at once",
    outcome="refunded total = PortOne's, never above paid; one cancel per refund; one refund per key",
)
def test_operators_in_separate_processes_refunding_one_payment(
    runtime: Runtime, sandbox: SandboxControl, database_url: str, tmp_path: Path
) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    # 4 processes x 6 intents of 2,500 KRW = 60,000 KRW asked of 50,000: exactly 20 fit, nothing left.
    jobs = [
        OperatorJob(
            database_url=database_url,
            sandbox_url=sandbox.url,
            imp_uid=imp_uid,
            operator=f"process-operator{operator}",
            amount="2500",
            keys=tuple(f"process-operator{operator}-{intent}-{uuid.uuid4().hex[:8]}" for intent in range(6)),
            clicks=2,
        )
        for operator in range(4)
    ]
    answers = [Answer(**answer) for answer in run_operators(jobs, tmp_path)]

    assert len(answers) == 48
    assert len({a.pid for a in answers} - {os.getpid(), None}) == 4
    assert [a for a in answers if not _refused_or_refunded(a)] == []
    tally = check_invariants(runtime, sandbox, imp_uid, answers)
    assert tally == Tally(succeeded=20, refunded=PAID)
    assert sandbox.payment(imp_uid)["status"] == "cancelled"
