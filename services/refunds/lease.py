"""The payment's refund lease: one refund (or settlement) of a payment at a time.

A lease on the payment row itself (`refund_lock_owner`, `refund_lock_expires_at`), taken with one
conditional UPDATE so two processes racing for it cannot both win, on SQLite and PostgreSQL alike.
A holder that died stops mattering once its lease expires (`refund_lock_lease_seconds`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, update

from services.core.backoff import retry_until
from services.core.errors import Conflict
from services.core.models import Payment, utcnow
from services.runtime import Runtime


def _take(rt: Runtime, payment_id: int, owner: str) -> bool:
    """Take the lease when it is free or expired; False when another holder has it."""
    now = utcnow()
    with rt.db.write() as session:
        result = session.execute(
            update(Payment)
            .where(
                Payment.id == payment_id,
                (Payment.refund_lock_owner.is_(None)) | (Payment.refund_lock_expires_at < now),
            )
            .values(
                refund_lock_owner=owner,
                refund_lock_expires_at=now + timedelta(seconds=rt.settings.refund_lock_lease_seconds),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(cast(CursorResult[Any], result).rowcount)


@contextmanager
def payment_lease(rt: Runtime, payment_id: int) -> Iterator[str]:
    """Hold the payment's refund lease; waits for another holder up to the configured time."""
    owner = uuid.uuid4().hex
    taken = retry_until(lambda: _take(rt, payment_id, owner) or None, wait_seconds=rt.settings.refund_lock_wait_seconds)
    if taken is None:
        raise Conflict("another refund of this payment is in progress; try again in a moment")
    try:
        yield owner
    finally:
        with rt.db.write() as session:
            session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.refund_lock_owner == owner)
                .values(refund_lock_owner=None, refund_lock_expires_at=None)
                .execution_options(synchronize_session=False)
            )
