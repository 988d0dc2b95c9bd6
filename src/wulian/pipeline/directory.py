"""What the hot path needs to know of a device, cached: its product's compiled model, state."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from wulian.domain.device import Device, hash_secret, new_secret, verify_secret
from wulian.domain.rejection import RejectCode, Rejection
from wulian.domain.validation import CompiledModel
from wulian.ports import MetadataStore


@functools.cache
def _dummy_hash() -> str:
    # Checked against when the id is unknown, so "no such device" pays the same scrypt as
    # "wrong secret" and the answer's timing does not tell which ids exist.
    return hash_secret(new_secret())


@dataclass(frozen=True, slots=True)
class Known:
    device: Device
    model: CompiledModel


class DeviceDirectory:
    """A read-through cache of devices and compiled thing models.

    Entries live `ttl_s` so a device disabled through another process (the API, another
    worker) is refused within that time; local changes call `forget` to act at once.
    Unknown ids are cached briefly too, so a flood of bogus ids costs one query per id.
    """

    def __init__(self, store: MetadataStore, *, ttl_s: float = 5.0, negative_ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 200_000,
                 verified_ttl_s: float = 600.0, max_concurrent_checks: int = 4) -> None:
        self._store = store
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._clock = clock
        self._max = max_entries
        # device id -> (expires, verdict, the device record when there is one, the registry
        # epoch it was read at)
        self._devices: dict[str, tuple[float, Known | Rejection, Device | None, int]] = {}
        self._epoch_check_s = min(1.0, ttl_s)
        self._epoch = -1
        self._epoch_checked = float("-inf")
        # product id -> (expires, compiled model or None, the registry epoch it was read at)
        self._models: dict[str, tuple[float, CompiledModel | None, int]] = {}
        # (device id, digest of the secret) -> (expires, the stored hash it was checked
        # against). A digest, not the secret: no plaintext secret lingers in memory. Long-lived
        # because the device state itself is re-read every `ttl_s`; only the scrypt is saved.
        self._verified: dict[tuple[str, bytes], tuple[float, str]] = {}
        self._verified_ttl = verified_ttl_s
        self._scrypt_slots = threading.BoundedSemaphore(max_concurrent_checks)
        self._lock = threading.Lock()

    def _model(self, product_id: str, now: float, epoch: int) -> CompiledModel | None:
        hit = self._models.get(product_id)
        if hit and hit[0] > now:
            return hit[1]
        if hit and hit[2] == epoch:
            # Expired, but no product changed since it was read: renew it as devices are.
            self._models[product_id] = (self._epoch_checked + self._ttl, hit[1], epoch)
            return hit[1]
        model = self._store.get_product(product_id)
        compiled = CompiledModel(model) if model else None
        # Recompiling costs ~1 ms; keep a compiled model while the document is unchanged.
        if hit and hit[1] is not None and model is not None and hit[1].model == model:
            compiled = hit[1]
        self._models[product_id] = (now + self._ttl, compiled, epoch)
        return compiled

    def lookup(self, device_id: str) -> Known | Rejection:
        """The device and its compiled model, or why messages from it are refused."""
        return self._entry(device_id)[0]

    def _registry_epoch(self, now: float) -> int:
        # Read at most once per `epoch_check_s`: one query a second replaces one per device.
        if now >= self._epoch_checked + self._epoch_check_s:
            self._epoch = self._store.registry_epoch()
            self._epoch_checked = now
        return self._epoch

    def _entry(self, device_id: str) -> tuple[Known | Rejection, Device | None]:
        now = self._clock()
        hit = self._devices.get(device_id)
        if hit and hit[0] > now:
            return hit[1], hit[2]
        epoch = self._registry_epoch(now)
        if hit and hit[3] == epoch:
            with self._lock:
                # Expired, but nothing in the registry changed since it was read: renew it,
                # unless `forget` dropped it meanwhile. Renewed from when the epoch was read.
                if self._devices.get(device_id) is hit:
                    ttl = self._ttl if isinstance(hit[1], Known) else self._negative_ttl
                    self._devices[device_id] = (self._epoch_checked + ttl, hit[1], hit[2],
                                                epoch)
                    return hit[1], hit[2]
        with self._lock:
            device = self._store.get_device(device_id)
            entry: Known | Rejection
            if device is None:
                entry = Rejection(RejectCode.UNKNOWN_DEVICE, params={"device": device_id[:128]})
            elif not device.active:
                entry = Rejection(RejectCode.DEVICE_DISABLED, params={"device": device_id})
            else:
                model = self._model(device.product, now, epoch)
                entry = (Known(device, model) if model else
                         Rejection(RejectCode.UNKNOWN_PRODUCT, params={"product": device.product}))
            if len(self._devices) >= self._max:
                self._devices.clear()  # bounded memory beats a perfect cache
            ttl = self._ttl if isinstance(entry, Known) else self._negative_ttl
            self._devices[device_id] = (now + ttl, entry, device, epoch)
            return entry, device

    def authenticate(self, device_id: str, secret: str) -> Known | Rejection:
        """Check a device's credentials (slow hash, then cached for `ttl_s` on success).

        Only a caller with the right secret learns more than `bad_credentials`: that the
        device is disabled, or its product gone; the answer never tells which ids exist.
        """
        entry, device = self._entry(device_id)
        if device is None:
            with self._scrypt_slots:
                verify_secret(secret, _dummy_hash())
            return Rejection(RejectCode.BAD_CREDENTIALS)
        key = (device_id, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest())
        now = self._clock()
        hit = self._verified.get(key)
        # Bound to the stored hash: a rotated secret misses at once, whatever the expiry.
        if hit is not None and hit[0] > now and hit[1] == device.secret_hash:
            return entry
        with self._scrypt_slots:  # each check holds 16 MiB: cap how many run at once
            ok = verify_secret(secret, device.secret_hash)
        if not ok:
            return Rejection(RejectCode.BAD_CREDENTIALS)
        if len(self._verified) >= self._max:
            self._verified.clear()
        self._verified[key] = (now + self._verified_ttl, device.secret_hash)
        return entry

    def forget(self, device_id: str | None = None) -> None:
        """Drop cached knowledge of one device (or of everything)."""
        self._epoch_checked = float("-inf")  # the next lookup asks the store again
        with self._lock:
            if device_id is None:
                self._devices.clear()
                self._models.clear()
                self._verified.clear()
            else:
                self._devices.pop(device_id, None)
                for key in [k for k in self._verified if k[0] == device_id]:
                    del self._verified[key]
