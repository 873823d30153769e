"""`POST /portone/webhook/v2`: PortOne V2's signed webhooks (see services/webhooks/v2.py).

Include with `app.include_router(api.webhooks_v2.router)`; the app's `state.runtime` serves it.
Answers 200 when processed (or verified and ignored), 4xx with `{"error", "message", "event_id"}`
when rejected (409 for a replay, 413 for a body over the limit, 400 otherwise) and 503 when
PortOne could not be asked (PortOne then retries the delivery).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.bodies import read_capped
from api.webhook_senders import refuse_unlisted_sender, sender_ip
from services.runtime import Runtime
from services.webhooks import v2 as webhooks_v2
from services.webhooks.v2 import Rejection, V2WebhookResult

router = APIRouter()

_REJECTION_STATUS = {Rejection.REPLAYED: 409, Rejection.TOO_LARGE: 413}
_MESSAGES = {
    Rejection.TOO_LARGE: "the webhook body is larger than allowed",
    Rejection.UNSIGNED: "the webhook carries no (usable) Standard Webhooks signature headers",
    Rejection.BAD_SIGNATURE: "the webhook signature does not match its body",
    Rejection.STALE_TIMESTAMP: "the webhook timestamp is outside the accepted window",
    Rejection.REPLAYED: "this webhook was already received and processed",
    Rejection.UNREADABLE: "the webhook body is not readable",
    Rejection.UNKNOWN_PAYMENT: "PortOne does not know the payment this webhook names",
}


@router.post("/portone/webhook/v2")
async def portone_webhook_v2(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    if not webhooks_v2.v2_webhooks_enabled(runtime.settings):  # also when this router is included by hand
        return JSONResponse({"error": "not_found", "message": "V2 webhooks are not configured"}, status_code=404)
    refused = refuse_unlisted_sender(request, runtime.settings)
    if refused is not None:
        return refused
    # Over the limit, the first limit + 1 bytes are enough for the record and the 413.
    raw, _ = await read_capped(request, runtime.settings.webhook_max_body_bytes)
    outcome = await run_in_threadpool(
        webhooks_v2.receive,
        runtime,
        body=raw,
        headers=dict(request.headers),
        content_type=request.headers.get("content-type", ""),
        source_ip=sender_ip(request),
    )
    if outcome.result in (V2WebhookResult.PROCESSED, V2WebhookResult.IGNORED):
        return JSONResponse({"result": str(outcome.result), "detail": outcome.detail, "event_id": outcome.event_id})
    if outcome.result == V2WebhookResult.ERROR:
        return JSONResponse(
            {"error": "unavailable", "message": outcome.detail, "event_id": outcome.event_id}, status_code=503
        )
    reason = outcome.reason or Rejection.UNREADABLE
    return JSONResponse(
        {
            "error": str(reason),
            "message": f"{_MESSAGES[reason]}: {outcome.detail}",
            "result": str(outcome.result),
            "event_id": outcome.event_id,
        },
        status_code=_REJECTION_STATUS.get(reason, 400),
    )
