"""The rule types: what each condition means, and the small state it keeps per device.

A condition answers `holds(ctx, now)` with True, False or None ("cannot tell yet": no
data, still warming up). Stateful conditions keep their per-device state in
`ctx.states[id(condition)]`, created by `new_state()` and fed by the engine.
Pure Python, no I/O; times are epoch milliseconds.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from wulian.domain.message import Value

Op = Literal[">", ">=", "<", "<=", "==", "!=", "between", "outside"]
OPS: tuple[str, ...] = (">", ">=", "<", "<=", "==", "!=", "between", "outside")
ORDERED_OPS = (">", ">=", "<", "<=")
FILTER_OPS: tuple[str, ...] = ("==", "!=", ">", ">=", "<", "<=", "in", "not_in")
AggregateFn = Literal["mean", "min", "max", "count"]
MAX_WINDOW_SAMPLES = 4096  # bounds memory per (rule, device) whatever the window says
EARTH_RADIUS_M = 6_371_008.8


def compare(value: Value, op: str, ref: Any) -> bool | None:
    """`value op ref`; None when they cannot be compared (a string against a number)."""
    if op == "==":
        return bool(value == ref)
    if op == "!=":
        return bool(value != ref)
    bound = ref[0] if op in ("between", "outside") else ref
    if isinstance(value, str) != isinstance(bound, str):
        return None  # "hot" > 80 is neither true nor false
    try:
        if op == ">":
            return bool(value > ref)
        if op == ">=":
            return bool(value >= ref)
        if op == "<":
            return bool(value < ref)
        if op == "<=":
            return bool(value <= ref)
        low, high = ref
        inside = bool(low <= value <= high)
        return inside if op == "between" else not inside
    except TypeError:
        return None


@dataclass(slots=True)
class Context:
    """What a condition may look at for one (rule, subject): latest values and its state."""

    latest: Mapping[str, tuple[int, Value]]
    states: dict[int, Any]
    location: tuple[float, float] | None = None  # from the registry, (lat, lon)


class Condition:
    """Base of every rule type."""

    def props(self) -> frozenset[str]:
        """The properties whose points can change the answer."""
        return frozenset()

    def events(self) -> frozenset[str]:
        return frozenset()

    def children(self) -> tuple[Condition, ...]:
        return ()

    def new_state(self) -> Any:
        return None

    def feed_point(self, state: Any, prop: str, ts: int, value: Value) -> None:
        """Take a new point into the state (only called with one of `props()`)."""

    def feed_event(self, state: Any, event: str, ts: int, params: Mapping[str, Any]) -> bool:
        """Take an event into the state; True when it matched."""
        return False

    def holds(self, ctx: Context, now: int) -> bool | None:
        raise NotImplementedError

    def walk(self) -> Iterator[Condition]:
        """This condition and all below it."""
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True, slots=True, eq=False)
class Threshold(Condition):
    """The latest value of a property compared with a constant (or a range)."""

    property: str
    op: str
    value: Any

    def props(self) -> frozenset[str]:
        return frozenset((self.property,))

    def holds(self, ctx: Context, now: int) -> bool | None:
        latest = ctx.latest.get(self.property)
        return None if latest is None else compare(latest[1], self.op, self.value)


@dataclass(slots=True)
class Window:
    """Numeric samples of the last `span_ms`, oldest first."""

    span_ms: int
    samples: deque[tuple[int, float]] = field(
        default_factory=lambda: deque(maxlen=MAX_WINDOW_SAMPLES))

    def add(self, ts: int, value: float) -> None:
        self.samples.append((ts, value))
        self.expire(ts)

    def expire(self, now: int) -> None:
        start = now - self.span_ms
        while self.samples and self.samples[0][0] < start:
            self.samples.popleft()


@dataclass(frozen=True, slots=True, eq=False)
class RateOfChange(Condition):
    """Change of a property across a window (newest minus oldest sample), compared."""

    property: str
    window_ms: int
    op: str
    value: float

    def props(self) -> frozenset[str]:
        return frozenset((self.property,))

    def new_state(self) -> Window:
        return Window(self.window_ms)

    def feed_point(self, state: Window, prop: str, ts: int, value: Value) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            state.add(ts, float(value))

    def holds(self, ctx: Context, now: int) -> bool | None:
        window: Window = ctx.states[id(self)]
        window.expire(now)
        if len(window.samples) < 2:
            return None
        change = window.samples[-1][1] - window.samples[0][1]
        return compare(change, self.op, self.value)


@dataclass(slots=True)
class LastSeen:
    ts: int | None = None


@dataclass(frozen=True, slots=True, eq=False)
class NoData(Condition):
    """Nothing from the device (or of one property) for `after_ms`; decided on tick too."""

    after_ms: int
    property: str | None = None

    def props(self) -> frozenset[str]:
        return frozenset((self.property,)) if self.property else frozenset()

    def new_state(self) -> LastSeen:
        return LastSeen()

    def feed_point(self, state: LastSeen, prop: str, ts: int, value: Value) -> None:
        state.ts = ts if state.ts is None else max(state.ts, ts)

    def holds(self, ctx: Context, now: int) -> bool | None:
        seen: LastSeen = ctx.states[id(self)]
        return None if seen.ts is None else now - seen.ts >= self.after_ms


@dataclass(frozen=True, slots=True)
class ParamFilter:
    """One test on an event parameter, e.g. `code in [3, 4]`."""

    param: str
    op: str
    value: Any

    def matches(self, params: Mapping[str, Any]) -> bool:
        if self.param not in params:
            return False
        got = params[self.param]
        if self.op == "in":
            return any(got == v and type(got) is not bool for v in self.value)
        if self.op == "not_in":
            return all(got != v for v in self.value)
        return compare(got, self.op, self.value) is True


@dataclass(slots=True)
class LastEvent:
    ts: int | None = None
    fresh: bool = False  # a matching event arrived since the engine last evaluated


@dataclass(frozen=True, slots=True, eq=False)
class EventOccurred(Condition):
    """A matching event arrived; holds at that moment, or for `within_ms` after it."""

    event: str
    where: tuple[ParamFilter, ...] = ()
    within_ms: int = 0

    def events(self) -> frozenset[str]:
        return frozenset((self.event,))

    def new_state(self) -> LastEvent:
        return LastEvent()

    def feed_event(self, state: LastEvent, event: str, ts: int,
                   params: Mapping[str, Any]) -> bool:
        if event != self.event or not all(f.matches(params) for f in self.where):
            return False
        state.ts = ts if state.ts is None else max(state.ts, ts)
        state.fresh = True
        return True

    def holds(self, ctx: Context, now: int) -> bool | None:
        last: LastEvent = ctx.states[id(self)]
        if last.fresh:
            return True
        return last.ts is not None and self.within_ms > 0 and now - last.ts < self.within_ms


@dataclass(frozen=True, slots=True, eq=False)
class Composite(Condition):
    """AND / OR / NOT of conditions on the same device (three-valued: None is unknown)."""

    logic: Literal["and", "or", "not"]
    parts: tuple[Condition, ...]

    def props(self) -> frozenset[str]:
        return frozenset().union(*(p.props() for p in self.parts))

    def events(self) -> frozenset[str]:
        return frozenset().union(*(p.events() for p in self.parts))

    def children(self) -> tuple[Condition, ...]:
        return self.parts

    def holds(self, ctx: Context, now: int) -> bool | None:
        answers = [p.holds(ctx, now) for p in self.parts]
        if self.logic == "not":
            return None if answers[0] is None else not answers[0]
        decisive = self.logic == "or"  # True decides OR, False decides AND
        if decisive in answers:
            return decisive
        return None if None in answers else not decisive


@dataclass(slots=True)
class GroupWindow:
    """Per-device samples of one property across a group, for a sliding window."""

    span_ms: int
    devices: dict[str, deque[tuple[int, float]]] = field(default_factory=dict)

    def add(self, device: str, ts: int, value: float) -> None:
        samples = self.devices.get(device)
        if samples is None:
            samples = self.devices[device] = deque(maxlen=MAX_WINDOW_SAMPLES)
        samples.append((ts, value))

    def expire(self, now: int) -> None:
        start = now - self.span_ms
        for device in list(self.devices):
            samples = self.devices[device]
            while samples and samples[0][0] < start:
                samples.popleft()
            if not samples:
                del self.devices[device]


@dataclass(frozen=True, slots=True, eq=False)
class Aggregate(Condition):
    """mean/min/max/count of a property across the rule's devices over a sliding window.

    `mean` is the mean of each device's own mean, so a chatty device does not outvote a
    quiet one; `count` is how many devices reported in the window.
    """

    property: str
    fn: AggregateFn
    window_ms: int
    op: str
    value: float
    min_devices: int = 1

    def props(self) -> frozenset[str]:
        return frozenset((self.property,))

    def new_state(self) -> GroupWindow:
        return GroupWindow(self.window_ms)

    def measure(self, group: GroupWindow, now: int) -> float | None:
        """The aggregate now, or None below `min_devices` (count is always known)."""
        group.expire(now)
        if self.fn == "count":
            return float(len(group.devices))
        if len(group.devices) < self.min_devices:
            return None
        series = group.devices.values()
        if self.fn == "mean":
            return sum(sum(v for _, v in s) / len(s) for s in series) / len(group.devices)
        pick = min if self.fn == "min" else max
        return pick(pick(v for _, v in s) for s in series)

    def holds(self, ctx: Context, now: int) -> bool | None:
        measured = self.measure(ctx.states[id(self)], now)
        return None if measured is None else compare(measured, self.op, self.value)


# --- geofence ------------------------------------------------------------------------------
# Hand-written (shapely was considered): two shapes at city scale need ~30 lines, not GEOS.


def haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance in metres between two (lat, lon)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def in_polygon(point: tuple[float, float], ring: tuple[tuple[float, float], ...]) -> bool:
    """Even-odd test on (lat, lon) treated as plane coordinates; the boundary is inside."""
    y, x = point
    inside = False
    for i, (y1, x1) in enumerate(ring):
        y2, x2 = ring[i - 1]
        cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        if (abs(cross) <= 1e-12 and min(x1, x2) <= x <= max(x1, x2)
                and min(y1, y2) <= y <= max(y1, y2)):
            return True  # on an edge: a device on the fence line is inside it
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


@dataclass(frozen=True, slots=True, eq=False)
class Geofence(Condition):
    """Device location inside / outside a polygon or a circle.

    Location comes from the `lat`/`lon` properties when reported, else the registry.
    """

    when: Literal["inside", "outside"]
    polygon: tuple[tuple[float, float], ...] = ()
    center: tuple[float, float] | None = None
    radius_m: float = 0.0
    lat_property: str = "lat"
    lon_property: str = "lon"

    def props(self) -> frozenset[str]:
        return frozenset((self.lat_property, self.lon_property))

    def contains(self, point: tuple[float, float]) -> bool:
        if self.center is not None:
            return haversine_m(self.center, point) <= self.radius_m
        return in_polygon(point, self.polygon)

    def holds(self, ctx: Context, now: int) -> bool | None:
        lat, lon = ctx.latest.get(self.lat_property), ctx.latest.get(self.lon_property)
        if lat is not None and lon is not None:
            point: tuple[float, float] | None = (float(lat[1]), float(lon[1]))
        else:
            point = ctx.location
        if point is None:
            return None
        return self.contains(point) == (self.when == "inside")


# --- anomaly -------------------------------------------------------------------------------
# A robust rolling z-score (median / MAD), chosen over river's HalfSpaceTrees: no
# dependency, O(window) memory per device-property instead of a tree ensemble, explainable
# ("7.2 MADs above the median") and no feature scaling to guess. It judges a reading
# against the device's recent history, so a slow daily cycle inside the window is normal.
MAD_TO_SIGMA = 0.6745  # makes the MAD of normal data comparable to a standard deviation


@dataclass(slots=True)
class RobustHistory:
    """The last `size` readings, kept in arrival order and sorted (for the median)."""

    size: int
    arrival: deque[float] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)
    last_score: float | None = None

    def add(self, value: float) -> None:
        if len(self.arrival) >= self.size:
            old = self.arrival.popleft()
            del self.ordered[bisect_left(self.ordered, old)]
        self.arrival.append(value)
        insort(self.ordered, value)

    def score(self, value: float) -> float:
        """Robust z-score of `value` against the history (inf when history is constant)."""
        ordered = self.ordered
        median = _median(ordered)
        deviations = sorted(abs(v - median) for v in ordered)
        scale = _median(deviations)
        if scale == 0:  # quantised or flat data: fall back to the mean absolute deviation
            scale = 1.2533 * sum(deviations) / len(deviations) * MAD_TO_SIGMA
        if scale == 0:
            return 0.0 if value == median else math.inf
        return MAD_TO_SIGMA * (value - median) / scale


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass(frozen=True, slots=True, eq=False)
class Anomaly(Condition):
    """The latest reading is more than `sensitivity` robust z-scores from recent history."""

    property: str
    window: int = 288  # readings, e.g. one day at one per 5 minutes
    warmup: int = 30
    sensitivity: float = 4.0
    direction: Literal["both", "up", "down"] = "both"

    def props(self) -> frozenset[str]:
        return frozenset((self.property,))

    def new_state(self) -> RobustHistory:
        return RobustHistory(self.window)

    def feed_point(self, state: RobustHistory, prop: str, ts: int, value: Value) -> None:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        number = float(value)
        if not math.isfinite(number):
            return  # one NaN would poison the sorted history
        # Score before learning: the reading is judged against history it is not part of.
        state.last_score = state.score(number) if len(state.arrival) >= self.warmup else None
        state.add(number)

    def holds(self, ctx: Context, now: int) -> bool | None:
        score = ctx.states[id(self)].last_score
        if score is None:
            return None
        if self.direction == "up":
            return bool(score > self.sensitivity)
        if self.direction == "down":
            return bool(score < -self.sensitivity)
        return bool(abs(score) > self.sensitivity)
