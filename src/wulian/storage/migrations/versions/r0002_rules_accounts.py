"""Rules, alarms and their history, the action outbox; console users and sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the types in schema.py: a revision must not change when schema.py does.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DOC = sa.JSON().with_variant(JSONB(), "postgresql")
ID = sa.String(128)
ALARM_ID = sa.String(300)
OPEN = sa.text("state <> 'cleared'")


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("doc", DOC, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alarms",
        sa.Column("id", ALARM_ID, primary_key=True),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("rule_name", sa.Text, nullable=False),
        sa.Column("subject", ID, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("raised_ms", sa.BigInteger, nullable=False),
        sa.Column("last_ms", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("value", DOC),
        sa.Column("first_value", DOC),
        sa.Column("acknowledged_by", sa.Text),
        sa.Column("acknowledged_ms", sa.BigInteger),
        sa.Column("ack_comment", sa.Text),
        sa.Column("cleared_by", sa.Text),
        sa.Column("cleared_ms", sa.BigInteger),
        sa.Column("clear_comment", sa.Text),
    )
    op.create_index("ix_alarms_raised", "alarms", ["raised_ms"])
    op.create_index("ix_alarms_subject_raised", "alarms", ["subject", "raised_ms"])
    op.create_index("ix_alarms_rule_raised", "alarms", ["rule_id", "raised_ms"])
    op.create_index("ux_alarms_open", "alarms", ["rule_id", "subject"], unique=True,
                    sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_table(
        "alarm_changes",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("alarm_id", ALARM_ID, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("subject", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("value", DOC),
        sa.Column("by", sa.Text),
        sa.Column("comment", sa.Text),
    )
    op.create_index("ix_alarm_changes_alarm", "alarm_changes", ["alarm_id", "id"])
    op.create_index("ix_alarm_changes_ts", "alarm_changes", ["ts"])
    op.create_table(
        "action_deliveries",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("alarm_id", ALARM_ID, nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("action", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("spec", DOC, nullable=False),
        sa.Column("body", DOC, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_ms", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("done_ms", sa.BigInteger),
    )
    op.create_index("ix_action_deliveries_due", "action_deliveries", ["state", "next_ms"])
    op.create_index("ix_action_deliveries_alarm", "action_deliveries", ["alarm_id"])
    op.create_table(
        "users",
        sa.Column("username", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64),
                  sa.ForeignKey("users.username", ondelete="CASCADE"), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("last_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_sessions_username", "sessions", ["username"])
    op.create_index("ix_sessions_expires", "sessions", ["expires_ms"])


def downgrade() -> None:
    for table in ("sessions", "users", "action_deliveries", "alarm_changes", "alarms",
                  "rules"):
        op.drop_table(table)
