"""The demo's fake alerts never reach real channels, the demo never seeds outside sandbox mode
(whoever calls it), and two runs at once do not both seed. Real databases, the sandbox, a loopback
Slack-compatible receiver."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.core import job_lock
from services.core.config import Settings
from services.core.errors import PaymentsError
from services.core.models import Alert, NotificationOutbox, Order, utcnow
from services.notifications.dispatch import dispatch_due
from services.runtime import Runtime
from services.system.demo import SEED_LOCK, seed_demo
from services.system.demo_record import DEMO_VBANK_PREFIX
from tests.factories import SandboxControl, make_runtime
from tests.webhook_receiver import WebhookReceiver


def _count(rt: Runtime, table: type) -> int:
    with rt.db.read() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_the_demo_is_seeded_without_telling_anyone(database_url: str, sandbox: SandboxControl) -> None:
    receiver = WebhookReceiver()
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, notify_slack_webhook_url=receiver.url)
    try:
        seed_demo(rt, days=3)
        assert _count(rt, Alert) > 0  # critical and high alerts among them
        assert _count(rt, NotificationOutbox) == 0
        dispatch_due(rt, now=utcnow() + timedelta(minutes=5))
        assert receiver.received == []
    finally:
        receiver.close()
        rt.close()


def test_seed_demo_itself_refuses_outside_sandbox_mode(runtime: Runtime) -> None:
    live_like = Settings(
        database_url=runtime.settings.database_url,
        portone_mode="test",
        portone_api_url="http://127.0.0.1:9",  # never asked: it refuses first
        portone_imp_key="a-test-mode-key",
        portone_imp_secret="a-test-mode-secret-that-is-long-enough",
        internal_api_token="an-internal-token-for-this-test-only",
        export_link_secret="an-export-link-secret-for-this-test-only",
    )
    with pytest.raises(PaymentsError, match="sandbox mode"):
        seed_demo(Runtime(settings=live_like, db=runtime.db, gateway=runtime.gateway), days=3)
    assert _count(runtime, Order) == 0


def test_a_second_seed_while_one_runs_seeds_nothing(runtime: Runtime) -> None:
    with job_lock.held(runtime, SEED_LOCK):  # another seed-demo is running
        said = seed_demo(runtime, days=3)
    assert "in progress" in said and _count(runtime, Order) == 0


# Numbers set aside for fiction: Korea's 010-0000-xxxx is never issued; NANP 555-0100..0199; Ofcom's
# 020 7946 0xxx; ARCEP's 01 99 00 xx xx; Bundesnetzagentur's 030 23125 xxx; ACMA's 02 5550 xxxx.
FICTIONAL_PHONE = re.compile(
    r"^(010-0000-\d{4}|\+1 \d{3} 555 01\d\d|\+44 20 7946 0\d{3}|\+33 1 99 00 \d\d \d\d|\+49 30 23125 \d{3}"
    r"|\+61 2 5550 \d{4})$"
)


def test_demo_people_and_accounts_cannot_be_real(runtime: Runtime) -> None:
    from services.core.models import Payment
    from services.system.demo_plan import OVERSEAS

    assert all(FICTIONAL_PHONE.match(phone) for _, phone in OVERSEAS), OVERSEAS
    seed_demo(runtime, days=10)
    with runtime.db.read() as session:
        payments = session.scalars(select(Payment)).all()
    assert payments
    for payment in payments:
        assert FICTIONAL_PHONE.match(payment.buyer_tel or ""), payment.buyer_tel
        number = (payment.raw or {}).get("vbank_num")
        if payment.pay_method == "vbank":
            assert str(number).startswith(DEMO_VBANK_PREFIX), number
