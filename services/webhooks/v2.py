"""PortOne V2 webhook receiver: record every delivery, verify its signature, refuse replays, then
re-fetch the payment from PortOne before anything changes.

V2 webhooks (version `2024-04-25`) are signed per Standard Webhooks: `webhook-id`,
`webhook-timestamp` and `webhook-signature` headers, HMAC-SHA256 with the webhook secret. The
official SDK's `portone_server_sdk.webhook.verify` checks the signature and that the timestamp is
within 5 minutes of now (either way). It does not remember messages, so a captured delivery could
be replayed within those 5 minutes: the id of each accepted delivery is claimed in a unique
column of its WebhookEvent row (see `_claim`), so a replay, even one racing the original, is refused.

Even a verified delivery is only a hint of which payment changed: the payment is read from PortOne
through the gateway and recorded by `services.payments.verification.verify_payment`, exactly like a V1 webhook.

Results: processed (200), ignored (200: a verified event that is not about a payment, e.g. a
billing key), rejected (4xx: unsigned, bad signature, stale timestamp, replayed, unreadable, or a
payment PortOne does not know), error (503: PortOne could not be asked; PortOne retries).
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from portone_server_sdk import webhook as sdk_webhook
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from services.core.config import Settings, is_placeholder
from services.core.errors import GatewayError, NotFound, PaymentsError
from services.core.models import WebhookEvent, utcnow
from services.payments.verification import verify_payment
from services.portone.types import storable_text
from services.reconciliation.realtime import check_rejected_webhook
from services.runtime import Runtime

# The sandbox's public webhook secret (sandbox/v2_config.py), used in sandbox mode only.
SANDBOX_V2_WEBHOOK_SECRET = "whsec_Y2hla2FyLXNhbmRib3gtdjItd2ViaG9vay1zZWNyZXQ="  # noqa: S105 - public test value
MAX_WEBHOOK_ID_LENGTH = 256
_MAX_FIELD = 64
_CLAIMED_STATUS_LENGTH = 32
# Earlier deliveries of a webhook-id in these states were accepted: a new one is a replay.
_ACCEPTED = ("processed", "ignored")
# A claim whose delivery has no result after this long was left by a process that died mid-way
# (measured from the delivery's arrival, which the claim follows within moments).
CLAIM_ABANDONED_AFTER = timedelta(minutes=5)
_log = logging.getLogger(__name__)


class V2WebhookResult(enum.StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    REJECTED = "rejected"
    ERROR = "error"


class Rejection(enum.StrEnum):
    TOO_LARGE = "too_large"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    REPLAYED = "replayed"
    UNREADABLE = "unreadable"
    UNKNOWN_PAYMENT = "unknown_payment"


_SDK_REASONS = {
    "MISSING_REQUIRED_HEADERS": Rejection.UNSIGNED,
    "NO_MATCHING_SIGNATURE": Rejection.BAD_SIGNATURE,
    "INVALID_SIGNATURE": Rejection.BAD_SIGNATURE,
    "TIMESTAMP_TOO_OLD": Rejection.STALE_TIMESTAMP,
    "TIMESTAMP_TOO_NEW": Rejection.STALE_TIMESTAMP,
}


@dataclass(frozen=True)
class V2WebhookOutcome:
    event_id: int
    result: V2WebhookResult
    detail: str
    reason: Rejection | None = None
    payment_id: str | None = None


def webhook_secret(settings: Settings) -> str | None:
    """The V2 webhook secret: `PORTONE_V2_WEBHOOK_SECRET` (a Settings field once it exists, else the
    environment), or the sandbox's public one in sandbox mode. None outside sandbox mode if unset."""
    value: Any = getattr(settings, "portone_v2_webhook_secret", None)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value:
        value = os.environ.get("PORTONE_V2_WEBHOOK_SECRET")
    if settings.portone_mode == "sandbox":
        return str(value or SANDBOX_V2_WEBHOOK_SECRET)
    if not value or is_placeholder(str(value)):
        return None  # the sandbox's published secret (or an empty one) verifies nothing outside the sandbox
    return str(value)


def v2_webhooks_enabled(settings: Settings) -> bool:
    """Whether `POST /portone/webhook/v2` is served: always in sandbox mode, otherwise only with a
    real V2 webhook secret."""
    return webhook_secret(settings) is not None


