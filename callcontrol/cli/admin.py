"""``callcontrol admin``: god and brand administrators of the HTTP API.

``admin create --god NAME`` makes the first (god) administrator; ``admin create --brand
BRAND NAME`` an administrator of that brand's clients. The password is read from
``--password-file`` (its first line) or else from a prompt (twice, not echoed) or, when
stdin is not a terminal, from the first line of stdin -- never from the command line.
``--privilege SECTION=VERBS`` (repeatable, VERBS letters of ``crud``) makes the
administrator restricted to those. Client administrators come with their client's
provisioning document. Each creation is audited as the operating-system user (``cli``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, database, fail, run, settings

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
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Create a god (--god) or brand (--brand BRAND) administrator."""
    from callcontrol.api.accounts import create_platform_admin
    from models.admins import AuditNote, os_user, record

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
                note = AuditNote(
                    actor_kind="cli",
                    actor=os_user(),
                    action="admin.create",
                    target=username,
                    after={"role": "god" if god else "brand", "brand": brand, "id": admin_id},
                )
                await record(connection, note)
            return admin_id

    admin_id = run(work())
    role = "god administrator" if god else f"administrator of brand {brand}"
    typer.echo(f"created {role} {username!r} (id {admin_id})")
