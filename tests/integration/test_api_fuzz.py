"""Random bytes and JSON at the HTTP ingest endpoints: only 2xx/4xx, never 5xx, never dead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.api import Api, basic, running_api
from tests.fixtures.common import ENV_SENSOR

PROPERTY_NAMES = ["temperature", "humidity", "status", "setpoint", "ts", "pressure", ""]
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.integers(min_value=2**62, max_value=2**70),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(PROPERTY_NAMES) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
# mostly shaped like telemetry, so the validator's deeper branches are reached too
telemetry_like = st.dictionaries(st.sampled_from(PROPERTY_NAMES), json_values, max_size=5)
payloads = st.one_of(json_values, telemetry_like, st.lists(telemetry_like, max_size=5))


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, str]]]:
    """One app for the whole module (hypothesis runs hundreds of examples against it)."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    for api in running_api(data_dir, f"sqlite:///{data_dir / 'wulian.db'}"):
        api.product(ENV_SENSOR)
        yield api, api.device("d1")


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # the stdlib writes integers past 64 bits; orjson refuses


def _check(api: Api, r: Any) -> None:
    assert 200 <= r.status_code < 500, r.text
    body = r.json()
    if r.status_code >= 400:
        assert isinstance(body["code"], str) and body["message"]


@FUZZ
@given(body=st.binary(max_size=2048))
def test_random_bytes(fuzz_api: tuple[Api, dict[str, str]], body: bytes) -> None:
    api, auth = fuzz_api
    _check(api, api.send("d1", auth, body))


@FUZZ
@given(doc=payloads)
def test_random_json_telemetry(fuzz_api: tuple[Api, dict[str, str]], doc: Any) -> None:
    api, auth = fuzz_api
    _check(api, api.send("d1", auth, _dumps(doc)))


@FUZZ
@given(event=st.sampled_from(["fault", "nope", "FAULT", "fault%00", "a" * 200]), doc=payloads)
def test_random_json_events(fuzz_api: tuple[Api, dict[str, str]], event: str, doc: Any) -> None:
    api, auth = fuzz_api
    _check(api, api.send("d1", auth, _dumps(doc),
                         event=event))


@FUZZ
@given(user=st.text(max_size=20), secret=st.text(max_size=20),
       header=st.sampled_from(["basic", "raw", "none"]), raw=st.binary(max_size=40))
def test_random_credentials(fuzz_api: tuple[Api, dict[str, str]], user: str, secret: str,
                            header: str, raw: bytes) -> None:
    api, _ = fuzz_api
    if header == "basic":
        auth = basic(user, secret)
    elif header == "raw":
        auth = {"Authorization": "Basic " + raw.decode("latin-1")}
    else:
        auth = {}
    try:
        r = api.send("d1", auth, b'{"humidity": 1}')
    except UnicodeEncodeError:  # a header httpx cannot send; no server would ever see it
        return
    _check(api, r)
    assert r.status_code in (401, 403, 422)


def test_the_app_is_still_alive_and_counted_everything(
        fuzz_api: tuple[Api, dict[str, str]]) -> None:
    api, auth = fuzz_api
    assert api.client.get("/api/v1/health").json()["status"] == "ok"
    assert api.send("d1", auth, b'{"humidity": 50}').status_code == 202
    stats = api.stats()
    assert stats["messages_accepted"] >= 1 and stats["messages_rejected"] > 100
