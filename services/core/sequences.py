"""Cutting long lists into pieces: SQL `IN (...)` lists and PortOne's batched look-ups both have limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

SQL_IN_CHUNK = 500  # values per SQL IN list: far below SQLite's and PostgreSQL's parameter limits


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`items` in consecutive pieces of at most `size` (Python 3.12's itertools.batched, for 3.11)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]
