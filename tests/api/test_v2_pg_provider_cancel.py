"""A V2 cancel answered 502 PG_PROVIDER (v2.openapi.json: the cancel endpoint's PgProviderError)
is an unknown outcome, settled by reading the payment back: the PG's error does not say the cancel
was not applied. Applied: the refund succeeded. Not applied: it fails once PortOne's read-back
confirms it (after the grace), never resent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Refund
from services.refunds import settlement
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, make_runtime, new_order


@pytest.fixture
def portone_version() -> str:
    return "v2"


@pytest.fixture
def runtime(database_url: str, sandbox: SandboxControl) -> Iterator[Runtime]:
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        portone_api_version="v2",
        refund_unknown_grace_seconds=0.5,
    )
    try:
        yield rt
    finally:
        rt.close()


def _paid(api: httpx.Client, sandbox: SandboxControl) -> str:
    order = new_order(api)
    payment_id = str(sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"])
    answer = api.post("/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": order["merchant_uid"]})
    assert answer.is_success, answer.text
    return payment_id


def _refund(api: httpx.Client, payment_id: str, amount: str) -> httpx.Response:
    return api.post(
        f"/api/payments/{payment_id}/refunds", json={"reason": "고객 요청", "amount": amount}, headers=auth_headers()
    )


def _attempts(runtime: Runtime) -> list[tuple[str, Decimal]]:
    with runtime.db.read() as session:
        return [(r.status, r.amount) for r in session.scalars(select(Refund).order_by(Refund.id))]


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel applied, answered 502 PG_PROVIDER",
    outcome="settled succeeded by reading the payment back; one cancel sent",
)
def test_a_pg_provider_answer_to_an_applied_cancel_is_settled_succeeded(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    payment_id = _paid(api, sandbox)
    sandbox.configure(cancel_pg_provider_error_next=1, cancel_pg_provider_error_applied=True)
    answer = _refund(api, payment_id, "20000")
    assert answer.status_code == 201, answer.text
    assert _attempts(runtime) == [("succeeded", Decimal(20000))]
    assert len(sandbox.calls()["cancels"]) == 1
    assert sandbox.payment(payment_id)["cancel_amount"] == 20000


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel not applied, answered 502 PG_PROVIDER",
    outcome="unknown, not failed, until the read-back confirms it unapplied past the grace; never resent",
)
def test_a_pg_provider_answer_to_an_unapplied_cancel_is_unknown_until_read_back(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    payment_id = _paid(api, sandbox)
    sandbox.configure(cancel_pg_provider_error_next=1, cancel_pg_provider_error_applied=False)
    answer = _refund(api, payment_id, "20000")
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "unknown" and "PG_PROVIDER" in answer.json()["message"]
    assert _attempts(runtime) == [("unknown", Decimal(20000))]
    time.sleep(0.6)  # past the grace
    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    assert _attempts(runtime) == [("failed", Decimal(20000))]
    assert len(sandbox.calls()["cancels"]) == 1  # never resent
    assert _refund(api, payment_id, "20000").status_code == 201
    assert sandbox.payment(payment_id)["cancel_amount"] == 20000
