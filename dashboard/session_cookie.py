"""The sign-in cookie, set by the dashboard's own server (routes of st.App, see dashboard_server.py).

Streamlit talks to the browser over a websocket and cannot set a cookie; `st.context.cookies` only
reads the ones sent with the websocket's handshake. So the sign-in form starts a server-side sign-in
(services.auth.dashboard_sessions) with a one-time code, and a small script on the page posts that
code here; this route exchanges it for the sign-in's token and sets it as an HttpOnly, SameSite=Lax
cookie (Secure over HTTPS). Every later page load and websocket carries it, in every tab and to
every dashboard process on the same database. The token never appears in a URL or in page script.

Both routes take only same-origin JSON posts (a cross-site form cannot send `application/json`
without a preflight, and the Origin must be ours), so another site cannot sign someone in or out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dashboard.runtime import get_runtime
from services.auth import dashboard_sessions

COOKIE = "chekar_session"
START_PATH = "/session/start"
END_PATH = "/session/end"


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a request's Origin is the dashboard's own (host and port, as the Host header names them).
    Browsers send the sign-in cookie to every port of a host, so the port must match too."""
    if not origin or not host:
        return False
    return urlsplit(origin).netloc.lower() == host.strip().lower()


def _same_origin_json(request: Request) -> bool:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True  # same-origin fetch from some browsers omits it; cross-site posts always send it
    return same_origin(origin, request.headers.get("host", ""))


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def start(request: Request) -> Response:
    if not _same_origin_json(request):
        return JSONResponse({"ok": False}, status_code=403)
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"ok": False}, status_code=400)
    code = body.get("code") if isinstance(body, dict) else None
    if not isinstance(code, str) or not code or len(code) > 200:
        return JSONResponse({"ok": False}, status_code=400)
    rt = get_runtime()
    try:
        token = await run_in_threadpool(dashboard_sessions.redeem_handoff, rt, code)
    except dashboard_sessions.SessionEnded:
        return JSONResponse({"ok": False}, status_code=401)
    response = JSONResponse({"ok": True})
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(rt.settings.session_max_hours * 3600),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    return response


async def end(request: Request) -> Response:
    """Forget the cookie (sign-out); the sign-in it names is ended too, if it was still live."""
    if not _same_origin_json(request):
        return JSONResponse({"ok": False}, status_code=403)
    token = request.cookies.get(COOKIE)
    if token:
        await run_in_threadpool(_end_by_token, token)
    response = JSONResponse({"ok": True})
    response.headers["Cache-Control"] = "no-store"
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax", secure=_secure(request))
    return response


def _end_by_token(token: str) -> None:
    rt = get_runtime()
    try:
        live = dashboard_sessions.resolve(rt, token=token)
    except dashboard_sessions.SessionEnded:
        return
    dashboard_sessions.end(rt, live.id)


ROUTES = [Route(START_PATH, start, methods=["POST"]), Route(END_PATH, end, methods=["POST"])]
