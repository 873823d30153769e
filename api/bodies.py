"""Request bodies read no further than a limit: a client cannot make the API hold, or wait for,
a body of any size. Starlette's `request.body()` reads to the end before we could look at it."""

from __future__ import annotations

from fastapi import Request


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
