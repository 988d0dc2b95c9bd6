"""Device connection history: one row per connect, disconnect or reconnect.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the types in schema.py: a revision must not change when schema.py does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ID = sa.String(128)


def upgrade() -> None:
    op.create_table(
        "connection_log",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("protocol", sa.Text),
        sa.Column("remote", sa.Text),
        sa.Column("ip_version", sa.Integer),
    )
    op.create_index("ix_connection_log_device_ts", "connection_log", ["device_id", "ts"])


def downgrade() -> None:
    op.drop_table("connection_log")
