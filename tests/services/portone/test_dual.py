"""The dual gateway: a merchant with payments in both PortOne V1 and V2, served by the real V1 and V2
adapters against the sandbox. Each call goes to the API that holds the payment, lists span both."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from services.core.errors import GatewayNotFound
from services.portone.dual import DualGateway, is_v1_id
from services.portone.types import PortOneStatus
from services.portone.v1 import PortOneV1Client
from services.portone.v2 import PortOneV2Client
from tests.factories import SandboxControl
from tests.v2_support import API_SECRET, STORE_ID, calls, checkout


@pytest.fixture(scope="module")
def adapters(sandbox_server: str) -> Iterator[tuple[PortOneV1Client, PortOneV2Client]]:
    v1 = PortOneV1Client(base_url=sandbox_server, imp_key="sandbox-imp-key", imp_secret="sandbox-imp-secret")
    v2 = PortOneV2Client(base_url=sandbox_server, api_secret=API_SECRET, store_id=STORE_ID, timeout=3.0)
    yield v1, v2
    v1.close()
    v2.close()


@pytest.fixture
def dual(adapters: tuple[PortOneV1Client, PortOneV2Client]) -> DualGateway:
    v1, v2 = adapters
    return DualGateway(v1=v1, v2=v2)


def _v1_paid(sandbox: SandboxControl, merchant_uid: str, amount: str | int = 50000, currency: str = "KRW") -> str:
    result = sandbox.checkout(merchant_uid, amount, currency)
    assert result["success"], result
    return str(result["imp_uid"])


def test_routing_rule() -> None:
    assert is_v1_id("imp_123456789012")
    assert not is_v1_id("chekar_20250101_abcdef") and not is_v1_id("IMP_1") and not is_v1_id("")


def test_each_payment_is_read_and_cancelled_where_it_lives(sandbox: SandboxControl, dual: DualGateway) -> None:
    imp_uid = _v1_paid(sandbox, "dual-old", "38.50", "USD")
    checkout(sandbox.http, "dual-new", "38.50", "USD")
    old, new = dual.get_payment(imp_uid), dual.get_payment("dual-new")
    assert (old.imp_uid, old.merchant_uid, old.amount) == (imp_uid, "dual-old", Decimal("38.50"))
    assert (new.imp_uid, new.merchant_uid, new.amount) == ("dual-new", "dual-new", Decimal("38.50"))

    after_old = dual.cancel_payment(imp_uid=imp_uid, amount=Decimal("10.25"), checksum=Decimal("38.50"), reason="a")
    after_new = dual.cancel_payment(imp_uid="dual-new", amount=Decimal("10.25"), checksum=Decimal("38.50"), reason="b")
    assert after_old.cancel_amount == after_new.cancel_amount == Decimal("10.25")
    assert [c["imp_uid"] for c in sandbox.calls()["cancels"]] == [imp_uid]  # V1 saw only its own
    assert [c["payment_id"] for c in calls(sandbox.http)["cancels"]] == ["dual-new"]

    got = dual.get_payments(["dual-new", "dual-missing", imp_uid, "imp_000000000000"])
    assert [p.imp_uid for p in got] == ["dual-new", imp_uid]
    with pytest.raises(GatewayNotFound):
        dual.get_payment("imp_000000000000")


def test_find_by_merchant_uid_asks_v2_then_v1(sandbox: SandboxControl, dual: DualGateway) -> None:
    imp_uid = _v1_paid(sandbox, "dual-find-v1")
    checkout(sandbox.http, "dual-find-v2", 1000)
    assert dual.find_by_merchant_uid("dual-find-v2").imp_uid == "dual-find-v2"
    assert dual.find_by_merchant_uid("dual-find-v1").imp_uid == imp_uid
    with pytest.raises(GatewayNotFound):
        dual.find_by_merchant_uid("dual-find-none")


def test_list_pages_over_both(sandbox: SandboxControl, dual: DualGateway) -> None:
    v1_ids = [_v1_paid(sandbox, f"dual-l1-{n}", 1000 + n) for n in range(3)]
    for n in range(4):
        checkout(sandbox.http, f"dual-l2-{n}", 2000 + n)
    pages = [dual.list_payments(page=n, limit=3, sorting="started") for n in (1, 2, 3)]
    assert [p.total for p in pages] == [7, 7, 7] and [p.next_page for p in pages] == [2, 3, None]
    ids = [pay.imp_uid for page in pages for pay in page.payments]
    assert ids == [*v1_ids, "dual-l2-0", "dual-l2-1", "dual-l2-2", "dual-l2-3"]
    assert dual.list_payments(page=4, limit=3).payments == ()
    straddling = dual.list_payments(page=2, limit=2, sorting="started")  # the last V1 and the first V2
    assert [p.imp_uid for p in straddling.payments] == [v1_ids[2], "dual-l2-0"]
    offset = dual.list_payments(page=3, limit=2, sorting="started")  # V2 from its second item on
    assert [p.imp_uid for p in offset.payments] == ["dual-l2-1", "dual-l2-2"]
    assert {p.status for p in dual.list_payments(status="paid").payments} == {PortOneStatus.PAID}


def test_new_payments_are_prepared_on_the_chosen_side(
    sandbox: SandboxControl, adapters: tuple[PortOneV1Client, PortOneV2Client]
) -> None:
    v1, v2 = adapters
    DualGateway(v1=v1, v2=v2).prepare(merchant_uid="dual-prep-2", amount=Decimal("50000"), currency="KRW")
    assert calls(sandbox.http)["counts"] == {"POST /payments/{paymentId}/pre-register": 1}
    to_v1 = DualGateway(v1=v1, v2=v2, new_payments="v1")
    to_v1.prepare(merchant_uid="dual-prep-1", amount=Decimal("38.50"), currency="USD")
    assert to_v1.get_prepared("dual-prep-1").amount == Decimal("38.50")
    assert sandbox.calls()["counts"]["POST /payments/prepare"] >= 1  # (a stale V1 token is retried once)
    assert calls(sandbox.http)["counts"] == {"POST /payments/{paymentId}/pre-register": 1}  # V2 untouched


def _walk(dual: DualGateway, **kwargs: object) -> tuple[list[str], int]:
    """Every payment listed, following next_page from page 1; and the number of pages asked."""
    ids: list[str] = []
    page: int | None = 1
    asked = 0
    while page is not None:
        asked += 1
        assert asked < 50, "paging never ends"
        got = dual.list_payments(page=page, **kwargs)  # type: ignore[arg-type]
        ids += [p.imp_uid for p in got.payments]
        page = got.next_page
    return ids, asked


@pytest.mark.parametrize("empty_first_page", ["ok", "out_of_range"])
@pytest.mark.parametrize("total_count", ["total", "returned"])
def test_paging_is_right_under_either_reading(
    sandbox: SandboxControl, dual: DualGateway, empty_first_page: str, total_count: str
) -> None:
    """V1 may answer page 1 of an empty window with 400 (schema: a page past the data) and V2's
    page.totalCount may count only this page's items (its title: 실제 반환된 객체 수): every payment is
    listed once, in order, and an empty window is simply empty."""
    sandbox.http.post("/sandbox/config", json={"empty_first_page": empty_first_page}).raise_for_status()
    sandbox.http.post("/sandbox/v2/config", json={"total_count": total_count}).raise_for_status()
    v1_ids = [_v1_paid(sandbox, f"dual-r1-{n}", 1000 + n) for n in range(3)]
    v2_ids = [f"dual-r2-{n}" for n in range(7)]
    for payment_id in v2_ids:
        checkout(sandbox.http, payment_id, 2000)

    for limit in (2, 3, 5, 10, 20):
        ids, _ = _walk(dual, limit=limit, sorting="started")
        assert ids == [*v1_ids, *v2_ids], limit
    # Nothing of V1 in the window (V1's page 1 may be a 400), all of V2.
    checkout(sandbox.http, "dual-r2-failed", 1000, card_number="4000-0000-0000-0002")
    assert _walk(dual, status="failed", limit=2) == (["dual-r2-failed"], 1)
    # Nothing at all.
    empty = dual.list_payments(status="cancelled", limit=5)
    assert (empty.payments, empty.next_page) == ((), None)
