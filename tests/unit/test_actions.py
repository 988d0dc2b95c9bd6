"""Rule actions: parsing (every refusal names the field), planning, signatures, redaction."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulian.rules.actions import (
    MAX_ACTIONS,
    REDACTED,
    SIGNATURE_HEADER,
    DeliveryDraft,
    EmailAction,
    MqttAction,
    WebhookAction,
    draft_row,
    parse_action,
    parse_actions,
    plan,
    redact,
    restore_secrets,
    sign,
    verify,
)
from wulian.rules.alarms import GROUP, AlarmChange, ChangeKind
from wulian.rules.model import RuleError, Severity, parse_rule

SECRET = "s3cret-s3cret-s3cret"
HOOK = {"type": "webhook", "url": "https://hooks.example.com/alarms", "secret": SECRET}
MAIL = {"type": "email", "to": ["ops@example.com", "duty@example.org"]}
MQTT = {"type": "mqtt", "topic": "alerts/air"}


def rule_doc(actions: list[Any]) -> dict[str, Any]:
    return {"id": "hot", "name": "Too hot", "product": "env-sensor",
            "condition": {"type": "threshold", "property": "temperature", "op": ">",
                          "value": 80}, "actions": actions}


def refused(actions: Any) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rule(rule_doc(actions))
    return info.value


# --- parsing --------------------------------------------------------------------------


def test_each_type_parses_with_defaults() -> None:
    rule = parse_rule(rule_doc([HOOK, MAIL, MQTT]))
    hook, mail, mqtt = rule.actions
    assert hook == WebhookAction("https://hooks.example.com/alarms", SECRET, (), 10_000,
                                 ("raised", "cleared"))
    assert mail == EmailAction(("ops@example.com", "duty@example.org"))
    assert mqtt == MqttAction("alerts/air", qos=1, retain=False)
    assert [a.target for a in rule.actions] == [
        "https://hooks.example.com/alarms", "ops@example.com, duty@example.org", "alerts/air"]


def test_a_rule_without_actions_has_none() -> None:
    doc = rule_doc([])
    del doc["actions"]
    assert parse_rule(doc).actions == ()


def test_every_option_parses_and_the_spec_round_trips() -> None:
    docs = [
        {**HOOK, "headers": {"X-Team": "air", "Authorization": "Bearer abc"},
         "timeout": "2.5s", "on": ["raised", "acknowledged", "cleared"]},
        {"type": "email", "to": "one@example.com", "subject": "{severity}: {rule} on {device}",
         "on": ["raised"]},
        {"type": "mqtt", "topic": "city/alerts/air", "qos": 0, "retain": True, "on": ["cleared"]},
    ]
    for i, doc in enumerate(docs):
        action = parse_action(doc, f"$.actions[{i}]")
        assert parse_action(action.spec(), "spec") == action
    hook = parse_action(docs[0], "$")
    assert isinstance(hook, WebhookAction)
    assert hook.timeout_ms == 2500 and dict(hook.headers)["X-Team"] == "air"


@pytest.mark.parametrize(("actions", "path", "words"), [
    ({"type": "webhook"}, "$.actions", "list"),
    ([HOOK] * (MAX_ACTIONS + 1), "$.actions", "at most 10"),
    (["webhook"], "$.actions[0]", "object"),
    ([{"url": "http://x"}], "$.actions[0].type", "required"),
    ([HOOK, {"type": "sms"}], "$.actions[1].type", "webhook, email, mqtt"),
    ([{"type": "webhook"}], "$.actions[0].url", "required"),
    ([HOOK, {"type": "webhook", "url": "ftp://example.com/x"}], "$.actions[1].url", "http"),
    ([{"type": "webhook", "url": "http://"}], "$.actions[0].url", "host"),
    ([{"type": "webhook", "url": "http://example.com:99999/"}], "$.actions[0].url", "valid"),
    ([{"type": "webhook", "url": "http://u:p@example.com/"}], "$.actions[0].url", "headers"),
    ([{"type": "webhook", "url": "http://example.com/a b"}], "$.actions[0].url", "spaces"),
    ([{"type": "webhook", "url": "http://example.com/\r\nX: y"}], "$.actions[0].url",
     "control"),
    ([{"type": "webhook", "url": 5}], "$.actions[0].url", "string"),
    ([{**HOOK, "secret": "short"}], "$.actions[0].secret", "16"),
    ([{**HOOK, "secret": REDACTED}], "$.actions[0].secret", "16"),
    ([{**HOOK, "headers": ["X-A"]}], "$.actions[0].headers", "object"),
    ([{**HOOK, "headers": {"Bad Name": "x"}}], "$.actions[0].headers.Bad Name", "header name"),
    ([{**HOOK, "headers": {"content-type": "text/plain"}}],
     "$.actions[0].headers.content-type", "set by the platform"),
    ([{**HOOK, "headers": {"X-Wulian-Signature": "t=1"}}],
     "$.actions[0].headers.X-Wulian-Signature", "set by the platform"),
    ([{**HOOK, "headers": {"X-A": "a\r\nX-B: b"}}], "$.actions[0].headers.X-A", "control"),
    ([{**HOOK, "headers": {"X-A": 1}}], "$.actions[0].headers.X-A", "string"),
    ([{**HOOK, "timeout": "2m"}], "$.actions[0].timeout", "60s"),
    ([{**HOOK, "timeout": 0}], "$.actions[0].timeout", "longer than 0"),
    ([{**HOOK, "timeout": "soon"}], "$.actions[0].timeout", "duration"),
    ([{**HOOK, "on": []}], "$.actions[0].on", "non-empty"),
    ([{**HOOK, "on": "raised"}], "$.actions[0].on", "list"),
    ([{**HOOK, "on": ["raised", "fired"]}], "$.actions[0].on[1]", "raised, cleared"),
    ([{**HOOK, "on": ["raised", "raised"]}], "$.actions[0].on", "twice"),
    ([{**HOOK, "retries": 3}], "$.actions[0].retries", "not a known field"),
    ([{"type": "email"}], "$.actions[0].to", "required"),
    ([{"type": "email", "to": []}], "$.actions[0].to", "1 to 20"),
    ([{"type": "email", "to": ["ops@example.com", "nobody"]}], "$.actions[0].to[1]",
     "e-mail address"),
    ([{"type": "email", "to": ["a@example.com\r\nBcc: x@example.com"]}],
     "$.actions[0].to[0]", "e-mail address"),
    ([{"type": "email", "to": ["a@example.com", "a@example.com"]}], "$.actions[0].to",
     "twice"),
    ([{**MAIL, "subject": "{rule.__class__}"}], "$.actions[0].subject", "placeholder"),
    ([{**MAIL, "subject": "{secret}"}], "$.actions[0].subject", "placeholder"),
    ([{**MAIL, "subject": "{rule!r}"}], "$.actions[0].subject", "placeholder"),
    ([{**MAIL, "subject": "{rule:>99}"}], "$.actions[0].subject", "placeholder"),
    ([{**MAIL, "subject": "oops {"}], "$.actions[0].subject", "unbalanced"),
    ([{**MAIL, "subject": "a\nBcc: x@example.com"}], "$.actions[0].subject", "control"),
    ([{**MAIL, "subject": ""}], "$.actions[0].subject", "1 to 200"),
    ([{"type": "mqtt"}], "$.actions[0].topic", "required"),
    ([{"type": "mqtt", "topic": "alerts/#"}], "$.actions[0].topic", "wildcards"),
    ([{"type": "mqtt", "topic": "alerts/+/air"}], "$.actions[0].topic", "wildcards"),
    ([{"type": "mqtt", "topic": "devices/d1/telemetry"}], "$.actions[0].topic", "devices/"),
    ([{"type": "mqtt", "topic": "devices"}], "$.actions[0].topic", "devices/"),
    ([{"type": "mqtt", "topic": "$SYS/x"}], "$.actions[0].topic", "$"),
    ([{"type": "mqtt", "topic": "a\x00b"}], "$.actions[0].topic", "control"),
    ([{**MQTT, "qos": 2}], "$.actions[0].qos", "0 or 1"),
    ([{**MQTT, "qos": True}], "$.actions[0].qos", "0 or 1"),
    ([{**MQTT, "retain": "yes"}], "$.actions[0].retain", "true or false"),
])
def test_every_refusal_names_the_field(actions: Any, path: str, words: str) -> None:
    error = refused(actions)
    assert error.path == path, error
    assert words in error.problem, error


def test_a_command_action_is_refused_clearly_not_faked() -> None:
    error = refused([HOOK, {"type": "command", "command": "reboot", "params": {}}])
    assert error.path == "$.actions[1].type"
    assert "commands to devices are not available yet" in error.problem


def test_an_unknown_top_level_field_is_still_refused() -> None:
    doc = rule_doc([HOOK])
    doc["action"] = []
    with pytest.raises(RuleError) as info:
        parse_rule(doc)
    assert info.value.path == "$.action"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)
ACTION_LIKE = st.fixed_dictionaries(
    {"type": st.sampled_from(["webhook", "email", "mqtt", "command", "x"])},
    optional={"url": JSON | st.just("http://example.com/h"), "to": JSON, "topic": JSON,
              "secret": JSON, "headers": JSON, "timeout": JSON, "on": JSON, "qos": JSON,
              "retain": JSON, "subject": JSON})


@settings(max_examples=300, deadline=None)
@given(st.lists(ACTION_LIKE | JSON, max_size=3) | JSON)
def test_parsing_anything_refuses_with_a_rule_error_or_succeeds(raw: Any) -> None:
    try:
        actions = parse_actions(raw)
    except RuleError as exc:
        assert exc.path.startswith("$.actions")
        return
    for action in actions:
        assert parse_action(action.spec(), "spec") == action


# --- planning -------------------------------------------------------------------------


def change(kind: ChangeKind, subject: str = "d1", **kw: Any) -> AlarmChange:
    return AlarmChange("hot/d1/1700000000000", "hot", subject, kind, 1_700_000_000_000,
                       Severity.MAJOR, 81.5, rule_name="Too hot", **kw)


def test_plan_fires_the_actions_that_listen_for_the_change() -> None:
    rule = parse_rule(rule_doc([HOOK, {**MAIL, "on": ["acknowledged"]}, MQTT]))
    drafts = plan(rule, change(ChangeKind.RAISED), 1_700_000_000_500, "en")
    assert [(d.action, d.kind) for d in drafts] == [(0, "webhook"), (2, "mqtt")]
    first = drafts[0]
    assert (first.rule_id, first.alarm_id, first.change) == ("hot", "hot/d1/1700000000000",
                                                              "raised")
    assert first.target == "https://hooks.example.com/alarms"
    assert first.spec == rule.actions[0].spec() and first.spec["secret"] == SECRET
    assert first.body == {
        "event": "alarm.raised", "rule_id": "hot", "rule_name": "Too hot",
        "alarm_id": "hot/d1/1700000000000", "change": "raised", "device": "d1",
        "group": False, "severity": "major", "value": 81.5, "ts": 1_700_000_000_000,
        "time": "2023-11-14T22:13:20.000Z", "by": None, "comment": None,
        "message": "major alarm raised by rule 'Too hot' on d1 (value: 81.5)",
        "created_ms": 1_700_000_000_500}
    acked = plan(rule, change(ChangeKind.ACKNOWLEDGED, by="li", comment="on it"), 1, "zh")
    assert [(d.action, d.kind, d.target) for d in acked] == [
        (1, "email", "ops@example.com, duty@example.org")]
    assert acked[0].body["by"] == "li" and acked[0].body["comment"] == "on it"
    assert "li" in acked[0].body["message"] and "确认" in acked[0].body["message"]
    assert plan(rule, change(ChangeKind.CLEARED), 1, "en")[0].body["event"] == "alarm.cleared"


def test_a_group_alarm_is_device_star() -> None:
    rule = parse_rule(rule_doc([MQTT]))
    body = plan(rule, change(ChangeKind.RAISED, subject=GROUP), 0)[0].body
    assert body["device"] == "*" and body["group"] is True


def test_drafts_of_one_change_do_not_share_a_body() -> None:
    rule = parse_rule(rule_doc([HOOK, MQTT]))
    a, b = plan(rule, change(ChangeKind.RAISED), 0)
    a.body["value"] = "changed"
    assert b.body["value"] == 81.5


def test_draft_row_is_a_pending_delivery_due_now() -> None:
    draft = DeliveryDraft("hot", "hot/d1/1", "raised", 0, "mqtt", "alerts/air",
                          {"type": "mqtt"}, {"x": 1})
    assert draft_row(draft, 42) == {
        "rule_id": "hot", "alarm_id": "hot/d1/1", "change": "raised", "action": 0,
        "kind": "mqtt", "target": "alerts/air", "spec": {"type": "mqtt"}, "body": {"x": 1},
        "state": "pending", "attempts": 0, "next_ms": 42, "last_error": None,
        "created_ms": 42, "done_ms": None}


# --- signatures -----------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_time_dot_body() -> None:
    body = b'{"event":"alarm.raised"}'
    header = sign(SECRET, body, 1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert SIGNATURE_HEADER == "X-Wulian-Signature"


def test_verify_accepts_only_the_right_body_secret_and_time() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, 1000)
    assert verify(SECRET, body, header, 1000)
    assert verify(SECRET, body, header, 1000 + 300)
    assert not verify(SECRET, body, header, 1000 + 301)  # a replay, too late
    assert not verify(SECRET, body, header, 1000 - 301)
    assert not verify(SECRET, b'{"a":2}', header, 1000)
    assert not verify("another-secret-entirely", body, header, 1000)
    assert not verify(SECRET, body, header.replace("t=1000", "t=1001"), 1000)
    for garbage in ("", "v1=abc", "t=1000", "t=x,v1=" + "0" * 64, "nonsense"):
        assert not verify(SECRET, body, garbage, 1000)


def test_verify_takes_any_of_several_signatures() -> None:
    body = b"{}"
    old = sign("the-old-secret-value", body, 5).split(",")[1]
    both = sign(SECRET, body, 5) + "," + old
    assert verify(SECRET, body, both, 5) and verify("the-old-secret-value", body, both, 5)


# --- redaction ------------------------------------------------------------------------


def test_redact_hides_webhook_secrets_and_credential_headers() -> None:
    hook = {**HOOK, "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k",
                                "X-Team": "air"}}
    doc = rule_doc([hook, MAIL, MQTT])
    shown = redact(doc)
    assert shown["actions"][0]["secret"] == REDACTED
    assert shown["actions"][0]["headers"] == {"Authorization": REDACTED,
                                              "X-Api-Key": REDACTED, "X-Team": "air"}
    assert shown["actions"][1:] == [MAIL, MQTT]
    assert doc["actions"][0]["secret"] == SECRET  # the original is untouched
    assert redact(parse_action(hook, "$").spec())["secret"] == REDACTED
    assert redact(MQTT) == MQTT
    assert redact({"id": "no-actions"}) == {"id": "no-actions"}


def test_restore_secrets_puts_them_back_only_for_the_same_url() -> None:
    hook = {**HOOK, "headers": {"Authorization": "Bearer abc"}}
    before = rule_doc([hook, MQTT])
    edited = redact(before)
    edited["name"] = "Very hot"
    again = restore_secrets(edited, before)
    assert again["actions"][0] == hook and again["name"] == "Very hot"
    assert parse_rule(again).actions[0] == parse_rule(before).actions[0]
    moved = redact(before)
    moved["actions"][0]["url"] = "https://elsewhere.example.net/"
    kept = restore_secrets(moved, before)
    assert kept["actions"][0]["secret"] == REDACTED
    with pytest.raises(RuleError) as info:  # so saving it is refused, not a weak secret
        parse_rule(kept)
    assert info.value.path == "$.actions[0].secret"


def test_an_mqtt_action_may_not_publish_on_the_platforms_own_topics() -> None:
    from wulian.rules.model import RuleError, parse_rule

    doc = {"id": "r", "product": "p", "condition": {
        "type": "threshold", "property": "t", "op": ">", "value": 1},
        "actions": [{"type": "mqtt", "topic": "wulian/internal/committed"}]}
    with pytest.raises(RuleError) as caught:
        parse_rule(doc)
    assert caught.value.path == "$.actions[0].topic"
