"""The retention purge and the reconciliation rules together, on real SQLite and PostgreSQL: a purge
never makes a rule judge evidence as absent that was only deleted."""

from __future__ import annotations

import time

import pytest

from services.payments.verification import verify_payment
from services.reconciliation.engine import start_run
from services.runtime import Runtime
from services.system.retention import purge
from tests.factories import SandboxControl, make_runtime
from tests.services.reconciliation.test_engine import (
    FAST,
    OPERATOR,
    K,
    _at,
    _bulk,
    _spec,
    add_delivery,
    add_order,
    alert_rows,
    open_alerts,
)

DAY = 86400


def _rejected_long_ago(runtime: Runtime, sandbox: SandboxControl, now: int) -> tuple[str, int]:
    """A payment 200 days old whose only webhook failed verification, with its alert open."""
    started = now - 200 * DAY
    add_order(runtime, f"old-{now}", "KRW")
    (imp_uid,) = _bulk(sandbox, [_spec(f"old-{now}", "KRW", started)])
    verify_payment(runtime, imp_uid=imp_uid, source="complete")
    add_delivery(runtime, imp_uid, _at(started + 31), result="rejected", detail="bad_signature: forged?")
    start_run(runtime, since=_at(started - 3600), until=_at(started + 3600), actor=OPERATOR, options=FAST)
    assert (str(K.WEBHOOK_UNVERIFIED), imp_uid) in open_alerts(runtime)
    return imp_uid, started


def test_an_open_unverified_alert_keeps_its_evidence_through_a_purge(runtime: Runtime, sandbox: SandboxControl) -> None:
    now = int(time.time())
    imp_uid, started = _rejected_long_ago(runtime, sandbox, now)
    assert purge(runtime).deleted["webhook_events"] == 0  # older than RETENTION_DAYS, but still evidence

    # Every way the payment is judged again leaves the alert open for a person.
    start_run(runtime, since=_at(started - 3600), until=_at(started + 3600), actor=OPERATOR, options=FAST)
    verify_payment(runtime, imp_uid=imp_uid, source="resync")
    sandbox.console_cancel(imp_uid)  # listed in today's window too
    start_run(runtime, since=_at(now - 3600), actor=OPERATOR, options=FAST)
    assert (str(K.WEBHOOK_UNVERIFIED), imp_uid) in open_alerts(runtime)
    assert not [a for a in alert_rows(runtime) if a.kind == K.WEBHOOK_UNVERIFIED and a.status == "resolved"]


def _paid_without_webhook(rt: Runtime, sandbox: SandboxControl, paid_at: int, tag: str) -> str:
    add_order(rt, tag, "KRW")
    (imp_uid,) = _bulk(sandbox, [_spec(tag, "KRW", paid_at)])
    verify_payment(rt, imp_uid=imp_uid, source="complete")  # recorded, but no webhook ever came
    return imp_uid


@pytest.mark.parametrize("days", [1, 2])
def test_a_short_retention_still_finds_webhook_gaps(database_url: str, sandbox: SandboxControl, days: int) -> None:
    """RETENTION_DAYS=1 or 2 must not switch the webhook-gap rule off: only a change older than what a
    purge actually deleted is left undecided (never purged: every change is judged)."""
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, retention_days=days)
    try:
        now = int(time.time())
        hours_ago = _paid_without_webhook(rt, sandbox, now - 2 * 3600, f"gap-2h-{now}")
        a_day_ago = _paid_without_webhook(rt, sandbox, now - 30 * 3600, f"gap-30h-{now}")
        start_run(rt, since=_at(now - 2 * DAY), actor=OPERATOR, options=FAST)
        assert {(str(K.WEBHOOK_GAP), hours_ago), (str(K.WEBHOOK_GAP), a_day_ago)} <= open_alerts(rt)

        purge(rt)
        later = _paid_without_webhook(rt, sandbox, now - 3 * 3600, f"gap-3h-{now}")
        start_run(rt, since=_at(now - 4 * 3600), actor=OPERATOR, options=FAST)
        assert (str(K.WEBHOOK_GAP), later) in open_alerts(rt)  # hours old: well inside what is kept
    finally:
        rt.close()


def test_a_purge_with_a_shorter_retention_elsewhere_raises_no_false_webhook_gap(
    database_url: str, sandbox: SandboxControl
) -> None:
    """One process purged with RETENTION_DAYS=30 while the reconciler keeps 180: the rule goes by what
    was deleted, not by its own setting, so a payment whose webhook did arrive is no gap."""
    purger = make_runtime(database_url=database_url, portone_api_url=sandbox.url, retention_days=30)
    reconciler = make_runtime(database_url=database_url, portone_api_url=sandbox.url)  # keeps 180 days
    try:
        now = int(time.time())
        paid_at = now - 60 * DAY
        tag = f"told-{now}"
        add_order(purger, tag, "KRW")
        (imp_uid,) = _bulk(sandbox, [_spec(tag, "KRW", paid_at)])
        add_delivery(purger, imp_uid, _at(paid_at + 35))  # the paid webhook arrived on time
        verify_payment(purger, imp_uid=imp_uid, source="complete")
        assert (str(K.WEBHOOK_GAP), imp_uid) not in open_alerts(purger)
        assert purge(purger).deleted["webhook_events"] == 1
        start_run(reconciler, since=_at(paid_at - 3600), until=_at(paid_at + 3600), actor=OPERATOR, options=FAST)
        assert (str(K.WEBHOOK_GAP), imp_uid) not in open_alerts(reconciler)
        verify_payment(reconciler, imp_uid=imp_uid, source="resync")  # the real-time check agrees
        assert (str(K.WEBHOOK_GAP), imp_uid) not in open_alerts(reconciler)
    finally:
        purger.close()
        reconciler.close()
