"""The payment backend (FastAPI): orders, payment-complete, refunds, exports and PortOne's webhooks.

Routes (api/routes/, one router per resource) are thin: they parse input, call `services/`, and
answer with the response models of api/models.py; domain errors become HTTP answers in one place
(api/errors.py). Request bodies with money are parsed with Decimal (never float).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.request_log import RequestLog
from api.responses import ExactJSONResponse
from api.routes import health, orders, payments, refunds, webhooks
from api.routes.exports import include_export_routes
from services.core.config import get_settings
from services.notifications.dispatch import Dispatcher
from services.reconciliation import schedule as reconcile_schedule
from services.runtime import Runtime, build_runtime
from services.system.health import PortOneProbeCache
from services.webhooks import v2 as webhooks_v2
from services.webhooks.batcher import WebhookBatcher


def create_app(runtime: Runtime | None = None, *, schema_public: bool | None = None) -> FastAPI:
    """The API. `schema_public=False` serves no OpenAPI document or viewers: a live payments backend
    need not describe itself to whoever asks. Unset, it is public except in live mode, so
    `create_app` with no arguments is the factory uvicorn's workers call (api/__main__.py)."""
    settings = runtime.settings if runtime is not None else get_settings()
    if schema_public is None:
        schema_public = not settings.is_live

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or build_runtime()
        app.state.webhook_batcher = WebhookBatcher(app.state.runtime)
        # Sends queued notifications here too: the scheduler's dispatcher dies with the scheduler, and
        # "the scheduler stopped" must still be told (the `notify` lock keeps one sender at a time).
        app.state.notify_dispatcher = Dispatcher(app.state.runtime).start()
        # Raises reconcile_stale when no scheduled reconciliation finishes in time (the scheduler died).
        app.state.reconcile_watchdog = reconcile_schedule.Watchdog(
            app.state.runtime, on_stale=app.state.notify_dispatcher.wake
        ).start()
        yield
        app.state.reconcile_watchdog.close()
        app.state.notify_dispatcher.close()
        app.state.webhook_batcher.close()
        if owned:
            app.state.runtime.close()

    hidden: dict[str, Any] = {} if schema_public else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(
        title="Chekar payments API",
        version="1.0",
        lifespan=lifespan,
        default_response_class=ExactJSONResponse,
        **hidden,
    )

    app.add_middleware(RequestLog)
    # /readyz asks PortOne at most every 30 s per process, however often it is probed.
    app.state.portone_probes = PortOneProbeCache()
    install_error_handlers(app)
    include_export_routes(app)
    # Outside sandbox mode, V2 webhooks only with a real V2 webhook secret (never the sandbox's published one).
    if webhooks_v2.v2_webhooks_enabled(settings):
        app.include_router(webhooks.v2_router)
    for router in (health.router, orders.router, payments.router, refunds.router, webhooks.router):
        app.include_router(router)
    return app
