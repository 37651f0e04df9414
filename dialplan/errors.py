"""The error tree of callcontrol. Every error we raise on purpose is one of these::

    CallControlError                 a failure we expect and explain in one line
    ├── ConfigError                  the configuration file or environment is wrong
    ├── ProvisioningError            a provisioning document is invalid (path + message)
    ├── NotFound                     a named client / terminal / ... does not exist
    └── DatabaseUnavailable          the shared database cannot be reached

The shell adds its own (``callcontrol.errors``): the ARI errors.

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
