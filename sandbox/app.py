"""FastAPI application factory for the PortOne sandbox (V1 and V2 side by side)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import controls, v1, v2, v2_controls
from sandbox.config import ConfigHolder, SandboxConfig
from sandbox.runtime import SandboxRuntime
from sandbox.v2_config import V2Config


def create_app(config: SandboxConfig | None = None, v2_config: V2Config | None = None) -> FastAPI:
    """A sandbox app with its own in-memory state (several may run side by side)."""
    rt = SandboxRuntime.create(config)
    rt2 = v2.V2Runtime.create(v2_config, rt.stopping)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rt.stopping.clear()
        try:
            yield
        finally:
            rt.stopping.set()
            await rt.webhooks.aclose()
            await rt2.webhooks.aclose()

    app = FastAPI(
        title="PortOne sandbox",
        description="PortOne V1 (I'mport) and V2 REST API emulation plus /sandbox controls.",
        lifespan=lifespan,
    )
    app.state.sandbox = rt
    app.state.sandbox_v2 = rt2
    v1.register(app, rt)
    controls.register(app, rt)
    v2_controls.register(app, rt2)
    v2.register(app, rt2)  # in front of V1's routes: see sandbox/v2.py on the shared paths
    app.add_middleware(DropConnection, holder=rt.holder)
    return app


class ConnectionDropped(Exception):
    """Raised after the answer's headers went out: the server closes the connection mid-answer."""


class DropConnection:
    """ASGI middleware for the `drop_next` fault: the answer is cut off after its headers."""

    def __init__(self, app: ASGIApp, holder: ConfigHolder) -> None:
        self.app, self.holder = app, holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        only = self.holder.current.drop_only
        if (
            scope["type"] == "http"
            and not scope["path"].startswith("/sandbox")
            and (not only or f"{scope['method']} {scope['path']}".startswith(only))
            and self.holder.decrement("drop_next")
        ):
            # The request is read whole first: closing on unread bytes would make the kernel send a
            # reset, racing the half answer (the client then sees a reset instead of a cut answer).
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b'{"code":0,', "more_body": True})
            raise ConnectionDropped("sandbox fault drop_next: connection dropped mid-answer")
        await self.app(scope, receive, send)
