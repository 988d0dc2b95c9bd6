"""Quotas: the document parser, the token buckets and the ingest gate on a test-held clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.common import ENV_SENSOR
from tests.unit.fakes import FakeStore
from tests.unit.test_pipeline import device, telemetry
from wulian.domain.quotas import UNLIMITED, Quotas, check_can_add_device, check_can_add_rule
from wulian.domain.rejection import RejectCode
from wulian.domain.thingmodel import parse_thing_model
from wulian.errors import InvalidInput, QuotaExceeded
from wulian.pipeline.directory import DeviceDirectory
from wulian.pipeline.ingest import Pipeline
from wulian.ports import StorageUnavailable
from wulian.quotas.buckets import TokenBuckets, retry_after, wait_s
from wulian.quotas.gate import DAY_MS, IngestGate

T0 = 1_750_000_000_000  # epoch ms


# --- the document ------------------------------------------------------------------------


def test_a_full_document_parses_and_round_trips() -> None:
    doc = {"max_devices": 1000, "max_rules": 100, "msgs_per_s": 500, "bytes_per_day": 1e9,
           "device_msgs_per_s": 5, "api_per_s": 20}
    quotas = Quotas.parse(doc)
    assert quotas == Quotas(1000, 100, 500.0, 1_000_000_000, 5.0, 20.0)
    assert isinstance(quotas.bytes_per_day, int)
    assert Quotas.parse(quotas.to_doc()) == quotas


@pytest.mark.parametrize("doc", [None, {}, {"max_devices": None}])
def test_absent_means_unlimited(doc: Any) -> None:
    assert Quotas.parse(doc) == UNLIMITED


@pytest.mark.parametrize(("doc", "field", "key"), [
    ({"max_device": 3}, "max_device", "quotas.unknown_key"),
    ({"max_devices": 2.5}, "max_devices", "quotas.bad_integer"),
    ({"max_devices": -1}, "max_devices", "quotas.bad_integer"),
    ({"max_rules": "10"}, "max_rules", "quotas.bad_integer"),
    ({"msgs_per_s": True}, "msgs_per_s", "quotas.bad_number"),
    ({"msgs_per_s": float("nan")}, "msgs_per_s", "quotas.bad_number"),
    ({"api_per_s": float("inf")}, "api_per_s", "quotas.bad_number"),
    ({"bytes_per_day": 1e300}, "bytes_per_day", "quotas.bad_integer"),
    ([1, 2], "quotas", "quotas.bad_object"),
])
def test_a_bad_document_names_the_field(doc: Any, field: str, key: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Quotas.parse(doc)
    assert caught.value.code == "invalid_quota"
    assert caught.value.message_key == key
    assert caught.value.params["field"] == field
    assert field in caught.value.message("en")
    assert field in caught.value.message("zh")


def test_resource_quotas_refuse_at_the_limit_with_the_limit() -> None:
    quotas = Quotas(max_devices=2, max_rules=0)
    check_can_add_device(quotas, 1)
    with pytest.raises(QuotaExceeded) as caught:
        check_can_add_device(quotas, 2)
    assert caught.value.status == 429 and caught.value.code == "quota_exceeded"
    assert caught.value.extra == {"quota": "max_devices", "limit": 2}
    assert "2" in caught.value.message("en") and "max_devices" in caught.value.message("zh")
    with pytest.raises(QuotaExceeded):
        check_can_add_rule(quotas, 0)
    check_can_add_device(UNLIMITED, 10**9)
    check_can_add_rule(UNLIMITED, 10**9)


# --- the buckets -------------------------------------------------------------------------


def _take(buckets: TokenBuckets, key: str, rate: float, now: float) -> float:
    """Take a token if there is one; 0.0 then, else the seconds to wait."""
    bucket = buckets.refill(key, rate, now)
    wait = wait_s(bucket, rate)
    if not wait:
        bucket[0] -= 1
    return wait


def test_a_bucket_allows_one_seconds_burst_then_its_rate() -> None:
    buckets = TokenBuckets()
    now = 100.0
    assert [_take(buckets, "d", 5.0, now) for _ in range(5)] == [0.0] * 5
    assert _take(buckets, "d", 5.0, now) == pytest.approx(0.2)
    assert _take(buckets, "d", 5.0, now + 0.1) == pytest.approx(0.1)
    assert _take(buckets, "d", 5.0, now + 0.2) == 0.0
    assert _take(buckets, "other", 5.0, now) == 0.0  # keys are independent
    # a long quiet spell refills to one second's worth, not more
    later = now + 3600
    assert [_take(buckets, "d", 5.0, later) for _ in range(5)] == [0.0] * 5
    assert _take(buckets, "d", 5.0, later) > 0


def test_buckets_stay_bounded() -> None:
    buckets = TokenBuckets(max_keys=10)
    for n in range(25):
        _take(buckets, f"k{n}", 1.0, 0.0)
    assert len(buckets) <= 10


def test_an_earlier_arrival_takes_no_tokens_back() -> None:
    buckets = TokenBuckets()
    _take(buckets, "d", 2.0, 10.0)
    _take(buckets, "d", 2.0, 9.5)  # out of order: no refill, no loss beyond its own token
    assert _take(buckets, "d", 2.0, 10.0) == pytest.approx(0.5)


def test_retry_after_is_whole_seconds_and_never_zero() -> None:
    assert retry_after(0.01) == 1
    assert retry_after(1.0) == 1
    assert retry_after(1.2) == 2


# --- the gate ----------------------------------------------------------------------------


def test_the_gate_refuses_a_device_over_its_rate_and_not_its_neighbour() -> None:
    gate = IngestGate()
    quotas = Quotas(device_msgs_per_s=2)
    assert gate.check("a", "d1", quotas, 10, T0) is None
    assert gate.check("a", "d1", quotas, 10, T0) is None
    refusal = gate.check("a", "d1", quotas, 10, T0)
    assert refusal is not None and refusal.code is RejectCode.RATE_LIMITED
    assert refusal.params == {"quota": "device_msgs_per_s", "limit": 2.0, "retry_after_s": 1}
    assert gate.check("a", "d2", quotas, 10, T0) is None
    assert gate.check("a", "d1", quotas, 10, T0 + 500) is None  # half a second: one token
    assert gate.usage["a"].refused == {"rate_limited": 1}


def test_the_gate_holds_an_organisation_to_its_rate_across_devices() -> None:
    gate = IngestGate()
    quotas = Quotas(msgs_per_s=3, device_msgs_per_s=100)
    results = [gate.check("a", f"d{n}", quotas, 1, T0) for n in range(5)]
    assert [r is None for r in results] == [True, True, True, False, False]
    refusal = results[3]
    assert refusal is not None and refusal.params["quota"] == "msgs_per_s"
    assert gate.check("b", "x", quotas, 1, T0) is None  # another organisation's budget
    # a message refused by the organisation's rate spent none of its device's budget
    assert gate.check("a", "d3", quotas, 1, T0 + 1000) is None


def test_bytes_per_day_refuses_until_the_next_utc_day() -> None:
    gate = IngestGate()
    quotas = Quotas(bytes_per_day=100)
    start = (T0 // DAY_MS) * DAY_MS + DAY_MS - 3_600_000  # one hour before midnight UTC
    assert gate.check("a", "d", quotas, 60, start) is None
    refusal = gate.check("a", "d", quotas, 60, start + 1)
    assert refusal is not None and refusal.code is RejectCode.QUOTA_EXCEEDED
    assert refusal.params == {"quota": "bytes_per_day", "limit": 100, "retry_after_s": 3600}
    assert gate.check("a", "d", quotas, 40, start + 2) is None  # exactly at the quota
    assert gate.usage["a"].bytes_today == 100
    assert gate.check("a", "d", quotas, 60, start + 3_600_000) is None  # a new day
    assert gate.usage["a"].bytes_today == 60


def test_a_workers_share_scales_the_rate() -> None:
    gate = IngestGate(share=0.5)
    quotas = Quotas(device_msgs_per_s=4)
    admitted = sum(gate.check("a", "d", quotas, 1, T0) is None for _ in range(10))
    assert admitted == 2
    with pytest.raises(ValueError, match="share"):
        IngestGate(share=0)


def test_usage_reports_messages_in_the_last_whole_second() -> None:
    gate = IngestGate()
    for _ in range(7):
        gate.check("a", "d", UNLIMITED, 5, T0)
    gate.check("a", "d", UNLIMITED, 5, T0 + 1000)
    usage = gate.usage["a"]
    assert usage.msgs_per_s(T0 + 1000) == 7
    assert usage.msgs_per_s(T0 + 2000) == 1
    assert usage.msgs_per_s(T0 + 5000) == 0


# --- in the pipeline ---------------------------------------------------------------------


def test_the_pipeline_refuses_a_flooding_device_before_decoding_and_keeps_the_rest() -> None:
    store = FakeStore()
    store.put_product(parse_thing_model(ENV_SENSOR))
    for name in ("loud", "quiet", "elsewhere"):
        store.add_device(device(name))
    store.org_docs["acme"] = {"device_msgs_per_s": 2}
    store.device_orgs.update(loud="acme", quiet="acme")
    pipeline = Pipeline(store, DeviceDirectory(store), clock=lambda: T0, lang="en")
    loud = [telemetry('{"humidity": 1}', "loud") for _ in range(5)]
    # malformed but over the rate: refused for the rate, never decoded
    loud.append(telemetry("{not json", "loud"))
    others = [telemetry('{"humidity": 2}', d) for d in ("quiet", "elsewhere") for _ in range(2)]
    outcomes = pipeline.handle(loud + others)
    codes = [o.rejection.code if o.rejection else None for o in outcomes]
    assert codes == [None, None] + [RejectCode.RATE_LIMITED] * 4 + [None] * 4
    assert sorted(p[0] for p in store.points) == ["elsewhere"] * 2 + ["loud"] * 2 + ["quiet"] * 2
    dead = store.batches[0].rejections
    assert {r.code for r in dead} == {"rate_limited"} and len(dead) == 4
    assert "2" in dead[0].message and "device_msgs_per_s" in dead[0].message
    assert pipeline.stats["org.acme.rejected.rate_limited"] == 4
    assert pipeline.gate.usage["acme"].refused == {"rate_limited": 4}


def test_changed_quotas_reach_the_directory_with_the_registry_epoch() -> None:
    store = FakeStore()
    store.put_product(parse_thing_model(ENV_SENSOR))
    store.add_device(device("d"))
    now = [1000.0]
    directory = DeviceDirectory(store, ttl_s=5.0, clock=lambda: now[0])
    known = directory.lookup("d")
    assert not isinstance(known, Exception) and known.quotas == UNLIMITED
    assert known.org_id == "default"  # type: ignore[union-attr]
    store.org_docs["default"] = {"device_msgs_per_s": 9}
    now[0] += 6
    known = directory.lookup("d")
    assert known.quotas == Quotas(device_msgs_per_s=9)  # type: ignore[union-attr]


def test_a_bad_stored_document_leaves_the_devices_unlimited(caplog: Any) -> None:
    store = FakeStore()
    store.put_product(parse_thing_model(ENV_SENSOR))
    store.add_device(device("d"))
    store.org_docs["default"] = {"msgs_per_sec": 5}
    known = DeviceDirectory(store).lookup("d")
    assert known.quotas == UNLIMITED  # type: ignore[union-attr]
    assert "msgs_per_sec" in caplog.text



def test_a_batch_the_store_did_not_take_is_charged_once_when_it_comes_again() -> None:
    store = FakeStore()
    store.put_product(parse_thing_model(ENV_SENSOR))
    store.add_device(device("d"))
    store.org_docs["default"] = {"device_msgs_per_s": 3, "bytes_per_day": 10_000}
    pipeline = Pipeline(store, DeviceDirectory(store), clock=lambda: T0, lang="en")
    batch = [telemetry('{"humidity": 1}', "d") for _ in range(3)]
    store.fail_writes = True
    with pytest.raises(StorageUnavailable):
        pipeline.handle(batch)
    store.fail_writes = False
    assert all(o.ok for o in pipeline.handle(batch))  # redelivered: still within the rate
    assert len(store.points) == 3
    assert pipeline.gate.usage["default"].bytes_today == 3 * len(batch[0].payload)
    [over] = pipeline.handle(batch[:1])
    assert over.rejection is not None and over.rejection.code is RejectCode.RATE_LIMITED


def test_a_rate_below_one_a_second_still_admits_one_message_per_period() -> None:
    gate = IngestGate(share=0.5)  # two workers sharing a device's 1 msg/s
    quotas = Quotas(device_msgs_per_s=1)
    assert gate.check("a", "d", quotas, 1, T0) is None
    refusal = gate.check("a", "d", quotas, 1, T0 + 1000)
    assert refusal is not None and refusal.params["retry_after_s"] == 1
    assert gate.check("a", "d", quotas, 1, T0 + 2000) is None
