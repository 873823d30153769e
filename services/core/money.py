"""Exact money: `Decimal` amounts checked against their currency's minor unit.

KRW and JPY have no minor unit, USD and most others have two (ISO 4217). Amounts are
never floats: JSON numbers are parsed straight to `Decimal` and strings are parsed exactly.
Money typed by people (the refund form, a bulk CSV cell, a string amount over the API) is read
by `parse_typed_amount`, one strict grammar: ASCII digits, thousands separators only in whole
groups of three, a decimal point only where the currency has minor units.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

# ISO 4217 minor-unit exponents for the currencies PortOne's PGs settle in (Eximbay's list among
# them). Knowing a currency's unit is not offering it: the fee table says what we sell in.
CURRENCY_EXPONENTS: dict[str, int] = {
    "KRW": 0,
    "JPY": 0,
    "VND": 0,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CNY": 2,
    "HKD": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "TWD": 2,
    "THB": 2,
    "PHP": 2,
    "MYR": 2,
    "RUB": 2,
    "MNT": 2,
    "NZD": 2,
    "AED": 2,
    "MOP": 2,
    "BRL": 2,
    "KZT": 2,
    "NOK": 2,
    "SAR": 2,
    "TRY": 2,
}
MAX_AMOUNT = Decimal("1000000000000")
MAX_TYPED_LENGTH = 40
# 1234 or 1,234,567 (the first group 1 to 3 digits, not starting with 0), then optional decimals.
_TYPED = re.compile(r"(?P<whole>[0-9]+|[1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.(?P<fraction>[0-9]*))?")
_GROUPED = re.compile(r"[0-9,]*[0-9][0-9,.]*")


class InvalidAmount(ValueError):
    """An amount that is not a positive, exact value in its currency."""


def minor_unit_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency.upper()]
    except KeyError:
        raise InvalidAmount(f"unsupported currency {currency!r}") from None


def parse_decimal(value: object) -> Decimal:
    """Parse an int, a Decimal or a decimal string exactly. Floats and bools are refused."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmount("amount must be an exact number (a JSON number parsed exactly, or a decimal string)")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", "")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise InvalidAmount(f"{value!r} is not a number") from None
    else:
        raise InvalidAmount(f"{value!r} is not a number")
    if not result.is_finite():
        raise InvalidAmount(f"{value!r} is not a finite number")
    return result


def validate_amount(value: object, currency: str, *, allow_zero: bool = False) -> Decimal:
    """Return `value` as a Decimal quantized to the currency, refusing extra precision."""
    amount = parse_decimal(value)
    exponent = minor_unit_exponent(currency)
    quantum = Decimal(1).scaleb(-exponent)
    if abs(amount) > MAX_AMOUNT:  # before quantizing: 1e100 has no place at the currency's precision
        raise InvalidAmount(f"amount {value} is too large" if amount > 0 else f"amount must be positive; got {value}")
    quantized = amount.quantize(quantum)
    if quantized != amount:
        unit = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
        raise InvalidAmount(f"{currency.upper()} amounts take {unit}; got {value}")
    if quantized < 0 or (quantized == 0 and not allow_zero):
        raise InvalidAmount(f"amount must be positive; got {value}")
    if quantized > MAX_AMOUNT:
        raise InvalidAmount(f"amount {value} is too large")
    return quantized


