"""Sandbox instances for the end-to-end tests: the dataset in a scratch database, free loopback
ports, start and stop. The fixtures built on these live in :mod:`tests.e2e.fixtures`.

Without root, debootstrap or the Debian mirror, :func:`start_sandbox` skips the test and says
how to enable it; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete

from callcontrol.asterisk import chroot, sandbox
from callcontrol.asterisk.render import AriUser, Network
from models import Terminal
from models.db import create_engine
from models.migrate import upgrade
from models.provisioning import load_file
from tests.conftest import unavailable
from tests.ports import free_port

DATASET = Path(__file__).parent / "dataset.yaml"
GHOST = "e2e-ghost"
"""A terminal Asterisk is configured with but the database no longer knows (see dataset.yaml)."""
CALLEES = ("e2e-bob", "e2e-carol")
"""Terminals whose contact points at a port a test's SIPp callee listens on."""

HOW = "run as root on Debian with network access to a Debian mirror (bash tools/test.sh does)"


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
    fastagi_port: int = 0
    """The port the dialplan asks for a FastAGI decision first (nothing listens there
    unless a test starts the front: calls then go to the Stasis app)."""
    fastagi_secret: str = ""
    """The secret the dialplan's AGI URLs carry (the front's ``fastagi_secret``)."""

    @property
    def ari_url(self) -> str:
        return self.state.ari_url

    @property
    def ari_base(self) -> str:
        """The base URL the service is given (``CALLCONTROL_ARI_URL``): ARI is under it."""
        return self.state.ari_url.removesuffix("ari")

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


def provision(folder: Path, carrier_port: int) -> str:
    """``dataset.yaml`` in a fresh SQLite file under ``folder``, the carrier on
    ``carrier_port``; returns the database URL. The ghost terminal is still there: call
    :func:`forget_ghost` once Asterisk has been configured from it."""
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


def forget_ghost(url: str) -> None:
    """Delete the ghost terminal from the database: Asterisk still has its endpoint, so its
    calls reach the app and belong to no client (a terminal removed since the last render)."""

    async def forget() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(delete(Terminal).where(Terminal.name == GHOST))
        finally:
            await engine.dispose()

    asyncio.run(forget())


def _reap_orphans(root: Path) -> None:
    """Stop instances of earlier test runs that were killed before their teardown: each is
    named ``test-…-<pid of its pytest>``, and stopped by the Asterisk pid it recorded."""
    for folder in (root / str(sandbox.INSTANCES).lstrip("/")).glob("test-*"):
        owner = folder.name.rsplit("-", 1)[-1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            sandbox.Instance(root, folder.name).stop()
            shutil.rmtree(folder, ignore_errors=True)


def sandbox_settings(
    name: str,
    ari: AriUser,
    callee_ports: dict[str, int],
    rtp: tuple[int, int],
    fastagi_port: int | None = None,
    fastagi_secret: str = "",
) -> sandbox.SandboxSettings:
    """A test instance on fresh loopback ports; each callee's contact at its SIPp port."""
    return sandbox.SandboxSettings(
        fastagi=f"127.0.0.1:{fastagi_port}" if fastagi_port else None,
        fastagi_secret=fastagi_secret,
        # Calls relayed by the Kamailio test carry the caller's address in this header; the
        # service believes it only from a trusted proxy (none, but in that test).
        source_header="X-Forwarded-For",
        # A registered terminal is qualified every 2 s: a test sees a dead phone skipped.
        qualify_frequency=2,
        name=name,
        network=Network(
            "127.0.0.1",
            sip_port=free_port(),
            http_port=free_port(socket.SOCK_STREAM),
            rtp_start=rtp[0],
            rtp_end=rtp[1],
        ),
        ari=ari,
        server="sandbox",
        contacts={name: f"sip:{name}@127.0.0.1:{port}" for name, port in callee_ports.items()},
        start_timeout=90.0,
    )


def start_sandbox(
    database_url: str, settings: sandbox.SandboxSettings
) -> tuple[sandbox.Instance, sandbox.State]:
    """Render from the database and start (building the chroot if needed); skips or fails
    (CI) with how to enable it when the sandbox cannot run here."""
    if os.geteuid() != 0:
        unavailable("the Asterisk sandbox", f"it needs root: {HOW}")
    if chroot.tool("chroot") is None:
        unavailable("the Asterisk sandbox", f"chroot is missing: {HOW}")

    async def start() -> tuple[sandbox.Instance, sandbox.State]:
        engine = create_engine(database_url)
        try:
            return await sandbox.up(engine, settings)
        finally:
            await engine.dispose()

    try:
        _reap_orphans(chroot.ensure_chroot())
        return asyncio.run(start())
    except chroot.SandboxError as exc:
        unavailable("the Asterisk sandbox", f"{exc} -- {HOW}")
        raise
