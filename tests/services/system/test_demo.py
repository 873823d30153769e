"""`make run`'s demo data: real orders paid through the sandbox and recorded by the production
code paths, with the buyer's details as a browser checkout hands them to PortOne; seeded once."""

from __future__ import annotations

from sqlalchemy import func, select

from services.alerts.store import AlertKind
from services.auth.access import Actor
from services.core.models import Alert, Order, Payment, Role
from services.refunds.desk import refund_quote
from services.runtime import Runtime
from services.system.demo import seed_demo
from tests.factories import SandboxControl


def test_demo_data_is_recorded_like_real_payments_and_seeded_once(runtime: Runtime, sandbox: SandboxControl) -> None:
    said = seed_demo(runtime, count=12)
    assert said.startswith("demo data seeded: ")
    with runtime.db.read() as session:
        payments = session.scalars(select(Payment).where(Payment.verified.is_(True))).all()
        assert payments and {p.status for p in payments} <= {"paid", "cancelled", "ready", "failed"}
        for payment in payments:  # what the dashboard shows is PortOne's record of the buyer
            assert payment.buyer_name and payment.buyer_email and payment.buyer_tel, payment.imp_uid
            ours = sandbox.payment(payment.imp_uid)
            assert (payment.amount, payment.cancel_amount) == (ours["amount"], ours["cancel_amount"])
        assert session.scalar(select(func.count()).select_from(Alert).where(Alert.kind == AlertKind.AMOUNT_MISMATCH))
        orders = session.scalar(select(func.count()).select_from(Order))
    assert seed_demo(runtime, count=12).startswith("demo data already present")
    assert "escrow 1" in said
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == orders


def test_the_demo_has_one_escrow_payment_refundable_in_full_only(runtime: Runtime, sandbox: SandboxControl) -> None:
    seed_demo(runtime, count=2)
    with runtime.db.read() as session:
        escrow = [p.imp_uid for p in session.scalars(select(Payment)) if (p.raw or {}).get("escrow") is True]
    assert len(escrow) == 1
    quote = refund_quote(runtime, actor=Actor("demo", Role.OPERATOR), identifier=escrow[0])
    assert quote.full_only == "escrow" and quote.remaining > 0 and sandbox.payment(escrow[0])["escrow"] is True
