"""Repairs: a payment re-synced from PortOne, where PortOne is the source of truth.

    repair(rt, alert_id=..., actor=...) -> RepairResult   (one alert, by a person)
    repair_payment(...)                                     (also a run with `repair`, services.reconciliation.engine)

Money never moves, except the existing forgery policy of `verify_payment`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from services.alerts.store import AlertKind
from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.models import Alert, AlertStatus, Order
from services.payments.sync import apply_payment, lock_payment
from services.payments.verification import verify_payment
from services.portone.types import PortOneStatus
from services.reconciliation.alert_writer import attributed_to
from services.reconciliation.facts import Facts
from services.reconciliation.realtime import check_recorded
from services.refunds.settlement import settle_with_lease
from services.runtime import Runtime

AUTO_REPAIRABLE = frozenset(
    {
        AlertKind.MISSING_IN_DB,
        AlertKind.STATUS_MISMATCH,
        AlertKind.AMOUNT_MISMATCH,
        AlertKind.REFUND_TOTAL_MISMATCH,
        AlertKind.REFUND_OUTCOME_UNKNOWN,
    }
)
REPAIRABLE = AUTO_REPAIRABLE | {AlertKind.REFUND_MISMATCH}
_REFUND_KINDS = frozenset({AlertKind.REFUND_OUTCOME_UNKNOWN, AlertKind.REFUND_MISMATCH})
_FORCEABLE = frozenset({AlertKind.STATUS_MISMATCH, AlertKind.REFUND_TOTAL_MISMATCH})


@dataclass(frozen=True)
class RepairResult:
    alert_id: int
    kind: str
    imp_uid: str
    resolved: bool  # the alert is resolved now
    actions: tuple[str, ...]  # what the repair did, in order


def auto_repairable(facts: Facts, kind: AlertKind) -> bool:
    """Whether a run with `repair` re-syncs this finding by itself."""
    if kind not in AUTO_REPAIRABLE:
        return False
    if kind == AlertKind.AMOUNT_MISMATCH:
        # A forgery still paid is cancelled by verify_payment (the forgery policy); one already
        # cancelled has nothing left to repair. Our own record's amount is re-synced.
        g, p = facts.portone, facts.ours
        ours_differ = p is not None and g is not None and (p.amount, p.currency) != (g.amount, g.currency)
        return g is not None and (g.status == PortOneStatus.PAID or ours_differ)
    return True


def repair(rt: Runtime, *, alert_id: int, actor: Actor) -> RepairResult:
    """Re-sync the alert's payment from PortOne, where PortOne is the source of truth.

    Status, cancel amount and amount are copied from PortOne (even over a record of ours that is
    ahead of PortOne's); a payment we never recorded is recorded; refund attempts of unknown
    outcome are settled from PortOne's cancel history (never resent); a forged payment still paid
    is cancelled by the existing forgery policy. Nothing else moves money. The alert resolves
    itself when the difference is gone. Raises NotFound, Conflict (already resolved),
    InvalidRequest (a kind that PortOne's record cannot repair), GatewayError.
    """
    require(actor, Permission.HANDLE_ALERTS)
    with rt.db.read() as session:
        alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert #{alert_id}")
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert #{alert_id} is already resolved")
    if alert.kind not in REPAIRABLE or not alert.imp_uid:
        raise InvalidRequest(f"a {alert.kind} alert cannot be repaired from PortOne's record: handle it by hand")
    kind = AlertKind(alert.kind)
    actions = repair_payment(
        rt, imp_uid=alert.imp_uid, kinds={kind}, actor=actor.username, where=f"repair by {actor.username}"
    )
    with rt.db.read() as session:
        status = session.scalar(select(Alert.status).where(Alert.id == alert_id))
    return RepairResult(
        alert_id=alert_id,
        kind=str(kind),
        imp_uid=alert.imp_uid,
        resolved=status == AlertStatus.RESOLVED,
        actions=tuple(actions),
    )


def repair_payment(rt: Runtime, *, imp_uid: str, kinds: set[AlertKind], actor: str, where: str) -> list[str]:
    actions: list[str] = []
    with attributed_to(actor, where):
        if kinds & _REFUND_KINDS:
            settled = settle_with_lease(rt, imp_uid=imp_uid, actor=actor)
            actions.append(f"settled {settled} refund attempt(s) from PortOne's cancel history")
        try:
            verified = verify_payment(rt, imp_uid=imp_uid, source="reconcile")
        except NotFound:
            actions.append("PortOne has no such payment: nothing to sync")
        else:
            actions.append(f"synced from PortOne: {verified.status}, cancelled {verified.cancel_amount}")
            if verified.forgery:
                actions.append("amount differs from the order: the forgery policy cancels what is still paid")
            if kinds & _FORCEABLE:
                forced = _force_sync(rt, imp_uid=imp_uid, actor=actor)
                if forced:
                    actions.append(forced)
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor,
            action="reconcile.repaired",
            target=imp_uid,
            kinds=sorted(str(k) for k in kinds),
            actions=actions,
            where=where,
        )
    return actions


def _force_sync(rt: Runtime, *, imp_uid: str, actor: str) -> str | None:
    """Our status or cancel total is ahead of PortOne's (apply_payment never rolls a record back,
    to survive racing fetches): on a repair, PortOne's record wins."""
    fetched = rt.gateway.get_payment(imp_uid)
    with rt.db.write() as session:
        # Same lock order as apply_payment: the order, then the payment.
        session.scalar(select(Order).where(Order.merchant_uid == fetched.merchant_uid).with_for_update())
        payment = lock_payment(session, imp_uid)
        if payment is None:
            return None
        before = (payment.status, payment.cancel_amount)
        if before == (fetched.status, fetched.cancel_amount):
            return None
        payment.status = str(fetched.status)
        payment.cancel_amount = fetched.cancel_amount
        applied = apply_payment(session, fetched, source="reconcile")
        check_recorded(session, fetched, applied, source="reconcile", settings=rt.settings)
        audit.record(
            session,
            actor=actor,
            action="payment.force_synced",
            target=imp_uid,
            before={"status": before[0], "cancel_amount": before[1]},
            after={"status": str(fetched.status), "cancel_amount": fetched.cancel_amount},
        )
    return f"our record ({before[0]}, cancelled {before[1]}) was ahead of PortOne's: replaced by PortOne's"
