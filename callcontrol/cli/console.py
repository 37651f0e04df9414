"""``callcontrol console``: what operators watch and do.

The HTTP API is the way: with ``--api URL --user NAME`` (or ``console_api_url`` and
``console_user`` in the configuration or the environment; the password from
``--password-file`` or ``console_password_file``, else a prompt or stdin's first line),
``calls``, ``hangup``, ``record`` and ``counters`` log in as that administrator and see and
do only what it may; its actions are audited as it.

The direct mode is for a server's own local use: without an API configured, or with
``--direct`` (or a direct mode's own option, ``--server`` or ``--database-url``), the
commands speak to the console of running servers (``--server URL``, repeatable; by default
this machine's, from ``health_host`` and ``health_port``) with ``console_token`` when one is
set, and ``counters`` reads the shared database (the whole platform, whichever server it runs
on). A hang-up or recording done directly is audited as the operating-system user (``cli``)
in the shared database when there is one here, else told in a warning line. Bad input and
unreachable servers end in one line on stderr and exit status 1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from callcontrol.cli.common import ConfigOption, DatabaseOption, database, fail, run, settings
from callcontrol.tables import echo_table, plural

if TYPE_CHECKING:
    import aiohttp

    from callcontrol.config import Config
    from models.admins import AuditNote
    from models.counters import Counters

app = typer.Typer(
    help="The operator console: live calls and actions on them, client counters.",
    no_args_is_help=True,
)

ServerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--server",
        help="A server's console URL, e.g. http://10.0.0.5:8089 (repeatable; default: this one).",
    ),
]
ApiOption = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="The HTTP API's URL, e.g. https://cc.example.com:8090 (default: console_api_url).",
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user", help="The administrator to log in to the API as (default: console_user)."
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the administrator's password from this file (default: console_password_file).",
    ),
]
DirectOption = Annotated[
    bool,
    typer.Option(
        "--direct",
        help="Not through the API, even with console_api_url set: the servers' own /calls "
        "with console_token (counters: the shared database).",
    ),
]
CALLS_HEADER = ("server", "call", "client", "kind", "from → to", "state", "seconds", "rec")
COUNTERS_HEADER = ("client", "calls", "day", "spent today", "daily limit", "balance")


@dataclass(frozen=True, slots=True)
class Answer:
    server: str
    status: int
    body: dict[str, Any]


def servers_of(option: list[str] | None, config: Config) -> list[str]:
    if option:
        return [url.rstrip("/") for url in option]
    if not config.health_port:
        fail("health_port is 0 here, so there is no local server: give --server URL")
    return [f"http://{config.health_host}:{config.health_port}"]


def direct_asked(direct: bool, option: str, value: object) -> str | None:
    """The option asking for the direct mode: ``--direct``, or ``option`` (a direct mode's
    own, such as ``--server``) when it was given; None: neither."""
    if direct:
        return "--direct"
    return option if value else None


async def ask(
    config: Config, servers: list[str], method: str, path: str, body: object = None
) -> list[Answer | str]:
    """Each server's answer, or one line saying why there is none."""
    import asyncio

    import aiohttp

    headers = {"Authorization": f"Bearer {config.console_token}"} if config.console_token else {}
    timeout = aiohttp.ClientTimeout(total=config.console_timeout)

    async def one(http: aiohttp.ClientSession, server: str) -> Answer | str:
        try:
            async with http.request(method, server + path, json=body, headers=headers) as got:
                document = await got.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return f"server {server}: not reachable ({str(exc) or type(exc).__name__})"
        if not isinstance(document, dict):
            return f"server {server}: not a callcontrol console (HTTP {got.status})"
        if got.status == 401:
            return f"server {server}: {document.get('error', 'unauthorised')}"
        return Answer(server, got.status, document)

    async with aiohttp.ClientSession(timeout=timeout) as http:
        return list(await asyncio.gather(*(one(http, server) for server in servers)))


