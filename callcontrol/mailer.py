"""Notification e-mails: tenant templates rendered in a sandbox, sent in the background.

:func:`render` turns a :class:`~models.templates.TemplateText` and plain values into an
:class:`Email`. Templates are written by tenants, so they run in Jinja2's immutable
sandbox, with these promises:

- no Python internals: any ``_`` attribute, or a method that changes a list or dict,
  is refused at once (:class:`TemplateRefused`), never rendered as an empty value;
- a template that does not compile, or fails while rendering, is refused the same way:
  one line naming the template, the part (subject or body) and the reason;
- a misspelt variable (or attribute of a dict) is not an error: it renders as nothing
  and the render logs one warning naming it;
- HTML bodies autoescape the values; the subject is one line of plain text;
- cheap bounds against runaway templates: ``range`` hands out 100,000 items per render
  in all; ``*``, ``**`` and ``+`` refuse to build numbers over 2**256 or texts over
  :data:`MAX_BODY` characters, and so do widths given to str methods, to the ``center``,
  ``indent`` and ``format`` filters, to ``%`` and to ``str.format``; ``lipsum`` is gone;
  a body past :data:`MAX_BODY` characters (a subject past :data:`MAX_SUBJECT`) is refused.

These bounds catch runaway loops and the known one-line bombs, not every deliberate
CPU or memory bomb (nested loops over long texts, a chain of ``~`` doublings): a hard
bound would need a separate process with resource limits. Values passed in should be
plain data (str, numbers, Decimal, dates, dicts and lists of them): a template can call
any public method of what it is given.

:class:`Mailer` sends with aiosmtplib from a queue: :meth:`Mailer.submit` never waits,
:meth:`Mailer.run` sends (retrying temporary failures with backoff),
:meth:`Mailer.stop` drains with a time limit.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Literal

import aiosmtplib
from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

from callcontrol.config import Config
from dialplan.errors import CallControlError, ConfigError
from models.templates import TemplateText

log = logging.getLogger("callcontrol.mailer")

MAX_BODY = 1_000_000
"""Characters a rendered body (or any single text a template builds) may hold."""
MAX_SUBJECT = 1_000
MAX_INT_BITS = 256
"""Integers a template computes stay below 2**256."""


class MailError(CallControlError):
    """An e-mail cannot be built (a bad address, a refused template)."""


class TemplateRefused(MailError):
    """A tenant's template is unsafe, does not compile or fails to render.

    ``template`` describes it (level, name, language), ``part`` is ``subject`` or
    ``body``, ``reason`` the one-line cause.
    """

    def __init__(self, template: str, part: str, reason: str) -> None:
        super().__init__(f"{template} {part} refused: {reason}")
        self.template = template
        self.part = part
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Email:
    """A rendered notification, ready to send; ``origin`` tells logs which template made it."""

    to: tuple[str, ...]
    from_name: str
    from_address: str
    """Empty: the configured ``smtp_from``."""
    subject: str
    body: str
    body_type: Literal["text", "html"]
    origin: str

    def message(self, default_sender: str) -> EmailMessage:
        """The MIME message, sent from ``default_sender`` when the template names nobody."""
        sender = self.from_address or default_sender
        message = EmailMessage()
        message["From"] = Address(self.from_name, addr_spec=sender)
        message["To"] = ", ".join(self.to)
        message["Subject"] = self.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
        # RFC 3834: tells vacation responders not to answer a machine.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(self.body, subtype="html" if self.body_type == "html" else "plain")
        return message


# --- the sandbox -------------------------------------------------------------------------


@dataclass
class _Render:
    """What one render has used so far (templates run synchronously, one per context)."""

    range_left: int = MAX_RANGE
    missing: list[str] = field(default_factory=list)


_CURRENT: ContextVar[_Render] = ContextVar("callcontrol_mailer_render")


class _Missing(ChainableUndefined):
    """A misspelt name: renders as nothing, and the render logs it."""

    __slots__ = ()

    def __str__(self) -> str:
        render = _CURRENT.get(None)
        if render is not None and self._undefined_name is not None:
            render.missing.append(str(self._undefined_name))
        return ""


def _range(*args: int) -> range:
    items = range(*args)
    render = _CURRENT.get(None)
    if render is not None:
        render.range_left -= len(items)
        if render.range_left < 0:
            raise SecurityError(f"loops over more than {MAX_RANGE} items in all")
    return items


def _check_size(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left operator right`` before it builds a huge number or text."""
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length()
        if operator == "**" and right > 0 and abs(left) > 1:
            bits *= right
        elif operator == "*":
            bits += right.bit_length()
        if bits > MAX_INT_BITS:
            raise SecurityError(f"{operator} would build a number over {MAX_INT_BITS} bits")
        return
    sizes = [len(value) for value in (left, right) if isinstance(value, str | list | tuple)]
    counts = [value for value in (left, right) if isinstance(value, int)]
    if operator == "*" and sizes and counts:
        total = sizes[0] * max(counts[0], 0)
    elif operator == "+":
        total = sum(sizes)
    else:
        return
    if total > MAX_BODY:
        raise SecurityError(f"{operator} would build a text over {MAX_BODY} characters")


