"""Access tokens issued by ``POST /users/getToken``."""

from __future__ import annotations

import secrets
import threading

from starlette.requests import Request


class TokenStore:
    """PortOne-like token lifecycle.

    A request while the current token is valid returns the same token; if it
    comes within the last minute of its life the expiry is pushed back by five
    minutes (schema: "기존 만료시간 전 1분이내 요청 시 5분 연장"). Both numbers
    are scaled with ``token_ttl_seconds`` (60/1800 and 300/1800 of it) so a
    short test TTL keeps the same shape.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._expiry: dict[str, float] = {}
        self._current: str | None = None

    def issue(self, now: float, ttl: int) -> tuple[str, float]:
        with self._lock:
            token = self._current
            if token is not None:
                expiry = self._expiry.get(token, 0.0)
                if now < expiry:
                    if expiry - now <= ttl * 60 / 1800:
                        expiry += ttl * 300 / 1800
                        self._expiry[token] = expiry
                    return token, expiry
            self._drop_expired(now)
            token = secrets.token_hex(20)
            expiry = now + ttl
            self._expiry[token] = expiry
            self._current = token
            return token, expiry

    def is_valid(self, token: str, now: float) -> bool:
        with self._lock:
            expiry = self._expiry.get(token)
            return expiry is not None and now < expiry

    def cap_expiry(self, now: float, ttl: int) -> None:
        """Shorten live tokens to ``ttl`` from now (used when the TTL is lowered)."""
        with self._lock:
            limit = now + ttl
            for token, expiry in self._expiry.items():
                if expiry > limit:
                    self._expiry[token] = limit

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()
            self._current = None

    def _drop_expired(self, now: float) -> None:
        for token in [t for t, e in self._expiry.items() if e <= now]:
            del self._expiry[token]


def tokens_from_request(request: Request) -> list[str]:
    """Candidate tokens: ``Authorization: Bearer t``, ``Authorization: t``, ``X-ImpTokenHeader: t``."""
    found: list[str] = []
    auth = request.headers.get("authorization")
    if auth:
        value = auth.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        if value:
            found.append(value)
    legacy = request.headers.get("x-imptokenheader")
    if legacy and legacy.strip():
        found.append(legacy.strip())
    return found
