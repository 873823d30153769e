"""refunds.refund_bank / refund_holder / refund_account_masked: a virtual-account refund's account

Revision ID: 0009_vaccount
Revises: 0008_scheduler_lock
Create Date: 2026-12-07 18:00:00.000000

PortOne pays a virtual-account refund into the customer's account, given with the cancel
(opi/ko/integration/cancel/v1/basic.md). We keep the bank code, the holder and the number masked
(the full number is personal data and is needed only in the cancel call itself).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_vaccount"
down_revision: str | None = "0008_scheduler_lock"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("refund_bank", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("refund_holder", sa.String(length=50), nullable=True))
        batch.add_column(sa.Column("refund_account_masked", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("refund_account_masked")
        batch.drop_column("refund_holder")
        batch.drop_column("refund_bank")
