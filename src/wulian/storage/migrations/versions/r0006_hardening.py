"""Event rows get an idempotency key: one row per (device, event, ts).

A QoS 1 message stored but not yet acknowledged when a worker died is delivered again;
without a key its event was stored twice. Existing duplicates are removed first (the
oldest row of each is kept).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("DELETE FROM events WHERE id NOT IN "
               "(SELECT MIN(id) FROM events GROUP BY device_id, event, ts)")
    op.create_index("ux_events_device_event_ts", "events", ["device_id", "event", "ts"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ux_events_device_event_ts", table_name="events")
