"""Notification e-mails: template lookup on every backend, sandboxed rendering, and
delivery to a real SMTP server on loopback (aiosmtpd in the test's own event loop)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.config import Config
from callcontrol.mailer import Email, Mailer, MailError, TemplateRefused
from dialplan.errors import CallControlError
from models import Brand, Client, ClientNotificationTemplate, NotificationTemplate
from models.provisioning import load_text
from models.templates import TemplateText, find_template
from tests.ports import free_port as free_tcp_port

# --- lookup ------------------------------------------------------------------------------

DOCUMENT = """
currencies:
  - {code: EUR, name: Euro, symbol: "€"}
templates:
  - name: generic-limit
    type: max_daily_usage
    contents:
      - {language: en, from_name: Platform, from_address: no-reply@platform.example.net,
         subject: "Limit", body: generic en}
      - {language: es, from_name: Plataforma, from_address: no-reply@platform.example.net,
         subject: "Límite", body: generic es}
brands:
  - name: brand-a
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    templates:
      - name: brand-a-limit
        type: max_daily_usage
        contents:
          - {language: en, from_name: Brand A, from_address: alerts@brand-a.example.es,
             subject: "Limit", body: brand en}
          - {language: es, from_name: Marca A, from_address: avisos@brand-a.example.es,
             subject: "Límite", body: brand es}
    template_choices: {max_daily_usage: brand-a-limit}
  - name: brand-b
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
clients:
  - name: chooser
    brand: brand-a
    sip_domain: chooser.brand-a.example.es
    templates:
      - name: chooser-limit
        type: max_daily_usage
        contents:
          - {language: fr, from_name: Chooser, from_address: compta@chooser.example.fr,
             subject: "Limite", body: client fr}
    template_choices: {max_daily_usage: chooser-limit}
  - name: follower
    brand: brand-a
    sip_domain: follower.brand-a.example.es
  - name: loner
    brand: brand-b
    sip_domain: loner.brand-b.example.es
  - name: other
    brand: brand-b
    sip_domain: other.brand-b.example.es
    templates:
      - name: other-limit
        type: max_daily_usage
        contents:
          - {language: es, from_name: Other, from_address: secret@other.example.es,
             subject: "Privado", body: other es}
"""


async def loaded(engine: AsyncEngine) -> dict[str, int]:
    """Load the document; the clients' ids by name."""
    await load_text(engine, DOCUMENT)
    async with engine.connect() as connection:
        rows = await connection.execute(select(Client.name, Client.id))
        return {name: client_id for name, client_id in rows}


async def found(engine: AsyncEngine, client_id: int, language: str) -> tuple[str, str] | None:
    text = await find_template(engine, client_id, "max_daily_usage", language)
    return None if text is None else (text.level, text.body)


async def test_a_client_gets_its_own_template_in_its_language(engine: AsyncEngine) -> None:
    clients = await loaded(engine)

    text = await find_template(engine, clients["chooser"], "max_daily_usage", "fr")

    assert text is not None
    assert (text.level, text.template_name, text.language, text.body) == (
        "client",
        "chooser-limit",
        "fr",
        "client fr",
    )
    assert (text.from_name, text.from_address, text.fallback) == (
        "Chooser",
        "compta@chooser.example.fr",
        False,
    )
    assert text.describe() == "client's template 'chooser-limit' (fr)"


async def test_a_client_whose_template_lacks_the_language_or_with_no_choice_gets_its_brands(
    engine: AsyncEngine,
) -> None:
    clients = await loaded(engine)

    assert await found(engine, clients["chooser"], "es") == ("brand", "brand es")
    assert await found(engine, clients["follower"], "es") == ("brand", "brand es")
    assert await found(engine, clients["follower"], "en") == ("brand", "brand en")


async def test_a_client_under_a_brand_without_a_choice_gets_the_generic_template(
    engine: AsyncEngine,
) -> None:
    clients = await loaded(engine)

    assert await found(engine, clients["loner"], "es") == ("generic", "generic es")
    # a regional language takes its base language at the same level
    assert await found(engine, clients["loner"], "es-MX") == ("generic", "generic es")


