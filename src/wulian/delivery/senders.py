"""Senders: one per action kind, each sends one outbox row or raises `DeliveryError`.

A sender says whether a failure is worth retrying (`permanent=False`: timeouts, refused
connections, 5xx, 429) or not (`permanent=True`: 4xx, a bad address, nothing configured);
the worker turns that into backoff or the dead letter. Failure texts are what operators
read in `GET /deliveries`, so they go through `wulian.i18n.t` like every other message.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from wulian import __version__
from wulian.delivery.outbox import Delivery
from wulian.i18n import t
from wulian.rules.actions import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    SUBJECT_FIELDS,
    Action,
    EmailAction,
    MqttAction,
    WebhookAction,
    parse_action,
    sign,
)
from wulian.rules.alarms import GROUP, AlarmChange, ChangeKind
from wulian.rules.model import RuleError, Severity

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from wulian.config import Settings

log = logging.getLogger(__name__)
SNIPPET = 300  # bytes of a failing receiver's answer kept in the error
MAX_RETRY_AFTER_MS = 3_600_000
PublishFn = Callable[[str, bytes, int, bool], None]


class DeliveryError(Exception):
    """One attempt failed; `permanent` failures are not retried."""

    def __init__(self, message: str, *, permanent: bool = False,
                 retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after_ms = retry_after_ms


class Sender(Protocol):
    """Sends one delivery; returns on success, raises `DeliveryError` otherwise."""

    def send(self, delivery: Delivery, now_ms: int) -> None: ...


def _action(delivery: Delivery, lang: str | None) -> Action:
    # The spec was valid when the rule was saved; checking again keeps a hand-edited or
    # corrupted row from being sent half-understood.
    try:
        return parse_action(delivery.spec, "spec")
    except RuleError as exc:
        raise DeliveryError(t("actions.error.bad_spec", lang, problem=str(exc)),
                            permanent=True) from None


def _payload(delivery: Delivery) -> bytes:
    return orjson.dumps(delivery.body)


# --- webhook ----------------------------------------------------------------------------


def _retry_after(response: httpx.Response) -> int | None:
    raw = response.headers.get("retry-after", "").strip()
    if raw.isdigit():
        return min(int(raw) * 1000, MAX_RETRY_AFTER_MS)
    return None  # an HTTP-date is rare from webhook receivers; the backoff covers it


def _snippet(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_bytes(SNIPPET):  # bounded: a huge error page is not read
        data += chunk
        if len(data) >= SNIPPET:
            break
    return data[:SNIPPET].decode("utf-8", "replace").strip()


class WebhookSender:
    """POSTs the body as JSON, signed when the action has a secret."""

    def __init__(self, client: httpx.Client | None = None, lang: str | None = None) -> None:
        # Redirects are not followed: a moved receiver is a configuration to fix, and a
        # signed body must not be forwarded to wherever a 3xx points.
        self._client = client or httpx.Client(follow_redirects=False)
        self._owned = client is None
        self.lang = lang

    def close(self) -> None:
        """Close the HTTP client if this sender made it."""
        if self._owned:
            self._client.close()

    def send(self, delivery: Delivery, now_ms: int) -> None:
        """POST one delivery; DeliveryError says whether to retry."""
        action = _action(delivery, self.lang)
        if not isinstance(action, WebhookAction):
            raise DeliveryError(t("actions.error.wrong_kind", self.lang, kind=delivery.kind),
                                permanent=True)
        body = _payload(delivery)
        headers = dict(action.headers)
        headers.update({"Content-Type": "application/json",
                        "User-Agent": f"wulian/{__version__}",
                        DELIVERY_HEADER: str(delivery.id),
                        "X-Wulian-Event": str(delivery.body.get("event", ""))})
        if action.secret:
            headers[SIGNATURE_HEADER] = sign(action.secret, body, now_ms // 1000)
        lang, seconds = self.lang, action.timeout_ms / 1000
        try:
            with self._client.stream("POST", action.url, content=body, headers=headers,
                                     timeout=seconds) as response:
                status = response.status_code
                if 200 <= status < 300:
                    return
                detail = _snippet(response)
                text = t("actions.error.http_status", lang, status=status,
                         reason=response.reason_phrase, detail=detail or "—")
                if 300 <= status < 400:
                    raise DeliveryError(t("actions.error.redirect", lang, status=status,
                                          location=response.headers.get("location", "—")),
                                        permanent=True)
                if 400 <= status < 500 and status not in (408, 429):
                    raise DeliveryError(text, permanent=True)
                raise DeliveryError(text, retry_after_ms=_retry_after(response))
        except httpx.TimeoutException:
            raise DeliveryError(t("actions.error.timeout", lang, seconds=seconds)) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise DeliveryError(t("actions.error.bad_url", lang, error=str(exc)),
                                permanent=True) from None
        except httpx.HTTPError as exc:  # connection refused, reset, DNS, protocol errors
            raise DeliveryError(t("actions.error.connect", lang,
                                  error=str(exc) or type(exc).__name__)) from None


# --- e-mail -----------------------------------------------------------------------------


def _change_of(body: Mapping[str, Any]) -> AlarmChange | None:
    """The alarm change a body describes, to word it again in the sender's language."""
    try:
        return AlarmChange(str(body["alarm_id"]), str(body["rule_id"]), str(body["device"]),
                           ChangeKind(body["change"]), int(body["ts"]),
                           Severity(body["severity"]), body.get("value"), body.get("by"),
                           body.get("comment"), str(body.get("rule_name") or ""))
    except (KeyError, ValueError, TypeError):
        return None


