"""The audit log's chain: how an entry is hashed and how a chain is verified. No I/O.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical
JSON (sorted keys, no spaces, UTF-8), so changing, removing or reordering any stored entry
breaks every hash after it, and `verify` names the first entry that no longer fits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict

import orjson

from wulian.ports import AuditEntry, AuditRecord

GENESIS = "0" * 64


def canonical(seq: int, record: AuditRecord) -> bytes:
    """The bytes an entry's hash covers: its sequence number and every field of the record."""
    return orjson.dumps({"seq": seq, **asdict(record)}, option=orjson.OPT_SORT_KEYS)


def entry_hash(prev_hash: str, seq: int, record: AuditRecord) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(seq, record)).hexdigest()


def chain(prev: AuditEntry | None, record: AuditRecord) -> AuditEntry:
    """The entry that follows `prev` (None: the first entry of the log)."""
    if prev is None:
        return follow(0, GENESIS, record)
    return follow(prev.seq, prev.hash, record)


def follow(prev_seq: int, prev_hash: str, record: AuditRecord) -> AuditEntry:
    """The entry after the one numbered `prev_seq` whose hash is `prev_hash`."""
    seq = prev_seq + 1
    return AuditEntry(seq, record, prev_hash, entry_hash(prev_hash, seq, record))


def first_broken(entries: Iterable[AuditEntry]) -> int | None:
    """The seq of the first entry that breaks the chain (oldest first), or None if intact.

    An entry breaks it when its seq is not the next one, its prev_hash is not its
    predecessor's hash, or its hash does not match its content.
    """
    prev_seq, prev_hash = 0, GENESIS
    for entry in entries:
        if (entry.seq != prev_seq + 1 or entry.prev_hash != prev_hash
                or entry.hash != entry_hash(prev_hash, entry.seq, entry.record)):
            return entry.seq
        prev_seq, prev_hash = entry.seq, entry.hash
    return None


class MemoryAuditLog:
    """An in-memory `AuditLog` for use-case tests (the SQL one is `wulian.storage.audit`)."""

    def __init__(self) -> None:
        self.stored: list[AuditEntry] = []

    def append(self, record: AuditRecord) -> AuditEntry:
        entry = chain(self.stored[-1] if self.stored else None, record)
        self.stored.append(entry)
        return entry

    def entries(self, *, org_id: str | None, since: int | None = None,
                until: int | None = None, actor: str | None = None, action: str | None = None,
                after_seq: int | None = None, limit: int = 100) -> list[AuditEntry]:
        found = []
        for entry in self.stored:
            rec = entry.record
            if ((org_id is not None and rec.org_id != org_id)
                    or (since is not None and rec.ts < since)
                    or (until is not None and rec.ts >= until)
                    or (actor is not None and rec.actor != actor)
                    or (action is not None and rec.action != action)
                    or (after_seq is not None and entry.seq <= after_seq)):
                continue
            found.append(entry)
            if len(found) >= limit:
                break
        return found
