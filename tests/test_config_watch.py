"""The configuration in memory: two running services see a provisioned change within a
second, on every backend; a decision reads no configuration from the database."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from dataclasses import replace

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.service import Service
from callcontrol.watch import ConfigWatcher
from models.db import create_engine
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file, load_text
from models.snapshot import Snapshots
from tests.ports import free_port
from tests.simulator_helpers import until
from tests.test_fastagi import FakeAsterisk
from tests.test_service import CONFIG, demo_engine  # noqa: F401 (a fixture)

CALLS = itertools.count()


async def _loaded(watcher: ConfigWatcher) -> bool:
    return watcher.snapshots.loaded is not None


async def _action(asterisk: FakeAsterisk, call_id: str, endpoint: str) -> str:
    return (await asterisk.decide(call_id, endpoint, "02079460123"))["CC_ACTION"]


async def test_a_provisioned_change_reaches_two_running_services_within_a_second(
    engine: AsyncEngine, db_url: str
) -> None:
    await load_file(engine, DEMO_DATASET)
    engines = [create_engine(db_url) for _ in range(2)]
    services = [
        Service(
            replace(
                CONFIG,
                server=f"as-{n}",
                ari_url="",
                shutdown_timeout=0.1,  # the decided calls never end here
                fastagi_port=free_port(socket.SOCK_STREAM),
                health_port=free_port(socket.SOCK_STREAM),
            ),
            SqlDirectory(own),
            engine=own,
        )
        for n, own in enumerate(engines, start=1)
    ]
    tasks = [asyncio.create_task(service.run()) for service in services]
    asterisks = [FakeAsterisk(service.config.fastagi_port) for service in services]
    try:
        for service in services:
            watcher = service.watcher
            assert watcher is not None
            await until(lambda w=watcher: _loaded(w), within=10)
        for n, asterisk in enumerate(asterisks):
            assert await _action(asterisk, f"before-{n}", "thames-george") == "dial"
        # PostgreSQL announces the change; the others are polled.
        listening = [s.watcher.listening for s in services if s.watcher is not None]
        assert listening == [engine.dialect.name == "postgresql"] * 2
        # Renamed by provisioning (the document's client made to match it exactly).
        text = DEMO_DATASET.read_text().replace("name: thames-george,", "name: thames-georgina,")
        await load_text(engine, text)
        changed = time.monotonic()
        seen: list[float] = []
        for n, asterisk in enumerate(asterisks):

            async def refused(a: FakeAsterisk = asterisk) -> bool:
                return await _action(a, f"after-{next(CALLS)}", "thames-george") != "dial"

            await until(refused)
            seen.append(time.monotonic() - changed)
            assert await _action(asterisk, f"renamed-{n}", "thames-georgina") == "dial"
        assert max(seen) < 1.0, seen
        # /health names the version in force and its age.
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{services[0].config.health_port}/health"
            async with http.get(url) as response:
                configuration = (await response.json())["configuration"]
        assert services[0].watcher is not None
        loaded = services[0].watcher.snapshots.loaded
        assert loaded is not None
        assert configuration["version"] == loaded.version >= 2
        assert 0 <= configuration["age"] < 5
    finally:
        for service in services:
            service.request_stop()
        await asyncio.gather(*tasks)
        for own in engines:
            await own.dispose()


async def test_without_a_change_the_watcher_keeps_its_snapshot(
    demo_engine: AsyncEngine,  # noqa: F811
) -> None:
    snapshots = Snapshots(demo_engine)
    watcher = ConfigWatcher(snapshots, poll=0.05)
    task = asyncio.create_task(watcher.run())
    try:
        await until(lambda: _loaded(watcher), within=10)
        first = snapshots.loaded
        await asyncio.sleep(0.3)  # several polls
        assert snapshots.loaded is first
        assert snapshots.reloads == 0
        assert not await snapshots.refresh()
        assert await snapshots.refresh(force=True)
        assert snapshots.loaded is not first
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
