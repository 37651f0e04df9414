"""The whole platform on one machine: ``callcontrol platform up|down|status|drain|undrain``.

Addresses, all on loopback: the edge (Kamailio) on 127.0.0.2; application server *i*
(1…N, the first N rows of ``application_servers`` by name) on 127.0.0.(10+i), its Asterisk
sandbox and its own ``callcontrol run``; one rtpengine per media relay set *j* (1…, by id;
one for the default set when there is none) on 127.0.0.(20+j). Every part shares one
database (PostgreSQL or MariaDB).

``up`` migrates the database, starts the rtpengines, renders and starts Kamailio, starts
each sandbox and its service, and returns when every part answers; on a failure it stops
what it started. ``down`` stops every part by its recorded pid. What ``up`` started is in
``<run folder>/platform.json`` (no secrets: the ARI password is made per ``up`` and only
handed to the processes that need it).

What plugs in (:class:`Parts`), by default the ``edge`` mode: the edge rendered from
``edge.cfg.j2`` (registrar, digest authentication, dispatcher and relay sets read from the
database), each rtpengine written to ``media_relays`` for its set before the edge starts,
every server's ``application_servers.sip_port`` written, each sandbox with its one ``edge``
endpoint and each ``callcontrol run`` in ``mode=edge`` trusting the edge. ``dispatcher_edge``
and ``direct_server`` (with ``mode="direct"``) give today's proxy in front of ordinary servers.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.chroot import require_root
from callcontrol.asterisk.render import AriUser, Network, write_files
from callcontrol.platform import kamailio, rtpengine
from callcontrol.platform.processes import Daemon, PlatformError, Supervisor
from models.platform import ApplicationServer, MediaRelay, MediaRelaySet

Echo = Callable[[str], None]
MAX_SERVERS = 9
"""Servers live on 127.0.0.11-19, relays on 127.0.0.21-29."""
SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
PLATFORM_FILE = "platform.json"


@dataclass(frozen=True, slots=True)
class PlatformSpec:
    """Where everything runs and how long to wait. Timeouts are seconds."""

    database_url: str
    servers: int = 2
    run_dir: Path = Path("var/platform")
    cache: Path | None = None
    """The sandboxes' chroot cache (default: the sandbox's)."""
    edge_address: str = "127.0.0.2"
    sip_port: int = 5060
    """The SIP port of the edge and of every server (each on its own address)."""
    http_port: int = 8088
    health_port: int = 8089
    asterisk_rtp: tuple[int, int] = (10000, 10999)
    ng_port: int = 2223
    cli_port: int = 2224
    relay_ports: int = 1000
    """Media ports per rtpengine: relay j uses 30000 + (j-1)·relay_ports onward."""
    start_timeout: float = 90.0
    stop_timeout: float = 10.0
    slot_lease: float = 60.0
    """Each service's ``slot_lease``: how long a dead server's calls still count."""
    slot_heartbeat: float = 20.0

    def __post_init__(self) -> None:
        if not 0 < self.slot_heartbeat < self.slot_lease:
            raise PlatformError("slot_heartbeat must be positive and shorter than slot_lease")
        if not 1 <= self.servers <= MAX_SERVERS:
            raise PlatformError(f"servers {self.servers}: from 1 to {MAX_SERVERS}")
        if self.relay_ports < 4 or 30000 + MAX_SERVERS * self.relay_ports > 65535:
            raise PlatformError(f"relay_ports {self.relay_ports}: from 4 to 3500")

    @property
    def folder(self) -> Path:
        return self.run_dir.resolve()

    def server_address(self, index: int) -> str:
        return f"127.0.0.{10 + index}"

    def relay(self, index: int) -> rtpengine.RelaySpec:
        first = 30000 + (index - 1) * self.relay_ports
        return rtpengine.RelaySpec(
            f"rtpengine-{index}",
            f"127.0.0.{20 + index}",
            first,
            first + self.relay_ports - 1,
            self.ng_port,
            self.cli_port,
        )

    def edge(self) -> kamailio.EdgeSpec:
        return kamailio.EdgeSpec(
            self.folder / "edge", self.edge_address, self.sip_port, self.folder / "kamailio.ctl"
        )


@dataclass(frozen=True, slots=True)
class ServerPlace:
    """One application server as ``up`` places it: what its sandbox and service need."""

    index: int
    name: str
    app: str
    network: Network
    ari: AriUser = field(repr=False)
    edge: str
    """``HOST:PORT`` of the edge's SIP socket."""

    @property
    def sandbox(self) -> str:
        return f"platform-{self.name}"

    @property
    def service(self) -> str:
        return f"service-{self.name}"


