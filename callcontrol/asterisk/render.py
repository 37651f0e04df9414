"""Render Asterisk's configuration from the shared database.

``load_context`` reads what the templates need (terminals, carriers, the Stasis app name)
with SQLAlchemy Core and builds a typed :class:`RenderContext`; ``render`` turns it into the
text of every file with Jinja2 (``StrictUndefined``: a missing value is an error, not an empty
line); ``write_files`` writes them, each one whole or not at all.

Values that come from tenants' provisioning (names, digests, domains) are checked before they
reach a template: a newline or a ``[`` must never open a new config section.

No secret is written in clear: a terminal's auth carries its digest HA1 (``password_digest``,
realm = its client's SIP domain), the benchmark caller's is hashed here, and the ARI user's
password is written SHA-512-crypted (``password_format = crypt``).
"""

from __future__ import annotations

import ipaddress
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jinja2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk.shacrypt import sha512_crypt, verify
from callcontrol.config import checked_secret
from dialplan.errors import CallControlError, ConfigError, NotFound, shown
from models import ApplicationServer, Carrier, Client, Terminal
from models.files import atomic_text
from models.provisioning.passwords import HA1, sip_ha1

TEMPLATES = Path(__file__).resolve().parents[2] / "asterisk-conf" / "templates"
QUALIFY_FREQUENCY = 30
"""Seconds between qualify OPTIONS to a registered terminal: a dead contact is noticed
(and skipped) within a minute."""
FILES = {
    "asterisk.conf": "asterisk.conf.j2",
    "modules.conf": "modules.conf.j2",
    "logger.conf": "logger.conf.j2",
    "pjsip.conf": "pjsip.conf.j2",
    "extensions.conf": "extensions.conf.j2",
    "ari.conf": "ari.conf.j2",
    "http.conf": "http.conf.j2",
    "rtp.conf": "rtp.conf.j2",
    "cdr.conf": "cdr.conf.j2",
    "indications.conf": "indications.conf.j2",
    "manager.conf": "manager.conf.j2",
    **{
        name: "quiet.conf.j2"
        for name in (
            "acl.conf",
            "ccss.conf",
            "cel.conf",
            "features.conf",
            "pjproject.conf",
            "stasis.conf",
            "udptl.conf",
            "websocket_client.conf",
        )
    },
}
"""Each file Asterisk reads, by the template that renders it."""

# The smallest set that runs callcontrol's call flows: the PJSIP stack with digest auth and
# identification by address, RTP, ARI with every resource the service and the console use,
# bridges (simple for two parties, softmix for recording), playback of gsm/wav prompts, the
# static dialplan (pbx_config) and the dialplan functions it calls.
MODULES = (
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "chan_pjsip.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_registrar.so",
    "res_pjsip_nat.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_diversion.so",
    "res_pjsip_rfc3326.so",
    "res_pjsip_dtmf_info.so",
    "res_pjsip_header_funcs.so",
    "res_pjsip_logger.so",
    "res_rtp_asterisk.so",
    "res_timing_timerfd.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "codec_gsm.so",
    "format_gsm.so",
    "format_wav.so",
    "format_wav_gsm.so",
    "format_pcm.so",
    "bridge_simple.so",
    "bridge_softmix.so",
    "bridge_holding.so",
    "bridge_native_rtp.so",
    "chan_bridge_media.so",
    "res_http_websocket.so",
    "res_websocket_client.so",
    "res_stasis.so",
    "res_stasis_answer.so",
    "res_stasis_device_state.so",
    "res_stasis_playback.so",
    "res_stasis_recording.so",
    "res_stasis_snoop.so",
    "res_ari.so",
    "res_ari_model.so",
    "res_ari_applications.so",
    "res_ari_asterisk.so",
    "res_ari_bridges.so",
    "res_ari_channels.so",
    "res_ari_device_states.so",
    "res_ari_endpoints.so",
    "res_ari_events.so",
    "res_ari_playbacks.so",
    "res_ari_recordings.so",
    "res_ari_sounds.so",
    "app_stasis.so",
    "res_agi.so",
    "res_speech.so",
    "app_stack.so",
    "app_playback.so",
    "app_dial.so",
    "pbx_config.so",
    "func_channel.so",
    "func_callerid.so",
    "func_hangupcause.so",
    "func_cut.so",
    "func_base64.so",
)

