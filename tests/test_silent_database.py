"""A database that accepts connections but never answers (a hung server, a network that
drops packets): a new call is refused with ``service_unavailable`` and its locution by
the decision deadline, on both fronts, and ``/health`` says the database is not
answering; with the database back, calls are decided again and ``/health`` is ok.

The silent server is a TCP proxy in front of the real PostgreSQL or MariaDB that stops
forwarding (``TcpProxy.hang``)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import aiohttp
import pytest
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.fastagi import AgiFront
from callcontrol.service import AsteriskLink, Service
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.pipeline import Pipeline
from models.db import create_engine, is_unavailable
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file
from tests.tcp_proxy import TcpProxy
from tests.test_fastagi import FakeAsterisk
from tests.test_service import CONFIG, Running, _free_port, _has_app, until

pytest_plugins = ["tests.simulator_fixtures"]

DEADLINE = 0.5
NOT_LOADED = re.compile(r"configuration not loaded in (\d+\.\d) s, starting without it: no answer")
SERVER_BACKENDS = pytest.mark.parametrize("db_url", ["postgresql", "mariadb"], indirect=True)


@dataclass
class Silent:
    """The demo platform behind a proxy the test can silence; ``engine`` goes through it."""

    proxy: TcpProxy
    engine: AsyncEngine


@pytest.fixture
async def silent(engine: AsyncEngine, db_url: str) -> AsyncIterator[Silent]:
    await load_file(engine, DEMO_DATASET)
    url = make_url(db_url)
    assert url.host is not None
    assert url.port is not None
    proxy = TcpProxy(url.host, url.port)
    await proxy.start()
    # No timeouts of the engine's own: the deadline alone must bound the call.
    through = create_engine(url.set(port=proxy.port))
    yield Silent(proxy, through)
    await proxy.stop()
    await through.dispose()


@SERVER_BACKENDS
async def test_the_ari_front_refuses_by_the_deadline_with_the_locution(
    sim: Simulator, control: ControlClient, silent: Silent
) -> None:
    config = replace(CONFIG, decision_timeout=DEADLINE)
    link = AsteriskLink(
        sim.url, config, Pipeline(SqlDirectory(silent.engine), deadline=config.decision_timeout)
    )
    link.journal = []
    running = Running(link)
    try:
        await until(lambda: _has_app(control))
        await silent.proxy.hang()
        caller = (await control.call("acme-north-ana", "600123123"))["id"]
        # Without the deadline the call waits for the driver's connect timeout (60 s).
        outcome = await running.outcome(caller, within=8)
        gone = await control.wait_gone(caller, within=8)
    finally:
        await running.stop()
    assert (outcome.reason, outcome.result) == (
        "service_unavailable",
        "refused after its voice notification",
    )
    assert gone["cause"] == 34  # SIP 503
    played = [params["media"] for name, params in link.journal if name == "channels.play"]
    assert played == ["sound:callcontrol/service_unavailable"]


@SERVER_BACKENDS
async def test_the_fastagi_front_refuses_by_the_deadline_with_the_locution(
    silent: Silent,
) -> None:
    config = replace(CONFIG, decision_timeout=DEADLINE, agi_timeout=5.0)
    front = AgiFront(config, Pipeline(SqlDirectory(silent.engine), deadline=DEADLINE))
    await front.start("127.0.0.1", 0)
    try:
        await silent.proxy.hang()
        variables = await FakeAsterisk(front.port).decide("as-agi-s.1", "acme-north-ana", "102")
    finally:
        await front.stop()
    # Not the overload's congestion without sound: the outage's refusal, spoken.
    assert variables == {
        "CC_ACTION": "reject",
        "CC_CAUSE": "34",
        "CC_SOUND": "callcontrol/service_unavailable",
        "CC_LANG": "en",
    }


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_health_says_the_database_is_not_answering_until_it_answers_again(
    sim: Simulator, silent: Silent
) -> None:
    config = replace(
        CONFIG,
        ari_url=sim.url,
        health_port=_free_port(),
        db_timeout=0.5,
        db_probe_interval=0.1,
    )
    service = Service(config, SqlDirectory(silent.engine), engine=silent.engine)
    task = asyncio.create_task(service.run())
    url = f"http://127.0.0.1:{config.health_port}/health"

    try:
        async with aiohttp.ClientSession() as http:

            async def says(status: int, database: str) -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as response:
                        body = await response.json()
                        return (response.status, body["database"]) == (status, database)
                return False

            await until(lambda: says(200, "ok"), within=10)
            await silent.proxy.hang()
            await until(lambda: says(503, "not answering"), within=10)
            await silent.proxy.start()
            await until(lambda: says(200, "ok"), within=10)
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_service_started_on_a_silent_database_takes_calls_from_asterisk_anyway(
    sim: Simulator, silent: Silent, caplog: pytest.LogCaptureFixture
) -> None:
    # Its configuration cannot be loaded: after the watcher's bound (6 × db_timeout, at
    # least 6 s) the service says so and connects to Asterisk without it.
    config = replace(CONFIG, ari_url=sim.url, health_port=_free_port(), db_timeout=0.5)
    service = Service(config, SqlDirectory(silent.engine), engine=silent.engine)
    await silent.proxy.hang()
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.links[0].state == "connected", within=15)
        assert service.health()["configuration"] == {"version": None, "age": None}
        said = [
            float(found[1])
            for record in caplog.records
            if record.levelname == "WARNING"
            and (found := NOT_LOADED.fullmatch(record.getMessage())) is not None
        ]
        assert len(said) == 1, [record.getMessage() for record in caplog.records]
        assert said[0] >= 6.0
    finally:
        await silent.proxy.start()
        service.request_stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_engine_with_a_timeout_gives_up_on_a_silent_server(
    silent: Silent, db_url: str
) -> None:
    url = make_url(db_url)
    await silent.proxy.hang()
    engine = create_engine(url.set(port=silent.proxy.port), timeout=0.5)
    try:
        # Its own 0.5 s, not asyncpg's 60: a deadline here would cancel the connect, which
        # pytest.raises(Exception) does not catch. (aiomysql bounds only the TCP connect,
        # not the greeting a silent server never sends: on MariaDB the callers' deadlines
        # bound it, as the tests above show.)
        async with asyncio.timeout(8):
            with pytest.raises(Exception) as raised:  # noqa: PT011 (whatever the driver raises)
                async with engine.connect() as connection:
                    await connection.exec_driver_sql("SELECT 1")
    finally:
        await engine.dispose()
    assert is_unavailable(raised.value), raised.value