@dataclass(frozen=True, slots=True)
class RelayPlace:
    """One rtpengine and the media relay set it serves (0: the default set)."""

    set_id: int
    spec: rtpengine.RelaySpec


RenderEdge = Callable[[AsyncEngine, kamailio.EdgeSpec, int], Awaitable[Mapping[str, str]]]
"""Renders the edge's files (by name, ``kamailio.cfg`` among them) for an edge spec and the
servers' SIP port; the cfg must load ``ctl`` on the spec's socket (see ``with_ctl``)."""
ServerSettings = Callable[[ServerPlace], sandbox.SandboxSettings]
PublishRelays = Callable[[AsyncEngine, Sequence[RelayPlace]], Awaitable[None]]


async def dispatcher_edge(
    engine: AsyncEngine, spec: kamailio.EdgeSpec, server_port: int
) -> Mapping[str, str]:
    """Today's dispatcher (``callcontrol asterisk kamailio``) with a ctl socket added."""
    from callcontrol.asterisk.kamailio import KamailioOptions, load_dispatch, render_kamailio

    listen = f"{spec.listen_host}:{spec.listen_port}"
    options = KamailioOptions(listen=listen, server_port=server_port, probe_interval=2)
    files = render_kamailio(await load_dispatch(engine, options, spec.folder))
    return {**files, kamailio.CONFIG: kamailio.with_ctl(files[kamailio.CONFIG], spec.ctl_socket)}


async def edge_config(
    engine: AsyncEngine, spec: kamailio.EdgeSpec, server_port: int
) -> Mapping[str, str]:
    """The edge (``edge.cfg.j2``): registrar, authentication, dispatcher and media relay
    sets, all read from the shared database; its ctl socket where ``kamcmd`` reaches it.
    Each server's port is its ``application_servers.sip_port`` (``up`` writes it)."""
    from callcontrol.asterisk.kamailio import EdgeOptions, load_edge, render_edge
    from callcontrol.asterisk.render import RenderError

    options = EdgeOptions(
        listen=f"{spec.listen_host}:{spec.listen_port}",
        ctl_socket=str(spec.ctl_socket),
        probe_interval=2,
        rtpengine_recheck=2,
    )
    try:
        return render_edge(await load_edge(engine, options))
    except RenderError as exc:
        raise PlatformError(f"the edge cannot be rendered: {exc}") from exc


def edge_server(place: ServerPlace) -> sandbox.SandboxSettings:
    """A server's sandbox in ``edge`` mode: one ``edge`` endpoint, every leg through the
    edge, which is also its trusted proxy."""
    return sandbox.SandboxSettings(
        name=place.sandbox,
        network=place.network,
        ari=place.ari,
        app=place.app,
        server=place.name,
        source_header="X-Forwarded-For",
        mode="edge",
        edge_address=place.edge,
    )


