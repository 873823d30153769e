"""`GET /healthz`: the database answers, the mode, and the scheduled reconciliation's state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from api.deps import RuntimeDep
from api.errors import error_responses
from api.models import Health, ReconcileScheduleState
from api.responses import ExactJSONResponse
from services.reconciliation import schedule as reconcile_schedule

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=error_responses(503))
def healthz(request: Request, runtime: RuntimeDep) -> ExactJSONResponse:
    with runtime.db.read() as session:
        session.execute(text("select 1"))
    watchdog = getattr(request.app.state, "reconcile_watchdog", None)
    schedule = reconcile_schedule.schedule_state(runtime, watching_since=watchdog.started if watchdog else None)
    return ExactJSONResponse(
        Health(
            status="ok",
            mode=runtime.settings.portone_mode,
            reconcile=ReconcileScheduleState.model_validate(schedule.as_dict()),
        )
    )
