"""The device SDK: what a terminal needs to talk to wulian over MQTT."""

from wulian.sdk.device import (
    BrokerUnreachable,
    Command,
    ConnectionRefused,
    Device,
    MessageInfo,
    MQTTv5,
    MQTTv311,
    NotConnected,
    PlatformError,
    PublishTimeout,
    SdkError,
)

__all__ = [
    "BrokerUnreachable",
    "Command",
    "ConnectionRefused",
    "Device",
    "MQTTv5",
    "MQTTv311",
    "MessageInfo",
    "NotConnected",
    "PlatformError",
    "PublishTimeout",
    "SdkError",
]
