"""Resource quotas at the points where devices and rules are added today.

Counts and limits are read from the database when something is added (rare), never on
the message path. Count-then-add is not atomic: two adds racing at the limit may both
pass, leaving the organisation one over; the next add is refused again.
"""

from __future__ import annotations

from wulian.domain.actor import DEFAULT_ORG
from wulian.domain.quotas import Quotas, check_can_add_device, check_can_add_rule
from wulian.ports import MetadataStore
from wulian.storage.rules import SqlRules


def org_quotas(store: MetadataStore, org_id: str = DEFAULT_ORG) -> Quotas:
    """The organisation's quotas (unlimited when it has no document)."""
    return Quotas.parse(store.org_quotas(org_id))


def check_device_room(store: MetadataStore, org_id: str = DEFAULT_ORG) -> None:
    """QuotaExceeded when the organisation holds `max_devices` devices already."""
    quotas = org_quotas(store, org_id)
    if quotas.max_devices is not None:
        check_can_add_device(quotas, store.count_org_devices(org_id))


def check_rule_room(store: MetadataStore, rules: SqlRules,
                    org_id: str = DEFAULT_ORG) -> None:
    """QuotaExceeded when the organisation holds `max_rules` rules already."""
    quotas = org_quotas(store, org_id)
    if quotas.max_rules is not None:
        check_can_add_rule(quotas, rules.count_org_rules(org_id))
