"""The rules service over a real store: alarms stored, restored after a restart, people's
changes made elsewhere followed, rule changes picked up, overload counted.

Time is the test's: the service's clock is a list the test moves, and batches go through
`submit` and `call` on the service's own thread, so nothing waits on wall-clock timers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.common import ENV_SENSOR
from wulian.alerting import service as service_mod
from wulian.alerting.service import RulesService
from wulian.bootstrap import Core, build_core
from wulian.config import Settings
from wulian.domain.message import EventRecord, SeenRecord, WriteBatch
from wulian.rules import AlarmState, ChangeKind, parse_rule
from wulian.rules.alarms import AlarmChange
from wulian.storage.rules import AlarmQuery
from wulian.storage.schema import action_deliveries

T0 = 1_800_000_000_000
HOT = {"id": "hot", "name": "Too hot", "severity": "critical", "product": "env-sensor",
       "condition": {"type": "threshold", "property": "temperature", "op": ">", "value": 30},
       "hysteresis": 2}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def core(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Core]:
    url = (f"sqlite:///{tmp_path / 'w.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    core = build_core(Settings(data_dir=tmp_path, database=url))
    core.registry.import_product(ENV_SENSOR)
    for device_id in ("d1", "d2"):
        core.registry.add_device(device_id, "env-sensor")
    yield core
    core.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def service(core: Core, clock: Clock) -> RulesService:
    svc = RulesService(core.store, core.rule_store, core.directory, clock=clock)
    svc.start()
    return svc


def point(device: str, ts: int, value: float, prop: str = "temperature") -> WriteBatch:
    return WriteBatch(points=[(device, prop, ts, value)],
                      seen={device: SeenRecord(ts, "mqtt", None)}, accepted=1)


def settle(svc: RulesService) -> None:
    """Wait until everything submitted so far has been evaluated and stored."""
    svc.call(lambda: svc._flush())


def test_a_firing_rule_stores_one_alarm_and_its_history(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    clock = Clock()
    svc = service(core, clock)
    seen: list[AlarmChange] = []
    svc.on_change(seen.append)
    try:
        for i, value in enumerate((25, 31, 33, 30, 29, 27)):  # 30/29 within the band
            svc.submit(point("d1", T0 + i * 1000, value))
        settle(svc)
    finally:
        svc.stop()
    alarms = core.rule_store.list_alarms(AlarmQuery())
    assert len(alarms) == 1
    alarm = alarms[0].alarm
    assert (alarm.subject, alarm.severity.value, alarm.state) == \
        ("d1", "critical", AlarmState.CLEARED)
    assert alarm.raised_ms == T0 + 1000 and alarm.cleared_ms == T0 + 5000
    assert alarm.count == 2  # 31 and 33 met the condition; 30 and 29 only held it open
    assert alarms[0].rule_name == "Too hot"
    kinds = [c.kind for c in core.rule_store.history(alarm.id)]
    assert kinds == [ChangeKind.RAISED, ChangeKind.CLEARED]
    assert [c.kind for c in seen] == kinds


def test_a_restart_keeps_active_alarms_and_does_not_raise_them_again(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    clock = Clock()
    svc = service(core, clock)
    svc.submit(point("d1", T0, 35))
    settle(svc)
    svc.stop()

    again = service(core, clock)  # a new process: state from the store only
    try:
        assert [a.id for a in again.call(again.engine.alarms.open_alarms)] == \
            [f"hot/d1/{T0}"]
        again.submit(point("d1", T0 + 1000, 36))
        settle(again)
        open_now = core.rule_store.list_alarms(AlarmQuery(state="open"))
        assert len(open_now) == 1 and open_now[0].alarm.count == 2
        assert len(core.rule_store.list_alarms(AlarmQuery())) == 1
        again.submit(point("d1", T0 + 2000, 20))
        settle(again)
        assert core.rule_store.list_alarms(AlarmQuery(state="open")) == []
    finally:
        again.stop()


def test_acknowledge_and_clear_through_the_service(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    clock = Clock()
    svc = service(core, clock)
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
        alarm_id = f"hot/d1/{T0}"
        clock.now = T0 + 5000
        change = svc.acknowledge(alarm_id, "alice", "on my way")
        assert (change.kind, change.by, change.ts) == (ChangeKind.ACKNOWLEDGED, "alice", T0 + 5000)
        stored = core.rule_store.get_alarm(alarm_id)
        assert stored is not None
        assert (stored.alarm.state, stored.alarm.acknowledged_by, stored.alarm.ack_comment) == \
            (AlarmState.ACKNOWLEDGED, "alice", "on my way")
        svc.clear(alarm_id, "bob")
        stored = core.rule_store.get_alarm(alarm_id)
        assert stored is not None and stored.alarm.state is AlarmState.CLEARED
        assert stored.alarm.cleared_by == "bob"
        # cleared by hand while still hot: not raised again until it cools down first
        svc.submit(point("d1", T0 + 6000, 36))
        settle(svc)
        assert core.rule_store.list_alarms(AlarmQuery(state="open")) == []
        svc.submit(point("d1", T0 + 7000, 20))
        svc.submit(point("d1", T0 + 8000, 36))
        settle(svc)
        assert len(core.rule_store.list_alarms(AlarmQuery(state="open"))) == 1
    finally:
        svc.stop()


def test_changes_made_in_the_store_by_another_process_are_followed(core: Core) -> None:
    clock = Clock()
    svc = service(core, clock)
    try:
        # a rule added by the CLI (straight into the store) is picked up on the next tick
        core.rule_store.put_rule(parse_rule(HOT))
        svc.call(svc._check_epochs)
        svc.submit(point("d2", T0, 40))
        settle(svc)
        alarm_id = f"hot/d2/{T0}"
        assert core.rule_store.get_alarm(alarm_id) is not None
        # cleared by the CLI: the service forgets it, so the next hot reading is no repeat
        core.rule_store.clear(alarm_id, "carol", "fixed the fan")
        svc.call(svc._check_epochs)
        assert svc.call(svc.engine.alarms.open_alarms) == []
        # the rule deleted by the CLI: no more alarms from it
        core.rule_store.delete_rule("hot")
        svc.call(svc._check_epochs)
        svc.submit(point("d2", T0 + 1000, 10))
        svc.submit(point("d2", T0 + 2000, 45))
        settle(svc)
        assert core.rule_store.list_alarms(AlarmQuery(state="open")) == []
    finally:
        svc.stop()


def test_deleting_a_rule_clears_its_open_alarms_in_history(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    svc = service(core, Clock())
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
    finally:
        svc.stop()
    assert core.rule_store.delete_rule("hot", by="admin")
    alarm = core.rule_store.get_alarm(f"hot/d1/{T0}")
    assert alarm is not None and alarm.alarm.state is AlarmState.CLEARED
    assert alarm.alarm.cleared_by == "admin"
    assert not core.rule_store.delete_rule("hot")


def test_no_data_fires_on_the_timer_and_events_fire_on_arrival(core: Core) -> None:
    core.rule_store.put_rule(parse_rule({
        "id": "silent", "product": "env-sensor", "severity": "major",
        "condition": {"type": "no_data", "after": "5m"}}))
    core.rule_store.put_rule(parse_rule({
        "id": "fault", "product": "env-sensor", "severity": "minor",
        "condition": {"type": "event", "event": "fault",
                      "where": {"code": {"in": [3, 4]}}}}))
    clock = Clock()
    svc = service(core, clock)  # d1 and d2 never reported: their timers start now
    try:
        svc.submit(point("d1", T0 + 60_000, 20))
        svc.submit(WriteBatch(events=[EventRecord("d2", "fault", "major", T0 + 1000,
                                                  {"code": 2})], accepted=1))
        svc.submit(WriteBatch(events=[EventRecord("d1", "fault", "major", T0 + 2000,
                                                  {"code": 4})], accepted=1))
        settle(svc)
        assert {a.alarm.id for a in core.rule_store.list_alarms(AlarmQuery())} == \
            {f"fault/d1/{T0 + 2000}"}
        clock.now = T0 + 5 * 60_000 + 1  # d2 silent for 5 min; d1 spoke at +1 min
        svc.call(lambda: svc._collect(svc.engine.tick(clock.now)))
        settle(svc)
        silent = {a.alarm.subject for a in core.rule_store.list_alarms(AlarmQuery(
            rule="silent"))}
        assert silent == {"d2"}
    finally:
        svc.stop()


def test_actions_are_planned_into_the_outbox_in_the_same_transaction(core: Core) -> None:
    core.rule_store.put_rule(parse_rule({**HOT, "actions": [
        {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret-0123456789"}]}))
    svc = core.rules  # the core's own service, with the action planner wired
    svc._clock = Clock()
    svc.start()
    try:
        svc.submit(point("d1", T0, 35))
        svc.submit(point("d1", T0 + 1000, 20))
        settle(svc)
    finally:
        svc.stop()
    with core.rule_store.engine.connect() as conn:
        rows = conn.execute(action_deliveries.select().order_by(action_deliveries.c.id)).all()
    assert [(r.change, r.kind, r.state) for r in rows] == \
        [("raised", "webhook", "pending"), ("cleared", "webhook", "pending")]
    assert all(r.alarm_id == f"hot/d1/{T0}" for r in rows)


def test_an_overloaded_rules_thread_holds_ingest_back_then_skips_visibly(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_mod, "SUBMIT_WAIT_S", 0.05)
    svc = RulesService(core.store, core.rule_store, core.directory, clock=Clock(),
                       queue_points_max=3)  # not started: nothing drains the queue
    big = WriteBatch(points=[("d1", "temperature", T0 + i, 20.0) for i in range(2)],
                     accepted=2)
    svc.submit(big)  # 2 of 3 slots
    svc.submit(big)  # would need 4: waits, then is skipped and counted
    assert svc.stats["skipped_batches"] == 1 and svc.stats["skipped_points"] == 2
    assert svc._waiting == 2


# --- what the review of the wiring found ------------------------------------------------


def test_a_comment_the_database_cannot_take_does_not_stop_alarms(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    svc = service(core, Clock())
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
        svc.acknowledge(f"hot/d1/{T0}", "alice", "a\x00b")  # PostgreSQL refuses NUL in text
        stored = core.rule_store.get_alarm(f"hot/d1/{T0}")
        assert stored is not None and stored.alarm.ack_comment == "a\ufffdb"
        svc.submit(point("d2", T0 + 1000, 40))  # later alarms are still stored
        settle(svc)
        assert core.rule_store.get_alarm(f"hot/d2/{T0 + 1000}") is not None
    finally:
        svc.stop()


def test_an_alarm_decided_but_not_yet_stored_survives_a_cli_change(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    svc = service(core, Clock())
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)

        def race() -> None:
            # d2's alarm is decided in memory; meanwhile the CLI clears d1's alarm
            svc._collect(svc.engine.observe(point("d2", T0 + 10, 41), svc._device))
            core.rule_store.clear(f"hot/d1/{T0}", "carol")
            svc._check_epochs()
            svc._flush()

        svc.call(race)
        open_now = {r.alarm.subject for r in core.rule_store.list_alarms(
            AlarmQuery(state="open"))}
        assert open_now == {"d2"}
        assert [a.subject for a in svc.call(svc.engine.alarms.open_alarms)] == ["d2"]
    finally:
        svc.stop()


def test_an_acknowledge_not_stored_is_not_done(core: Core,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from wulian.ports import StorageUnavailable

    core.rule_store.put_rule(parse_rule(HOT))
    svc = service(core, Clock())
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
        real = core.rule_store.apply

        def down(*args: Any, **kw: Any) -> Any:
            raise StorageUnavailable("database unavailable: test")

        monkeypatch.setattr(core.rule_store, "apply", down)
        with pytest.raises(StorageUnavailable):
            svc.acknowledge(f"hot/d1/{T0}", "alice")
        monkeypatch.setattr(core.rule_store, "apply", real)
        change = svc.acknowledge(f"hot/d1/{T0}", "alice")  # a retry is not "already done"
        assert change.kind is ChangeKind.ACKNOWLEDGED
        stored = core.rule_store.get_alarm(f"hot/d1/{T0}")
        assert stored is not None and stored.alarm.state is AlarmState.ACKNOWLEDGED
    finally:
        svc.stop()


def test_a_stored_rule_that_no_longer_parses_is_skipped(core: Core) -> None:
    from wulian.storage.schema import rules as rules_table

    core.rule_store.put_rule(parse_rule(HOT))
    with core.rule_store.engine.begin() as conn:
        conn.execute(rules_table.insert().values(
            id="from-the-future", name="x", doc={"id": "from-the-future", "teleport": 1},
            enabled=True, version=1, created_ms=T0, updated_ms=T0))
    assert [s.rule.id for s in core.rule_store.list_rules()] == ["hot"]
    svc = service(core, Clock())
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
        assert core.rule_store.get_alarm(f"hot/d1/{T0}") is not None
    finally:
        svc.stop()


def test_a_deleted_devices_open_alarm_clears(core: Core) -> None:
    core.rule_store.put_rule(parse_rule(HOT))
    clock = Clock()
    svc = service(core, clock)
    try:
        svc.submit(point("d1", T0, 35))
        settle(svc)
        core.registry.delete_device("d1")
        clock.now = T0 + 5000
        svc.call(svc._check_epochs)
        settle(svc)
        stored = core.rule_store.get_alarm(f"hot/d1/{T0}")
        assert stored is not None and stored.alarm.state is AlarmState.CLEARED
        assert stored.alarm.cleared_ms == T0 + 5000
    finally:
        svc.stop()
