"""A job that must never run twice at once, across processes and machines: a `job_locks` row.

    with job_lock.held(rt, "reconcile"):      # raises JobBusy when another process holds it
        ...

Taken with a conditional UPDATE (free, or its lease over), so two processes racing for it cannot
both win, on SQLite and PostgreSQL alike. The holder renews its lease from a background thread
while it works; a holder that died stops renewing and the lease ends. A holder on this machine
whose process is gone is replaced at once (a killed `python -m cli reconcile` need not hold
up its `--resume` for the whole lease).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, or_, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from services.core.backoff import retry_until
from services.core.errors import Conflict
from services.core.models import JobLock, utcnow

if TYPE_CHECKING:
    from services.runtime import Runtime

log = logging.getLogger("chekar.job_lock")

RECONCILE = "reconcile"
LEASE = timedelta(minutes=2)
RENEW_EVERY_SECONDS = 20.0


class JobBusy(Conflict):
    """Another process holds the job's lock."""

    def __init__(self, name: str, holder: str | None, since: datetime | None) -> None:
        self.holder, self.since = holder, since
        started = f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else ""
        super().__init__(f"another {name} run is in progress ({holder or 'unknown holder'}{started}); try again later")


def _where() -> str:
    """This process's host and PID namespace: containers sharing a hostname (host networking,
    replicas named alike) have PID namespaces of their own, where our PIDs mean nothing."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}#{namespace}"


def _identity() -> str:
    return f"{_where()}:{os.getpid()}:{secrets.token_hex(4)}"


def _gone(holder: str) -> bool:
    """Whether `holder` was a process of this host and PID namespace that no longer exists."""
    where, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if where != _where() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: another thread of ours holds it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # exists, owned by someone else
    return False


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def try_acquire(rt: Runtime, name: str, *, lease: timedelta = LEASE) -> str | None:
    """Take the lock; its holder identity, or None when another live holder has it."""
    me = _identity()
    for _ in range(2):
        now = utcnow()
        with rt.db.write() as session:
            row = session.get(JobLock, name)
            if row is None:
                try:
                    with session.begin_nested():
                        session.add(JobLock(name=name, holder=me, acquired_at=now, lease_until=now + lease))
                    return me
                except IntegrityError:
                    continue  # another process made the row meanwhile: take it the usual way
            free = or_(JobLock.holder.is_(None), JobLock.lease_until.is_(None), JobLock.lease_until < now)
            if row.holder and _gone(row.holder):
                free = or_(free, JobLock.holder == row.holder)
            taken = session.execute(
                update(JobLock)
                .where(JobLock.name == name, free)
                .values(holder=me, acquired_at=now, lease_until=now + lease)
                .execution_options(synchronize_session=False)
            )
            return me if _rowcount(taken) == 1 else None
    return None


def holder_of(rt: Runtime, name: str) -> tuple[str | None, datetime | None]:
    """Who holds the lock now (None when free or its lease is over), and since when."""
    with rt.db.read() as session:
        row = session.get(JobLock, name)
        if row is None or not row.holder or row.lease_until is None or row.lease_until < utcnow():
            return None, None
        return row.holder, row.acquired_at


def renew(rt: Runtime, name: str, holder: str, *, lease: timedelta = LEASE) -> bool:
    """Extend the lease; False when the lock is no longer ours."""
    with rt.db.write() as session:
        result = session.execute(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder)
            .values(lease_until=utcnow() + lease)
            .execution_options(synchronize_session=False)
        )
        return _rowcount(result) == 1


def release(rt: Runtime, name: str, holder: str) -> None:
    with rt.db.write() as session:
        session.execute(
            update(JobLock)
            .where(JobLock.name == name, JobLock.holder == holder)
            .values(holder=None, acquired_at=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


@contextmanager
def held(
    rt: Runtime,
    name: str,
    *,
    lease: timedelta = LEASE,
    renew_every: float = RENEW_EVERY_SECONDS,
    wait_seconds: float = 0.0,
) -> Iterator[str]:
    """Hold the lock for the block, renewing its lease meanwhile; raises JobBusy when another
    holder keeps it past `wait_seconds` (0: at once)."""
    holder = retry_until(lambda: try_acquire(rt, name, lease=lease), wait_seconds=wait_seconds)
    if holder is None:
        raise JobBusy(name, *holder_of(rt, name))
    stop = threading.Event()

    def keep() -> None:
        while not stop.wait(renew_every):
            try:
                if not renew(rt, name, holder, lease=lease):
                    log.error("the %s lock was taken from %s (its lease ran out)", name, holder)
                    return
            except SQLAlchemyError as exc:  # the database away for a moment: try again next time
                log.warning("could not renew the %s lock: %s", name, type(exc).__name__)

    renewer = threading.Thread(target=keep, name=f"job-lock-{name}", daemon=True)
    renewer.start()
    try:
        yield holder
    finally:
        stop.set()
        renewer.join(timeout=5)
        try:
            release(rt, name, holder)
        except SQLAlchemyError as exc:  # the lease ends on its own
            log.warning("could not release the %s lock: %s", name, type(exc).__name__)