# Codecs the loaded modules can transcode; anything else in a terminal's list is dropped.
CODECS = ("ulaw", "alaw", "gsm")
DEFAULT_CODECS = ("ulaw", "alaw")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_CONTACT = re.compile(r"sips?:[^\s;,\[\]]+")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_REALM = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_ARI_PASSWORD = re.compile(r"^password = (\$6\$\S+)$", re.MULTILINE)

BENCH_REALM = "static-bench.invalid"
"""The digest realm of the benchmark caller, which belongs to no client."""


class RenderError(CallControlError):
    """A value from the database cannot be written safely into Asterisk's configuration."""


def one_line(value: object) -> str:
    """``value`` as text, refused when it holds a newline or another control character."""
    text = str(value)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        raise RenderError(f"{text!r} holds a control character and cannot be written")
    return text


def conf_value(value: object) -> str:
    """A value safe on the right of ``key = value`` (the templates' ``conf`` filter): one
    line, ``;`` escaped so it does not start a comment."""
    return one_line(value).replace(";", r"\;")


def _name(kind: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise RenderError(
            f"{kind} {value!r} cannot be a PJSIP section name (letters, digits, _ . + -)"
        )
    return value


@dataclass(frozen=True, slots=True)
class Network:
    """Where Asterisk listens: all on one loopback (or host) address, every port configurable."""

    address: str = "127.0.0.1"
    sip_port: int = 5060
    http_port: int = 8088
    rtp_start: int = 10000
    rtp_end: int = 30000

    def __post_init__(self) -> None:
        try:
            ipaddress.ip_address(self.address)
        except ValueError:
            raise ConfigError(f"address {self.address!r} is not an IP address") from None
        for name in ("sip_port", "http_port", "rtp_start", "rtp_end"):
            port = getattr(self, name)
            if not 1 <= port <= 65535:
                raise ConfigError(f"{name} {port} is not a port number")
        if self.rtp_end - self.rtp_start < 2:
            raise ConfigError(f"RTP range {self.rtp_start}-{self.rtp_end} is empty")

    @property
    def media_address(self) -> str:
        return self.address


def default_modules_dir() -> str:
    """Debian's module folder for this machine's architecture."""
    machine = platform.machine()
    triplet = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(
        machine, f"{machine}-linux-gnu"
    )
    return f"/usr/lib/{triplet}/asterisk/modules"


@dataclass(frozen=True, slots=True)
class Paths:
    """Folders as Asterisk sees them (inside the chroot, for the sandbox)."""

    etc: str
    lib: str
    spool: str
    run: str
    log: str
    modules: str
    data: str = "/usr/share/asterisk"

    @classmethod
    def for_instance(cls, root: PurePosixPath, modules: str | None = None) -> Paths:
        """Config files in ``root``; everything Asterisk writes in folders under it."""
        return cls(
            etc=str(root),
            lib=str(root / "lib"),
            spool=str(root / "spool"),
            run=str(root / "run"),
            log=str(root / "log"),
            modules=modules or default_modules_dir(),
        )

    def writable(self) -> tuple[str, ...]:
        # ARI recordings are written to <spool>/recording, which Asterisk does not create.
        return (self.lib, self.spool, f"{self.spool}/recording", self.run, self.log)


@dataclass(frozen=True, slots=True)
class AriUser:
    user: str = "callcontrol"
    password: str = "callcontrol"


@dataclass(frozen=True, slots=True)
class AmiUser:
    """An Asterisk Manager (AMI) login on loopback, for ``bench calls --ami-floor`` alone:
    callcontrol itself needs no AMI."""

    port: int
    user: str = "bench"
    password: str = field(default="bench", repr=False)


@dataclass(frozen=True, slots=True)
class AriLogin:
    """The ARI user as ``ari.conf`` holds it: the password only SHA-512-crypted."""

    user: str
    crypted: str


@dataclass(frozen=True, slots=True)
class TerminalConf:
    name: str
    realm: str
    ha1: str
    codecs: tuple[str, ...]
    contact: str | None = None


@dataclass(frozen=True, slots=True)
class CarrierConf:
    endpoint: str
    host: str
    port: int

    @property
    def match(self) -> str:
        """What identifies the carrier's calls: its address, with the port when it is an IP
        (several SIPp carriers on one loopback address differ only by port)."""
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return self.host
        return f"[{address}]:{self.port}" if address.version == 6 else f"{address}:{self.port}"


@dataclass(frozen=True, slots=True)
class BenchCaller:
    """An endpoint whose calls enter ``[static-bench]`` (the benchmark's baseline)."""

    endpoint: str
    ha1: str
    realm: str = BENCH_REALM


@dataclass(frozen=True, slots=True)
class StaticBench:
    carrier: str | None
    dial_timeout: int = 30


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What does not come from the database: where Asterisk listens, its folders, the app."""

    paths: Paths
    network: Network = field(default_factory=Network)
    ari: AriUser = field(default_factory=AriUser)
    app: str | None = None
    """The Stasis app; None = the application server's (``server``), else ``callcontrol``."""
    server: str | None = None
    bench_password: str | None = None
    """When set, a ``static-bench`` endpoint with this password is rendered."""
    bench_carrier: str | None = None
    """The carrier ``[static-bench]`` dials; None = the first carrier."""
    contacts: Mapping[str, str] = field(default_factory=dict)
    """Static contacts for terminals (tests point them at SIPp), by terminal name."""
    unavailable_sound: str = "ss-noservice"
    unavailable_cause: int = 34
    """Hang-up cause when the app is not connected: 34 (congestion) is SIP 503."""
    source_header: str | None = None
    """A header trusted proxies put the caller's address in, passed to the app; None = none."""
    fastagi: str | None = None
    """``HOST:PORT`` of the FastAGI front: calls are decided over AGI first and carried out by
    the dialplan; None = every call goes to the Stasis app."""
    fastagi_secret: str = field(default="", repr=False)
    """The front's ``fastagi_secret``, carried in every AGI URL; empty = none."""
    qualify_frequency: int = QUALIFY_FREQUENCY
    """Seconds between the OPTIONS that check each registered terminal's contact (0 = never):
    a phone that died without unregistering is skipped from then on, and its callers hear
    ``destination_unreachable`` at once instead of ringing into silence."""
    mode: str = "direct"
    """``direct``: an endpoint per terminal and carrier; ``edge``: one ``edge`` endpoint
    that every call enters through and every leg leaves through (``edge_address``)."""
    edge_address: str | None = None
    """``IP:PORT`` of the edge's SIP socket (edge mode)."""
    edge_match: tuple[str, ...] = ()
    """Addresses or CIDRs Asterisk identifies as the edge; empty = the edge's address.
    callcontrol believes the edge's headers only from ``trusted_proxies`` whatever this
    lets in."""
    manager: AmiUser | None = None
    """An AMI login, and a dialplan whose dialled calls report their end as an AMI
    ``UserEvent`` while the global ``CC_END_VIA`` is ``ami`` (``bench calls
    --ami-floor``); None = no AMI (the manager disabled)."""


@dataclass(frozen=True, slots=True)
class EdgeConf:
    """The ``edge`` endpoint: where legs leave to, and the addresses calls enter from."""

    host: str
    """The edge's IP as a SIP URI writes it (IPv6 in brackets)."""
    port: int
    match: str
    """PJSIP ``identify`` match: comma-separated addresses or CIDRs."""


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Everything the templates read, typed; built by :func:`load_context`."""

    app: str
    paths: Paths
    network: Network
    ari: AriLogin
    terminals: tuple[TerminalConf, ...]
    carriers: tuple[CarrierConf, ...]
    static_bench: StaticBench
    bench_caller: BenchCaller | None
    unavailable_sound: str
    unavailable_cause: int
    source_header: str | None = None
    fastagi: str | None = None
    fastagi_secret: str = field(default="", repr=False)
    qualify_frequency: int = QUALIFY_FREQUENCY
    system_name: str | None = None
    """Asterisk's ``systemname``: the application server's name, prefixed to every channel id
    so that call ids (CDRs, slots, recordings) stay unique across servers."""
    modules: tuple[str, ...] = MODULES
    mode: str = "direct"
    edge: EdgeConf | None = None
    """The edge endpoint (edge mode only)."""
    origins: tuple[str, ...] = ("terminal", "carrier")
    """The contexts calls enter: ``from-<origin>``, each passing its origin to the app."""
    notes: tuple[str, ...] = ()
    """What rendering changed or left out (e.g. a codec Asterisk cannot transcode)."""
    manager: AmiUser | None = None
    """The AMI login (its user and password checked as one-line names), if any."""


def _codecs(terminal: str, listed: str, notes: list[str]) -> tuple[str, ...]:
    wanted = [codec.strip() for codec in listed.split(",") if codec.strip()]
    kept = tuple(codec for codec in wanted if codec in CODECS)
    dropped = [codec for codec in wanted if codec not in CODECS]
    if dropped:
        notes.append(f"terminal {terminal}: codecs {', '.join(dropped)} not loaded, left out")
    return kept or DEFAULT_CODECS


def realm(value: str, terminal: str) -> str:
    """A SIP domain as a digest realm: a DNS name, nothing that could break a line or quote."""
    if not _REALM.fullmatch(value):
        raise RenderError(f"terminal {terminal}: SIP domain {shown(value)} is not a DNS name")
    return value


def digest(value: str, terminal: str) -> str:
    if not HA1.fullmatch(value):
        raise RenderError(f"terminal {terminal}: its stored digest is not 32 lowercase hex digits")
    return value


def ari_login(user: AriUser, previous: str | None = None) -> AriLogin:
    """The ARI user with its password crypted; a ``previous`` hash that verifies it is kept,
    so that rendering again writes the same ``ari.conf``."""
    password = one_line(user.password)
    kept = previous if previous is not None and verify(password, previous) else None
    return AriLogin(_name("ARI user", user.user), kept or sha512_crypt(password))


def previous_ari_hash(directory: Path) -> str | None:
    """The crypted password of an ``ari.conf`` rendered earlier into ``directory``, if any."""
    try:
        text = (directory / "ari.conf").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    found = _ARI_PASSWORD.search(text)
    return found.group(1) if found else None


async def load_context(
    engine: AsyncEngine, options: RenderOptions, previous_ari: str | None = None
) -> RenderContext:
    """Read terminals, carriers and the app name; check every value bound for a template.

    ``previous_ari``: the ARI hash of the files being replaced (kept when it still verifies).
    """
    terminals, carriers = Terminal.__table__, Carrier.__table__
    servers, clients = ApplicationServer.__table__, Client.__table__
    async with engine.connect() as connection:
        terminal_rows = (
            await connection.execute(
                select(terminals.c.name, terminals.c.ha1, terminals.c.codecs, clients.c.sip_domain)
                .join(clients, clients.c.id == terminals.c.client_id)
                .order_by(terminals.c.name)
            )
        ).all()
        carrier_rows = (
            await connection.execute(
                select(carriers.c.endpoint, carriers.c.host, carriers.c.port).order_by(
                    carriers.c.id
                )
            )
        ).all()
        app = options.app
        if app is None and options.server is not None:
            app = (
                await connection.execute(
                    select(servers.c.stasis_app).where(servers.c.name == options.server)
                )
            ).scalar_one_or_none()
            if app is None:
                raise NotFound("application server", options.server)

    notes: list[str] = []
    edge = edge_conf(options)
    if edge is not None:
        if options.contacts:
            raise ConfigError("static terminal contacts are for direct mode: the edge has none")
        # Terminals register at the edge, carriers reach the servers through it: no endpoint.
        terminal_rows, carrier_rows = [], []
    unknown = set(options.contacts) - {row.name for row in terminal_rows}
    if unknown:
        raise NotFound("terminal", sorted(unknown)[0])
    terminal_confs = []
    for row in terminal_rows:
        contact = options.contacts.get(row.name)
        if contact is not None and not _CONTACT.fullmatch(contact):
            raise RenderError(f"contact {contact!r} of terminal {row.name} is not a SIP URI")
        terminal_confs.append(
            TerminalConf(
                name=_name("terminal", row.name),
                realm=realm(row.sip_domain, row.name),
                ha1=digest(row.ha1, row.name),
                codecs=_codecs(row.name, row.codecs, notes),
                contact=contact,
            )
        )
    carrier_confs = []
    for row in carrier_rows:
        if not _HOST.fullmatch(row.host) and not is_ip(row.host):
            raise RenderError(f"carrier {row.endpoint}: host {row.host!r} is not a host name")
        carrier_confs.append(CarrierConf(_name("carrier", row.endpoint), row.host, row.port))

    if options.fastagi and not options.fastagi_secret:
        notes.append(
            "FastAGI requests go without a secret (fastagi_secret is empty): keep the front"
            " where only this Asterisk reaches it"
        )
    endpoints = {conf.name for conf in terminal_confs} | {c.endpoint for c in carrier_confs}
    bench_carrier = options.bench_carrier
    if bench_carrier is None and carrier_confs:
        bench_carrier = carrier_confs[0].endpoint
    if bench_carrier is not None and bench_carrier not in endpoints:
        raise NotFound("carrier endpoint", bench_carrier)
    bench_caller = None
    if options.bench_password is not None:
        if "static-bench" in endpoints:
            raise RenderError("an endpoint is named static-bench, which the benchmark needs")
        secret = one_line(options.bench_password)
        bench_caller = BenchCaller("static-bench", sip_ha1("static-bench", BENCH_REALM, secret))
    return RenderContext(
        app=_name("Stasis app", app or "callcontrol"),
        paths=options.paths,
        network=options.network,
        ari=ari_login(options.ari, previous_ari),
        terminals=tuple(terminal_confs),
        carriers=tuple(carrier_confs),
        static_bench=StaticBench(bench_carrier),
        bench_caller=bench_caller,
        unavailable_sound=_name("sound", options.unavailable_sound),
        unavailable_cause=options.unavailable_cause,
        source_header=_source_header(options),
        fastagi=agi_address(options.fastagi) if options.fastagi else None,
        fastagi_secret=checked_secret(options.fastagi_secret) if options.fastagi else "",
        system_name=_name("server", options.server) if options.server else None,
        qualify_frequency=max(0, int(options.qualify_frequency)),
        mode=options.mode,
        edge=edge,
        origins=("edge",) if edge is not None else ("terminal", "carrier"),
        notes=tuple(notes),
        manager=_manager(options.manager),
        modules=MODULES + (("app_userevent.so",) if options.manager else ()),
    )


def _manager(login: AmiUser | None) -> AmiUser | None:
    if login is None:
        return None
    if not 1 <= login.port <= 65535:
        raise ConfigError(f"AMI port {login.port} is not a port")
    return AmiUser(login.port, _name("AMI user", login.user), one_line(login.password))


EDGE_SOURCE_HEADER = "X-Forwarded-For"
"""The header the edge puts the caller's address in, when the options name none."""


def _source_header(options: RenderOptions) -> str | None:
    if options.source_header:
        return _name("header", options.source_header)
    return EDGE_SOURCE_HEADER if options.mode == "edge" else None


def edge_conf(options: RenderOptions) -> EdgeConf | None:
    """The edge endpoint of edge-mode ``options`` (None in direct mode), every value
    checked: the edge's address ``IP:PORT``, each identify match an address or CIDR."""
    if options.mode not in ("direct", "edge"):
        raise ConfigError(f"mode must be direct or edge, not {options.mode!r}")
    if options.mode == "direct":
        return None
    split = split_host_port(options.edge_address or "")
    if split is None or not is_ip(split[0]):
        raise ConfigError(f"edge address {options.edge_address!r} is not IP:PORT")
    host, port = split
    address = ipaddress.ip_address(host)
    matches = []
    for entry in options.edge_match or (str(address),):
        try:
            matches.append(str(ipaddress.ip_network(one_line(entry).strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"edge match {entry!r} is not an address or CIDR") from None
    return EdgeConf(
        host=f"[{address}]" if address.version == 6 else str(address),
        port=port,
        match=",".join(matches),
    )


def split_host_port(value: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as (host without brackets, port), or None
    when it is not that or the port is out of range."""
    host, separator, port = value.strip().rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return bare, int(port)


def agi_address(value: str) -> str:
    """A checked ``HOST:PORT`` (``[v6]:PORT`` for IPv6) for an ``agi://`` URL."""
    split = split_host_port(value)
    if split is None:
        raise RenderError(f"FastAGI address {value!r} is not HOST:PORT")
    host, port = split
    if not (is_ip(host) or _HOST.fullmatch(host)):
        raise RenderError(f"FastAGI address {value!r} has a bad host")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["conf"] = conf_value
    return env


def render(context: RenderContext, templates: Path = TEMPLATES) -> dict[str, str]:
    """The text of every file, by file name; nothing is written."""
    env = environment(templates)
    try:
        return {
            name: env.get_template(template).render(
                {slot: getattr(context, slot) for slot in RenderContext.__slots__}
            )
            for name, template in FILES.items()
        }
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(f"template {exc.name} is missing from {templates}") from exc


def write_files(directory: Path, files: Mapping[str, str]) -> None:
    """Write each file via a temporary file and a rename: a reader sees old or new, never half."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        with atomic_text(directory / name, 0o640) as out:
            out.write(text)


async def render_into(
    engine: AsyncEngine, directory: Path, options: RenderOptions
) -> RenderContext:
    """Load, render and write: the whole chore of ``callcontrol asterisk render``."""
    context = await load_context(engine, options, previous_ari_hash(directory))
    write_files(directory, render(context))
    return context
