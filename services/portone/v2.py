"""PortOne V2 adapter of `PortOneGateway`, through the official SDK (portone-server-sdk 0.21.0).

The SDK makes every call: it builds the URL from the base URL (so the sandbox works exactly like
api.portone.io), sends `Authorization: PortOne <secret>` and the store id, serialises the request
and classifies PortOne's errors by their `type`. Nothing of the SDK or of httpx leaks out of here.

Identifiers. In V2 the merchant names the payment: our order's `merchant_uid` IS the `paymentId`.
`GatewayPayment.imp_uid` and `.merchant_uid` therefore both carry the paymentId, and every method
that takes an `imp_uid` takes a paymentId. (V2's `transactionId` names one attempt; it is kept in
`raw` only.)

Amounts. V2 sends and takes integer minor units (KRW 50000 is 50000, USD 6.00 is 600); they are
turned into exact Decimals in major units with `services.core.money` and back, nowhere else.

Statuses. READY, VIRTUAL_ACCOUNT_ISSUED and PAY_PENDING -> ready; PAID and PARTIAL_CANCELLED ->
paid (a partly refunded V1 payment is also still "paid", with `cancel_amount` > 0); CANCELLED ->
cancelled; FAILED -> failed; anything else -> UNKNOWN. Only SUCCEEDED cancellations count.

Reading answers. portone-server-sdk 0.21.0 types a payment only if it knows its status and finds
every field it requires; otherwise the call raises ValueError, and one such payment fails a whole
page. So the SDK's HTTP client is replaced by ours (the SDK offers no timeout or transport
setting: it hard-codes a 60 s timeout) whose response hook keeps the raw answer of the call, and
payments are mapped from that JSON: an unknown status becomes UNKNOWN instead of an error.

Errors. Reads (and the idempotent pre-registration) are retried on transient failures. A cancel
is sent exactly once: a cancel that may have reached PortOne without an answer raises
`OutcomeUnknown`, to be settled by reading the payment, never by sending it again. So does an
answer to a write we cannot read (not JSON, the wrong shape, fields missing), whatever its HTTP
status: only PortOne's own error body (`type`) is a refusal, and any 2xx is read as the answer.
A pre-registration answered unreadably is sent again; unreadable every time, `OutcomeUnknown`.
`currentCancellableAmount` (the remainder before this cancel) is V1's `checksum`, in minor units.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from portone_server_sdk.common import PageInput
from portone_server_sdk.errors import (
    ForbiddenError,
    PaymentNotFoundError,
    PortOneError,
    UnauthorizedError,
    UnknownError,
)
from portone_server_sdk.payment import CancelPaymentBodyRefundAccount, PaymentClient, PaymentFilterInput

from services.core import jsonutil
from services.core.errors import (
    CancellationPending,
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnauthorized,
    GatewayUnavailable,
    InvalidRequest,
    OutcomeUnknown,
    PgProviderFailure,
    UnreadableAnswer,
)
from services.core.money import InvalidAmount, as_given_minor_units, normalize, to_minor_units
from services.portone.banks import RefundAccount
from services.portone.types import (
    Cancellation,
    CancellationState,
    GatewayPayment,
    PaymentPage,
    PortOneStatus,
    Prepared,
    parse_rows,
    storable_text,
)

READ_ATTEMPTS = 3
RETRY_BACKOFF_SECONDS = 0.2
MAX_PAGE_LIMIT = 1000
CURRENCY_CACHE_SIZE = 10_000

STATUS_MAP: dict[str, PortOneStatus] = {
    "READY": PortOneStatus.READY,
    "VIRTUAL_ACCOUNT_ISSUED": PortOneStatus.READY,
    "PAY_PENDING": PortOneStatus.READY,
    "PAID": PortOneStatus.PAID,
    "PARTIAL_CANCELLED": PortOneStatus.PAID,
    "CANCELLED": PortOneStatus.CANCELLED,
    "FAILED": PortOneStatus.FAILED,
}
# V1-style list statuses -> V2 filter statuses (the filter enum spells the pending state "PENDING").
LIST_STATUSES: dict[str, list[str]] = {
    "ready": ["READY", "VIRTUAL_ACCOUNT_ISSUED", "PENDING"],
    "paid": ["PAID", "PARTIAL_CANCELLED"],
    "cancelled": ["CANCELLED"],
    "failed": ["FAILED"],
}
# V1 sortings -> (sortBy, sortOrder). V2 sorts by request time or by the time of the latest status
# change only, so "paid" and "updated" both sort by the status change.
SORTINGS: dict[str, tuple[str, str]] = {
    "-started": ("REQUESTED_AT", "DESC"),
    "started": ("REQUESTED_AT", "ASC"),
    "-paid": ("STATUS_CHANGED_AT", "DESC"),
    "paid": ("STATUS_CHANGED_AT", "ASC"),
    "-updated": ("STATUS_CHANGED_AT", "DESC"),
    "updated": ("STATUS_CHANGED_AT", "ASC"),
}
PAY_METHODS = {
    "PaymentMethodCard": "card",
    "PaymentMethodTransfer": "trans",
    "PaymentMethodVirtualAccount": "vbank",
    "PaymentMethodMobile": "phone",
    "PaymentMethodEasyPay": "easypay",
    "PaymentMethodGiftCertificate": "giftcertificate",
    "PaymentMethodConvenienceStore": "cvs",
}
_CONNECT_FAILURES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

T = TypeVar("T")


# -- mapping V2 JSON onto our types -----------------------------------------------------------


def _text(value: object) -> str | None:
    return storable_text(value) if isinstance(value, str) and value else None


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _moment(value: object) -> datetime | None:
    """An RFC 3339 date-time as an aware UTC datetime (None when absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidRequest("naive datetime refused: pass timezone-aware times")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _from_minor_units(units: object, currency: str, what: str) -> Decimal:
    """V2 integer minor units -> exact Decimal major units (any currency: see `as_given_minor_units`)."""
    if type(units) is not int:  # a missing amount is unreadable, never 0
        raise UnreadableAnswer(f"PortOne sent {what} {units!r}, not an integer amount in minor units")
    return as_given_minor_units(units, currency)


def _minor(amount: Decimal, currency: str, what: str) -> int:
    try:
        return to_minor_units(amount, currency)
    except InvalidAmount as exc:
        raise InvalidRequest(f"{what}: {exc}") from None


def parse_payment(data: Mapping[str, Any]) -> GatewayPayment:
    """Turn one PortOne V2 payment object (as sent, any status) into our frozen view; UnreadableAnswer
    when it lacks what a payment is read from (never a guessed default)."""
    if not isinstance(data, Mapping):
        raise UnreadableAnswer(f"PortOne sent {type(data).__name__} where a payment object belongs")
    payment_id = _text(data.get("id"))
    currency = _text(data.get("currency"))
    if payment_id is None or currency is None or not isinstance(data.get("status"), str):
        raise UnreadableAnswer("PortOne sent a payment without a readable id, currency or status")
    currency = currency.upper()
    amount = _obj(data.get("amount"))
    method = _obj(data.get("method"))
    card = _obj(method.get("card"))
    customer = _obj(data.get("customer"))
    failure = _obj(data.get("failure"))
    cancellations = tuple(
        Cancellation(
            cancellation_id=str(entry.get("id") or ""),
            amount=_from_minor_units(entry.get("totalAmount"), currency, "a cancellation amount"),
            cancelled_at=_moment(entry.get("cancelledAt")) or _moment(entry.get("requestedAt")),
            reason=_text(entry.get("reason")),
            pg_tid=_text(entry.get("pgCancellationId")),
            receipt_url=_text(entry.get("receiptUrl")),
        )
        for entry in map(_obj, data.get("cancellations") or ())
        if entry.get("status") == "SUCCEEDED"
    )
    states = {
        str(entry["id"]): CancellationState(str(entry["status"]).lower())
        for entry in map(_obj, data.get("cancellations") or ())
        if isinstance(entry.get("id"), str) and entry.get("status") in ("REQUESTED", "SUCCEEDED", "FAILED")
    }
    provider = _text(_obj(data.get("channel")).get("pgProvider"))
    return GatewayPayment(
        imp_uid=payment_id,
        merchant_uid=payment_id,
        status=STATUS_MAP.get(str(data.get("status")), PortOneStatus.UNKNOWN),
        amount=_from_minor_units(amount.get("total"), currency, "amount.total"),
        cancel_amount=_from_minor_units(amount.get("cancelled"), currency, "amount.cancelled"),
        currency=currency,
        name=_text(data.get("orderName")),
        pg_provider=provider.lower() if provider else None,
        pay_method=PAY_METHODS.get(str(method.get("type")), _text(method.get("type"))),
        card_name=_text(card.get("name")),
        card_number=_text(card.get("number")),
        buyer_name=_text(customer.get("name")),
        buyer_email=_text(customer.get("email")),
        buyer_tel=_text(customer.get("phoneNumber")),
        receipt_url=_text(data.get("receiptUrl")),
        fail_reason=_text(failure.get("reason")) or _text(failure.get("pgMessage")),
        started_at=_moment(data.get("requestedAt")),
        paid_at=_moment(data.get("paidAt")),
        failed_at=_moment(data.get("failedAt")),
        cancelled_at=_moment(data.get("cancelledAt")),
        escrow=isinstance(data.get("escrow"), Mapping),  # PaymentEscrow: "에스크로 결제인 경우 존재합니다"
        cancellations=cancellations,
        cancellation_states=states,
        raw=dict(data),
    )


# -- the adapter --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    """The raw HTTP answer to the SDK call just made on this thread."""

    status: int
    content: bytes

    def json(self) -> Any:
        try:
            return jsonutil.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return None

    def error_type(self) -> str | None:
        body = self.json()
        return _text(body.get("type")) if isinstance(body, dict) else None


class PortOneV2Client:
    """The V2 adapter of `PortOneGateway`. Thread-safe; share one per process.

    `store_id` is sent with every call when given (needed when the API secret is a merchant's
    rather than a store's). `transport` is for tests only.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_secret: str,
        store_id: str | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._store_id = store_id or None
        self._local = threading.local()
        self._currencies: OrderedDict[str, str] = OrderedDict()
        self._currencies_lock = threading.Lock()
        self._sdk = PaymentClient(secret=api_secret, base_url=base_url.rstrip("/"), store_id=self._store_id)
        own = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            event_hooks={"response": [self._keep_answer]},
        )
        original = getattr(self._sdk, "_sync_client", None)
        if not isinstance(original, httpx.Client):
            own.close()
            raise RuntimeError("portone-server-sdk no longer keeps an httpx.Client in _sync_client; review v2.py")
        original.close()
        self._sdk._sync_client = own
        self._http = own

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _keep_answer(self, response: httpx.Response) -> None:
        response.read()
        self._local.answer = _Answer(response.status_code, response.content)

    def _answer(self) -> _Answer | None:
        answer = getattr(self._local, "answer", None)
        return answer if isinstance(answer, _Answer) else None

    def _invoke(self, call: Callable[[], T], *, write: bool) -> tuple[T | None, _Answer]:
        """Run one SDK call; returns its typed result (None when the SDK could not type a 200
        answer) and the raw answer. PortOne's refusals become our errors."""
        self._local.answer = None
        try:
            result: T | None = call()
        except PortOneError as exc:
            answer = self._answer()
            if not (write and answer is not None and 200 <= answer.status < 300):
                raise self._api_error(exc, answer, write=write) from None
            result = None  # a write's 2xx answer the SDK only takes as 200: read by the caller
        except (ValueError, KeyError, TypeError) as exc:
            answer = self._answer()
            if answer is None:
                raise
            if answer.status != 200 and not (write and 200 <= answer.status < 300):
                raise self._status_error(answer, write=write) from exc
            result = None  # a 2xx the SDK cannot type (e.g. a status it does not know)
        answer = self._answer()
        if answer is None:
            if write:  # the call went through, so the request may have reached PortOne
                raise OutcomeUnknown("PortOne's answer was not seen; the request may have been applied")
            raise GatewayUnavailable("PortOne's answer was not seen")
        return result, answer

    @staticmethod
    def _status_error(answer: _Answer, *, write: bool) -> GatewayError:
        kind = answer.error_type()
        message = f"PortOne answered HTTP {answer.status}" + (f" ({kind})" if kind else "")
        if write and kind is None:
            # Not PortOne's error body: nothing says the write was refused (a proxy's page, a cut
            # or garbled answer), whatever the status.
            return OutcomeUnknown(
                message + " with a body we cannot read; the request may have been applied", http_status=answer.status
            )
        if answer.status >= 500:
            if write:
                return OutcomeUnknown(message + "; the request may have been applied", http_status=answer.status)
            return GatewayUnavailable(message, http_status=answer.status)
        if answer.status == 404:
            return GatewayNotFound(message, http_status=404)
        if answer.status in (401, 403):
            return GatewayUnauthorized(message, http_status=answer.status)
        return GatewayRejected(message, http_status=answer.status)

    def _api_error(self, exc: PortOneError, answer: _Answer | None, *, write: bool) -> GatewayError:
        status = answer.status if answer else None
        kind = (answer.error_type() if answer else None) or type(exc).__name__
        message = f"{kind}: {exc.message or 'no message'}"
        if isinstance(exc, PaymentNotFoundError):
            return GatewayNotFound(message, http_status=status)
        if isinstance(exc, (UnauthorizedError, ForbiddenError)):
            return GatewayUnauthorized(message, http_status=status)
        if write and kind == "PG_PROVIDER":
            # PgProviderError, HTTP 502 (v2.openapi.json, the cancel endpoint's 502): the PG reported
            # an error, which does not say the cancel was not applied. Settled by reading back.
            body = answer.json() if answer else None
            pg = _text(body.get("pgMessage")) if isinstance(body, dict) else None
            return PgProviderFailure(
                f"PortOne answered PG_PROVIDER (the PG reported an error: {pg or exc.message or 'no message'}); "
                "the request may have been applied: settled by reading the payment back, never by resending",
                pg_message=pg or exc.message or None,
                http_status=status,
            )
        if isinstance(exc, UnknownError) and answer is not None:
            return self._status_error(answer, write=write)
        return GatewayRejected(message, http_status=status)

    def _read(self, call: Callable[[], T]) -> tuple[T | None, _Answer]:
        """Calls that change nothing (or, like a pre-registration, may safely be repeated) are
        retried on transient failures."""
        last: GatewayError | None = None
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BACKOFF_SECONDS * attempt)
            try:
                return self._invoke(call, write=False)
            except httpx.TransportError as exc:
                last = GatewayUnavailable(f"PortOne unreachable: {exc!r}")
            except GatewayUnavailable as exc:
                last = exc
        raise last or GatewayUnavailable("PortOne unreachable")

    def _write(self, call: Callable[[], T]) -> tuple[T | None, _Answer]:
        """Sent once. A request that may have reached PortOne is never sent again."""
        try:
            return self._invoke(call, write=True)
        except _CONNECT_FAILURES as exc:
            raise GatewayUnavailable(f"PortOne unreachable: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise OutcomeUnknown(f"no answer from PortOne ({exc!r}); the request may have been applied") from exc

    def _repeatable_write(self, call: Callable[[], T], readable: Callable[[Any], bool]) -> tuple[T | None, _Answer]:
        """A write that may safely be sent again (a pre-registration): resent, like a read, when
        its answer is unavailable or cannot be read (`readable` judges the JSON body); when no
        attempt got a readable answer and one may have reached PortOne, OutcomeUnknown."""
        last: GatewayError | None = None
        for attempt in range(READ_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BACKOFF_SECONDS * attempt)
            try:
                result, answer = self._write(call)
            except (GatewayUnavailable, OutcomeUnknown) as exc:
                if not isinstance(last, OutcomeUnknown):
                    last = exc
                continue
            if readable(answer.json()):
                return result, answer
            last = OutcomeUnknown(
                f"PortOne answered HTTP {answer.status} with a body we cannot read; the request may have been applied",
                http_status=answer.status,
            )
        raise last or GatewayUnavailable("PortOne unreachable")

    def _payment(self, answer: _Answer) -> GatewayPayment:
        body = answer.json()
        if not isinstance(body, dict):
            raise GatewayError("PortOne answered with a payment that is not a JSON object")
        payment = parse_payment(body)
        self._remember_currency(payment)
        return payment

    def _remember_currency(self, payment: GatewayPayment) -> None:
        # A paid payment's currency never changes; cancels need it to express amounts.
        if payment.status not in (PortOneStatus.PAID, PortOneStatus.CANCELLED):
            return
        with self._currencies_lock:
            self._currencies[payment.imp_uid] = payment.currency
            self._currencies.move_to_end(payment.imp_uid)
            while len(self._currencies) > CURRENCY_CACHE_SIZE:
                self._currencies.popitem(last=False)

    def _currency_of(self, payment_id: str) -> str:
        with self._currencies_lock:
            known = self._currencies.get(payment_id)
        return known or self.get_payment(payment_id).currency

    # -- PortOneGateway -----------------------------------------------------------------------

    def get_payment(self, imp_uid: str) -> GatewayPayment:
        """`imp_uid` is the V2 paymentId."""
        _, answer = self._read(lambda: self._sdk.get_payment(payment_id=imp_uid))
        return self._payment(answer)

    def get_payments(self, imp_uids: Sequence[str]) -> list[GatewayPayment]:
        """V2 has no look-up of many ids at once: one read each; unknown ids are left out."""
        found: list[GatewayPayment] = []
        for payment_id in dict.fromkeys(imp_uids):
            try:
                found.append(self.get_payment(payment_id))
            except GatewayNotFound:
                continue
        return found

    def find_by_merchant_uid(self, merchant_uid: str) -> GatewayPayment:
        return self.get_payment(merchant_uid)

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
        """V2 payments (only V2's: V1 payments are the V1 adapter's) whose latest status changed in
        [since, until] (PortOne's default window: the 90 days before `until`), `page` from 1."""
        if status != "all" and status not in LIST_STATUSES:
            raise InvalidRequest(f"unknown payment status {status!r}")
        if sorting not in SORTINGS:
            raise InvalidRequest(f"unknown sorting {sorting!r}")
        if page < 1 or limit < 1:
            raise InvalidRequest("page and limit start at 1")
        size = min(limit, MAX_PAGE_LIMIT)
        sort_by, sort_order = SORTINGS[sorting]
        filters = PaymentFilterInput(
            store_id=self._store_id,
            timestamp_type="STATUS_CHANGED_AT",
            from_=_rfc3339(since) if since is not None else None,
            until=_rfc3339(until) if until is not None else None,
            status=list(LIST_STATUSES[status]) if status != "all" else None,
            sort_by=sort_by,
            sort_order=sort_order,
            version="V2",
        )
        _, answer = self._read(
            lambda: self._sdk.get_payments(page=PageInput(number=page - 1, size=size), filter=filters)
        )
        body = answer.json()
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise GatewayError("PortOne answered a payment list without items")
        payments, unreadable = parse_rows(body["items"], parse_payment, "id")
        for payment in payments:
            self._remember_currency(payment)
        # PageInfo.totalCount is titled "실제 반환된 객체 수" (the objects actually returned) in
        # schema/v2.openapi.json: it may be every match or only this page's. `total` is therefore a
        # lower bound (exact when totalCount exceeds what came back), and a full page always
        # has a next one: more may follow, and an empty page ends the walk.
        returned = len(body["items"])
        count = _obj(body.get("page")).get("totalCount")
        seen = (page - 1) * size + returned if returned else 0
        total = max(count if type(count) is int else 0, seen)
        next_page = page + 1 if page * size < total or returned >= size else None
        return PaymentPage(payments=payments, total=total, next_page=next_page, unreadable=unreadable)

    def verify_access(self) -> None:
        """The cheapest read that proves the API secret and the store: one page of one payment of the
        store (GET /payments, filter.storeId), sent once with no retry. PortOne answers 401 for a
        secret it refuses and 403 for a store the secret may not read: both GatewayUnauthorized,
        with the status; GatewayUnavailable when PortOne cannot be reached; UnreadableAnswer when
        something answers, but not in the shape PortOne documents."""
        until = datetime.now(UTC)
        filters = PaymentFilterInput(store_id=self._store_id, from_=_rfc3339(until - timedelta(minutes=1)),
                                     until=_rfc3339(until))  # fmt: skip
        try:
            _, answer = self._invoke(
                lambda: self._sdk.get_payments(page=PageInput(number=0, size=1), filter=filters), write=False
            )
        except httpx.TransportError as exc:
            raise GatewayUnavailable(f"PortOne unreachable: {type(exc).__name__}") from exc
        body = answer.json()
        # As PortOne documents GetPaymentsResponse: `items` a list, `page` an object.
        if not (isinstance(body, dict) and isinstance(body.get("items"), list) and isinstance(body.get("page"), dict)):
            raise UnreadableAnswer(
                f"answered, but not as PortOne does (HTTP {answer.status})", http_status=answer.status
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
        """Cancel `amount` (None: the remainder) if PortOne's cancellable remainder is `checksum`;
        a virtual account is paid back into `refund_account` (CancelPaymentBody.refundAccount)."""
        currency = self._currency_of(imp_uid)
        units = None if amount is None else _minor(amount, currency, "cancel amount")
        remainder = _minor(checksum, currency, "checksum")
        account = None
        if refund_account is not None:
            account = CancelPaymentBodyRefundAccount(
                bank=refund_account.bank_info.v2, number=refund_account.number, holder_name=refund_account.holder
            )
        _, answer = self._write(
            lambda: self._sdk.cancel_payment(
                payment_id=imp_uid,
                amount=units,
                reason=reason,
                current_cancellable_amount=remainder,
                refund_account=account,
            )
        )
        cancellation = _obj(_obj(answer.json()).get("cancellation"))
        state, cancellation_id = cancellation.get("status"), cancellation.get("id")
        if state == "FAILED":
            raise GatewayRejected(f"PortOne could not cancel {imp_uid} (cancellation {cancellation_id} failed)")
        if state == "REQUESTED":
            raise CancellationPending(
                f"PortOne accepted the cancel of {imp_uid} as REQUESTED (cancellation {cancellation_id}); "
                "the PG finishes it later",
                cancellation_id=cancellation_id if isinstance(cancellation_id, str) and cancellation_id else None,
            )
        if state != "SUCCEEDED":
            raise OutcomeUnknown(
                f"PortOne accepted the cancel of {imp_uid} as {state or 'an unreadable answer'} "
                f"(cancellation {cancellation_id}); its outcome is settled by reading the payment"
            )
        try:
            return self.get_payment(imp_uid)
        except GatewayError as exc:
            raise OutcomeUnknown(
                f"cancellation {cancellation_id} of {imp_uid} succeeded but the payment could not be re-read: {exc}"
            ) from exc

    def prepare(self, *, merchant_uid: str, amount: Decimal, currency: str) -> Prepared:
        """Pre-register the amount for the paymentId `merchant_uid` (repeating it is harmless)."""
        code = currency.upper()
        total = _minor(amount, code, "amount")
        self._repeatable_write(
            lambda: self._sdk.pre_register_payment(payment_id=merchant_uid, total_amount=total, currency=code),
            lambda body: isinstance(body, dict),  # PreRegisterPaymentResponse: an (empty) object
        )
        return Prepared(merchant_uid=merchant_uid, amount=normalize(amount, code), currency=code)

    def get_prepared(self, merchant_uid: str) -> Prepared:
        """V2 cannot read a pre-registration back; the payment of that paymentId, once it exists,
        carries the amount. GatewayNotFound until then (still a real, authenticated call)."""
        try:
            payment = self.get_payment(merchant_uid)
        except GatewayNotFound as exc:
            raise GatewayNotFound(
                f"no payment {merchant_uid!r} at PortOne V2 (a pre-registration cannot be read back): {exc}",
                http_status=exc.http_status,
            ) from exc
        return Prepared(merchant_uid=merchant_uid, amount=payment.amount, currency=payment.currency)
