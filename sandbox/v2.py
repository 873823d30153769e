"""PortOne V2 REST endpoints (paths, bodies and errors per v2.openapi.json) served beside V1.

| endpoint | notes |
|---|---|
| ``GET /payments/{paymentId}`` | ``storeId`` query optional; 404 ``PAYMENT_NOT_FOUND`` |
| ``GET /payments`` | ``requestBody`` query (JSON) or a JSON body: ``page {number, size}``, ``filter`` |
| ``POST /payments/{paymentId}/cancel`` | ``amount`` missing = the remainder; ``currentCancellableAmount`` checked |
| ``POST /payments/{paymentId}/pre-register`` | ``totalAmount``/``currency`` enforced at checkout |

Auth: ``Authorization: PortOne <api secret>``; otherwise 401 ``{"type": "UNAUTHORIZED"}``.
Errors are ``{"type": "<ERROR_TYPE>", "message": "..."}`` with the schema's HTTP status.

``GET /payments`` and ``GET /payments/{id}`` share their paths with V1. Those two V2 routes only
match a request whose ``Authorization`` uses the ``PortOne`` scheme (the V2 SDK always sends it);
every other request on those paths goes on to the V1 routes.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Match, Route
from starlette.types import Scope

from sandbox import money, partial_cancel
from sandbox.faults import garble, sleep_unless, take_garble
from sandbox.http import JSONResponse
from sandbox.money import SUPPORTED_CURRENCIES
from sandbox.v2_config import V2Config, V2ConfigHolder
from sandbox.v2_state import (
    FILTER_ALIASES,
    STATUSES,
    ListQuery,
    PreRegistration,
    V2Cancellation,
    V2Payment,
    V2Store,
    now_ms,
    parse_rfc3339,
    render_cancellation,
    render_payment,
    rfc3339,
)
from sandbox.v2_webhooks import V2WebhookDispatcher

MAX_PAGE_SIZE = 1000
DAY_MS = 86_400_000
FILTER_STATUSES = frozenset({*STATUSES, "PENDING"})
# What the garble fault's "missing_fields" takes out of an answer: a cancel's outcome and amounts.
GARBLED_FIELDS = ("cancellation.status", "cancellation.totalAmount", "amount", "status")


class V2Error(Exception):
    def __init__(self, status: int, type_: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.extra = extra  # further fields of the error type (PgProviderError: pgCode, pgMessage)


def error_response(status: int, type_: str, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"type": type_, "message": message, **extra}, status_code=status)


def pg_provider_error(pg_message: str, pg_code: str = "SANDBOX_PG") -> V2Error:
    """PgProviderError: the PG answered with an error, HTTP 502 (v2.openapi.json, the cancel
    endpoint's 502 response; the schema's x-portone-status-code 502; required pgCode, pgMessage)."""
    return V2Error(
        502, "PG_PROVIDER", f"PG사에서 오류를 전달했습니다: {pg_message}", pgCode=pg_code, pgMessage=pg_message
    )


@dataclass
class V2CallLog:
    counts: Counter[str] = field(default_factory=Counter)
    recent: list[dict[str, Any]] = field(default_factory=list)
    cancels: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, endpoint: str, path: str) -> dict[str, Any]:
        record: dict[str, Any] = {"at": time.time(), "endpoint": endpoint, "path": path, "status": None}
        with self.lock:
            self.counts[endpoint] += 1
            self.recent.append(record)
            del self.recent[:-2000]
        return record

    def add_cancel(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.cancels.append(entry)

    def clear(self) -> None:
        with self.lock:
            self.counts.clear()
            self.recent.clear()
            self.cancels.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": sum(self.counts.values()),
                "counts": dict(self.counts),
                "cancels": [dict(c) for c in self.cancels],
                "recent": [dict(r) for r in self.recent],
            }


@dataclass
class V2Runtime:
    holder: V2ConfigHolder
    stopping: threading.Event
    store: V2Store = field(default_factory=V2Store)
    calls: V2CallLog = field(default_factory=V2CallLog)
    webhooks: V2WebhookDispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.webhooks = V2WebhookDispatcher(self.holder)

    @classmethod
    def create(cls, config: V2Config | None, stopping: threading.Event) -> V2Runtime:
        return cls(holder=V2ConfigHolder(config or V2Config()), stopping=stopping)

    @property
    def config(self) -> V2Config:
        return self.holder.current

    @property
    def store_id(self) -> str:
        return self.config.resolved_store_id()

    async def reset(self) -> None:
        self.holder.reset()
        self.store.clear()
        self.calls.clear()
        await self.webhooks.reset()

    def render(self, p: V2Payment, request: Request) -> dict[str, Any]:
        return render_payment(p, str(request.base_url).rstrip("/"), self.store_id)

    def emit(self, p: V2Payment, *, event: str, type_: str, cancellation_id: str | None = None) -> list[Any]:
        """A webhook for this payment's current state (call on the server loop)."""
        return self.webhooks.emit(
            event=event,
            type_=type_,
            payment_id=p.id,
            transaction_id=p.transaction_id,
            store_id=self.store_id,
            notice_urls=p.notice_urls,
            cancellation_id=cancellation_id,
            occurred_at=rfc3339(p.status_changed_at),
        )


