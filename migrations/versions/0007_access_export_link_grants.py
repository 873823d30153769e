"""export_link_grants: each export link made in the dashboard, single use, bound to its sign-in

Revision ID: 0007_access
Revises: 0006
Create Date: 2026-12-07 17:00:00.000000

Export links were self-contained signed tokens: anyone holding one could use it any number of times
until it expired, whether or not its maker was still signed in. Each link now names a row here,
redeemed once by a conditional UPDATE and revoked when its sign-in ends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import services.core.models

revision: str = "0007_access"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "export_link_grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("masked", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("issued_at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", services.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", services.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", services.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_link_grants")),
    )
    op.create_index(op.f("ix_export_link_grants_session_id"), "export_link_grants", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_export_link_grants_session_id"), table_name="export_link_grants")
    op.drop_table("export_link_grants")
