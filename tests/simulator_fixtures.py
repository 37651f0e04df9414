"""Fixtures for tests against the simulated Asterisk, loaded by test modules through
``pytest_plugins = ["tests.simulator_fixtures"]``.

- ``sim``: a running :class:`Simulator` with fast timings, recordings under tmp_path;
- ``app``: an ARI application on a raw events websocket (:class:`AppSocket`);
- ``rest``: ARI REST with Basic credentials (:class:`Rest`);
- ``control``: the control API client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import AppSocket, Rest, fast_config


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tmp_path / "recordings")) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def app(sim: Simulator, session: aiohttp.ClientSession) -> AsyncIterator[AppSocket]:
    socket = await AppSocket.connect(session, sim.url)
    yield socket
    await socket.close()


@pytest.fixture
def rest(sim: Simulator, session: aiohttp.ClientSession) -> Rest:
    return Rest(session, sim.url)


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[ControlClient]:
    async with ControlClient(sim.url) as client:
        yield client
