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

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
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
from models.platform import ApplicationServer, MediaRelay
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


# ---- edge mode ------------------------------------------------------------------------------
#
# In ``edge`` mode Kamailio is the registrar, the authenticator and the dispatcher of the
# platform, and anchors media on rtpengine. Its configuration holds no tenant data: it
# reads terminals, clients, DDIs, carriers, servers and media relays from views of the
# shared database (migration 0009), so a change there needs only one of the reloads below,
# sent to each edge's control socket (``kamcmd -s unix:SOCKET COMMAND``).

EDGE_FILES = {"kamailio.cfg": "edge.cfg.j2"}
EDGE_HTABLES = ("clients", "ddis", "carriers", "terminals")
"""The htables an edge loads from the database (views ``kamailio_<name>``)."""
RELOAD_SERVERS = ("dispatcher.reload",)
"""After a change of ``application_servers`` (a new server, drain, undrain)."""
RELOAD_RELAYS = ("rtpengine.reload",)
"""After a change of ``media_relays``. Kamailio takes it at most once every 10 seconds
(counted from its start too): it answers ``error: 500 - Too short reload interval`` before,
so send it again later."""
RELOAD_DRAIN = ("dispatcher.reload", "htable.reload clients")
"""After ``application_servers.drained`` changed: the dispatcher's flags, and the
``clients`` htable that tells a static client its server is drained. The dispatcher takes
one reload a second (``reload_delta``): an undrain right after a drain waits that long."""
UNBAN = "htable.delete"
"""``htable.delete banned <IP>`` lifts the ban of a source (bans are per edge, in memory)."""
EDGE_DATABASES = {"postgresql": ("db_postgres", "postgres"), "mysql": ("db_mysql", "mysql")}
"""Our URL's backend -> (Kamailio's database module, the scheme of its URLs)."""
_URL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.~+-")
_PATH_CHARS = _URL_CHARS | frozenset("/")


def reload_htables(*names: str) -> tuple[str, ...]:
    """The kamcmd commands reloading ``names`` (all when none): after provisioning
    terminals or clients (``terminals``, ``clients``), DDIs (``ddis``), carriers."""
    chosen = names or EDGE_HTABLES
    unknown = [name for name in chosen if name not in EDGE_HTABLES]
    if unknown:
        raise ValueError(f"no htable {unknown[0]!r} on the edge (known: {', '.join(EDGE_HTABLES)})")
    return tuple(f"htable.reload {name}" for name in chosen)


def reload_all() -> tuple[str, ...]:
    """Every reload, in the order to send them."""
    return RELOAD_SERVERS + reload_htables() + RELOAD_RELAYS


@dataclass(frozen=True, slots=True)
class EdgeOptions:
    """What the edge's configuration does not read from the database."""

    listen: str = "127.0.0.1:5060"
    """``ADDRESS:PORT`` the edge takes SIP on (UDP); servers send their legs here."""
    db_url: str = ""
    """The database Kamailio reads (``postgresql://user:password@host:port/name`` or
    ``mariadb://…``); empty = the one loaded from. A Kamailio user needs SELECT on the
    views and read/write on ``location`` only."""
    ctl_socket: str = "/run/kamailio/callcontrol-edge.ctl"
    """Absolute path of the control socket ``kamcmd -s unix:PATH`` reaches."""
    probe_interval: int = 10
    """Seconds between OPTIONS probes of each server."""
    timeout_ms: int = 5000
    """How long a server may take to answer before the next one is tried."""
    rtpengine_timeout_ms: int = 500
    """How long an rtpengine may take to answer before it counts as dead."""
    rtpengine_retries: int = 1
    rtpengine_recheck: int = 10
    """Seconds before a dead rtpengine is tried again."""
    default_relay_set: int | None = None
    """The media relay set of clients without one (and of legs naming set 0); default: the
    set with the lowest id that has relays."""
    ban_after: int = 5
    """Failed authentications from one address before it is banned."""
    ban_window: int = 300
    """Seconds a source's count of failures lasts."""
    ban_time: int = 600
    """Seconds a ban lasts (``kamcmd htable.delete banned IP`` lifts it sooner)."""
    flood_requests: int = 60
    """Requests per 2 seconds from one address (not a server) before it is banned."""
    children: int = 2


@dataclass(frozen=True, slots=True)
class Edge:
    """Everything the edge template reads, every value checked."""

    options: EdgeOptions
    listen_host: str
    listen_port: int
    db_module: str
    kamailio_db_url: str
    ctl_socket: str
    media: bool
    """False when no media relay exists yet: media is not anchored (render again after
    adding the first relays, then restart the edge)."""
    default_set: int
    servers: int
    relay_sets: tuple[int, ...]
    set_id: int = DISPATCHER_SET
    algorithms: dict[str, int] = field(default_factory=lambda: dict(ALGORITHMS))

    @property
    def listen_uri_host(self) -> str:
        return f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host


