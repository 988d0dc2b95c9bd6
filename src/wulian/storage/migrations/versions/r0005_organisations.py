"""Organisations (tenants), scoped API keys and the hash-chained audit log.

Every product, device, rule, alarm, delivery, dead letter and user gains an `org_id`;
what existed before lands in the organisation `default`. Points, events and connection
history belong to their device, so their organisation is the device's.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the types in schema.py: a revision must not change when schema.py does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ORG = sa.String(64)
DEFAULT_ORG = "default"
OWNED = ("products", "devices", "rules", "alarms", "action_deliveries")


def upgrade() -> None:
    orgs = op.create_table(
        "organisations",
        sa.Column("id", ORG, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),  # active / suspended
        sa.Column("quotas", DOC, nullable=False),  # {"max_devices": 1000, ...}; absent = none
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    # created at 0: the default organisation holds data from before organisations existed
    op.execute(orgs.insert().values(id=DEFAULT_ORG, name="Default", state="active", quotas={},
                                    created_ms=0, updated_ms=0))
    for table in OWNED:
        op.add_column(table, sa.Column("org_id", ORG, nullable=False,
                                       server_default=DEFAULT_ORG))
    op.create_index("ix_products_org", "products", ["org_id"])
    op.create_index("ix_devices_org", "devices", ["org_id", "id"])
    op.create_index("ix_rules_org", "rules", ["org_id"])
    op.create_index("ix_alarms_org_raised", "alarms", ["org_id", "raised_ms"])
    op.create_index("ix_action_deliveries_org", "action_deliveries", ["org_id", "id"])
    # a dead letter from an unknown sender belongs to nobody: only the platform sees it
    op.add_column("rejections", sa.Column("org_id", ORG))
    op.create_index("ix_rejections_org_received", "rejections", ["org_id", "received_ms"])
    # users: platform operators stand above organisations (org_id NULL, platform true)
    op.add_column("users", sa.Column("org_id", ORG, server_default=DEFAULT_ORG))
    op.add_column("users", sa.Column("platform", sa.Boolean, nullable=False,
                                     server_default=sa.false()))
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),  # public: `wlk_<id>.<secret>`
        sa.Column("org_id", ORG, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),  # sha256 hex of the secret
        sa.Column("scopes", DOC, nullable=False),  # ["read", "devices:write", ...]
        sa.Column("networks", DOC, nullable=False),  # ["10.0.0.0/8", ...]; [] = anywhere
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger),
        sa.Column("last_used_ms", sa.BigInteger),
        sa.Column("revoked_ms", sa.BigInteger),
    )
    op.create_index("ix_api_keys_org", "api_keys", ["org_id"])
    op.create_table(
        "audit_log",
        sa.Column("seq", BIG_ID, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("org_id", ORG),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("before", DOC),
        sa.Column("after", DOC),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_org_seq", "audit_log", ["org_id", "seq"])
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("platform")
        batch.drop_column("org_id")
    op.drop_index("ix_rejections_org_received", "rejections")
    with op.batch_alter_table("rejections") as batch:
        batch.drop_column("org_id")
    for index, table in (("ix_products_org", "products"), ("ix_devices_org", "devices"),
                         ("ix_rules_org", "rules"), ("ix_alarms_org_raised", "alarms"),
                         ("ix_action_deliveries_org", "action_deliveries")):
        op.drop_index(index, table)
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("org_id")
    op.drop_table("organisations")
