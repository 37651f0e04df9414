"""End-to-end fixtures: a real Asterisk 22 sandbox fed from a scratch database, and SIPp.

Loaded by test modules through ``pytest_plugins = ["tests.e2e.fixtures"]`` (a plugin, not a
conftest, so the end-to-end tests and the contract suite share one sandbox per session). Test
modules import helpers from :mod:`tests.e2e.sandboxes`, never from here.

``asterisk`` (session-scoped) provisions ``dataset.yaml`` into a scratch SQLite file, picks free
loopback ports, starts a sandbox instance of its own (so it can run beside a developer's) and
stops exactly that instance at the end. Without root, debootstrap, the Debian mirror or SIPp the
tests skip and say how to enable them; with ``CI=true`` they fail instead.

``no_secret_logged`` (session, with the sandbox) writes every line logged from then on at DEBUG
(the benchmark's tests aside: DEBUG would slow the app it measures) through the masking that
``callcontrol run`` installs, and fails the session if the ARI password shows in any.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from callcontrol import masking
from callcontrol.asterisk.render import AriUser
from callcontrol.config import Config
from tests.conftest import unavailable
from tests.e2e.harness import AriRest, LiveLink, link_config, serving
from tests.e2e.sandboxes import (
    CALLEES,
    AsteriskHandle,
    forget_ghost,
    free_even_port,
    free_port,
    provision,
    sandbox_settings,
    start_sandbox,
)
from tests.e2e.sipp import Sipp, sipp_binary

ARI = AriUser("e2e", f"e2e-secret-{os.getpid()}")
"""The session's ARI credentials: the password is what no logged line may show."""


class SecretWatch(logging.Handler):
    """Formats every record as ``callcontrol run`` writes it and keeps those showing a
    secret (not every line: a session logs hundreds of thousands at DEBUG)."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__(logging.DEBUG)
        self.secrets = secrets
        self.lines = 0
        self.leaks: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines += 1
        if any(secret in line for secret in self.secrets):
            self.leaks.append(line[:300])


@pytest.fixture(scope="session")
def no_secret_logged() -> Iterator[SecretWatch]:
    """Set up with the sandbox (this module is a plugin: an autouse fixture here would
    watch, and set the level of, every test of the session, not only the real ones)."""
    basic = base64.b64encode(f"{ARI.user}:{ARI.password}".encode()).decode()
    watch = SecretWatch((ARI.password, basic))
    masking.install(Config(ari_user=ARI.user, ari_password=ARI.password), [watch])
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)
    assert watch.leaks == [], f"{len(watch.leaks)} of {watch.lines} lines show a secret"


@pytest.fixture(autouse=True)
def debug_logged(request: pytest.FixtureRequest) -> Iterator[None]:
    """The root logger at DEBUG for a test on the sandbox (not the benchmark's)."""
    root = logging.getLogger()
    level = root.level
    real = "asterisk" in request.fixturenames
    if real and not request.node.path.name.startswith("test_bench"):
        root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)


@pytest.fixture(scope="session")
def asterisk(
    tmp_path_factory: pytest.TempPathFactory, no_secret_logged: SecretWatch
) -> Iterator[AsteriskHandle]:
    folder = tmp_path_factory.mktemp("asterisk")
    carrier_port = free_port()
    callee_ports = {name: free_port() for name in CALLEES}
    database_url = provision(folder, carrier_port)
    ari = ARI
    fastagi_port = free_port(socket.SOCK_STREAM)
    fastagi_secret = secrets.token_hex(16)  # the FastAGI front's: in the rendered AGI URLs
    settings = sandbox_settings(
        f"test-{os.getpid()}", ari, callee_ports, (31000, 34999), fastagi_port, fastagi_secret
    )
    instance, state = start_sandbox(database_url, settings)
    try:
        forget_ghost(database_url)
        yield AsteriskHandle(
            instance,
            state,
            ari.user,
            ari.password,
            database_url,
            carrier_port,
            callee_ports,
            fastagi_port,
            fastagi_secret,
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
    SIP port: a carrier must call from the port it is identified by, a callee must listen
    where its contact points)."""

    def make(scenario: str, local_port: int | None = None) -> Sipp:
        return Sipp(scenario, local_port or free_port(), free_even_port(), sipp_dir)

    return make


@pytest.fixture
async def rest(asterisk: AsteriskHandle) -> AsyncIterator[AriRest]:
    """ARI REST on the sandbox, for checks of what Asterisk holds."""
    client = AriRest.of(asterisk)
    yield client
    await client.close()


@pytest.fixture
async def service(asterisk: AsteriskHandle, rest: AriRest) -> AsyncIterator[LiveLink]:
    """The service's link to the sandbox, running on the test's loop."""
    async with serving(asterisk, rest, LiveLink(link_config(asterisk))) as live:
        yield live
