"""The retention purge and `reconcile --resume`, on real SQLite and PostgreSQL: a purge never deletes
a failed run while it is being resumed, and resuming a run the purge deleted says so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services.core.errors import NotFound
from services.core.models import ReconciliationRun, utcnow
from services.reconciliation.engine import RunProgress, start_run
from services.runtime import Runtime
from services.system.retention import purge
from tests.factories import SandboxControl, make_runtime
from tests.services.reconciliation.test_engine import FAST, OPERATOR


def _failed_run(rt: Runtime, *, days_ago: int) -> int:
    """A run that failed `days_ago` days ago (PortOne timed out), with a later run by the same person."""
    now = utcnow()
    with rt.db.write() as session:
        failed = ReconciliationRun(
            window_start=now - timedelta(days=days_ago + 1),
            window_end=now - timedelta(days=days_ago),
            started_by=OPERATOR.username,
            status="failed",
            started_at=now - timedelta(days=days_ago),
            finished_at=now - timedelta(days=days_ago),
            counts={},
            checkpoint={"repair": False, "active_seconds": 1.0},
            error="GatewayError: PortOne timed out",
        )
        session.add(failed)
        session.flush()
        run_id = failed.id
    start_run(rt, since=now - timedelta(hours=1), actor=OPERATOR, options=FAST)  # the newest run stays anyway
    return run_id


def test_a_failed_run_being_resumed_is_not_purged(database_url: str, sandbox: SandboxControl) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, retention_days=1)
    try:
        run_id = _failed_run(rt, days_ago=2)
        purged: list[int] = []

        def purge_while_resuming(progress: RunProgress) -> None:
            if progress.phase == "starting":  # the resume has begun; its first slice is not stored yet
                purged.append(purge(rt).deleted["reconciliation_runs"])

        summary = start_run(rt, resume_run_id=run_id, actor=OPERATOR, options=FAST, progress=purge_while_resuming)
        assert purged == [0]
        assert summary.run_id == run_id
        assert summary.status == "finished"
        with rt.db.read() as session:
            assert session.scalar(select(ReconciliationRun.status).where(ReconciliationRun.id == run_id)) == "finished"
    finally:
        rt.close()


def test_resuming_a_purged_run_says_it_was_purged(database_url: str, sandbox: SandboxControl) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, retention_days=1)
    try:
        run_id = _failed_run(rt, days_ago=2)
        assert purge(rt).deleted["reconciliation_runs"] == 1
        with pytest.raises(NotFound, match="RETENTION_DAYS") as gone:
            start_run(rt, resume_run_id=run_id, actor=OPERATOR, options=FAST)
        assert f"#{run_id}" in str(gone.value)
        with pytest.raises(NotFound) as never:
            start_run(rt, resume_run_id=run_id + 1000, actor=OPERATOR, options=FAST)
        assert "RETENTION_DAYS" not in str(never.value)  # a run that never existed was not purged
    finally:
        rt.close()
