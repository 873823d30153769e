"""Fault injection for V1 calls, the garbled-answer fault of both versions, and the log of V1
calls received."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from starlette.responses import Response

from sandbox import money
from sandbox.config import ConfigHolder

GarbleBody = Literal["not_json", "wrong_shape", "missing_fields"]
NOT_JSON_PAGE = b"<html><body><h1>200 OK</h1><p>upstream answered</p></body></html>"


class FaultInjector:
    """Decides, per V1 call, whether to answer with an injected error.

    ``error_rate`` draws from a ``random.Random`` seeded with ``seed`` so the
    same sequence of calls fails the same way on every run.
    """

    def __init__(self, holder: ConfigHolder) -> None:
        self._holder = holder
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.reseed(holder.current.seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(f"sandbox-errors:{seed}")

    async def delay(self, stopping: threading.Event, call: str = "") -> None:
        """Wait ``latency_ms`` before answering ``call`` ("METHOD path"), if ``latency_only`` admits it."""
        config = self._holder.current
        if config.latency_ms > 0 and _targets(config.latency_only, call):
            await sleep_unless(stopping, config.latency_ms / 1000)

    def injected_status(self, call: str = "") -> int | None:
        """500 while ``fail_next`` lasts, else 503 with probability ``error_rate``; only for the
        calls ``fail_only`` admits (all when it is unset)."""
        if not _targets(self._holder.current.fail_only, call):
            return None
        if self._holder.decrement("fail_next"):
            return 500
        rate = self._holder.current.error_rate
        if rate > 0:
            with self._lock:
                if self._rng.random() < rate:
                    return 503
        return None

    def take_cancel_hang(self) -> float | None:
        """Seconds to hold this cancel's response, if ``cancel_timeout_after_apply`` is armed."""
        if self._holder.decrement("cancel_timeout_after_apply"):
            return self._holder.current.cancel_hang_seconds
        return None


class _GarbleConfig(Protocol):
    @property
    def garble_only(self) -> str | None: ...

    @property
    def garble_body(self) -> GarbleBody: ...

    @property
    def garble_status(self) -> int | None: ...

    @property
    def garble_fields(self) -> list[str] | None: ...


class _GarbleHolder(Protocol):
    @property
    def current(self) -> _GarbleConfig: ...

    def decrement(self, field: Literal["garble_next"]) -> bool: ...


def take_garble(holder: _GarbleHolder, *calls: str) -> tuple[GarbleBody, int | None, Sequence[str] | None] | None:
    """``(variant, status, fields)`` when this call's answer is to be garbled (``garble_next`` armed and
    ``garble_only`` admitting one of ``calls``, e.g. the actual "METHOD path" and its template)."""
    config = holder.current
    if not any(_targets(config.garble_only, call) for call in calls):
        return None
    if not holder.decrement("garble_next"):
        return None
    return config.garble_body, config.garble_status, config.garble_fields


def garble(
    response: Response,
    variant: GarbleBody,
    status: int | None,
    fields: Sequence[str] | None,
    money_fields: Sequence[str],
) -> Response:
    """The answer PortOne computed (the request already applied), its body replaced by one a
    client cannot read, with ``status`` (None: the answer's own status):

    - ``not_json``: an HTML page (a proxy's, say) instead of JSON;
    - ``wrong_shape``: valid JSON of the wrong shape (the answer wrapped in a list);
    - ``missing_fields``: the answer with ``fields`` (dotted paths; None: ``money_fields``) taken out.
    """
    code = response.status_code if status is None else status
    if variant == "not_json":
        return Response(NOT_JSON_PAGE, status_code=code, media_type="text/html")
    data = money.loads(bytes(response.body))
    if variant == "wrong_shape":
        data = [data]
    else:
        for dotted in money_fields if fields is None else fields:
            *parents, name = dotted.split(".")
            holder = data
            for parent in parents:  # a number steps into a list: "response.list.0.amount"
                if isinstance(holder, list) and parent.isdigit():
                    holder = holder[int(parent)] if int(parent) < len(holder) else None
                else:
                    holder = holder.get(parent) if isinstance(holder, dict) else None
            if isinstance(holder, dict):
                holder.pop(name, None)
    return Response(money.dumps(data).encode(), status_code=code, media_type="application/json")


def _targets(only: str | None, call: str) -> bool:
    """Whether a fault narrowed to calls starting with ``only`` applies to ``call`` ("METHOD path")."""
    return not only or call.startswith(only)


async def sleep_unless(stopping: threading.Event, seconds: float) -> None:
    """Sleep, but wake up early when the sandbox is stopping."""
    deadline = time.monotonic() + seconds
    while not stopping.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(left, 0.05))


@dataclass
class CallRecord:
    at: float
    endpoint: str
    method: str
    path: str
    status: int | None = None
    outcome: str | None = None  # "fault_500", "fault_503", "unauthorized", ...


@dataclass
class CallLog:
    """Counters of V1 calls plus the detailed list of cancel requests."""

    counts: Counter[str] = field(default_factory=Counter)
    recent: deque[CallRecord] = field(default_factory=lambda: deque(maxlen=2000))
    cancels: list[dict[str, Any]] = field(default_factory=list)
    console_cancels: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, endpoint: str, method: str, path: str) -> CallRecord:
        record = CallRecord(at=time.time(), endpoint=endpoint, method=method, path=path)
        with self.lock:
            self.counts[endpoint] += 1
            self.recent.append(record)
        return record

    def add_cancel(self, entry: dict[str, Any], console: bool = False) -> None:
        with self.lock:
            (self.console_cancels if console else self.cancels).append(entry)

    def clear(self) -> None:
        with self.lock:
            self.counts.clear()
            self.recent.clear()
            self.cancels.clear()
            self.console_cancels.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            cancels = list(self.cancels)
            return {
                "total": sum(self.counts.values()),
                "counts": dict(self.counts),
                "cancels": cancels,
                "cancel_summary": dict(Counter(c["outcome"] for c in cancels)),
                "console_cancels": list(self.console_cancels),
                "recent": [
                    {
                        "at": r.at,
                        "endpoint": r.endpoint,
                        "method": r.method,
                        "path": r.path,
                        "status": r.status,
                        "outcome": r.outcome,
                    }
                    for r in self.recent
                ],
            }
