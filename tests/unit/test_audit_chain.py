"""The audit chain: intact chains verify, any tampering is named at the first broken entry."""

from __future__ import annotations

from dataclasses import replace

from wulian.domain.audit import MemoryAuditLog, first_broken
from wulian.ports import AuditRecord


def _log(n: int) -> MemoryAuditLog:
    log = MemoryAuditLog()
    for i in range(n):
        log.append(AuditRecord(ts=1000 + i, actor="user:alice", org_id="default",
                               action="device.create", target=f"d{i}", after={"name": f"d{i}"}))
    return log


def test_an_untouched_chain_verifies() -> None:
    assert first_broken(_log(5).stored) is None


def test_changing_one_entry_names_it() -> None:
    log = _log(5)
    entry = log.stored[2]
    log.stored[2] = replace(entry, record=replace(entry.record, actor="user:mallory"))
    assert first_broken(log.stored) == 3


def test_removing_an_entry_names_the_one_after_the_gap() -> None:
    log = _log(5)
    del log.stored[1]
    assert first_broken(log.stored) == 3


def test_rehashing_a_changed_entry_still_breaks_its_successor() -> None:
    log = _log(4)
    entry = log.stored[1]
    from wulian.domain.audit import entry_hash

    changed = replace(entry.record, outcome="forbidden")
    log.stored[1] = replace(entry, record=changed,
                            hash=entry_hash(entry.prev_hash, entry.seq, changed))
    assert first_broken(log.stored) == 3


def test_entries_filter_by_organisation_and_cursor() -> None:
    log = _log(5)
    log.append(AuditRecord(ts=2000, actor="key:k1", org_id="acme", action="rule.create",
                           target="r1"))
    assert [e.seq for e in log.entries(org_id="acme")] == [6]
    assert [e.seq for e in log.entries(org_id=None, after_seq=3, limit=2)] == [4, 5]
