"""Large CSV exports, streamed: `GET /api/exports/{kind}.csv?token=...`.

The token is a short-lived, single-use signed link made by the dashboard for its signed-in user
(services.reporting.export_links.issue_link); it names a grant recording the user, the sign-in, the export and
its filters. Every request re-checks the user (still there, still active, same role, still allowed)
and uses the link up (a second opening, or one after the sign-in ended, is refused), then streams
the file chunk by chunk from the database, so no process ever holds a whole export. Include with `include_export_routes(app)` (or `router`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.core.errors import Forbidden, InvalidRequest
from services.reporting import export_links, exports
from services.runtime import Runtime

router = APIRouter(tags=["exports"])


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers={"Cache-Control": "no-store"})


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


@router.get(
    "/api/exports/{kind}.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the CSV (UTF-8 with BOM), streamed"},
        401: {"description": "missing, malformed, forged, expired or already used link, or its sign-in ended"},
        403: {"description": "the link is for another export, or its user may no longer export this"},
        404: {"description": "no such export"},
    },
)
async def export_csv(
    kind: str,
    request: Request,
    token: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    if kind not in tuple(exports.ExportKind):
        return _error(404, "not_found", f"no export {kind!r}; choose one of {', '.join(exports.ExportKind)}")
    if not token:
        return _error(401, "unauthorized", "this export needs a signed link (?token=...) made in the dashboard")
    runtime: Runtime = request.app.state.runtime
    try:
        checked = await run_in_threadpool(export_links.redeem_link, runtime, token, kind=kind)
    except export_links.ExportLinkExpired as exc:
        return _error(401, "link_expired", str(exc))
    except export_links.ExportLinkUsed as exc:
        return _error(401, "link_used", str(exc))
    except export_links.ExportLinkRevoked as exc:
        return _error(401, "link_revoked", str(exc))
    except export_links.ExportLinkInvalid as exc:
        return _error(401, "link_invalid", str(exc))
    except Forbidden as exc:
        return _error(403, "forbidden", str(exc))
    except InvalidRequest as exc:
        return _error(400, "invalid_request", str(exc))
    return StreamingResponse(
        _encoded(exports.stream(runtime, checked, via="link")),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{checked.file_name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


class RedactLinkTokens(logging.Filter):
    """An export link's token is a bearer credential (minutes long): uvicorn's access log, which
    records every request line with its query string, gets an export route's whole query string as
    `?[redacted]` (however the parameter's name is spelled: `%74oken=` is `token=` to the route)."""

    _QUERY = re.compile(r"(/api/exports/[^?\s\"]*)\?[^\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "/api/exports/" in a for a in record.args):
            record.args = tuple(self._QUERY.sub(r"\1?[redacted]", a) if isinstance(a, str) else a for a in record.args)
        return True


REDACT_LINK_TOKENS = RedactLinkTokens()


def include_export_routes(app: FastAPI) -> None:
    """Add the export routes to our API app (api.app.create_app), and keep their links' tokens out
    of the access log."""
    app.include_router(router)
    logging.getLogger("uvicorn.access").addFilter(REDACT_LINK_TOKENS)  # once: the same filter object
