"""Rules and alarms: the pure domain of status early warning (状态预警), no I/O."""

from wulian.rules.alarms import (
    GROUP,
    Alarm,
    AlarmBook,
    AlarmChange,
    AlarmError,
    AlarmState,
    ChangeKind,
)
from wulian.rules.engine import DeviceInfo, DeviceLookup, RuleEngine
from wulian.rules.model import Rule, RuleError, Scope, Severity, parse_duration, parse_rule

__all__ = [
    "GROUP",
    "Alarm",
    "AlarmBook",
    "AlarmChange",
    "AlarmError",
    "AlarmState",
    "ChangeKind",
    "DeviceInfo",
    "DeviceLookup",
    "Rule",
    "RuleEngine",
    "RuleError",
    "Scope",
    "Severity",
    "parse_duration",
    "parse_rule",
]
