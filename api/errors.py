"""How the API answers what went wrong: one error body (`{"error": code, "message": ..., ...}`),
one handler for every domain error (services.core.errors.PaymentsError carries its own code and
status), and the statuses each route declares in its OpenAPI description.

A route whose answer depends on its context (a refund's 202, a webhook's outcome, an export
link's 401) says so itself, with `error_response`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError

from api.models import ErrorBody
from api.responses import ExactJSONResponse
from services.core.errors import PaymentsError

log = logging.getLogger("chekar.api")

_DESCRIPTIONS = {
    400: "invalid request (`invalid_request`), or what the error code says",
    401: "a missing or wrong credential",
    403: "not allowed",
    404: "`not_found`",
    409: "the state forbids it",
    413: "the body is over the limit",
    422: "`invalid_request`: a parameter or header is missing or malformed",
    502: "PortOne refused or answered an error",
    503: "PortOne (`portone_unavailable`) or the database (`database_unavailable`) cannot be reached; "
    "nothing was changed",
}


def error_response(
    http_status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> ExactJSONResponse:
    return ExactJSONResponse(ErrorBody(error=code, message=message, **extra), status_code=http_status, headers=headers)


def domain_error_response(exc: PaymentsError, *, headers: dict[str, str] | None = None) -> ExactJSONResponse:
    """The answer to any domain error: its class's code and status, its message and details."""
    return error_response(exc.api_status, exc.code, exc.api_message(), headers=headers, **exc.api_details())


def error_responses(*statuses: int, models: dict[int, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status with the error body, or the model `models` names for it."""
    return {
        status: {"model": (models or {}).get(status, ErrorBody), "description": _DESCRIPTIONS[status]}
        for status in statuses
    }


class InternalTokenRequired(Exception):
    """An internal route called without the right bearer token (api.deps.require_internal_token)."""


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InternalTokenRequired)
    async def _unauthorized(_: Request, __: Exception) -> Response:
        return error_response(401, "unauthorized", "a valid internal API token is required (Authorization: Bearer …)")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {"loc": (), "msg": str(exc)}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        return error_response(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(PaymentsError)
    async def _domain(_: Request, exc: PaymentsError) -> Response:
        return domain_error_response(exc)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_: Request, exc: Exception) -> Response:
        log.error("database unavailable: %s", type(exc).__name__)
        return error_response(
            503, "database_unavailable", "the database cannot be reached right now; nothing was changed, retry"
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
