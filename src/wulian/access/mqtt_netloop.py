"""A paho network loop that stops reading the socket while the consumer holds too much.

paho's own loop (`loop_start`) reads whenever the socket has data, so a consumer's memory
is bounded only by the broker's Receive Maximum, which Debian's Mosquitto 2.0.11 does not
honour under backlog (upstream #2301/#2306): one worker held 66,051 messages at 606 MB
while PostgreSQL was down. This loop drives paho through its public external-loop API
(`socket`, `loop_read`, `loop_write`, `loop_misc`, `on_socket_register_write`) and skips
reads while `may_read()` is false; TCP flow control then keeps the rest in the broker.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)
TICK_S = 0.05  # longest wait in select: how soon a freed cap resumes reading
RECONNECT_MIN_S, RECONNECT_MAX_S = 1.0, 30.0


class BoundedLoop:
    """Runs `client`'s network I/O in a thread; reads only while `may_read()`."""

    def __init__(self, client: mqtt.Client, may_read: Callable[[], bool], name: str) -> None:
        self._client = client
        self._may_read = may_read
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Written to when another thread queues a packet (an ack): wakes the select.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        client.on_socket_register_write = self._wake

    def _wake(self, *_: Any) -> None:
        with contextlib.suppress(OSError):  # full: a wake is pending anyway
            self._wake_w.send(b"\0")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """After `client.disconnect()`: let the DISCONNECT go out, then end the thread."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception:  # a paho surprise must not end the consumer's I/O for good
                log.exception("%s: network loop failed; restarting it", self._name)
                if self._stop.wait(RECONNECT_MIN_S):
                    return

    def _loop(self) -> None:
        delay = RECONNECT_MIN_S
        client = self._client
        while True:
            sock = client.socket()
            if sock is None:
                if self._stop.is_set():
                    return
                try:
                    client.reconnect()
                    delay = RECONNECT_MIN_S
                except Exception as exc:  # refused, unreachable, TLS...: paho raises many
                    log.debug("%s: connect failed: %s", self._name, exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            if self._stop.is_set() and not client.want_write():
                return  # the DISCONNECT (if any) is out
            reads: list[Any] = [self._wake_r]
            if self._may_read():
                reads.append(sock)
            writes = [sock] if client.want_write() else []
            try:
                readable, writable, _ = select.select(reads, writes, [], TICK_S)
            except (OSError, ValueError):  # closed under us: paho notices below
                readable, writable = [], []
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(4096)
            if sock in readable:
                client.loop_read()
            if client.socket() is not None and (sock in writable or client.want_write()):
                client.loop_write()
            if client.socket() is not None:
                client.loop_misc()
            if self._stop.is_set() and client.socket() is None:
                return
