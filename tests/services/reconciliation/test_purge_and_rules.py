"""The retention purge and the reconciliation rules together, on real SQLite and PostgreSQL: a purge
never makes a rule judge evidence as absent that was only deleted."""

from __future__ import annotations

import time

from services.payments.verification import verify_payment
from services.reconciliation.engine import start_run
from services.runtime import Runtime
from services.system.retention import purge
from tests.factories import SandboxControl
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
