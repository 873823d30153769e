"""PortOne V1 webhook receiver: record every delivery, then re-fetch and verify.

V1 webhooks are unsigned, so the body is only a hint of which payment changed: nothing in it is
trusted. Every delivery is stored before anything else happens, duplicates and out-of-order
deliveries are harmless because the payment is always re-read from PortOne.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import insert, update
from sqlalchemy.exc import OperationalError

from services.core.errors import (
    GatewayError,
    GatewayNotFound,
    GatewayUnauthorized,
    GatewayUnavailable,
    PaymentsError,
    UnreadableAnswer,
)
from services.core.models import WebhookEvent, utcnow
from services.payments.verification import Verification, record_many, verification_after_record
from services.portone.types import storable_text
from services.reconciliation.realtime import check_rejected_webhook
from services.runtime import Runtime

_MAX_FIELD = 64
_log = logging.getLogger(__name__)


class WebhookResult(enum.StrEnum):
    PROCESSED = "processed"
    REJECTED = "rejected"  # malformed, or names a payment PortOne does not know
    ERROR = "error"  # PortOne could not be asked; the sender should retry


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: int
    result: WebhookResult
    detail: str


def _parse(body: bytes, content_type: str) -> dict[str, str]:
    text = body.decode("utf-8")
    if "json" in content_type or text.lstrip().startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the JSON body is not an object")
        return {str(k): str(v) for k, v in data.items() if v is not None}
    return {k: v[0] for k, v in parse_qs(text, strict_parsing=False).items()}


def _field(data: dict[str, str], name: str) -> str | None:
    value = storable_text(data.get(name) or "").strip()
    return value[:_MAX_FIELD] or None


@dataclass(frozen=True)
class Delivery:
    body: bytes
    content_type: str
    source_ip: str | None


@dataclass
class _Pending:
    """One delivery while its batch is processed."""

    event_id: int
    imp_uid: str | None
    claimed: str | None
    result: WebhookResult | None = None
    detail: str = ""
    verified: bool = False


def receive(rt: Runtime, *, body: bytes, content_type: str, source_ip: str | None) -> WebhookOutcome:
    """Record and verify one delivery."""
    return receive_many(rt, [Delivery(body=body, content_type=content_type, source_ip=source_ip)])[0]


def receive_many(rt: Runtime, deliveries: Sequence[Delivery]) -> list[WebhookOutcome]:
    """Record deliveries that arrived together, then verify them together: one PortOne look-up for
    up to 100 payments and one transaction to apply them, whatever the number of deliveries.

    Every delivery is stored before anything else happens; its outcome is its own (a payment
    PortOne does not know rejects only the deliveries naming it).
    """
    pending = _store(rt, deliveries)
    named = {p.imp_uid for p in pending if p.result is None and p.imp_uid is not None}
    if named:
        _verify(rt, pending, sorted(named))
    return _finish(rt, pending)


def _store(rt: Runtime, deliveries: Sequence[Delivery]) -> list[_Pending]:
    parsed: list[tuple[dict[str, str] | None, str]] = []
    for delivery in deliveries:
        try:
            parsed.append((_parse(delivery.body, delivery.content_type or ""), ""))
        except (ValueError, UnicodeDecodeError) as exc:
            parsed.append((None, f"unreadable body: {exc}"))
    rows: list[dict[str, Any]] = [
        {
            "received_at": utcnow(),
            "source_ip": delivery.source_ip,
            "content_type": (delivery.content_type or "")[:100],
            "body": storable_text(delivery.body.decode("utf-8", errors="replace")),
            "imp_uid": None if data is None else _field(data, "imp_uid"),
            "merchant_uid": None if data is None else _field(data, "merchant_uid"),
            "claimed_status": None if data is None else _field(data, "status"),
            "verified": False,
        }
        for delivery, (data, _) in zip(deliveries, parsed, strict=True)
    ]
    with rt.db.write() as session:
        ids = session.scalars(insert(WebhookEvent).returning(WebhookEvent.id, sort_by_parameter_order=True), rows).all()
    pending = []
    for event_id, row, (data, problem) in zip(ids, rows, parsed, strict=True):
        item = _Pending(event_id=event_id, imp_uid=row["imp_uid"], claimed=row["claimed_status"])
        if data is None:
            item.result, item.detail = WebhookResult.REJECTED, problem
        elif item.imp_uid is None:
            item.result, item.detail = WebhookResult.REJECTED, "no imp_uid in the body"
        pending.append(item)
    return pending


_Verdict = tuple[WebhookResult, str] | Verification
_PORTONE_DOWN = (GatewayUnavailable, GatewayUnauthorized)  # the same for every delivery of the batch


def _verify(rt: Runtime, pending: list[_Pending], imp_uids: list[str]) -> None:
    """Fetch the named payments from PortOne, record them, and judge each waiting delivery.

    Together first (one look-up, one transaction); if that fails for a reason other than PortOne
    being unreachable, each payment is judged on its own, so one bad delivery never fails the rest.
    """
    waiting = [p for p in pending if p.result is None]
    verdicts: dict[str, _Verdict]
    try:
        verdicts = _judge_together(rt, imp_uids)
    except _PORTONE_DOWN as exc:
        if isinstance(exc, UnreadableAnswer) and len(imp_uids) > 1:  # one payment's answer, not PortOne down
            verdicts = {imp_uid: _judge_alone(rt, imp_uid) for imp_uid in imp_uids}
        else:
            verdicts = dict.fromkeys(imp_uids, (WebhookResult.ERROR, f"PortOne could not be asked: {exc}"))
    except OperationalError:
        raise  # the database is unreachable or locked: every delivery is answered 503, one by one would only wait longer
    except Exception as exc:  # noqa: BLE001 - judged one by one below
        if len(imp_uids) == 1:
            verdicts = {imp_uids[0]: _failed(imp_uids[0], exc)}
        else:
            verdicts = {imp_uid: _judge_alone(rt, imp_uid) for imp_uid in imp_uids}
    for item in waiting:
        verdict = verdicts[item.imp_uid or ""]
        if isinstance(verdict, Verification):
            item.result, item.verified = WebhookResult.PROCESSED, True
            item.detail = _describe(verdict, item.claimed)
        else:
            item.result, item.detail = verdict


def _failed(imp_uid: str, exc: Exception) -> tuple[WebhookResult, str]:
    """An unexpected failure judging one payment: the sender retries (503), the rest go on."""
    _log.warning("webhook for %s could not be processed", imp_uid, exc_info=exc)
    if isinstance(exc, GatewayError):
        return WebhookResult.ERROR, f"PortOne could not be asked: {exc}"
    if isinstance(exc, PaymentsError):
        return WebhookResult.ERROR, str(exc)
    # Only the kind: an unexpected error's text may quote a statement or data; the log has the rest.
    return WebhookResult.ERROR, f"could not be processed ({type(exc).__name__}); details in the server log"


def _judge_alone(rt: Runtime, imp_uid: str) -> _Verdict:
    try:
        return _judge_together(rt, [imp_uid])[imp_uid]
    except Exception as exc:  # noqa: BLE001 - this delivery's own answer
        return _failed(imp_uid, exc)


def _judge_together(rt: Runtime, imp_uids: list[str]) -> dict[str, _Verdict]:
    try:
        if len(imp_uids) == 1:
            fetched = [rt.gateway.get_payment(imp_uids[0])]
        else:
            fetched = rt.gateway.get_payments(imp_uids)
    except GatewayNotFound:
        fetched = []
    by_uid = {payment.imp_uid: payment for payment in fetched}
    judged = record_many(rt, list(by_uid.values()), "webhook")
    verdicts: dict[str, _Verdict] = {}
    for imp_uid in imp_uids:
        if imp_uid not in by_uid:
            verdicts[imp_uid] = (WebhookResult.REJECTED, f"PortOne has no payment {imp_uid!r}")
            continue
        has_order, forgery = judged[imp_uid]
        try:
            verdicts[imp_uid] = verification_after_record(rt, by_uid[imp_uid], has_order=has_order, forgery=forgery)
        except Exception as exc:  # noqa: BLE001 - recorded already; this delivery's own answer
            verdicts[imp_uid] = _failed(imp_uid, exc)
    return verdicts


def _describe(verified: Verification, claimed: str | None) -> str:
    detail = f"PortOne says {verified.status}"
    if claimed and claimed != verified.status:
        detail += f" (the webhook claimed {claimed})"
    if verified.forgery:
        detail += "; amount differs from the order: cancelled and alerted"
    if not verified.has_order:
        detail += "; no order of ours: alerted"
    return detail


def _finish(rt: Runtime, pending: list[_Pending]) -> list[WebhookOutcome]:
    now = utcnow()
    with rt.db.write() as session:
        session.execute(
            update(WebhookEvent),
            [
                {
                    "id": item.event_id,
                    "result": item.result,
                    "detail": item.detail,
                    "verified": item.verified,
                    "processed_at": now,
                }
                for item in pending
            ],
        )
        for item in pending:
            if item.result == WebhookResult.REJECTED:
                check_rejected_webhook(session, session.get_one(WebhookEvent, item.event_id))
    return [
        WebhookOutcome(event_id=item.event_id, result=item.result or WebhookResult.ERROR, detail=item.detail)
        for item in pending
    ]
