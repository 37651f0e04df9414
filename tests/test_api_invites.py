"""The access_credentials e-mail with a one-time link: sent through a real SMTP server on
loopback when an administrator is made or invited, the link working once, refused used,
expired or unknown alike, and the token kept neither in the database nor in the logs."""

from __future__ import annotations

import logging
import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import update
from typer.testing import CliRunner

from callcontrol.api.app import build_app
from callcontrol.api.invites import REFUSED
from callcontrol.api.serve import MaskTokens
from callcontrol.cli import app as cli
from callcontrol.mailer import Mailer
from models.admins import PlatformAdmin
from models.provisioning import load_text
from tests.api_world import IBERIA, PASSWORDS, World, world_on
from tests.test_notifications_mail import Inbox, free_port, running, settings, smtp_server, until

PUBLIC = "https://cc.example.net"
TEMPLATE = """
templates:
  - name: welcome
    type: access_credentials
    contents:
      - {language: en, from_name: Platform, from_address: no-reply@platform.example.net,
         subject: "Your access ({{ level }})",
         body: "Hello {{ username }} of {{ client or brand or 'the platform' }}: choose your
           password at {{ link }} before {{ expires_at }}."}
"""
LINK = re.compile(re.escape(PUBLIC) + r"/set-password\?token=([A-Za-z0-9_-]+)")


@dataclass
class Sending:
    world: World
    http: httpx.AsyncClient
    """An API that sends e-mails (the world's own sends none)."""
    inbox: Inbox
    mailer: Mailer

    async def link(self, count: int) -> tuple[str, str]:
        """The address and token of the ``count``-th e-mail (waiting for it)."""
        await until(lambda: len(self.inbox.messages) >= count and self.mailer.sent >= count)
        envelope, message = self.inbox.messages[count - 1]
        found = LINK.search(message.get_content())
        assert found is not None, message.get_content()
        return envelope.rcpt_tos[0], found[1]

    async def set_password(self, token: str, password: str) -> httpx.Response:
        return await self.http.post(
            "/api/set-password", json={"token": token, "password": password}
        )

    async def login(self, username: str, password: str) -> int:
        answer = await self.http.post(
            "/api/login", json={"username": username, "password": password}
        )
        return answer.status_code


@pytest.fixture
async def sending(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Sending]:
    port = free_port()
    inbox = Inbox()
    mailer = Mailer(settings(port))
    async with world_on(sqlite_template, tmp_path) as world:
        await load_text(world.engine, TEMPLATE)
        app = build_app(
            world.engine, clock=world.clock, mailer=mailer, public_url=PUBLIC, invite_ttl=3600
        )
        transport = httpx.ASGITransport(app=app)
        async with (
            smtp_server(port, inbox),
            running(mailer),
            httpx.AsyncClient(transport=transport, base_url="http://api.test") as http,
        ):
            yield Sending(world, http, inbox, mailer)


