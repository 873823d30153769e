"""leases: named leases across processes (one operator's maker-checker decisions run one at a time)

Revision ID: 0008_leases
Revises: 0007_access
Create Date: 2026-12-07 17:45:00.000000

Two refunds by one operator decided at the same moment both read the same "refunded alone in the
window" total and both passed under the approval threshold. The check and the refund it allows now
run under a lease named after the operator.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.models

revision: str = "0008_leases"
down_revision: str | None = "0007_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("expires_at", services.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
