"""SQL expressions shared by every room that sums money in the database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, cast, func

from services.core.money import normalize


def minor_sum(column: Any) -> ColumnElement[int]:
    """SUM of an amount in hundredths as an exact integer (every currency here has <= 2 decimals)."""
    return cast(func.coalesce(func.sum(func.round(column * 100)), 0), BigInteger)


def from_hundredths(value: object, currency: str) -> Decimal:
    """A `minor_sum` result back as an exact amount in `currency`."""
    hundredths = Decimal(int(value))  # type: ignore[call-overload]
    try:
        return normalize(hundredths.scaleb(-2), currency)
    except ValueError:  # a currency we do not know the precision of: keep two decimals
        return hundredths.scaleb(-2)
