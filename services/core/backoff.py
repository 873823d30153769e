"""Polling something busy (a lock, a lease) without crowding its holder.

Every try is a write, so many waiters polling fast would take the CPU and connections the holder
needs to finish: between tries, a jittered pause doubling from FIRST_PAUSE up to MAX_PAUSE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FIRST_PAUSE = 0.02  # seconds between the first tries, doubling up to MAX_PAUSE
MAX_PAUSE = 0.25


def retry_until(attempt: Callable[[], T | None], *, wait_seconds: float) -> T | None:
    """`attempt()` until it returns something other than None, for up to `wait_seconds` (0: one
    try); None when it never did."""
    deadline = time.monotonic() + wait_seconds
    pause = FIRST_PAUSE
    while (result := attempt()) is None:
        if time.monotonic() >= deadline:
            return None
        time.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter, not security
        pause = min(pause * 2, MAX_PAUSE)
    return result
