"""The pipeline's steps; importing this package registers every one of them."""

from dialplan.steps import (
    acl,
    billing,
    connect,
    daily_usage,
    emergency,
    identify,
    max_calls,
    outgoing_ddi,
    recording,
    route,
    source_filter,
)

__all__ = [
    "acl",
    "billing",
    "connect",
    "daily_usage",
    "emergency",
    "identify",
    "max_calls",
    "outgoing_ddi",
    "recording",
    "route",
    "source_filter",
]
