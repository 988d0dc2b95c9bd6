"""Alarms: one per (rule, subject), the acknowledge/clear lifecycle, history and messages."""

from __future__ import annotations

import pytest

from wulian.domain.message import WriteBatch
from wulian.rules import (
    GROUP,
    AlarmBook,
    AlarmChange,
    AlarmError,
    AlarmState,
    ChangeKind,
    RuleEngine,
    Severity,
    parse_rule,
)


def raised(book: AlarmBook, ts: int = 1000, value: float = 90.0) -> AlarmChange:
    change = book.fire("r1", "Boiler hot", "d1", Severity.MAJOR, ts, value)
    assert change is not None
    return change


def test_repeated_firings_update_one_alarm_and_are_handed_over_in_bulk() -> None:
    book = AlarmBook()
    first = raised(book)
    assert first.kind is ChangeKind.RAISED and first.alarm_id == "r1/d1/1000"
    assert book.fire("r1", "Boiler hot", "d1", Severity.MAJOR, 2000, 95.0) is None
    assert book.fire("r1", "Boiler hot", "d1", Severity.MAJOR, 3000, 97.0) is None
    assert len(book) == 1
    [dirty] = book.take_dirty()
    assert (dirty.count, dirty.value, dirty.last_ms, dirty.first_value) == (3, 97.0, 3000, 90.0)
    assert book.take_dirty() == []
    other = book.fire("r1", "Boiler hot", "d2", Severity.MAJOR, 2000, 91.0)
    assert other is not None and len(book) == 2


def test_acknowledge_then_clear_records_who_when_and_why() -> None:
    book = AlarmBook()
    alarm_id = raised(book).alarm_id
    ack = book.acknowledge(alarm_id, "li.wei", 5000, "crew on the way")
    assert (ack.kind, ack.by, ack.comment, ack.ts) == (ChangeKind.ACKNOWLEDGED, "li.wei",
                                                       "crew on the way", 5000)
    alarm = book.find(alarm_id)
    assert alarm is not None and alarm.state is AlarmState.ACKNOWLEDGED
    assert (alarm.acknowledged_by, alarm.acknowledged_ms) == ("li.wei", 5000)
    with pytest.raises(AlarmError, match="already acknowledged"):
        book.acknowledge(alarm_id, "zhang.san", 6000)
    # still firing while acknowledged: it stays the same, acknowledged alarm
    assert book.fire("r1", "Boiler hot", "d1", Severity.MAJOR, 6500, 99.0) is None
    kept = book.find(alarm_id)
    assert kept is not None and kept.state is AlarmState.ACKNOWLEDGED and kept.count == 2
    cleared = book.clear(alarm_id, "li.wei", 7000, "valve replaced")
    assert (cleared.kind, cleared.by, cleared.comment) == (ChangeKind.CLEARED, "li.wei",
                                                           "valve replaced")
    assert book.find(alarm_id) is None and len(book) == 0
    with pytest.raises(AlarmError, match="not open"):
        book.clear(alarm_id, "li.wei", 8000)


def test_an_active_alarm_can_be_cleared_without_acknowledging_and_needs_a_name() -> None:
    book = AlarmBook()
    alarm_id = raised(book).alarm_id
    with pytest.raises(AlarmError, match="who"):
        book.clear(alarm_id, "  ", 2000)
    with pytest.raises(AlarmError, match="not open"):
        book.acknowledge("r1/d1/999", "ops", 2000)
    assert book.clear(alarm_id, "ops", 2000).kind is ChangeKind.CLEARED


def test_auto_clear_and_restore_after_restart() -> None:
    book = AlarmBook()
    raised(book)
    change = book.auto_clear("r1", "Boiler hot", "d1", 4000, 70.0)
    assert change is not None and change.by is None and change.kind is ChangeKind.CLEARED
    assert book.auto_clear("r1", "Boiler hot", "d1", 5000, 70.0) is None
    raised(book, ts=6000)
    [alarm] = book.open_alarms()
    fresh = AlarmBook()
    fresh.restore(alarm)
    assert fresh.get("r1", "d1") == alarm
    assert fresh.fire("r1", "Boiler hot", "d1", Severity.MAJOR, 7000, 1.0) is None


def test_messages_in_both_languages() -> None:
    book = AlarmBook()
    change = raised(book)
    assert change.message("en") == ("major alarm raised by rule 'Boiler hot' on d1 "
                                    "(value: 90.0)")
    assert change.message("zh") == "规则“Boiler hot”在 d1 上产生重要告警（值：90.0）"
    ack = book.acknowledge(change.alarm_id, "li.wei", 2000)
    assert ack.message("en").endswith("acknowledged by li.wei")
    group = book.fire("r2", "PM2.5 haidian", GROUP, Severity.CRITICAL, 1, 80.0)
    assert group is not None and "the device group" in group.message("en")
    auto = book.auto_clear("r2", "PM2.5 haidian", GROUP, 2, 60.0)
    assert auto is not None and "设备组" in auto.message("zh")


class _Dev:
    product = "aq"
    tags: dict[str, str] = {}  # noqa: RUF012 - a read-only stand-in
    location = None


def test_a_person_clearing_a_still_true_condition_is_not_re_raised_until_it_lets_go() -> None:
    now = [0]
    engine = RuleEngine([parse_rule({"id": "r1", "scope": {"product": "aq"}, "condition": {
        "type": "threshold", "property": "t", "op": ">", "value": 80}})], lambda: now[0])

    def point(ts: int, value: float) -> list[str]:
        batch = WriteBatch(points=[("d1", "t", ts, value)])
        return [c.kind.value for c in engine.observe(batch, lambda _: _Dev())]

    assert point(0, 90) == ["raised"]
    alarm_id = engine.alarms.open_alarms()[0].id
    now[0] = 500
    ack = engine.acknowledge(alarm_id, "ops", "looking")
    assert (ack.ts, ack.rule_name) == (500, "r1")
    now[0] = 1000
    assert engine.clear(alarm_id, "ops", "known issue").ts == 1000
    assert point(2000, 95) == []  # still hot: a person said it is handled
    assert point(3000, 70) == []  # the condition let go: armed again
    assert point(4000, 85) == ["raised"]


def test_an_alarm_raised_again_in_the_same_millisecond_gets_a_new_id() -> None:
    from wulian.rules.alarms import AlarmBook
    from wulian.rules.model import Severity

    book = AlarmBook()
    first = book.fire("r", "Rule", "d", Severity.MAJOR, 1000, 1.0)
    assert first is not None and first.alarm_id == "r/d/1000"
    assert book.auto_clear("r", "Rule", "d", 1000, 0.0) is not None
    again = book.fire("r", "Rule", "d", Severity.MAJOR, 1000, 2.0)
    assert again is not None and again.alarm_id == "r/d/1001"
    assert again.ts == 1000  # the time it was raised is the reading's, only the id moves
    restored = AlarmBook()
    alarm = book.get("r", "d")
    assert alarm is not None
    restored.restore(alarm)  # after a restart the next id still moves past it
    book.auto_clear("r", "Rule", "d", 1001, 0.0)
    restored.auto_clear("r", "Rule", "d", 1001, 0.0)
    third = restored.fire("r", "Rule", "d", Severity.MAJOR, 1001, 3.0)
    assert third is not None and third.alarm_id == "r/d/1002"