async def test_a_language_nobody_has_falls_back_to_english_along_the_same_chain(
    engine: AsyncEngine,
) -> None:
    clients = await loaded(engine)

    brand = await find_template(engine, clients["chooser"], "max_daily_usage", "it")
    generic = await find_template(engine, clients["loner"], "max_daily_usage", "it")

    # the brand's English (with the brand's sender) before the platform's
    assert brand is not None
    assert (brand.level, brand.language, brand.from_address) == (
        "brand",
        "en",
        "alerts@brand-a.example.es",
    )
    assert brand.fallback
    assert brand.describe() == "brand's template 'brand-a-limit' (en, wanted it)"
    assert generic is not None
    assert (generic.level, generic.body) == ("generic", "generic en")


async def test_with_no_template_of_the_type_anywhere_there_is_nothing(
    engine: AsyncEngine,
) -> None:
    clients = await loaded(engine)

    for name in ("chooser", "follower", "loner"):
        assert await find_template(engine, clients[name], "fax", "es") is None
    # a client that does not exist only gets the generic level
    assert await find_template(engine, 999_999, "fax", "es") is None
    assert await found(engine, 999_999, "es") == ("generic", "generic es")
    with pytest.raises(ValueError, match="unknown notification template type 'faxes'"):
        await find_template(engine, clients["loner"], "faxes", "es")


async def test_a_choice_pointing_at_another_tenants_template_is_ignored(
    engine: AsyncEngine,
) -> None:
    clients = await loaded(engine)
    async with engine.begin() as connection:
        stolen = await connection.scalar(
            select(NotificationTemplate.id).where(NotificationTemplate.name == "other-limit")
        )
        await connection.execute(
            insert(ClientNotificationTemplate).values(
                client_id=clients["loner"], type="max_daily_usage", template_id=stolen
            )
        )
        assert (
            await connection.scalar(
                select(ClientNotificationTemplate.template_id).where(
                    ClientNotificationTemplate.client_id == clients["loner"]
                )
            )
            == stolen
        )

    # written by another tool, not by provisioning: the lookup still keeps tenants apart
    assert await found(engine, clients["loner"], "es") == ("generic", "generic es")

    async with engine.begin() as connection:
        await connection.execute(
            update(ClientNotificationTemplate)
            .where(ClientNotificationTemplate.client_id == clients["loner"])
            .values(client_id=clients["other"])
        )
    assert await found(engine, clients["other"], "es") == ("client", "other es")


async def test_a_brands_own_email_gets_its_choice_then_the_generic_one(
    engine: AsyncEngine,
) -> None:
    await loaded(engine)
    async with engine.connect() as connection:
        brands = dict((await connection.execute(select(Brand.name, Brand.id))).all())

    async def of_brand(name: str, language: str) -> tuple[str, str] | None:
        text = await find_template(engine, None, "max_daily_usage", language, brand_id=brands[name])
        return None if text is None else (text.level, text.body)

    assert await of_brand("brand-a", "es") == ("brand", "brand es")
    assert await of_brand("brand-a", "fr") == ("brand", "brand en")  # its English first
    # no choice of its own, and never one of its clients' templates (other-limit is other's)
    assert await of_brand("brand-b", "es") == ("generic", "generic es")
    # an unknown brand only gets the generic level
    text = await find_template(engine, None, "max_daily_usage", "es", brand_id=999_999)
    assert text is not None
    assert text.level == "generic"


# --- rendering ---------------------------------------------------------------------------


def template(
    body: str, subject: str = "Limit for {{ client }}", html: bool = False
) -> TemplateText:
    return TemplateText(
        level="brand",
        template_id=1,
        template_name="t",
        kind="max_daily_usage",
        language="en",
        requested_language="en",
        from_name="Brand A",
        from_address="alerts@brand-a.example.es",
        subject=subject,
        body=body,
        body_type="html" if html else "text",
    )


VALUES: dict[str, object] = {
    "client": "acme",
    "amount": "50.00",
    "currency": "EUR",
    "lines": ["a", "b"],
}


@pytest.fixture
async def renderer() -> AsyncIterator[Mailer]:
    """A mailer that only renders (in its worker process), stopped after the test."""
    mailer = Mailer(Config())
    yield mailer
    await mailer.stop(grace=0)


