"""``callcontrol console``: what operators watch and do.

``calls``, ``hangup`` and ``record`` go through the HTTP API with ``--api URL --user NAME``
(the password from ``--password-file``, else a prompt or stdin's first line): scoped to
what that administrator may see and audited as it. Without ``--api`` they speak to the
console API of running servers directly (``--server URL``, repeatable; by default this
machine's, from ``health_host`` and ``health_port``), with ``console_token`` when one is
set. ``counters`` reads the shared database, so it shows the whole platform whichever
server it runs on. Bad input and unreachable servers end in one line on stderr and exit
status 1.
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
    typer.Option("--api", help="The HTTP API's URL, e.g. https://cc.example.com:8090."),
]
UserOption = Annotated[
    str | None, typer.Option("--user", help="The administrator to log in as (with --api).")
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option("--password-file", help="Read the --user's password from this file."),
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
) -> None:
    """The live calls of every server asked, oldest first."""
    config = settings(config_file)
    via = Via.of(config, api, user, password_file)
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


def act(config: Config, servers: list[str], call: str, path: str, body: object = None) -> str:
    """POST an action to the server holding ``call``; its server's name."""
    answers = run(ask(config, servers, "POST", f"/calls/{call}/{path}", body))
    for answer in answers:
        if isinstance(answer, Answer) and answer.status == 202:
            return answer.server
    for answer in answers:
        if isinstance(answer, Answer) and answer.status != 404:
            fail(str(answer.body.get("error", f"HTTP {answer.status}")))
    problems = [answer for answer in answers if isinstance(answer, str)]
    if problems:
        fail(f"no server reached holds call {call}; {problems[0]}")
    fail(f"no live call {call} on {plural(len(servers), 'server')} asked")


@app.command("hangup")
def hangup_command(
    call: Annotated[str, typer.Argument(help="The call's id, as `console calls` shows it.")],
    server: ServerOption = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """End a live call; its outcome says an operator ended it."""
    config = settings(config_file)
    via = Via.of(config, api, user, password_file)
    if via is not None:
        typer.echo(f"call {call}: hung up (on {api_act(via, call, 'hangup')})")
        return
    where = act(config, servers_of(server, config), call, "hangup")
    typer.echo(f"call {call}: hung up (on {where})")


@app.command("record")
def record_command(
    call: Annotated[str, typer.Argument(help="The call's id, as `console calls` shows it.")],
    action: Annotated[str, typer.Argument(help="start or stop")],
    server: ServerOption = None,
    config_file: ConfigOption = None,
    api: ApiOption = None,
    user: UserOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Start or stop recording an answered call of a client with the recordings feature."""
    if action not in ("start", "stop"):
        fail(f"action {action!r} is not start or stop")
    config = settings(config_file)
    via = Via.of(config, api, user, password_file)
    if via is not None:
        where = api_act(via, call, f"record/{action}")
        done = "started" if action == "start" else "stopped"
        typer.echo(f"call {call}: recording {done} on {where}")
        return
    where = act(config, servers_of(server, config), call, "recording", {"action": action})
    typer.echo(f"call {call}: recording {'started' if action == 'start' else 'stopped'} on {where}")


def counters_row(found: Counters) -> tuple[str, ...]:
    limit = found.max_daily_usage
    prepaid = found.billing_method in ("prepaid", "pseudoprepaid")
    return (
        found.client,
        f"{found.calls}/{found.max_calls or '∞'}",
        found.day.isoformat(),
        f"{found.spent} {found.currency}",
        "-" if limit is None else f"{limit} {found.currency}",
        f"{found.balance} {found.currency}" if prepaid else "-",
    )


@app.command("counters")
def counters_command(
    client: Annotated[str | None, typer.Option("--client", help="Only this client.")] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Every client's live external calls, today's spend and its balance, platform-wide."""
    config = settings(config_file, database_url=database_url)

    from models.counters import client_counters

    async def collect() -> list[Counters]:
        async with database(config) as engine:
            return await client_counters(engine, client)

    found = run(collect())
    if client is not None and not found:
        fail(f"no client named {client!r}")
    echo_table(COUNTERS_HEADER, [counters_row(row) for row in found])
    typer.echo(plural(len(found), "client"))


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            lines = password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--password-file {password_file}: cannot be read: {exc}")
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
        cls, config: Config, api: str | None, user: str | None, password_file: Path | None
    ) -> Via | None:
        if api is None:
            if user is not None:
                fail("--user goes with --api URL")
            return None
        if not api.startswith(("http://", "https://")):
            fail(f"--api {api!r} is not an http(s) URL")
        if not user:
            fail("--api needs --user NAME (an administrator of the API)")
        return cls(api.rstrip("/"), user, _password(password_file), config.console_timeout)

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
