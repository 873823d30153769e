"""I'mport's own Python client (iamport-rest-client) against the sandbox.

It sends ``X-ImpTokenHeader``, JSON bodies, and fetches a token on every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from iamport import Iamport


@pytest.fixture
def iamport(sandbox: Any) -> Iterator[Iamport]:
    imp = Iamport(imp_key="test-imp-key", imp_secret="test-imp-secret", imp_url=sandbox.url + "/")
    yield imp
    imp.requests_session.close()


def test_find_by_imp_uid_and_merchant_uid(client: Any, iamport: Iamport) -> None:
    imp_uid = client.paid("iamport-1", 50000)
    by_imp = iamport.find(imp_uid=imp_uid)
    assert by_imp["imp_uid"] == imp_uid and by_imp["amount"] == 50000
    by_merchant = iamport.find(merchant_uid="iamport-1")
    assert by_merchant["imp_uid"] == imp_uid
    assert iamport.is_paid(50000, merchant_uid="iamport-1")
    with pytest.raises(Iamport.HttpError) as err:
        iamport.find(imp_uid="imp_000000000000")
    assert err.value.code == 404


def test_partial_cancel_with_checksum_then_full(client: Any, iamport: Iamport) -> None:
    imp_uid = client.paid("iamport-2", 10000)
    partial = iamport.cancel("부분 취소", imp_uid=imp_uid, amount=3000, checksum=10000)
    assert partial["status"] == "paid" and partial["cancel_amount"] == 3000
    with pytest.raises(Iamport.ResponseError) as err:
        iamport.cancel("stale", imp_uid=imp_uid, amount=1000, checksum=10000)
    assert err.value.code == -1 and "checksum" in err.value.message
    full = iamport.cancel("전액 취소", merchant_uid="iamport-2", checksum=7000)
    assert full["status"] == "cancelled" and full["cancel_amount"] == 10000
    assert [h["amount"] for h in full["cancel_history"]] == [3000, 7000]
    with pytest.raises(Iamport.ResponseError):
        iamport.cancel("again", imp_uid=imp_uid)
    calls = client.calls()
    # A fresh token per call, as the client does.
    assert calls["counts"]["POST /users/getToken"] == calls["total"] - calls["counts"][
        "POST /users/getToken"]  # fmt: skip
    assert calls["cancel_summary"] == {"applied": 2, "refused": 2}


def test_prepare_and_validate(iamport: Iamport) -> None:
    assert iamport.prepare("iamport-3", 12000)["amount"] == 12000
    assert iamport.prepare_validate("iamport-3", 12000)
    assert not iamport.prepare_validate("iamport-3", 13000)


def test_wrong_credentials(sandbox: Any) -> None:
    imp = Iamport(imp_key="test-imp-key", imp_secret="wrong", imp_url=sandbox.url + "/")
    try:
        with pytest.raises(Iamport.HttpError) as err:
            imp.find(imp_uid="imp_000000000000")
        assert err.value.code == 401
    finally:
        imp.requests_session.close()
