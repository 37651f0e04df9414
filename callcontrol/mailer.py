"""Notification e-mails: tenant templates rendered in a sandboxed worker process, sent in
the background.

:meth:`Mailer.render` turns a :class:`~models.templates.TemplateText` and plain values
into an :class:`Email`. Templates are written by tenants, so they never run in the
service's process: a :class:`~models.template_worker.TemplateWorker` renders them in
Jinja2's immutable sandbox in a child process, and the event loop only awaits the reply.
The sandbox's promises (:mod:`models.template_sandbox`):

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
  a body past :data:`MAX_BODY` characters (a subject past :data:`MAX_SUBJECT`) is refused;
- hard bounds for what the cheap ones miss (nested loops over long texts, a chain of
  ``~`` doublings): each part renders under ``template_cpu_limit`` CPU seconds,
  ``template_memory_limit`` MiB of address space and ``template_timeout`` seconds of
  wall-clock time; a template over one is refused, naming the limit, and its worker
  process is replaced.

Values passed in should be plain data (str, numbers, Decimal, dates, dicts and lists of
them): they are pickled to the worker, and a template can call any public method of
what it is given.

:class:`Mailer` sends with aiosmtplib from a queue: :meth:`Mailer.submit` never waits,
:meth:`Mailer.notify` queues a template to render and send and never waits either,
:meth:`Mailer.run` renders and sends (retrying temporary failures with backoff),
:meth:`Mailer.stop` drains with a time limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Literal

import aiosmtplib

from callcontrol.config import Config
from dialplan.errors import CallControlError, ConfigError
from models.template_sandbox import MAX_BODY, MAX_SUBJECT
from models.template_worker import Refusal, RenderLimits, TemplateWorker, WorkerClosed, WorkerFailed
from models.templates import TemplateText

log = logging.getLogger("callcontrol.mailer")


def render_limits(config: Config) -> RenderLimits:
    """The limits ``config`` sets for one render of a tenant's template."""
    return RenderLimits(
        cpu=config.template_cpu_limit,
        memory_mib=config.template_memory_limit,
        wall=config.template_timeout,
    )


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


# --- rendering ----------------------------------------------------------------------------


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _address(text: str, what: str) -> str:
    try:
        return Address(addr_spec=text.strip()).addr_spec
    except (ValueError, IndexError):
        raise MailError(f"{what} {text!r} is not an e-mail address") from None


# --- sending -------------------------------------------------------------------------------


def _reason(error: Exception) -> str:
    """One line for an SMTP failure: the server's code and text, or the library's line."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return "; ".join(f"{r.recipient} refused: {r.code} {r.message}" for r in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{error.code} {error.message}"
    return _first_line(error)


def _named(email: Email) -> tuple[str, str]:
    return email.origin, ", ".join(email.to)


def _permanent(error: Exception) -> bool:
    """True when trying again cannot help (a 5xx answer, a missing server feature)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= refused.code < 600 for refused in error.recipients)
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return 500 <= error.code < 600
    return isinstance(error, aiosmtplib.SMTPNotSupported)


@dataclass(frozen=True, slots=True)
class _Notice:
    """A template to render and send, and what the logs call it."""

    template: TemplateText
    values: Mapping[str, object]
    to: tuple[str, ...]
    about: str


