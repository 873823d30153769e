"""Every alert is written by one writer (services.reconciliation.alert_writer.write_verdicts), which handles
PostgreSQL's race of two transactions opening the same alert; `raise_alert` (refunds, the alert
desk) goes through it too."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from services.alerts.store import AlertKind, raise_alert
from services.core.models import Alert, AlertStatus
from services.runtime import Runtime


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_transactions_raising_the_same_alert_at_once_leave_one_open_alert(runtime: Runtime) -> None:
    first_inserted = threading.Event()
    errors: list[BaseException] = []

    def raise_it(first: bool) -> None:
        try:
            with runtime.db.write() as session:
                if not first:
                    first_inserted.wait(10)  # the first one's alert exists, not yet committed
                raise_alert(
                    session,
                    kind=AlertKind.REFUND_MISMATCH,
                    imp_uid="imp_race_1",
                    merchant_uid="order-race-1",
                    message=f"refund cannot be matched ({'first' if first else 'second'})",
                    db_value=1000,
                    portone_value=0,
                )
                if first:
                    first_inserted.set()
                    time.sleep(0.5)  # the second one now finds none and inserts: it waits on this one
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=raise_it, args=(first,)) for first in (True, False)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with runtime.db.read() as session:
        alerts = session.scalars(select(Alert).where(Alert.imp_uid == "imp_race_1")).all()
    assert [(a.kind, a.status) for a in alerts] == [(AlertKind.REFUND_MISMATCH, AlertStatus.OPEN)]
    assert alerts[0].message == "refund cannot be matched (second)"  # refreshed by the later one
