"""Settings of the sandbox's PortOne V2 side (``GET``/``POST /sandbox/v2/config``)."""

from __future__ import annotations

import os
import threading
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_V2_API_SECRET = "sandbox-v2-api-secret"
DEFAULT_V2_STORE_ID = "store-00000000-0000-4000-8000-00000000c4e7"
# base64 of b"chekar-sandbox-v2-webhook-secret": a public sandbox value, never a real secret.
DEFAULT_V2_WEBHOOK_SECRET = "whsec_Y2hla2FyLXNhbmRib3gtdjItd2ViaG9vay1zZWNyZXQ="
# PortOne V2 retries a failed webhook up to 5 times, waiting 1, 4, 16, 64 and 256 minutes
# (opi/ko/integration/webhook/readme-v2.md, "웹훅 재전송 정책"; PortOne adds a random jitter of a
# size it does not publish: the sandbox keeps the exact schedule).
V2_WEBHOOK_RETRY_DELAYS_MS = [minutes * 60_000 for minutes in (1, 4, 16, 64, 256)]


class V2Config(BaseModel):
    """``api_secret``, ``store_id``, ``webhook_secret`` and ``webhook_url`` left as ``None`` fall back
    to ``PORTONE_V2_API_SECRET``, ``PORTONE_V2_STORE_ID``, ``PORTONE_V2_WEBHOOK_SECRET`` and
    ``SANDBOX_V2_WEBHOOK_URL`` at the time they are used, then to the sandbox defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_secret: str | None = None
    store_id: str | None = None
    webhook_secret: str | None = None

    # Checkout: a pre-registered paymentId refuses another amount or currency.
    enforce_pre_register: bool = True

    # Card numbers whose payments the card's acquirer cancels only in full (a foreign-issued or
    # point-combined card, help/core-service/how-to-use/impossible-partial-cancel.md): a partial
    # cancel of one is answered 502 PG_PROVIDER, nothing applied.
    partial_cancel_refused_cards: list[str] = Field(default_factory=list, max_length=100)

    # Webhooks (V2 sends them for API cancels too, unless the request says skipWebhook)
    webhook_url: str | None = None
    webhook_on_api_cancel: bool = True
    # PortOne's schedule by default (readme-v2.md); tests shorten it.
    webhook_retry_delays_ms: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: list(V2_WEBHOOK_RETRY_DELAYS_MS), max_length=20
    )
    webhook_timeout_seconds: float = Field(5.0, gt=0)

    # What GET /payments answers as page.totalCount: "total" (every matching payment) or "returned"
    # (the payments on this page: PageInfo.totalCount's title in schema/v2.openapi.json is
    # "실제 반환된 객체 수"). Clients must page right under either reading.
    total_count: Literal["total", "returned"] = "total"

    # Fault injection (V2 REST endpoints only)
    fail_next: int = Field(0, ge=0)
    fault_body: Literal["json", "html"] = "json"  # html: a proxy's 502 page, not JSON
    cancel_timeout_after_apply: int = Field(0, ge=0)
    cancel_hang_seconds: float = Field(10.0, ge=0)
    # The next N API cancels are accepted as REQUESTED (an asynchronous cancel, as some PGs do):
    # nothing changes until POST /sandbox/v2/payments/{id}/pending-cancellations/complete.
    cancel_requested_next: int = Field(0, ge=0)
    # The next N API cancels are answered 502 PG_PROVIDER (PgProviderError, the cancel endpoint's
    # 502 in v2.openapi.json): after applying the cancel when cancel_pg_provider_error_applied,
    # else without applying it. Either way the client cannot tell from the answer.
    cancel_pg_provider_error_next: int = Field(0, ge=0)
    cancel_pg_provider_error_applied: bool = False
    # The next N V2 calls are answered, once applied, with a body a client cannot read (see
    # sandbox.faults.garble); garble_only: "METHOD path" or its template, e.g.
    # "POST /payments/{paymentId}/cancel".
    garble_next: int = Field(0, ge=0)
    garble_only: str | None = None
    garble_body: Literal["not_json", "wrong_shape", "missing_fields"] = "not_json"
    garble_status: int | None = Field(None, ge=100, le=599)
    # missing_fields takes out these dotted paths instead of the money fields (e.g. ["response.amount"]).
    garble_fields: list[str] | None = None

    def resolved_api_secret(self) -> str:
        return self.api_secret or os.environ.get("PORTONE_V2_API_SECRET") or DEFAULT_V2_API_SECRET

    def resolved_store_id(self) -> str:
        return self.store_id or os.environ.get("PORTONE_V2_STORE_ID") or DEFAULT_V2_STORE_ID

    def resolved_webhook_secret(self) -> str:
        return self.webhook_secret or os.environ.get("PORTONE_V2_WEBHOOK_SECRET") or DEFAULT_V2_WEBHOOK_SECRET

    def resolved_webhook_url(self) -> str | None:
        return self.webhook_url or os.environ.get("SANDBOX_V2_WEBHOOK_URL") or None

    def public_view(self) -> dict[str, Any]:
        data = self.model_dump()
        data["api_secret"] = "***"
        data["webhook_secret"] = "***"
        data["store_id"] = self.resolved_store_id()
        data["webhook_url"] = self.resolved_webhook_url()
        return data


class V2ConfigHolder:
    def __init__(self, initial: V2Config) -> None:
        self._initial = initial
        self._current = initial
        self._lock = threading.Lock()

    @property
    def current(self) -> V2Config:
        return self._current

    def update(self, patch: dict[str, Any]) -> V2Config:
        """Validate and apply a partial update; raises pydantic.ValidationError."""
        with self._lock:
            self._current = V2Config.model_validate({**self._current.model_dump(), **patch})
            return self._current

    def decrement(
        self,
        name: Literal[
            "fail_next",
            "cancel_timeout_after_apply",
            "cancel_requested_next",
            "garble_next",
            "cancel_pg_provider_error_next",
        ],
    ) -> bool:
        with self._lock:
            value = getattr(self._current, name)
            if value <= 0:
                return False
            self._current = self._current.model_copy(update={name: value - 1})
            return True

    def reset(self) -> V2Config:
        with self._lock:
            self._current = self._initial
            return self._current
