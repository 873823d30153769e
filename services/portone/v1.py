"""PortOne V1 REST client (api.iamport.kr, or the sandbox at the same paths), on httpx.

- The access token is cached until shortly before it expires and refreshed once on a 401.
- Every call has a timeout. Reads are retried on transient failures; writes never are:
  a cancel whose answer is lost raises `OutcomeUnknown`, to be settled by reading the payment.
  So does an answer to a write that we cannot read (not JSON, not PortOne's envelope, fields
  missing), whatever its HTTP status: PortOne may have applied it, and only a read tells.
- JSON numbers are parsed straight to `Decimal`; amounts are sent as exact decimal strings.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from services.core.errors import (
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnauthorized,
    GatewayUnavailable,
    InvalidRequest,
    OutcomeUnknown,
    UnreadableAnswer,
)
from services.core.money import InvalidAmount, as_given, parse_decimal
from services.core.sequences import chunked
from services.portone.banks import RefundAccount, v1_bank_code
from services.portone.types import (
    Cancellation,
    GatewayPayment,
    PaymentPage,
    PortOneStatus,
    Prepared,
    parse_rows,
    storable_text,
)

TOKEN_REFRESH_MARGIN_SECONDS = 60
BATCH_SIZE = 100  # imp_uid[] per GET /payments
READ_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 0.2
MAX_PAGE_LIMIT = 1000
LIST_STATUSES = frozenset({"all", "ready", "paid", "cancelled", "failed"})
# What PortOne's V1 payment object always carries (v1.openapi.json PaymentAnnotation's required
# fields, and the cancel history a cancel's answer is read for).
PAYMENT_FIELDS = ("imp_uid", "merchant_uid", "amount", "cancel_amount", "currency", "status", "cancel_history")
PREPARED_FIELDS = ("merchant_uid", "amount")

T = TypeVar("T")


def _timestamp(value: object) -> datetime | None:
    """PortOne sends unix seconds, 0 when the event has not happened."""
    if not value:
        return None
    return datetime.fromtimestamp(int(str(value)), tz=UTC)


def _unix(moment: datetime) -> int:
    return int(moment.timestamp())


def _segment(identifier: str) -> str:
    """An id as one opaque URL path segment: `?`, `#` or control characters chosen by a browser or
    a webhook sender can never steer the request to another payment or endpoint. An id with a `/`
    (servers decode %2F back into one) or that is `.` or `..` cannot be a path segment at all, so
    PortOne cannot have a payment by it."""
    if "/" in identifier or identifier in ("", ".", ".."):
        raise GatewayNotFound(f"PortOne has no payment {identifier!r}", http_status=404)
    return quote(identifier, safe="", errors="surrogatepass")


def _text(value: object) -> str | None:
    return None if value is None or value == "" else storable_text(str(value))


def _amount(value: object, currency: str, what: str) -> Decimal:
    """An amount exactly as PortOne gave it, in any currency (a currency we do not offer is still
    a payment PortOne shows: it is recorded and alerted, never refused here). A missing amount is
    unreadable, never 0."""
    if value is None or value == "":
        raise UnreadableAnswer(f"PortOne sent {what} without a value")
    try:
        return as_given(parse_decimal(value), currency)
    except InvalidAmount as exc:
        raise UnreadableAnswer(f"PortOne sent {what} {value!r}, which is not an exact number: {exc}") from None


def _required(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if value is None or value == "" or not isinstance(value, str | int):
        raise UnreadableAnswer(f"PortOne sent a payment without a readable {name}")
    return str(value)


def parse_payment(data: Mapping[str, Any]) -> GatewayPayment:
    """Turn one PortOne V1 payment object into our frozen view; UnreadableAnswer when it lacks
    what a payment is read from (never a guessed default)."""
    if not isinstance(data, Mapping):
        raise UnreadableAnswer(f"PortOne sent {type(data).__name__} where a payment object belongs")
    currency = _required(data, "currency").upper()
    cancellations = tuple(
        Cancellation(
            cancellation_id=str(entry.get("cancellation_id") or ""),
            amount=_amount(entry.get("amount"), currency, "a cancellation amount"),
            cancelled_at=_timestamp(entry.get("cancelled_at")),
            reason=_text(entry.get("reason")),
            pg_tid=_text(entry.get("pg_tid")),
            receipt_url=_text(entry.get("receipt_url")),
        )
        for entry in data.get("cancel_history") or ()
    )
    return GatewayPayment(
        imp_uid=_required(data, "imp_uid"),
        merchant_uid=storable_text(str(data.get("merchant_uid") or "")),
        status=PortOneStatus.parse(_required(data, "status")),
        amount=_amount(data.get("amount"), currency, "amount"),
        cancel_amount=_amount(data.get("cancel_amount"), currency, "cancel_amount"),
        currency=currency,
        name=_text(data.get("name")),
        pg_provider=_text(data.get("pg_provider")),
        pay_method=_text(data.get("pay_method")),
        card_name=_text(data.get("card_name")),
        card_number=_text(data.get("card_number")),
        buyer_name=_text(data.get("buyer_name")),
        buyer_email=_text(data.get("buyer_email")),
        buyer_tel=_text(data.get("buyer_tel")),
        receipt_url=_text(data.get("receipt_url")),
        fail_reason=_text(data.get("fail_reason")),
        started_at=_timestamp(data.get("started_at")),
        paid_at=_timestamp(data.get("paid_at")),
        failed_at=_timestamp(data.get("failed_at")),
        cancelled_at=_timestamp(data.get("cancelled_at")),
        escrow=data.get("escrow") is True,
        cancellations=cancellations,
        raw=dict(data),
    )


def _prepared(data: Mapping[str, Any]) -> Prepared:
    currency = _text(data.get("currency"))
    return Prepared(
        merchant_uid=str(data["merchant_uid"]),
        amount=Decimal(str(data["amount"])),
        currency=currency.upper() if currency else None,
    )


def _complete(data: object, fields: Sequence[str]) -> Mapping[str, Any]:
    """`data` as an object holding every one of `fields` (a ValueError otherwise)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"expected an object, got {type(data).__name__}")
    missing = [name for name in fields if data.get(name) is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return data


def _cancelled(imp_uid: str) -> Callable[[Any], GatewayPayment]:
    """Reads a cancel's answer: the payment it was sent for, with every field its money is read from."""

    def read(data: Any) -> GatewayPayment:
        payment = parse_payment(_complete(data, PAYMENT_FIELDS))
        if payment.imp_uid != imp_uid:
            raise ValueError(f"the answer is about payment {payment.imp_uid!r}, not {imp_uid!r}")
        if not isinstance(payment.raw.get("cancel_history"), list):
            raise ValueError("cancel_history is not a list")
        return payment

    return read


def _registered(merchant_uid: str, amount: Decimal) -> Callable[[Any], Prepared]:
    def read(data: Any) -> Prepared:
        prepared = _prepared(_complete(data, PREPARED_FIELDS))
        if prepared.merchant_uid != merchant_uid or prepared.amount != amount:
            raise ValueError(f"the answer registers {prepared.amount} for {prepared.merchant_uid!r}")
        return prepared

    return read


class PortOneV1Client:
    """The V1 adapter of `PortOneGateway`. Thread-safe; share one per process."""

    def __init__(
        self,
        *,
        base_url: str,
        imp_key: str,
        imp_secret: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._imp_key = imp_key
        self._imp_secret = imp_secret
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._token: str | None = None
        self._token_expires_at = 0.0
        self._token_lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def verify_credentials(self) -> None:
        """Ask for a new access token (POST /users/getToken) once, no retry: GatewayUnauthorized when
        PortOne refuses the key and secret, GatewayUnavailable when it cannot be reached, and
        UnreadableAnswer when something answers, but not as PortOne documents getToken (code 0 and
        response.access_token a string): a wrong address must not pass for PortOne."""
        try:
            response = self._http.post(
                "/users/getToken", data={"imp_key": self._imp_key, "imp_secret": self._imp_secret}
            )
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"PortOne unreachable while getting a token: {exc!r}") from exc
        status = response.status_code
        if status == 401:
            raise GatewayUnauthorized("PortOne refused the REST API key and secret", http_status=401)
        if status >= 500:
            raise GatewayUnavailable(f"PortOne answered HTTP {status}", http_status=status)
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), int) and body["code"] != 0 and "message" in body:
            self._envelope(response)  # PortOne's own refusal, in its envelope: raised as such
        token = body.get("response") if isinstance(body, dict) and body.get("code") == 0 else None
        if status != 200 or not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            raise UnreadableAnswer(f"answered, but not as PortOne does (HTTP {status})", http_status=status)

    def _access_token(self, *, force: bool = False) -> str:
        with self._token_lock:
            if not force and self._token and time.time() < self._token_expires_at - TOKEN_REFRESH_MARGIN_SECONDS:
                return self._token
            try:
                response = self._http.post(
                    "/users/getToken", data={"imp_key": self._imp_key, "imp_secret": self._imp_secret}
                )
            except httpx.TransportError as exc:
                raise GatewayUnavailable(f"PortOne unreachable while getting a token: {exc!r}") from exc
            if response.status_code == 401:
                raise GatewayUnauthorized("PortOne refused the REST API key and secret", http_status=401)
            body = self._envelope(response)
            token = body["access_token"]
            # Trust PortOne's own clock for the lifetime, not ours.
            lifetime = int(body["expired_at"]) - int(body["now"])
            self._token = str(token)
            self._token_expires_at = time.time() + lifetime
            return self._token

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise GatewayUnavailable(
                f"PortOne answered HTTP {response.status_code} with a body that is not JSON",
                http_status=response.status_code,
            ) from exc
        if not isinstance(body, dict):
            raise GatewayUnavailable("PortOne answered with an unexpected body", http_status=response.status_code)
        return body

    def _envelope(self, response: httpx.Response) -> Any:
        """Check HTTP status and PortOne's `code`; return `response`."""
        status = response.status_code
        if status >= 500:
            raise GatewayUnavailable(f"PortOne answered HTTP {status}", http_status=status)
        body = self._decode(response)
        code = body.get("code")
        message = str(body.get("message") or "")
        if status == 401:
            raise GatewayUnauthorized(message or "unauthorized", http_status=401, portone_code=code)
        if status == 404:
            raise GatewayNotFound(message or "not found", http_status=404, portone_code=code)
        if status >= 400 or code != 0:
            raise GatewayRejected(message or f"refused (code {code})", http_status=status, portone_code=code)
        return body.get("response")

    def _send(self, method: str, path: str, *, write: bool = False, **kwargs: Any) -> httpx.Response:
        """Send with the cached token; on a 401, once more with a new one. A write is sent again
        only when the 401 is PortOne's own refusal (its envelope): a 401 we cannot read may come
        from something between us and PortOne after PortOne applied the write."""
        response = self._http.request(method, path, headers=self._auth(), **kwargs)
        if response.status_code == 401 and (not write or self._is_envelope(response)):
            response = self._http.request(method, path, headers=self._auth(force=True), **kwargs)
        return response

    @staticmethod
    def _is_envelope(response: httpx.Response) -> bool:
        try:
            body = json.loads(response.content, parse_float=Decimal)
        except ValueError:
            return False
        return isinstance(body, dict) and type(body.get("code")) is int and body["code"] != 0

    def _auth(self, *, force: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token(force=force)}"}

    def _read(self, path: str, *, params: Any = None, accept_207: bool = False) -> Any:
        """GET with retries on transient failures (safe: reading changes nothing)."""
        last: GatewayError | None = None
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BACKOFF_SECONDS * attempt)
            try:
                response = self._send("GET", path, params=params)
                if accept_207 and response.status_code == 207:
                    return self._decode(response).get("response")
                return self._envelope(response)
            except httpx.TransportError as exc:
                last = GatewayUnavailable(f"PortOne unreachable: {exc!r}")
            except GatewayUnavailable as exc:
                last = exc
        raise last or GatewayUnavailable("PortOne unreachable")

    def _write(self, path: str, data: Mapping[str, str], read: Callable[[Any], T]) -> T:
        """POST once. A request that may have reached PortOne is never sent again.

        PortOne's refusal (a readable envelope with a non-zero `code`, or 4xx) raises its error;
        `read` turns the envelope's `response` into the result. An answer we cannot read, whatever
        its status, raises OutcomeUnknown: PortOne may have applied the request."""
        try:
            response = self._send("POST", path, write=True, data=data)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnavailable(f"PortOne unreachable: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown(f"no answer from PortOne ({exc!r}); the request may have been applied") from exc
        status = response.status_code
        if status >= 500:
            raise OutcomeUnknown(
                f"PortOne answered HTTP {status}; the request may have been applied", http_status=status
            )
        try:
            body = self._decode(response)
        except GatewayUnavailable as exc:
            raise self._unreadable(status, str(exc)) from exc
        if type(body.get("code")) is not int:
            raise self._unreadable(status, "no PortOne envelope (no integer code)")
        if status >= 400 and body["code"] == 0:
            # A refusal's status around PortOne's success code: something between us answered.
            raise self._unreadable(status, "an error status around a success envelope (code 0)")
        envelope = self._envelope(response)  # a readable refusal raises here
        try:
            return read(envelope)
        except (ValueError, KeyError, TypeError, ArithmeticError, GatewayError) as exc:
            raise self._unreadable(status, f"its response cannot be read: {exc}") from exc

    @staticmethod
    def _unreadable(status: int, what: str) -> OutcomeUnknown:
        return OutcomeUnknown(
            f"PortOne answered HTTP {status} with a body we cannot read ({what}); the request may have been "
            "applied: settle it by reading, never by sending it again",
            http_status=status,
        )

    # -- PortOneGateway ---------------------------------------------------------------------

    def get_payment(self, imp_uid: str) -> GatewayPayment:
        return parse_payment(self._read(f"/payments/{_segment(imp_uid)}"))

    def get_payments(self, imp_uids: Sequence[str]) -> list[GatewayPayment]:
        """Batched look-up; imp_uids unknown to PortOne are simply absent from the result."""
        found: list[GatewayPayment] = []
        for chunk in chunked(list(dict.fromkeys(imp_uids)), BATCH_SIZE):
            try:
                rows = self._read("/payments", params=[("imp_uid[]", uid) for uid in chunk], accept_207=True)
            except GatewayNotFound:
                continue
            found.extend(parse_payment(row) for row in rows or ())
        return found

    def find_by_merchant_uid(self, merchant_uid: str) -> GatewayPayment:
        return parse_payment(self._read(f"/payments/find/{_segment(merchant_uid)}"))

    def list_payments(
        self,
        *,
        status: str = "all",
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        limit: int = MAX_PAGE_LIMIT,
        sorting: str = "-started",
    ) -> PaymentPage:
        if status not in LIST_STATUSES:
            raise InvalidRequest(f"unknown payment status {status!r}")
        if since is not None and until is not None and since > until:
            raise InvalidRequest("since is after until")
        params: dict[str, Any] = {"page": page, "limit": min(limit, MAX_PAGE_LIMIT), "sorting": sorting}
        if since is not None:
            params["from"] = _unix(since)
        if until is not None:
            params["to"] = _unix(until)
        try:
            body = self._read(f"/payments/status/{status}", params=params)
        except GatewayRejected as exc:
            # The schema's 400 covers "a page past the data", which page 1 of an empty window may be
            # (schema/v1.openapi.json, GET /payments/status): with the status and window checked
            # above, page 1 refused so is empty. A later page refused still raises: callers place
            # what follows it by the total, which only page 1 tells.
            if page == 1 and exc.http_status == 400:
                return PaymentPage(payments=(), total=0, next_page=None)
            raise
        payments, unreadable = parse_rows(body.get("list") or (), parse_payment, "imp_uid")
        return PaymentPage(
            payments=payments,
            total=int(body.get("total") or 0),
            next_page=int(body["next"]) if body.get("next") else None,
            unreadable=unreadable,
        )

    def cancel_payment(
        self,
        *,
        imp_uid: str,
        amount: Decimal | None,
        checksum: Decimal,
        reason: str,
        refund_account: RefundAccount | None = None,
        pg_provider: str | None = None,
    ) -> GatewayPayment:
        data = {"imp_uid": imp_uid, "checksum": str(checksum), "reason": reason}
        if amount is not None:
            data["amount"] = str(amount)
        if refund_account is not None:
            # [가상계좌 환불시 필수입력] (opi/ko/integration/cancel/v1/basic.md); the bank as the PG
            # writes it (opi/ko/support/code-info/pg-1.md).
            data["refund_holder"] = refund_account.holder
            data["refund_bank"] = v1_bank_code(refund_account.bank, pg_provider)
            data["refund_account"] = refund_account.number
        return self._write("/payments/cancel", data, _cancelled(imp_uid))

    def prepare(self, *, merchant_uid: str, amount: Decimal, currency: str) -> Prepared:
        data = {"merchant_uid": merchant_uid, "amount": str(amount), "currency": currency}
        return self._write("/payments/prepare", data, _registered(merchant_uid, amount))

    def get_prepared(self, merchant_uid: str) -> Prepared:
        return _prepared(self._read(f"/payments/prepare/{_segment(merchant_uid)}"))
