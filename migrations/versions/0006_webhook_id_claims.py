"""webhook_events.accepted_webhook_id: a unique claim on each accepted V2 webhook-id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 07:00:00.000000

Replays were refused by searching earlier rows' `detail`; a unique column makes the refusal hold
even when a replay races the original. Accepted deliveries already stored are backfilled from
their detail marker (`webhook-id="…"; `), the first of each id winning.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARKER = "webhook-id="


def upgrade() -> None:
    op.add_column("webhook_events", sa.Column("accepted_webhook_id", sa.String(length=256), nullable=True))
    events = sa.table(
        "webhook_events",
        sa.column("id", sa.Integer),
        sa.column("result", sa.String),
        sa.column("detail", sa.Text),
        sa.column("accepted_webhook_id", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(events.c.id, events.c.detail)
        .where(events.c.result.in_(["processed", "ignored"]), events.c.detail.like(MARKER + "%"))
        .order_by(events.c.id)
    )
    claimed: set[str] = set()
    for event_id, detail in rows.all():
        quoted = detail[len(MARKER) :].split("; ", 1)[0]
        try:
            webhook_id = json.loads(quoted)
        except ValueError:
            continue
        if isinstance(webhook_id, str) and webhook_id and webhook_id not in claimed:
            claimed.add(webhook_id)
            connection.execute(events.update().where(events.c.id == event_id).values(accepted_webhook_id=webhook_id))
    op.create_index("ix_webhook_events_accepted_webhook_id", "webhook_events", ["accepted_webhook_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_webhook_events_accepted_webhook_id", table_name="webhook_events")
    with op.batch_alter_table("webhook_events") as batch:
        batch.drop_column("accepted_webhook_id")