class EmailSender:
    """Sends the change as a plain-text e-mail through one SMTP server."""

    def __init__(self, host: str | None, port: int = 25, sender: str = "wulian@localhost",
                 *, starttls: bool = False, username: str | None = None,
                 password: str | None = None, timeout_s: float = 30.0,
                 lang: str | None = None) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout_s = timeout_s
        self.lang = lang

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailSender:
        """The sender the platform's `smtp_*` settings describe."""
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_from,
                   starttls=settings.smtp_starttls, username=settings.smtp_user,
                   password=password, lang=settings.lang)

    def _fields(self, body: Mapping[str, Any]) -> dict[str, Any]:
        lang = self.lang
        device = body.get("device")
        change = str(body.get("change", ""))
        severity = str(body.get("severity", ""))
        return {
            "rule": body.get("rule_name") or body.get("rule_id"),
            "rule_id": body.get("rule_id"),
            "device": t("rules.group", lang) if device == GROUP else device,
            "severity": t(f"rules.severity.{severity}", lang) if severity else "—",
            "change": t(f"actions.change.{change}", lang) if change else "—",
            "value": body.get("value"),
            "alarm_id": body.get("alarm_id"),
        }

    def message(self, delivery: Delivery, now_ms: int) -> EmailMessage:
        """The e-mail for one delivery, in the sender's language."""
        action = _action(delivery, self.lang)
        if not isinstance(action, EmailAction):
            raise DeliveryError(t("actions.error.wrong_kind", self.lang, kind=delivery.kind),
                                permanent=True)
        lang, body = self.lang, delivery.body
        fields = self._fields(body)
        if action.subject is not None:
            clean = {k: ("—" if v is None else v) for k, v in fields.items()}
            # parse_action allowed only bare SUBJECT_FIELDS, so this cannot reach further
            subject = action.subject.format_map({k: clean.get(k, "—") for k in SUBJECT_FIELDS})
        else:
            subject = t("actions.email.subject", lang, **fields)
        change = _change_of(body)
        headline = change.message(lang) if change is not None else str(body.get("message"))
        text = t("actions.email.body", lang, message=headline, time=body.get("time"),
                 **fields)
        if body.get("by"):
            text += "\n" + t("actions.email.by", lang, by=body["by"])
        if body.get("comment"):
            text += "\n" + t("actions.email.comment", lang, comment=body["comment"])
        text += "\n\n-- \n" + t("actions.email.footer", lang, delivery=delivery.id)
        msg = EmailMessage()
        msg["Subject"] = " ".join(subject.split())  # a value may not break the header
        msg["From"] = self.sender
        msg["To"] = ", ".join(action.to)
        msg["Date"] = format_datetime(datetime.fromtimestamp(now_ms / 1000, UTC))
        # an explicit domain: make_msgid would otherwise ask DNS for this host's name
        domain = self.sender.rpartition("@")[2] or "localhost"
        msg["Message-ID"] = make_msgid(f"wulian.{delivery.id}", domain=domain)
        msg[DELIVERY_HEADER] = str(delivery.id)
        msg.set_content(text)
        return msg

    def send(self, delivery: Delivery, now_ms: int) -> None:
        """Hand one e-mail to the SMTP server; DeliveryError says whether to retry."""
        lang = self.lang
        if not self.host:
            raise DeliveryError(t("actions.error.smtp_not_configured", lang), permanent=True)
        msg = self.message(delivery, now_ms)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self._password or "")
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(t("actions.error.smtp_refused", lang,
                                  addresses=", ".join(exc.recipients)),
                                permanent=all(code >= 500 for code in codes)) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(t("actions.error.smtp", lang, error=str(exc)),
                                permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            said = exc.smtp_error
            error = f"{exc.smtp_code} " + (said.decode("utf-8", "replace")
                                           if isinstance(said, bytes) else str(said))
            raise DeliveryError(t("actions.error.smtp", lang, error=error),
                                permanent=exc.smtp_code >= 500) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS
            raise DeliveryError(t("actions.error.smtp", lang,
                                  error=str(exc) or type(exc).__name__)) from None
        if refused:  # the others got it; sending again would duplicate theirs
            log.warning(t("actions.log.smtp_refused", id=delivery.id,
                          rcpts=", ".join(refused)))


# --- MQTT -------------------------------------------------------------------------------


class MqttSender:
    """Republishes the body (plus `delivery_id`) through an injected publish function."""

    def __init__(self, publish: PublishFn | None, lang: str | None = None) -> None:
        self._publish = publish
        self.lang = lang

    def send(self, delivery: Delivery, now_ms: int) -> None:
        """Publish one delivery; DeliveryError says whether to retry."""
        if self._publish is None:
            raise DeliveryError(t("actions.error.mqtt_not_configured", self.lang),
                                permanent=True)
        action = _action(delivery, self.lang)
        if not isinstance(action, MqttAction):
            raise DeliveryError(t("actions.error.wrong_kind", self.lang, kind=delivery.kind),
                                permanent=True)
        # the id lets a subscriber drop the duplicate an at-least-once retry can cause
        payload = orjson.dumps({**delivery.body, "delivery_id": delivery.id})
        try:
            self._publish(action.topic, payload, action.qos, action.retain)
        except Exception as exc:
            raise DeliveryError(t("actions.error.mqtt", self.lang,
                                  error=str(exc) or type(exc).__name__)) from None


def paho_publisher(client: mqtt.Client, timeout_s: float = 10.0) -> PublishFn:
    """A publish function over a connected paho client: returns once the broker has it."""
    import paho.mqtt.client as mqtt

    def publish(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            raise ConnectionError(mqtt.error_string(info.rc))
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TimeoutError(f"no PUBACK within {timeout_s:g}s")

    return publish


def build_senders(settings: Settings, publish: PublishFn | None = None,
                  client: httpx.Client | None = None) -> dict[str, Sender]:
    """The senders for every action kind, from the platform's settings."""
    return {"webhook": WebhookSender(client, lang=settings.lang),
            "email": EmailSender.from_settings(settings),
            "mqtt": MqttSender(publish, lang=settings.lang)}
