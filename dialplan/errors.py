"""The error tree of callcontrol. Every error we raise on purpose is one of these::

    CallControlError                 a failure we expect and explain in one line
    ├── ConfigError                  the configuration file or environment is wrong
    ├── ProvisioningError            a provisioning document is invalid (path + message)
    ├── NotFound                     a named client / terminal / ... does not exist
    ├── DatabaseUnavailable          the shared database cannot be reached
    └── AriError                     an ARI request failed
        ├── ChannelGone              the channel (or bridge, playback) no longer exists
        └── AriUnavailable           Asterisk cannot be reached

Library errors are translated into these at one boundary, ``raise X(...) from exc``.
``str(error)`` is the one line the CLI prints.
"""

from __future__ import annotations


class CallControlError(Exception):
    """A failure we expect; its ``str`` is a complete one-line explanation."""


class ConfigError(CallControlError):
    pass


class ProvisioningError(CallControlError):
    """An invalid provisioning document.

    ``path`` names the offending node the way a reader finds it in the YAML,
    e.g. ``clients[1].outgoing_ddi_rule.patterns[0].prefix``.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class NotFound(CallControlError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}")
        self.kind = kind
        self.name = name


class DatabaseUnavailable(CallControlError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"database {url} is unavailable: {detail}")
        self.url = url
        self.detail = detail


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
