"""Webhook delivery (PortOne V1 body: imp_uid, merchant_uid, status, cancellation_id).

Deliveries run as asyncio tasks on the server's loop, so the API answer
never waits for them and there are no extra threads: at shutdown the tasks
are cancelled and the HTTP client closed.

Retries follow PortOne (opi/ko/integration/webhook/readme-v1.md, "웹훅 재 전송이 가능한가요?"):
a webhook is sent once. Only a merchant who asked PortOne's support for redelivery gets retries
(``webhook_retries``): at most 5, a minute apart (``webhook_retry_interval_ms``, shortened in
tests), and only after a network error or a 5xx answer; any other answer ends the delivery.
"""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from sandbox.config import V1_WEBHOOK_RETRIES, ConfigHolder
from sandbox.delivery import DeliveryLoop

FlushOrder = Literal["fifo", "reverse", "shuffle"]


@dataclass
class Delivery:
    id: int
    event: str  # what caused it: checkout, deposit, console_cancel, api_cancel, manual
    body: dict[str, str]
    url: str | None
    content_type: str
    retry_delays_ms: list[int]
    copy: int = 0  # 0 = original, 1..N = webhook_duplicates copies
    state: str = "pending"  # pending|held|sending|retrying|delivered|failed|dropped|no_url|cancelled
    created_at: float = field(default_factory=time.time)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event,
            "imp_uid": self.body.get("imp_uid"),
            "merchant_uid": self.body.get("merchant_uid"),
            "status": self.body.get("status"),
            "cancellation_id": self.body.get("cancellation_id"),
            "body": dict(self.body),
            "url": self.url,
            "content_type": self.content_type,
            "copy": self.copy,
            "state": self.state,
            "created_at": self.created_at,
            "attempts": list(self.attempts),
        }


class WebhookDispatcher(DeliveryLoop[Delivery]):
    user_agent = "PortOne-V1-Sandbox-Webhook"

    def __init__(self, holder: ConfigHolder) -> None:
        super().__init__()
        self._holder = holder
        self._ids = itertools.count(1)
        self._held: list[Delivery] = []
        self._rng = random.Random()
        self.reseed(holder.current.seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng.seed(f"sandbox-webhooks:{seed}")

    # ---- producing -------------------------------------------------------
    def emit(
        self,
        *,
        event: str,
        imp_uid: str,
        merchant_uid: str,
        status: str,
        cancellation_id: str | None = None,
        notice_url: str | None = None,
    ) -> list[Delivery]:
        """Queue a webhook (plus configured duplicates). Must run on the server loop."""
        cfg = self._holder.current
        url = notice_url or cfg.resolved_webhook_url()
        body = {"imp_uid": imp_uid, "merchant_uid": merchant_uid, "status": status}
        if cancellation_id is not None:
            body["cancellation_id"] = cancellation_id
        created: list[Delivery] = []
        to_send: list[Delivery] = []
        with self._lock:
            for copy in range(1 + cfg.webhook_duplicates):
                d = Delivery(
                    id=next(self._ids),
                    event=event,
                    body=dict(body),
                    url=url,
                    content_type=cfg.webhook_content_type,
                    retry_delays_ms=[cfg.webhook_retry_interval_ms] * V1_WEBHOOK_RETRIES if cfg.webhook_retries else [],
                    copy=copy,
                )
                self._deliveries.append(d)
                created.append(d)
                if url is None:
                    d.state = "no_url"  # logged, nowhere to send
                elif cfg.webhook_drop_rate > 0 and self._rng.random() < cfg.webhook_drop_rate:
                    d.state = "dropped"
                elif cfg.webhook_hold:
                    d.state = "held"
                    self._held.append(d)
                else:
                    to_send.append(d)
        for d in to_send:
            self._spawn(self._deliver(d, first_attempt=0))
        return created

    def flush(self, order: FlushOrder = "fifo") -> list[Delivery]:
        """Release held deliveries one after another in the requested order."""
        with self._lock:
            batch, self._held = self._held, []
            if order == "reverse":
                batch.reverse()
            elif order == "shuffle":
                self._rng.shuffle(batch)
            for d in batch:
                d.state = "pending"
        if batch:
            self._spawn(self._deliver_in_order(batch))
        return batch

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [d.view() for d in self._deliveries]

    # ---- delivering ------------------------------------------------------
    async def _deliver_in_order(self, batch: list[Delivery]) -> None:
        # First attempts strictly sequential so the receiver sees this order;
        # retries of failed ones continue independently.
        for d in batch:
            if not await self._attempt(d, 0) and d.state != "failed":
                self._spawn(self._deliver(d, first_attempt=1))

    def _retryable(self, status_code: int | None) -> bool:
        # readme-v1.md: redelivery only after a network error or a 5xx answer.
        return status_code is None or status_code >= 500

    async def _post(self, client: httpx.AsyncClient, d: Delivery, record: dict[str, Any]) -> httpx.Response:
        timeout = self._holder.current.webhook_timeout_seconds
        if d.content_type == "form":
            return await client.post(d.url or "", data=d.body, timeout=timeout)
        return await client.post(d.url or "", json=d.body, timeout=timeout)

    # ---- lifecycle -------------------------------------------------------
    async def reset(self) -> None:
        await self.cancel_all()
        with self._lock:
            self._deliveries.clear()
            self._held.clear()
        self.reseed(self._holder.current.seed)
