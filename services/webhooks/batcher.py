"""Verifies webhook deliveries that arrive together as one batch, while each sender still gets
its own answer (200 processed, 400 rejected, 503 retry later).

A burst of deliveries (PortOne's retries, end-of-day batches) would otherwise cost one PortOne
look-up and several transactions each. One worker thread takes whatever has queued while the
previous batch was being processed (up to `max_batch`), so a lone delivery waits for nothing and
a burst shares one look-up (`GET /payments?imp_uid[]=`) and one recording transaction.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

from services.runtime import Runtime
from services.webhooks.v1 import Delivery, WebhookOutcome, receive_many

MAX_BATCH = 100  # PortOne V1 answers at most 100 imp_uids per look-up
LINGER_SECONDS = 0.005  # how long a batch waits for company once a delivery arrives


class WebhookBatcher:
    def __init__(self, rt: Runtime, *, max_batch: int = MAX_BATCH, linger_seconds: float = LINGER_SECONDS) -> None:
        self._rt = rt
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._queue: queue.SimpleQueue[tuple[Delivery, Future[WebhookOutcome]] | None] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-batcher", daemon=True)
        self._thread.start()

    def submit(self, delivery: Delivery) -> Future[WebhookOutcome]:
        if self._closed.is_set():
            raise RuntimeError("the webhook batcher is closed")
        future: Future[WebhookOutcome] = Future()
        self._queue.put((delivery, future))
        return future

    def close(self, timeout: float = 30) -> None:
        """Finish what is queued, then stop."""
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _take_batch(self) -> tuple[list[tuple[Delivery, Future[WebhookOutcome]]], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch, stop = [first], False
        deadline = time.monotonic() + self._linger
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._take_batch()
            if not batch:
                continue
            try:
                outcomes = receive_many(self._rt, [delivery for delivery, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting sender
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                future.set_result(outcome)
