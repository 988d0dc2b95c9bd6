"""Reading back over HTTP what devices posted over HTTP: latest, series, buckets, CSV, events."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest

from tests.fixtures.api import Api
from wulian.pipeline.ingest import now_ms

MINUTE = 60_000
# temperature samples at +0 s, +20 s, +40 s | +60 s, +80 s from a minute boundary
SAMPLES = [(0, 20.0), (20_000, 22.0), (40_000, 24.5), (60_000, 30.0), (80_000, 10.0)]
# by hand, per 60 s bucket: [20, 22, 24.5] and [30, 10]
EXPECTED = {
    "avg": [22.166666666666668, 20.0], "min": [20.0, 10.0], "max": [24.5, 30.0],
    "sum": [66.5, 40.0], "count": [3, 2], "first": [20.0, 30.0], "last": [24.5, 10.0],
}


@pytest.fixture
def base(api: Api, env_sensor_doc: dict[str, Any]) -> int:
    """A minute boundary two hours ago; d1 posted SAMPLES from there (humidity in between)."""
    api.product(env_sensor_doc)
    auth = api.device("d1")
    start = (now_ms() - 2 * 3_600_000) // MINUTE * MINUTE
    body = [{"ts": start + dt, "temperature": v} for dt, v in SAMPLES]
    body.insert(2, {"ts": start + 30_000, "humidity": 55.5, "status": "ok"})
    r = api.send("d1", auth, orjson.dumps(body))
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "points": 7}
    return start


def series(api: Api, **params: Any) -> Any:
    r = api.get("/devices/d1/telemetry", params={"property": "temperature", **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_latest_holds_the_newest_value_of_each_property(api: Api, base: int) -> None:
    assert api.get("/devices/d1/latest").json() == {
        "temperature": {"ts": base + 80_000, "value": 10.0},
        "humidity": {"ts": base + 30_000, "value": 55.5},
        "status": {"ts": base + 30_000, "value": "ok"},
    }
    assert api.get("/devices/nope/latest").status_code == 404


def test_raw_points_in_either_order_with_limits(api: Api, base: int) -> None:
    got = series(api)  # default window: the last 24 h
    assert got["device"] == "d1" and got["property"] == "temperature"
    assert got["points"] == [{"ts": base + dt, "value": v} for dt, v in SAMPLES]
    newest = series(api, order="desc", limit=2)["points"]
    assert newest == [{"ts": base + 80_000, "value": 10.0}, {"ts": base + 60_000, "value": 30.0}]
    window = series(api, since=base + 20_000, until=base + 60_000)["points"]
    assert [p["value"] for p in window] == [22.0, 24.5], "since inclusive, until exclusive"
    iso = series(api, since=_iso(base + 60_000))["points"]
    assert [p["value"] for p in iso] == [30.0, 10.0]
    assert series(api, since=base - 3_600_000, until=base)["points"] == []


def _iso(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()


def test_buckets_match_hand_computed_aggregates(api: Api, base: int) -> None:
    for agg, expected in EXPECTED.items():
        got = series(api, since=base, until=base + 2 * MINUTE, bucket="60s", agg=agg)
        assert got["bucket_ms"] == MINUTE and got["agg"] == agg
        assert [b["ts"] for b in got["buckets"]] == [base, base + MINUTE], agg
        assert [b["value"] for b in got["buckets"]] == pytest.approx(expected), agg


BUCKETS = [("1m", MINUTE), ("60000", MINUTE), ("120s", 2 * MINUTE), ("1h", 3_600_000),
           ("500ms", 500), ("1d", 86_400_000)]


def test_bucket_spellings(api: Api, base: int) -> None:
    for bucket, ms in BUCKETS:
        got = series(api, since=base, until=base + 2 * MINUTE, bucket=bucket, agg="count")
        assert got["bucket_ms"] == ms, bucket
        assert sum(b["value"] for b in got["buckets"]) == len(SAMPLES), bucket


def test_csv_on_request(api: Api, base: int) -> None:
    r = api.get("/devices/d1/telemetry", params={"property": "temperature"},
                headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["ts", "time", "value"]
    assert [(int(ts), float(v)) for ts, _, v in rows[1:]] == [(base + dt, v) for dt, v in SAMPLES]
    assert rows[1][1].endswith("Z") and rows[1][1][:4].isdigit()

    r = api.get("/devices/d1/telemetry", headers={"Accept": "text/csv"}, params={
        "property": "temperature", "since": base, "until": base + 2 * MINUTE, "bucket": "1m",
        "agg": "max"})
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[1:] == [[str(base), _csv_time(base), "24.5"],
                        [str(base + MINUTE), _csv_time(base + MINUTE), "30.0"]]


def _csv_time(ts_ms: int) -> str:
    return _iso(ts_ms).replace("+00:00", ".000Z")


def test_duplicates_are_stored_once(api: Api, base: int) -> None:
    before = api.stats()["points_stored"]
    auth_device = api.device("d2")
    body = orjson.dumps({"ts": base, "temperature": 1.5})
    for _ in range(3):
        assert api.send("d2", auth_device, body).status_code == 202
    r = api.get("/devices/d2/telemetry", params={"property": "temperature", "since": base - 1})
    assert r.json()["points"] == [{"ts": base, "value": 1.5}]
    assert api.stats()["points_stored"] == before + 1


def test_unstamped_values_get_the_arrival_time(api: Api, base: int) -> None:
    auth = api.device("d3")
    before = now_ms()
    assert api.send("d3", auth, b'{"humidity": 41}').status_code == 202
    points = api.get("/devices/d3/telemetry", params={"property": "humidity"}).json()["points"]
    assert len(points) == 1 and points[0]["value"] == 41
    assert before <= points[0]["ts"] <= now_ms()


BAD_QUERIES = [
    ({}, 422, "invalid_request", "property"),
    ({"property": "pressure"}, 422, "unknown_property", "property"),
    ({"property": "temperature", "bucket": "5 minutes"}, 422, "invalid_bucket", "bucket"),
    ({"property": "temperature", "bucket": "0s"}, 422, "invalid_bucket", "bucket"),
    ({"property": "temperature", "bucket": "1m", "agg": "median"}, 422, "invalid_request", "agg"),
    ({"property": "status", "bucket": "1m", "agg": "avg"}, 422, "bad_aggregate", "agg"),
    ({"property": "temperature", "since": "yesterday"}, 422, "invalid_time", "since"),
    ({"property": "temperature", "since": "2000", "until": "1000"}, 422, "invalid_range",
     "since"),
    ({"property": "temperature", "limit": 100_001}, 422, "invalid_request", "limit"),
    ({"property": "temperature", "order": "up"}, 422, "invalid_request", "order"),
]


def test_bad_queries_say_what_is_wrong(api: Api, base: int) -> None:
    for params, status, code, field in BAD_QUERIES:
        r = api.get("/devices/d1/telemetry", params=params)
        assert r.status_code == status, (params, r.text)
        answer = r.json()
        assert (answer["code"], answer["field"]) == (code, field), params
        assert answer["message"], params


def test_a_count_over_an_enum_is_fine(api: Api, base: int) -> None:
    got = api.get("/devices/d1/telemetry", params={
        "property": "status", "since": base, "until": base + MINUTE, "bucket": "1m",
        "agg": "last"}).json()
    assert got["buckets"] == [{"ts": base, "value": "ok"}]


def test_unknown_device_is_404(api: Api, base: int) -> None:
    r = api.get("/devices/ghost/telemetry", params={"property": "temperature"})
    assert r.status_code == 404 and r.json()["code"] == "device_not_found"


def test_events_come_back_with_level_and_params(api: Api, base: int) -> None:
    auth = api.device("e1")
    r = api.send("e1", auth, orjson.dumps({"ts": base + 5, "code": 7}), event="fault")
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": True, "points": 0}
    assert api.send("e1", auth, b"{}", event="fault").status_code == 202
    events = api.get("/devices/e1/events").json()["events"]
    assert len(events) == 2
    assert events[1] == {"event": "fault", "level": "major", "ts": base + 5,
                         "params": {"code": 7}}
    only_old = api.get("/devices/e1/events", params={"until": base + 6}).json()["events"]
    assert [e["ts"] for e in only_old] == [base + 5]
    assert api.stats()["events_stored"] == 2
