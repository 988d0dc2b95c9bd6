"""An external broker (Mosquitto in production): where it is, its config and dynamic-security
files, and device provisioning through it."""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import os
import pwd
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from wulian.access import topics
from wulian.config import Settings
from wulian.i18n import t

log = logging.getLogger(__name__)

PLATFORM_USER = "wulian-platform"  # the platform's own MQTT login, on either broker
PLATFORM_SECRET = "mqtt-platform.secret"  # its password's file in the data dir
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
PLATFORM_ROLE = "wulian-platform"
DEVICE_ROLE_PREFIX = "wulian-device-"
# What mosquitto_ctrl uses: pbkdf2-sha512, 12-byte salt. The hash only guards the admin's
# own password in the file; Mosquitto itself hashes the device passwords it is sent.
_PBKDF2_ITERATIONS = 101
_BENIGN = ("already exists", "not found")
QUEUED_MESSAGES_UNREACHABLE = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the platform's MQTT clients connect, and as whom."""

    host: str
    port: int
    username: str
    password: str

    @classmethod
    def parse(cls, url: str, *, username: str, password: str) -> BrokerUrl:
        """`mqtt://[user:pass@]host[:port]`; the login defaults to the one given."""
        parts = urlsplit(url)
        try:
            port = parts.port or 1883
        except ValueError:
            port = 0
        if parts.scheme != "mqtt" or not parts.hostname or not port:
            raise ValueError(t("mqtt.bad_broker_url", url=url))
        return cls(parts.hostname, port,
                   unquote(parts.username) if parts.username else username,
                   unquote(parts.password) if parts.password is not None else password)

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerUrl:
        """The configured broker, logging in as the platform (its secret from the data dir)."""
        if settings.embedded_broker:
            password, _ = settings.ensure_secret(PLATFORM_SECRET)
            return cls(settings.mqtt_host, settings.mqtt_port, PLATFORM_USER, password)
        parts = urlsplit(settings.broker)
        password = "" if parts.password is not None else settings.ensure_secret(
            PLATFORM_SECRET)[0]
        return cls.parse(settings.broker, username=PLATFORM_USER, password=password)

    def safe(self) -> str:
        """The URL without the password, for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{self.username}@{host}:{self.port}"


class BrokerAdminError(RuntimeError):
    """The broker could not be reached or refused a provisioning command."""


def render_config(port: int, data_dir: Path, *, dynsec_file: Path,
                  hosts: Sequence[str] = ("127.0.0.1", "::1"),
                  max_queued_bytes: int = 1 << 30, max_inflight: int = 1000, sys_interval: int = 10,
                  autosave_s: int = 30, log_file: Path | None = None,
                  user: str | None = None, plugin: str = DYNSEC_PLUGIN) -> str:
    """A mosquitto.conf under which the platform's subscription never loses messages silently."""
    lines = [
        "# Written by `wulian broker-config`. Mosquitto 2.0.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec_file.resolve()}",
        "",
        "# Queued QoS 1 messages survive a restart of the broker (saved every autosave_interval;",
        "# a crash loses at most that window of messages not yet delivered).",
        "persistence true",
        f"persistence_location {data_dir.resolve()}/",
        f"autosave_interval {autosave_s}",
        "",
        "# Mosquitto's default max_queued_messages is 1000 per client: with the platform's",
        "# consumer away for a few seconds at 10k msg/s it silently drops the rest, acked to the",
        "# devices. The count limit is therefore out of reach; memory is bounded by bytes",
        "# instead (per client: each ingest worker's session may hold this much; at ~100-byte",
        "# payloads 1 GiB is ~10M messages, a quarter of an hour of outage at 10k msg/s, and",
        "# costs roughly 2-3x that in broker RAM). Past it Mosquitto still drops, and counts it",
        "# in $SYS/broker/publish/messages/dropped, which ingest worker 0 watches and reports.",
        "# Not 0 (\"no limit\"): 2.0.11 then disconnects every client whose PUBLISH the ACL",
        "# denies (its out_packet_count >= max_queued_messages check is always true).",
        f"max_queued_messages {QUEUED_MESSAGES_UNREACHABLE}",
        f"max_queued_bytes {max_queued_bytes}",
        "# In-flight window for MQTT 3.1.1 subscribers and the Receive Maximum offered to MQTT 5",
        "# publishers; MQTT 5 subscribers (the ingest workers) announce their own.",
        f"max_inflight_messages {max_inflight}",
        "set_tcp_nodelay true",
        f"sys_interval {sys_interval}",
        "# Devices that ask for a persistent session and never come back.",
        "persistent_client_expiration 30d",
        "",
    ]
    if user:
        lines.append(f"user {user}")
    lines += [f"log_dest file {log_file.resolve()}" if log_file else "log_dest stderr",
              "# Mosquitto tells nobody but its log who connects: as $SYS/broker/log/N lines",
              "# the platform learns of devices coming and going (wulian.access.presence).",
              "log_dest topic",
              "log_type error", "log_type warning", "log_type notice", "log_type information",
              "connection_messages true", "log_timestamp_format %Y-%m-%dT%H:%M:%S", ""]
    lines += [f"listener {port} {host}" for host in hosts]
    return "\n".join(lines) + "\n"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def platform_role_acls() -> list[dict[str, Any]]:
    """The platform account may use every topic, `$SYS`, and the dynamic-security API."""
    acls = [_acl(kind, topic) for topic in ("#", "$SYS/#", f"{CONTROL_TOPIC}/#")
            for kind in ("publishClientReceive", "subscribePattern", "unsubscribePattern")]
    acls += [_acl("publishClientSend", topic) for topic in ("#", f"{CONTROL_TOPIC}/#")]
    return acls