async def test_a_client_admin_added_with_an_email_gets_a_link_that_works_once(
    sending: Sending, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = sending.world
    root = await world.as_("root")
    made = await sending.http.post(
        f"/api/clients/{world.clients['north']}/admins",
        headers=root,
        json={
            "username": "north-new",
            "email": "new@north.example.com",
            "password": "first-pass-1",
        },
    )
    assert made.status_code == 201, made.text
    address, token = await sending.link(1)
    assert address == "new@north.example.com"
    _, message = sending.inbox.messages[0]
    assert message["Subject"] == "Your access (client)"
    assert "Hello north-new of north: choose your password at https://cc.example.net/" in (
        " ".join(message.get_content().split())
    )
    before = await sending.http.post(
        "/api/login", json={"username": "north-new", "password": "first-pass-1"}
    )
    assert before.status_code == 200
    session = {"Authorization": f"Bearer {before.json()['token']}"}

    chosen = await sending.set_password(token, "chosen-pass-1")
    assert chosen.status_code == 204, chosen.text
    assert (await sending.http.get("/api/clients", headers=session)).status_code == 401
    assert await sending.login("north-new", "first-pass-1") == 401
    assert await sending.login("north-new", "chosen-pass-1") == 200

    again = await sending.set_password(token, "third-pass-1")
    assert (again.status_code, again.json()["detail"]) == (400, REFUSED)
    assert await sending.login("north-new", "chosen-pass-1") == 200

    await world.engine.dispose()  # everything written is in the files now
    stored = b"".join(p.read_bytes() for p in world.database.parent.glob("api.db*"))
    assert b"north-new" in stored  # the search does see what the database holds
    for secret in (token, "chosen-pass-1", "first-pass-1"):
        assert secret.encode() not in stored
        # The test's own SMTP server (aiosmtpd, "mail.log") logs what it receives.
        assert not [
            r.name for r in caplog.records if r.name != "mail.log" and secret in r.getMessage()
        ]
    with closing(sqlite3.connect(world.database)) as db:
        audited = db.execute("SELECT actor, action, target FROM audit_entries").fetchall()
    assert ("root", "admin.invite", "north-new") in audited
    assert ("north-new", "admin.set_password", "north-new") in audited


async def test_a_client_admin_created_with_its_client_and_an_email_gets_the_link(
    sending: Sending,
) -> None:
    root = await sending.world.as_("root")
    made = await sending.http.post(
        "/api/clients",
        headers=root,
        json={
            "brand": "iberia",
            "name": "west",
            "sip_domain": "west.example.com",
            "admins": [
                {
                    "username": "west-boss",
                    "email": "boss@west.example.com",
                    "password": "pass-12345",
                },
                {"username": "west-quiet", "password": "pass-12345"},
            ],
        },
    )
    assert made.status_code == 201, made.text
    address, token = await sending.link(1)
    assert address == "boss@west.example.com"
    assert (await sending.set_password(token, "chosen-pass-1")).status_code == 204
    assert await sending.login("west-boss", "chosen-pass-1") == 200
    assert len(sending.inbox.messages) == 1  # the admin without an address gets none


async def test_an_expired_a_made_up_and_a_replaced_link_are_refused_alike(
    sending: Sending,
) -> None:
    world = sending.world
    root = await world.as_("root")
    invite = "/api/admins/iberia-admin/invite"
    no_email = await sending.http.post(invite, headers=root)
    assert no_email.status_code == 422
    assert no_email.json()["detail"] == (
        "email: administrator 'iberia-admin' has no e-mail address"
    )
    async with world.engine.begin() as connection:
        await connection.execute(
            update(PlatformAdmin)
            .where(PlatformAdmin.username == "iberia-admin")
            .values(email="ops@iberia.example.es")
        )
    for _ in (1, 2):
        sent = await sending.http.post(invite, headers=root)
        assert sent.status_code == 202, sent.text
        assert sent.json()["email"] == "ops@iberia.example.es"
    _, replaced = await sending.link(1)
    address, token = await sending.link(2)
    assert address == "ops@iberia.example.es"
    assert sending.inbox.messages[1][1]["Subject"] == "Your access (brand)"

    world.clock.advance(3601)  # the links live an hour
    answers = [
        await sending.set_password(candidate, "never-set-1")
        for candidate in (token, replaced, "made-up-token")
    ]
    assert {(a.status_code, a.json()["detail"]) for a in answers} == {(400, REFUSED)}
    assert await sending.login("iberia-admin", "never-set-1") == 401
    assert await sending.login("iberia-admin", PASSWORDS["iberia-admin"]) == 200


async def test_only_who_manages_an_admin_invites_it(sending: Sending) -> None:
    world = sending.world
    north = world.clients["north"]
    invite = f"/api/clients/{north}/admins/north-reader/invite"
    expected = {
        "north-reader": 403,  # restricted
        "thames-admin": 404,  # another client
        "albion-admin": 404,  # another brand
        None: 401,
    }
    for who, status in expected.items():
        answer = await sending.http.post(invite, headers=await world.as_(who))
        assert answer.status_code == status, (who, answer.text)
    no_email = await sending.http.post(invite, headers=await world.as_("north-admin"))
    assert no_email.status_code == 422
    platform = {"albion-admin": 404, "north-admin": 404, "iberia-admin": 404}
    for who, status in platform.items():
        answer = await sending.http.post("/api/admins/root/invite", headers=await world.as_(who))
        assert answer.status_code == status, (who, answer.text)
    short = await sending.set_password("any-token", "short")
    assert short.status_code == 422
    assert short.json()["detail"] == "password: at least 8 characters"
    assert sending.inbox.messages == []


async def test_the_set_password_page_is_served_without_referrer_or_framing(
    sending: Sending,
) -> None:
    answer = await sending.http.get("/set-password", params={"token": "abc"})
    assert answer.status_code == 200
    assert "/api/set-password" in answer.text
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_access_logs_mask_the_token_of_a_link() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/set-password?token=Secret-Token_1&x=1", "1.1", 200),
        None,
    )
    assert MaskTokens().filter(record)
    assert "Secret-Token_1" not in record.getMessage()
    assert "/set-password?token=***&x=1" in record.getMessage()


def test_admin_create_with_an_email_sends_the_link(sqlite_template: Path, tmp_path: Path) -> None:
    import asyncio

    from models.db import create_engine

    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"

    async def provision() -> None:
        engine = create_engine(url)
        try:
            await load_text(engine, TEMPLATE)
        finally:
            await engine.dispose()

    asyncio.run(provision())
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        environment = {
            "CALLCONTROL_SMTP_PORT": str(port),
            "CALLCONTROL_SMTP_RETRIES": "1",
            "CALLCONTROL_API_PUBLIC_URL": PUBLIC,
        }
        made = CliRunner().invoke(
            cli,
            [
                *("admin", "create", "--god", "root"),
                *("--email", "root@platform.example.net", "--database-url", url),
            ],
            input="god-password-1\n",
            env=environment,
        )
    finally:
        controller.stop()
    assert made.exit_code == 0, made.output
    assert "sent the access_credentials e-mail to root@platform.example.net" in made.output
    ((envelope, message),) = inbox.messages
    assert envelope.rcpt_tos == ["root@platform.example.net"]
    assert message["Subject"] == "Your access (god)"
    found = LINK.search(message.get_content())
    assert found is not None
    with closing(sqlite3.connect(path)) as db:
        stored = db.execute("SELECT token_hash FROM admin_invitations").fetchall()
    assert len(stored) == 1
    assert found[1] not in stored[0][0]


