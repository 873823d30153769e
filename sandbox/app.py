"""FastAPI application factory for the PortOne V1 sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sandbox import controls, v1
from sandbox.config import SandboxConfig
from sandbox.runtime import SandboxRuntime


def create_app(config: SandboxConfig | None = None) -> FastAPI:
    """A sandbox app with its own in-memory state (several may run side by side)."""
    rt = SandboxRuntime.create(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rt.stopping.clear()
        try:
            yield
        finally:
            rt.stopping.set()
            await rt.webhooks.aclose()

    app = FastAPI(
        title="PortOne V1 sandbox",
        description="PortOne (I'mport) V1 REST API emulation plus /sandbox controls.",
        lifespan=lifespan,
    )
    app.state.sandbox = rt
    v1.register(app, rt)
    controls.register(app, rt)
    return app
