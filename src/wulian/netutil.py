"""Small network helpers for the CLI: find a port that can be listened on."""

from __future__ import annotations

import errno
import socket
from collections.abc import Collection

from wulian.i18n import t


class PortInUse(RuntimeError):
    """A port the platform must listen on is taken (often 1883, by a system Mosquitto)."""

    def __init__(self, what: str, host: str, port: int) -> None:
        super().__init__(t("service.port_in_use", what=what, host=host, port=port))
        self.what, self.host, self.port = what, host, port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on `host:port` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As servers do (uvicorn, the embedded broker): TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def pick_port(preferred: int, host: str = "127.0.0.1", *,
              avoid: Collection[int] = ()) -> int:
    """`preferred` when it is free (and not in `avoid`), else a port the system hands out.

    0 means "any free port". There is a short race until the caller binds the port; the
    service checks again and says so if it lost.
    """
    if preferred and preferred not in avoid and port_free(preferred, host):
        return preferred
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
