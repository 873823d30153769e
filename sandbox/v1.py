"""PortOne V1 REST endpoints (paths, envelopes and fields per v1.openapi.json)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from sandbox.auth import tokens_from_request
from sandbox.faults import garble, sleep_unless, take_garble
from sandbox.http import BadRequest, V1Error, envelope, opt_str, read_params
from sandbox.money import (
    SUPPORTED_CURRENCIES,
    AmountError,
    has_valid_precision,
    parse_amount,
)
from sandbox.payments import STATUSES, Payment, render_payment
from sandbox.runtime import SandboxRuntime
from sandbox.state import SORTINGS, CancelRequest, Prepared

Handler = Callable[[SandboxRuntime, Request], Awaitable[Response]]
Route = Callable[[Request], Awaitable[Response]]

CANCEL_ENDPOINT = "POST /payments/cancel"
# What the garble fault's "missing_fields" takes out of an answer: what a payment's money is read from.
GARBLED_FIELDS = ("response.amount", "response.cancel_amount", "response.cancel_history", "response.status")
MSG_PAYMENT_NOT_FOUND = "존재하지 않는 결제정보입니다."
MSG_PREPARE_NOT_FOUND = "사전등록된 결제정보가 존재하지 않습니다."
DAY = 86400
MAX_LIMIT = 1000
MAX_MULTI = 100  # GET /payments: "최대 100개"


# ---- plumbing ---------------------------------------------------------------
def _authorized(rt: SandboxRuntime, request: Request) -> bool:
    now = time.time()
    return any(rt.tokens.is_valid(t, now) for t in tokens_from_request(request))


async def _log_unprocessed_cancel(rt: SandboxRuntime, request: Request, outcome: str) -> None:
    try:
        params: dict[str, Any] = await read_params(request)
    except BadRequest:
        params = {}
    rt.calls.add_cancel(
        {"at": time.time(), "params": params, "outcome": outcome, "message": None,
         "imp_uid": None, "merchant_uid": None, "amount": None, "cancellation_id": None,
         "response_delayed_seconds": None}
    )  # fmt: skip


def _wrap(rt: SandboxRuntime, endpoint: str, handler: Handler, auth: bool) -> Route:
    async def route(request: Request) -> Response:
        record = rt.calls.start(endpoint, request.method, request.url.path)
        call = f"{request.method} {request.url.path}"
        # PortOne holds the whole request before it is slow: a client giving up meanwhile does not
        # stop it (a cancel delayed past the client's timeout is still applied).
        await request.body()
        await rt.faults.delay(rt.stopping, call)
        injected = rt.faults.injected_status(call)
        if injected is not None:
            record.outcome = f"fault_{injected}"
            text = "Internal Server Error" if injected == 500 else "Service Unavailable"
            response: Response = envelope(code=-1, message=f"{text} (sandbox fault)", status=injected)
        elif auth and not _authorized(rt, request):
            record.outcome = "unauthorized"
            response = envelope(code=-1, message="Unauthorized", status=401)
        else:
            try:
                response = await handler(rt, request)
            except V1Error as exc:
                response = envelope(code=exc.code, message=exc.message, status=exc.status)
            except BadRequest as exc:
                response = envelope(code=-1, message=str(exc), status=400)
        if endpoint == CANCEL_ENDPOINT and record.outcome is not None:
            await _log_unprocessed_cancel(rt, request, record.outcome)
        garbled = take_garble(rt.holder, call, endpoint)
        if garbled is not None:
            record.outcome = f"garbled_{garbled[0]}"
            response = garble(response, *garbled, GARBLED_FIELDS)
        record.status = response.status_code
        return response

    return route


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise V1Error(400, f"{name} 파라미터는 정수여야 합니다.") from None


def _sorting(request: Request) -> str:
    sorting = request.query_params.get("sorting") or "-started"
    if sorting not in SORTINGS:
        raise V1Error(400, f"유효하지 않은 sorting 값입니다: {sorting}")
    return sorting


def _status_param(raw: str | None, allow_all: bool) -> str | None:
    """Validated payment_status path value; None means every status."""
    if raw in (None, "") or (allow_all and raw == "all"):
        return None
    if raw not in STATUSES:
        raise V1Error(400, f"유효하지 않은 payment_status 입니다: {raw}")
    return raw


def _render(rt: SandboxRuntime, request: Request) -> Callable[[Payment], dict[str, Any]]:
    base = rt.base_url(request)
    return lambda p: render_payment(p, base)


def _page(total: int, page: int, limit: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "total": total,
        "previous": page - 1 if page > 1 else 0,
        "next": page + 1 if page * limit < total else 0,
        "list": items,
    }


def _paging(request: Request) -> tuple[int, int]:
    page = _int_param(request, "page", 1)
    limit = _int_param(request, "limit", 20)
    assert page is not None and limit is not None
    if page < 1:
        raise V1Error(400, "page는 1부터 시작합니다.")
    if not 1 <= limit <= MAX_LIMIT:
        raise V1Error(400, f"limit은 1 이상 {MAX_LIMIT} 이하여야 합니다.")
    return page, limit


def _check_page_in_range(page: int, limit: int, total: int, empty_first_page: str = "ok") -> None:
    """400 for a page past the data (schema/v1.openapi.json); page 1 of nothing too when
    config `empty_first_page` is "out_of_range" (the schema allows either reading)."""
    if (page > 1 or empty_first_page == "out_of_range") and (page - 1) * limit >= total:
        raise V1Error(400, f"데이터 범위를 넘어선 page입니다. (total: {total}, page: {page})")


def _amount(params: dict[str, Any], name: str) -> Any:
    """Decimal amount or None when missing/empty; malformed -> 400."""
    value = params.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return parse_amount(value, name)
    except AmountError as exc:
        raise BadRequest(str(exc)) from None


# ---- handlers -------------------------------------------------------------
async def get_token(rt: SandboxRuntime, request: Request) -> Response:
    params = await read_params(request)
    key, secret = rt.config.credentials()
    given_key, given_secret = params.get("imp_key"), params.get("imp_secret")
    if not (
        isinstance(given_key, str)
        and isinstance(given_secret, str)
        and secrets.compare_digest(given_key.encode(), key.encode())
        and secrets.compare_digest(given_secret.encode(), secret.encode())
    ):
        raise V1Error(401, "imp_key, imp_secret 인증에 실패하였습니다.")
    now = time.time()
    token, expiry = rt.tokens.issue(now, rt.config.token_ttl_seconds)
    return envelope({"access_token": token, "expired_at": int(expiry), "now": int(now)})


async def get_payment(rt: SandboxRuntime, request: Request) -> Response:
    imp_uid = request.path_params["imp_uid"]
    with rt.store.lock:
        p = rt.store.get(imp_uid)
        if p is None:
            raise V1Error(404, MSG_PAYMENT_NOT_FOUND)
        return envelope(_render(rt, request)(p))


async def get_payments(rt: SandboxRuntime, request: Request) -> Response:
    qp = request.query_params
    imp_uids = qp.getlist("imp_uid[]") + qp.getlist("imp_uid")
    merchant_uids = qp.getlist("merchant_uid[]") + qp.getlist("merchant_uid")
    if len(imp_uids) + len(merchant_uids) > MAX_MULTI:
        raise V1Error(400, f"한 번에 최대 {MAX_MULTI}건까지 조회할 수 있습니다.")
    render = _render(rt, request)
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    missing = 0
    with rt.store.lock:
        candidates: list[Payment | None] = [rt.store.get(u) for u in imp_uids]
        for m in merchant_uids:
            matches = rt.store.find_by_merchant(m)
            candidates.append(matches[0] if matches else None)
        for p in candidates:
            if p is None:
                missing += 1
            elif p.imp_uid not in seen:
                seen.add(p.imp_uid)
                found.append(render(p))
    if not found:
        raise V1Error(404, "해당되는 결제건을 찾지 못하였습니다.")
    if missing:
        return envelope(found, message=f"요청된 결제건 중 {missing}건을 찾지 못하였습니다.", status=207)
    return envelope(found)


async def find_payment(rt: SandboxRuntime, request: Request) -> Response:
    merchant_uid = request.path_params["merchant_uid"]
    status = _status_param(request.path_params.get("payment_status"), allow_all=True)
    sorting = _sorting(request)
    with rt.store.lock:
        matches = rt.store.find_by_merchant(merchant_uid, status, sorting)
        if not matches:
            raise V1Error(404, MSG_PAYMENT_NOT_FOUND)
        return envelope(_render(rt, request)(matches[0]))


async def find_all_payments(rt: SandboxRuntime, request: Request) -> Response:
    merchant_uid = request.path_params["merchant_uid"]
    status = _status_param(request.path_params.get("payment_status"), allow_all=True)
    sorting = _sorting(request)
    page, limit = _paging(request)
    render = _render(rt, request)
    with rt.store.lock:
        if not rt.store.by_merchant(merchant_uid):
            raise V1Error(404, MSG_PAYMENT_NOT_FOUND)
        matches = rt.store.find_by_merchant(merchant_uid, status, sorting)
        _check_page_in_range(page, limit, len(matches), rt.config.empty_first_page)
        items = [render(p) for p in matches[(page - 1) * limit : page * limit]]
    return envelope(_page(len(matches), page, limit, items))


async def payments_by_status(rt: SandboxRuntime, request: Request) -> Response:
    raw_status = request.path_params["payment_status"]
    if raw_status != "all" and raw_status not in STATUSES:
        raise V1Error(400, f"유효하지 않은 payment_status 입니다: {raw_status}")
    page, limit = _paging(request)
    sorting = _sorting(request)
    now = int(time.time())
    # Schema: to defaults to now, from to 90 days before `to`; both inclusive
    # and matched against the timestamp of each payment's current status.
    to_ts = _int_param(request, "to", now)
    assert to_ts is not None
    from_ts = _int_param(request, "from", to_ts - 90 * DAY)
    assert from_ts is not None
    max_days = rt.config.max_search_days
    if from_ts > to_ts:
        raise V1Error(400, "from은 to보다 클 수 없습니다.")
    if max_days and to_ts - from_ts > max_days * DAY:
        raise V1Error(400, f"검색기간은 최대 {max_days}일까지 가능합니다.")
    render = _render(rt, request)
    with rt.store.lock:
        total, payments = rt.store.list_by_status(raw_status, from_ts, to_ts, sorting, (page - 1) * limit, limit)
        _check_page_in_range(page, limit, total, rt.config.empty_first_page)
        items = [render(p) for p in payments]
    return envelope(_page(total, page, limit, items))


async def cancel_payment(rt: SandboxRuntime, request: Request) -> Response:
    params = await read_params(request)
    entry: dict[str, Any] = {
        "at": time.time(), "params": params, "outcome": "invalid", "message": None,
        "imp_uid": None, "merchant_uid": None, "amount": None, "cancellation_id": None,
        "response_delayed_seconds": None, "refund_account": None,
    }  # fmt: skip
    try:
        req = CancelRequest(
            imp_uid=opt_str(params, "imp_uid"),
            merchant_uid=opt_str(params, "merchant_uid"),
            amount=_amount(params, "amount"),
            checksum=_amount(params, "checksum"),
            reason=opt_str(params, "reason") or "",
            refund_account=refund_account_params(params),
        )
        _amount(params, "tax_free")  # accepted and validated, not modelled
        _amount(params, "vat_amount")
        if not (req.imp_uid or req.merchant_uid):
            raise BadRequest("imp_uid 또는 merchant_uid 중 하나는 필수입니다.")
    except BadRequest as exc:
        entry["message"] = str(exc)
        rt.calls.add_cancel(entry)
        raise
    result = rt.store.cancel(req, rt.now(), _render(rt, request), refused_cards=rt.config.partial_cancel_refused_cards)
    entry.update(
        outcome="applied" if result.applied else "refused",
        message=result.message,
        imp_uid=result.imp_uid,
        merchant_uid=result.merchant_uid,
        amount=result.amount,
        cancellation_id=result.cancellation_id,
        refund_account=result.refund_account,
    )
    hang = rt.faults.take_cancel_hang()
    entry["response_delayed_seconds"] = hang
    rt.calls.add_cancel(entry)
    if result.applied and rt.config.webhook_on_api_cancel:
        assert result.imp_uid and result.merchant_uid
        rt.webhooks.emit(
            event="api_cancel",
            imp_uid=result.imp_uid,
            merchant_uid=result.merchant_uid,
            status="cancelled",
            cancellation_id=result.cancellation_id,
            notice_url=result.notice_url,
        )
    if hang:
        # The classic unknown outcome: applied, but the answer comes too late.
        await sleep_unless(rt.stopping, hang)
    if not result.applied:
        # PortOne answers refusals with HTTP 200 and a non-zero code: 1 for a missing or an
        # already fully cancelled payment, -1 for the others (sandbox/state.py CODE_NOTHING_TO_CANCEL).
        return envelope(code=result.code, message=result.message)
    return envelope(result.payment)


def refund_account_params(params: dict[str, Any]) -> dict[str, str] | None:
    """`refund_holder`, `refund_bank`, `refund_account` as given (any of them), for a virtual-account
    refund (opi/ko/integration/cancel/v1/basic.md; schema/v1.openapi.json POST /payments/cancel)."""
    given = {
        "holder": opt_str(params, "refund_holder"),
        "bank": opt_str(params, "refund_bank"),
        "number": opt_str(params, "refund_account"),
    }
    if not any(given.values()):
        return None
    return {name: value or "" for name, value in given.items()}


def _prepare_params(params: dict[str, Any]) -> Prepared:
    merchant_uid = opt_str(params, "merchant_uid")
    if not merchant_uid:
        raise BadRequest("merchant_uid는 필수입니다.")
    if len(merchant_uid) > 40:
        raise BadRequest("merchant_uid는 최대 40자입니다.")
    amount = _amount(params, "amount")
    if amount is None:
        raise BadRequest("amount는 필수입니다.")
    if amount <= 0:
        raise BadRequest("amount는 0보다 커야 합니다.")
    currency = opt_str(params, "currency")
    if currency is not None:
        currency = currency.upper()
        if currency not in SUPPORTED_CURRENCIES:
            raise BadRequest(f"지원하지 않는 통화입니다: {currency}")
        if not has_valid_precision(amount, currency):
            raise BadRequest(f"amount의 소수점 자릿수가 통화({currency})와 맞지 않습니다.")
    return Prepared(merchant_uid=merchant_uid, amount=amount, currency=currency)


def _prepared_view(p: Prepared) -> dict[str, Any]:
    return {"merchant_uid": p.merchant_uid, "amount": p.amount, "currency": p.currency}


async def create_prepare(rt: SandboxRuntime, request: Request) -> Response:
    prepared = _prepare_params(await read_params(request))
    with rt.store.lock:
        if rt.store.get_prepared(prepared.merchant_uid) is not None:
            return envelope(code=-1, message="이미 사전등록된 merchant_uid 입니다.")
        rt.store.put_prepared(prepared)
    return envelope(_prepared_view(prepared))


async def update_prepare(rt: SandboxRuntime, request: Request) -> Response:
    params = await read_params(request)
    update = _prepare_params(params)
    with rt.store.lock:
        existing = rt.store.get_prepared(update.merchant_uid)
        if existing is None:
            raise V1Error(404, MSG_PREPARE_NOT_FOUND)
        if update.currency is None:  # an omitted currency keeps the registered one
            update.currency = existing.currency
            if update.currency and not has_valid_precision(update.amount, update.currency):
                raise BadRequest(f"amount의 소수점 자릿수가 통화({update.currency})와 맞지 않습니다.")
        rt.store.put_prepared(update)
    return envelope(_prepared_view(update))


async def get_prepare(rt: SandboxRuntime, request: Request) -> Response:
    prepared = rt.store.get_prepared(request.path_params["merchant_uid"])
    if prepared is None:
        raise V1Error(404, MSG_PREPARE_NOT_FOUND)
    return envelope(_prepared_view(prepared))


# (method, path, handler, needs auth); "METHOD path" names the endpoint in /sandbox/calls
ROUTES: tuple[tuple[str, str, Handler, bool], ...] = (
    ("POST", "/users/getToken", get_token, False),
    ("GET", "/payments", get_payments, True),
    ("GET", "/payments/find/{merchant_uid}", find_payment, True),
    ("GET", "/payments/find/{merchant_uid}/{payment_status}", find_payment, True),
    ("GET", "/payments/findAll/{merchant_uid}", find_all_payments, True),
    ("GET", "/payments/findAll/{merchant_uid}/{payment_status}", find_all_payments, True),
    ("GET", "/payments/status/{payment_status}", payments_by_status, True),
    ("POST", "/payments/cancel", cancel_payment, True),
    ("POST", "/payments/prepare", create_prepare, True),
    ("PUT", "/payments/prepare", update_prepare, True),
    ("GET", "/payments/prepare/{merchant_uid}", get_prepare, True),
    ("GET", "/payments/{imp_uid}", get_payment, True),
)


def register(app: FastAPI, rt: SandboxRuntime) -> None:
    for method, path, handler, auth in ROUTES:
        endpoint = f"{method} {path}"
        app.add_api_route(
            path,
            _wrap(rt, endpoint, handler, auth),
            methods=[method],
            name=endpoint,
            tags=["PortOne V1"],
        )
