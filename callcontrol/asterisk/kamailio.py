"""The Kamailio dispatcher in front of several application servers (DESIGN §1, §3.11),
rendered from the shared database.

Kamailio picks the application server of every request it relays:

* ``hash``: every call of a client lands on the same server, a stable hash of the client
  id over the servers that answer (dispatcher algorithm 7 on ``$avp(cc_client)``);
* ``rr``: calls are spread over the servers in turn (algorithm 4);
* ``static``: the client's chosen server, always.

The client of a request is known by who sends it: a terminal by its user (the From
user, which is also its PJSIP endpoint name) and a carrier's call by the DDI it is for
(the Request-URI user, with or without ``+``). A request of nobody gets 404.

The servers are probed with OPTIONS; one that stops answering leaves the set until it
answers again, and a call whose server times out or answers 408/500/503 is sent to the
next one (not for ``static``). The proxy writes the caller's address in
``source_header`` (dropping any the caller sent) for the servers' source filter, which
believes it because Kamailio's address is in their ``trusted_proxies``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk.render import (
    TEMPLATES,
    RenderError,
    environment,
    is_ip,
    one_line,
    split_host_port,
    write_files,
)
from models.platform import ApplicationServer
from models.tenants import Client, Ddi, Terminal

KAMAILIO_TEMPLATES = TEMPLATES.parent / "kamailio"
FILES = {"kamailio.cfg": "kamailio.cfg.j2", "dispatcher.list": "dispatcher.list.j2"}
DISPATCHER_SET = 1
ALGORITHMS = {"hash": 7, "rr": 4}
"""Kamailio dispatcher algorithms: 7 hashes ``hash_pvar``, 4 is round robin."""
_HEADER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True, slots=True)
class Server:
    """An application server as the dispatcher list names it."""

    name: str
    uri: str


@dataclass(frozen=True, slots=True)
class Route:
    """How the calls of one client reach a server."""

    client_id: int
    client: str
    method: str
    server: str | None = None
    """The SIP URI of a ``static`` client's server."""


@dataclass(frozen=True, slots=True)
class KamailioOptions:
    """What does not come from the database."""

    listen: str = "127.0.0.1:5060"
    """``ADDRESS:PORT`` Kamailio receives SIP on (UDP)."""
    server_port: int = 5060
    """The SIP port of every application server's Asterisk."""
    source_header: str = "X-Forwarded-For"
    probe_interval: int = 10
    """Seconds between OPTIONS probes of each server."""
    timeout_ms: int = 5000
    """How long a server may take to answer a request before the next one is tried."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Everything the templates read."""

    options: KamailioOptions
    listen_host: str
    listen_port: int
    list_file: str
    servers: tuple[Server, ...]
    terminals: dict[str, Route] = field(default_factory=dict)
    """Routes by terminal name (From user)."""
    ddis: dict[str, Route] = field(default_factory=dict)
    """Routes by called number (Request-URI user), with and without ``+``."""

    @property
    def ddi_count(self) -> int:
        return len({number.lstrip("+") for number in self.ddis})

    set_id: int = DISPATCHER_SET
    algorithms: dict[str, int] = field(default_factory=lambda: dict(ALGORITHMS))


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` (IPv6 in brackets) as (address, port); RenderError when not."""
    split = split_host_port(value)
    if split is None or not is_ip(split[0]):
        raise RenderError(f"listen address {value!r} is not ADDRESS:PORT")
    return split


def _uri(address: str, port: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise RenderError(f"application server address {address!r} is not an IP address") from exc
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"sip:{host}:{port}"


def _quoted(kind: str, value: str) -> str:
    """A value written inside a Kamailio string: one line, no quote or backslash."""
    text = one_line(value)
    if '"' in text or "\\" in text or "$" in text:
        raise RenderError(f"{kind} {text!r} cannot be written into kamailio.cfg")
    return text


async def load_dispatch(engine: AsyncEngine, options: KamailioOptions, directory: Path) -> Dispatch:
    """Read the servers and every client's terminals and DDIs; check every value.
    ``directory`` (absolute) is where ``dispatcher.list`` will be."""
    if not set(options.source_header) <= _HEADER_CHARS or not options.source_header:
        raise RenderError(f"source header {options.source_header!r} is not a header name")
    host, port = parse_listen(options.listen)
    async with engine.connect() as connection:
        server_rows = (
            await connection.execute(
                select(
                    ApplicationServer.id, ApplicationServer.name, ApplicationServer.address
                ).order_by(ApplicationServer.name)
            )
        ).all()
        client_rows = (
            await connection.execute(
                select(
                    Client.id,
                    Client.name,
                    Client.distribute_method,
                    Client.application_server_id,
                ).order_by(Client.name)
            )
        ).all()
        terminal_rows = (
            await connection.execute(
                select(Terminal.name, Terminal.client_id).order_by(Terminal.name)
            )
        ).all()
        ddi_rows = (
            await connection.execute(
                select(Ddi.e164, Ddi.client_id).where(Ddi.client_id.is_not(None)).order_by(Ddi.e164)
            )
        ).all()
    if not server_rows:
        raise RenderError("no application servers in the database: nothing to dispatch to")
    uris = {row.id: _uri(row.address, options.server_port) for row in server_rows}
    servers = tuple(Server(_quoted("server", row.name), uris[row.id]) for row in server_rows)
    routes: dict[int, Route] = {}
    for row in client_rows:
        if row.distribute_method == "static":
            routes[row.id] = Route(row.id, row.name, "static", uris[row.application_server_id])
        else:
            routes[row.id] = Route(row.id, row.name, row.distribute_method)
    terminals = {
        _quoted("terminal", row.name): routes[row.client_id]
        for row in terminal_rows
        if row.client_id in routes
    }
    ddis: dict[str, Route] = {}
    for e164, owner in ddi_rows:
        if owner in routes:
            number = _quoted("DDI", e164).lstrip("+")
            ddis[number] = ddis[f"+{number}"] = routes[owner]
    return Dispatch(
        options=options,
        listen_host=host,
        listen_port=port,
        list_file=_quoted("folder", str(directory / "dispatcher.list")),
        servers=servers,
        terminals=terminals,
        ddis=ddis,
    )


def render_kamailio(dispatch: Dispatch) -> dict[str, str]:
    """The text of each file, by name; nothing is written."""
    env = environment(KAMAILIO_TEMPLATES)
    values = {slot: getattr(dispatch, slot) for slot in Dispatch.__slots__}
    return {name: env.get_template(template).render(values) for name, template in FILES.items()}


async def render_kamailio_into(
    engine: AsyncEngine, directory: Path, options: KamailioOptions
) -> Dispatch:
    """Load, render and write ``kamailio.cfg`` and ``dispatcher.list`` into ``directory``."""
    dispatch = await load_dispatch(engine, options, directory)
    write_files(directory, render_kamailio(dispatch))
    return dispatch
