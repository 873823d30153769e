"""`GET /healthz`: the process answers (liveness: nothing else is asked). `GET /readyz`: the database
answers at the schema head, PortOne accepts our credentials (asked at most every 30 s per process)
and scheduled reconciliation is not stale: 200, or 503 naming what failed, in public words only."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import RuntimeDep
from api.models import Liveness, Readiness, ReadinessCheck, ReconcileScheduleState
from api.responses import ExactJSONResponse
from services.system.health import PortOneProbeCache, readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness)
def healthz(runtime: RuntimeDep) -> ExactJSONResponse:
    return ExactJSONResponse(Liveness(status="ok", mode=runtime.settings.portone_mode))


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a check failed: `failed` names it, `checks` says how"}},
)
def readyz(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
    state = request.app.state
    probes: PortOneProbeCache = state.portone_probes  # made by create_app
    watchdog = getattr(state, "reconcile_watchdog", None)  # made by the lifespan: the API's start
    health = readiness(runtime, probes=probes, watching_since=watchdog.started if watchdog else None)
    checks = health.checks
    body = Readiness(
        status="ready" if health.ok else "not_ready",
        mode=health.mode,
        checks={check.name: ReadinessCheck(ok=check.ok, state=check.state) for check in checks},
        failed=[check.name for check in checks if not check.ok],
        reconcile=ReconcileScheduleState.model_validate(health.schedule.as_dict()) if health.schedule else None,
    )
    return ExactJSONResponse(body, status_code=200 if health.ok else 503)
