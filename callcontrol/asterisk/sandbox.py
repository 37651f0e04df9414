"""A real Asterisk 22 on loopback, for tests and demos: ``callcontrol asterisk sandbox``.

One cached chroot (see :mod:`callcontrol.asterisk.chroot`) serves any number of *instances*.
An instance is a folder inside the chroot, ``/srv/callcontrol/<name>``, holding the configuration
rendered from the database and everything Asterisk writes (logs, control socket, astdb), so a
developer's instance and a test run's can run side by side on different ports.

``up`` renders, installs the locutions into the chroot's sounds folder, starts
``chroot ROOT /usr/sbin/asterisk -C <instance>/asterisk.conf -f -n``, records its pid in
``state.json`` and waits until ARI answers. ``down`` stops exactly that pid:
SIGTERM, then SIGKILL after a timeout; it never looks processes up by name.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk.chroot import (
    Echo,
    SandboxError,
    ensure_chroot,
    modules_dir,
    require_root,
    tool,
)
from callcontrol.asterisk.chroot import (
    cache_dir as default_cache,
)
from callcontrol.asterisk.chroot import (
    chroot_path as cached_chroot,
)
from callcontrol.asterisk.render import (
    AmiUser,
    AriUser,
    Network,
    Paths,
    RenderContext,
    RenderOptions,
    load_context,
    render,
    write_files,
)
from callcontrol.platform.processes import command_line, log_tail, terminate, wait_gone
from locutions.install import install as install_locutions

INSTANCES = PurePosixPath("/srv/callcontrol")
ASTERISK = "/usr/sbin/asterisk"


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """One instance: its name, where it listens, how long to wait. Timeouts are seconds."""

    name: str = "dev"
    network: Network = field(default_factory=Network)
    ari: AriUser = field(default_factory=AriUser)
    app: str | None = None
    server: str | None = None
    bench_password: str | None = "static-bench"
    contacts: dict[str, str] = field(default_factory=dict)
    fastagi: str | None = None
    """``HOST:PORT`` of a FastAGI front to render the dialplan for; None = Stasis only."""
    fastagi_secret: str = field(default="", repr=False)
    """The secret its AGI URLs carry (the front's ``fastagi_secret``); empty = none."""
    source_header: str | None = None
    """The header a trusted proxy writes the caller's address in, handed to the app."""
    qualify_frequency: int = 30
    """Seconds between qualify OPTIONS to registered terminals (tests make it short)."""
    mode: str = "direct"
    """``direct`` (an endpoint per terminal and carrier) or ``edge`` (one ``edge``
    endpoint, every leg through ``edge_address``)."""
    edge_address: str | None = None
    """``IP:PORT`` of the edge's SIP socket (edge mode)."""
    edge_match: tuple[str, ...] = ()
    """Addresses/CIDRs identified as the edge; empty = the edge's address."""
    manager: AmiUser | None = None
    """An AMI login on ``network.address`` (``bench calls --ami-floor``); None = no AMI."""
    start_timeout: float = 60.0
    stop_timeout: float = 10.0
    rx_timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class State:
    """What ``up`` recorded (no secrets): enough for ``status``, ``down`` and ``rx``."""

    pid: int
    name: str
    chroot: str
    address: str
    sip_port: int
    http_port: int
    rtp_start: int
    rtp_end: int
    app: str
    ari_user: str
    started_at: float

    @property
    def ari_url(self) -> str:
        return f"http://{_host(self.address)}:{self.http_port}/ari"


@dataclass(frozen=True, slots=True)
class Status:
    name: str
    running: bool
    state: State | None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Instance:
    """One sandbox instance inside a chroot."""

    def __init__(self, chroot: Path, name: str) -> None:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise SandboxError(f"instance name {name!r}: letters, digits, - and _ only")
        self.chroot = chroot
        self.name = name
        self.inside = INSTANCES / name
        self.folder = chroot / str(self.inside).lstrip("/")
        self.state_file = self.folder / "state.json"
        self.console_log = self.folder / "log" / "console.log"

    @property
    def config(self) -> str:
        return str(self.inside / "asterisk.conf")

    # ---- state -----------------------------------------------------------------------------

    def state(self) -> State | None:
        try:
            return State(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def running(self, state: State | None = None) -> bool:
        """True when the recorded pid is alive and is still our Asterisk (pids get reused)."""
        state = state or self.state()
        return state is not None and _is_our_asterisk(state.pid, self.config)

    def status(self) -> Status:
        state = self.state()
        return Status(self.name, self.running(state), state)

    # ---- up --------------------------------------------------------------------------------

    def prepare(self, files: dict[str, str], paths: Paths) -> None:
        write_files(self.folder, files)
        for folder in paths.writable():
            (self.chroot / folder.lstrip("/")).mkdir(parents=True, exist_ok=True)
        _copy_hosts(self.chroot)
        # Asterisk looks for sound:callcontrol/<name> under <astdatadir>/sounds/<lang>/.
        install_locutions(PurePosixPath(paths.data) / "sounds", chroot=self.chroot)

    def start(self, context: RenderContext, settings: SandboxSettings) -> State:
        if self.running():
            state = self.state()
            assert state is not None
            raise SandboxError(
                f"sandbox {self.name!r} is already running (pid {state.pid}): "
                f"`callcontrol asterisk sandbox down --name {self.name}` first"
            )
        _check_free(context.network)
        self.console_log.parent.mkdir(parents=True, exist_ok=True)
        with self.console_log.open("w") as log:
            process = subprocess.Popen(
                [_chroot(), str(self.chroot), ASTERISK, "-C", self.config, "-f", "-n"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our Ctrl-C must not reach it; `down` stops it
            )
        network = context.network
        state = State(
            pid=process.pid,
            name=self.name,
            chroot=str(self.chroot),
            address=network.address,
            sip_port=network.sip_port,
            http_port=network.http_port,
            rtp_start=network.rtp_start,
            rtp_end=network.rtp_end,
            app=context.app,
            ari_user=context.ari.user,
            started_at=time.time(),
        )
        self.state_file.write_text(json.dumps(asdict(state), indent=2) + "\n")
        self._process = process
        try:
            self.wait_ready(state, settings.ari, settings.start_timeout, process)
        except BaseException:
            self.stop(settings.stop_timeout)
            raise
        return state

    def wait_ready(
        self,
        state: State,
        ari: AriUser,
        timeout: float,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """Poll ``GET /ari/asterisk/info`` until it answers 200 (or the process dies)."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(f"{state.ari_url}/asterisk/info")
        token = base64.b64encode(f"{ari.user}:{ari.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        last = "no answer"
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise SandboxError(
                    f"Asterisk exited with {process.returncode} while starting: "
                    f"{self.log_tail()} (see {self.console_log})"
                )
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            time.sleep(0.2)
        raise SandboxError(
            f"ARI at {state.ari_url} did not answer within {timeout:.0f} s ({last}); "
            f"see {self.console_log}"
        )

    def log_tail(self) -> str:
        return log_tail(self.console_log)

    # ---- down ------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the recorded pid: SIGTERM, SIGKILL after ``timeout``. False if not running."""
        state = self.state()
        process = getattr(self, "_process", None)
        if state is None or not self.running(state):
            if process is not None:  # exiting already: reap it, or it warns when collected
                wait_gone(state.pid if state else 0, process, timeout)
            self.state_file.unlink(missing_ok=True)
            return False
        if not terminate(state.pid, process, timeout):
            raise SandboxError(f"Asterisk pid {state.pid} survived SIGKILL")
        self.state_file.unlink(missing_ok=True)
        return True

    # ---- rx --------------------------------------------------------------------------------

    def rx(self, command: str, timeout: float = 15.0) -> str:
        """Run one CLI command in the running instance (``asterisk -rx``) and return its output."""
        if not self.running():
            raise SandboxError(f"sandbox {self.name!r} is not running")
        try:
            result = subprocess.run(
                [_chroot(), str(self.chroot), ASTERISK, "-C", self.config, "-rx", command],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(f"asterisk -rx {command!r} took over {timeout:.0f} s") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(f"asterisk -rx {command!r} failed: {detail[0]}")
        return result.stdout


def _chroot() -> str:
    found = tool("chroot")
    if found is None:
        raise SandboxError("the chroot command is missing (Debian package coreutils)")
    return found


def _is_our_asterisk(pid: int, config: str) -> bool:
    arguments = command_line(pid)
    return (
        arguments is not None
        and config.encode() in arguments
        and any(b"asterisk" in a for a in arguments)
    )


def _copy_hosts(chroot: Path) -> None:
    """Asterisk resolves the host name on every call; without DNS each lookup stalls."""
    hosts = Path("/etc/hosts").read_text() if Path("/etc/hosts").exists() else ""
    hostname = socket.gethostname()
    names = {word for line in hosts.splitlines() for word in line.split("#")[0].split()[1:]}
    if hostname not in names:
        hosts += f"\n127.0.0.1 {hostname}\n"
    (chroot / "etc/hosts").write_text(hosts)


def _check_free(network: Network) -> None:
    family = socket.AF_INET6 if ":" in network.address else socket.AF_INET
    for kind, port, what in (
        (socket.SOCK_DGRAM, network.sip_port, "SIP"),
        (socket.SOCK_STREAM, network.http_port, "ARI/HTTP"),
    ):
        with socket.socket(family, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((network.address, port))
            except OSError as exc:
                raise SandboxError(
                    f"{what} port {network.address}:{port} is taken ({exc.strerror}): "
                    "choose another port"
                ) from None


def instance(name: str, cache: Path | None = None) -> Instance:
    return Instance(cached_chroot(default_cache(cache)), name)


async def up(
    engine: AsyncEngine,
    settings: SandboxSettings,
    cache: Path | None = None,
    echo: Echo = lambda _: None,
) -> tuple[Instance, State]:
    """Build (if needed), render from the database, start, wait for ARI."""
    require_root()
    root = await asyncio.to_thread(ensure_chroot, cache, echo)
    sandbox = Instance(root, settings.name)
    paths = Paths.for_instance(sandbox.inside, modules_dir(root))
    options = RenderOptions(
        paths=paths,
        network=settings.network,
        ari=settings.ari,
        app=settings.app,
        server=settings.server,
        bench_password=settings.bench_password,
        contacts=settings.contacts,
        fastagi=settings.fastagi,
        fastagi_secret=settings.fastagi_secret,
        source_header=settings.source_header,
        qualify_frequency=settings.qualify_frequency,
        mode=settings.mode,
        edge_address=settings.edge_address,
        edge_match=settings.edge_match,
        manager=settings.manager,
    )
    context = await load_context(engine, options)
    for note in context.notes:
        echo(f"note: {note}")
    if sandbox.running():
        raise SandboxError(
            f"sandbox {settings.name!r} is already running: "
            f"`callcontrol asterisk sandbox down --name {settings.name}` first"
        )
    sandbox.prepare(render(context), paths)
    started = time.monotonic()
    state = await asyncio.to_thread(sandbox.start, context, settings)
    echo(f"Asterisk up in {time.monotonic() - started:.1f} s (pid {state.pid})")
    return sandbox, state
