"""job_locks: one row per job that must never run twice at once across processes

Revision ID: 0008_scheduler_lock
Revises: 0007_access
Create Date: 2026-12-07 18:00:00.000000

Reconciliation runs (scheduled, from the dashboard or the command line) take the `reconcile` row
with a conditional UPDATE and hold it with a lease they renew; a holder that died is replaced once
its lease ends (or at once, when it was a process on the same machine that is gone). The same
statements work on SQLite and PostgreSQL. One operator's maker-checker check and the refund it
allows take the `refund-desk:<username>` row the same way (two at once would both pass the threshold).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0008_scheduler_lock"
down_revision: str | None = "0007_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "job_locks",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("acquired_at", services.core.models.UTCDateTime(), nullable=True),
        sa.Column("lease_until", services.core.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_locks")),
    )
    op.bulk_insert(table, [{"name": "reconcile"}])


def downgrade() -> None:
    op.drop_table("job_locks")