async def test_a_text_template_renders_values_into_subject_and_body(renderer: Mailer) -> None:
    body = "{{ client }} spent {{ amount }} {{ currency }}:{% for l in lines %} {{ l }}{% endfor %}"

    mail = await renderer.render(template(body), VALUES, to=["finance@acme.example.com"])

    assert mail == Email(
        to=("finance@acme.example.com",),
        from_name="Brand A",
        from_address="alerts@brand-a.example.es",
        subject="Limit for acme",
        body="acme spent 50.00 EUR: a b",
        body_type="text",
        origin="brand's template 't' (en)",
    )
    html = await renderer.render(
        template("<b>{{ client }}</b>"), {"client": "<x>"}, to="a@b.example"
    )
    assert html.body == ("<b><x></b>")


async def test_an_html_body_escapes_values_and_the_subject_stays_one_plain_line(
    renderer: Mailer,
) -> None:
    values = {"client": "<script>alert(1)</script>\r\nBcc: victim@example.com"}

    mail = await renderer.render(
        template("<p>{{ client }}</p>", subject="{{ client }}", html=True),
        values,
        to=["finance@acme.example.com"],
    )

    assert mail.body == ("<p>&lt;script&gt;alert(1)&lt;/script&gt;\r\nBcc: victim@example.com</p>")
    assert mail.subject == "<script>alert(1)</script> Bcc: victim@example.com"
    assert mail.body_type == "html"
    message = mail.message("callcontrol@platform.example.net")
    assert message["Bcc"] is None
    assert message.get_content_type() == "text/html"


async def test_a_misspelt_variable_renders_as_nothing_and_is_logged(
    renderer: Mailer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="callcontrol.mailer")

    mail = await renderer.render(
        template("{{ amonut }} {{ currency }} {{ invoice.number }}."), VALUES, to="a@b.example"
    )

    assert mail.body == " EUR ."
    assert [record.getMessage() for record in caplog.records] == [
        "brand's template 't' (en) body: undefined amonut, invoice rendered as nothing"
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for x in lines %}", "line 1: Unexpected end of template"),
        ("{{ client | nosuchfilter }}", "line 1: No filter named 'nosuchfilter'"),
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
        pytest.param(
            "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
            "nested too deeply to compile",
            id="3000-nested-brackets",
        ),
        pytest.param(
            "{% if 1 %}" * 3000 + "{% endif %}" * 3000,
            "nested too deeply to compile",
            id="3000-nested-ifs",
        ),
    ],
)
async def test_a_template_that_does_not_compile_or_fails_is_refused_in_one_line(
    renderer: Mailer, source: str, reason: str
) -> None:
    with pytest.raises(TemplateRefused) as refused:
        await renderer.render(template(source), VALUES, to="a@b.example")

    assert isinstance(refused.value, CallControlError)
    assert str(refused.value).startswith(f"brand's template 't' (en) body refused: {reason}")
    assert "\n" not in str(refused.value)
    assert refused.value.part == "body"


async def rendered_or_refused(
    renderer: Mailer, text: TemplateText, values: dict[str, object]
) -> Email | TemplateRefused:
    """The e-mail, or the refusal; any other exception fails the test."""
    try:
        return await renderer.render(text, values, to="a@b.example")
    except TemplateRefused as refused:
        return refused


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__['__builtins__'] }}",
    "{{ self.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ ''['__class__']['__mro__'] }}",
    "{{ lines|map(attribute='__class__')|list }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '%s'|format(''.__class__) }}",
    "{{ amount.__class__.__base__.__subclasses__() }}",
    "{{ nothing.__class__.__mro__ }}",
    "{{ lines.append('x') }}{{ lines }}",
    "{% set x = config.__class__ %}{{ x }}",
]