def parse_typed_amount(text: str, currency: str) -> Decimal:
    """An amount a person typed, read by one strict grammar, as a positive Decimal at the currency's
    precision: ASCII digits; optionally thousands separators (",") in whole groups of three
    ("1,000,000", never "1,00,000" or "0,05"); a decimal point and at most the currency's minor
    digits only where it has them ("38.50" USD; "100.5" KRW is refused). No signs, exponents,
    spaces inside, currency symbols or other digits. Surrounding spaces are ignored.

    Raises InvalidAmount with a message saying what is wrong."""
    exponent = minor_unit_exponent(currency)
    unit = "no decimals" if exponent == 0 else f"at most {exponent} decimals"
    stripped = text.strip() if isinstance(text, str) else ""
    if len(stripped) > MAX_TYPED_LENGTH:
        raise InvalidAmount(f"amount {stripped[:MAX_TYPED_LENGTH]}… is too large")
    if stripped.lower() in {"nan", "snan", "inf", "infinity", "+inf", "-inf", "+infinity", "-infinity"}:
        raise InvalidAmount(f"{text!r} is not a finite number")
    if stripped.startswith("-") and _GROUPED.fullmatch(stripped[1:]):
        raise InvalidAmount(f"amount must be positive; got {text!r}")
    match = _TYPED.fullmatch(stripped)
    if match is None:
        if _GROUPED.fullmatch(stripped) and stripped.count(".") <= 1 and "," in stripped.partition(".")[0]:
            raise InvalidAmount(
                f"{text!r}: thousands separators (,) must split the whole number into groups of three "
                "(1,000,000); use a decimal point (.) for decimals"
            )
        if stripped.count(".") == 1 and _GROUPED.fullmatch(stripped) and exponent == 0:
            raise InvalidAmount(f"{currency.upper()} amounts take {unit}; got {text!r}")
        raise InvalidAmount(
            f"{text!r} is not a number: write digits only, with optional thousands separators (1,000) "
            + ("and no decimals" if exponent == 0 else f"and up to {exponent} decimals after a point (12.50)")
        )
    fraction = match.group("fraction")
    if fraction is not None and (exponent == 0 or not fraction or len(fraction) > exponent):
        raise InvalidAmount(f"{currency.upper()} amounts take {unit}; got {text!r}")
    digits = match.group("whole").replace(",", "") + ("." + fraction if fraction else "")
    if len(digits.partition(".")[0].lstrip("0")) > len(str(int(MAX_AMOUNT))):
        raise InvalidAmount(f"amount {stripped} is too large")
    return validate_amount(Decimal(digits), currency)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """USD 6.00 -> 600, KRW 50000 -> 50000 (PortOne V2's integer amounts)."""
    return int(validate_amount(amount, currency, allow_zero=True).scaleb(minor_unit_exponent(currency)))


def from_minor_units(units: int, currency: str) -> Decimal:
    return validate_amount(Decimal(units).scaleb(-minor_unit_exponent(currency)), currency, allow_zero=True)


def normalize(amount: Decimal, currency: str) -> Decimal:
    """Quantize an amount read from PortOne or the database to its currency's unit. A currency
    whose unit we do not know (a payment PortOne showed in it, recorded as given) keeps its amount."""
    if currency.upper() not in CURRENCY_EXPONENTS:
        return amount
    return validate_amount(amount, currency, allow_zero=True)


def as_given(amount: Decimal, currency: str) -> Decimal:
    """An amount PortOne reports, never refused: at its currency's unit when that changes nothing,
    otherwise exactly as given (a currency whose unit we do not know, or extra decimals)."""
    exponent = CURRENCY_EXPONENTS.get(currency.upper())
    if exponent is None or not amount.is_finite():
        return amount
    try:
        quantized = amount.quantize(Decimal(1).scaleb(-exponent))
    except InvalidOperation:
        return amount
    return quantized if quantized == amount else amount


def as_given_minor_units(units: int, currency: str) -> Decimal:
    """PortOne V2's integer minor units in major units; for a currency whose unit we do not know,
    the units exactly as given (the raw payload keeps what PortOne sent)."""
    exponent = CURRENCY_EXPONENTS.get(currency.upper())
    if exponent is None:
        return Decimal(units)
    return as_given(Decimal(units).scaleb(-exponent), currency)


def label(amount: Decimal, currency: str) -> str:
    """`50000 KRW`, `38.50 USD`: an amount with its currency, at the currency's precision."""
    return f"{normalize(amount, currency)} {currency.upper()}"
