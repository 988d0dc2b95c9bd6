"""Ingest worker processes live and die with the `wulian serve` that started them.

Killed with kill -9, a serve process left its workers running: the restarted platform
started workers with the same client ids, Mosquitto switched the sessions back and forth
between old and new, and redelivered batches were stored twice. Two guards:

- `die_with_parent`: on Linux the kernel sends the worker SIGTERM when its parent dies
  (prctl PR_SET_PDEATHSIG); a thread watching the parent pid does the same elsewhere and
  covers a parent that died before the prctl ran.
- `IngestLock`: every worker holds a shared flock on `<data dir>/ingest.lock`; a starting
  serve takes it exclusively first, so it cannot start workers beside a stale one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from wulian.i18n import t

PR_SET_PDEATHSIG = 1
LOCK_NAME = "ingest.lock"


def die_with_parent(parent_pid: int, on_orphaned: Callable[[], None], *,
                    poll_s: float = 0.5) -> None:
    """Call `on_orphaned` (and get SIGTERM on Linux) once `parent_pid` is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    def watch() -> None:
        # re-parented (to init or a subreaper) means the parent is gone
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        on_orphaned()

    if os.getppid() != parent_pid:  # died before the prctl above was in force
        on_orphaned()
        return
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class StaleWorkers(RuntimeError):
    """Ingest workers of an earlier serve of this data dir are still running."""

    def __init__(self, path: str) -> None:
        super().__init__(t("hardening.stale_workers", path=path))


class IngestLock:
    """The flock that says ingest workers of a data dir are running."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self._file: IO[bytes] | None = None

    def _open(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a+b")  # held for the process's life

    def hold_shared(self) -> None:
        """A worker's share, kept until the process ends (the kernel drops it with it)."""
        self._file = self._open()
        fcntl.flock(self._file, fcntl.LOCK_SH)

    def ensure_none_running(self, wait_s: float = 15.0) -> None:
        """Return once no worker holds the lock; StaleWorkers if one still does after `wait_s`.

        The wait gives orphans, told by their parent's death to stop, time to store and
        acknowledge what they hold.
        """
        deadline = time.monotonic() + wait_s
        with self._open() as f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StaleWorkers(str(self.path)) from None
                    time.sleep(0.1)
                    continue
                fcntl.flock(f, fcntl.LOCK_UN)
                return

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