def call_row(server: str, call: dict[str, Any]) -> tuple[str, ...]:
    seconds = call.get("answered_seconds")
    recording = "on" if call.get("recording") else "off" if call.get("recordable") else "-"
    return (
        server,
        str(call.get("id", "")),
        str(call.get("client") or "-"),
        str(call.get("kind") or "-"),
        f"{call.get('from', '')} → {call.get('to', '')}",
        str(call.get("state", "")),
        "-" if seconds is None else f"{seconds:.0f}",
        recording,
    )


@app.command("calls")
def calls_command(
    server: ServerOption = None,
    client: Annotated[str | None, typer.Option("--client", help="Only this client's.")] = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    direct: DirectOption = False,
) -> None:
    """The live calls of every server (that the administrator may see), oldest first."""
    config = settings(config_file)
    via = Via.of(config, api, user, password_file, direct_asked(direct, "--server", server))
    if via is not None:
        api_calls(via, client)
        return
    answers = run(ask(config, servers_of(server, config), "GET", "/calls"))
    rows = []
    problems = [answer for answer in answers if isinstance(answer, str)]
    for answer in answers:
        if isinstance(answer, Answer):
            for call in answer.body.get("calls", []):
                if client is None or call.get("client") == client:
                    rows.append(call_row(str(answer.body.get("server", answer.server)), call))
    echo_table(CALLS_HEADER, rows)
    typer.echo(plural(len(rows), "live call"))
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


@dataclass(frozen=True, slots=True)
class Acted:
    """Where a direct action was done, and the call as its server listed it just before."""

    server: str
    """The server's URL, as asked."""
    name: str
    """The server's name, as its /calls says (its URL when it did not say)."""
    call: dict[str, Any] | None


def act(config: Config, servers: list[str], call: str, path: str, body: object = None) -> Acted:
    """POST an action to the server holding ``call``."""

    async def listed_then_acted() -> tuple[list[Answer | str], list[Answer | str]]:
        listed = await ask(config, servers, "GET", "/calls")
        return listed, await ask(config, servers, "POST", f"/calls/{call}/{path}", body)

    listed, answers = run(listed_then_acted())
    for answer in answers:
        if isinstance(answer, Answer) and answer.status == 202:
            for seen in listed:
                if isinstance(seen, Answer) and seen.server == answer.server:
                    name = str(seen.body.get("server", seen.server))
                    calls = [c for c in seen.body.get("calls", []) if c.get("id") == call]
                    return Acted(answer.server, name, calls[0] if calls else None)
            return Acted(answer.server, answer.server, None)
    for answer in answers:
        if isinstance(answer, Answer) and answer.status != 404:
            fail(str(answer.body.get("error", f"HTTP {answer.status}")))
    problems = [answer for answer in answers if isinstance(answer, str)]
    if problems:
        fail(f"no server reached holds call {call}; {problems[0]}")
    fail(f"no live call {call} on {plural(len(servers), 'server')} asked")


def has_database(url: str) -> bool:
    """Whether ``url`` names a database to write to: a server's, or an SQLite file that
    exists (connecting to a missing one would make it, empty)."""
    from dialplan.errors import CallControlError
    from models.db import normalise_url

    try:
        parsed = normalise_url(url)
    except CallControlError:
        return True  # a broken URL: writing to it tells why
    if parsed.get_backend_name() != "sqlite":
        return True
    return parsed.database not in (None, "", ":memory:") and Path(parsed.database).is_file()


def audited(config: Config, acted: Acted, call: str, action: str) -> None:
    """A direct action's trace: an audit entry by this operating-system user (``cli``) in
    the shared database, as the API writes one (target ``SERVER/CALL``, the call before);
    without that database here, or when it cannot be written, one warning line saying who
    did what to which call, and why it is not in the audit trail."""
    from callcontrol.masking import mask
    from models.admins import AuditNote, os_user

    before = (
        None if acted.call is None else {k: v for k, v in acted.call.items() if k != "asterisk"}
    )
    client_id = None if before is None else before.get("client_id")
    note = AuditNote(
        actor_kind="cli",
        actor=os_user(),
        action=action,
        target=f"{acted.name}/{call}",
        client_id=client_id if isinstance(client_id, int) else None,
        before=before,
    )
    if not has_database(config.database_url):
        why: str | None = f"no shared database here ({config.database_url})"
    else:
        why = _recorded(config, note)
    if why is not None:
        typer.echo(
            f"warning: {note.action} of call {call} on {acted.name} by {note.actor} (cli) "
            f"is not audited: {mask(why)}",
            err=True,
        )


