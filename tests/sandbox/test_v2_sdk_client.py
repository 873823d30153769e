"""Independent check: PortOne's official Python SDK, untouched (its own payment client and HTTP
client), pointed at the sandbox, gets, lists, pre-registers and cancels payments and gets PortOne's
typed errors back. Nothing of ours is between the SDK and the sandbox.

`PaymentClient` is what `PortOneClient(...).payment` is; it is built directly because a whole
`PortOneClient` makes some thirty httpx clients (about 4 s here). The SDK's clients have no
`close()`: the test closes the one HTTP client it used, or its pooled socket leaks (a
ResourceWarning, an error under this suite's warnings policy)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from portone_server_sdk.common import PageInput
from portone_server_sdk.errors import (
    CancelAmountExceedsCancellableAmountError,
    CancellableAmountConsistencyBrokenError,
    PaymentAlreadyCancelledError,
    PaymentNotFoundError,
    UnauthorizedError,
)
from portone_server_sdk.payment import (
    CancelledPayment,
    FailedPayment,
    PaidPayment,
    PartialCancelledPayment,
    PaymentClient,
    PaymentFilterInput,
    SucceededPaymentCancellation,
    VirtualAccountIssuedPayment,
)

from sandbox.testing import RunningSandbox
from tests.v2_support import API_SECRET, STORE_ID, calls, checkout


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as client:
        yield client


def _sdk(url: str, secret: str, store_id: str | None = None) -> Iterator[PaymentClient]:
    client = PaymentClient(secret=secret, base_url=url, store_id=store_id)
    try:
        yield client
    finally:
        client._sync_client.close()


@pytest.fixture(scope="module")
def payments(sandbox_server: RunningSandbox) -> Iterator[PaymentClient]:
    yield from _sdk(sandbox_server.url, API_SECRET, STORE_ID)


def test_official_sdk_gets_lists_and_cancels(http: httpx.Client, payments: PaymentClient) -> None:
    payments.pre_register_payment(payment_id="sdk-usd", total_amount=3850, currency="USD")
    checkout(http, "sdk-usd", "38.50", "USD")
    checkout(http, "sdk-krw", 50000)
    checkout(http, "sdk-failed", 50000, card_number="4000-0000-0000-0002")
    checkout(http, "sdk-va", 50000, pay_method="virtual_account", card_number=None)

    paid = payments.get_payment(payment_id="sdk-usd")
    assert isinstance(paid, PaidPayment)
    assert (paid.amount.total, paid.amount.cancelled, paid.currency, paid.store_id) == (3850, 0, "USD", STORE_ID)
    assert paid.channel.pg_provider == "EXIMBAY_V2" and paid.version == "V2"
    assert isinstance(payments.get_payment(payment_id="sdk-failed"), FailedPayment)
    assert isinstance(payments.get_payment(payment_id="sdk-va"), VirtualAccountIssuedPayment)

    listed = payments.get_payments(page=PageInput(number=0, size=2), filter=PaymentFilterInput(store_id=STORE_ID))
    assert listed.page.total_count == 4 and listed.page.size == 2 and len(listed.items) == 2
    paid_only = payments.get_payments(filter=PaymentFilterInput(status=["PAID"], currency="KRW"))
    assert [p.id for p in paid_only.items] == ["sdk-krw"]  # type: ignore[union-attr]

    first = payments.cancel_payment(payment_id="sdk-usd", amount=1025, reason="부분 환불",
                                           current_cancellable_amount=3850)  # fmt: skip
    assert isinstance(first.cancellation, SucceededPaymentCancellation)
    assert first.cancellation.total_amount == 1025
    partial = payments.get_payment(payment_id="sdk-usd")
    assert isinstance(partial, PartialCancelledPayment) and partial.amount.cancelled == 1025
    assert [c.id for c in partial.cancellations] == [first.cancellation.id]  # type: ignore[union-attr]

    with pytest.raises(CancellableAmountConsistencyBrokenError):
        payments.cancel_payment(payment_id="sdk-usd", reason="stale", current_cancellable_amount=3850)
    with pytest.raises(CancelAmountExceedsCancellableAmountError):
        payments.cancel_payment(payment_id="sdk-usd", amount=2826, reason="too much")
    payments.cancel_payment(payment_id="sdk-usd", reason="나머지", current_cancellable_amount=2825)
    cancelled = payments.get_payment(payment_id="sdk-usd")
    assert isinstance(cancelled, CancelledPayment) and cancelled.amount.cancelled == 3850
    with pytest.raises(PaymentAlreadyCancelledError):
        payments.cancel_payment(payment_id="sdk-usd", reason="again")
    with pytest.raises(PaymentNotFoundError):
        payments.get_payment(payment_id="sdk-none")
    assert [c["outcome"] for c in calls(http)["cancels"]] == ["applied", "refused", "refused", "applied", "refused"]


def test_official_sdk_with_a_wrong_secret(sandbox: RunningSandbox) -> None:
    for stranger in _sdk(sandbox.url, "not-the-secret"):
        with pytest.raises(UnauthorizedError):
            stranger.get_payment(payment_id="anything")
        with pytest.raises(UnauthorizedError):
            stranger.get_payments()
