"""Request bodies read no further than a limit: a client cannot make the API hold, or wait for,
a body of any size. Starlette's `request.body()` reads to the end before we could look at it.

JSON bodies are read here, not by FastAPI, so that the limit holds and numbers are parsed straight
to Decimal (never float); `body_schema` still describes them in the OpenAPI document."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from services.core import jsonutil
from services.core.errors import InvalidRequest

MAX_JSON_BODY = 16 * 1024
Body = TypeVar("Body", bound=BaseModel)


async def read_capped(request: Request, limit: int) -> tuple[bytes, bool]:
    """At most `limit` + 1 bytes of the body, and whether it is over `limit`.

    Reading stops at the first byte past the limit (the answer is then a 413 and uvicorn closes
    the connection), so a body of gigabytes, or one that never ends, costs `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[: limit + 1], True
    return b"".join(chunks), False


async def read_json_body(request: Request, model: type[Body]) -> Body:
    """The body as `model`; InvalidRequest (400) when too large, not a JSON object, or invalid."""
    raw, too_large = await read_capped(request, MAX_JSON_BODY)
    if too_large:
        raise InvalidRequest(f"request body too large (at most {MAX_JSON_BODY} bytes)")
    try:
        data = jsonutil.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidRequest(f"{where}: {first['msg']}") from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body read with `read_json_body`."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
