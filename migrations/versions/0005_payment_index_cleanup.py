"""payment indexes: drop the two paid_at indexes the covering one makes redundant; partial indexes
for unverified payments (the forgery filter)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 07:00:00.000000

Checked with EXPLAIN (ANALYZE) at 200,000 payments on SQLite and PostgreSQL over every query of
ours on payments.paid_at (overview, reports, exports with and without a status, the payments
page on the paid-time basis): without ix_payments_paid_at and ix_payments_status_paid_at each one
uses ix_payments_paid_at_cover (same leading column) at the same speed or faster; PostgreSQL even
preferred the narrow ix_payments_paid_at with table look-ups over the covering index-only scan,
twice as slow for the overview and the page's totals. Two fewer indexes to write on every payment.

Unverified payments (forgeries, payments without a matching order) are rare; the forgery filter
walked the whole date range to find them. The partial indexes hold only them. Their WHERE is how
the queries say it (`verified IS 0` on SQLite, `verified IS FALSE` on PostgreSQL: what SQLAlchemy
writes for `Payment.verified.is_(False)`), so both planners can prove a query matches them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNVERIFIED = {"sqlite_where": sa.text("verified IS 0"), "postgresql_where": sa.text("verified IS FALSE")}


def upgrade() -> None:
    op.drop_index("ix_payments_status_paid_at", table_name="payments")
    op.drop_index("ix_payments_paid_at", table_name="payments")
    op.create_index("ix_payments_unverified_started_at", "payments", ["started_at", "id"], **UNVERIFIED)
    op.create_index("ix_payments_unverified_paid_at", "payments", ["paid_at", "id"], **UNVERIFIED)


def downgrade() -> None:
    op.drop_index("ix_payments_unverified_paid_at", table_name="payments")
    op.drop_index("ix_payments_unverified_started_at", table_name="payments")
    op.create_index("ix_payments_paid_at", "payments", ["paid_at"], unique=False)
    op.create_index("ix_payments_status_paid_at", "payments", ["status", "paid_at"], unique=False)
