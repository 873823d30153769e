"""The sandbox's V2 cancel: partial cancels the PG refuses (impossible-partial-cancel.md) and the
PG_PROVIDER answer (v2.openapi.json: the cancel endpoint's 502 PgProviderError), with or without
the cancel applied."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.testing import RunningSandbox
from tests.v2_support import auth, checkout, configure

FOREIGN_CARD = "5555-5555-5555-4444"


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as client:
        yield client


def _cancel(http: httpx.Client, payment_id: str, **body: object) -> httpx.Response:
    return http.post(f"/payments/{payment_id}/cancel", headers=auth(), json={"reason": "r", **body})


def _cancelled(http: httpx.Client, payment_id: str) -> int:
    return int(http.get(f"/payments/{payment_id}", headers=auth()).json()["amount"]["cancelled"])


def test_partial_cancels_the_pg_refuses_are_answered_pg_provider_and_change_nothing(http: httpx.Client) -> None:
    configure(http, partial_cancel_refused_cards=[FOREIGN_CARD])
    checkout(http, "v2-esc", 30000, escrow=True)
    checkout(http, "v2-phone", 30000, pay_method="phone", card_number=None)
    checkout(http, "v2-phone-inicis", 30000, pay_method="phone", pg="inicis_v2", card_number=None)
    checkout(http, "v2-foreign", 30000, card_number=FOREIGN_CARD)
    escrow = http.get("/payments/v2-esc", headers=auth()).json()
    assert escrow["escrow"]["status"] == "BEFORE_REGISTERED"
    phone = http.get("/payments/v2-phone", headers=auth()).json()
    assert phone["method"]["type"] == "PaymentMethodMobile" and "escrow" not in phone
    for payment_id in ("v2-esc", "v2-phone", "v2-foreign"):
        refused = _cancel(http, payment_id, amount=1000)
        body = refused.json()
        assert refused.status_code == 502 and body["type"] == "PG_PROVIDER", body
        assert body["pgCode"] and "부분취소" in body["pgMessage"]
        assert _cancelled(http, payment_id) == 0
        assert _cancel(http, payment_id).json()["cancellation"]["status"] == "SUCCEEDED"  # the whole of it
    assert _cancel(http, "v2-phone-inicis", amount=1000).status_code == 200


@pytest.mark.parametrize("applied", [False, True])
def test_pg_provider_fault_answers_502_after_applying_or_without(http: httpx.Client, applied: bool) -> None:
    checkout(http, "v2-pg", 30000)
    configure(http, cancel_pg_provider_error_next=1, cancel_pg_provider_error_applied=applied)
    answer = _cancel(http, "v2-pg", amount=1000, currentCancellableAmount=30000)
    assert answer.status_code == 502 and answer.json()["type"] == "PG_PROVIDER"
    assert {"pgCode", "pgMessage"} <= set(answer.json())
    assert _cancelled(http, "v2-pg") == (1000 if applied else 0)
    assert _cancel(http, "v2-pg", amount=1000).status_code == 200  # one answer only
