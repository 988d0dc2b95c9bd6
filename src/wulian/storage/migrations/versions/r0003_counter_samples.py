"""Per-minute samples of the platform's counters (messages/s over the last days).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "counter_samples",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("minute_ms", sa.BigInteger, nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", "minute_ms", name="pk_counter_samples"),
    )


def downgrade() -> None:
    op.drop_table("counter_samples")