async def publish_media_relays(engine: AsyncEngine, relays: Sequence[RelayPlace]) -> None:
    """Each relay set's ``media_relays`` become the rtpengines ``up`` started (the edge's
    ``kamailio_rtpengine`` view reads them); the default set 0 has no row to write."""
    placed = [relay for relay in relays if relay.set_id]
    if not placed:
        return
    async with engine.begin() as connection:
        await connection.execute(
            delete(MediaRelay).where(
                MediaRelay.media_relay_set_id.in_([relay.set_id for relay in placed])
            )
        )
        for relay in placed:
            await connection.execute(
                insert(MediaRelay).values(
                    media_relay_set_id=relay.set_id,
                    control_url=relay.spec.control_url,
                    weight=1,
                    enabled=True,
                )
            )


def direct_server(place: ServerPlace) -> sandbox.SandboxSettings:
    """A server's sandbox as today (``direct`` mode), the edge its trusted proxy."""
    return sandbox.SandboxSettings(
        name=place.sandbox,
        network=place.network,
        ari=place.ari,
        app=place.app,
        server=place.name,
        source_header="X-Forwarded-For",
    )


@dataclass(frozen=True, slots=True)
class Parts:
    """What plugs in: the edge's rendering, each server's sandbox settings, and how the
    rtpengines are written where the edge reads them (None: not written)."""

    render_edge: RenderEdge = edge_config
    server_settings: ServerSettings = edge_server
    publish_relays: PublishRelays | None = publish_media_relays
    mode: str = "edge"
    """Each server's ``callcontrol run`` mode (``direct`` with ``dispatcher_edge`` and
    ``direct_server``: today's proxy in front of ordinary servers)."""


