"""Device presence from Mosquitto's own notices.

Mosquitto tells nobody but its log when a client connects or leaves. With `log_dest topic`
(which `wulian broker-config` sets) it publishes those lines to `$SYS/broker/log/N`; this
module turns them into connect/disconnect records with the remote address and IP version.
The embedded broker reports presence through its plugin instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

LOG_TOPIC = "$SYS/broker/log/N"
# "New client connected from ::1:42392 as dev1 (p2, c1, k60, u'dev1')."
_CONNECTED = re.compile(
    r"New client connected from (?P<addr>\S+):(?P<port>\d+) as (?P<client>\S+) "
    r"\((?P<opts>[^)]*)\)")
_USER = re.compile(r"u'(?P<user>[^']*)'")
# "Client dev1 disconnected." / "closed its connection." / "has exceeded timeout, ..."
_GONE = re.compile(r"Client (?P<client>\S+) (?:disconnected|closed its connection|"
                   r"has exceeded timeout|already connected)")


@dataclass(frozen=True, slots=True)
class Presence:
    device_id: str
    connected: bool
    remote: str | None


def format_remote(host: str, port: str | int) -> str:
    """`1.2.3.4:5` or `[::1]:5`: the form every adapter uses."""
    if ":" in host:
        try:  # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d; they are IPv4
            mapped = ipaddress.IPv6Address(host.split("%", 1)[0]).ipv4_mapped
        except ValueError:
            mapped = None
        return f"{mapped}:{port}" if mapped else f"[{host}]:{port}"
    return f"{host}:{port}"


class PresenceParser:
    """Follows connect/disconnect notices; remembers which client id is which device."""

    def __init__(self, is_device: Callable[[str], bool], max_clients: int = 1_000_000) -> None:
        self._is_device = is_device
        self._client_user: dict[str, str] = {}
        self._max = max_clients

    def feed(self, line: str) -> Presence | None:
        """One log line → a presence change of a device, or None."""
        match = _CONNECTED.search(line)
        if match:
            user_match = _USER.search(match["opts"])
            user = user_match["user"] if user_match else match["client"]
            if not self._is_device(user):
                return None
            client = match["client"]
            # Re-inserted at the end, so the first entry is the longest-connected client:
            # at the cap that one is forgotten, not every connected client at once.
            self._client_user.pop(client, None)
            if len(self._client_user) >= self._max:
                del self._client_user[next(iter(self._client_user))]
            self._client_user[client] = user
            return Presence(user, True, format_remote(match["addr"], match["port"]))
        match = _GONE.search(line)
        if match:
            user = self._client_user.pop(match["client"], None)
            if user is not None:
                return Presence(user, False, None)
        return None
