"""`POST /api/payments/complete`: the customer's app says it paid; PortOne is asked and compared
with our order (ForgeryDetected answers 400 `forgery`: cancelled at PortOne and alerted)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.bodies import body_schema, read_json_body
from api.deps import RuntimeDep
from api.errors import error_response, error_responses
from api.models import CompleteBody, NotPaid, PaymentCompleted
from api.responses import ExactJSONResponse
from services.payments import verification
from services.portone.types import PortOneStatus

router = APIRouter(tags=["payments"])


@router.post(
    "/api/payments/complete",
    response_model=PaymentCompleted,
    responses=error_responses(400, 404, 409, 502, 503, models={409: NotPaid}),
    openapi_extra=body_schema(CompleteBody),
)
async def complete(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
    body = await read_json_body(request, CompleteBody)
    result = await run_in_threadpool(
        verification.complete, runtime, imp_uid=body.imp_uid, merchant_uid=body.merchant_uid
    )
    answer = PaymentCompleted(
        status=str(result.status),
        imp_uid=result.imp_uid,
        merchant_uid=result.merchant_uid,
        amount=result.amount,
        cancel_amount=result.cancel_amount,
        currency=result.currency,
        paid_at=result.paid_at.isoformat() if result.paid_at else None,
    )
    if result.status != PortOneStatus.PAID:
        message = f"the payment is {result.status} at PortOne, not paid"
        if result.fail_reason:
            message += f": {result.fail_reason}"
        return error_response(409, "not_paid", message, **answer.model_dump(exclude={"status"}), status=answer.status)
    return ExactJSONResponse(answer)
