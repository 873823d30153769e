"""JSON for stored payloads: Decimals kept exact (integral ones as numbers, others as strings)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from decimal import Decimal
from typing import Any


def _default(value: object) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


# A per-process random marker, so no string a user typed can turn into a number.
_TOKEN = secrets.token_hex(8)
_NUMBER_MARK = f"\u0000{_TOKEN}:"
_MARKED = re.compile('"\\\\u0000' + _TOKEN + ':(-?[0-9.]+)"')


def _exact_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return f"{_NUMBER_MARK}{value:f}"
    return _default(value)


def dumps_exact(value: Any) -> str:
    """JSON with Decimals written as JSON numbers digit for digit (38.50 stays 38.50), no float."""
    text = json.dumps(value, default=_exact_default, ensure_ascii=False, separators=(",", ":"))
    return _MARKED.sub(r"\1", text)