def _bounded(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RenderError(f"{name} {value!r} is not a whole number from {low} to {high}")
    return value


def kamailio_db_url(url: str) -> tuple[str, str]:
    """(Kamailio's database module, the URL it takes) for our database URL; RenderError
    when the database is not PostgreSQL or MariaDB/MySQL, or when a part of the URL holds
    a character Kamailio's URL parser or its configuration file would misread."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RenderError("the edge's database URL is not a URL") from None
    backend = parsed.get_backend_name()
    backend = "mysql" if backend == "mariadb" else backend
    if backend not in EDGE_DATABASES:
        raise RenderError(
            f"the edge needs PostgreSQL or MariaDB (its registrations are shared), not {backend}"
        )
    module, scheme = EDGE_DATABASES[backend]
    parts = {
        "user": parsed.username or "",
        "password": parsed.password or "",
        "host": parsed.host or "",
        "database": parsed.database or "",
    }
    for part, value in parts.items():
        if not set(str(value)) <= _URL_CHARS:
            # Never echo the value: it may be the password.
            raise RenderError(
                f"the edge's database URL {part} holds a character Kamailio cannot take"
                " (use letters, digits and _.~+-)"
            )
    if not parts["host"] or not parts["database"] or not parts["user"]:
        raise RenderError("the edge's database URL needs a user, a host and a database name")
    login = parts["user"] + (f":{parts['password']}" if parts["password"] else "")
    port = f":{_bounded('database port', parsed.port, 1, 65535)}" if parsed.port else ""
    return module, f"{scheme}://{login}@{parts['host']}{port}/{parts['database']}"


def _ctl_socket(path: str) -> str:
    if not path.startswith("/") or not set(path) <= _PATH_CHARS or "/../" in f"{path}/":
        raise RenderError(
            f"control socket {path!r} is not an absolute path of letters, digits and _.~+-/"
        )
    return path


async def load_edge(engine: AsyncEngine, options: EdgeOptions) -> Edge:
    """Check ``options`` and read what the configuration itself needs from the database
    (the relay sets); every per-tenant value stays in the database."""
    host, port = parse_listen(options.listen)
    module, db_url = kamailio_db_url(
        options.db_url or engine.url.render_as_string(hide_password=False)
    )
    socket_path = _ctl_socket(options.ctl_socket)
    _bounded("probe interval", options.probe_interval, 1, 3600)
    _bounded("timeout_ms", options.timeout_ms, 100, 120_000)
    _bounded("rtpengine timeout_ms", options.rtpengine_timeout_ms, 10, 60_000)
    _bounded("rtpengine retries", options.rtpengine_retries, 0, 10)
    _bounded("rtpengine recheck", options.rtpengine_recheck, 1, 3600)
    _bounded("ban_after", options.ban_after, 1, 1000)
    _bounded("ban_window", options.ban_window, 1, 86_400)
    _bounded("ban_time", options.ban_time, 1, 86_400 * 7)
    _bounded("flood_requests", options.flood_requests, 1, 100_000)
    _bounded("children", options.children, 1, 64)
    async with engine.connect() as connection:
        servers = await connection.scalar(select(func.count()).select_from(ApplicationServer))
        relay_sets = tuple(
            (
                await connection.scalars(
                    select(MediaRelay.media_relay_set_id)
                    .distinct()
                    .order_by(MediaRelay.media_relay_set_id)
                )
            ).all()
        )
    default_set = relay_sets[0] if relay_sets else 0
    if options.default_relay_set is not None:
        default_set = _bounded("default relay set", options.default_relay_set, 1, 10**9)
        if default_set not in relay_sets:
            raise RenderError(f"default relay set {default_set} has no media relay")
    return Edge(
        options=options,
        listen_host=host,
        listen_port=port,
        db_module=module,
        kamailio_db_url=db_url,
        ctl_socket=socket_path,
        media=bool(relay_sets),
        default_set=default_set,
        servers=int(servers or 0),
        relay_sets=relay_sets,
    )


def render_edge(edge: Edge) -> dict[str, str]:
    """The text of each file of the edge, by name; nothing is written."""
    env = environment(KAMAILIO_TEMPLATES)
    values = {slot: getattr(edge, slot) for slot in Edge.__slots__}
    values["listen_uri_host"] = edge.listen_uri_host
    return {
        name: env.get_template(template).render(values) for name, template in EDGE_FILES.items()
    }


async def render_edge_into(engine: AsyncEngine, directory: Path, options: EdgeOptions) -> Edge:
    """Load, render and write the edge's ``kamailio.cfg`` into ``directory`` (mode 0640:
    it holds the database password)."""
    edge = await load_edge(engine, options)
    write_files(directory, render_edge(edge))
    return edge
