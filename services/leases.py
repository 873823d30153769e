"""Named leases across processes: `with hold(rt, "refund-desk:kim"): ...` runs the block while no
other process holds that name. Taken by a conditional UPDATE (portable across SQLite and PostgreSQL);
a holder that died loses the lease when it expires."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError

from services.errors import Conflict
from services.models import Lease, utcnow
from services.runtime import Runtime

FIRST_PAUSE = 0.02  # seconds between polls of a busy lease, doubling up to MAX_PAUSE
MAX_PAUSE = 0.25


def _take(rt: Runtime, name: str, owner: str, lease_seconds: float) -> bool:
    now = utcnow()
    with rt.db.write() as session:
        if session.scalar(select(Lease.name).where(Lease.name == name)) is None:
            try:
                with session.begin_nested():
                    session.add(Lease(name=name, owner=None, expires_at=None))
            except IntegrityError:  # another process made the row first: fine, take it below
                pass
        result = session.execute(
            update(Lease)
            .where(Lease.name == name, (Lease.owner.is_(None)) | (Lease.expires_at < now))
            .values(owner=owner, expires_at=now + timedelta(seconds=lease_seconds))
            .execution_options(synchronize_session=False)
        )
        return bool(cast(CursorResult[Any], result).rowcount)


class Held:
    """A lease held: `renew()` pushes its expiry on (long work renews as it goes)."""

    def __init__(self, rt: Runtime, name: str, owner: str, lease_seconds: float) -> None:
        self._rt, self.name, self.owner, self._seconds = rt, name, owner, lease_seconds

    def renew(self) -> None:
        with self._rt.db.write() as session:
            session.execute(
                update(Lease)
                .where(Lease.name == self.name, Lease.owner == self.owner)
                .values(expires_at=utcnow() + timedelta(seconds=self._seconds))
                .execution_options(synchronize_session=False)
            )


@contextmanager
def hold(rt: Runtime, name: str, *, wait_seconds: float, lease_seconds: float, busy: str) -> Iterator[Held]:
    """Hold lease `name` for the block; raises Conflict(`busy`) after waiting `wait_seconds`."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + wait_seconds
    pause = FIRST_PAUSE
    while not _take(rt, name, owner, lease_seconds):
        if time.monotonic() > deadline:
            raise Conflict(busy)
        time.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter, not security
        pause = min(pause * 2, MAX_PAUSE)
    try:
        yield Held(rt, name, owner, lease_seconds)
    finally:
        with rt.db.write() as session:
            session.execute(
                update(Lease)
                .where(Lease.name == name, Lease.owner == owner)
                .values(owner=None, expires_at=None)
                .execution_options(synchronize_session=False)
            )
