"""`POST /api/payments/{imp_uid}/refunds` (internal token, Idempotency-Key): a refund through
services.refunds.engine. Its answer depends on the refund's outcome, not only on errors: 201
succeeded, 202 unknown (PortOne's answer was lost: settled by reading back, never by resending),
409 rejected by PortOne, 502 failed; a repeated key replays the first answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.bodies import body_schema, read_json_body
from api.deps import RuntimeDep, require_internal_token
from api.errors import error_response, error_responses
from api.models import RefundAccountShown, RefundAnswer, RefundBody, RefundPending
from api.responses import ExactJSONResponse
from services.core.errors import InvalidRequest
from services.core.models import RefundStatus
from services.refunds import engine as refunds

router = APIRouter(tags=["refunds"])

UNKNOWN_OUTCOME = "PortOne did not answer; the outcome will be settled by asking PortOne, not by resending"


@router.post(
    "/api/payments/{imp_uid}/refunds",
    status_code=201,
    dependencies=[Depends(require_internal_token)],
    response_model=RefundAnswer,
    responses={
        202: {"model": RefundPending, "description": "the outcome is unknown and being settled with PortOne"},
        **error_responses(400, 401, 404, 409, 422, 502, 503),
    },
    openapi_extra=body_schema(RefundBody),
)
async def refund(
    imp_uid: str,
    request: Request,
    runtime: RuntimeDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ExactJSONResponse:
    if not idempotency_key:
        raise InvalidRequest("the Idempotency-Key header is required")
    body = await read_json_body(request, RefundBody)
    result = await run_in_threadpool(
        refunds.refund,
        runtime,
        imp_uid=imp_uid,
        amount=body.amount,
        reason=body.reason,
        actor="api",
        idempotency_key=idempotency_key,
        source="api",
        refund_account=None if body.refund_account is None else body.refund_account.model_dump(),
    )
    return _refund_response(result)


def _refund_response(result: refunds.RefundResult) -> ExactJSONResponse:
    answer = RefundAnswer(
        refund_id=result.refund_id,
        imp_uid=result.imp_uid,
        status=str(result.status),
        amount=result.amount,
        currency=result.currency,
        refunded_total=result.refunded_total,
        remaining=result.remaining,
        cancellation_id=result.cancellation_id,
        replayed=result.replayed,
        refund_account=None if result.refund_account is None else RefundAccountShown(**result.refund_account),
    )
    if result.status == RefundStatus.SUCCEEDED:
        return ExactJSONResponse(answer, status_code=201)
    if result.status == RefundStatus.UNKNOWN:
        message = f"{UNKNOWN_OUTCOME}. {result.error_message}" if result.error_message else UNKNOWN_OUTCOME
        return ExactJSONResponse(RefundPending(**answer.model_dump(), message=message), status_code=202)
    return error_response(
        409 if result.status == RefundStatus.REJECTED else 502,
        "refund_" + str(result.status),
        result.error_message or "refund failed",
        **answer.model_dump(),
    )