def _marker(webhook_id: str) -> str:
    """The start of `detail` for a delivery carrying this webhook-id (JSON-quoted: unambiguous)."""
    return f"webhook-id={json.dumps(webhook_id, ensure_ascii=False)}; "


def _claim(rt: Runtime, event_id: int, webhook_id: str) -> bool:
    """Claim the webhook-id for this delivery; False when an earlier delivery holds it (a replay).

    The unique column decides, so two deliveries of one message racing each other cannot both pass.
    A claim whose delivery never got a result (its process died between claim and finish) stops
    counting after CLAIM_ABANDONED_AFTER: it is released and this delivery claims the id.
    """
    for _ in range(2):
        try:
            with rt.db.write() as session:
                session.get_one(WebhookEvent, event_id).accepted_webhook_id = webhook_id
            return True
        except IntegrityError:
            if not _free_abandoned_claim(rt, webhook_id):
                return False
    return False


def _free_abandoned_claim(rt: Runtime, webhook_id: str) -> bool:
    """Release the claim on `webhook_id` if its delivery has no result and is older than the limit."""
    now = utcnow()
    with rt.db.write() as session:
        freed = session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.accepted_webhook_id == webhook_id,
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.received_at < now - CLAIM_ABANDONED_AFTER,
            )
            .values(
                accepted_webhook_id=None,
                result=V2WebhookResult.ERROR,
                detail=_marker(webhook_id) + "abandoned: no result within the claim limit; released for a retry",
                processed_at=now,
            )
            .returning(WebhookEvent.id)
        ).all()
    return bool(freed)


def _release_claim(rt: Runtime, event_id: int, webhook_id: str, exc: BaseException) -> None:
    """Processing failed before a result was written: free the webhook-id for PortOne's retry.
    Best effort: if the database refuses this too, the claim is freed once it is abandoned."""
    try:
        with rt.db.write() as session:
            session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.processed_at.is_(None))
                .values(
                    accepted_webhook_id=None,
                    result=V2WebhookResult.ERROR,
                    detail=_marker(webhook_id[:MAX_WEBHOOK_ID_LENGTH])
                    + f"processing failed ({type(exc).__name__}); released for a retry",
                    processed_at=utcnow(),
                )
            )
    except Exception:  # noqa: BLE001 - the original failure is what the caller sees
        _log.warning("could not release the claim of webhook event %s", event_id, exc_info=True)


def _payment_event(verified: object) -> tuple[str | None, str | None]:
    """(event type, paymentId) of a verified webhook; paymentId None when not about a payment."""
    if isinstance(verified, Mapping):  # a type this SDK version does not know, or 2024-01-01
        payment_id = verified.get("payment_id")
        data = verified.get("data")
        if payment_id is None and isinstance(data, Mapping):
            payment_id = data.get("paymentId")
        kind = verified.get("type") or verified.get("status")
        return (str(kind) if kind else None), (payment_id if isinstance(payment_id, str) else None)
    data = getattr(verified, "data", None)
    payment_id = getattr(data, "payment_id", None)
    kind = None
    raw_type = getattr(verified, "type", None)
    if isinstance(raw_type, str):
        kind = raw_type
    return kind, payment_id if isinstance(payment_id, str) else None


