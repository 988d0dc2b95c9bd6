"""Building blocks of plausible sensor signals, as pure functions of time and a seeded RNG.

Randomness always comes from the `random.Random` the caller passes in, so a simulation
seeded the same way produces the same values; per-device constants come from `unit`.
"""

from __future__ import annotations

import math
import random
import zlib

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHINA_TZ_H = 8.0  # the demo's devices live in UTC+8
# Monotonic counters (energy, burning hours) count from here so their values stay modest.
COUNTER_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def unit(device_index: int, salt: str) -> float:
    """A stable number in [0, 1) for one device and one purpose (no RNG state involved)."""
    return zlib.crc32(f"{salt}:{device_index}".encode()) / 2**32


def spread(device_index: int, salt: str, lo: float, hi: float) -> float:
    """A stable per-device constant in [lo, hi)."""
    return lo + (hi - lo) * unit(device_index, salt)


def local_hour(t_ms: int, tz_offset_h: float = CHINA_TZ_H) -> float:
    """Hour of the local day in [0, 24)."""
    return ((t_ms / HOUR_MS) + tz_offset_h) % 24.0


def daily_cycle(t_ms: int, peak_hour: float = 15.0, tz_offset_h: float = CHINA_TZ_H) -> float:
    """A day-long cosine in [-1, 1]: 1 at `peak_hour` local time, -1 twelve hours later."""
    return math.cos(2 * math.pi * (local_hour(t_ms, tz_offset_h) - peak_hour) / 24.0)


def daylight(t_ms: int, sunrise: float = 6.0, sunset: float = 18.5,
             tz_offset_h: float = CHINA_TZ_H) -> float:
    """Sun elevation as a fraction in [0, 1]: 0 at night, 1 at solar noon."""
    hour = local_hour(t_ms, tz_offset_h)
    if not sunrise < hour < sunset:
        return 0.0
    return math.sin(math.pi * (hour - sunrise) / (sunset - sunrise))


def drift(device_index: int, t_ms: int, amplitude: float, period_days: float = 23.0) -> float:
    """Slow wander (calibration ageing, seasons): a weeks-long wave, phase per device."""
    phase = unit(device_index, "drift")
    return amplitude * math.sin(2 * math.pi * (t_ms / (period_days * DAY_MS) + phase))


def noise(rng: random.Random, sigma: float) -> float:
    """Gaussian measurement noise."""
    return rng.gauss(0.0, sigma)


def spike(rng: random.Random, probability: float, magnitude: float) -> float:
    """Usually 0; now and then ±`magnitude` (a surge, a door left open)."""
    if rng.random() >= probability:
        return 0.0
    return magnitude if rng.random() < 0.5 else -magnitude


def dropout(rng: random.Random, probability: float) -> bool:
    """True when a reading goes missing this time (the sensor did not answer)."""
    return rng.random() < probability


def clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def cycle_integral_h(t_ms: int, peak_hour: float, tz_offset_h: float = CHINA_TZ_H) -> float:
    """Hours-weighted integral of `daily_cycle` from COUNTER_EPOCH_MS to `t_ms` (closed form)."""
    w = 2 * math.pi / 24.0
    hours = (t_ms - COUNTER_EPOCH_MS) / HOUR_MS
    start = (COUNTER_EPOCH_MS / HOUR_MS + tz_offset_h - peak_hour) % 24.0
    return (math.sin(w * (start + hours)) - math.sin(w * start)) / w
