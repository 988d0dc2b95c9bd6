"""The one schema both backends share, as SQLAlchemy Core tables.

Telemetry is dictionary-encoded: each (device, property) pair gets a small integer series
id, so `points` is keyed by (series_id, ts). That keeps the points B-tree narrow and makes
"one property of one device over a day" a single range scan even at 100 M points.
Values: bool as num 0/1, int/float in num, string/enum in txt; readers decode them back
with the product's thing model. Integers beyond 2**53 also keep their exact digits in txt.

The migrations under `migrations/versions` create exactly this (a test compares them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

# SQLite makes only `INTEGER PRIMARY KEY` an alias of the rowid (auto-assigned ids).
BIG_ID: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL: binary, indexable, and what `->>` filters are fast on.
DOC: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
ID_LEN = 128
ORG_LEN = 64
DEFAULT_ORG = "default"  # wulian.domain.actor.DEFAULT_ORG; what predates organisations


def org_column(*, nullable: bool = False) -> Column[str]:
    """The owning organisation of a row (every tenant-owned table has one)."""
    if nullable:
        return Column("org_id", String(ORG_LEN))
    return Column("org_id", String(ORG_LEN), nullable=False, server_default=DEFAULT_ORG)

metadata = MetaData()

products = Table(
    "products", metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("name", Text, nullable=False),
    Column("doc", DOC, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    org_column(),
    Index("ix_products_org", "org_id"),
)

devices = Table(
    "devices", metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("product", String(ID_LEN), ForeignKey("products.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("tags", DOC, nullable=False),
    Column("lat", Double),
    Column("lon", Double),
    Column("created_ms", BigInteger, nullable=False),
    Index("ix_devices_product", "product"),
    org_column(),
    Index("ix_devices_org", "org_id", "id"),
)

device_status = Table(
    "device_status", metadata,
    Column("device_id", String(ID_LEN), primary_key=True),
    Column("connected", Boolean, nullable=False),
    Column("last_seen_ms", BigInteger),
    Column("protocol", Text),
    Column("remote", Text),
    Column("ip_version", Integer),
    Column("changed_ms", BigInteger),
)

series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", String(ID_LEN), nullable=False),
    Column("property", String(64), nullable=False),
    UniqueConstraint("device_id", "property", name="uq_series_device_property"),
    # AUTOINCREMENT: ids of deleted series are never handed out again, so a stale id
    # cached by another process can never point at somebody else's series.
    sqlite_autoincrement=True,
)

points = Table(
    "points", metadata,
    Column("series_id", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("num", Double),
    Column("txt", Text),
    PrimaryKeyConstraint("series_id", "ts", name="pk_points"),
    sqlite_with_rowid=False,  # the table *is* the (series_id, ts) B-tree: no second index
)

latest = Table(
    "latest", metadata,
    Column("series_id", Integer, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("num", Double),
    Column("txt", Text),
)

events = Table(
    "events", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("device_id", String(ID_LEN), nullable=False),
    Column("event", String(64), nullable=False),
    Column("level", String(16), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("params", DOC, nullable=False),
    Index("ix_events_device_ts", "device_id", "ts"),
    # the idempotency key: a redelivered event is not stored twice (migration 0006)
    Index("ux_events_device_event_ts", "device_id", "event", "ts", unique=True),
)

rejections = Table(
    "rejections", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("device_id", Text),  # as the sender claimed it: unchecked, so unbounded
    Column("protocol", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_rejections_received", "received_ms"),
    Index("ix_rejections_device_received", "device_id", "received_ms"),
    org_column(nullable=True),  # NULL: an unknown sender, seen by the platform operator only
    Index("ix_rejections_org_received", "org_id", "received_ms"),
)

counters = Table(
    "counters", metadata,
    Column("name", String(128), primary_key=True),
    Column("value", BigInteger, nullable=False),
)


# --- rules and alarms (status early warning) ------------------------------------------

ALARM_ID_LEN = 300  # "{rule}/{subject}/{raised_ms}"

rules = Table(
    "rules", metadata,
    Column("id", String(ID_LEN), primary_key=True),
    Column("name", Text, nullable=False),
    Column("doc", DOC, nullable=False),  # the document as given: what GET returns
    Column("enabled", Boolean, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    org_column(),
    Index("ix_rules_org", "org_id"),
)

alarms = Table(
    "alarms", metadata,
    Column("id", String(ALARM_ID_LEN), primary_key=True),
    Column("rule_id", String(ID_LEN), nullable=False),
    Column("rule_name", Text, nullable=False),
    Column("subject", String(ID_LEN), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("raised_ms", BigInteger, nullable=False),
    Column("last_ms", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("value", DOC),
    Column("first_value", DOC),
    Column("acknowledged_by", Text),
    Column("acknowledged_ms", BigInteger),
    Column("ack_comment", Text),
    Column("cleared_by", Text),
    Column("cleared_ms", BigInteger),
    Column("clear_comment", Text),
    Index("ix_alarms_raised", "raised_ms"),
    Index("ix_alarms_subject_raised", "subject", "raised_ms"),
    Index("ix_alarms_rule_raised", "rule_id", "raised_ms"),
    # at most one open alarm per (rule, subject), whatever process raised it
    Index("ux_alarms_open", "rule_id", "subject", unique=True,
          sqlite_where=text("state <> 'cleared'"), postgresql_where=text("state <> 'cleared'")),
    org_column(),
    Index("ix_alarms_org_raised", "org_id", "raised_ms"),
)

alarm_changes = Table(
    "alarm_changes", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("alarm_id", String(ALARM_ID_LEN), nullable=False),
    Column("rule_id", String(ID_LEN), nullable=False),
    Column("subject", String(ID_LEN), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("value", DOC),
    Column("by", Text),
    Column("comment", Text),
    Index("ix_alarm_changes_alarm", "alarm_id", "id"),
    Index("ix_alarm_changes_ts", "ts"),
)

# The action outbox: written in the same transaction as the alarm change that caused it,
# delivered afterwards with retries, so an action is neither lost nor blocks ingest.
action_deliveries = Table(
    "action_deliveries", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("rule_id", String(ID_LEN), nullable=False),
    Column("alarm_id", String(ALARM_ID_LEN), nullable=False),
    Column("change", String(16), nullable=False),  # raised / cleared (/ acknowledged)
    Column("action", Integer, nullable=False),  # index into the rule's actions
    Column("kind", String(16), nullable=False),  # webhook / email / mqtt
    Column("target", Text, nullable=False),  # url, addresses or topic: for people to read
    Column("spec", DOC, nullable=False),  # the action as configured when the change happened
    Column("body", DOC, nullable=False),  # what is sent
    Column("state", String(16), nullable=False),  # pending / delivered / dead
    Column("attempts", Integer, nullable=False),
    Column("next_ms", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("created_ms", BigInteger, nullable=False),
    Column("done_ms", BigInteger),
    Index("ix_action_deliveries_due", "state", "next_ms"),
    Index("ix_action_deliveries_alarm", "alarm_id"),
    org_column(),
    Index("ix_action_deliveries_org", "org_id", "id"),
)

# --- console accounts -----------------------------------------------------------------

users = Table(
    "users", metadata,
    Column("username", String(64), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(16), nullable=False),  # admin / operator / viewer
    Column("disabled", Boolean, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    # a platform operator stands above organisations: org_id NULL, platform true
    Column("org_id", String(ORG_LEN), server_default=DEFAULT_ORG),
    Column("platform", Boolean, nullable=False, server_default=text("false")),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex: no token kept in clear
    Column("username", String(64), ForeignKey("users.username", ondelete="CASCADE"),
           nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("last_ms", BigInteger, nullable=False),
    Index("ix_sessions_username", "username"),
    Index("ix_sessions_expires", "expires_ms"),
)

# --- platform metrics over time -------------------------------------------------------

# One row per counter and minute: the counter's value at the minute's last sample. Rates
# per minute are differences of consecutive rows; `wulian.metrics` writes and prunes them.
counter_samples = Table(
    "counter_samples", metadata,
    Column("name", String(128), nullable=False),
    Column("minute_ms", BigInteger, nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("name", "minute_ms", name="pk_counter_samples"),
)

# --- device connection history --------------------------------------------------------

# One row per connect or disconnect an access adapter reported, as far as it changed the
# device's status (a new state, or a reconnect from another address): what the device page
# lists. Kept bounded by `SqlMetadata.set_connected` (30 days, 1,000 rows per device).
connection_log = Table(
    "connection_log", metadata,
    Column("id", BIG_ID, primary_key=True),
    Column("device_id", String(ID_LEN), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("connected", Boolean, nullable=False),
    Column("protocol", Text),
    Column("remote", Text),
    Column("ip_version", Integer),
    Index("ix_connection_log_device_ts", "device_id", "ts"),
)


# --- organisations, API keys, the audit log ------------------------------------------

organisations = Table(
    "organisations", metadata,
    Column("id", String(ORG_LEN), primary_key=True),
    Column("name", Text, nullable=False),
    Column("state", String(16), nullable=False),  # active / suspended
    Column("quotas", DOC, nullable=False),  # {"max_devices": 1000, ...}; absent = unlimited
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),  # public part of `wlk_<id>.<secret>`
    Column("org_id", String(ORG_LEN), nullable=False),
    Column("name", Text, nullable=False),
    # sha256 hex: the secret is 256 random bits, so a slow hash would add nothing
    Column("secret_hash", String(64), nullable=False),
    Column("scopes", DOC, nullable=False),
    Column("networks", DOC, nullable=False),  # allowed source networks; [] = anywhere
    Column("created_by", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger),
    Column("last_used_ms", BigInteger),
    Column("revoked_ms", BigInteger),
    Index("ix_api_keys_org", "org_id"),
)

# Append-only; each entry carries the SHA-256 of the previous one (`wulian audit verify`).
audit_log = Table(
    "audit_log", metadata,
    Column("seq", BIG_ID, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("actor", Text, nullable=False),
    Column("org_id", String(ORG_LEN)),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("outcome", String(64), nullable=False),
    Column("source", Text),
    Column("before", DOC),
    Column("after", DOC),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_org_seq", "org_id", "seq"),
    Index("ix_audit_log_ts", "ts"),
)
