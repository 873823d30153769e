"""purge_horizons: how far back the retention purge has deleted each table's rows

Revision ID: 0012_purge_horizons
Revises: 0011_dashboard_sessions
Create Date: 2026-12-07 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.core.models import UTCDateTime

revision: str = "0012_purge_horizons"
down_revision: str | None = "0011_dashboard_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "purge_horizons",
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("purged_before", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_purge_horizons")),
    )


def downgrade() -> None:
    op.drop_table("purge_horizons")
