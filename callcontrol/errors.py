"""The shell's own errors: what talking to Asterisk can go wrong with. They extend the
tree of :mod:`dialplan.errors`::

    CallControlError
    └── AriError                     an ARI request failed
        ├── ChannelGone              the channel (or bridge, playback) no longer exists
        └── AriUnavailable           Asterisk cannot be reached

Library errors (aiohttp, aioari) are translated into these at one boundary, the ARI
client (``callcontrol.ari_``).
"""

from __future__ import annotations

from dialplan.errors import CallControlError


class AriError(CallControlError):
    """An ARI request was refused; ``status`` is the HTTP status (0 when none came back)."""

    def __init__(self, operation: str, status: int, detail: str) -> None:
        super().__init__(f"ARI {operation} failed ({status}): {detail}")
        self.operation = operation
        self.status = status
        self.detail = detail


class ChannelGone(AriError):
    """The object the request named has left (hang-up races are normal: expect this)."""


class AriUnavailable(AriError):
    """Asterisk did not answer at all."""
