"""`POST /api/orders` (the amount comes from the fee table) and `GET /api/orders/{merchant_uid}`."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.bodies import body_schema, read_json_body
from api.deps import RuntimeDep
from api.errors import error_responses
from api.models import OrderBody, OrderCreated, OrderState
from api.responses import ExactJSONResponse
from services.payments import orders

router = APIRouter(tags=["orders"])


@router.post(
    "/api/orders",
    status_code=201,
    response_model=OrderCreated,
    responses=error_responses(400, 502, 503),
    openapi_extra=body_schema(OrderBody),
)
async def create_order(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
    body = await read_json_body(request, OrderBody)
    created = await run_in_threadpool(
        orders.create_order,
        runtime,
        customer_email=body.customer_email,
        customer_name=body.customer_name,
        customer_phone=body.customer_phone,
        currency=body.currency or "KRW",
    )
    answer = OrderCreated(
        merchant_uid=created.merchant_uid,
        amount=created.amount,
        currency=created.currency,
        name=created.name,
        pg=created.pg,
    )
    return ExactJSONResponse(answer, status_code=201)


@router.get("/api/orders/{merchant_uid}", response_model=OrderState, responses=error_responses(404, 422, 503))
async def read_order(merchant_uid: str, runtime: RuntimeDep) -> ExactJSONResponse:
    """The customer app's read of its order after the payment window closes: no personal data."""
    state = await run_in_threadpool(orders.order_state, runtime, merchant_uid)
    return ExactJSONResponse(
        OrderState(
            merchant_uid=state.merchant_uid,
            status=state.status,
            amount=state.amount,
            currency=state.currency,
            paid_at=_aware(state.paid_at).isoformat() if state.paid_at else None,
        )
    )


def _aware(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
