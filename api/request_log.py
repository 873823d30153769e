"""One log line per API request: request id, method, route template, status, duration.

A pure ASGI middleware (no body buffering, streaming answers stream on). The route is the matched
template (`/api/payments/{imp_uid}/refunds`), never the raw path or query: identifiers, buyers' data
and export link tokens stay out of the log. The request id is the caller's `X-Request-ID` when it is a
plain token (letters, digits, `.`, `_`, `-`; at most 64), else a new one; either way it is echoed in the
answer's `X-Request-ID` header so a caller can quote it.

Under `make serve` (LOG_FORMAT=json) the line is a JSON object with those fields and uvicorn's own
access log is off; under `make run` the root logger has no handler and uvicorn's access log remains.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("chekar.request")

HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "(no route)"


def request_id_of(scope: Scope) -> str:
    """The caller's request id when it is a plain token, else a fresh one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The matched route's path template; never the path the caller sent. FastAPI's routes leave
    themselves in the scope; Starlette's (the OpenAPI document, the docs) only their endpoint."""
    route: Any = scope.get("route")
    if route is None and scope.get("endpoint") is not None:
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", [])
        route = next((r for r in routes if getattr(r, "endpoint", None) is scope["endpoint"]), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        started = time.perf_counter()
        status = 500  # what the caller gets when the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append(HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            method = str(scope.get("method", ""))[:16]
            route = route_template(scope)
            log.info(
                "%s %s %s %.1fms",
                method,
                route,
                status,
                duration_ms,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
