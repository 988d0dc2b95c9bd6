"""Live push (bounded per subscriber, filtered by device) and the committed-batch feed codec."""

from __future__ import annotations

import asyncio
import threading

import pytest

from wulian.alerting import live as live_mod
from wulian.alerting.feed import decode_batch, encode_batch
from wulian.alerting.live import LiveHub
from wulian.domain.message import EventRecord, SeenRecord, WriteBatch
from wulian.rules.alarms import AlarmChange, ChangeKind
from wulian.rules.model import Severity

T0 = 1_800_000_000_000


def batch(*devices: str, n: int = 1) -> WriteBatch:
    return WriteBatch(points=[(d, "temperature", T0 + i, 20.5 + i) for d in devices
                              for i in range(n)],
                      events=[EventRecord(d, "fault", "major", T0, {"code": 3}) for d in devices],
                      seen={d: SeenRecord(T0, "mqtt", "127.0.0.1:5000") for d in devices},
                      accepted=len(devices) * n)


def test_the_feed_round_trips_what_rules_and_live_pages_read() -> None:
    original = batch("a", "b", n=3)
    original.points.append(("c", "status", T0, "ok"))
    original.points.append(("c", "on", T0, True))
    original.points.append(("c", "count", T0, 2**60))
    copy = decode_batch(encode_batch(original))
    assert copy.points == original.points
    assert copy.events == original.events
    assert copy.seen == original.seen
    assert copy.accepted == original.accepted


@pytest.mark.parametrize("payload", [b"", b"\x00\x01", b'{"p": 1}', encode_batch(batch())[:-3]])
def test_the_feed_refuses_what_is_not_a_batch(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a committed-batch message"):
        decode_batch(payload)


def test_subscribers_get_only_their_devices_and_alarms_in_their_language() -> None:
    async def scenario() -> None:
        hub = LiveHub()
        one = hub.subscribe(frozenset({"a"}), alarms=False)
        every = hub.subscribe(None, alarms=True, lang="zh")
        # producers are ingest threads
        thread = threading.Thread(target=hub.publish_batch, args=(batch("a", "b"),))
        thread.start()
        thread.join()
        hub.publish_alarm(AlarmChange("r/a/1", "r", "a", ChangeKind.RAISED, T0,
                                      Severity.MAJOR, 31.0, rule_name="热"))
        got_one = [await hub.next(one, 1.0), await hub.next(one, 1.0)]
        assert [k for k, _ in got_one] == ["points", "event"]  # type: ignore[misc]
        assert got_one[0][1] == {"device": "a",  # type: ignore[index]
                                 "points": [("temperature", T0, 20.5)]}
        assert await hub.next(one, 0.05) is None  # nothing of b, no alarms
        kinds = []
        for _ in range(5):
            item = await hub.next(every, 1.0)
            assert item is not None
            kinds.append(item[0])
            if item[0] == "alarm":
                assert item[1]["kind"] == "raised" and "热" in item[1]["message"]
        assert sorted(kinds) == ["alarm", "event", "event", "points", "points"]
        hub.unsubscribe(one)
        hub.unsubscribe(every)
        assert len(hub) == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_is_bounded_and_told_to_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_mod, "QUEUE_MAX", 3)

    async def scenario() -> None:
        hub = LiveHub()
        slow = hub.subscribe(frozenset({"a"}), alarms=False)
        for _ in range(10):
            hub.publish_batch(WriteBatch(points=[("a", "t", T0, 1.0)], accepted=1))
        await asyncio.sleep(0.05)  # let the loop run the deliveries
        assert slow.queue.qsize() == 3
        assert hub.stats["dropped"] == 7 and hub.stats["lagged"] == 1
        seen = [await hub.next(slow, 1.0) for _ in range(4)]
        assert [k for k, _ in seen] == ["points", "points", "points", "lag"]  # type: ignore[misc]
        hub.publish_batch(WriteBatch(points=[("a", "t", T0 + 1, 2.0)], accepted=1))
        item = await hub.next(slow, 1.0)
        assert item is not None and item[0] == "points"  # back to normal after the reload

    asyncio.run(scenario())


def test_nobody_watching_costs_nothing() -> None:
    hub = LiveHub()
    hub.publish_batch(batch("a"))  # no subscribers: returns without queueing anything
    assert hub.stats["sent"] == 0