# A width or precision of a million or more (or one taken from the arguments) in a
# printf-style or str.format specification: the text would be huge.
_PRINTF_WIDE = re.compile(r"%[-#0 +]*(?:\*|\d{7,}|\d*\.(?:\*|\d{7,}))")
_FORMAT_WIDE = re.compile(r"\{[^{}]*:[^{}]*(?:\{|\d{7,})")


def _check_width(*values: object) -> None:
    for value in values:
        if isinstance(value, int) and value > MAX_BODY:
            raise SecurityError(f"a width of {value} is over {MAX_BODY}")


def _check_spec(text: object, pattern: re.Pattern[str]) -> None:
    if isinstance(text, str) and pattern.search(text):
        raise SecurityError(f"the format {text[:60]!r} is too wide")


def _bounded(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_`` refusing huge widths (``center``, ``indent``) or formats (``format``)."""

    @functools.wraps(filter_)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_width(*args, *kwargs.values())
        if name == "format":
            _check_spec(value, _PRINTF_WIDE)
        return filter_(value, *args, **kwargs)

    return bounded


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=_Missing)
        self.globals["range"] = _range
        self.globals.pop("lipsum", None)  # lipsum(10**6) writes forever
        for name in ("center", "indent", "format"):
            self.filters[name] = _bounded(name, self.filters[name])

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        # The stock sandbox returns an undefined that renders as nothing; a template
        # reaching for internals is refused loudly instead.
        raise SecurityError(f"{type(obj).__name__}.{attribute} is not allowed")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            _check_spec(left, _PRINTF_WIDE)
        else:
            _check_size(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_spec(value.__self__, _FORMAT_WIDE)
        return wrapped

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # str methods that pad or repeat ('x'.ljust(10**9), .zfill, .center, ...)
        if isinstance(getattr(obj, "__self__", None), str):
            _check_width(*args, *kwargs.values())
        return super().call(context, obj, *args, **kwargs)


_TEXT = _Sandbox(autoescape=False)
_HTML = _Sandbox(autoescape=True)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _render_part(
    environment: _Sandbox,
    origin: str,
    part: str,
    source: str,
    values: Mapping[str, object],
    limit: int,
) -> str:
    try:
        compiled = environment.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateRefused(origin, part, f"line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        # the parser and compiler recurse once per nesting level: ((((...)))) exhausts them
        raise TemplateRefused(origin, part, "nested too deeply to compile") from None
    render = _Render()
    token = _CURRENT.set(render)
    pieces: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(dict(values)):
            size += len(chunk)
            if size > limit:
                raise TemplateRefused(origin, part, f"renders more than {limit} characters")
            pieces.append(chunk)
    except TemplateRefused:
        raise
    except SecurityError as exc:
        raise TemplateRefused(origin, part, f"not allowed: {_first_line(exc)}") from None
    except TemplateError as exc:
        raise TemplateRefused(origin, part, _first_line(exc)) from None
    # Tenant code can raise anything Python can (ZeroDivisionError, RecursionError from a
    # macro calling itself, ...): at this boundary every failure becomes a refusal.
    except Exception as exc:
        raise TemplateRefused(origin, part, f"{type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        _CURRENT.reset(token)
    if render.missing:
        names = ", ".join(sorted(set(render.missing)))
        log.warning("%s %s: undefined %s rendered as nothing", origin, part, names)
    return "".join(pieces)


def _address(text: str, what: str) -> str:
    try:
        return Address(addr_spec=text.strip()).addr_spec
    except (ValueError, IndexError):
        raise MailError(f"{what} {text!r} is not an e-mail address") from None


def render(template: TemplateText, values: Mapping[str, object], *, to: Sequence[str]) -> Email:
    """The e-mail ``template`` makes from ``values``, addressed ``to`` (one address or more).

    Raises :class:`TemplateRefused` for an unsafe, broken or runaway template and
    :class:`MailError` for an address that is not one.
    """
    origin = template.describe()
    if isinstance(to, str):
        to = [to]
    recipients = tuple(_address(address, "recipient") for address in to)
    if not recipients:
        raise MailError(f"{origin}: an e-mail needs a recipient")
    sender = _address(template.from_address, "sender") if template.from_address else ""
    subject = _render_part(_TEXT, origin, "subject", template.subject, values, MAX_SUBJECT)
    html = template.body_type == "html"
    body = _render_part(_HTML if html else _TEXT, origin, "body", template.body, values, MAX_BODY)
    return Email(
        to=recipients,
        # Header values are one line: a value with a newline cannot add a header.
        from_name=" ".join(template.from_name.split()),
        from_address=sender,
        subject=" ".join(subject.split()),
        body=body,
        body_type="html" if html else "text",
        origin=origin,
    )


# --- sending -------------------------------------------------------------------------------


def _reason(error: Exception) -> str:
    """One line for an SMTP failure: the server's code and text, or the library's line."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.recipient} refused: {r.code} {r.message}" for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{error.code} {error.message}"
    return _first_line(error)


def _permanent(error: Exception) -> bool:
    """True when trying again cannot help (a 5xx answer, a missing server feature)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= refused.code < 600 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return 500 <= error.code < 600
    return isinstance(error, aiosmtplib.SMTPNotSupported)


class Mailer:
    """Sends e-mails in the background; a slow or absent SMTP server never holds a caller.

    :meth:`submit` queues and returns at once. :meth:`run` (one task) sends each e-mail
    with ``smtp_timeout`` per SMTP step, up to ``smtp_retries`` attempts for temporary
    failures (refused connection, timeout, 4xx), waiting ``retry_delay`` doubled each
    time up to ``max_delay``; 5xx answers are not retried. Every failure is logged, and
    a final line when an e-mail is given up. ``sent``, ``given_up`` and ``dropped``
    count outcomes.
    """

    def __init__(
        self,
        config: Config,
        *,
        retry_delay: float = 1.0,
        max_delay: float = 60.0,
        queue_size: int = 1000,
    ) -> None:
        try:
            Address(addr_spec=config.smtp_from)
        except (ValueError, IndexError):
            raise ConfigError(f"smtp_from {config.smtp_from!r} is not an e-mail address") from None
        self._config = config
        self._retry_delay = retry_delay
        self._max_delay = max_delay
        self._queue: asyncio.Queue[tuple[Email, EmailMessage]] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._current: Email | None = None
        self._stopping = False
        self._halted = False
        """Set by :meth:`stop` when it ends :meth:`run`: no further e-mail is taken."""
        self._interrupted = 0
        """E-mails whose delivery :meth:`stop` cut short."""
        self.sent = 0
        self.given_up = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """E-mails queued or being sent."""
        return self._queue.qsize() + (self._current is not None)

    def submit(self, email: Email) -> bool:
        """Queue ``email`` and return at once: True when queued, False (logged, counted in
        ``dropped``) when the mailer is stopping or full. An e-mail that cannot become a
        message (an address that is none, in a hand-made :class:`Email`) is a MailError."""
        try:
            message = email.message(self._config.smtp_from)
        except (ValueError, IndexError) as exc:
            raise MailError(f"e-mail {email.origin} cannot be sent: {_first_line(exc)}") from exc
        if self._stopping:
            why = "the mailer is stopping"
        else:
            try:
                self._queue.put_nowait((email, message))
            except asyncio.QueueFull:
                why = f"{self._queue.maxsize} e-mails are already waiting"
            else:
                return True
        self.dropped += 1
        log.error("e-mail %s to %s dropped: %s", email.origin, ", ".join(email.to), why)
        return False

    async def run(self) -> None:
        """Send queued e-mails, one at a time, until :meth:`stop` (or cancellation)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("Mailer.run() is already running")
        if self._stopping:
            return
        self._task = asyncio.current_task()
        # A cancellation can be lost inside the SMTP library when its send completes at
        # the same moment; stop() also sets _halted, so run() still ends at its next e-mail.
        while not self._halted:
            email, message = await self._queue.get()
            self._current = email
            try:
                await self._deliver(email, message)
            except asyncio.CancelledError:
                self._interrupted += 1
                raise
            # One e-mail the SMTP library chokes on must not end the mailer (and, in a
            # TaskGroup, the service): it is given up, loudly, and the next one goes.
            except Exception:
                self.given_up += 1
                log.exception("e-mail %s to %s: given up", email.origin, ", ".join(email.to))
            finally:
                self._current = None
                self._queue.task_done()

    async def stop(self, grace: float) -> None:
        """Refuse new e-mails, wait up to ``grace`` seconds for the queue, then end
        :meth:`run`; what is left unsent is counted in ``dropped`` and logged."""
        # A run() task created just before may not have started: let it register first.
        await asyncio.sleep(0)
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(grace):
                    await self._queue.join()
            except TimeoutError:
                pass
            self._halted = True
            task.cancel()
            await asyncio.wait([task])
            # Counted once the task ended: an e-mail whose delivery finished as it was
            # cancelled is sent, not unsent.
            unsent = self._queue.qsize() + self._interrupted
        else:
            unsent = self._queue.qsize()
        if unsent:
            self.dropped += unsent
            log.warning("mailer stopped with %d e-mail(s) unsent", unsent)

    async def _deliver(self, email: Email, message: EmailMessage) -> None:
        config = self._config
        attempts = max(1, config.smtp_retries)
        delay = self._retry_delay
        what = f"e-mail {email.origin} to {', '.join(email.to)}"
        for attempt in range(1, attempts + 1):
            try:
                refused, _ = await aiosmtplib.send(
                    message,
                    hostname=config.smtp_host,
                    port=config.smtp_port,
                    username=config.smtp_user or None,
                    password=config.smtp_password or None,
                    start_tls=config.smtp_starttls,
                    timeout=config.smtp_timeout,
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.warning(
                    "%s: attempt %d of %d failed: %s", what, attempt, attempts, _reason(exc)
                )
                if _permanent(exc) or attempt == attempts:
                    self.given_up += 1
                    log.error("%s: given up after %d attempt(s)", what, attempt)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)
                continue
            for address, (code, text) in refused.items():
                log.warning("%s: %s refused (%d %s)", what, address, code, text)
            self.sent += 1
            log.info("%s: sent", what)
            return
