"""A backlog: many events retrying must not hold up a new one, and a message counts what is really
waiting. Real databases, a loopback receiver."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from services.core.models import NotificationOutbox, utcnow
from services.notifications.dispatch import MAX_LINES, MAX_ROWS, dispatch_due
from services.runtime import Runtime
from tests.webhook_receiver import WebhookReceiver


def _rows(rt: Runtime, count: int, *, prefix: str, attempts: int, due_in: timedelta) -> None:
    now = utcnow()
    with rt.db.write() as session:
        session.execute(
            insert(NotificationOutbox),
            [
                {
                    "event_key": f"{prefix}:{n}",
                    "kind": "amount_mismatch",
                    "severity": "critical",
                    "summary": f"{prefix} #{n}",
                    "link_path": "/alerts",
                    "created_at": now - timedelta(minutes=5),
                    "next_attempt_at": now + due_in,
                    "attempts": attempts,
                }
                for n in range(count)
            ],
        )


def test_events_waiting_for_a_retry_do_not_hold_up_a_new_one(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    _rows(slack_rt, MAX_ROWS + 100, prefix="retrying", attempts=3, due_in=timedelta(hours=1))
    _rows(slack_rt, 1, prefix="new", attempts=0, due_in=timedelta(0))
    result = dispatch_due(slack_rt, now=utcnow() + timedelta(seconds=61))
    assert result.sent == ["new:0"]
    [delivery] = receiver.received
    assert "new #0" in delivery["body"]["text"]


def test_the_message_counts_every_event_waiting_not_only_this_batch(
    slack_rt: Runtime, receiver: WebhookReceiver
) -> None:
    waiting = MAX_ROWS + 30
    _rows(slack_rt, waiting, prefix="new", attempts=0, due_in=timedelta(0))
    dispatch_due(slack_rt, now=utcnow() + timedelta(seconds=61))
    text = str(receiver.received[0]["body"]["text"])
    more = waiting - MAX_LINES
    assert f"외 {more}건 / and {more} more" in text


def test_alerts_raised_together_are_queued_in_one_statement(slack_rt: Runtime) -> None:
    from sqlalchemy import event, func, select

    from services.alerts.store import AlertKind
    from services.reconciliation.alert_writer import write_verdicts
    from services.reconciliation.facts import Finding, Verdict

    verdicts = [Verdict(f"imp_many_{n}", None, Finding(AlertKind.AMOUNT_MISMATCH, "x")) for n in range(120)]
    inserts: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO NOTIFICATION_OUTBOX"):
            inserts.append(statement)

    engine = slack_rt.db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with slack_rt.db.write() as session:
            write_verdicts(session, verdicts, actor="system", where="a reconciliation")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    with slack_rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(NotificationOutbox)) == 120
    assert len(inserts) == 1


def test_old_events_are_deleted_even_once_no_channel_is_configured(
    slack_rt: Runtime, receiver: WebhookReceiver, sandbox: object
) -> None:
    from services.alerts.store import AlertKind, raise_alert
    from tests.factories import make_runtime

    with slack_rt.db.write() as session:
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid="imp_sent", merchant_uid=None, message="x")
    dispatch_due(slack_rt, now=utcnow() + timedelta(seconds=61))
    with slack_rt.db.write() as session:  # still waiting when the channel is removed
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid="imp_waiting", merchant_uid=None, message="x")
    quiet = make_runtime(database_url=slack_rt.settings.database_url, portone_api_url=slack_rt.settings.portone_api_url)
    try:
        dispatch_due(quiet, now=utcnow() + timedelta(days=31))
        with quiet.db.read() as session:
            assert session.scalars(select(NotificationOutbox)).all() == []
    finally:
        quiet.close()


def test_new_events_still_gathering_do_not_hold_up_a_due_retry(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    now = utcnow()
    with slack_rt.db.write() as session:
        session.execute(
            insert(NotificationOutbox),
            [
                {"event_key": f"new:{n}", "kind": "k", "severity": "high", "summary": f"new #{n}",
                 "link_path": "/alerts", "created_at": now, "next_attempt_at": now, "attempts": 0}
                for n in range(MAX_ROWS + 100)
            ],
        )  # fmt: skip
    _rows(slack_rt, 1, prefix="retry", attempts=2, due_in=timedelta(0))
    result = dispatch_due(slack_rt, now=now + timedelta(seconds=5))  # the new ones are within the window
    assert result.sent == ["retry:0"]
