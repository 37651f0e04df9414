"""Secrets out of every line callcontrol logs or prints: the one place that masks them.

- :func:`shown_url`: a URL as logs, ``/health``, ``/metrics``, the console and error lines
  show it (no user, no password, no secret query parameter);
- :class:`Masker`: text with every known secret value (the configured ARI password, console
  token, SMTP password, the database URL's password, and their URL and Basic encodings)
  and every secret-shaped part (``user:password@`` in a URL, ``api_key=…``, an
  ``Authorization`` value, a ``Secret:`` header line) replaced by ``***``;
- :class:`MaskingFilter`: a logging filter, set on the root logger's handlers by
  :func:`install`, that masks each record's message and traceback before any handler
  writes it. The libraries under us log what they like at DEBUG (aioari logs every
  response with its ``?api_key=user:password`` URL); this is where it stops.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import urllib.parse
from collections.abc import Iterable, Iterator

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from callcontrol.config import Config

MASK = "***"
SHORTEST = 4
"""A secret value shorter than this is masked by shape only: masking every "abc" in
every line would hide more than it protects."""

_PARAMS = r"api_key|apikey|password|passwd|pwd|secret|token|access_token"
_SHAPES: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # (one of these in the lowercased text, or the pattern cannot match; the pattern; its
    # replacement): a line with none of them costs no regular expression.
    # scheme://user:password@host
    (
        ("@",),
        re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)[^\s@]*(?=@)"),
        rf"\1{MASK}",
    ),
    # ?api_key=user:password, &password=…
    (("=",), re.compile(rf"([?&;](?:{_PARAMS})=)[^&;\s'\"<>)]*", re.IGNORECASE), rf"\1{MASK}"),
    # {'api_key': 'user:password'} (a library logging its parameters)
    (
        ("'", '"'),
        re.compile(rf"(['\"](?:{_PARAMS})['\"]\s*:\s*['\"])[^'\"]*", re.IGNORECASE),
        rf"\1{MASK}",
    ),
    # Secret: … as a header line of its own (an AMI action as panoramisk logs it)
    (
        ("secret",),
        re.compile(r"(?im)(^\s*secret\s*:[ \t]*)\S+"),
        rf"\1{MASK}",
    ),
    # Authorization: Basic …, 'Authorization': 'Bearer …'
    (
        ("authorization",),
        re.compile(
            r"(authorization['\"]?\s*[:=]\s*['\"]?(?:(?:basic|bearer|digest)\s+)?)[^\s'\",}]+",
            re.IGNORECASE,
        ),
        rf"\1{MASK}",
    ),
)


_USERINFO = re.compile(r"(?:^|://)[^\s:/?#@]*:(?P<password>[^\s@]*)@")


class Masker:
    """Masks ``values`` (and their URL and Basic encodings) and every secret-shaped part."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if len(value) < SHORTEST:
                continue
            forms |= {
                value,
                urllib.parse.quote(value, safe=""),
                urllib.parse.quote(value, safe=":@"),
                urllib.parse.quote_plus(value),
            }
        ordered = sorted(forms, key=len, reverse=True)  # the longest form first
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def mask(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        lowered = text.lower()
        for triggers, pattern, replacement in _SHAPES:
            if any(trigger in lowered for trigger in triggers):
                text = pattern.sub(replacement, text)
        return text


def secrets_of(config: Config) -> list[str]:
    """Every secret value ``config`` holds. One equal to a setting that is not secret (the
    default ARI password is the default user and app name) is left to the shapes."""
    values = [
        config.ari_password,
        config.console_token,
        config.smtp_password,
        config.fastagi_secret,
        config.api_secret_key,
    ]
    user = config.ari_user
    values.append(base64.b64encode(f"{user}:{config.ari_password}".encode()).decode())
    values.append(f"{user}:{config.ari_password}")
    for url in config.ari_url.split(","):
        found = _USERINFO.search(url)  # as written, even in a URL that does not parse
        if found:
            values += [found["password"], urllib.parse.unquote(found["password"])]
    try:
        database_password = make_url(config.database_url).password
    except ArgumentError:  # not a URL: the shapes still mask user:password@
        database_password = None
    if database_password:
        values.append(str(database_password))
    public = {config.ari_user, config.app, config.server}
    return [value for value in values if value and value not in public]


_current = Masker()


def mask(text: str) -> str:
    """``text`` masked with the secrets :func:`install` was given (shapes only before)."""
    return _current.mask(text)


class MaskingFilter(logging.Filter):
    """Masks a record's message (then frozen: a library's arguments, changed after the
    call, cannot add a secret later), its traceback and its stack."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker.mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker.mask(record.stack_info)
        return True


def install(config: Config, handlers: Iterable[logging.Handler] | None = None) -> MaskingFilter:
    """Mask ``config``'s secrets in every line of ``handlers`` (the root logger's by
    default) and in :func:`mask`; returns the filter (see :func:`uninstall`)."""
    global _current
    masker = Masker(secrets_of(config))
    _current = masker
    masking = MaskingFilter(masker)
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        for old in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(masking)
    return masking


def uninstall(masking: MaskingFilter) -> None:
    """Take ``masking`` off the root logger's handlers; :func:`mask` masks shapes only."""
    global _current
    for handler in logging.getLogger().handlers:
        handler.removeFilter(masking)
    if _current is masking.masker:
        _current = Masker()


@contextlib.contextmanager
def masked(config: Config) -> Iterator[MaskingFilter]:
    """:func:`install` for the length of a command (one process may run several: tests)."""
    masking = install(config)
    try:
        yield masking
    finally:
        uninstall(masking)


def shown_url(url: str) -> str:
    """``url`` without its user and password, and with its secret query parameters masked:
    what logs, metrics, ``/health``, the console and error lines show."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:  # not a URL we can take apart: mask by shape
        return _current.mask(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{port}" if port is not None else host
        url = url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    return _current.mask(url)
