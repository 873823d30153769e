"""Our PortOne V1 client against the sandbox over loopback HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.core.errors import (
    GatewayNotFound,
    GatewayRejected,
    GatewayUnauthorized,
    GatewayUnavailable,
    OutcomeUnknown,
)
from services.portone.types import PortOneStatus
from services.portone.v1 import PortOneV1Client
from tests.factories import SandboxControl


@pytest.fixture
def client(sandbox: SandboxControl) -> Iterator[PortOneV1Client]:
    gateway = PortOneV1Client(
        base_url=sandbox.url, imp_key="sandbox-imp-key", imp_secret="sandbox-imp-secret", timeout=2.0
    )
    yield gateway
    gateway.close()


def _paid(sandbox: SandboxControl, merchant_uid: str, amount: str = "50000", currency: str = "KRW") -> str:
    return str(sandbox.checkout(merchant_uid, amount, currency)["imp_uid"])


def _token_requests(sandbox: SandboxControl) -> int:
    return int(sandbox.calls()["counts"].get("POST /users/getToken", 0))


def test_get_payment_parses_exact_decimals(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    imp_uid = _paid(sandbox, "m-usd-1", "38.50", "USD")
    payment = client.get_payment(imp_uid)
    assert payment.amount == Decimal("38.50") and isinstance(payment.amount, Decimal)
    assert payment.currency == "USD" and payment.status == PortOneStatus.PAID
    assert payment.pg_provider == "eximbay"
    assert payment.paid_at is not None and payment.paid_at.tzinfo is not None
    assert payment.card_number and "1111" in payment.card_number and "4111111111111111" not in payment.card_number
    assert client.find_by_merchant_uid("m-usd-1").imp_uid == imp_uid
    with pytest.raises(GatewayNotFound):
        client.get_payment("imp_000000000000")


def test_token_is_cached_and_refreshed_once_on_401(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    imp_uid = _paid(sandbox, "m-token")
    for _ in range(5):
        client.get_payment(imp_uid)
    assert _token_requests(sandbox) == 1
    # The sandbox forgets every token (as after PortOne revokes them): one 401, one refresh.
    sandbox.configure(token_ttl_seconds=1)
    client._token_expires_at = time.time() + 3600  # we still believe ours is valid
    time.sleep(1.5)
    assert client.get_payment(imp_uid).imp_uid == imp_uid
    assert _token_requests(sandbox) == 2


def test_wrong_credentials(sandbox: SandboxControl) -> None:
    gateway = PortOneV1Client(base_url=sandbox.url, imp_key="wrong", imp_secret="wrong")
    with pytest.raises(GatewayUnauthorized):
        gateway.get_payment("imp_1")
    gateway.close()


def test_batched_lookup_over_100_ids(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    rows = [{"merchant_uid": f"bulk-{i}", "amount": 50000, "currency": "KRW", "status": "paid"} for i in range(230)]
    created = sandbox.http.post("/sandbox/payments/bulk", json={"payments": rows})
    created.raise_for_status()
    imp_uids = created.json()["imp_uids"]
    found = client.get_payments([*imp_uids, "imp_000000000000"])
    assert sorted(p.imp_uid for p in found) == sorted(imp_uids)
    lookups = sandbox.calls()["counts"].get("GET /payments", 0)
    assert lookups == 3  # 231 ids in batches of 100


def test_listing_by_status_pages_through_a_window(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    now = int(time.time())
    rows = [
        {
            "merchant_uid": f"list-{i}",
            "amount": 1000 + i,
            "currency": "KRW",
            "status": "paid",
            "started_at": now - 3600 + i,
            "paid_at": now - 3600 + i,
        }
        for i in range(25)
    ]
    sandbox.http.post("/sandbox/payments/bulk", json={"payments": rows}).raise_for_status()
    since = datetime.now(UTC) - timedelta(hours=2)
    first = client.list_payments(status="paid", since=since, limit=10)
    assert first.total == 25 and len(first.payments) == 10 and first.next_page == 2
    seen = [p.merchant_uid for p in first.payments]
    page = first.next_page
    while page:
        more = client.list_payments(status="paid", since=since, limit=10, page=page)
        seen += [p.merchant_uid for p in more.payments]
        page = more.next_page
    assert sorted(seen) == sorted(f"list-{i}" for i in range(25))


def test_reads_retry_transient_failures_but_cancels_never_do(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    imp_uid = _paid(sandbox, "m-retry")
    client.get_payment(imp_uid)  # token cached
    sandbox.configure(fail_next=2)
    assert client.get_payment(imp_uid).imp_uid == imp_uid  # third attempt succeeds
    sandbox.configure(fail_next=1)
    with pytest.raises(OutcomeUnknown):
        client.cancel_payment(imp_uid=imp_uid, amount=Decimal(1000), checksum=Decimal(50000), reason="test")
    assert len(sandbox.calls()["cancels"]) <= 1
    sandbox.configure(fail_next=10)
    with pytest.raises(GatewayUnavailable):
        client.get_payment(imp_uid)


def test_cancel_checksum_and_remainder_refusals(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    imp_uid = _paid(sandbox, "m-cancel")
    with pytest.raises(GatewayRejected):
        client.cancel_payment(imp_uid=imp_uid, amount=Decimal(1000), checksum=Decimal(49000), reason="stale view")
    partial = client.cancel_payment(imp_uid=imp_uid, amount=Decimal(1000), checksum=Decimal(50000), reason="ok")
    assert partial.cancel_amount == Decimal(1000) and partial.status == PortOneStatus.PAID
    assert [c.amount for c in partial.cancellations] == [Decimal(1000)]
    with pytest.raises(GatewayRejected):
        client.cancel_payment(imp_uid=imp_uid, amount=Decimal(49001), checksum=Decimal(49000), reason="too much")


def test_prepare_registers_the_amount(client: PortOneV1Client) -> None:
    prepared = client.prepare(merchant_uid="m-prep", amount=Decimal("38.50"), currency="USD")
    assert prepared.amount == Decimal("38.50")
    assert client.get_prepared("m-prep").currency == "USD"


def test_client_is_safe_to_share_between_threads(client: PortOneV1Client, sandbox: SandboxControl) -> None:
    imp_uid = _paid(sandbox, "m-threads")
    errors: list[BaseException] = []

    def look() -> None:
        try:
            for _ in range(10):
                client.get_payment(imp_uid)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _token_requests(sandbox) == 1


# (body, status): PortOne's own status, another 2xx, a 4xx, and a 401 (which must not make us
# fetch a new token and send the write again).
GARBLES = [
    ("not_json", None),
    ("wrong_shape", None),
    ("missing_fields", None),
    ("not_json", 202),
    ("not_json", 400),
    ("not_json", 401),
]


@pytest.mark.parametrize(("body", "status"), GARBLES)
def test_a_cancel_answered_unreadably_is_an_unknown_outcome(
    client: PortOneV1Client, sandbox: SandboxControl, body: str, status: int | None
) -> None:
    """PortOne applied it; whatever the status, an answer we cannot read says nothing about that."""
    imp_uid = _paid(sandbox, f"m-garbled-{body}-{status}")
    client.get_payment(imp_uid)  # token cached
    sandbox.configure(garble_next=1, garble_only="POST /payments/cancel", garble_body=body, garble_status=status)
    with pytest.raises(OutcomeUnknown):
        client.cancel_payment(imp_uid=imp_uid, amount=Decimal(1000), checksum=Decimal(50000), reason="test")
    assert [c["outcome"] for c in sandbox.calls()["cancels"]] == ["applied"]  # sent once
    assert client.get_payment(imp_uid).cancel_amount == Decimal(1000)  # settled by reading


@pytest.mark.parametrize(("body", "status"), GARBLES)
def test_a_prepare_answered_unreadably_is_an_unknown_outcome(
    client: PortOneV1Client, sandbox: SandboxControl, body: str, status: int | None
) -> None:
    merchant_uid = f"m-prep-garbled-{body}-{status}"
    sandbox.configure(garble_next=1, garble_only="POST /payments/prepare", garble_body=body, garble_status=status)
    with pytest.raises(OutcomeUnknown):
        client.prepare(merchant_uid=merchant_uid, amount=Decimal("38.50"), currency="USD")
    assert client.get_prepared(merchant_uid).amount == Decimal("38.50")  # it was registered
