"""Sandbox configuration: behaviour switches and fault injection knobs."""

from __future__ import annotations

import os
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_IMP_KEY = "sandbox-imp-key"
DEFAULT_IMP_SECRET = "sandbox-imp-secret"
# PortOne V1 redelivers a webhook at most 5 times, a minute apart, and only for merchants who asked
# its support to (opi/ko/integration/webhook/readme-v1.md).
V1_WEBHOOK_RETRIES = 5
V1_WEBHOOK_RETRY_INTERVAL_MS = 60_000


class SandboxConfig(BaseModel):
    """All runtime settings; ``POST /sandbox/config`` patches a copy of it.

    ``imp_key``/``imp_secret``/``webhook_url`` left as ``None`` fall back to the
    environment (``PORTONE_IMP_KEY``, ``PORTONE_IMP_SECRET``,
    ``SANDBOX_WEBHOOK_URL``) at the time they are used.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_assignment=True)

    imp_key: str | None = None
    imp_secret: str | None = None
    token_ttl_seconds: int = Field(1800, ge=0)

    # Checkout behaviour
    enforce_prepare: bool = True
    # PortOne refuses a new payment for a merchant_uid that is already paid.
    allow_duplicate_merchant_uid: bool = False
    # Listing window limit of GET /payments/status (PortOne: 90 days); 0 = unlimited.
    max_search_days: int = Field(90, ge=0)
    # Absolute base for receipt URLs; None = the base URL of the request.
    public_base_url: str | None = None

    # Card numbers whose payments the card's acquirer cancels only in full: a foreign-issued or a
    # point-combined card (help/core-service/how-to-use/impossible-partial-cancel.md). V1 payments;
    # V2 has the same key in sandbox/v2_config.py.
    partial_cancel_refused_cards: list[str] = Field(default_factory=list, max_length=100)

    # Webhooks
    webhook_url: str | None = None
    webhook_content_type: Literal["json", "form"] = "json"
    # PortOne V1 sends each webhook once; redelivery (after a network error or a 5xx, up to 5 times a
    # minute apart) is switched on by PortOne's support on request (readme-v1.md). Tests shorten the minute.
    webhook_retries: bool = False
    webhook_retry_interval_ms: int = Field(V1_WEBHOOK_RETRY_INTERVAL_MS, ge=0)
    webhook_duplicates: int = Field(0, ge=0, le=100)
    webhook_drop_rate: float = Field(0.0, ge=0.0, le=1.0)
    webhook_hold: bool = False
    webhook_timeout_seconds: float = Field(5.0, gt=0)
    # PortOne V1 sends no webhook for cancels made through the REST API (only
    # for console cancels); switch on to get one anyway.
    webhook_on_api_cancel: bool = False

    # Page 1 of a listing with nothing in it (GET /payments/status, findAll): "ok" answers 200 with an
    # empty list; "out_of_range" answers 400 like any page past the data, which the schema allows
    # (schema/v1.openapi.json, 400: "데이터 범위를 넘어선 page인 경우"). Clients must cope with both.
    empty_first_page: Literal["ok", "out_of_range"] = "ok"

    # Fault injection (V1 endpoints only)
    seed: int = 0
    latency_ms: int = Field(0, ge=0)
    latency_only: str | None = None  # "POST /payments/cancel": delay only calls whose "METHOD path" starts so
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    fail_next: int = Field(0, ge=0)
    fail_only: str | None = None  # "GET /payments/status": error_rate and fail_next only for calls starting so
    # The next N PortOne API calls (any version; /sandbox controls excluded) get their answer cut
    # off: headers sent, then the connection dropped, as a reset mid-answer looks to a client.
    drop_next: int = Field(0, ge=0)
    drop_only: str | None = None  # "POST /payments/cancel": only calls whose "METHOD path" starts so
    cancel_timeout_after_apply: int = Field(0, ge=0)
    cancel_hang_seconds: float = Field(10.0, ge=0)
    # The next N V1 calls are answered, once applied, with a body a client cannot read (see
    # sandbox.faults.garble): "not_json", "wrong_shape" or "missing_fields", with garble_status
    # (None: PortOne's own status); garble_only narrows it like fail_only.
    garble_next: int = Field(0, ge=0)
    garble_only: str | None = None
    garble_body: Literal["not_json", "wrong_shape", "missing_fields"] = "not_json"
    garble_status: int | None = Field(None, ge=100, le=599)
    # missing_fields takes out these dotted paths instead of the money fields (e.g. ["response.amount"]).
    garble_fields: list[str] | None = None

    def credentials(self) -> tuple[str, str]:
        """The (imp_key, imp_secret) pair accepted by ``/users/getToken``."""
        key = self.imp_key or os.environ.get("PORTONE_IMP_KEY") or DEFAULT_IMP_KEY
        secret = self.imp_secret or os.environ.get("PORTONE_IMP_SECRET") or DEFAULT_IMP_SECRET
        return key, secret

    def resolved_webhook_url(self) -> str | None:
        return self.webhook_url or os.environ.get("SANDBOX_WEBHOOK_URL") or None

    def public_view(self) -> dict[str, Any]:
        """Config as returned by ``GET /sandbox/config`` (secret masked)."""
        data = self.model_dump()
        key, _secret = self.credentials()
        data["imp_key"] = key
        data["imp_secret"] = "***"
        data["webhook_url"] = self.resolved_webhook_url()
        return data


class ConfigHolder:
    """Thread-safe holder of the current (immutable) config."""

    def __init__(self, initial: SandboxConfig) -> None:
        self._initial = initial
        self._current = initial
        self._lock = threading.Lock()

    @property
    def current(self) -> SandboxConfig:
        return self._current

    def update(self, patch: dict[str, Any]) -> SandboxConfig:
        """Validate and apply a partial update; raises pydantic.ValidationError."""
        with self._lock:
            merged = {**self._current.model_dump(), **patch}
            self._current = SandboxConfig.model_validate(merged)
            return self._current

    def decrement(self, field: Literal["fail_next", "cancel_timeout_after_apply", "drop_next", "garble_next"]) -> bool:
        """Atomically consume one unit of a counter; False when it is already 0."""
        with self._lock:
            value = getattr(self._current, field)
            if value <= 0:
                return False
            self._current = self._current.model_copy(update={field: value - 1})
            return True

    def reset(self) -> SandboxConfig:
        with self._lock:
            self._current = self._initial
            return self._current
