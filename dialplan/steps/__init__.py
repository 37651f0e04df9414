"""The pipeline's steps; importing this package registers every one of them."""

from dialplan.steps import acl, billing, connect, identify, outgoing_ddi, recording, route

__all__ = ["acl", "billing", "connect", "identify", "outgoing_ddi", "recording", "route"]