class Mailer:
    """Renders and sends e-mails in the background; a slow or absent SMTP server, or a
    slow template, never holds a caller.

    :meth:`submit` queues an e-mail and returns at once; :meth:`notify` queues a template
    to render first. :meth:`run` (one task) starts the template worker, renders queued
    notices in it one at a time (a refused one is one logged line and counted in
    ``refused``), and sends each e-mail with ``smtp_timeout`` per SMTP step, up to
    ``smtp_retries`` attempts for temporary failures (refused connection, timeout, 4xx),
    waiting ``retry_delay`` doubled each time up to ``max_delay``; 5xx answers are not
    retried. Every failure is logged, and a final line when an e-mail is given up.
    ``sent``, ``given_up``, ``dropped`` and ``refused`` count outcomes.
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
        self.worker = TemplateWorker(render_limits(config))
        """Where tenant templates render (started by :meth:`run`, closed by :meth:`stop`)."""
        self._queue: asyncio.Queue[tuple[Email, EmailMessage]] = asyncio.Queue(queue_size)
        self._notices: asyncio.Queue[_Notice] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._current: Email | None = None
        self._composing: _Notice | None = None
        self._stopping = False
        self._halted = False
        """Set by :meth:`stop` when it ends :meth:`run`: no further e-mail is taken."""
        self._interrupted = 0
        """E-mails whose delivery (or notices whose render) :meth:`stop` cut short."""
        self.sent = 0
        self.given_up = 0
        self.dropped = 0
        self.refused = 0

    @property
    def pending(self) -> int:
        """Notices and e-mails queued, being rendered or being sent."""
        queued = self._queue.qsize() + self._notices.qsize()
        return queued + (self._current is not None) + (self._composing is not None)

    async def render(
        self, template: TemplateText, values: Mapping[str, object], *, to: Sequence[str]
    ) -> Email:
        """The e-mail ``template`` makes from ``values``, addressed ``to`` (one address or
        more), rendered in the worker process (started now if it is not running).

        Raises :class:`TemplateRefused` for an unsafe, broken or runaway template (over a
        limit: its worker is replaced) and :class:`MailError` for an address that is not
        one, or once the mailer is stopped.
        """
        origin = template.describe()
        if isinstance(to, str):
            to = [to]
        recipients = tuple(_address(address, "recipient") for address in to)
        if not recipients:
            raise MailError(f"{origin}: an e-mail needs a recipient")
        sender = _address(template.from_address, "sender") if template.from_address else ""
        html = template.body_type == "html"
        subject = await self._render_part(origin, "subject", template.subject, values)
        body = await self._render_part(origin, "body", template.body, values, html=html)
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

    async def _render_part(
        self,
        origin: str,
        part: str,
        source: str,
        values: Mapping[str, object],
        *,
        html: bool = False,
    ) -> str:
        limit = MAX_BODY if part == "body" else MAX_SUBJECT
        try:
            rendered = await self.worker.render(source, values, html=html, max_chars=limit)
        except WorkerClosed:  # by stop()
            raise MailError(f"{origin}: the mailer is stopped") from None
        except OSError as exc:
            raise MailError(f"{origin}: the template worker cannot start: {exc}") from None
        if isinstance(rendered, Refusal):
            raise TemplateRefused(origin, part, rendered.reason)
        if rendered.missing:
            names = ", ".join(rendered.missing)
            log.warning("%s %s: undefined %s rendered as nothing", origin, part, names)
        return rendered.text

    def notify(
        self,
        template: TemplateText,
        values: Mapping[str, object],
        *,
        to: Sequence[str],
        about: str,
    ) -> bool:
        """Queue ``template`` to render with ``values`` and send ``to``, and return at once:
        True when queued, False (logged, counted in ``dropped``) when the mailer is
        stopping or full. ``about`` names the e-mail in the logs (``client acme: daily
        limit e-mail``); a refused render is logged as ``<about> not sent: <why>``."""
        if isinstance(to, str):
            to = [to]
        notice = _Notice(template, values, tuple(to), about)
        if self._stopping:
            why = "the mailer is stopping"
        else:
            try:
                self._notices.put_nowait(notice)
            except asyncio.QueueFull:
                why = f"{self._notices.maxsize} notices are already waiting"
            else:
                return True
        self.dropped += 1
        log.error("%s dropped: %s", about, why)
        return False

    def submit(self, email: Email) -> bool:
        """Queue ``email`` and return at once: True when queued, False (logged, counted in
        ``dropped``) when the mailer is stopping or full. An e-mail that cannot become a
        message (an address that is none, in a hand-made :class:`Email`) is a MailError."""
        message = self._message(email)
        if self._stopping:
            self.dropped += 1
            log.error("e-mail %s to %s dropped: the mailer is stopping", *_named(email))
            return False
        return self._put(email, message)

    def _message(self, email: Email) -> EmailMessage:
        try:
            return email.message(self._config.smtp_from)
        except (ValueError, IndexError) as exc:
            raise MailError(f"e-mail {email.origin} cannot be sent: {_first_line(exc)}") from exc

    def _put(self, email: Email, message: EmailMessage) -> bool:
        try:
            self._queue.put_nowait((email, message))
        except asyncio.QueueFull:
            self.dropped += 1
            why = f"{self._queue.maxsize} e-mails are already waiting"
            log.error("e-mail %s to %s dropped: %s", *_named(email), why)
            return False
        return True

    async def run(self) -> None:
        """Render and send queued notices and e-mails until :meth:`stop` (or cancellation)."""
        if self._task is not None and not self._task.done():
            raise RuntimeError("Mailer.run() is already running")
        if self._stopping:
            return
        self._task = asyncio.current_task()
        composer = asyncio.create_task(self._compose())
        try:
            await self._send()
        finally:
            composer.cancel()
            await asyncio.wait([composer])
            await self.worker.close()

    async def _compose(self) -> None:
        """Render queued notices, one at a time, into the send queue."""
        try:
            await self.worker.start()  # its start-up off the first notice's path
        except (OSError, WorkerFailed) as exc:  # each notice tries again, says why not sent
            log.error("the template worker cannot start: %s", exc)
        except WorkerClosed:  # stopped before it began
            return
        while True:
            notice = await self._notices.get()
            self._composing = notice
            try:
                email = await self.render(notice.template, notice.values, to=notice.to)
                # queued even while stopping: stop() waits for what was notified before
                self._put(email, self._message(email))
            except asyncio.CancelledError:
                self._interrupted += 1
                raise
            except MailError as exc:
                self.refused += 1
                log.warning("%s not sent: %s", notice.about, exc)
            # As for sending: one notice that fails unexpectedly must not end the mailer.
            except Exception:
                self.refused += 1
                log.exception("%s not sent", notice.about)
            finally:
                self._composing = None
                self._notices.task_done()

    async def _send(self) -> None:
        """Send queued e-mails, one at a time."""
        # A cancellation can be lost inside the SMTP library when its send completes at
        # the same moment; stop() also sets _halted, so this still ends at its next e-mail.
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
                log.exception("e-mail %s to %s: given up", *_named(email))
            finally:
                self._current = None
                self._queue.task_done()

    async def stop(self, grace: float) -> None:
        """Refuse new notices and e-mails, wait up to ``grace`` seconds for the queues, then
        end :meth:`run` and the template worker; what is left unsent is counted in
        ``dropped`` and logged."""
        # A run() task created just before may not have started: let it register first.
        await asyncio.sleep(0)
        self._stopping = True
        task = self._task
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(grace):
                    await self._notices.join()
                    await self._queue.join()
            except TimeoutError:
                pass
            self._halted = True
            task.cancel()
            await asyncio.wait([task])
            # Counted once the task ended: an e-mail whose delivery finished as it was
            # cancelled is sent, not unsent.
            unsent = self._queue.qsize() + self._notices.qsize() + self._interrupted
        else:
            unsent = self._queue.qsize() + self._notices.qsize()
        await self.worker.close()
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
