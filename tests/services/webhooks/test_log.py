"""The webhook log: listing and filtering deliveries, and replaying one (PortOne is asked again)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.auth.access import Actor
from services.core.errors import Forbidden, NotFound
from services.core.kst import kst_today
from services.core.models import Alert, AuditEntry, Payment, Refund, Role
from services.runtime import Runtime
from services.webhooks import log as webhook_log
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl
from tests.services.reporting.test_sales import paid

OPERATOR = Actor("kim", Role.OPERATOR)
VIEWER = Actor("viewer", Role.VIEWER)
PORTONE_IP = "52.78.100.19"


def deliver(runtime: Runtime, body: str, content_type: str = "application/json") -> webhooks.WebhookOutcome:
    return webhooks.receive(runtime, body=body.encode(), content_type=content_type, source_ip=PORTONE_IP)


def _state(runtime: Runtime, imp_uid: str) -> tuple[object, ...]:
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        return (
            payment.status,
            payment.amount,
            payment.cancel_amount,
            payment.verified,
            session.scalar(select(func.count()).select_from(Refund)),
            session.scalar(select(func.count()).select_from(Alert)),
        )


def test_list_filter_and_page(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = paid(runtime, sandbox)
    ok = deliver(runtime, json.dumps({"imp_uid": imp_uid, "merchant_uid": "x", "status": "paid"}))
    unknown = deliver(runtime, "imp_uid=imp_000000000000&status=paid", "application/x-www-form-urlencoded")
    garbage = deliver(runtime, "{not json")
    assert (ok.result, unknown.result, garbage.result) == ("processed", "rejected", "rejected")

    page = webhook_log.list_events(runtime, actor=VIEWER)
    assert [r.id for r in page.rows] == [garbage.event_id, unknown.event_id, ok.event_id]
    assert page.next_before_id is None
    first = page.rows[-1]
    assert (first.source_ip, first.content_type, first.imp_uid, first.verified) == (
        PORTONE_IP,
        "application/json",
        imp_uid,
        True,
    )
    assert first.detail == "PortOne says paid"
    rejected = webhook_log.list_events(runtime, actor=VIEWER, result="rejected")
    assert [r.id for r in rejected.rows] == [garbage.event_id, unknown.event_id]
    assert [r.id for r in webhook_log.list_events(runtime, actor=VIEWER, imp_uid=imp_uid[:8]).rows] == [ok.event_id]
    assert webhook_log.list_events(runtime, actor=VIEWER, imp_uid="imp_%").rows == []  # LIKE wildcards are literal
    today = kst_today()
    assert len(webhook_log.list_events(runtime, actor=VIEWER, start=today, end=today).rows) == 3
    yesterday = today - timedelta(days=1)
    assert webhook_log.list_events(runtime, actor=VIEWER, start=yesterday, end=yesterday).rows == []
    assert webhook_log.result_counts(runtime, actor=VIEWER) == {
        "received": 0,
        "processed": 1,
        "rejected": 2,
        "error": 0,
    }

    one = webhook_log.list_events(runtime, actor=VIEWER, limit=2)
    assert [r.id for r in one.rows] == [garbage.event_id, unknown.event_id]
    assert one.next_before_id == unknown.event_id
    rest = webhook_log.list_events(runtime, actor=VIEWER, limit=2, before_id=one.next_before_id)
    assert ([r.id for r in rest.rows], rest.next_before_id) == ([ok.event_id], None)

    detail = webhook_log.get_event(runtime, actor=VIEWER, event_id=garbage.event_id)
    assert detail.body == "{not json" and detail.event.detail.startswith("unreadable body")
    with pytest.raises(NotFound):
        webhook_log.get_event(runtime, actor=VIEWER, event_id=999_999)


def test_replay_is_a_new_event_and_changes_nothing_when_portone_is_unchanged(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = paid(runtime, sandbox)
    # The body lies about the status: replay, like every delivery, only believes PortOne.
    original = deliver(runtime, json.dumps({"imp_uid": imp_uid, "merchant_uid": "x", "status": "cancelled"}))
    before = _state(runtime, imp_uid)
    gets_before = sandbox.calls()

    with pytest.raises(Forbidden):
        webhook_log.replay(runtime, actor=VIEWER, event_id=original.event_id)
    replayed = webhook_log.replay(runtime, actor=OPERATOR, event_id=original.event_id)

    assert replayed.original_id == original.event_id and replayed.event_id != original.event_id
    assert replayed.result == "processed"
    assert replayed.detail == "PortOne says paid (the webhook claimed cancelled)"
    new = webhook_log.get_event(runtime, actor=VIEWER, event_id=replayed.event_id)
    assert new.event.source_ip == f"replay #{original.event_id} by kim" and new.event.is_replay
    assert new.body == webhook_log.get_event(runtime, actor=VIEWER, event_id=original.event_id).body
    assert new.event.verified and new.event.imp_uid == imp_uid
    assert _state(runtime, imp_uid) == before == ("paid", 50000, 0, True, 0, 0)
    assert sandbox.calls()["cancels"] == gets_before["cancels"] == []
    with runtime.db.read() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "webhook.replayed"))
        assert entry is not None and (entry.actor, entry.target) == ("kim", imp_uid)
        assert entry.detail == {
            "original_event_id": original.event_id,
            "event_id": replayed.event_id,
            "result": "processed",
        }
    with pytest.raises(NotFound):
        webhook_log.replay(runtime, actor=OPERATOR, event_id=999_999)


def test_replay_picks_up_a_change_portone_made_since(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = paid(runtime, sandbox)
    original = deliver(runtime, json.dumps({"imp_uid": imp_uid, "status": "paid"}))
    sandbox.console_cancel(imp_uid, amount="15000")
    replayed = webhook_log.replay(runtime, actor=OPERATOR, event_id=original.event_id)
    assert replayed.result == "processed"
    assert _state(runtime, imp_uid)[:3] == ("paid", 50000, 15000)
