"""The pipeline's steps; importing this package registers every one of them."""

from dialplan.steps import acl, connect, identify, route

__all__ = ["acl", "connect", "identify", "route"]
