"""Rule actions: what happens when an alarm is raised, acknowledged or cleared.

Pure domain, no I/O: parse the `actions` list of a rule document, `plan` the deliveries an
alarm change causes (rows for the `action_deliveries` outbox), and the webhook signature
scheme (`sign`/`verify`). Delivery itself lives in `wulian.delivery`.

Signature scheme (header `X-Wulian-Signature`): `t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256(secret, f"{t}." + body bytes). Signing the time with the body lets a receiver
refuse replays of an old, validly signed request (`verify` allows 5 minutes of skew).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from wulian.rules.alarms import GROUP, AlarmChange
from wulian.rules.model import RuleError, parse_duration

if TYPE_CHECKING:
    from wulian.rules.model import Rule

MAX_ACTIONS = 10
CHANGES = ("raised", "cleared", "acknowledged")
DEFAULT_ON = ("raised", "cleared")
ACTION_TYPES = ("webhook", "email", "mqtt")
SIGNATURE_HEADER = "X-Wulian-Signature"
DELIVERY_HEADER = "X-Wulian-Delivery"
REDACTED = "***"
SIGNATURE_TOLERANCE_S = 300

MAX_URL = 2048
MIN_SECRET, MAX_SECRET = 16, 256
MAX_HEADERS, MAX_HEADER_VALUE = 16, 1024
MAX_TIMEOUT_MS = 60_000
MAX_RECIPIENTS = 20
MAX_SUBJECT = 200
MAX_TOPIC = 256
# RFC 9110 token characters: anything else could split or smuggle a header.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
# These the sender sets itself; letting a rule override them would break signing or framing.
RESERVED_HEADERS = frozenset({
    "content-type", "content-length", "host", "transfer-encoding", "connection",
    SIGNATURE_HEADER.lower(), DELIVERY_HEADER.lower()})
# Header values worth hiding in API output (credentials a receiver may want).
SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|password|cookie|signature", re.I)
# Deliberately simple: SMTP servers are the judge of addresses; this catches typos and
# anything that could inject another header (CR/LF, commas, angle brackets).
EMAIL = re.compile(r"^[^@\s<>,;:\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
SUBJECT_FIELDS = ("rule", "rule_id", "device", "severity", "change", "value", "alarm_id")


@dataclass(frozen=True, slots=True)
class WebhookAction:
    """POST the change as signed JSON to `url`."""

    url: str
    secret: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    timeout_ms: int = 10_000
    on: tuple[str, ...] = DEFAULT_ON
    kind: ClassVar[str] = "webhook"

    @property
    def target(self) -> str:
        return self.url

    def spec(self) -> dict[str, Any]:
        """The action as a document `parse_action` accepts again (defaults spelled out)."""
        doc: dict[str, Any] = {"type": self.kind, "url": self.url,
                               "headers": dict(self.headers), "timeout": self.timeout_ms,
                               "on": list(self.on)}
        if self.secret is not None:
            doc["secret"] = self.secret
        return doc


@dataclass(frozen=True, slots=True)
class EmailAction:
    """Mail the change to `to` (the SMTP server is the platform's setting)."""

    to: tuple[str, ...]
    subject: str | None = None  # a template over SUBJECT_FIELDS; None: the translated default
    on: tuple[str, ...] = DEFAULT_ON
    kind: ClassVar[str] = "email"

    @property
    def target(self) -> str:
        return ", ".join(self.to)

    def spec(self) -> dict[str, Any]:
        """The action as a document `parse_action` accepts again (defaults spelled out)."""
        doc: dict[str, Any] = {"type": self.kind, "to": list(self.to), "on": list(self.on)}
        if self.subject is not None:
            doc["subject"] = self.subject
        return doc


@dataclass(frozen=True, slots=True)
class MqttAction:
    """Republish the change as JSON to an MQTT topic."""

    topic: str
    qos: int = 1
    retain: bool = False
    on: tuple[str, ...] = DEFAULT_ON
    kind: ClassVar[str] = "mqtt"

    @property
    def target(self) -> str:
        return self.topic

    def spec(self) -> dict[str, Any]:
        """The action as a document `parse_action` accepts again (defaults spelled out)."""
        return {"type": self.kind, "topic": self.topic, "qos": self.qos,
                "retain": self.retain, "on": list(self.on)}


Action = WebhookAction | EmailAction | MqttAction


@dataclass(frozen=True)
class DeliveryDraft:
    """One delivery an alarm change causes, before it has an outbox id."""

    rule_id: str
    alarm_id: str
    change: str
    action: int
    kind: str
    target: str
    spec: dict[str, Any]
    body: dict[str, Any]


# --- parsing ----------------------------------------------------------------------------


def _known(doc: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    for key in doc:
        if key not in allowed:
            raise RuleError(f"{path}.{key}", "is not a known field")


def _text(raw: Any, path: str, low: int, high: int) -> str:
    if not isinstance(raw, str) or not low <= len(raw) <= high:
        raise RuleError(path, f"must be a string of {low} to {high} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise RuleError(path, "must not contain control characters (line breaks included)")
    return raw


def _on(doc: Mapping[str, Any], path: str) -> tuple[str, ...]:
    raw = doc.get("on", list(DEFAULT_ON))
    where = f"{path}.on"
    if not isinstance(raw, list) or not raw:
        raise RuleError(where, "must be a non-empty list of: " + ", ".join(CHANGES))
    for i, item in enumerate(raw):
        if item not in CHANGES:
            raise RuleError(f"{where}[{i}]", "must be one of: " + ", ".join(CHANGES))
    if len(set(raw)) != len(raw):
        raise RuleError(where, "names a change twice")
    return tuple(raw)


def _webhook(doc: Mapping[str, Any], path: str) -> WebhookAction:
    _known(doc, path, {"type", "url", "secret", "headers", "timeout", "on"})
    if "url" not in doc:
        raise RuleError(f"{path}.url", "is required")
    url = _text(doc["url"], f"{path}.url", 1, MAX_URL)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port out of range or not a number
    except ValueError:
        raise RuleError(f"{path}.url", "is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RuleError(f"{path}.url", "must be an http:// or https:// URL with a host")
    if " " in url:
        raise RuleError(f"{path}.url", "must not contain spaces (percent-encode them)")
    if parts.username is not None or parts.password is not None:
        # the URL is shown to people as the target; credentials belong in headers
        raise RuleError(f"{path}.url", "must not carry user:password; put credentials "
                        "in headers")
    secret = None
    if "secret" in doc:
        secret = doc["secret"]
        if not isinstance(secret, str) or not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise RuleError(f"{path}.secret", f"must be a string of {MIN_SECRET} to "
                            f"{MAX_SECRET} characters (a short secret is guessable)")
    headers_raw = doc.get("headers", {})
    if not isinstance(headers_raw, Mapping) or len(headers_raw) > MAX_HEADERS:
        raise RuleError(f"{path}.headers", f"must be an object of at most {MAX_HEADERS} "
                        "header names to strings")
    headers: list[tuple[str, str]] = []
    for name, value in headers_raw.items():
        where = f"{path}.headers.{name}"
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise RuleError(where, "is not a valid HTTP header name")
        if name.lower() in RESERVED_HEADERS:
            raise RuleError(where, "is set by the platform and cannot be overridden")
        headers.append((name, _text(value, where, 0, MAX_HEADER_VALUE)))
    timeout = parse_duration(doc.get("timeout", "10s"), f"{path}.timeout")
    if not 0 < timeout <= MAX_TIMEOUT_MS:
        raise RuleError(f"{path}.timeout", "must be longer than 0 and at most 60s")
    return WebhookAction(url, secret, tuple(headers), timeout, _on(doc, path))


def _subject(raw: Any, path: str) -> str:
    subject = _text(raw, path, 1, MAX_SUBJECT)
    try:
        fields = list(string.Formatter().parse(subject))
    except ValueError:
        raise RuleError(path, "has an unbalanced { or }; write {{ or }} for a literal "
                        "brace") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        # only bare names: `{rule.__class__}` or format specs could reach into objects
        if name not in SUBJECT_FIELDS or spec or conversion:
            raise RuleError(path, f"placeholder {{{name}}} is not one of: "
                            + ", ".join("{" + f + "}" for f in SUBJECT_FIELDS))
    return subject


def _email(doc: Mapping[str, Any], path: str) -> EmailAction:
    _known(doc, path, {"type", "to", "subject", "on"})
    if "to" not in doc:
        raise RuleError(f"{path}.to", "is required")
    to = doc["to"]
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not 1 <= len(to) <= MAX_RECIPIENTS:
        raise RuleError(f"{path}.to", f"must be a list of 1 to {MAX_RECIPIENTS} e-mail "
                        "addresses")
    for i, address in enumerate(to):
        if not isinstance(address, str) or len(address) > 254 or not EMAIL.fullmatch(address):
            raise RuleError(f"{path}.to[{i}]", "must be an e-mail address like "
                            "ops@example.com")
    if len(set(to)) != len(to):
        raise RuleError(f"{path}.to", "names an address twice")
    subject = _subject(doc["subject"], f"{path}.subject") if "subject" in doc else None
    return EmailAction(tuple(to), subject, _on(doc, path))


def _mqtt(doc: Mapping[str, Any], path: str) -> MqttAction:
    _known(doc, path, {"type", "topic", "qos", "retain", "on"})
    if "topic" not in doc:
        raise RuleError(f"{path}.topic", "is required")
    topic = _text(doc["topic"], f"{path}.topic", 1, MAX_TOPIC)
    if "+" in topic or "#" in topic:
        raise RuleError(f"{path}.topic", "must not contain the wildcards + or #")
    if topic.startswith("$"):
        raise RuleError(f"{path}.topic", "must not start with $ (reserved for the broker)")
    if topic == "wulian" or topic.startswith("wulian/"):
        # the platform's own topics (the committed-batch feed): a rule must not feed them
        raise RuleError(f"{path}.topic", "must not be under wulian/ (the platform's own "
                        "topics)")
    if topic == "devices" or topic.startswith("devices/"):
        # everything under devices/ speaks for a device; a rule must never pose as one
        raise RuleError(f"{path}.topic", "must not be under devices/ (those topics belong "
                        "to devices)")
    qos = doc.get("qos", 1)
    if isinstance(qos, bool) or qos not in (0, 1):
        raise RuleError(f"{path}.qos", "must be 0 or 1")
    retain = doc.get("retain", False)
    if not isinstance(retain, bool):
        raise RuleError(f"{path}.retain", "must be true or false")
    return MqttAction(topic, qos, retain, _on(doc, path))


def parse_action(raw: Any, path: str) -> Action:
    """One action document (`path` like `$.actions[0]` names it in errors)."""
    if not isinstance(raw, Mapping):
        raise RuleError(path, "must be an object")
    if "type" not in raw:
        raise RuleError(f"{path}.type", "is required")
    kind = raw["type"]
    if kind == "command":
        raise RuleError(f"{path}.type", "commands to devices are not available yet; use "
                        "webhook, email or mqtt")
    if kind == "webhook":
        return _webhook(raw, path)
    if kind == "email":
        return _email(raw, path)
    if kind == "mqtt":
        return _mqtt(raw, path)
    raise RuleError(f"{path}.type", "must be one of: " + ", ".join(ACTION_TYPES))


def parse_actions(raw: Any, path: str = "$.actions") -> tuple[Action, ...]:
    """The `actions` list of a rule document."""
    if not isinstance(raw, list) or len(raw) > MAX_ACTIONS:
        raise RuleError(path, f"must be a list of at most {MAX_ACTIONS} actions")
    return tuple(parse_action(item, f"{path}[{i}]") for i, item in enumerate(raw))


# --- planning ---------------------------------------------------------------------------


def iso_ms(ts_ms: int) -> str:
    """`2024-05-01T08:00:00.000Z` for epoch milliseconds."""
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def change_body(change: AlarmChange, now_ms: int, lang: str | None = None) -> dict[str, Any]:
    """The JSON document every action sends for one alarm change."""
    return {
        "event": f"alarm.{change.kind.value}",
        "rule_id": change.rule_id,
        "rule_name": change.rule_name or change.rule_id,
        "alarm_id": change.alarm_id,
        "change": change.kind.value,
        "device": change.subject,
        "group": change.subject == GROUP,
        "severity": change.severity.value,
        "value": change.value,
        "ts": change.ts,
        "time": iso_ms(change.ts),
        "by": change.by,
        "comment": change.comment,
        "message": change.message(lang),
        "created_ms": now_ms,
    }


def plan(rule: Rule, change: AlarmChange, now_ms: int,
         lang: str | None = None) -> list[DeliveryDraft]:
    """The deliveries `change` causes under `rule`'s actions (none fire for other kinds)."""
    fired = [(i, a) for i, a in enumerate(rule.actions) if change.kind.value in a.on]
    if not fired:
        return []
    body = change_body(change, now_ms, lang)
    return [DeliveryDraft(rule.id, change.alarm_id, change.kind.value, i, a.kind, a.target,
                          a.spec(), dict(body)) for i, a in fired]


def draft_row(draft: DeliveryDraft, now_ms: int) -> dict[str, Any]:
    """The `action_deliveries` insert values for a draft: pending, due now."""
    return {"rule_id": draft.rule_id, "alarm_id": draft.alarm_id, "change": draft.change,
            "action": draft.action, "kind": draft.kind, "target": draft.target,
            "spec": draft.spec, "body": draft.body, "state": "pending", "attempts": 0,
            "next_ms": now_ms, "last_error": None, "created_ms": now_ms, "done_ms": None}


# --- signatures -------------------------------------------------------------------------


def _digest(secret: str, body: bytes, ts: int) -> str:
    return hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, ts: int) -> str:
    """The `X-Wulian-Signature` value for `body` sent at unix time `ts` (seconds)."""
    return f"t={ts},v1={_digest(secret, body, ts)}"


def verify(secret: str, body: bytes, header: str, now_s: int,
           tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """True when `header` signs `body` with `secret` and its time is within the tolerance."""
    ts: int | None = None
    given: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit() and len(value) <= 12:
            ts = int(value)
        elif name == "v1":
            given.append(value)
    if ts is None or not given or abs(now_s - ts) > tolerance_s:
        return False
    expected = _digest(secret, body, ts)
    # several v1 entries are allowed so a sender can sign with an old and a new secret
    return any(hmac.compare_digest(expected, g) for g in given)


# --- secrets in API output --------------------------------------------------------------


def _redact_action(action: Any) -> Any:
    if not isinstance(action, Mapping) or action.get("type") != "webhook":
        return action
    out = dict(action)
    if isinstance(out.get("secret"), str):
        out["secret"] = REDACTED
    headers = out.get("headers")
    if isinstance(headers, Mapping):
        out["headers"] = {k: (REDACTED if isinstance(k, str) and SENSITIVE_HEADER.search(k)
                              else v) for k, v in headers.items()}
    return out


def redact(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a rule document (or one action spec) with webhook secrets shown as ***."""
    if doc.get("type") == "webhook":
        out: dict[str, Any] = _redact_action(doc)
        return out
    out = dict(doc)
    if isinstance(doc.get("actions"), list):
        out["actions"] = [_redact_action(a) for a in doc["actions"]]
    return out


def restore_secrets(doc: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any]:
    """`doc` with each *** put back from `previous` where the same action keeps its URL.

    A client that edits what `redact` gave it sends *** back; the secret stays as it was,
    but only for the same URL, so a changed URL never inherits a secret it was not given.
    """
    out = dict(doc)
    new, old = doc.get("actions"), previous.get("actions")
    if not isinstance(new, list) or not isinstance(old, list):
        return out
    restored: list[Any] = []
    for i, action in enumerate(new):
        before = old[i] if i < len(old) else None
        if (not isinstance(action, Mapping) or not isinstance(before, Mapping)
                or action.get("type") != "webhook" or before.get("type") != "webhook"
                or action.get("url") != before.get("url")):
            restored.append(action)
            continue
        action = dict(action)
        if action.get("secret") == REDACTED and "secret" in before:
            action["secret"] = before["secret"]
        headers, old_headers = action.get("headers"), before.get("headers")
        if isinstance(headers, Mapping) and isinstance(old_headers, Mapping):
            action["headers"] = {k: (old_headers[k] if v == REDACTED and k in old_headers
                                     else v) for k, v in headers.items()}
        restored.append(action)
    out["actions"] = restored
    return out

