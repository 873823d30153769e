"""Sandbox-only controls of the V2 side, under ``/sandbox/v2/`` (no auth).

| endpoint | what it does |
|---|---|
| ``POST /sandbox/checkout`` with ``"version": "v2"`` | V2 ``requestPayment`` (see ``sandbox/v2_checkout.py``) |
| ``GET /sandbox/v2/payments/{paymentId}`` | the V2 payment object, without auth |
| ``POST /sandbox/v2/payments/{paymentId}/cancel`` | console cancel ``{amount?: major units, reason?}`` (+ webhook) |
| ``POST /sandbox/v2/payments/{paymentId}/pending-cancellations/complete`` | the PG finishes the REQUESTED cancels |
| ``POST /sandbox/v2/payments/{paymentId}/pending-cancellations/fail`` | the PG refuses them: FAILED |
| ``POST /sandbox/v2/payments/{paymentId}/deposit`` | virtual account deposit: VIRTUAL_ACCOUNT_ISSUED -> PAID (+ webhook) |
| ``GET /sandbox/v2/webhooks[?payment_id=]`` | deliveries, each attempt with the signed headers it carried |
| ``POST /sandbox/v2/webhooks/send {payment_id, type?}`` | send a (possibly stale) webhook for a payment |
| ``GET``/``POST /sandbox/v2/config`` | read / partial update (``sandbox/v2_config.py``) |
| ``GET /sandbox/v2/calls`` | V2 call counts and every cancel request with its outcome |
| ``GET /sandbox/v2/receipts/{paymentId}`` | the receipt page ``receiptUrl`` points to |

``POST /sandbox/reset`` also resets the V2 side.
"""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sandbox import money
from sandbox.http import BadRequest, JSONResponse, opt_str, read_params
from sandbox.money import AmountError, currency_decimals, parse_amount
from sandbox.v2 import (
    V2Error,
    V2Runtime,
    apply_cancel,
    complete_pending_cancellations,
    fail_pending_cancellations,
    refund_account_body,
)
from sandbox.v2_checkout import deposit_v2, perform_checkout_v2

# The webhook type for a payment's current status (POST /sandbox/v2/webhooks/send).
STATUS_WEBHOOK = {
    "READY": "Transaction.Ready",
    "VIRTUAL_ACCOUNT_ISSUED": "Transaction.VirtualAccountIssued",
    "PAY_PENDING": "Transaction.PayPending",
    "PAID": "Transaction.Paid",
    "PARTIAL_CANCELLED": "Transaction.PartialCancelled",
    "CANCELLED": "Transaction.Cancelled",
    "FAILED": "Transaction.Failed",
}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def checkout(rt: V2Runtime, request: Request, params: dict[str, Any]) -> Response:
    """``POST /sandbox/checkout`` for ``"version": "v2"`` (dispatched from ``sandbox/controls.py``)."""
    try:
        client = request.client.host if request.client else None
        answer, p = perform_checkout_v2(rt, params, request.headers.get("user-agent"), client)
    except BadRequest as exc:
        return _error(400, str(exc))
    if p is not None:
        # Transaction.Ready: "결제창이 열렸을 때" (opi/ko/integration/webhook/readme-v2.md), sent for
        # every payment the window opens, then the webhook of where the customer left it.
        rt.emit(p, event="checkout", type_="Transaction.Ready")
        if p.status != "READY":
            rt.emit(p, event="checkout", type_=STATUS_WEBHOOK[p.status])
    return JSONResponse(answer)