def device_role_acls(device_id: str) -> list[dict[str, Any]]:
    """A device may publish, subscribe and receive only under `devices/{its id}/`.

    Mosquitto 2.0.11's dynamic-security plugin does not substitute %u or %c in ACL topics
    (tried: a shared role with `devices/%u/#` matched nothing), hence one role per device.
    """
    topic = topics.device_filter(device_id)
    return [_acl(kind, topic)
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = _PBKDF2_ITERATIONS) -> dict[str, Any]:
    """The `password`/`salt`/`iterations` fields of a dynamic-security client."""
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return {"password": base64.b64encode(digest).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": iterations}


def init_dynsec(path: Path, admin_user: str, admin_password: str) -> None:
    """Write a dynamic-security.json whose only client is the platform's account.

    Written here rather than with `mosquitto_ctrl dynsec init` (Debian's mosquitto-clients)
    so that the server package alone suffices; the format is the one that tool writes.
    """
    doc = {
        # Deny by default: a device gets exactly what its role allows, nothing by accident.
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": [{"username": admin_user, "textname": "wulian platform",
                     "roles": [{"rolename": PLATFORM_ROLE}], **hash_password(admin_password)}],
        "groups": [],
        "roles": [{"rolename": PLATFORM_ROLE, "acls": platform_role_acls()}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    tmp.replace(path)


def write_broker_files(directory: Path, port: int, admin_user: str, admin_password: str,
                       **options: Any) -> Path:
    """Write mosquitto.conf (and dynamic-security.json unless it exists); the conf's path.

    An existing dynamic-security.json is kept: Mosquitto keeps the devices' logins in it.
    `options` go to `render_config` (hosts, max_queued_bytes, sys_interval, log_file, user...).
    """
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    dynsec = directory / "dynamic-security.json"
    if not dynsec.exists():
        init_dynsec(dynsec, admin_user, admin_password)
    conf = directory / "mosquitto.conf"
    conf.write_text(render_config(port, data, dynsec_file=dynsec, **options))
    if os.geteuid() == 0 and options.get("user") in (None, "mosquitto"):
        # Started as root, Mosquitto becomes `mosquitto` before it reads the dynsec file
        # and writes its data: they must be that user's, or it runs without any logins.
        _give_to("mosquitto", directory, data, dynsec)
    return conf


def _give_to(user: str, *paths: Path) -> None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return  # no such user: Mosquitto falls back to `nobody` and says so in its log
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


class DynSecAdmin:
    """`BrokerAdmin` for Mosquitto: drives `$CONTROL/dynamic-security/v1` over one connection."""

    def __init__(self, url: BrokerUrl, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # one connect at a time; requests run concurrently
        self._cond = threading.Condition()
        self._responses: dict[str, dict[str, Any]] = {}
        self._pending: set[str] = set()  # answers still awaited (a late one is dropped)
        self._ids = itertools.count(1)
        self._client: mqtt.Client | None = None
        self._ready = False  # connected and subscribed to the responses
        self._problem: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> DynSecAdmin:
        """For `settings.broker` (`mqtt://user:pass@host:port`); platform login by default."""
        return cls(BrokerUrl.from_settings(settings))

    # -- BrokerAdmin ------------------------------------------------------------------
    def provision(self, device_id: str, secret: str) -> None:
        """Create (or reset) the device's login and its role limited to `devices/{id}/#`."""
        role = DEVICE_ROLE_PREFIX + device_id
        client = {"username": device_id, "password": secret, "clientid": device_id,
                  "roles": [{"rolename": role}]}
        # The client id is pinned to the device id: no device can take over (and so end)
        # another's session, nor the platform's.
        answers = self.request(
            {"command": "createRole", "rolename": role, "acls": device_role_acls(device_id)},
            {"command": "createClient", "textname": device_id, **client})
        if "already exists" in answers[1].get("error", "").lower():
            self.request({"command": "modifyClient", **client})

    def set_enabled(self, device_id: str, enabled: bool) -> None:
        """Enable or disable a device's login (disabling also disconnects it)."""
        command = "enableClient" if enabled else "disableClient"
        self.request({"command": command, "username": device_id})

    def remove(self, device_id: str) -> None:
        """Delete the device's login and role (absent ones are fine)."""
        self.request({"command": "deleteClient", "username": device_id},
                     {"command": "deleteRole", "rolename": DEVICE_ROLE_PREFIX + device_id})

    # -- transport --------------------------------------------------------------------
    def request(self, *commands: dict[str, Any]) -> list[dict[str, Any]]:
        """Send commands in one message; their answers in order (BrokerAdminError on failure).

        Answers whose error says the thing already exists or is not found are returned to
        the caller to judge; any other error raises.
        """
        client = self._connected()
        ids = [f"wulian-{next(self._ids)}" for _ in commands]
        body = {"commands": [{**c, "correlationData": cid} for c, cid in zip(commands, ids,
                                                                             strict=True)]}
        with self._cond:
            self._pending.update(ids)
        try:
            info = client.publish(CONTROL_TOPIC, orjson.dumps(body), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerAdminError(t("mqtt.broker_unreachable", url=self.url.safe(),
                                         detail=mqtt.error_string(info.rc)))
            with self._cond:
                if not self._cond.wait_for(lambda: all(i in self._responses for i in ids),
                                           self.timeout_s):
                    raise BrokerAdminError(t("mqtt.dynsec_timeout", url=self.url.safe(),
                                             timeout=self.timeout_s))
                answers = [self._responses[cid] for cid in ids]
        finally:
            with self._cond:
                self._pending.difference_update(ids)
                for cid in ids:
                    self._responses.pop(cid, None)
        for answer in answers:
            error = str(answer.get("error", ""))
            if error and not any(b in error.lower() for b in _BENIGN):
                raise BrokerAdminError(t("mqtt.dynsec_refused", command=answer.get("command"),
                                         error=error))
        return answers

    def _connected(self) -> mqtt.Client:
        with self._lock:
            if self._client is not None and self._client.is_connected() and self._ready:
                return self._client
            self.close()
            client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                 client_id=f"wulian-admin-{secrets.token_hex(6)}",
                                 protocol=MQTTProtocolVersion.MQTTv5)
            client.username_pw_set(self.url.username, self.url.password)
            client.on_connect = self._on_connect
            client.on_subscribe = self._on_subscribe
            client.on_message = self._on_message
            self._problem = None
            try:
                client.connect(self.url.host, self.url.port, keepalive=30)
            except OSError as exc:
                raise BrokerAdminError(t("mqtt.broker_unreachable", url=self.url.safe(),
                                         detail=str(exc))) from None
            client.loop_start()
            self._client = client
            with self._cond:
                self._cond.wait_for(lambda: self._ready or self._problem, self.timeout_s)
                problem = None if self._ready else (self._problem or "timeout")
            if problem is not None:
                self.close()
                raise BrokerAdminError(t("mqtt.dynsec_login_failed", url=self.url.safe(),
                                         detail=problem))
            return client

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode,
                    _p: Any) -> None:
        if rc.is_failure:
            with self._cond:
                self._problem = rc.getName()
                self._cond.notify_all()
        else:
            client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode],
                      _p: Any) -> None:
        with self._cond:
            self._ready = all(not code.is_failure for code in codes)
            if not self._ready:
                self._problem = "subscribe refused"
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = orjson.loads(msg.payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            log.warning(t("mqtt.dynsec_unreadable", topic=msg.topic))
            return
        with self._cond:
            for answer in responses:
                cid = answer.get("correlationData") if isinstance(answer, dict) else None
                if isinstance(cid, str) and cid in self._pending:
                    self._responses[cid] = answer
            self._cond.notify_all()

    def close(self) -> None:
        """Disconnect (a later request reconnects)."""
        client, self._client, self._ready = self._client, None, False
        if client is not None:
            client.disconnect()
            client.loop_stop()
