"""payment search indexes: covering date-range indexes, buyer prefix-search indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COVER_COLUMNS = [
    "started_at",
    "id",
    "currency",
    "status",
    "verified",
    "amount",
    "cancel_amount",
    "paid_at",
    "pg_provider",
    "pay_method",
    "buyer_name",
    "buyer_email",
    "buyer_tel",
]
PAID_COVER_COLUMNS = [
    "paid_at",
    "id",
    "currency",
    "status",
    "verified",
    "amount",
    "cancel_amount",
    "pg_provider",
    "pay_method",
    "buyer_name",
    "buyer_email",
    "buyer_tel",
]
PREFIX_COLUMNS = ("buyer_email", "buyer_tel", "buyer_name")


def upgrade() -> None:
    # Plain CREATE INDEX on both databases (no table rebuild on SQLite). On a large PostgreSQL
    # table run this in a quiet hour or create the indexes CONCURRENTLY by hand first.
    op.create_index("ix_payments_started_at_cover", "payments", COVER_COLUMNS, unique=False)
    op.create_index("ix_payments_paid_at_cover", "payments", PAID_COVER_COLUMNS, unique=False)
    for column in PREFIX_COLUMNS:
        op.create_index(
            f"ix_payments_{column}",
            "payments",
            [column],
            unique=False,
            postgresql_ops={column: "varchar_pattern_ops"},
        )


def downgrade() -> None:
    for column in reversed(PREFIX_COLUMNS):
        op.drop_index(f"ix_payments_{column}", table_name="payments")
    op.drop_index("ix_payments_paid_at_cover", table_name="payments")
    op.drop_index("ix_payments_started_at_cover", table_name="payments")
