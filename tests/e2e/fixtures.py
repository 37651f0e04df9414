"""End-to-end fixtures: a real Asterisk 22 sandbox fed from a scratch database, and SIPp.

Loaded by test modules through ``pytest_plugins = ["tests.e2e.fixtures"]`` (a plugin, not a
conftest, so the end-to-end tests and the contract suite share one sandbox per session). Test
modules import helpers from :mod:`tests.e2e.sandboxes`, never from here.

``asterisk`` (session-scoped) provisions ``dataset.yaml`` into a scratch SQLite file, picks free
loopback ports, starts a sandbox instance of its own (so it can run beside a developer's) and
stops exactly that instance at the end. Without root, debootstrap, the Debian mirror or SIPp the
tests skip and say how to enable them; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from callcontrol.asterisk.render import AriUser
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


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskHandle]:
    folder = tmp_path_factory.mktemp("asterisk")
    carrier_port = free_port()
    callee_ports = {name: free_port() for name in CALLEES}
    database_url = provision(folder, carrier_port)
    ari = AriUser("e2e", f"e2e-{os.getpid()}")
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
