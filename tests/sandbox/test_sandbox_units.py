"""Unit tests of the pieces that need no server: money/JSON, tokens, cards, store indexes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from sandbox import money
from sandbox.auth import TokenStore
from sandbox.payments import Payment, card_brand, luhn_ok, mask_card_number
from sandbox.state import PaymentStore


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("50000"), "50000"),
        (Decimal("50000.00"), "50000"),
        (Decimal("38.50"), "38.5"),
        (Decimal("10.25"), "10.25"),
        (Decimal("0.1") + Decimal("0.2"), "0.3"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-0"), "0"),
        (Decimal("123456789012345678.01"), "123456789012345678.01"),
    ],
)
def test_decimal_json_numbers(value: Decimal, text: str) -> None:
    assert money.dumps(value) == text
    assert money.loads(money.dumps({"a": value}))["a"] == value


def test_dumps_structure_and_strings() -> None:
    obj = {"s": '한글 "q"\n', "n": None, "t": True, "f": False, "i": 7, "l": [Decimal("1.5"), 2]}
    assert json.loads(money.dumps(obj)) == {**obj, "l": [1.5, 2]}
    with pytest.raises(TypeError):
        money.dumps({"x": object()})
    with pytest.raises(ValueError):
        money.dumps(Decimal("NaN"))


def test_loads_never_produces_float() -> None:
    data = money.loads(b'{"amount": 38.5, "n": 3, "e": 1e2}')
    assert data == {"amount": Decimal("38.5"), "n": 3, "e": Decimal("1E+2")}
    assert not any(isinstance(v, float) for v in data.values())
    with pytest.raises(ValueError):
        money.loads(b'{"amount": NaN}')


def test_parse_amount() -> None:
    assert money.parse_amount("1000") == Decimal(1000)
    assert money.parse_amount(" 10.25 ") == Decimal("10.25")
    assert money.parse_amount(5) == Decimal(5)
    for bad in (True, None, 1.5, "abc", "Infinity", [1]):
        with pytest.raises(money.AmountError):
            money.parse_amount(bad)


@pytest.mark.parametrize(
    ("amount", "currency", "ok"),
    [
        ("50000", "KRW", True),
        ("50000.0", "KRW", True),
        ("100.5", "KRW", False),
        ("1200", "JPY", True),
        ("12.5", "JPY", False),
        ("38.5", "USD", True),
        ("10.25", "EUR", True),
        ("10.255", "USD", False),
    ],
)
def test_currency_precision(amount: str, currency: str, ok: bool) -> None:
    assert money.has_valid_precision(Decimal(amount), currency) is ok


def test_token_store_reuse_and_extension() -> None:
    tokens = TokenStore()
    t1, exp1 = tokens.issue(1000.0, 1800)
    assert exp1 == 2800.0
    t2, exp2 = tokens.issue(1500.0, 1800)
    assert (t2, exp2) == (t1, exp1)  # reuse before expiry, same expiry
    t3, exp3 = tokens.issue(2750.0, 1800)  # within the last minute: +5 minutes
    assert (t3, exp3) == (t1, 3100.0)
    assert tokens.is_valid(t1, 3099.0) and not tokens.is_valid(t1, 3100.0)
    t4, exp4 = tokens.issue(3200.0, 1800)  # expired: a new token
    assert t4 != t1 and exp4 == 5000.0
    tokens.cap_expiry(3300.0, 10)
    assert not tokens.is_valid(t4, 3310.0)


def test_cards() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("4000000000000002")
    assert not luhn_ok("4111111111111112")
    assert mask_card_number("4111111111111111") == "411111******1111"
    assert card_brand("4111111111111111", "eximbay") == (None, "VISA")
    assert card_brand("5555555555554444", "kcp")[1] == "KB국민카드"


def _payment(i: int, status: str, started: int, paid: int = 0) -> Payment:
    return Payment(seq=-1, imp_uid=f"imp_{i:012d}", merchant_uid=f"m{i}", amount=Decimal(1000),
                   currency="KRW", status=status, pay_method="card", pg_provider="kcp",
                   started_at=started, paid_at=paid, updated_at=max(started, paid))  # fmt: skip


def test_store_listing_and_reindex() -> None:
    store = PaymentStore()
    store.add_many([_payment(i, "paid", 100 + i, 200 - i) for i in range(10)])
    store.add(_payment(99, "ready", 150))
    total, page = store.list_by_status("paid", 0, 10**9, "paid", 0, 3)
    assert total == 10
    assert [p.paid_at for p in page] == [191, 192, 193]
    total, page = store.list_by_status("paid", 0, 10**9, "-started", 0, 2)
    assert [p.started_at for p in page] == [109, 108]
    # from/to filter on paid_at for paid payments, started_at for ready ones.
    assert store.list_by_status("all", 150, 150, "-started", 0, 10)[0] == 1
    assert store.list_by_status("paid", 195, 200, "-started", 0, 10)[0] == 6  # 195..200

    p = store.get("imp_000000000000")
    assert p is not None

    def cancel(pay: Payment) -> None:
        pay.status, pay.cancelled_at = "cancelled", 500

    store.update(p, cancel)
    assert store.list_by_status("paid", 0, 10**9, "paid", 0, 100)[0] == 9
    assert [x.imp_uid for x in store.list_by_status("cancelled", 500, 500, "-paid", 0, 5)[1]] == ["imp_000000000000"]
    assert store.list_by_status("all", 0, 10**9, "-updated", 0, 100)[0] == 11
