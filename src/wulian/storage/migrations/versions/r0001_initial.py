"""Initial schema: products, devices, status, series/points/latest, events, dead letters, counters.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the types in schema.py: a revision must not change when schema.py does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.String(128)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("doc", DOC, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("id", ID, primary_key=True),
        sa.Column("product", ID, sa.ForeignKey("products.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("tags", DOC, nullable=False),
        sa.Column("lat", sa.Double),
        sa.Column("lon", sa.Double),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_devices_product", "devices", ["product"])
    op.create_table(
        "device_status",
        sa.Column("device_id", ID, primary_key=True),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger),
        sa.Column("protocol", sa.Text),
        sa.Column("remote", sa.Text),
        sa.Column("ip_version", sa.Integer),
        sa.Column("changed_ms", sa.BigInteger),
    )
    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("property", sa.String(64), nullable=False),
        sa.UniqueConstraint("device_id", "property", name="uq_series_device_property"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "points",
        sa.Column("series_id", sa.Integer, nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("num", sa.Double),
        sa.Column("txt", sa.Text),
        sa.PrimaryKeyConstraint("series_id", "ts", name="pk_points"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latest",
        sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("num", sa.Double),
        sa.Column("txt", sa.Text),
    )
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("device_id", ID, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("params", DOC, nullable=False),
    )
    op.create_index("ix_events_device_ts", "events", ["device_id", "ts"])
    op.create_table(
        "rejections",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("device_id", sa.Text),
        sa.Column("protocol", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_rejections_received", "rejections", ["received_ms"])
    op.create_index("ix_rejections_device_received", "rejections",
                    ["device_id", "received_ms"])
    op.create_table(
        "counters",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("counters", "rejections", "events", "latest", "points", "series",
                  "device_status", "devices", "products"):
        op.drop_table(table)
