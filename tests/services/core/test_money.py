from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.money import (
    InvalidAmount,
    from_minor_units,
    parse_decimal,
    parse_typed_amount,
    to_minor_units,
    validate_amount,
)


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


# -- money typed by people (forms, CSV cells, API strings): one strict grammar --------------------


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("50000", "KRW", Decimal(50000)),
        ("50,000", "KRW", Decimal(50000)),
        ("1,000,000", "KRW", Decimal(1000000)),
        ("  7000 ", "KRW", Decimal(7000)),
        ("38.5", "USD", Decimal("38.50")),
        ("1,234.56", "USD", Decimal("1234.56")),
        ("12", "USD", Decimal("12.00")),
    ],
)
def test_typed_amounts_people_write(text: str, currency: str, expected: Decimal) -> None:
    assert parse_typed_amount(text, currency) == expected


@pytest.mark.parametrize(
    ("text", "currency", "fragment"),
    [
        ("1e100", "KRW", "digits"),  # was a 500 (quantize overflow)
        ("1E+4", "KRW", "digits"),
        ("0,05", "KRW", "groups of three"),  # was read as 5
        ("1,00,000", "KRW", "groups of three"),  # was read as 100000
        ("10,0", "KRW", "groups of three"),
        (",100", "KRW", "groups of three"),
        ("100.5", "KRW", "no decimals"),
        ("100.", "KRW", "no decimals"),
        ("1.005", "USD", "at most 2 decimals"),
        ("0,05", "USD", "groups of three"),
        ("-1", "KRW", "positive"),
        ("+1", "KRW", "digits"),
        ("0", "KRW", "positive"),
        ("NaN", "KRW", "not a finite number"),
        ("Infinity", "USD", "not a finite number"),
        ("１０００", "KRW", "digits"),  # full-width digits: Decimal() would take them
        ("1 000", "KRW", "digits"),
        ("₩1000", "KRW", "digits"),
        ("", "KRW", "digits"),
        ("9" * 40, "KRW", "too large"),
        ("1,000,000,000,001", "KRW", "too large"),
    ],
)
def test_typed_amounts_outside_the_grammar_are_refused(text: str, currency: str, fragment: str) -> None:
    with pytest.raises(InvalidAmount, match=fragment):
        parse_typed_amount(text, currency)


@pytest.mark.parametrize("huge", [Decimal("1e100"), Decimal("-1e100"), "1e100", 10**40])
def test_validate_amount_refuses_huge_values_instead_of_crashing(huge: object) -> None:
    with pytest.raises(InvalidAmount):
        validate_amount(huge, "KRW")


@given(
    units=st.integers(min_value=1, max_value=10**12),
    currency=st.sampled_from(["KRW", "USD", "JPY", "EUR"]),
    grouped=st.booleans(),
)
def test_typed_amounts_round_trip(units: int, currency: str, grouped: bool) -> None:
    """What the dashboard shows (with or without thousands separators) reads back exactly."""
    amount = from_minor_units(units, currency)
    if amount > Decimal("1000000000000"):
        return
    text = f"{amount:,f}" if grouped else f"{amount:f}"
    assert parse_typed_amount(text, currency) == amount


@given(text=st.text(max_size=20), currency=st.sampled_from(["KRW", "USD"]))
def test_typed_amounts_are_a_positive_exact_value_or_refused(text: str, currency: str) -> None:
    """Anything at all: an InvalidAmount, or a positive amount at the currency's precision whose
    digits are exactly the text's digits (no separator or decimal point silently dropped)."""
    try:
        value = parse_typed_amount(text, currency)
    except InvalidAmount as exc:
        assert str(exc)
        return
    assert value > 0 and value == validate_amount(value, currency)
    digits_in = text.strip().replace(",", "")
    assert Decimal(digits_in) == value
    assert set(text.strip()) <= set("0123456789,.")