def register(app: FastAPI, rt: V2Runtime) -> None:  # noqa: C901 - a flat list of routes
    @app.get("/sandbox/v2/payments/{payment_id}", tags=["sandbox v2"])
    async def raw_payment(payment_id: str, request: Request) -> Response:
        with rt.store.lock:
            p = rt.store.get(payment_id)
            if p is None:
                return _error(404, f"unknown paymentId {payment_id}")
            return JSONResponse(rt.render(p, request))

    @app.post("/sandbox/v2/payments/{payment_id}/cancel", tags=["sandbox v2"])
    async def console_cancel(payment_id: str, request: Request) -> Response:
        """A cancel made in PortOne's console: applied, then a webhook."""
        try:
            params = await read_params(request)
            p = rt.store.get(payment_id)
            amount = None
            if params.get("amount") not in (None, "") and p is not None:
                major = parse_amount(params["amount"])
                minor = major.scaleb(currency_decimals(p.currency))
                if minor != minor.to_integral_value():
                    raise BadRequest(f"{p.currency} amounts take at most {currency_decimals(p.currency)} decimals")
                amount = int(minor)
            reason = opt_str(params, "reason") or "관리자 콘솔 취소"
            p, cancellation = apply_cancel(
                rt,
                payment_id,
                amount=amount,
                checksum=None,
                reason=reason,
                trigger="CONSOLE",
                refund_account=refund_account_body(params),
            )
        except (AmountError, BadRequest) as exc:
            return _error(400, str(exc))
        except V2Error as exc:
            return JSONResponse({"error": exc.message, "type": exc.type}, status_code=exc.status)
        kind = "Transaction.Cancelled" if p.status == "CANCELLED" else "Transaction.PartialCancelled"
        deliveries = rt.emit(p, event="console_cancel", type_=kind, cancellation_id=cancellation.id)
        with rt.store.lock:
            payment = rt.render(p, request)
        return JSONResponse(
            {
                "cancellation_id": cancellation.id,
                "amount": cancellation.total_amount,
                "payment": payment,
                "webhooks": [d.webhook_id for d in deliveries],
            }
        )

    @app.post("/sandbox/v2/payments/{payment_id}/pending-cancellations/complete", tags=["sandbox v2"])
    async def complete_pending(payment_id: str, request: Request) -> Response:
        """The PG finishes the cancels accepted as REQUESTED (config cancel_requested_next)."""
        try:
            p, done = complete_pending_cancellations(rt, payment_id)
        except V2Error as exc:
            return JSONResponse({"error": exc.message, "type": exc.type}, status_code=exc.status)
        for cancellation in done:
            kind = "Transaction.Cancelled" if p.status == "CANCELLED" else "Transaction.PartialCancelled"
            rt.emit(p, event="api_cancel", type_=kind, cancellation_id=cancellation.id)
        with rt.store.lock:
            return JSONResponse({"completed": [c.id for c in done], "payment": rt.render(p, request)})

    @app.post("/sandbox/v2/payments/{payment_id}/pending-cancellations/fail", tags=["sandbox v2"])
    async def fail_pending(payment_id: str, request: Request) -> Response:
        """The PG refuses the cancels accepted as REQUESTED: they become FAILED (no webhook: PortOne
        has no webhook type for a failed cancel)."""
        try:
            p, failed = fail_pending_cancellations(rt, payment_id)
        except V2Error as exc:
            return JSONResponse({"error": exc.message, "type": exc.type}, status_code=exc.status)
        with rt.store.lock:
            return JSONResponse({"failed": [c.id for c in failed], "payment": rt.render(p, request)})

    @app.post("/sandbox/v2/payments/{payment_id}/deposit", tags=["sandbox v2"])
    async def deposit(payment_id: str, request: Request) -> Response:
        try:
            p = deposit_v2(rt, payment_id)
        except LookupError:
            return _error(404, f"unknown paymentId {payment_id}")
        except ValueError as exc:
            return _error(409, str(exc))
        rt.emit(p, event="deposit", type_="Transaction.Paid")
        with rt.store.lock:
            return JSONResponse(rt.render(p, request))

    @app.get("/sandbox/v2/webhooks", tags=["sandbox v2"])
    async def list_webhooks(request: Request) -> Response:
        return JSONResponse({"deliveries": rt.webhooks.views(request.query_params.get("payment_id"))})

    @app.post("/sandbox/v2/webhooks/send", tags=["sandbox v2"])
    async def send_webhook(request: Request) -> Response:
        try:
            params = await read_params(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        payment_id = opt_str(params, "payment_id")
        with rt.store.lock:
            p = rt.store.get(payment_id or "")
            if p is None:
                return _error(404, f"unknown paymentId {payment_id}")
            type_ = opt_str(params, "type") or STATUS_WEBHOOK[p.status]
            cancellation_id = p.cancellations[-1].id if p.cancellations and "Cancel" in type_ else None
        deliveries = rt.emit(p, event="manual", type_=type_, cancellation_id=cancellation_id)
        return JSONResponse({"deliveries": [d.view() for d in deliveries]})

    @app.get("/sandbox/v2/config", tags=["sandbox v2"])
    async def get_config() -> Response:
        return JSONResponse(rt.config.public_view())

    @app.post("/sandbox/v2/config", tags=["sandbox v2"])
    async def update_config(request: Request) -> Response:
        try:
            patch = await read_params(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        patch = {k: float(v) if isinstance(v, Decimal) else v for k, v in patch.items()}
        try:
            cfg = rt.holder.update(patch)
        except ValidationError as exc:
            details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            return JSONResponse({"error": "invalid config", "details": details}, status_code=400)
        return JSONResponse(cfg.public_view())

    @app.get("/sandbox/v2/calls", tags=["sandbox v2"])
    async def calls() -> Response:
        return JSONResponse(rt.calls.snapshot())

    @app.get("/sandbox/v2/receipts/{payment_id}", tags=["sandbox v2"], response_class=HTMLResponse)
    async def receipt(payment_id: str) -> Response:
        with rt.store.lock:
            p = rt.store.get(payment_id)
            if p is None or p.paid_at is None:
                return HTMLResponse("<h1>영수증을 찾을 수 없습니다</h1>", status_code=404)
            unit = Decimal(1).scaleb(-currency_decimals(p.currency))
            rows = {
                "결제 ID": p.id,
                "거래 ID": p.transaction_id,
                "주문명": p.order_name,
                "결제금액": f"{money.decimal_to_json(p.total * unit)} {p.currency}",
                "취소금액": f"{money.decimal_to_json(p.cancelled * unit)} {p.currency}",
                "상태": p.status,
            }
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
        return HTMLResponse(
            "<!doctype html><html lang='ko'><head><meta charset='utf-8'><title>매출전표 (Sandbox V2)</title>"
            f"</head><body><h1>매출전표 (Sandbox V2)</h1><table>{body}</table></body></html>"
        )
