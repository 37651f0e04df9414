"""End-to-end fixtures: a real Asterisk 22 sandbox fed from a scratch database, and SIPp.

``asterisk`` (session-scoped) provisions ``dataset.yaml`` into a scratch SQLite file, picks free
loopback ports, starts a sandbox instance of its own (so it can run beside a developer's) and
stops exactly that instance at the end. Without root, debootstrap, the Debian mirror or SIPp the
tests skip and say how to enable them; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcontrol.asterisk import chroot, sandbox
from callcontrol.asterisk.render import AriUser, Network
from models.db import create_engine
from models.migrate import upgrade
from models.provisioning import load_file
from tests.conftest import unavailable
from tests.e2e.sipp import Sipp, sipp_binary

DATASET = Path(__file__).parent / "dataset.yaml"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs against the real Asterisk sandbox with SIPp")


HOW = "run as root on Debian with network access to a Debian mirror (bash tools/test.sh does)"


def free_port(kind: int = socket.SOCK_DGRAM, address: str = "127.0.0.1") -> int:
    """A port free for ``kind`` now (and, for SIP, for TCP too: SIPp opens both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind((address, 0))
            port = int(probe.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, other) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found in 50 tries")


def free_even_port() -> int:
    """A media port for SIPp: RTP on it, RTCP on the next."""
    for _ in range(50):
        port = free_port()
        if port % 2 == 0 and port < 65000:
            return port
    raise RuntimeError("no free even port found in 50 tries")


@dataclass(frozen=True)
class AsteriskHandle:
    """A running sandbox instance and what a test needs to talk to it."""

    instance: sandbox.Instance
    state: sandbox.State
    ari_user: str
    ari_password: str
    database_url: str
    carrier_port: int
    """The port the carrier ``carrier-e2e`` is reached at (start a SIPp callee there)."""
    callee_ports: dict[str, int]
    """Terminal name → the port its static contact points at."""

    @property
    def ari_url(self) -> str:
        return self.state.ari_url

    @property
    def app(self) -> str:
        return self.state.app

    @property
    def sip_address(self) -> str:
        return self.state.address

    @property
    def sip_port(self) -> int:
        return self.state.sip_port

    @property
    def sip_target(self) -> str:
        return f"{self.state.address}:{self.state.sip_port}"

    def rx(self, command: str) -> str:
        return self.instance.rx(command)

    def hang_up_all(self) -> None:
        """Clear calls a test left half open (they keep retransmitting otherwise)."""
        self.rx("channel request hangup all")


def _provision(folder: Path, carrier_port: int) -> str:
    url = f"sqlite:///{folder / 'e2e.db'}"
    upgrade(url)
    document = folder / "dataset.yaml"
    document.write_text(DATASET.read_text().replace("port: 5999", f"port: {carrier_port}"))

    async def load() -> None:
        engine = create_engine(url)
        try:
            await load_file(engine, document)
        finally:
            await engine.dispose()

    asyncio.run(load())
    return url


def _reap_orphans(root: Path) -> None:
    """Stop instances of earlier test runs that were killed before their teardown: each is
    named after the pid of its pytest, and stopped by the Asterisk pid it recorded."""
    for folder in (root / str(sandbox.INSTANCES).lstrip("/")).glob("test-*"):
        owner = folder.name.removeprefix("test-")
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            sandbox.Instance(root, folder.name).stop()
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskHandle]:
    if os.geteuid() != 0:
        unavailable("the Asterisk sandbox", f"it needs root: {HOW}")
    if chroot.tool("chroot") is None:
        unavailable("the Asterisk sandbox", f"chroot is missing: {HOW}")
    folder = tmp_path_factory.mktemp("asterisk")
    carrier_port = free_port()
    callee_ports = {"e2e-bob": free_port()}
    database_url = _provision(folder, carrier_port)
    ari = AriUser("e2e", f"e2e-{os.getpid()}")
    settings = sandbox.SandboxSettings(
        name=f"test-{os.getpid()}",
        network=Network(
            "127.0.0.1",
            sip_port=free_port(),
            http_port=free_port(socket.SOCK_STREAM),
            rtp_start=31000,
            rtp_end=34999,
        ),
        ari=ari,
        server="sandbox",
        contacts={name: f"sip:{name}@127.0.0.1:{port}" for name, port in callee_ports.items()},
        start_timeout=90.0,
    )

    async def start() -> tuple[sandbox.Instance, sandbox.State]:
        engine = create_engine(database_url)
        try:
            return await sandbox.up(engine, settings)
        finally:
            await engine.dispose()

    try:
        _reap_orphans(chroot.ensure_chroot())
        instance, state = asyncio.run(start())
    except chroot.SandboxError as exc:
        unavailable("the Asterisk sandbox", f"{exc} -- {HOW}")
        raise
    try:
        yield AsteriskHandle(
            instance, state, ari.user, ari.password, database_url, carrier_port, callee_ports
        )
    finally:
        instance.stop(settings.stop_timeout)
        shutil.rmtree(instance.folder, ignore_errors=True)


@pytest.fixture
def sipp_dir(tmp_path: Path) -> Path:
    if sipp_binary() is None:
        unavailable("SIPp", "install the Debian package sip-tester (bash tools/test.sh does)")
    return tmp_path


@pytest.fixture
def sipp(sipp_dir: Path) -> Callable[..., Sipp]:
    """Make a SIPp role for a scenario of scenarios/, on fresh loopback ports (or the given
    SIP port: a carrier must call from the port it is identified by)."""

    def make(scenario: str, local_port: int | None = None) -> Sipp:
        return Sipp(scenario, local_port or free_port(), free_even_port(), sipp_dir)

    return make
