"""The payment backend (FastAPI): orders, payment-complete, refunds and the PortOne webhook.

Routes are thin: they parse input, call `services/`, and translate domain errors into HTTP.
Request bodies with money are parsed with Decimal (never float).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from api import webhooks_v2 as webhooks_v2_routes
from api.bodies import read_capped
from api.exports import include_export_routes
from api.webhook_senders import refuse_unlisted_sender, sender_ip
from services.core import jsonutil
from services.core.config import get_settings
from services.core.errors import (
    Conflict,
    ForgeryDetected,
    FullRefundOnly,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    InvalidRequest,
    NotFound,
    PaymentsError,
    RefundAccountRequired,
    RefundExceedsRemaining,
)
from services.core.models import RefundStatus
from services.payments import orders
from services.payments import verification as payments
from services.portone.types import PortOneStatus
from services.reconciliation import schedule as reconcile_schedule
from services.refunds import engine as refunds
from services.runtime import Runtime, build_runtime
from services.webhooks import v1 as webhooks
from services.webhooks import v2 as webhooks_v2
from services.webhooks.batcher import WebhookBatcher

log = logging.getLogger("chekar.api")
MAX_JSON_BODY = 16 * 1024


class ExactJSONResponse(JSONResponse):
    """Writes Decimals as exact JSON numbers."""

    def render(self, content: Any) -> bytes:
        return jsonutil.dumps_exact(content).encode()


def error(http_status: int, code: str, message: str, **extra: Any) -> ExactJSONResponse:
    return ExactJSONResponse({"error": code, "message": message, **extra}, status_code=http_status)


# -- request models (for validation and the OpenAPI schema) ---------------------------------


class OrderRequest(BaseModel):
    customer_email: str = Field(max_length=254)
    customer_name: str = Field(max_length=100)
    customer_phone: str | None = Field(default=None, max_length=40)
    currency: str | None = Field(default=None, max_length=3, description="KRW (default) or another fee-table currency")


class CompleteRequest(BaseModel):
    imp_uid: str = Field(min_length=1, max_length=64)
    merchant_uid: str = Field(min_length=1, max_length=64)


class RefundAccountBody(BaseModel):
    """Where a virtual-account payment is paid back (PortOne V1 refund_bank/refund_holder/refund_account,
    V2 refundAccount; opi/ko/integration/cancel/v1/basic.md)."""

    bank: str = Field(max_length=8, description="PortOne's bank code (금융결제원 standard): 04 KB국민, 88 신한, ...")
    holder: str = Field(max_length=50, description="the account holder's name")
    number: str = Field(max_length=40, description="the account number (digits, hyphens allowed)")


class RefundRequest(BaseModel):
    amount: Decimal | str | None = Field(
        default=None,
        description="JSON number, or a string of digits with optional thousands separators in groups of three "
        "(20,000) and a decimal point only for currencies with minor units (12.50 USD); absent means the whole "
        "remainder",
    )
    reason: str = Field(min_length=1, max_length=500)
    refund_account: RefundAccountBody | None = Field(
        default=None, description="required to refund a virtual-account payment; answered with its number masked"
    )


async def _json_body(request: Request) -> dict[str, Any]:
    raw, too_large = await read_capped(request, MAX_JSON_BODY)
    if too_large:
        raise InvalidRequest(f"request body too large (at most {MAX_JSON_BODY} bytes)")
    try:
        data = jsonutil.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    return data


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RT = Annotated[Runtime, Depends(_runtime)]


def require_internal_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """Bearer token for internal routes, compared in constant time."""
    expected = _runtime(request).settings.internal_api_token.get_secret_value()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise _Unauthorized()


def create_app(runtime: Runtime | None = None, *, schema_public: bool = True) -> FastAPI:
    """The API. `schema_public=False` (live mode, see api/__main__.py) serves no OpenAPI document
    or viewers: a live payments backend need not describe itself to whoever asks."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or build_runtime()
        app.state.webhook_batcher = WebhookBatcher(app.state.runtime)
        # Raises reconcile_stale when no scheduled reconciliation finishes in time (the scheduler died).
        app.state.reconcile_watchdog = reconcile_schedule.Watchdog(app.state.runtime).start()
        yield
        app.state.reconcile_watchdog.close()
        app.state.webhook_batcher.close()
        if owned:
            app.state.runtime.close()

    hidden: dict[str, Any] = {} if schema_public else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(
        title="Chekar payments API",
        version="1.0",
        lifespan=lifespan,
        default_response_class=ExactJSONResponse,
        **hidden,
    )

    _install_error_handlers(app)
    include_export_routes(app)
    # Outside sandbox mode, V2 webhooks only with a real V2 webhook secret (never the sandbox's published one).
    if webhooks_v2.v2_webhooks_enabled(runtime.settings if runtime is not None else get_settings()):
        app.include_router(webhooks_v2_routes.router)

    @app.get("/healthz")
    def healthz(request: Request, runtime: RT) -> dict[str, Any]:
        from sqlalchemy import text

        with runtime.db.read() as session:
            session.execute(text("select 1"))
        watchdog = getattr(request.app.state, "reconcile_watchdog", None)
        schedule = reconcile_schedule.schedule_state(runtime, watching_since=watchdog.started if watchdog else None)
        return {"status": "ok", "mode": runtime.settings.portone_mode, "reconcile": schedule.as_dict()}

    @app.post("/api/orders", status_code=201, openapi_extra={"requestBody": _body_schema(OrderRequest)})
    async def create_order(request: Request, runtime: RT) -> ExactJSONResponse:
        body = _validated(OrderRequest, await _json_body(request))
        created = await _in_thread(
            orders.create_order,
            runtime,
            customer_email=body.customer_email,
            customer_name=body.customer_name,
            customer_phone=body.customer_phone,
            currency=body.currency or "KRW",
        )
        return ExactJSONResponse(
            {
                "merchant_uid": created.merchant_uid,
                "amount": created.amount,
                "currency": created.currency,
                "name": created.name,
                "pg": created.pg,
            },
            status_code=201,
        )

    @app.get("/api/orders/{merchant_uid}")
    async def read_order(merchant_uid: str, runtime: RT) -> ExactJSONResponse:
        """The customer app's read of its order after the payment window closes: no personal data."""
        state = await _in_thread(orders.order_state, runtime, merchant_uid)
        return ExactJSONResponse(
            {
                "merchant_uid": state.merchant_uid,
                "status": state.status,
                "amount": state.amount,
                "currency": state.currency,
                "paid_at": _aware(state.paid_at).isoformat() if state.paid_at else None,
            }
        )

    @app.post("/api/payments/complete", openapi_extra={"requestBody": _body_schema(CompleteRequest)})
    async def complete(request: Request, runtime: RT) -> ExactJSONResponse:
        body = _validated(CompleteRequest, await _json_body(request))
        try:
            result = await _in_thread(payments.complete, runtime, imp_uid=body.imp_uid, merchant_uid=body.merchant_uid)
        except ForgeryDetected as exc:
            return error(400, "forgery", str(exc))
        payload = {
            "status": str(result.status),
            "imp_uid": result.imp_uid,
            "merchant_uid": result.merchant_uid,
            "amount": result.amount,
            "cancel_amount": result.cancel_amount,
            "currency": result.currency,
            "paid_at": result.paid_at.isoformat() if result.paid_at else None,
        }
        if result.status != PortOneStatus.PAID:
            message = f"the payment is {result.status} at PortOne, not paid"
            if result.fail_reason:
                message += f": {result.fail_reason}"
            return error(
                409,
                "not_paid",
                message,
                **{k: v for k, v in payload.items() if k != "status"},
                status=str(result.status),
            )
        return ExactJSONResponse(payload)

    @app.post(
        "/api/payments/{imp_uid}/refunds",
        status_code=201,
        dependencies=[Depends(require_internal_token)],
        openapi_extra={"requestBody": _body_schema(RefundRequest)},
    )
    async def refund(
        imp_uid: str,
        request: Request,
        runtime: RT,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> ExactJSONResponse:
        if not idempotency_key:
            raise InvalidRequest("the Idempotency-Key header is required")
        body = _validated(RefundRequest, await _json_body(request))
        result = await _in_thread(
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

    @app.post("/portone/webhook")
    async def portone_webhook(request: Request, runtime: RT) -> Response:
        refused = refuse_unlisted_sender(request, runtime.settings)
        if refused is not None:
            return refused
        limit = runtime.settings.webhook_max_body_bytes
        raw, too_large = await read_capped(request, limit)
        if too_large:
            return error(413, "too_large", f"webhook bodies are limited to {limit} bytes")
        source_ip = sender_ip(request)
        delivery = webhooks.Delivery(
            body=raw, content_type=request.headers.get("content-type", ""), source_ip=source_ip
        )
        batcher: WebhookBatcher = request.app.state.webhook_batcher
        outcome = await asyncio.wrap_future(batcher.submit(delivery))
        status = {
            webhooks.WebhookResult.PROCESSED: 200,
            webhooks.WebhookResult.REJECTED: 400,
            webhooks.WebhookResult.ERROR: 503,
        }[outcome.result]
        return ExactJSONResponse(
            {"result": str(outcome.result), "detail": outcome.detail, "event_id": outcome.event_id}, status_code=status
        )

    return app


def _refund_response(result: refunds.RefundResult) -> ExactJSONResponse:
    payload = {
        "refund_id": result.refund_id,
        "imp_uid": result.imp_uid,
        "status": str(result.status),
        "amount": result.amount,
        "currency": result.currency,
        "refunded_total": result.refunded_total,
        "remaining": result.remaining,
        "cancellation_id": result.cancellation_id,
        "replayed": result.replayed,
        "refund_account": result.refund_account,  # number masked
    }
    if result.status == RefundStatus.SUCCEEDED:
        return ExactJSONResponse(payload, status_code=201)
    if result.status == RefundStatus.UNKNOWN:
        message = "PortOne did not answer; the outcome will be settled by asking PortOne, not by resending"
        payload["message"] = f"{message}. {result.error_message}" if result.error_message else message
        return ExactJSONResponse(payload, status_code=202)
    code = 409 if result.status == RefundStatus.REJECTED else 502
    return error(code, "refund_" + str(result.status), result.error_message or "refund failed", **payload)


def _aware(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite gives them back without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}


async def _in_thread(func: Any, *args: Any, **kwargs: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(func, *args, **kwargs)


class _Unauthorized(Exception):
    pass


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_: Request, __: Exception) -> Response:
        return error(401, "unauthorized", "a valid internal API token is required (Authorization: Bearer …)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return error(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(PaymentsError)
    async def _domain(_: Request, exc: Exception) -> Response:
        message = str(exc)
        if isinstance(exc, RefundExceedsRemaining):
            return error(409, "exceeds_remaining", message, remaining=exc.remaining, currency=exc.currency)
        if isinstance(exc, FullRefundOnly):
            return error(409, "full_refund_only", message, reason=exc.reason)
        if isinstance(exc, NotFound):
            return error(404, "not_found", message)
        if isinstance(exc, RefundAccountRequired):
            return error(422, "refund_account_required", message)
        if isinstance(exc, InvalidRequest):
            return error(400, "invalid_request", message)
        if isinstance(exc, Conflict):
            return error(409, "conflict", message)
        if isinstance(exc, GatewayRejected):
            return error(502, "portone_rejected", f"PortOne refused: {message}", portone_code=exc.portone_code)
        if isinstance(exc, GatewayUnavailable):
            return error(503, "portone_unavailable", f"PortOne could not be reached; nothing was changed. {message}")
        if isinstance(exc, GatewayError):
            return error(502, "portone_error", message)
        return error(400, "payments_error", message)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_: Request, exc: Exception) -> Response:
        log.error("database unavailable: %s", type(exc).__name__)
        return error(
            503, "database_unavailable", "the database cannot be reached right now; nothing was changed, retry"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return error(500, "internal_error", "an unexpected error occurred; it has been logged")
