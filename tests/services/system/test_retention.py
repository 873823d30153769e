"""The retention purge on real SQLite and PostgreSQL: what is old goes, in bounded batches; what is
new, still needed, or the record stays; two purgers never collide; the scheduler runs it."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, insert, select, text

from services.core.models import (
    Alert,
    AuditEntry,
    DashboardSession,
    ExportLinkGrant,
    NotificationOutbox,
    Order,
    Payment,
    PaymentSnapshot,
    ReconciliationRun,
    Refund,
    RefundRequest,
    User,
    WebhookEvent,
    utcnow,
)
from services.reconciliation.schedule import SCHEDULER, serve
from services.runtime import Runtime
from services.system.retention import PurgeResult, purge
from tests.factories import SandboxControl, make_runtime

NOW = utcnow()
LONG_AGO = NOW - timedelta(days=1000)


def _days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def _webhooks(rt: Runtime, *received: datetime) -> None:
    with rt.db.write() as session:
        session.execute(
            insert(WebhookEvent),
            [
                {
                    "received_at": at,
                    "body": '{"imp_uid":"imp_x","status":"paid"}',
                    "imp_uid": "imp_x",
                    "result": "processed",
                }
                for at in received
            ],
        )


def _count(rt: Runtime, model: Any) -> int:
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _run(session: Any, by: str, status: str, finished: datetime | None, started: datetime | None = None) -> int:
    run = ReconciliationRun(
        window_start=LONG_AGO,
        window_end=LONG_AGO,
        started_by=by,
        status=status,
        started_at=started or finished or LONG_AGO,
        finished_at=finished,
        counts={"amount_mismatch": {"found": 0, "new": 0, "resolved": 0}},
    )
    session.add(run)
    session.flush()
    return run.id


def _kept_tables(rt: Runtime) -> None:
    """One row a thousand days old in every table the purge must never touch."""
    with rt.db.write() as session:
        order = Order(
            merchant_uid="m_old", name="체카 탁송비", amount=Decimal(50000), currency="KRW", customer_email="a@b.c",
            customer_name="김민준", created_at=LONG_AGO, updated_at=LONG_AGO,
        )  # fmt: skip
        session.add(order)
        session.flush()
        payment = Payment(
            imp_uid="imp_old", merchant_uid="m_old", order_id=order.id, status="paid", amount=Decimal(50000),
            currency="KRW", paid_at=LONG_AGO, started_at=LONG_AGO, created_at=LONG_AGO, updated_at=LONG_AGO,
        )  # fmt: skip
        session.add(payment)
        session.flush()
        refund = Refund(
            payment_id=payment.id, amount=Decimal(1000), currency="KRW", reason="r", requested_by="ops",
            status="succeeded", created_at=LONG_AGO,
        )  # fmt: skip
        session.add(refund)
        session.flush()
        session.add_all(
            [
                PaymentSnapshot(imp_uid="imp_old", source="complete", body={"imp_uid": "imp_old"}, fetched_at=LONG_AGO),
                RefundRequest(
                    imp_uid="imp_old",
                    currency="KRW",
                    reason="r",
                    requested_by="ops",
                    status="approved",
                    idempotency_key="k_old",
                    refund_id=refund.id,
                    created_at=LONG_AGO,
                    decided_at=LONG_AGO,
                ),  # fmt: skip
                Alert(
                    kind="amount_mismatch",
                    severity="critical",
                    imp_uid="imp_old",
                    message="m",
                    status="resolved",
                    created_at=LONG_AGO,
                    updated_at=LONG_AGO,
                ),  # fmt: skip
                AuditEntry(at=LONG_AGO, actor="ops", action="refund.succeeded", target="imp_old", detail={}),
                User(username="old_user", password_hash="x", role="viewer", created_at=LONG_AGO),
            ]
        )


KEPT = (Order, Payment, Refund, PaymentSnapshot, RefundRequest, Alert, AuditEntry, User)


def test_old_rows_go_and_everything_else_stays(runtime: Runtime) -> None:
    rt = runtime
    _kept_tables(rt)
    _webhooks(rt, _days(181), _days(400), _days(179), NOW)
    with rt.db.write() as session:
        sched_old_finished = _run(session, SCHEDULER, "finished", _days(400))
        sched_newest_finished = _run(session, SCHEDULER, "finished", _days(300))
        sched_newest_failed = _run(session, SCHEDULER, "failed", _days(200))
        alice_old = _run(session, "alice", "finished", _days(250))
        alice_recent = _run(session, "alice", "finished", _days(1))
        carol_only = _run(session, "carol", "failed", _days(900))
        running = _run(session, "bob", "running", None, started=_days(500))
        session.add_all(
            [
                DashboardSession(id="ended_long_ago", username="u", created_at=_days(40), last_seen_at=_days(40),
                                 ended_at=_days(31), ended_reason="signed_out"),
                DashboardSession(id="ended_lately", username="u", created_at=_days(29), last_seen_at=_days(29),
                                 ended_at=_days(29), ended_reason="signed_out"),
                DashboardSession(id="idle_long_ago", username="u", created_at=_days(31), last_seen_at=_days(31),
                                 handoff_hash="h1", handoff_expires_at=_days(31)),
                DashboardSession(id="idle_lately", username="u", created_at=_days(29), last_seen_at=_days(29)),
                DashboardSession(id="live", username="u", created_at=NOW, last_seen_at=NOW, token_hash="t"),
                DashboardSession(id="unredeemed_code", username="u", created_at=NOW, last_seen_at=NOW,
                                 handoff_hash="h2", handoff_expires_at=NOW + timedelta(seconds=60)),
            ]
        )  # fmt: skip
        grant = {"username": "u", "session_id": "live", "role": "admin", "kind": "payments", "filters": {},
                 "masked": True, "language": "ko"}  # fmt: skip
        session.add_all(
            [
                ExportLinkGrant(id="expired_days_ago", issued_at=_days(2), expires_at=_days(2), **grant),
                ExportLinkGrant(id="expired_lately", issued_at=_days(0.05), expires_at=_days(0.04), **grant),
                ExportLinkGrant(id="open", issued_at=NOW, expires_at=NOW + timedelta(minutes=2), **grant),
            ]
        )
        outbox = {"kind": "alert", "severity": "high", "summary": "s", "link_path": "/alerts"}
        session.add_all(
            [
                NotificationOutbox(event_key="sent_long_ago", created_at=_days(31), sent_at=_days(31), **outbox),
                NotificationOutbox(event_key="sent_lately", created_at=_days(29), sent_at=_days(29), **outbox),
                # No channel is configured: an event queued 31 days ago will never be sent.
                NotificationOutbox(event_key="waiting_long_ago", created_at=_days(31), **outbox),
                NotificationOutbox(event_key="waiting", created_at=NOW, **outbox),
            ]
        )
    kept_before = {model.__tablename__: _count(rt, model) for model in KEPT}

    counted = purge(rt, now=NOW, dry_run=True)
    assert counted.dry_run and counted.total == 9 and _count(rt, WebhookEvent) == 4  # nothing deleted
    result = purge(rt, now=NOW)

    assert result.deleted == {
        "webhook_events": 2,
        "reconciliation_runs": 2,
        "dashboard_sessions": 2,
        "export_link_grants": 1,
        "notification_outbox": 2,
    }
    assert counted.deleted == result.deleted and not result.busy
    assert result.batches == 5  # one short batch per table that had something
    with rt.db.read() as session:
        assert sorted(session.scalars(select(WebhookEvent.received_at))) == [_days(179), NOW]
        assert set(session.scalars(select(ReconciliationRun.id))) == {
            sched_newest_finished,  # what reconcile_stale and /readyz read: the last finished scheduled run
            sched_newest_failed,  # and the last scheduled run
            alice_recent,
            carol_only,
            running,
        }
        assert {sched_old_finished, alice_old}.isdisjoint(session.scalars(select(ReconciliationRun.id)))
        assert set(session.scalars(select(DashboardSession.id))) == {"ended_lately", "idle_lately", "live",
                                                                    "unredeemed_code"}  # fmt: skip
        assert set(session.scalars(select(ExportLinkGrant.id))) == {"expired_lately", "open"}
        assert set(session.scalars(select(NotificationOutbox.event_key))) == {"sent_lately", "waiting"}
    assert {model.__tablename__: _count(rt, model) for model in KEPT} == kept_before == dict.fromkeys(kept_before, 1)
    assert purge(rt, now=NOW).total == 0  # and again: nothing left to do


def test_a_pending_notification_stays_while_a_channel_would_send_it(database_url: str, sandbox: SandboxControl) -> None:
    rt = make_runtime(
        database_url=database_url, portone_api_url=sandbox.url, notify_slack_webhook_url="http://127.0.0.1:9/hook"
    )
    try:
        with rt.db.write() as session:
            session.add(
                NotificationOutbox(
                    event_key="retrying", kind="alert", severity="high", summary="s", link_path="/alerts",
                    created_at=_days(31), attempts=3, next_attempt_at=NOW,
                )
            )  # fmt: skip
        assert purge(rt, now=NOW).deleted["notification_outbox"] == 0
    finally:
        rt.close()


def test_batches_are_bounded(runtime: Runtime) -> None:
    rt = runtime
    _webhooks(rt, *(_days(200 + i) for i in range(35)), NOW)
    deletes: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM WEBHOOK_EVENTS"):
            deletes.append((statement, parameters))

    event.listen(rt.db.engine, "before_cursor_execute", seen)
    try:
        result = purge(rt, now=NOW, batch_size=10)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", seen)
    assert result.deleted["webhook_events"] == 35 and result.batches == 4
    assert len(deletes) == 4  # 10 + 10 + 10 + 5, one statement (and transaction) each
    # Each delete names its ids and re-checks the condition (the same few values every time): the
    # last batch names 5 ids, so what is beyond that is the condition's.
    sizes = [
        len(parameters if isinstance(parameters, (list, tuple)) else parameters.values()) for _, parameters in deletes
    ]
    condition = sizes[-1] - 5
    assert [size - condition for size in sizes] == [10, 10, 10, 5]
    assert _count(rt, WebhookEvent) == 1


def test_two_purgers_at_once_delete_each_row_once(database_url: str, sandbox: SandboxControl) -> None:
    runtimes = [make_runtime(database_url=database_url, portone_api_url=sandbox.url) for _ in range(2)]
    try:
        _webhooks(runtimes[0], *(_days(200) for _ in range(300)))
        results: list[PurgeResult] = []
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def one(rt: Runtime) -> None:
            try:
                start.wait()
                results.append(purge(rt, now=NOW, batch_size=7))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(rt,)) for rt in runtimes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert len(results) == 2
        assert sum(r.deleted["webhook_events"] for r in results) == 300
        assert any(r.busy for r in results) or any(r.total == 0 for r in results)  # one did the work
        assert _count(runtimes[0], WebhookEvent) == 0
    finally:
        for rt in runtimes:
            rt.close()


def test_the_scheduler_purges(runtime: Runtime) -> None:
    _webhooks(runtime, _days(365), NOW)
    assert serve(runtime, stop=threading.Event(), max_runs=1) == 1
    assert _count(runtime, WebhookEvent) == 1
    with runtime.db.read() as session:
        assert session.scalar(select(ReconciliationRun.status).where(ReconciliationRun.started_by == SCHEDULER)) == (
            "finished"
        )


def test_a_failing_purge_never_stops_reconciliation(runtime: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    with runtime.db.write() as session:  # a fault the purge cannot get past: a table it purges is gone
        session.execute(text("DROP TABLE export_link_grants"))
    with caplog.at_level(logging.ERROR, logger="chekar.scheduler"):
        assert serve(runtime, stop=threading.Event(), max_runs=1) == 1
    assert "retention purge failed" in caplog.text
    with runtime.db.read() as session:
        assert session.scalar(select(ReconciliationRun.status).where(ReconciliationRun.started_by == SCHEDULER)) == (
            "finished"
        )
