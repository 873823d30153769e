"""Refund operators as separate OS processes, for tests/reliability/test_concurrent_refunds.py.

Each operator is its own process with its own runtime (its own engine, connections and, on
SQLite, its own in-process write lock): only the database and PortOne are shared, as between two
dashboard servers. The processes are forked from a multiprocessing fork server that has already
imported the services, so starting one costs milliseconds rather than seconds of imports.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.auth.access import Actor
from services.core.config import Settings
from services.core.errors import PaymentsError
from services.core.models import Role
from services.refunds import desk as refund_desk
from services.refunds.outcomes import outcome_of_error
from services.runtime import build_runtime
from tests.factories import INTERNAL_TOKEN

START_WAIT_SECONDS = 120
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


@dataclass(frozen=True)
class OperatorJob:
    database_url: str
    sandbox_url: str
    imp_uid: str
    operator: str
    amount: str
    keys: tuple[str, ...]
    clicks: int  # each intent (key) is sent this many times at once: a double click is 2


def _operate(job: OperatorJob, start: Any, out: Path) -> None:
    """Wait at `start` (a barrier shared by every operator), send, write the answers to `out`."""
    rt = build_runtime(
        Settings(
            database_url=job.database_url,
            portone_mode="sandbox",
            portone_api_url=job.sandbox_url,
            internal_api_token=INTERNAL_TOKEN,
            portone_timeout_seconds=10.0,
        )
    )
    actor = Actor(job.operator, Role.OPERATOR)

    def send(key: str) -> dict[str, object]:
        try:
            answer = refund_desk.request_refund(
                rt, actor=actor, imp_uid=job.imp_uid, amount=job.amount, reason="동시 환불 시험", idempotency_key=key
            )
        except PaymentsError as exc:
            outcome, message, refund_id = str(outcome_of_error(exc)), str(exc), None
        else:
            outcome, message = str(answer.outcome), answer.message
            refund_id = answer.refund.refund_id if answer.refund else None
        return {"key": key, "refund_id": refund_id, "outcome": outcome, "message": message, "pid": os.getpid()}

    try:
        calls = [key for key in job.keys for _ in range(job.clicks)]
        start.wait(timeout=START_WAIT_SECONDS)
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            answers = list(pool.map(send, calls))
    finally:
        rt.close()
    out.write_text(json.dumps(answers))


def run_operators(jobs: list[OperatorJob], workdir: Path, *, timeout: float = 180) -> list[dict[str, Any]]:
    """Run every job in its own process, all released at once; the answers of all of them."""
    start = _CONTEXT.Barrier(len(jobs))
    outputs = [workdir / f"operator-{index}.json" for index in range(len(jobs))]
    processes = [
        _CONTEXT.Process(target=_operate, args=(job, start, out), name=job.operator)
        for job, out in zip(jobs, outputs, strict=True)
    ]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    failed = [(p.name, p.exitcode) for p in processes if p.exitcode != 0]
    assert not failed, f"operator processes failed: {failed}"
    return [answer for out in outputs for answer in json.loads(out.read_text())]
