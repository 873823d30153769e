"""PortOne V1 webhook receiver: record every delivery, then re-fetch and verify.

V1 webhooks are unsigned, so the body is only a hint of which payment changed: nothing in it is
trusted. Every delivery is stored before anything else happens, duplicates and out-of-order
deliveries are harmless because the payment is always re-read from PortOne.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from services.errors import GatewayError, NotFound, PaymentsError
from services.models import WebhookEvent, utcnow
from services.payments import verify_payment
from services.reconcile_rules import check_rejected_webhook
from services.runtime import Runtime

_MAX_FIELD = 64


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
    value = (data.get(name) or "").strip()
    return value[:_MAX_FIELD] or None


def receive(rt: Runtime, *, body: bytes, content_type: str, source_ip: str | None) -> WebhookOutcome:
    with rt.db.write() as session:
        event = WebhookEvent(
            source_ip=source_ip,
            content_type=(content_type or "")[:100],
            body=body.decode("utf-8", errors="replace"),
        )
        session.add(event)
        session.flush()
        event_id = event.id
    try:
        data = _parse(body, content_type or "")
    except (ValueError, UnicodeDecodeError) as exc:
        return _finish(rt, event_id, WebhookResult.REJECTED, f"unreadable body: {exc}")
    imp_uid = _field(data, "imp_uid")
    with rt.db.write() as session:
        event = session.get_one(WebhookEvent, event_id)
        event.imp_uid = imp_uid
        event.merchant_uid = _field(data, "merchant_uid")
        event.claimed_status = _field(data, "status")
    if imp_uid is None:
        return _finish(rt, event_id, WebhookResult.REJECTED, "no imp_uid in the body")
    try:
        verified = verify_payment(rt, imp_uid=imp_uid, source="webhook")
    except NotFound as exc:
        return _finish(rt, event_id, WebhookResult.REJECTED, str(exc))
    except GatewayError as exc:
        return _finish(rt, event_id, WebhookResult.ERROR, f"PortOne could not be asked: {exc}")
    except PaymentsError as exc:
        return _finish(rt, event_id, WebhookResult.ERROR, str(exc))
    claimed = _field(data, "status")
    detail = f"PortOne says {verified.status}"
    if claimed and claimed != verified.status:
        detail += f" (the webhook claimed {claimed})"
    if verified.forgery:
        detail += "; amount differs from the order: cancelled and alerted"
    if not verified.has_order:
        detail += "; no order of ours: alerted"
    return _finish(rt, event_id, WebhookResult.PROCESSED, detail, verified=True)


def _finish(
    rt: Runtime, event_id: int, result: WebhookResult, detail: str, *, verified: bool = False
) -> WebhookOutcome:
    with rt.db.write() as session:
        event = session.get_one(WebhookEvent, event_id)
        event.result = result
        event.detail = detail
        event.verified = verified
        event.processed_at = utcnow()
        if result == WebhookResult.REJECTED:
            check_rejected_webhook(session, event)
    return WebhookOutcome(event_id=event_id, result=result, detail=detail)
