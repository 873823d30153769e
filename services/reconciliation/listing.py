"""PortOne's side of a reconciliation run: the window listed in slices, payments fetched in batches.

The window is cut into slices: at most 90 days (PortOne's listing limit), and about
`slice_payments` payments each (sized from PortOne's own totals), in time order. A producer
thread (`produce`) lists each slice from `GET /payments/status/all`, pages fetched concurrently;
every call to PortOne waits its turn at one `Pacer`.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.core.errors import GatewayRejected
from services.core.models import utcnow
from services.core.sequences import chunked
from services.portone.types import GatewayPayment, PaymentPage
from services.runtime import Runtime

PAGE_SIZE = 1000  # PortOne's maximum `limit`
MAX_WINDOW_SECONDS = 90 * 86400  # PortOne lists at most 90 days per request
BATCH_SIZE = 100  # imp_uid[] per GET /payments
LISTING_SORT = "started"  # oldest first: payments started during the run land on the last page

T = TypeVar("T")


class Pacer:
    """At most `per_second` calls per second across threads (evenly spaced; 0 = unpaced)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


def at_second(second: int) -> datetime:
    return datetime.fromtimestamp(second, tz=UTC)


def second_of(moment: datetime) -> int:
    return math.floor(moment.timestamp())


def _split(first: int, last: int, parts: int) -> list[tuple[int, int]]:
    """[first, last] (inclusive seconds) cut into `parts` nearly equal ranges."""
    parts = max(1, min(parts, last - first + 1))
    length = last - first + 1
    bounds = [first + (length * i) // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(parts)]


def _windows(first: int, last: int) -> list[tuple[int, int]]:
    """[first, last] cut into ranges PortOne lists in one request (at most 90 days)."""
    return _split(first, last, math.ceil((last - first + 1) / MAX_WINDOW_SECONDS))


@dataclass
class Slice:
    first: int  # unix seconds, inclusive
    last: int
    payments: dict[str, GatewayPayment]
    total: int
    fetched_at: datetime
    unreadable: dict[str | None, str]  # rows PortOne listed that we cannot read: id (if any) -> why


class PortOneLister:
    """One run's calls to PortOne: paced, spread over one thread pool, stopped with `stop`."""

    def __init__(
        self,
        rt: Runtime,
        *,
        run_id: int,
        max_requests_per_second: float,
        concurrency: int,
        page_size: int,
        slice_payments: int,
    ) -> None:
        self.rt = rt
        self.page_size = page_size
        self.slice_payments = slice_payments
        self.pacer = Pacer(max_requests_per_second)
        self.pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix=f"reconcile-{run_id}")
        self.stop = threading.Event()
        self.expected = 0  # PortOne's count for the window (known after the first calls)

    def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self.stop.is_set():
            raise InterruptedError("the run is stopping")
        self.pacer.wait()
        return func(*args, **kwargs)

    def _page(self, first: int, last: int, page: int, limit: int) -> PaymentPage:
        return self._call(
            self.rt.gateway.list_payments,
            status="all",
            since=at_second(first),
            until=at_second(last),
            page=page,
            limit=limit,
            sorting=LISTING_SORT,
        )

    def _later_page(self, first: int, last: int, page: int, limit: int) -> PaymentPage:
        try:
            return self._page(first, last, page, limit)
        except GatewayRejected:  # the window shrank while we paged: past the last page now
            return PaymentPage(payments=(), total=0, next_page=None)

    def fetch_many(self, imp_uids: Sequence[str]) -> dict[str, GatewayPayment]:
        """PortOne's records of these payments (absent: PortOne has no such payment)."""
        futures = [
            self.pool.submit(self._call, self.rt.gateway.get_payments, list(chunk))
            for chunk in chunked(imp_uids, BATCH_SIZE)
        ]
        return {payment.imp_uid: payment for future in futures for payment in future.result()}

    def _slices(self, first: int, last: int) -> Iterator[Slice]:
        windows = _windows(first, last)
        totals = list(self.pool.map(lambda w: self._page(w[0], w[1], 1, 1).total, windows))
        self.expected = sum(totals)
        for (start, end), total in zip(windows, totals, strict=True):
            for part in _split(start, end, math.ceil(total / self.slice_payments) or 1):
                yield from self._listed(*part)

    def _listed(self, first: int, last: int) -> Iterator[Slice]:
        fetched_at = utcnow()
        size = min(self.page_size, PAGE_SIZE)
        head = self._page(first, last, 1, size)
        if head.total > 2 * self.slice_payments and last > first:
            for part in _split(first, last, math.ceil(head.total / self.slice_payments)):
                yield from self._listed(*part)
            return
        futures = [
            self.pool.submit(self._later_page, first, last, page, size)
            for page in range(2, math.ceil(head.total / size) + 1)
        ]
        payments = {p.imp_uid: p for p in head.payments}
        unreadable = dict(head.unreadable)
        page = head
        for future in futures:
            page = future.result()
            payments.update((p.imp_uid, p) for p in page.payments)
            unreadable.update(page.unreadable)
        # The total may be a lower bound (V2's page.totalCount may count only the page it came with):
        # pages past the planned ones are followed while the last one says more may come.
        while page.next_page is not None and (page.payments or page.unreadable):
            page = self._later_page(first, last, page.next_page, size)
            payments.update((p.imp_uid, p) for p in page.payments)
            unreadable.update(page.unreadable)
        yield Slice(first, last, payments, head.total, fetched_at, unreadable)

    def produce(self, first: int, last: int, out: queue.Queue[object]) -> None:
        """List [first, last] slice by slice into `out`, then None (or the exception); in its own thread."""
        try:
            for piece in self._slices(first, last):
                self._put(out, piece)
            self._put(out, None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(out, exc)

    def _put(self, out: queue.Queue[object], item: object) -> None:
        while not self.stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