def _event_type(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None


def receive(
    rt: Runtime,
    *,
    body: bytes,
    headers: Mapping[str, str],
    content_type: str,
    source_ip: str | None,
    secret: str | None = None,
) -> V2WebhookOutcome:
    """Record, verify and process one V2 webhook delivery. `headers` as received (any case)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    webhook_id = (lowered.get("webhook-id") or "").strip()
    limit = rt.settings.webhook_max_body_bytes
    text = storable_text(body[:limit].decode("utf-8", errors="replace"))
    with rt.db.write() as session:
        event = WebhookEvent(
            source_ip=source_ip,
            content_type=(content_type or "")[:100],
            body=text,
            detail=_marker(webhook_id[:MAX_WEBHOOK_ID_LENGTH]) + "received",
        )
        session.add(event)
        session.flush()
        event_id = event.id

    def reject(reason: Rejection, why: str, payment_id: str | None = None) -> V2WebhookOutcome:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.REJECTED, why, reason=reason, payment_id=payment_id)

    if len(body) > limit:
        return reject(Rejection.TOO_LARGE, f"the body exceeds the {limit}-byte limit")
    if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH:
        return reject(Rejection.UNSIGNED, f"webhook-id longer than {MAX_WEBHOOK_ID_LENGTH} characters")
    key = secret or webhook_secret(rt.settings)
    if key is None:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.ERROR, "no V2 webhook secret is configured")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return reject(Rejection.UNREADABLE, "the body is not UTF-8")
    try:
        verified = sdk_webhook.verify(key, payload, lowered)
    except sdk_webhook.WebhookVerificationError as exc:
        reason = _SDK_REASONS.get(exc.reason, Rejection.BAD_SIGNATURE)
        return reject(reason, f"signature check failed: {exc.reason} ({exc.message})")
    except sdk_webhook.InvalidInputError as exc:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.ERROR, f"the V2 webhook secret is unusable: {exc}")
    except ValueError as exc:  # signed, but not a JSON object
        return reject(Rejection.UNREADABLE, f"signed body is not a JSON object: {exc}")
    kind, payment_id = _payment_event(verified)
    kind = kind or _event_type(payload)
    if payment_id is not None:
        payment_id = payment_id.strip()[:_MAX_FIELD] or None
    with rt.db.write() as session:
        row = session.get_one(WebhookEvent, event_id)
        row.imp_uid = payment_id
        row.merchant_uid = payment_id
        row.claimed_status = (kind or "")[:_CLAIMED_STATUS_LENGTH] or None
    if not _claim(rt, event_id, webhook_id):
        return reject(Rejection.REPLAYED, "this webhook-id was already accepted: a replay", payment_id)
    try:
        return _process(rt, event_id, webhook_id, kind, payment_id)
    except BaseException as exc:
        _release_claim(rt, event_id, webhook_id, exc)
        raise


def _process(rt: Runtime, event_id: int, webhook_id: str, kind: str | None, payment_id: str | None) -> V2WebhookOutcome:
    """A claimed delivery: re-fetch and record its payment, then write its result."""

    def reject(reason: Rejection, why: str, payment_id: str | None = None) -> V2WebhookOutcome:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.REJECTED, why, reason=reason, payment_id=payment_id)

    if payment_id is None:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.IGNORED, f"verified {kind or 'event'}; no payment")
    try:
        result = verify_payment(rt, imp_uid=payment_id, source="webhook")
    except NotFound as exc:
        return reject(Rejection.UNKNOWN_PAYMENT, str(exc), payment_id)
    except GatewayError as exc:
        why = f"PortOne could not be asked: {exc}"
        return _finish(rt, event_id, webhook_id, V2WebhookResult.ERROR, why, payment_id=payment_id)
    except PaymentsError as exc:
        return _finish(rt, event_id, webhook_id, V2WebhookResult.ERROR, str(exc), payment_id=payment_id)
    detail = f"verified {kind}; PortOne says {result.status}"
    if result.forgery:
        detail += "; amount differs from the order: cancelled and alerted"
    if not result.has_order:
        detail += "; no order of ours: alerted"
    return _finish(rt, event_id, webhook_id, V2WebhookResult.PROCESSED, detail, payment_id=payment_id, fetched=True)


def _finish(
    rt: Runtime,
    event_id: int,
    webhook_id: str,
    result: V2WebhookResult,
    detail: str,
    *,
    reason: Rejection | None = None,
    payment_id: str | None = None,
    fetched: bool = False,
) -> V2WebhookOutcome:
    with rt.db.write() as session:
        event = session.get_one(WebhookEvent, event_id)
        event.result = result
        event.detail = _marker(webhook_id[:MAX_WEBHOOK_ID_LENGTH]) + (f"{reason}: " if reason else "") + detail
        event.verified = fetched
        event.processed_at = utcnow()
        if result not in _ACCEPTED:
            event.accepted_webhook_id = None  # PortOne's retry of this message must be processed
        if result == V2WebhookResult.REJECTED:
            check_rejected_webhook(session, event)
    return V2WebhookOutcome(event_id=event_id, result=result, detail=detail, reason=reason, payment_id=payment_id)