@pytest.mark.parametrize("source", ESCAPES)
@pytest.mark.parametrize("html", [False, True])
async def test_a_template_reaching_for_python_internals_is_refused_or_harmless(
    renderer: Mailer, source: str, html: bool
) -> None:
    values = dict(VALUES, lines=["a", "b"])

    outcome = await rendered_or_refused(
        renderer, template(source, subject=source, html=html), values
    )

    if isinstance(outcome, TemplateRefused):
        assert "not allowed" in str(outcome) or "undefined" in str(outcome)
        assert "\n" not in str(outcome)
    else:
        for text in (outcome.subject, outcome.body):
            for leak in ("class", "subclasses", "function", "module", "built-in", "globals"):
                assert leak not in text
    assert values["lines"] == ["a", "b"]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% for i in range(10**9) %}x{% endfor %}", "loops over more than 100000 items"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "loops over more than 100000 items",
        ),
        ("{{ 'x' * 10**9 }}", "* would build a text over 1000000 characters"),
        ("{{ 9**9**9 }}", "** would build a number over 256 bits"),
        ("{{ 'x' * 999999 + 'y' * 999999 }}", "+ would build a text over 1000000 characters"),
        ("{{ 'x'.ljust(10**9) }}", "a width of 1000000000 is over 1000000"),
        ("{{ 'x'|center(10**9) }}", "a width of 1000000000 is over 1000000"),
        ("{{ '%999999999s'|format(1) }}", "the format '%999999999s' is too wide"),
        ("{{ '{:>999999999}'.format(1) }}", "the format '{:>999999999}' is too wide"),
        ("{{ lipsum(10**6) }}", "'lipsum' is undefined"),
        ("{% for i in range(100000) %}{{ 'x' * 20 }}{% endfor %}", "renders more than 1000000"),
    ],
)
async def test_a_runaway_template_is_refused(renderer: Mailer, source: str, reason: str) -> None:
    with pytest.raises(TemplateRefused) as refused:
        await renderer.render(template(source), VALUES, to="a@b.example")

    assert reason in str(refused.value)


async def test_ordinary_formatting_and_loops_are_allowed(renderer: Mailer) -> None:
    source = (
        "{{ '%.2f'|format(3.14159) }}|{{ '%5s' % 'ab' }}|{{ '{:>4}'.format(7) }}"
        "|{{ 'ab'|center(6) }}|{{ 2**10 }}|{% for i in range(3) %}{{ i }}{% endfor %}"
        "|Call +34 910000100 now: {{ '%s' % amount }}"
    )

    mail = await renderer.render(template(source), VALUES, to="a@b.example")
    assert mail.body == ("3.14|   ab|   7|  ab  |1024|012|Call +34 910000100 now: 50.00")


async def test_an_address_that_is_not_one_is_a_mail_error(renderer: Mailer) -> None:
    with pytest.raises(MailError, match="recipient 'finance' is not an e-mail address"):
        await renderer.render(template("x"), VALUES, to=["finance"])
    with pytest.raises(MailError, match="is not an e-mail address"):
        await renderer.render(template("x"), VALUES, to=["a@b.example\r\nBcc: victim@example.com"])
    with pytest.raises(MailError, match="needs a recipient"):
        await renderer.render(template("x"), VALUES, to=[])


# --- sending -------------------------------------------------------------------------------

WITHIN = 10.0
"""Seconds any wait in these tests may take before the test fails."""


class Inbox:
    """An aiosmtpd handler: keeps what it accepts; answers DATA from a script first."""

    def __init__(self, answers: list[str] | None = None, refuse: set[str] | None = None) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []
        self.answers = list(answers or [])
        self.refuse = refuse or set()
        self.in_data = asyncio.Event()
        """Set while a DATA command waits for ``release`` (when ``hold`` is set)."""
        self.hold = False
        self.release = asyncio.Event()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.hold:
            self.in_data.set()
            await self.release.wait()
        if self.answers:
            return self.answers.pop(0)
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((envelope, message))
        return "250 OK"


def free_port() -> int:
    return free_tcp_port(socket.SOCK_STREAM)


@asynccontextmanager
async def smtp_server(port: int, inbox: Inbox) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(inbox, hostname="mx.test"), "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        async with asyncio.timeout(WITHIN):
            await server.wait_closed()


