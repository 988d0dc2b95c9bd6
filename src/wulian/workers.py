"""Ingest worker processes that never outlive the platform, and never run twice at once.

When only the main `wulian serve` died (kill -9), its ingest workers kept running; the
restarted platform started workers with the same MQTT client ids, the broker bounced the
two generations back and forth ("already connected, closing old connection") and stored
events twice. So: a worker dies with its parent (Linux `PR_SET_PDEATHSIG`, and a parent
watch everywhere), and holds a shared lock on the data dir's `ingest.lock` while it runs;
`serve` takes that lock exclusively, after stopping any stale worker, before it starts new
ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO

from wulian.i18n import t

log = logging.getLogger(__name__)
LOCK_NAME = "ingest.lock"
PID_DIR = "ingest-workers"
_PR_SET_PDEATHSIG = 1
_held: list[IO[str]] = []  # the lock lasts as long as its file stays open: for the process


class StaleWorkers(RuntimeError):
    """Workers of an earlier run still hold the data dir and would not stop."""


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send SIGTERM when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def parent_alive(parent_pid: int) -> bool:
    """The portable fallback: a worker's parent is gone once the worker was re-parented."""
    return os.getppid() == parent_pid


def hold_worker_lock(data_dir: Path, index: int) -> IO[str]:
    """Hold the data dir's worker lock (shared) for this process's life; note our pid."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_NAME, "a+")  # noqa: SIM115 - kept open until exit
    fcntl.flock(handle, fcntl.LOCK_SH)
    _held.append(handle)
    pids = data_dir / PID_DIR
    pids.mkdir(exist_ok=True)
    (pids / f"{index}.pid").write_text(str(os.getpid()))
    return handle


def _stale_pids(data_dir: Path) -> list[int]:
    found = []
    for path in (data_dir / PID_DIR).glob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            pid = int(path.read_text().strip())
            if pid != os.getpid():
                found.append(pid)
    return found


def clear_stale_workers(data_dir: Path, timeout_s: float = 20.0) -> int:
    """Stop workers an earlier run left behind (SIGTERM: they store and acknowledge what
    they hold, then exit) and wait until none holds the lock; how many were signalled.

    Raises StaleWorkers when the lock is still held after `timeout_s`.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_NAME, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return 0
        except BlockingIOError:
            pass
        pids = _stale_pids(data_dir)
        log.warning(t("service.stale_workers", pids=", ".join(map(str, pids)) or "?"))
        signalled = 0
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
                signalled += 1
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return signalled
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StaleWorkers(t("service.stale_workers_stuck", pids=", ".join(
                        map(str, pids)), lock=str(data_dir / LOCK_NAME))) from None
                time.sleep(0.1)