def _recorded(config: Config, note: AuditNote) -> str | None:
    """Write ``note`` (with its client's brand); None when written, else why not."""
    import asyncio
    from dataclasses import replace

    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from dialplan.errors import CallControlError
    from models.admins import record
    from models.db import first_line
    from models.tenants import Client

    async def write() -> None:
        async with database(config) as engine, engine.begin() as connection:
            brand = None
            if note.client_id is not None:
                brand = await connection.scalar(
                    select(Client.brand_id).where(Client.id == note.client_id)
                )
            await record(connection, replace(note, brand_id=brand))

    try:
        asyncio.run(write())
    except CallControlError as exc:
        return str(exc)
    except (DBAPIError, OSError) as exc:
        return first_line(exc)
    return None


@app.command("hangup")
def hangup_command(
    call: Annotated[str, typer.Argument(help="The call's id, as `console calls` shows it.")],
    server: ServerOption = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    direct: DirectOption = False,
) -> None:
    """End a live call; its outcome says an operator ended it. Audited."""
    config = settings(config_file)
    via = Via.of(config, api, user, password_file, direct_asked(direct, "--server", server))
    if via is not None:
        typer.echo(f"call {call}: hung up (on {api_act(via, call, 'hangup')})")
        return
    acted = act(config, servers_of(server, config), call, "hangup")
    typer.echo(f"call {call}: hung up (on {acted.server})")
    audited(config, acted, call, "call.hangup")


@app.command("record")
def record_command(
    call: Annotated[str, typer.Argument(help="The call's id, as `console calls` shows it.")],
    action: Annotated[str, typer.Argument(help="start or stop")],
    server: ServerOption = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    direct: DirectOption = False,
) -> None:
    """Start or stop recording an answered call of a client with the recordings feature.
    Audited."""
    if action not in ("start", "stop"):
        fail(f"action {action!r} is not start or stop")
    config = settings(config_file)
    via = Via.of(config, api, user, password_file, direct_asked(direct, "--server", server))
    done = "started" if action == "start" else "stopped"
    if via is not None:
        where = api_act(via, call, f"record/{action}")
        typer.echo(f"call {call}: recording {done} on {where}")
        return
    acted = act(config, servers_of(server, config), call, "recording", {"action": action})
    typer.echo(f"call {call}: recording {done} on {acted.server}")
    audited(config, acted, call, f"call.record_{action}")


def counters_row(row: dict[str, Any]) -> tuple[str, ...]:
    """One client's counters (as ``GET /api/counters`` answers them) as the table shows
    them: money the administrator may not see is ``hidden``."""

    def money(key: str) -> str:
        if "currency" not in row:
            return "hidden"
        value = row.get(key)
        return "-" if value is None else f"{value} {row['currency']}"

    return (
        str(row.get("client", "")),
        f"{row.get('calls', 0)}/{row.get('max_calls') or '∞'}",
        str(row.get("day", "")),
        money("spent_today"),
        money("daily_limit"),
        money("balance"),
    )


@app.command("counters")
def counters_command(
    client: Annotated[str | None, typer.Option("--client", help="Only this client.")] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
    direct: DirectOption = False,
) -> None:
    """Every client's live external calls, today's spend and its balance, platform-wide
    (through the API: the clients the administrator may see, the money where shown)."""
    config = settings(config_file, database_url=database_url)
    asked = direct_asked(direct, "--database-url", database_url)
    via = Via.of(config, api, user, password_file, asked)
    if via is not None:
        [(status, body)] = via.requests(("GET", "/api/counters"))
        if status != 200 or not isinstance(body, list):
            fail(_detail(status, body))
        rows = [row for row in body if client is None or row.get("client") == client]
        missing = f"no client named {client!r} that {via.user} may see"
    else:
        from models.counters import client_counters

        async def collect() -> list[Counters]:
            async with database(config) as engine:
                return await client_counters(engine, client)

        rows = [found.shown(prices=True) for found in run(collect())]
        missing = f"no client named {client!r}"
    if client is not None and not rows:
        fail(missing)
    echo_table(COUNTERS_HEADER, [counters_row(row) for row in rows])
    typer.echo(plural(len(rows), "client"))


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"password file {password_file}: cannot be read: {exc}")
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        return str(typer.prompt("Password", hide_input=True))
    return sys.stdin.readline().rstrip("\r\n")


