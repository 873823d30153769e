"""Sandbox-only controls under ``/sandbox/`` (no auth): checkout, console
cancels, seeding, webhooks, fault injection, call log, reset, receipts."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sandbox import money, v2_controls
from sandbox.bulk import BulkError, build_payments
from sandbox.checkout import deposit, parse_checkout, perform_checkout
from sandbox.http import BadRequest, JSONResponse, opt_str, read_params
from sandbox.money import AmountError, parse_amount
from sandbox.payments import Payment, render_payment
from sandbox.runtime import SandboxRuntime
from sandbox.state import CancelRequest
from sandbox.v1 import refund_account_params


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


async def _params(request: Request) -> dict[str, Any]:
    try:
        return await read_params(request)
    except BadRequest as exc:
        raise _Reject(400, str(exc)) from None


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def register(app: FastAPI, rt: SandboxRuntime) -> None:  # noqa: C901 - a flat list of routes
    async def reject_handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _Reject)
        return _error(exc.status, exc.message)

    app.add_exception_handler(_Reject, reject_handler)

    def payment_or_404(imp_uid: str) -> Payment:
        p = rt.store.get(imp_uid)
        if p is None:
            raise _Reject(404, f"unknown imp_uid {imp_uid}")
        return p

    @app.get("/sandbox/health", tags=["sandbox"])
    async def health() -> Response:
        return JSONResponse({"ok": True, "payments": len(rt.store)})

    @app.post("/sandbox/checkout", tags=["sandbox"])
    async def checkout(request: Request) -> Response:
        params = await _params(request)
        if str(params.get("version") or "v1").lower() == "v2":
            return await v2_controls.checkout(app.state.sandbox_v2, request, params)
        try:
            inp = parse_checkout(params, request.headers.get("user-agent"))
            outcome = perform_checkout(
                rt.store,
                inp,
                rt.now(),
                enforce_prepare=rt.config.enforce_prepare,
                allow_duplicate=rt.config.allow_duplicate_merchant_uid,
                receipt_base=rt.base_url(request),
            )
        except BadRequest as exc:
            raise _Reject(400, str(exc)) from None
        p = outcome.payment
        if outcome.webhook_status is not None and p is not None:
            rt.webhooks.emit(
                event="checkout",
                imp_uid=p.imp_uid,
                merchant_uid=p.merchant_uid,
                status=outcome.webhook_status,
                notice_url=p.notice_url,
            )
        return JSONResponse(outcome.callback)

    @app.post("/sandbox/payments/{imp_uid}/deposit", tags=["sandbox"])
    async def vbank_deposit(imp_uid: str, request: Request) -> Response:
        try:
            p = deposit(rt.store, imp_uid, rt.now())
        except LookupError:
            raise _Reject(404, f"unknown imp_uid {imp_uid}") from None
        except ValueError as exc:
            raise _Reject(409, str(exc)) from None
        rt.webhooks.emit(event="deposit", imp_uid=p.imp_uid, merchant_uid=p.merchant_uid,
                         status="paid", notice_url=p.notice_url)  # fmt: skip
        with rt.store.lock:
            return JSONResponse(render_payment(p, rt.base_url(request)))

    @app.post("/sandbox/payments/{imp_uid}/cancel", tags=["sandbox"])
    async def console_cancel(imp_uid: str, request: Request) -> Response:
        """A cancel made in PortOne's console: applied, then a `cancelled` webhook."""
        params = await _params(request)
        try:
            amount = params.get("amount")
            checksum = params.get("checksum")
            req = CancelRequest(
                imp_uid=imp_uid,
                merchant_uid=None,
                amount=None if amount in (None, "") else parse_amount(amount),
                checksum=None if checksum in (None, "") else parse_amount(checksum, "checksum"),
                reason=opt_str(params, "reason") or "관리자 콘솔 취소",
                refund_account=refund_account_params(params),
            )
        except (AmountError, BadRequest) as exc:
            raise _Reject(400, str(exc)) from None
        base = rt.base_url(request)
        result = rt.store.cancel(
            req, rt.now(), lambda p: render_payment(p, base), refused_cards=rt.config.partial_cancel_refused_cards
        )
        rt.calls.add_cancel(
            {"imp_uid": imp_uid, "params": params, "applied": result.applied,
             "message": result.message, "cancellation_id": result.cancellation_id},
            console=True,
        )  # fmt: skip
        if not result.applied:
            status = 404 if result.imp_uid is None else 409
            return JSONResponse({"success": False, "message": result.message}, status_code=status)
        assert result.merchant_uid is not None
        # PortOne's V1 cancel webhook names the event (status "cancelled") and
        # carries cancellation_id, partial cancels included; the payment itself
        # stays `paid` until nothing is left.
        deliveries = rt.webhooks.emit(
            event="console_cancel",
            imp_uid=imp_uid,
            merchant_uid=result.merchant_uid,
            status="cancelled",
            cancellation_id=result.cancellation_id,
            notice_url=result.notice_url,
        )
        return JSONResponse(
            {
                "success": True,
                "cancellation_id": result.cancellation_id,
                "amount": result.amount,
                "payment": result.payment,
                "webhooks": [d.id for d in deliveries],
            }
        )

    @app.get("/sandbox/payments/{imp_uid}", tags=["sandbox"])
    async def raw_payment(imp_uid: str, request: Request) -> Response:
        with rt.store.lock:
            return JSONResponse(render_payment(payment_or_404(imp_uid), rt.base_url(request)))

    @app.post("/sandbox/payments/bulk", tags=["sandbox"])
    async def bulk(request: Request) -> Response:
        """Insert many payments as given, without webhooks (seeding)."""
        raw = await request.body()
        now = rt.now()

        def work() -> list[str]:
            data = money.loads(raw)
            if not isinstance(data, dict):
                raise BulkError("body must be an object with a `payments` list")
            items = build_payments(data.get("payments"), now)
            return [p.imp_uid for p in rt.store.add_many(items)]

        try:
            imp_uids = await anyio.to_thread.run_sync(work)
        except ValueError as exc:  # BulkError, bad JSON, duplicate imp_uid
            raise _Reject(400, str(exc)) from None
        return JSONResponse({"inserted": len(imp_uids), "imp_uids": imp_uids})

    # ---- webhooks ------------------------------------------------------------
    @app.get("/sandbox/webhooks", tags=["sandbox"])
    async def list_webhooks(request: Request) -> Response:
        deliveries = rt.webhooks.views()
        imp_uid = request.query_params.get("imp_uid")
        if imp_uid:
            deliveries = [d for d in deliveries if d["imp_uid"] == imp_uid]
        held = sum(1 for d in deliveries if d["state"] == "held")
        return JSONResponse({"deliveries": deliveries, "held": held})

    @app.post("/sandbox/webhooks/flush", tags=["sandbox"])
    async def flush_webhooks(request: Request) -> Response:
        params = await _params(request)
        order = params.get("order", "fifo")
        if order not in ("fifo", "reverse", "shuffle"):
            raise _Reject(400, "order must be fifo, reverse or shuffle")
        batch = rt.webhooks.flush(order)
        return JSONResponse({"flushed": len(batch), "deliveries": [d.id for d in batch]})

    @app.post("/sandbox/webhooks/send", tags=["sandbox"])
    async def send_webhook(request: Request) -> Response:
        """Send an arbitrary (possibly stale) webhook for an existing payment."""
        params = await _params(request)
        imp_uid = opt_str(params, "imp_uid")
        if not imp_uid:
            raise _Reject(400, "imp_uid is required")
        with rt.store.lock:
            p = payment_or_404(imp_uid)
            status = opt_str(params, "status") or p.status
            cancellation_id = opt_str(params, "cancellation_id")
            if cancellation_id is None and status == "cancelled" and p.cancel_history:
                cancellation_id = p.cancel_history[-1].cancellation_id
            merchant_uid, notice_url = p.merchant_uid, p.notice_url
        deliveries = rt.webhooks.emit(event="manual", imp_uid=imp_uid, merchant_uid=merchant_uid,
                                      status=status, cancellation_id=cancellation_id,
                                      notice_url=notice_url)  # fmt: skip
        return JSONResponse({"deliveries": [d.view() for d in deliveries]})

    # ---- config, calls, reset -----------------------------------------------
    @app.get("/sandbox/config", tags=["sandbox"])
    async def get_config() -> Response:
        return JSONResponse(rt.config.public_view())

    @app.post("/sandbox/config", tags=["sandbox"])
    async def update_config(request: Request) -> Response:
        patch = await _params(request)
        for key, value in list(patch.items()):
            if isinstance(value, Decimal):  # fractions arrive as Decimal
                patch[key] = float(value)
        try:
            cfg = rt.holder.update(patch)
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
            return JSONResponse({"error": "invalid config", "details": errors}, status_code=400)
        if "token_ttl_seconds" in patch:
            rt.tokens.cap_expiry(float(rt.now()), cfg.token_ttl_seconds)
        if "seed" in patch:
            rt.faults.reseed(cfg.seed)
            rt.webhooks.reseed(cfg.seed)
        return JSONResponse(cfg.public_view())

    @app.get("/sandbox/calls", tags=["sandbox"])
    async def calls() -> Response:
        return JSONResponse(rt.calls.snapshot())

    @app.post("/sandbox/reset", tags=["sandbox"])
    async def reset() -> Response:
        await rt.reset()
        v2_rt = getattr(app.state, "sandbox_v2", None)
        if v2_rt is not None:
            await v2_rt.reset()
        return JSONResponse({"ok": True})

    # ---- receipts ------------------------------------------------------------
    @app.get("/sandbox/receipts/{imp_uid}", tags=["sandbox"], response_class=HTMLResponse)
    async def receipt(imp_uid: str) -> Response:
        with rt.store.lock:
            p = rt.store.get(imp_uid)
            if p is None or p.status not in ("paid", "cancelled"):
                return HTMLResponse("<h1>영수증을 찾을 수 없습니다</h1>", status_code=404)
            rows = {
                "거래번호": p.imp_uid,
                "주문번호": p.merchant_uid,
                "상품명": p.name or "",
                "결제금액": f"{money.decimal_to_json(p.amount)} {p.currency}",
                "취소금액": f"{money.decimal_to_json(p.cancel_amount)} {p.currency}",
                "결제수단": f"{p.pay_method} ({p.card_name or p.pg_provider})",
                "카드번호": p.card_number or "",
                "상태": p.status,
            }
        return HTMLResponse(_receipt_html("매출전표 (Sandbox)", rows))

    @app.get("/sandbox/receipts/{imp_uid}/cancel/{cancellation_id}", tags=["sandbox"],
             response_class=HTMLResponse)  # fmt: skip
    async def cancel_receipt(imp_uid: str, cancellation_id: str) -> Response:
        with rt.store.lock:
            p = rt.store.get(imp_uid)
            entry = next(
                (e for e in (p.cancel_history or ()) if e.cancellation_id == cancellation_id),
                None,
            ) if p else None  # fmt: skip
            if p is None or entry is None:
                return HTMLResponse("<h1>취소 영수증을 찾을 수 없습니다</h1>", status_code=404)
            rows = {
                "거래번호": p.imp_uid,
                "주문번호": p.merchant_uid,
                "취소번호": entry.cancellation_id,
                "취소금액": f"{money.decimal_to_json(entry.amount)} {p.currency}",
                "취소사유": entry.reason,
            }
        return HTMLResponse(_receipt_html("취소전표 (Sandbox)", rows))


def _receipt_html(title: str, rows: dict[str, str]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows.items())
    return (
        f"<!doctype html><html lang='ko'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title></head><body><h1>{html.escape(title)}</h1><table>{body}</table></body></html>"
    )
