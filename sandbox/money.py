"""Money handling: Decimal parsing, currency precision and float-free JSON.

Amounts never pass through ``float``: request bodies are decoded with
``parse_float=Decimal`` and responses are written by a small encoder that
prints a ``Decimal`` as a JSON number (``50000``, ``38.5``, ``10.25``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring
from typing import Any

ZERO = Decimal(0)

# Currencies accepted by the sandbox (the Eximbay list in pg/v1/eximbay.md).
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(
    """KRW USD EUR GBP JPY THB SGD RUB HKD CAD AUD CNY TWD MYR VND PHP MNT NZD AED
    MOP BRL KZT NOK SAR TRY""".split()
)
# Currencies without a minor unit at the PGs (ISO 4217 exponent 0 for KRW/JPY/VND).
# Every other supported currency takes at most two decimals.
_ZERO_DECIMAL: frozenset[str] = frozenset({"KRW", "JPY", "VND"})


class AmountError(ValueError):
    """An amount that is not a finite decimal number."""


def parse_amount(value: Any, field: str = "amount") -> Decimal:
    """Parse an incoming amount (JSON int/Decimal or form string) to Decimal.

    Floats are refused on purpose: they can only appear if a caller bypassed
    the Decimal-aware decoder, and accepting them would hide rounding errors.
    """
    if isinstance(value, bool) or value is None:
        raise AmountError(f"{field} must be a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise AmountError(f"{field} must be a number, got {value!r}") from None
    else:
        raise AmountError(f"{field} must be a number, got {type(value).__name__}")
    if not result.is_finite():
        raise AmountError(f"{field} must be finite")
    return result


def currency_decimals(currency: str) -> int:
    """Number of decimals allowed for ``currency``."""
    return 0 if currency in _ZERO_DECIMAL else 2


def has_valid_precision(amount: Decimal, currency: str) -> bool:
    """True when ``amount`` has no more decimals than ``currency`` allows."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite amounts only
    return exponent >= -currency_decimals(currency)


def decimal_to_json(value: Decimal) -> str:
    """Render a Decimal as a JSON number without going through float."""
    if not value.is_finite():
        raise ValueError("non-finite Decimal cannot be encoded as JSON")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _encode(obj: Any, out: Callable[[str], Any]) -> None:
    if isinstance(obj, str):
        out(encode_basestring(obj))
    elif obj is None:
        out("null")
    elif obj is True:
        out("true")
    elif obj is False:
        out("false")
    elif isinstance(obj, int):
        out(int.__repr__(obj))
    elif isinstance(obj, Decimal):
        out(decimal_to_json(obj))
    elif isinstance(obj, dict):
        out("{")
        first = True
        for key, val in obj.items():
            if not first:
                out(",")
            first = False
            out(encode_basestring(str(key)))
            out(":")
            _encode(val, out)
        out("}")
    elif isinstance(obj, (list, tuple)):
        out("[")
        for i, item in enumerate(obj):
            if i:
                out(",")
            _encode(item, out)
        out("]")
    elif isinstance(obj, float):
        # Only non-money values (e.g. a config fraction) may be floats.
        out(float.__repr__(obj))
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> str:
    """Serialise ``obj`` to JSON, Decimals as exact JSON numbers."""
    parts: list[str] = []
    _encode(obj, parts.append)
    return "".join(parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(text: str | bytes) -> Any:
    """Parse JSON with non-integral numbers as Decimal (never float)."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