@dataclass(frozen=True, slots=True)
class Via:
    """The HTTP API as ``callcontrol console`` uses it."""

    url: str
    user: str
    password: str
    timeout: float

    @classmethod
    def of(
        cls,
        config: Config,
        api: str | None,
        user: str | None,
        password_file: Path | None,
        direct: str | None,
    ) -> Via | None:
        """The API to go through: ``--api``, else ``console_api_url`` unless ``direct``
        (the option that asked for the direct mode) was given; None: the direct mode."""
        if api is not None and direct is not None:
            fail(f"--api and {direct} exclude each other")
        if api is not None:
            url, named = api, "--api"
        elif direct is None and config.console_api_url:
            url, named = config.console_api_url, "console_api_url"
        else:
            if user is not None:
                fail("--user goes with --api URL")
            return None
        if not url.startswith(("http://", "https://")):
            fail(f"{named} {url!r} is not an http(s) URL")
        name = user or config.console_user
        if not name:
            fail(f"{named} needs --user NAME or console_user (an administrator of the API)")
        if password_file is None and config.console_password_file and name == config.console_user:
            password_file = Path(config.console_password_file)
        return cls(url.rstrip("/"), name, _password(password_file), config.console_timeout)

    def requests(self, *steps: tuple[str, str]) -> list[tuple[int, Any]]:
        """Log in, make each request (method, path) in turn, log out: each (status, body)."""
        return run(self._requests(steps))

    async def _requests(self, steps: tuple[tuple[str, str], ...]) -> list[tuple[int, Any]]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                login = {"username": self.user, "password": self.password}
                async with http.post(self.url + "/api/login", json=login) as got:
                    body = await got.json(content_type=None)
                    if got.status != 200:
                        fail(f"login as {self.user}: {_detail(got.status, body)}")
                headers = {"Authorization": f"Bearer {body['token']}"}
                answers = []
                try:
                    for method, path in steps:
                        async with http.request(method, self.url + path, headers=headers) as got:
                            answers.append((got.status, await got.json(content_type=None)))
                finally:
                    async with http.post(self.url + "/api/logout", headers=headers):
                        pass
                return answers
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            fail(f"API {self.url}: not reachable ({str(exc) or type(exc).__name__})")


def _detail(status: int, body: Any) -> str:
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail if isinstance(detail, str) else f"HTTP {status}"


def api_calls(via: Via, client: str | None) -> None:
    [(status, body)] = via.requests(("GET", "/api/calls"))
    if status != 200:
        fail(_detail(status, body))
    rows = [
        call_row(str(call.get("server", "")), call)
        for call in body.get("calls", [])
        if client is None or call.get("client") == client
    ]
    echo_table(CALLS_HEADER, rows)
    typer.echo(plural(len(rows), "live call"))
    problems = body.get("problems", [])
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


def api_act(via: Via, call: str, path: str) -> str:
    """POST an action on ``call`` through the API; the server holding it."""
    import urllib.parse

    [(status, body)] = via.requests(("GET", "/api/calls"))
    if status != 200:
        fail(_detail(status, body))
    servers = [str(c.get("server")) for c in body.get("calls", []) if c.get("id") == call]
    if not servers:
        fail(f"no live call {call} that {via.user} may see")
    quoted = "/".join(urllib.parse.quote(part, safe="") for part in (servers[0], call))
    [(status, body)] = via.requests(("POST", f"/api/calls/{quoted}/{path}"))
    if status != 202:
        fail(_detail(status, body))
    return servers[0]