# ---- what up started --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Layout:
    """``platform.json``: the parts ``up`` started, for ``down`` and ``status``."""

    servers: list[dict[str, str]]
    """name, sandbox, service, address of each server."""
    relays: list[dict[str, str | int]]
    """name, set_id, address, control_url of each rtpengine."""
    edge: dict[str, str]
    """name, address (HOST:PORT), ctl_socket."""
    cache: str | None = None

    @classmethod
    def read(cls, folder: Path) -> Layout | None:
        try:
            return cls(**json.loads((folder / PLATFORM_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PLATFORM_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class Running:
    """What ``up`` started, as this process holds it: stopping through it also reaps the
    children (``stop`` without it, from another process, signals the recorded pids)."""

    layout: Layout
    supervisor: Supervisor
    sandboxes: dict[str, sandbox.Instance] = field(default_factory=dict)


# ---- up ---------------------------------------------------------------------------------------


def _refuse_sqlite(url: str) -> None:
    if url.startswith("sqlite"):
        raise PlatformError(
            "the platform's parts share one server database (PostgreSQL or MariaDB); an SQLite "
            "file cannot be shared: set --database-url"
        )


async def place_servers(engine: AsyncEngine, spec: PlatformSpec, echo: Echo) -> list[ServerPlace]:
    """The first ``spec.servers`` application servers by name, each moved to its loopback
    address (the dispatcher reads the addresses from the database)."""
    async with engine.begin() as connection:
        rows = (
            await connection.execute(
                select(
                    ApplicationServer.name, ApplicationServer.address, ApplicationServer.stasis_app
                ).order_by(ApplicationServer.name)
            )
        ).all()
        if len(rows) < spec.servers:
            raise PlatformError(
                f"the database has {len(rows)} application servers, not {spec.servers}: "
                "provision them first (`callcontrol provision`)"
            )
        if len(rows) > spec.servers:
            echo(f"note: {len(rows) - spec.servers} application servers not started (--servers)")
        places = []
        for index, row in enumerate(rows[: spec.servers], start=1):
            if not SERVER_NAME.fullmatch(row.name):
                raise PlatformError(
                    f"application server {row.name!r}: its name must be letters, digits, - "
                    "and _ to name a sandbox"
                )
            address = spec.server_address(index)
            if row.address != address:
                echo(f"note: application server {row.name} moved from {row.address} to {address}")
                await connection.execute(
                    update(ApplicationServer)
                    .where(ApplicationServer.name == row.name)
                    .values(address=address)
                )
            await connection.execute(
                update(ApplicationServer)
                .where(ApplicationServer.name == row.name)
                .values(sip_port=spec.sip_port)
            )
            network = Network(
                address, spec.sip_port, spec.http_port, spec.asterisk_rtp[0], spec.asterisk_rtp[1]
            )
            places.append(
                ServerPlace(
                    index,
                    row.name,
                    row.stasis_app,
                    network,
                    AriUser("callcontrol", secrets.token_hex(16)),
                    f"{spec.edge_address}:{spec.sip_port}",
                )
            )
    return places


async def place_relays(engine: AsyncEngine, spec: PlatformSpec) -> list[RelayPlace]:
    """One rtpengine per media relay set by id (one for the default set 0 when none)."""
    async with engine.connect() as connection:
        ids = list(
            (
                await connection.execute(select(MediaRelaySet.id).order_by(MediaRelaySet.id))
            ).scalars()
        )
    if len(ids) > MAX_SERVERS:
        raise PlatformError(f"{len(ids)} media relay sets: the platform runs at most {MAX_SERVERS}")
    return [RelayPlace(set_id, spec.relay(j)) for j, set_id in enumerate(ids or [0], start=1)]


def service_daemon(place: ServerPlace, spec: PlatformSpec, mode: str = "edge") -> Daemon:
    """``callcontrol run`` for one server: its settings in its environment (never written)."""
    folder = spec.folder / place.service
    folder.mkdir(parents=True, exist_ok=True)
    environment = {
        "CALLCONTROL_DATABASE_URL": spec.database_url,
        "CALLCONTROL_ARI_URL": f"http://{place.network.address}:{place.network.http_port}/",
        "CALLCONTROL_ARI_USER": place.ari.user,
        "CALLCONTROL_ARI_PASSWORD": place.ari.password,
        "CALLCONTROL_APP": place.app,
        "CALLCONTROL_SERVER": place.name,
        "CALLCONTROL_HEALTH_HOST": place.network.address,
        "CALLCONTROL_HEALTH_PORT": str(spec.health_port),
        "CALLCONTROL_TRUSTED_PROXIES": spec.edge_address,
        "CALLCONTROL_MODE": mode,
        "CALLCONTROL_SLOT_LEASE": str(spec.slot_lease),
        "CALLCONTROL_SLOT_HEARTBEAT": str(spec.slot_heartbeat),
        "CALLCONTROL_CDR_SPOOL_DIR": str(folder / "spool"),
        "CALLCONTROL_RECORDINGS_DIR": str(folder / "recordings"),
    }
    if mode == "edge":
        environment["CALLCONTROL_EDGE_ADDRESS"] = place.edge
    argv = (sys.executable, "-m", "callcontrol", "run", "--app", place.app)
    return Daemon(place.service, argv, environment, cwd=folder)


def health_probe(address: str, port: int) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=1) as answer:
                return None if answer.status == 200 else f"/health {answer.status}"
        except urllib.error.HTTPError as exc:
            return f"/health {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))

    return probe


async def up(
    engine: AsyncEngine, spec: PlatformSpec, parts: Parts | None = None, echo: Echo = print
) -> Running:
    """Start every part; return once each answers. On a failure, stop what was started."""
    from models.migrate import upgrade_async

    parts = parts or Parts()
    _refuse_sqlite(spec.database_url)
    require_root()
    supervisor = Supervisor(spec.folder)
    if Layout.read(spec.folder) is not None and any(
        supervisor.running(name) for name in supervisor.names()
    ):
        raise PlatformError(f"the platform in {spec.folder} is running: `platform down` first")
    await upgrade_async(spec.database_url)
    servers = await place_servers(engine, spec, echo)
    relays = await place_relays(engine, spec)
    edge = spec.edge()
    layout = Layout(
        servers=[
            {
                "name": p.name,
                "sandbox": p.sandbox,
                "service": p.service,
                "address": p.network.address,
            }
            for p in servers
        ],
        relays=[
            {
                "name": r.spec.name,
                "set_id": r.set_id,
                "address": r.spec.address,
                "control_url": r.spec.control_url,
            }
            for r in relays
        ],
        edge={
            "name": edge.name,
            "address": f"{edge.listen_host}:{edge.listen_port}",
            "ctl_socket": str(edge.ctl_socket),
        },
        cache=str(spec.cache) if spec.cache else None,
    )
    layout.write(spec.folder)
    running = Running(layout, supervisor)
    try:
        for relay in relays:
            await asyncio.to_thread(
                rtpengine.start, supervisor, relay.spec, spec.start_timeout, spec.stop_timeout
            )
            echo(f"rtpengine {relay.spec.name} (set {relay.set_id}) up on {relay.spec.address}")
        if parts.publish_relays is not None:
            await parts.publish_relays(engine, relays)
        write_files(edge.folder, dict(await parts.render_edge(engine, edge, spec.sip_port)))
        await asyncio.to_thread(
            kamailio.start, supervisor, edge, spec.start_timeout, spec.stop_timeout
        )
        echo(f"edge {edge.name} up on {edge.listen_host}:{edge.listen_port}")
        for place in servers:
            settings = parts.server_settings(place)
            instance, _ = await sandbox.up(engine, settings, spec.cache, echo)
            running.sandboxes[settings.name] = instance
            daemon = service_daemon(place, spec, parts.mode)
            probe = health_probe(place.network.address, spec.health_port)
            await asyncio.to_thread(
                supervisor.start, daemon, probe, spec.start_timeout, spec.stop_timeout
            )
            echo(f"server {place.name} up on {place.network.address}")
    except BaseException:
        await asyncio.to_thread(stop, spec.folder, spec.stop_timeout, running)
        raise
    return running


# ---- down, status -----------------------------------------------------------------------------


def stop(folder: Path, timeout: float = 10.0, running: Running | None = None) -> list[str]:
    """Stop every part recorded in ``folder``: services, sandboxes, the edge, rtpengines.
    The names of the parts that were running."""
    supervisor = running.supervisor if running else Supervisor(folder)
    held = running.sandboxes if running else {}
    layout = Layout.read(folder)
    stopped: list[str] = []
    cache = Path(layout.cache) if layout and layout.cache else None
    for server in layout.servers if layout else []:
        if supervisor.stop(server["service"], timeout):
            stopped.append(server["service"])
        box = held.get(server["sandbox"]) or sandbox.instance(server["sandbox"], cache)
        if box.stop(timeout):
            stopped.append(server["sandbox"])
    stopped += supervisor.stop_all(timeout, order=["kamailio"])
    (folder / PLATFORM_FILE).unlink(missing_ok=True)
    return stopped


@dataclass(frozen=True, slots=True)
class Part:
    kind: str
    name: str
    address: str
    running: bool
    pid: int | None


@dataclass(frozen=True, slots=True)
class PlatformStatus:
    parts: list[Part]
    dispatcher: list[kamailio.Destination]
    dispatcher_error: str | None = None
    """Why the dispatcher's view is missing (the edge is down, kamcmd failed)."""


def status(folder: Path) -> PlatformStatus | None:
    """Each part up or down, and the edge's dispatcher view; None when nothing was started."""
    layout = Layout.read(folder)
    if layout is None:
        return None
    supervisor = Supervisor(folder)
    cache = Path(layout.cache) if layout.cache else None
    parts: list[Part] = []
    for relay in layout.relays:
        state = supervisor.status(str(relay["name"]))
        pid = state.recorded.pid if state.recorded else None
        parts.append(
            Part("rtpengine", str(relay["name"]), str(relay["address"]), state.running, pid)
        )
    edge = supervisor.status(layout.edge["name"])
    edge_pid = edge.recorded.pid if edge.recorded else None
    parts.append(Part("edge", layout.edge["name"], layout.edge["address"], edge.running, edge_pid))
    for server in layout.servers:
        box = sandbox.instance(server["sandbox"], cache).status()
        box_pid = box.state.pid if box.state else None
        parts.append(Part("asterisk", server["sandbox"], server["address"], box.running, box_pid))
        service = supervisor.status(server["service"])
        pid = service.recorded.pid if service.recorded else None
        parts.append(Part("service", server["service"], server["address"], service.running, pid))
    if not edge.running:
        return PlatformStatus(parts, [], "the edge is not running")
    try:
        view = kamailio.dispatcher_list(Path(layout.edge["ctl_socket"]))
    except PlatformError as exc:
        return PlatformStatus(parts, [], str(exc))
    return PlatformStatus(parts, view)


# ---- drain --------------------------------------------------------------------------------------


async def mark_drained(engine: AsyncEngine, server: str, drained: bool) -> str:
    """``UPDATE application_servers SET drained``: the one statement drain needs (the column
    comes with migration 0009). The server's address; PlatformError when no server has
    that name or the column is missing."""
    statement = text("UPDATE application_servers SET drained = :drained WHERE name = :name")
    try:
        async with engine.begin() as connection:
            changed = await connection.execute(statement, {"drained": drained, "name": server})
            address = (
                await connection.execute(
                    select(ApplicationServer.address).where(ApplicationServer.name == server)
                )
            ).scalar_one_or_none()
    except DBAPIError as exc:
        from models.db import first_line, is_unavailable

        if "drained" not in first_line(exc) and is_unavailable(exc):
            raise  # an outage, not the missing column: the CLI says "database unavailable"
        raise PlatformError(
            f"cannot mark {server!r} drained ({first_line(exc)}): the database needs "
            "application_servers.drained, run `callcontrol db upgrade`"
        ) from exc
    if changed.rowcount == 0 or address is None:
        raise PlatformError(f"no application server is named {server!r}")
    return str(address)


def _loads_htable(config: Path) -> bool:
    """Whether the running edge's configuration has htables (the edge, not the dispatcher
    of ``dispatcher_edge``)."""
    try:
        return re.search(r'^\s*loadmodule\s+"htable', config.read_text(), re.MULTILINE) is not None
    except OSError:
        return False


async def drain(
    engine: AsyncEngine,
    folder: Path,
    server: str,
    drained: bool = True,
    sip_port: int = 5060,
) -> str:
    """Mark ``server`` drained (or not) and tell the running edge: ``RELOAD_DRAIN`` (the
    edge reads the dispatcher's flags and its static clients' servers from the database),
    then the state itself for an edge whose dispatcher list does not come from the
    database. What happened, in one line."""
    from callcontrol.asterisk.kamailio import RELOAD_DRAIN

    address = await mark_drained(engine, server, drained)
    layout = Layout.read(folder)
    supervisor = Supervisor(folder)
    if layout is None or not supervisor.running(layout.edge["name"]):
        return f"{server} {'drained' if drained else 'undrained'}; the edge is not running"
    ctl = Path(layout.edge["ctl_socket"])
    for command in RELOAD_DRAIN:
        if command == "dispatcher.reload":
            await asyncio.to_thread(kamailio.dispatcher_reload, ctl)
        elif _loads_htable(folder / "edge" / kamailio.CONFIG):
            await asyncio.to_thread(kamailio.kamcmd, ctl, *command.split())
    uri = f"sip:{address}:{sip_port}"
    known = await asyncio.to_thread(kamailio.dispatcher_list, ctl)
    if any(destination.uri == uri for destination in known):
        state = "d" if drained else "ap"
        await asyncio.to_thread(kamailio.dispatcher_set_state, ctl, state, 1, uri)
    word = "drained: no new calls" if drained else "undrained: takes new calls"
    return f"{server} {word} (edge reloaded)"
