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

SHOWN = 80
"""Characters of a bad value an error message shows; the rest is cut."""


def shown(value: object, limit: int = SHOWN) -> str:
    """``value`` as an error message quotes it: ``repr``, cut to ``limit`` characters.

    A tenant's value can be 100,000 characters, or hold newlines: the quote is always
    one short line, and says how long the whole value was when it is cut.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}... ({len(text):,} characters)"


def shown_plain(text: str, limit: int = SHOWN) -> str:
    """``text`` as is when it is short plain text (a number, a name), else :func:`shown`."""
    return text if len(text) <= limit and text.isprintable() else shown(text, limit)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line and at most ``limit`` characters: the last guard of a message."""
    flat = "".join(char if char.isprintable() else " " for char in text.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
        path, message = one_line(path, 160), one_line(message)
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class NotFound(CallControlError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {shown(name)}")
        self.kind = kind
        self.name = name


class DatabaseUnavailable(CallControlError):
    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"database {url} is unavailable: {detail}")
        self.url = url
        self.detail = detail
