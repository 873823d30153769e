"""What V1 and V2 webhook dispatchers share: attempts with retries as asyncio tasks on the server
loop, each attempt recorded on its delivery, and cancellation at reset or shutdown.

Which failures are retried, and after how long, is each version's own (PortOne's documents differ):
`retry_delays_ms` on the delivery, `_retryable` on the dispatcher."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, Generic, Protocol, TypeVar

import httpx


class Attemptable(Protocol):
    url: str | None
    retry_delays_ms: list[int]
    state: str
    attempts: list[dict[str, Any]]


D = TypeVar("D", bound=Attemptable)


class DeliveryLoop(Generic[D]):
    """Subclasses say how one attempt is sent (`_post`) and what extra it records."""

    user_agent = "PortOne-Sandbox-Webhook"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deliveries: list[D] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    async def _post(self, client: httpx.AsyncClient, d: D, record: dict[str, Any]) -> httpx.Response:
        raise NotImplementedError

    def _retryable(self, status_code: int | None) -> bool:
        """Whether a failed attempt (None: no answer, a network error) is sent again."""
        return True

    async def _deliver(self, d: D, first_attempt: int = 0) -> None:
        for attempt in range(first_attempt, 1 + len(d.retry_delays_ms)):
            if attempt > 0:
                d.state = "retrying"
                await asyncio.sleep(d.retry_delays_ms[attempt - 1] / 1000)
            if await self._attempt(d, attempt) or d.state == "failed":
                return

    async def _attempt(self, d: D, attempt: int) -> bool:
        """One POST; True when delivered. Marks ``failed`` after the last attempt."""
        assert d.url is not None
        d.state = "sending"
        started = time.time()
        record: dict[str, Any] = {"attempt": attempt + 1, "at": started}
        try:
            resp = await self._post(self._get_client(), d, record)
            record["status_code"] = resp.status_code
            ok = 200 <= resp.status_code < 300
            if not ok:
                record["error"] = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok = False
            record["status_code"] = None
            record["error"] = f"{type(exc).__name__}: {exc}"
        record["duration_ms"] = round((time.time() - started) * 1000, 1)
        d.attempts.append(record)
        if ok:
            d.state = "delivered"
        elif attempt >= len(d.retry_delays_ms) or not self._retryable(record["status_code"]):
            d.state = "failed"
        return ok

    def _get_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(headers={"User-Agent": self.user_agent}, trust_env=False)
        return self._client

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        """Cancel in-flight deliveries (reset/shutdown)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with self._lock:
            for d in self._deliveries:
                if d.state in ("pending", "sending", "retrying"):
                    d.state = "cancelled"

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