PROVISIONED = (
    TEMPLATE
    + IBERIA
    + """
    admins:
      - {username: iberia-boss, email: boss@iberia.example.com, password: iberia-boss-pass}
      - {username: iberia-clerk, password: iberia-clerk-pass}
clients:
  - name: west
    brand: iberia
    sip_domain: west.example.com
    admins:
      - {username: west-owner, email: owner@west.example.com, password: west-owner-pass}
      - {username: west-clerk, password: west-clerk-pass}
"""
)


def test_provision_invite_sends_the_link_to_new_client_and_brand_admins_with_an_email(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    document = tmp_path / "platform.yaml"
    document.write_text(PROVISIONED, encoding="utf-8")
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        environment = {
            "CALLCONTROL_SMTP_PORT": str(port),
            "CALLCONTROL_SMTP_RETRIES": "1",
            "CALLCONTROL_API_PUBLIC_URL": PUBLIC,
        }
        arguments = ["provision", str(document), "--invite", "--database-url", f"sqlite:///{path}"]
        first = CliRunner().invoke(cli, arguments, env=environment)
        again = CliRunner().invoke(cli, arguments, env=environment)
    finally:
        controller.stop()
    assert first.exit_code == 0, first.output
    assert "sent the access_credentials e-mail to west-owner <owner@west.example.com>" in (
        first.output
    )
    assert "sent the access_credentials e-mail to iberia-boss <boss@iberia.example.com>" in (
        first.output
    )
    assert again.exit_code == 0, again.output
    assert "access_credentials" not in again.output  # nobody new the second time
    sent = {envelope.rcpt_tos[0]: message.get_content() for envelope, message in inbox.messages}
    assert sorted(sent) == ["boss@iberia.example.com", "owner@west.example.com"]
    assert "Hello west-owner of west" in " ".join(sent["owner@west.example.com"].split())
    assert "Hello iberia-boss of iberia" in " ".join(sent["boss@iberia.example.com"].split())
    assert all(LINK.search(content) is not None for content in sent.values())


async def test_guessing_links_from_one_address_is_refused_after_the_login_limit(
    sending: Sending,
) -> None:
    guesses = [await sending.set_password(f"guess-{n}", "never-set-1") for n in range(6)]
    assert [answer.status_code for answer in guesses] == [400] * 5 + [429]
    assert guesses[-1].json()["detail"] == "too many refused links: wait and try again"
    # Logins are counted apart: the administrators of that address still log in.
    assert await sending.login("root", PASSWORDS["root"]) == 200


async def test_a_brand_admin_sets_its_password_with_its_link_and_unknown_admins_are_404(
    sending: Sending,
) -> None:
    world = sending.world
    root = await world.as_("root")
    async with world.engine.begin() as connection:
        await connection.execute(
            update(PlatformAdmin)
            .where(PlatformAdmin.username == "albion-admin")
            .values(email="ops@albion.example.co.uk")
        )
    unknown = {
        "/api/admins/nobody/invite": "no administrator nobody",
        f"/api/clients/{world.clients['north']}/admins/nobody/invite": "no admins nobody",
    }
    for path, detail in unknown.items():
        answer = await sending.http.post(path, headers=root)
        assert (answer.status_code, answer.json()["detail"]) == (404, detail)
    sent = await sending.http.post("/api/admins/albion-admin/invite", headers=root)
    assert sent.status_code == 202, sent.text
    _, token = await sending.link(1)
    assert (await sending.set_password(token, "albion-chosen-1")).status_code == 204
    assert await sending.login("albion-admin", PASSWORDS["albion-admin"]) == 401
    assert await sending.login("albion-admin", "albion-chosen-1") == 200
    entries = (await sending.http.get("/api/audit", headers=root)).json()
    done = {(e["actor"], e["action"], e["target"]) for e in entries}
    assert ("albion-admin", "admin.set_password", "albion-admin") in done


async def test_an_api_without_a_mailer_says_it_sends_no_e_mail(
    sqlite_template: Path, tmp_path: Path
) -> None:
    async with world_on(sqlite_template, tmp_path) as world:
        root = await world.as_("root")
        answer = await world.http.post("/api/admins/iberia-admin/invite", headers=root)
    assert answer.status_code == 503
    assert answer.json()["detail"] == ("this API sends no e-mail: it was started without a mailer")