def runtime_v2(app: FastAPI) -> V2Runtime:
    rt = app.state.sandbox_v2
    assert isinstance(rt, V2Runtime)
    return rt


# ---- plumbing -------------------------------------------------------------------------------


def _portone_secret(headers: Any) -> str | None:
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    return value.strip() if scheme.lower() == "portone" else None


def _authorized(rt: V2Runtime, request: Request) -> bool:
    given = _portone_secret(request.headers)
    expected = rt.config.resolved_api_secret()
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = money.loads(raw)
    except ValueError as exc:
        raise V2Error(400, "INVALID_REQUEST", f"요청 본문이 올바른 JSON이 아닙니다: {exc}") from None
    if not isinstance(data, dict):
        raise V2Error(400, "INVALID_REQUEST", "요청 본문은 JSON 객체여야 합니다.")
    return data


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if type(value) is not int:
        raise V2Error(400, "INVALID_REQUEST", f"{name}은(는) 정수여야 합니다.")
    if minimum is not None and value < minimum:
        raise V2Error(400, "INVALID_REQUEST", f"{name}은(는) {minimum} 이상이어야 합니다.")
    return value


def _opt_str(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise V2Error(400, "INVALID_REQUEST", f"{name}은(는) 문자열이어야 합니다.")
    return value


def _check_store(rt: V2Runtime, store_id: str | None) -> None:
    if store_id is not None and store_id != rt.store_id:
        raise V2Error(403, "FORBIDDEN", f"상점 {store_id}에 대한 권한이 없습니다.")


Handler = Callable[[V2Runtime, Request], Awaitable[Response]]


def _wrap(rt: V2Runtime, endpoint: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        record = rt.calls.start(endpoint, request.url.path)
        response: Response
        if rt.holder.decrement("fail_next"):
            record["outcome"] = "fault"
            if rt.config.fault_body == "html":
                response = HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=502)
            else:
                response = error_response(500, "INTERNAL_SERVER_ERROR", "일시적인 오류입니다. (sandbox fault)")
        elif not _authorized(rt, request):
            record["outcome"] = "unauthorized"
            response = error_response(401, "UNAUTHORIZED", "인증 정보가 올바르지 않습니다.")
        else:
            try:
                response = await handler(rt, request)
            except V2Error as exc:
                response = error_response(exc.status, exc.type, exc.message, **exc.extra)
        garbled = take_garble(rt.holder, f"{request.method} {request.url.path}", endpoint)
        if garbled is not None:
            record["outcome"] = f"garbled_{garbled[0]}"
            response = garble(response, *garbled, GARBLED_FIELDS)
        record["status"] = response.status_code
        return response

    return route


class V2Route(Route):
    """A V2 route; on paths V1 also serves, it only matches ``Authorization: PortOne ...``."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, methods: list[str], name: str, shared_with_v1: bool
    ) -> None:
        super().__init__(path, endpoint, methods=methods, name=name)
        self.shared_with_v1 = shared_with_v1

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.shared_with_v1 and scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
            if _portone_secret(headers) is None:
                return Match.NONE, {}
        return super().matches(scope)


# ---- handlers -------------------------------------------------------------------------------


async def get_payment(rt: V2Runtime, request: Request) -> Response:
    _check_store(rt, request.query_params.get("storeId"))
    payment_id = request.path_params["paymentId"]
    with rt.store.lock:
        p = rt.store.get(payment_id)
        if p is None:
            raise V2Error(404, "PAYMENT_NOT_FOUND", f"결제 건이 존재하지 않습니다: {payment_id}")
        return JSONResponse(rt.render(p, request))


def _list_query(body: dict[str, Any]) -> ListQuery:
    page = body.get("page") or {}
    filt = body.get("filter") or {}
    if not isinstance(page, dict) or not isinstance(filt, dict):
        raise V2Error(400, "INVALID_REQUEST", "page와 filter는 객체여야 합니다.")
    q = ListQuery()
    if page.get("number") is not None:
        q.number = _int(page["number"], "page.number", minimum=0)
    if page.get("size") is not None:
        q.size = _int(page["size"], "page.size", minimum=1)
        if q.size > MAX_PAGE_SIZE:
            raise V2Error(400, "INVALID_REQUEST", f"page.size는 최대 {MAX_PAGE_SIZE}입니다.")
    q.timestamp_type = _opt_str(filt, "timestampType") or "STATUS_CHANGED_AT"
    if q.timestamp_type not in ("CREATED_AT", "STATUS_CHANGED_AT"):
        raise V2Error(400, "INVALID_REQUEST", f"유효하지 않은 timestampType: {q.timestamp_type}")
    try:
        until = filt.get("until")
        q.until_ms = now_ms() if until is None else parse_rfc3339(until)
        since = filt.get("from")
        q.from_ms = q.until_ms - 90 * DAY_MS if since is None else parse_rfc3339(since)
    except ValueError as exc:
        raise V2Error(400, "INVALID_REQUEST", f"from/until: {exc}") from None
    if q.from_ms > q.until_ms:
        raise V2Error(400, "INVALID_REQUEST", "from은 until보다 늦을 수 없습니다.")
    statuses = filt.get("status")
    if statuses is not None:
        if not isinstance(statuses, list) or any(s not in FILTER_STATUSES for s in statuses):
            raise V2Error(400, "INVALID_REQUEST", f"유효하지 않은 status 필터: {statuses}")
        q.statuses = frozenset(FILTER_ALIASES.get(s, s) for s in statuses) if statuses else None
    q.currency = _opt_str(filt, "currency")
    q.version = _opt_str(filt, "version")
    if q.version not in (None, "V1", "V2"):
        raise V2Error(400, "INVALID_REQUEST", f"유효하지 않은 version: {q.version}")
    q.sort_by = _opt_str(filt, "sortBy") or "REQUESTED_AT"
    order = _opt_str(filt, "sortOrder") or "DESC"
    if q.sort_by not in ("REQUESTED_AT", "STATUS_CHANGED_AT") or order not in ("ASC", "DESC"):
        raise V2Error(400, "INVALID_REQUEST", f"유효하지 않은 정렬: {q.sort_by} {order}")
    q.descending = order == "DESC"
    return q


async def get_payments(rt: V2Runtime, request: Request) -> Response:
    raw = request.query_params.get("requestBody")
    if raw is not None:
        try:
            body = money.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise V2Error(400, "INVALID_REQUEST", f"requestBody가 올바른 JSON이 아닙니다: {exc}") from None
        if not isinstance(body, dict):
            raise V2Error(400, "INVALID_REQUEST", "requestBody는 JSON 객체여야 합니다.")
    else:
        body = await _json_body(request)
    q = _list_query(body)
    filt = body.get("filter") or {}
    _check_store(rt, _opt_str(filt, "storeId"))
    with rt.store.lock:
        total, page = rt.store.query(q)
        items = [rt.render(p, request) for p in page]
    count = len(items) if rt.config.total_count == "returned" else total  # see V2Config.total_count
    return JSONResponse({"items": items, "page": {"number": q.number, "size": q.size, "totalCount": count}})


async def cancel_payment(rt: V2Runtime, request: Request) -> Response:
    payment_id = request.path_params["paymentId"]
    entry: dict[str, Any] = {
        "at": time.time(),
        "payment_id": payment_id,
        "outcome": "invalid",
        "type": None,
        "amount": None,
        "cancellation_id": None,
        "response_delayed_seconds": None,
        "refund_account": None,
    }
    try:
        body = await _json_body(request)
        entry["body"] = body
        _check_store(rt, _opt_str(body, "storeId"))
        reason = _opt_str(body, "reason")
        if not reason:
            raise V2Error(400, "INVALID_REQUEST", "취소 사유(reason)는 필수입니다.")
        amount = None if body.get("amount") is None else _int(body["amount"], "amount", minimum=1)
        checksum = body.get("currentCancellableAmount")
        checksum = None if checksum is None else _int(checksum, "currentCancellableAmount", minimum=0)
        for name in ("taxFreeAmount", "vatAmount"):
            if body.get(name) is not None:
                _int(body[name], name, minimum=0)
        refund_account = refund_account_body(body)
        skip_webhook = body.get("skipWebhook") is True
        pg_fault = rt.holder.decrement("cancel_pg_provider_error_next")
        if pg_fault and not rt.config.cancel_pg_provider_error_applied:
            raise pg_provider_error("일시적인 PG사 오류입니다. (sandbox fault, 취소되지 않음)")
        deferred = rt.holder.decrement("cancel_requested_next")
        result = apply_cancel(
            rt,
            payment_id,
            amount=amount,
            checksum=checksum,
            reason=reason,
            trigger="API",
            deferred=deferred,
            refund_account=refund_account,
        )
    except V2Error as exc:
        refused = exc.status in (404, 409, 502)
        entry.update(outcome="refused" if refused else "invalid", type=exc.type)
        rt.calls.add_cancel(entry)
        raise
    p, cancellation = result
    entry["refund_account"] = cancellation.refund_account
    base = str(request.base_url).rstrip("/")
    if deferred:
        entry.update(outcome="requested", amount=cancellation.total_amount, cancellation_id=cancellation.id)
        rt.calls.add_cancel(entry)
        if rt.config.webhook_on_api_cancel and not skip_webhook:
            rt.emit(p, event="api_cancel", type_="Transaction.CancelPending", cancellation_id=cancellation.id)
        return JSONResponse({"cancellation": render_cancellation(cancellation, p.id, base, status="REQUESTED")})
    entry.update(outcome="applied", amount=cancellation.total_amount, cancellation_id=cancellation.id)
    if pg_fault:  # applied, then answered as the PG's error
        entry["type"] = "PG_PROVIDER"
        rt.calls.add_cancel(entry)
        if rt.config.webhook_on_api_cancel and not skip_webhook:
            kind = "Transaction.Cancelled" if p.status == "CANCELLED" else "Transaction.PartialCancelled"
            rt.emit(p, event="api_cancel", type_=kind, cancellation_id=cancellation.id)
        error = pg_provider_error("PG사 응답 처리 중 오류가 발생했습니다. (sandbox fault, 취소는 적용됨)")
        return error_response(error.status, error.type, error.message, **error.extra)
    hang = rt.config.cancel_hang_seconds if rt.holder.decrement("cancel_timeout_after_apply") else None
    entry["response_delayed_seconds"] = hang
    rt.calls.add_cancel(entry)
    if rt.config.webhook_on_api_cancel and not skip_webhook:
        kind = "Transaction.Cancelled" if p.status == "CANCELLED" else "Transaction.PartialCancelled"
        rt.emit(p, event="api_cancel", type_=kind, cancellation_id=cancellation.id)
    if hang:
        # Applied, but the answer comes too late: the client's outcome is unknown.
        await sleep_unless(rt.stopping, hang)
    return JSONResponse({"cancellation": render_cancellation(cancellation, p.id, base)})


# PortOne V2's `Bank` enum (schema/v2.openapi.json components.schemas.Bank).
V2_BANKS = frozenset(
    """BANK_OF_KOREA KDB IBK KOOKMIN SUHYUP KEXIM NONGHYUP LOCAL_NONGHYUP WOORI STANDARD_CHARTERED CITI
    DAEGU BUSAN KWANGJU JEJU JEONBUK KYONGNAM KFCC SHINHYUP SAVINGS_BANK MORGAN_STANLEY HSBC DEUTSCHE
    JPMC MIZUHO MUFG BANK_OF_AMERICA BNP_PARIBAS ICBC BANK_OF_CHINA NFCF UOB BOCOM CCB POST KODIT KIBO
    HANA SHINHAN K_BANK KAKAO TOSS MISC_FOREIGN SGI KCIS YUANTA_SECURITIES KB_SECURITIES
    SANGSANGIN_SECURITIES HANYANG_SECURITIES LEADING_SECURITIES BNK_SECURITIES IBK_SECURITIES
    DAOL_SECURITIES MIRAE_ASSET_SECURITIES SAMSUNG_SECURITIES KOREA_SECURITIES NH_SECURITIES
    KYOBO_SECURITIES HI_SECURITIES HYUNDAI_MOTOR_SECURITIES KIWOOM_SECURITIES EBEST_SECURITIES
    SK_SECURITIES DAISHIN_SECURITIES HANHWA_SECURITIES HANA_SECURITIES TOSS_SECURITIES
    SHINHAN_SECURITIES DB_SECURITIES EUGENE_SECURITIES MERITZ_SECURITIES KAKAO_PAY_SECURITIES
    BOOKOOK_SECURITIES SHINYOUNG_SECURITIES CAPE_SECURITIES KOREA_SECURITIES_FINANCE
    KOREA_FOSS_SECURITIES WOORI_INVESTMENT_BANK""".split()
)
# PGs that cannot refund a virtual account at all (help/core-service/how-to-use/impossible-partial-cancel.md).
VBANK_REFUND_UNSUPPORTED_PGS = frozenset({"DANAL"})


def refund_account_body(body: dict[str, Any]) -> dict[str, str] | None:
    """`refundAccount` of a cancel body, checked as CancelPaymentBodyRefundAccount (bank, number,
    holderName required; bank one of `Bank`); None when absent. Raises V2Error (400) otherwise."""
    given = body.get("refundAccount")
    if given is None:
        return None
    if not isinstance(given, dict):
        raise V2Error(400, "INVALID_REQUEST", "refundAccount는 객체여야 합니다.")
    account: dict[str, str] = {}
    for name in ("bank", "number", "holderName"):
        value = given.get(name)
        if not isinstance(value, str) or not value.strip():
            raise V2Error(400, "INVALID_REQUEST", f"refundAccount.{name}는 필수입니다.")
        account[name] = value
    if account["bank"] not in V2_BANKS:
        raise V2Error(400, "INVALID_REQUEST", f"refundAccount.bank의 값이 올바르지 않습니다: {account['bank']}")
    phone = given.get("holderPhoneNumber")
    if isinstance(phone, str) and phone:
        account["holderPhoneNumber"] = phone
    return account


def _vbank_refund_check(p: V2Payment, refund_account: dict[str, str] | None) -> None:
    """A paid virtual account is refunded to the customer's account, given with the cancel
    (schema/v2.openapi.json CancelPaymentBody.refundAccount: "가상계좌 환불"); some PGs cannot."""
    if p.pay_method != "virtual_account":
        return
    if p.pg_provider.upper() in VBANK_REFUND_UNSUPPORTED_PGS:
        message = f"해당 PG사({p.pg_provider})는 가상계좌 환불을 지원하지 않습니다."
        raise V2Error(502, "PG_PROVIDER", message, pgCode="VBANK_REFUND_UNSUPPORTED", pgMessage=message)
    if refund_account is None:
        raise V2Error(400, "INVALID_REQUEST", "가상계좌 결제 건의 환불에는 환불 계좌(refundAccount)가 필요합니다.")


def apply_cancel(
    rt: V2Runtime,
    payment_id: str,
    *,
    amount: int | None,
    checksum: int | None,
    reason: str,
    trigger: str,
    deferred: bool = False,
    refund_account: dict[str, str] | None = None,
) -> tuple[V2Payment, V2Cancellation]:
    """Validate and apply one (partial) cancel atomically; raises V2Error for a refusal.

    `deferred`: accept it as REQUESTED and keep it pending (see `complete_pending_cancellations`).
    """
    with rt.store.lock:
        p = rt.store.get(payment_id)
        if p is None:
            raise V2Error(404, "PAYMENT_NOT_FOUND", f"결제 건이 존재하지 않습니다: {payment_id}")
        if p.status == "CANCELLED":
            raise V2Error(409, "PAYMENT_ALREADY_CANCELLED", "이미 취소된 결제 건입니다.")
        if p.status not in ("PAID", "PARTIAL_CANCELLED"):
            raise V2Error(409, "PAYMENT_NOT_PAID", f"결제 완료 상태가 아닌 결제 건입니다. (status: {p.status})")
        _vbank_refund_check(p, refund_account)
        remainder = p.cancellable
        if checksum is not None and checksum != remainder:
            raise V2Error(
                409,
                "CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN",
                f"취소 가능 잔액 검증에 실패했습니다. (요청: {checksum}, 취소 가능 잔액: {remainder})",
            )
        value = remainder if amount is None else amount
        if value > remainder:
            raise V2Error(
                409,
                "CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT",
                f"취소 금액({value})이 취소 가능 금액({remainder})을 초과합니다.",
            )
        if value < p.total:
            # The PG refuses it (impossible-partial-cancel.md); V2 has no error type of its own
            # for that, so it comes as the PG's error: PgProviderError, nothing applied.
            refused = partial_cancel.refusal(
                escrow=p.escrow,
                pay_method=p.pay_method,
                pg_provider=p.pg_provider,
                card_number=p.card_number,
                refused_cards=rt.config.partial_cancel_refused_cards,
            )
            if refused is not None:
                raise pg_provider_error(refused, "PARTIAL_CANCEL_NOT_ALLOWED")
        now = now_ms()
        cancellation = V2Cancellation(
            id=rt.store.new_uuid(),
            pg_cancellation_id=rt.store.new_digits(14),
            total_amount=value,
            vat_amount=value // 11 if p.currency == "KRW" else 0,
            reason=reason,
            requested_at=now,
            cancelled_at=now,
            trigger=trigger,
            refund_account=refund_account if p.pay_method == "virtual_account" else None,
        )

        if deferred:
            rt.store.update(p, lambda pay: pay.pending_cancellations.append(cancellation))
        else:
            rt.store.update(p, lambda pay: _cancel(pay, cancellation, now))
        return p, cancellation


def _cancel(pay: V2Payment, cancellation: V2Cancellation, now: int) -> None:
    pay.cancelled += cancellation.total_amount
    pay.cancellations.append(cancellation)
    pay.cancelled_at = now
    pay.updated_at = pay.status_changed_at = now
    pay.status = "CANCELLED" if pay.cancelled >= pay.total else "PARTIAL_CANCELLED"


def complete_pending_cancellations(rt: V2Runtime, payment_id: str) -> tuple[V2Payment, list[V2Cancellation]]:
    """The PG finished the REQUESTED cancels: each one that still fits the remainder is applied,
    any other one FAILED."""
    with rt.store.lock:
        p = rt.store.get(payment_id)
        if p is None:
            raise V2Error(404, "PAYMENT_NOT_FOUND", f"결제 건이 존재하지 않습니다: {payment_id}")
        done: list[V2Cancellation] = []

        def mutate(pay: V2Payment) -> None:
            for cancellation in pay.pending_cancellations:
                if cancellation.total_amount <= pay.cancellable:
                    now = now_ms()
                    cancellation.cancelled_at = now
                    _cancel(pay, cancellation, now)
                    done.append(cancellation)
                else:
                    pay.failed_cancellations.append(cancellation)
            pay.pending_cancellations = []

        rt.store.update(p, mutate)
        return p, done


def fail_pending_cancellations(rt: V2Runtime, payment_id: str) -> tuple[V2Payment, list[V2Cancellation]]:
    """The PG refused the REQUESTED cancels: they become FAILED and nothing is cancelled."""
    with rt.store.lock:
        p = rt.store.get(payment_id)
        if p is None:
            raise V2Error(404, "PAYMENT_NOT_FOUND", f"결제 건이 존재하지 않습니다: {payment_id}")
        failed = list(p.pending_cancellations)

        def mutate(pay: V2Payment) -> None:
            pay.failed_cancellations.extend(failed)
            pay.pending_cancellations = []

        rt.store.update(p, mutate)
        return p, failed


async def pre_register(rt: V2Runtime, request: Request) -> Response:
    payment_id = request.path_params["paymentId"]
    body = await _json_body(request)
    _check_store(rt, _opt_str(body, "storeId"))
    total = None if body.get("totalAmount") is None else _int(body["totalAmount"], "totalAmount", minimum=0)
    tax_free = None if body.get("taxFreeAmount") is None else _int(body["taxFreeAmount"], "taxFreeAmount", minimum=0)
    currency = _opt_str(body, "currency")
    if currency is not None and currency not in SUPPORTED_CURRENCIES:
        raise V2Error(400, "INVALID_REQUEST", f"지원하지 않는 통화입니다: {currency}")
    with rt.store.lock:
        existing = rt.store.get(payment_id)
        if existing is not None and existing.status in ("PAID", "PARTIAL_CANCELLED", "CANCELLED"):
            raise V2Error(409, "ALREADY_PAID", "이미 결제가 완료된 결제 건입니다.")
        rt.store.put_prepared(PreRegistration(payment_id, total, tax_free, currency))
    return JSONResponse({})


# (method, path, handler, shared with a V1 path)
ROUTES: tuple[tuple[str, str, Handler, bool], ...] = (
    ("GET", "/payments", get_payments, True),
    ("GET", "/payments/{paymentId}", get_payment, True),
    ("POST", "/payments/{paymentId}/cancel", cancel_payment, False),
    ("POST", "/payments/{paymentId}/pre-register", pre_register, False),
)


def register(app: FastAPI, rt: V2Runtime) -> None:
    """Add the V2 routes in front of every route registered so far (V1's included)."""
    routes = [
        V2Route(
            path,
            _wrap(rt, f"{method} {path}", handler),
            methods=[method],
            name=f"V2 {method} {path}",
            shared_with_v1=shared,
        )
        for method, path, handler, shared in ROUTES
    ]
    app.router.routes[0:0] = routes
