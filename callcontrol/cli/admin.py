"""``callcontrol admin``: god and brand administrators of the HTTP API.

``admin create --god NAME`` makes the first (god) administrator; ``admin create --brand
BRAND NAME`` an administrator of that brand's clients. The password is read from
``--password-file`` (its first line) or else from a prompt (twice, not echoed) or, when
stdin is not a terminal, from the first line of stdin -- never from the command line.
``--privilege SECTION=VERBS`` (repeatable, VERBS letters of ``crud``) makes the
administrator restricted to those. Client administrators come with their client's
provisioning document; brand administrators may come with their brand's (``admins``).
Each creation is audited as the operating-system user (``cli``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, database, fail, run, settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from callcontrol.api.invites import Invitee
    from callcontrol.config import Config

app = typer.Typer(help="Administrators of the HTTP API.", no_args_is_help=True)


def read_password(password_file: Path | None) -> str:
    """The new password from the file, a prompt or stdin (see the module)."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--password-file {password_file}: cannot be read: {exc}")
        lines = text.splitlines()
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


def parse_privileges(values: list[str] | None) -> dict[str, str] | None:
    """``SECTION=VERBS`` options as a mapping; one line and exit 1 for a bad one."""
    import re

    from models.admins import SECTIONS

    if not values:
        return None
    privileges: dict[str, str] = {}
    for value in values:
        section, _, verbs = value.partition("=")
        if section not in SECTIONS:
            fail(f"--privilege {value!r}: unknown section (one of {', '.join(SECTIONS)})")
        if not re.fullmatch(r"c?r?u?d?", verbs):
            fail(f"--privilege {value!r}: the verbs are letters of 'crud', in that order")
        privileges[section] = verbs
    return privileges


@app.command("create")
def create(
    username: Annotated[str, typer.Argument(help="Login name of the new administrator.")],
    god: Annotated[bool, typer.Option("--god", help="A god administrator.")] = False,
    brand: Annotated[
        str | None, typer.Option("--brand", help="An administrator of this brand.")
    ] = None,
    email: Annotated[str | None, typer.Option("--email", help="Its e-mail address.")] = None,
    privilege: Annotated[
        list[str] | None,
        typer.Option("--privilege", help="SECTION=VERBS (letters of crud); restricts it."),
    ] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="Read the password from this file.")
    ] = None,
    invite: Annotated[
        bool,
        typer.Option(
            "--invite/--no-invite",
            help="With --email, send the access_credentials e-mail (a one-time link to "
            "choose the password).",
        ),
    ] = True,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Create a god (--god) or brand (--brand BRAND) administrator."""
    from sqlalchemy import select

    from callcontrol.api.accounts import create_platform_admin
    from models.admins import AuditNote, PlatformAdmin, os_user, record

    if god == (brand is not None):
        fail("give exactly one of --god and --brand BRAND")
    privileges = parse_privileges(privilege)
    password = read_password(password_file)
    config = settings(config_file, database_url=database_url)

    async def work() -> int:
        async with database(config) as engine:
            admin_id = await create_platform_admin(
                engine, username, password, brand=brand, email=email, privileges=privileges
            )
            async with engine.begin() as connection:
                # A brand's: its own administrators read it too.
                brand_id = await connection.scalar(
                    select(PlatformAdmin.brand_id).where(PlatformAdmin.id == admin_id)
                )
                note = AuditNote(
                    actor_kind="cli",
                    actor=os_user(),
                    action="admin.create",
                    target=username,
                    brand_id=brand_id,
                    after={"role": "god" if god else "brand", "brand": brand, "id": admin_id},
                )
                await record(connection, note)
            return admin_id

    admin_id = run(work())
    role = "god administrator" if god else f"administrator of brand {brand}"
    typer.echo(f"created {role} {username!r} (id {admin_id})")
    if email and invite:
        sent = run(send_invite(config, username))
        if sent is None:
            typer.echo(f"sent the access_credentials e-mail to {email}")
        else:
            typer.echo(f"the access_credentials e-mail was not sent: {sent}", err=True)


async def send_invite(config: Config, username: str) -> str | None:
    """Send the god or brand administrator ``username`` the access_credentials e-mail and
    wait for its delivery; None when sent, else why not (one line)."""
    from callcontrol.api.invites import platform_invitee

    async with database(config) as engine:
        invitee = await platform_invitee(engine, username)
        if invitee is None:
            return f"no administrator {username!r}"
        return (await send_invites(config, engine, [invitee]))[0]


async def send_invites(
    config: Config, engine: AsyncEngine, invitees: list[Invitee]
) -> list[str | None]:
    """Send each administrator the access_credentials e-mail with a new one-time link, and
    wait for their delivery (bounded: the SMTP attempts' timeouts and the waits between
    them); per invitee, None when sent, else why not (one line). Audited as the
    operating-system user."""
    from callcontrol.api.accounts import utc_now
    from callcontrol.api.invites import InviteError, audit_invite, send_invitation
    from callcontrol.api.serve import public_url
    from callcontrol.mailer import Mailer
    from models.admins import os_user

    mailer = Mailer(config)
    sending = asyncio.create_task(mailer.run())
    outcomes: list[str | None] = []
    queued = []
    try:
        for invitee in invitees:
            try:
                await send_invitation(
                    engine,
                    mailer,
                    invitee,
                    public_url=public_url(config, bool(config.api_tls_cert)),
                    ttl=config.api_invite_ttl,
                    clock=utc_now,
                )
            except InviteError as exc:
                outcomes.append(str(exc))
                continue
            outcomes.append(None)
            queued.append(invitee)
            await audit_invite(engine, "cli", os_user(), invitee)
    finally:
        attempts = max(1, config.smtp_retries)
        per_mail = attempts * (config.smtp_timeout * 4 + 60.0) + config.template_timeout * 2
        await mailer.stop(grace=per_mail * max(1, len(invitees)))
        await asyncio.wait([sending])
    if mailer.sent < len(queued):
        unsent = "the SMTP server did not take it (see the log)"
        # The mailer counts, it does not name: when some failed, none is claimed sent.
        outcomes = [unsent if outcome is None else outcome for outcome in outcomes]
    return outcomes
