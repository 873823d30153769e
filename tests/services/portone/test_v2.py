"""The V2 adapter (services/portone/v2.py, through portone-server-sdk) against the sandbox over
loopback: exact money both ways (USD in minor units), status and cancellation mapping, paging,
and every error mapped onto services/core/errors.py, a cancel never sent twice."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from services.core.errors import (
    GatewayNotFound,
    GatewayRejected,
    GatewayUnauthorized,
    GatewayUnavailable,
    InvalidRequest,
    OutcomeUnknown,
)
from services.portone.types import PortOneStatus
from services.portone.v2 import PortOneV2Client
from tests.factories import SandboxControl
from tests.v2_support import API_SECRET, STORE_ID, calls, checkout, configure


@pytest.fixture(scope="module")
def gateway(sandbox_server: str) -> Iterator[PortOneV2Client]:
    client = PortOneV2Client(base_url=sandbox_server, api_secret=API_SECRET, store_id=STORE_ID, timeout=2.0)
    yield client
    client.close()


class FakePortOne:
    """Stands in for PortOne where the sandbox cannot: a future status, a dropped connection."""

    def __init__(self) -> None:
        self.handler: Callable[[httpx.Request], httpx.Response] = lambda request: httpx.Response(500)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


@pytest.fixture(scope="module")
def fake_portone() -> Iterator[tuple[FakePortOne, PortOneV2Client]]:
    fake = FakePortOne()
    client = PortOneV2Client(base_url="http://portone.test", api_secret="s", transport=httpx.MockTransport(fake))
    yield fake, client
    client.close()


def _cancel_bodies(sandbox: SandboxControl) -> list[dict[str, Any]]:
    return [c["body"] for c in calls(sandbox.http)["cancels"]]


def test_usd_money_is_exact_both_ways(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    prepared = gateway.prepare(merchant_uid="v2-usd", amount=Decimal("38.50"), currency="usd")
    assert (prepared.amount, prepared.currency) == (Decimal("38.50"), "USD")
    assert checkout(sandbox.http, "v2-usd", "38.51", "USD")["code"] == "PRE_REGISTERED_AMOUNT_MISMATCH"
    checkout(sandbox.http, "v2-usd", "38.50", "USD", buyer_email="kim@example.com", name="체카 탁송비")

    paid = gateway.get_payment("v2-usd")
    assert (paid.imp_uid, paid.merchant_uid, paid.status) == ("v2-usd", "v2-usd", PortOneStatus.PAID)
    assert (paid.amount, paid.cancel_amount, paid.cancellable_amount) == (Decimal("38.50"), 0, Decimal("38.50"))
    assert str(paid.amount) == "38.50" and paid.currency == "USD"
    assert (paid.pay_method, paid.pg_provider, paid.name, paid.buyer_email) == (
        "card", "eximbay_v2", "체카 탁송비", "kim@example.com")  # fmt: skip
    assert paid.paid_at is not None and paid.paid_at.tzinfo is not None and paid.raw["amount"]["total"] == 3850

    after = gateway.cancel_payment(imp_uid="v2-usd", amount=Decimal("10.25"), checksum=Decimal("38.50"), reason="부분")
    assert _cancel_bodies(sandbox)[-1] == {"amount": 1025, "currentCancellableAmount": 3850, "reason": "부분",
                                           "storeId": STORE_ID}  # fmt: skip
    assert (after.status, after.cancel_amount, after.cancellable_amount) == (
        PortOneStatus.PAID, Decimal("10.25"), Decimal("28.25"))  # fmt: skip
    [first] = after.cancellations
    assert first.amount == Decimal("10.25") and first.reason == "부분" and first.cancelled_at is not None

    final = gateway.cancel_payment(imp_uid="v2-usd", amount=None, checksum=Decimal("28.25"), reason="나머지")
    assert "amount" not in _cancel_bodies(sandbox)[-1]
    assert _cancel_bodies(sandbox)[-1]["currentCancellableAmount"] == 2825
    assert (final.status, final.cancel_amount) == (PortOneStatus.CANCELLED, Decimal("38.50"))
    assert [c.amount for c in final.cancellations] == [Decimal("10.25"), Decimal("28.25")]


def test_usd_six_dollars_is_600_and_krw_is_whole(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    gateway.prepare(merchant_uid="v2-six", amount=Decimal("6.00"), currency="USD")
    assert checkout(sandbox.http, "v2-six", None, "USD", total_amount=601)["code"]
    assert checkout(sandbox.http, "v2-six", None, "USD", total_amount=600)["status"] == "PAID"
    assert gateway.get_payment("v2-six").amount == Decimal("6.00")
    gateway.prepare(merchant_uid="v2-krw", amount=Decimal("50000"), currency="KRW")
    checkout(sandbox.http, "v2-krw", 50000)
    krw = gateway.get_payment("v2-krw")
    assert krw.amount == Decimal("50000") and str(krw.amount) == "50000"
    with pytest.raises(InvalidRequest):
        gateway.prepare(merchant_uid="v2-bad", amount=Decimal("6.001"), currency="USD")
    with pytest.raises(InvalidRequest):
        gateway.cancel_payment(imp_uid="v2-krw", amount=Decimal("0.5"), checksum=Decimal("50000"), reason="x")
    assert calls(sandbox.http)["cancels"] == []  # refused before anything was sent


def test_statuses_map_onto_ours(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    checkout(sandbox.http, "v2-failed", 1000, card_number="4000-0000-0000-0002")
    checkout(sandbox.http, "v2-va", 1000, pay_method="virtual_account", card_number=None)
    failed = gateway.get_payment("v2-failed")
    assert failed.status == PortOneStatus.FAILED and failed.fail_reason and failed.failed_at is not None
    issued = gateway.get_payment("v2-va")
    assert (issued.status, issued.pay_method) == (PortOneStatus.READY, "vbank")
    sandbox.http.post("/sandbox/v2/payments/v2-va/deposit").raise_for_status()
    assert gateway.get_payment("v2-va").status == PortOneStatus.PAID


def test_unknown_status_and_fields_become_unknown_not_an_error(
    fake_portone: tuple[FakePortOne, PortOneV2Client],
) -> None:
    """A status this SDK version does not know makes the SDK raise ValueError for the whole answer;
    the adapter still maps it (the sandbox has no such status, so a stand-in answers)."""
    fake, client = fake_portone
    payment = {"status": "DISPUTED_SOMEDAY", "id": "v2-future", "transactionId": "t", "currency": "USD",
               "amount": {"total": 600, "cancelled": 100}, "newField": {"x": 1}}  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/payments":
            return httpx.Response(200, json={"items": [payment], "page": {"number": 0, "size": 10, "totalCount": 1}})
        return httpx.Response(200, json=payment)

    fake.handler = answer
    got = client.get_payment("v2-future")
    assert (got.status, got.amount, got.cancel_amount) == (PortOneStatus.UNKNOWN, Decimal("6.00"), Decimal("1.00"))
    assert client.list_payments().payments == (got,)


def test_list_payments_pages_and_filters(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    for n in range(5):
        checkout(sandbox.http, f"v2-list-{n}", 1000 + n)
    checkout(sandbox.http, "v2-list-failed", 1000, card_number="4000-0000-0000-0002")
    gateway.cancel_payment(imp_uid="v2-list-0", amount=Decimal("10"), checksum=Decimal("1000"), reason="p")

    first = gateway.list_payments(limit=4)
    assert (first.total, first.next_page, len(first.payments)) == (6, 2, 4)
    second = gateway.list_payments(page=2, limit=4)
    assert (second.next_page, len(second.payments)) == (None, 2)
    ids = [p.imp_uid for p in first.payments + second.payments]
    assert ids == ["v2-list-failed", *[f"v2-list-{n}" for n in range(4, -1, -1)]]
    assert [p.imp_uid for p in gateway.list_payments(sorting="started").payments] == ids[::-1]
    paid = gateway.list_payments(status="paid")
    assert paid.total == 5 and {p.status for p in paid.payments} == {PortOneStatus.PAID}
    assert gateway.list_payments(status="failed").payments[0].imp_uid == "v2-list-failed"
    later = datetime.now(UTC) + timedelta(hours=1)
    assert gateway.list_payments(since=later, until=later + timedelta(days=1)).total == 0
    with pytest.raises(InvalidRequest):
        gateway.list_payments(status="paying")


def test_batch_get_and_prepared(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    checkout(sandbox.http, "v2-b1", 1000)
    checkout(sandbox.http, "v2-b2", 2000)
    got = gateway.get_payments(["v2-b2", "v2-missing", "v2-b1", "v2-b2"])
    assert [p.imp_uid for p in got] == ["v2-b2", "v2-b1"]
    assert gateway.find_by_merchant_uid("v2-b1").amount == Decimal("1000")
    gateway.prepare(merchant_uid="v2-p", amount=Decimal("50000"), currency="KRW")
    with pytest.raises(GatewayNotFound):
        gateway.get_prepared("v2-p")  # V2 cannot read a pre-registration back
    checkout(sandbox.http, "v2-p", 50000)
    assert gateway.get_prepared("v2-p").amount == Decimal("50000")


def test_read_errors(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    checkout(sandbox.http, "v2-e", 1000)
    with pytest.raises(GatewayNotFound):
        gateway.get_payment("v2-nope")
    configure(sandbox.http, fail_next=1)
    assert gateway.get_payment("v2-e").amount == Decimal("1000")  # a read is retried
    configure(sandbox.http, fail_next=3)
    with pytest.raises(GatewayUnavailable):
        gateway.get_payment("v2-e")
    configure(sandbox.http, fail_next=3, fault_body="html")  # not JSON: the SDK itself fails to parse
    with pytest.raises(GatewayUnavailable):
        gateway.get_payment("v2-e")
    assert calls(sandbox.http)["counts"]["GET /payments/{paymentId}"] == 1 + 2 + 3 + 3
    stranger = PortOneV2Client(base_url=sandbox.url, api_secret="wrong", timeout=2.0)
    try:
        with pytest.raises(GatewayUnauthorized):
            stranger.get_payment("v2-e")
        with pytest.raises(GatewayUnauthorized):
            stranger.list_payments()
    finally:
        stranger.close()


def test_cancel_refusals_change_nothing(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    checkout(sandbox.http, "v2-r", 50000)
    gateway.get_payment("v2-r")
    with pytest.raises(GatewayRejected, match="CANCELLABLE_AMOUNT_CONSISTENCY_BROKEN"):
        gateway.cancel_payment(imp_uid="v2-r", amount=Decimal("1000"), checksum=Decimal("49000"), reason="x")
    with pytest.raises(GatewayRejected, match="CANCEL_AMOUNT_EXCEEDS_CANCELLABLE_AMOUNT"):
        gateway.cancel_payment(imp_uid="v2-r", amount=Decimal("50001"), checksum=Decimal("50000"), reason="x")
    with pytest.raises(GatewayNotFound):
        gateway.cancel_payment(imp_uid="v2-none", amount=None, checksum=Decimal("1"), reason="x")
    assert gateway.get_payment("v2-r").cancel_amount == 0


def test_a_cancel_is_never_sent_twice(sandbox: SandboxControl, gateway: PortOneV2Client) -> None:
    checkout(sandbox.http, "v2-once", 50000)
    gateway.get_payment("v2-once")
    configure(sandbox.http, fail_next=1)
    with pytest.raises(OutcomeUnknown):
        gateway.cancel_payment(imp_uid="v2-once", amount=Decimal("1000"), checksum=Decimal("50000"), reason="x")
    assert calls(sandbox.http)["counts"]["POST /payments/{paymentId}/cancel"] == 1

    configure(sandbox.http, cancel_timeout_after_apply=1, cancel_hang_seconds=5)
    with pytest.raises(OutcomeUnknown):  # applied, answer lost (client timeout 2 s)
        gateway.cancel_payment(imp_uid="v2-once", amount=Decimal("1000"), checksum=Decimal("50000"), reason="x")
    assert calls(sandbox.http)["counts"]["POST /payments/{paymentId}/cancel"] == 2
    assert [c["outcome"] for c in calls(sandbox.http)["cancels"]] == ["applied"]
    assert gateway.get_payment("v2-once").cancel_amount == Decimal("1000")  # settled by reading


def test_nothing_listening(sandbox: SandboxControl) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = PortOneV2Client(base_url=f"http://127.0.0.1:{port}", api_secret="s", timeout=1.0)
    try:
        with pytest.raises(GatewayUnavailable):
            client.get_payment("x")
    finally:
        client.close()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(httpx.ConnectError("refused"), GatewayUnavailable), (httpx.ReadError("reset"), OutcomeUnknown),
     (httpx.ReadTimeout("slow"), OutcomeUnknown)],
)  # fmt: skip
def test_cancel_transport_failures(
    fake_portone: tuple[FakePortOne, PortOneV2Client], failure: Exception, expected: type[Exception]
) -> None:
    """Nothing sent (connect failed) is merely unavailable; anything later may have been applied."""
    fake, client = fake_portone
    paid = {"status": "PAID", "id": "v2-t", "currency": "KRW", "amount": {"total": 5000, "cancelled": 0}}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise failure
        return httpx.Response(200, json=paid)

    fake.handler = answer
    fake.requests.clear()
    with pytest.raises(expected):
        client.cancel_payment(imp_uid="v2-t", amount=Decimal("1000"), checksum=Decimal("5000"), reason="x")
    assert [r.method for r in fake.requests].count("POST") == 1


GARBLES = [("not_json", None), ("wrong_shape", None), ("missing_fields", None), ("not_json", 202), ("missing_fields", 201),
           ("not_json", 400)]  # fmt: skip


@pytest.mark.parametrize(("body", "status"), GARBLES)
def test_a_cancel_answered_unreadably_is_an_unknown_outcome(
    sandbox: SandboxControl, gateway: PortOneV2Client, body: str, status: int | None
) -> None:
    """PortOne applied it; whatever the status, an answer we cannot read says nothing about that."""
    payment_id = f"v2-garbled-{body}-{status}"
    checkout(sandbox.http, payment_id, 50000)
    gateway.get_payment(payment_id)
    configure(sandbox.http, garble_next=1, garble_only="POST /payments/{paymentId}/cancel", garble_body=body,
              garble_status=status)  # fmt: skip
    with pytest.raises(OutcomeUnknown):
        gateway.cancel_payment(imp_uid=payment_id, amount=Decimal("1000"), checksum=Decimal("50000"), reason="x")
    assert [c["outcome"] for c in calls(sandbox.http)["cancels"]] == ["applied"]  # sent once
    assert gateway.get_payment(payment_id).cancel_amount == Decimal("1000")  # settled by reading


def test_a_cancel_answered_2xx_readably_is_read(fake_portone: tuple[FakePortOne, PortOneV2Client]) -> None:
    """A readable cancellation answered with another 2xx than 200 is the cancel's answer, not a refusal."""
    fake, client = fake_portone
    paid = {"status": "PAID", "id": "v2-201", "currency": "KRW", "amount": {"total": 5000, "cancelled": 0}}
    done = {**paid, "status": "PARTIAL_CANCELLED", "amount": {"total": 5000, "cancelled": 1000}}
    state = {"payment": paid}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            state["payment"] = done
            return httpx.Response(201, json={"cancellation": {"status": "SUCCEEDED", "id": "c-1", "totalAmount": 1000}})
        return httpx.Response(200, json=state["payment"])

    fake.handler = answer
    result = client.cancel_payment(imp_uid="v2-201", amount=Decimal("1000"), checksum=Decimal("5000"), reason="x")
    assert result.cancel_amount == Decimal("1000")


@pytest.mark.parametrize(("body", "status"), [g for g in GARBLES if g[0] != "missing_fields"])  # `{}` has none
def test_a_pre_registration_answered_unreadably_is_not_taken_as_done(
    sandbox: SandboxControl, gateway: PortOneV2Client, body: str, status: int | None
) -> None:
    """Pre-registering may be repeated, so it is sent again; answered unreadably every time, it is
    an unknown outcome, never a registration we assume was made."""
    from services.portone.v2 import READ_ATTEMPTS

    configure(sandbox.http, garble_next=READ_ATTEMPTS, garble_only="POST /payments/v2-prep", garble_body=body,
              garble_status=status)  # fmt: skip
    with pytest.raises(OutcomeUnknown):
        gateway.prepare(merchant_uid="v2-prep", amount=Decimal("5000"), currency="KRW")
    configure(sandbox.http, garble_next=1, garble_only="POST /payments/v2-prep2", garble_body=body,
              garble_status=status)  # fmt: skip
    assert gateway.prepare(merchant_uid="v2-prep2", amount=Decimal("5000"), currency="KRW").amount == 5000
    assert calls(sandbox.http)["counts"]["POST /payments/{paymentId}/pre-register"] == READ_ATTEMPTS + 2
