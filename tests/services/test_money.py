from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.money import InvalidAmount, from_minor_units, parse_decimal, to_minor_units, validate_amount


def test_currency_precision() -> None:
    assert validate_amount("50000", "KRW") == Decimal(50000)
    assert validate_amount("38.5", "USD") == Decimal("38.50")
    with pytest.raises(InvalidAmount, match="no decimals"):
        validate_amount("100.5", "KRW")
    with pytest.raises(InvalidAmount, match="at most 2 decimals"):
        validate_amount("0.001", "USD")
    with pytest.raises(InvalidAmount, match="unsupported currency"):
        validate_amount("1", "XYZ")


@pytest.mark.reliability(
    area="hostile input",
    case="money parsing: floats, NaN, infinities, junk, too many decimals",
    outcome="refused; Decimal only",
)
@pytest.mark.parametrize("bad", [1.5, True, None, "1e", "inf", "NaN", object()])
def test_parse_refuses_inexact_or_non_numbers(bad: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_decimal(bad)


def test_minor_units() -> None:
    assert to_minor_units(Decimal("6.00"), "USD") == 600
    assert to_minor_units(Decimal("50000"), "KRW") == 50000
    assert from_minor_units(1420, "USD") == Decimal("14.20")


@pytest.mark.reliability(
    area="hostile input",
    case="money in minor units (hypothesis)",
    outcome="exact round trip for KRW and USD",
)
@given(st.integers(min_value=1, max_value=10**11), st.sampled_from(["KRW", "USD", "JPY", "EUR"]))
def test_minor_units_round_trip(units: int, currency: str) -> None:
    assert to_minor_units(from_minor_units(units, currency), currency) == units
