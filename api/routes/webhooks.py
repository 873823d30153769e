"""PortOne's webhooks: `POST /portone/webhook` (V1, verified by re-asking PortOne, batched) and
`POST /portone/webhook/v2` (Standard Webhooks signatures, services/webhooks/v2.py).

Both are answered from the delivery's outcome: V1 200 processed, 400 rejected, 503 PortOne
unreachable (413 over the limit); V2 200 processed or verified and ignored, 4xx with
`{"error", "message", "result", "event_id"}` when rejected (409 a replay, 413 over the limit,
400 otherwise), 503 when PortOne could not be asked (PortOne then retries the delivery).
`v2_router` is included only when V2 webhooks are enabled (api.app.create_app).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from api.bodies import read_capped
from api.deps import RuntimeDep
from api.errors import error_response, error_responses
from api.models import V2WebhookRefusal, V2WebhookUnavailable, WebhookAnswer
from api.responses import ExactJSONResponse
from api.webhook_senders import require_listed_sender, sender_ip
from services.core.errors import NotFound
from services.webhooks import v1 as webhooks_v1
from services.webhooks import v2 as webhooks_v2
from services.webhooks.batcher import WebhookBatcher
from services.webhooks.v2 import Rejection, V2WebhookResult

router = APIRouter(tags=["webhooks"])
v2_router = APIRouter(tags=["webhooks"])

_V1_STATUS = {
    webhooks_v1.WebhookResult.PROCESSED: 200,
    webhooks_v1.WebhookResult.REJECTED: 400,
    webhooks_v1.WebhookResult.ERROR: 503,
}


@router.post(
    "/portone/webhook",
    response_model=WebhookAnswer,
    dependencies=[Depends(require_listed_sender)],
    responses={
        400: {"model": WebhookAnswer, "description": "rejected: unreadable, or unknown to PortOne"},
        503: {"model": WebhookAnswer, "description": "PortOne could not be asked"},
        **error_responses(403, 413),
    },
)
async def portone_webhook(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
    limit = runtime.settings.webhook_max_body_bytes
    raw, too_large = await read_capped(request, limit)
    if too_large:
        return error_response(413, "too_large", f"webhook bodies are limited to {limit} bytes")
    delivery = webhooks_v1.Delivery(
        body=raw, content_type=request.headers.get("content-type", ""), source_ip=sender_ip(request)
    )
    batcher: WebhookBatcher = request.app.state.webhook_batcher
    outcome = await asyncio.wrap_future(batcher.submit(delivery))
    answer = WebhookAnswer(result=str(outcome.result), detail=outcome.detail, event_id=outcome.event_id)
    return ExactJSONResponse(answer, status_code=_V1_STATUS[outcome.result])


_V2_REFUSAL_STATUS = {Rejection.REPLAYED: 409, Rejection.TOO_LARGE: 413}
_V2_REFUSALS = {
    Rejection.TOO_LARGE: "the webhook body is larger than allowed",
    Rejection.UNSIGNED: "the webhook carries no (usable) Standard Webhooks signature headers",
    Rejection.BAD_SIGNATURE: "the webhook signature does not match its body",
    Rejection.STALE_TIMESTAMP: "the webhook timestamp is outside the accepted window",
    Rejection.REPLAYED: "this webhook was already received and processed",
    Rejection.UNREADABLE: "the webhook body is not readable",
    Rejection.UNKNOWN_PAYMENT: "PortOne does not know the payment this webhook names",
}


def require_v2_webhooks(runtime: RuntimeDep) -> None:
    """NotFound (404) unless V2 webhooks are enabled: also when `v2_router` is included by hand."""
    if not webhooks_v2.v2_webhooks_enabled(runtime.settings):
        raise NotFound("V2 webhooks are not configured")


@v2_router.post(
    "/portone/webhook/v2",
    response_model=WebhookAnswer,
    dependencies=[Depends(require_v2_webhooks), Depends(require_listed_sender)],
    responses={
        400: {"model": V2WebhookRefusal, "description": "unsigned, bad signature, stale, unreadable"},
        409: {"model": V2WebhookRefusal, "description": "a replayed webhook-id"},
        413: {"model": V2WebhookRefusal, "description": "the body is over the limit"},
        503: {"model": V2WebhookUnavailable, "description": "PortOne could not be asked"},
        **error_responses(403, 404),
    },
)
async def portone_webhook_v2(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
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
        return ExactJSONResponse(
            WebhookAnswer(result=str(outcome.result), detail=outcome.detail, event_id=outcome.event_id)
        )
    if outcome.result == V2WebhookResult.ERROR:
        return error_response(503, "unavailable", outcome.detail, event_id=outcome.event_id)
    reason = outcome.reason or Rejection.UNREADABLE
    return error_response(
        _V2_REFUSAL_STATUS.get(reason, 400),
        str(reason),
        f"{_V2_REFUSALS[reason]}: {outcome.detail}",
        result=str(outcome.result),
        event_id=outcome.event_id,
    )
