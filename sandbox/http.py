"""Request parsing and response helpers shared by the routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sandbox import money


class JSONResponse(Response):
    """JSON response written by :func:`sandbox.money.dumps` (Decimal-exact)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return money.dumps(content).encode("utf-8")


class V1Error(Exception):
    """Answer a V1 call with a PortOne error envelope."""

    def __init__(self, status: int, message: str, code: int = -1) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class BadRequest(Exception):
    """A malformed request body."""


def envelope(response: Any = None, *, code: int = 0, message: str | None = None, status: int = 200) -> JSONResponse:
    """PortOne's ``{code, message, response}`` envelope."""
    return JSONResponse({"code": code, "message": message, "response": response}, status_code=status)


async def read_params(request: Request) -> dict[str, Any]:
    """Body parameters from a JSON or form-encoded body (amounts stay exact).

    JSON numbers with a fraction arrive as Decimal; form values are strings
    and are parsed as Decimal where an amount is expected.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.form()
        try:
            return {k: v for k, v in form.items() if isinstance(v, str)}
        finally:
            await form.close()
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = money.loads(raw)
    except ValueError as exc:  # JSONDecodeError and rejected constants
        raise BadRequest(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("JSON body must be an object")
    return data


def opt_str(params: dict[str, Any], name: str) -> str | None:
    """A string parameter; empty or missing -> None."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            raise BadRequest(f"{name} must be a string")
    value = value.strip()
    return value or None


def base_url(request: Request, public_base_url: str | None) -> str:
    """Absolute base (no trailing slash) for receipt URLs."""
    if public_base_url:
        return public_base_url.rstrip("/")
    return str(request.base_url).rstrip("/")
