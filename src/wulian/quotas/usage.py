"""An organisation's quotas beside what it uses: for `GET /api/v1/quotas` and the CLI."""

from __future__ import annotations

from typing import Any

from wulian.ports import Store
from wulian.quotas.gate import IngestGate
from wulian.quotas.resources import org_quotas
from wulian.storage.rules import SqlRules


def org_report(store: Store, rules: SqlRules, gate: IngestGate | None, org_id: str,
               now_ms: int) -> dict[str, Any]:
    """`{org, quotas, usage}`; refusals are stored totals, rates this process's view.

    With separate ingest workers (`wulian serve` with an external broker) each worker
    counts its own msgs/s and bytes today: those show the API process's share only.
    """
    prefix = f"org.{org_id}.rejected."
    refused = {name.removeprefix(prefix): n for name, n in sorted(store.counters().items())
               if name.startswith(prefix) and n}
    usage: dict[str, Any] = {"devices": store.count_org_devices(org_id),
                             "rules": rules.count_org_rules(org_id),
                             "msgs_per_s": 0, "bytes_today": 0, "refused": refused}
    seen = gate.usage.get(org_id) if gate is not None else None
    if seen is not None:
        today = now_ms // 86_400_000 == seen.day
        usage.update(msgs_per_s=seen.msgs_per_s(now_ms),
                     bytes_today=seen.bytes_today if today else 0)
    return {"org": org_id, "quotas": org_quotas(store, org_id).to_doc(), "usage": usage}