@asynccontextmanager
async def running(mailer: Mailer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(mailer.run())
    try:
        yield task
    finally:
        async with asyncio.timeout(WITHIN):
            await mailer.stop(grace=0)
        assert task.done()


async def until(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds, at most WITHIN seconds (then fail)."""
    async with asyncio.timeout(WITHIN):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)


def settings(port: int, retries: int = 3) -> Config:
    return Config(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout=5.0,
        smtp_retries=retries,
        smtp_from="callcontrol@platform.example.net",
    )


def notice(to: str = "finance@acme.example.com", html: bool = False) -> Email:
    """What template(...) with VALUES renders to (the rendering tests above check it)."""
    body = "<p>acme spent 50.00</p>" if html else "acme spent 50.00"
    return Email(
        to=(to,),
        from_name="Brand A",
        from_address="alerts@brand-a.example.es",
        subject="Limit for acme",
        body=body,
        body_type="html" if html else "text",
        origin="brand's template 't' (en)",
    )


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_an_email_reaches_a_real_smtp_server_with_subject_from_to_and_body() -> None:
    port = free_port()
    inbox = Inbox()
    mailer = Mailer(settings(port))

    async with smtp_server(port, inbox), running(mailer):
        assert mailer.submit(notice())
        assert mailer.submit(notice(to="boss@acme.example.com", html=True))
        # Until the mailer has its server's answer to both, not only the server its mail.
        await until(lambda: len(inbox.messages) == 2 and mailer.sent == 2)

    (envelope, message), (_, html) = inbox.messages
    assert envelope.mail_from == "alerts@brand-a.example.es"
    assert envelope.rcpt_tos == ["finance@acme.example.com"]
    assert message["From"] == "Brand A <alerts@brand-a.example.es>"
    assert message["To"] == "finance@acme.example.com"
    assert message["Subject"] == "Limit for acme"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content().strip() == "acme spent 50.00"
    assert html.get_content_type() == "text/html"
    assert html.get_content().strip() == "<p>acme spent 50.00</p>"
    assert (mailer.sent, mailer.given_up, mailer.dropped) == (2, 0, 0)


async def test_stopping_during_a_delivery_counts_that_e_mail_unsent_once() -> None:
    port = free_port()
    inbox = Inbox()
    inbox.hold = True  # the server sits on DATA: the delivery is in flight
    mailer = Mailer(settings(port))
    async with smtp_server(port, inbox):
        task = asyncio.create_task(mailer.run())
        assert mailer.submit(notice())
        async with asyncio.timeout(WITHIN):
            await inbox.in_data.wait()
            await mailer.stop(grace=0)
        inbox.release.set()
    assert task.done()
    assert (mailer.sent, mailer.given_up, mailer.dropped, mailer.pending) == (0, 0, 1, 0)


async def test_a_template_without_a_sender_is_sent_from_smtp_from() -> None:
    port = free_port()
    inbox = Inbox()
    mailer = Mailer(settings(port))
    anonymous = replace(template("x"), from_address="")

    async with smtp_server(port, inbox), running(mailer):
        assert mailer.notify(anonymous, VALUES, to="a@b.example", about="test e-mail")
        await until(lambda: len(inbox.messages) == 1)

    assert inbox.messages[0][0].mail_from == "callcontrol@platform.example.net"


async def test_a_server_down_at_first_gets_the_email_after_a_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callcontrol.mailer")
    port = free_port()
    inbox = Inbox()
    mailer = Mailer(settings(port, retries=20), retry_delay=0.05, max_delay=0.2)

    # no server and no sender task yet: submit can only have queued it
    assert mailer.submit(notice())
    assert mailer.pending == 1

    async with running(mailer):
        await until(lambda: bool(lines(caplog, "attempt 1 of 20 failed")))
        async with smtp_server(port, inbox):
            await until(lambda: mailer.sent == 1)

    assert len(inbox.messages) == 1
    assert (mailer.given_up, mailer.pending) == (0, 0)
    assert "Connect call failed" in lines(caplog, "attempt 1 of 20 failed")[0]
    assert lines(caplog, ": sent") == [
        "e-mail brand's template 't' (en) to finance@acme.example.com: sent"
    ]


async def test_a_4xx_answer_is_retried_and_a_5xx_answer_is_given_up_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callcontrol.mailer")
    port = free_port()
    inbox = Inbox(answers=["451 4.3.0 try again later"], refuse={"nobody@acme.example.com"})
    mailer = Mailer(settings(port, retries=3), retry_delay=0.05)

    async with smtp_server(port, inbox), running(mailer):
        mailer.submit(notice())
        await until(lambda: mailer.sent == 1)
        mailer.submit(notice(to="nobody@acme.example.com"))
        await until(lambda: mailer.given_up == 1)

    assert [envelope.rcpt_tos for envelope, _ in inbox.messages] == [["finance@acme.example.com"]]
    assert len(lines(caplog, "attempt 1 of 3 failed: 451 4.3.0 try again later")) == 1
    assert lines(caplog, "to nobody@acme.example.com: attempt") == [
        "e-mail brand's template 't' (en) to nobody@acme.example.com: attempt 1 of 3 failed: "
        "nobody@acme.example.com refused: 550 5.1.1 no such user"
    ]
    assert lines(caplog, "given up") == [
        "e-mail brand's template 't' (en) to nobody@acme.example.com: given up after 1 attempt(s)"
    ]


async def test_a_server_down_for_good_is_given_up_after_smtp_retries_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callcontrol.mailer")
    mailer = Mailer(settings(free_port(), retries=3), retry_delay=0.01)

    # the sender task does not even exist yet: submit returns without touching the network
    assert mailer.submit(notice())
    assert lines(caplog, "attempt") == []

    async with running(mailer):
        await until(lambda: mailer.given_up == 1)

    failures = lines(caplog, "failed")
    assert [line.split(": attempt ")[1][:16] for line in failures] == [
        "1 of 3 failed: E",
        "2 of 3 failed: E",
        "3 of 3 failed: E",
    ]
    assert [r.levelname for r in caplog.records if "given up" in r.getMessage()] == ["ERROR"]
    assert (mailer.sent, mailer.pending) == (0, 0)


async def test_stop_sends_what_is_queued_then_ends_run() -> None:
    port = free_port()
    inbox = Inbox()
    mailer = Mailer(settings(port))
    for index in range(3):
        mailer.submit(notice(to=f"user{index}@acme.example.com"))

    async with smtp_server(port, inbox):
        task = asyncio.create_task(mailer.run())
        async with asyncio.timeout(WITHIN):
            await mailer.stop(grace=WITHIN)

    assert task.done()
    assert sorted(envelope.rcpt_tos[0] for envelope, _ in inbox.messages) == [
        "user0@acme.example.com",
        "user1@acme.example.com",
        "user2@acme.example.com",
    ]
    assert not mailer.submit(notice())
    assert (mailer.sent, mailer.dropped) == (3, 1)


async def test_stop_gives_up_waiting_after_its_grace_and_counts_what_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="callcontrol.mailer")
    mailer = Mailer(settings(free_port(), retries=5), retry_delay=WITHIN * 10)
    mailer.submit(notice())
    mailer.submit(notice(to="boss@acme.example.com"))
    task = asyncio.create_task(mailer.run())
    await until(lambda: bool(lines(caplog, "attempt 1 of 5 failed")))

    async with asyncio.timeout(WITHIN):
        await mailer.stop(grace=0.1)

    assert task.done()
    assert (mailer.sent, mailer.given_up, mailer.dropped) == (0, 0, 2)
    assert lines(caplog, "unsent") == ["mailer stopped with 2 e-mail(s) unsent"]


def test_submit_never_waits_a_full_queue_drops_and_a_broken_email_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mailer = Mailer(settings(free_port()), queue_size=1)

    assert mailer.submit(notice())
    assert not mailer.submit(notice(to="boss@acme.example.com"))
    with pytest.raises(MailError, match="cannot be sent"):
        mailer.submit(replace(notice(), from_address="not an address"))

    assert (mailer.pending, mailer.dropped) == (1, 1)
    assert lines(caplog, "dropped") == [
        "e-mail brand's template 't' (en) to boss@acme.example.com dropped: "
        "1 e-mails are already waiting"
    ]


def test_a_bad_default_sender_is_a_config_error() -> None:
    with pytest.raises(CallControlError, match="smtp_from 'callcontrol' is not an e-mail"):
        Mailer(Config(smtp_from="callcontrol"))
