"""Large CSV exports, streamed: `GET /api/exports/{kind}.csv?token=...`.

The token is a short-lived, single-use signed link made by the dashboard for its signed-in user
(services.reporting.export_links.issue_link); it names a grant recording the user, the sign-in, the export and
its filters. Every request re-checks the user (still there, still active, same role, still allowed)
and uses the link up (a second opening, or one after the sign-in ended, is refused), then streams
the file chunk by chunk from the database, so no process ever holds a whole export. Every answer,
refusals included, is `Cache-Control: no-store`. Include with `include_export_routes(app)`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.access_log import REDACT_LINK_TOKENS
from api.deps import RuntimeDep
from api.errors import domain_error_response, error_response, error_responses
from services.core.errors import Forbidden, InvalidRequest, NotFound
from services.reporting import export_links, exports

router = APIRouter(tags=["exports"])

NO_STORE = {"Cache-Control": "no-store"}
# A refused link is this route's own answer, 401 with what was wrong with it (most specific first).
_LINK_REFUSALS: tuple[tuple[type[export_links.ExportLinkInvalid], str], ...] = (
    (export_links.ExportLinkExpired, "link_expired"),
    (export_links.ExportLinkUsed, "link_used"),
    (export_links.ExportLinkRevoked, "link_revoked"),
    (export_links.ExportLinkInvalid, "link_invalid"),
)


def _encoded(chunks: Iterator[str]) -> Iterator[bytes]:
    for chunk in chunks:
        yield chunk.encode("utf-8")


@router.get(
    "/api/exports/{kind}.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the CSV (UTF-8 with BOM), streamed"},
        **error_responses(400, 401, 403, 404, 422, 503),
    },
)
async def export_csv(
    kind: str,
    runtime: RuntimeDep,
    token: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response:
    if kind not in tuple(exports.ExportKind):
        return domain_error_response(
            NotFound(f"no export {kind!r}; choose one of {', '.join(exports.ExportKind)}"), headers=NO_STORE
        )
    if not token:
        return error_response(
            401, "unauthorized", "this export needs a signed link (?token=...) made in the dashboard", headers=NO_STORE
        )
    try:
        checked = await run_in_threadpool(export_links.redeem_link, runtime, token, kind=kind)
    except export_links.ExportLinkInvalid as exc:
        code = next(code for refused, code in _LINK_REFUSALS if isinstance(exc, refused))
        return error_response(401, code, str(exc), headers=NO_STORE)
    except (Forbidden, InvalidRequest) as exc:
        return domain_error_response(exc, headers=NO_STORE)
    return StreamingResponse(
        _encoded(exports.stream(runtime, checked, via="link")),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{checked.file_name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def include_export_routes(app: FastAPI) -> None:
    """Add the export routes to our API app (api.app.create_app), and keep their links' tokens out
    of the access log."""
    app.include_router(router)
    logging.getLogger("uvicorn.access").addFilter(REDACT_LINK_TOKENS)  # once: the same filter object
