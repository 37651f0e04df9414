"""Helpers for tests against the simulated Asterisk (no mocks: real sockets on 127.0.0.1,
ephemeral ports). The fixtures built on them live in :mod:`tests.simulator_fixtures`."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from callcontrol.simulator import Behaviour, SimulatorConfig

Json = dict[str, Any]
USER, PASSWORD, APP = "callcontrol", "secret", "callcontrol"


def fast_config(recordings: Path, **overrides: Any) -> SimulatorConfig:
    config = SimulatorConfig(
        port=0,
        user=USER,
        password=PASSWORD,
        app=APP,
        recordings_dir=recordings,
        playback_seconds=0.05,
        ring_after=0.01,
        default_behaviour=Behaviour("answer", after=0.05),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


async def until(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until ``check()`` holds, at most ``within`` seconds (then fail)."""
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.01)


def subject(event: Json) -> str | None:
    """The id of the channel an event is about (``peer`` for Dial)."""
    for key in ("channel", "peer"):
        value = event.get(key)
        if isinstance(value, dict):
            return str(value["id"])
    return None


class AppSocket:
    """An ARI application on its events websocket: every event, in arrival order."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self.socket = socket
        self.history: list[Json] = []
        self._queue: asyncio.Queue[Json] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, url: str, app: str = APP) -> AppSocket:
        socket = await session.ws_connect(
            f"{url}ari/events", params={"app": app, "api_key": f"{USER}:{PASSWORD}"}
        )
        return cls(socket)

    async def _read(self) -> None:
        async for message in self.socket:
            event = message.json()
            self.history.append(event)
            self._queue.put_nowait(event)

    async def next(self, kind: str, channel: str | None = None, within: float = 5.0) -> Json:
        """The next event of ``kind`` (about ``channel``), skipping others."""
        async with asyncio.timeout(within):
            while True:
                event = await self._queue.get()
                if event["type"] == kind and (channel is None or subject(event) == channel):
                    return event

    def about(self, *channels: str) -> list[tuple[str, ...]]:
        """(type, channel, detail) of every event so far about ``channels``."""
        rows = []
        for event in self.history:
            if subject(event) in channels or event["type"] == "BridgeDestroyed":
                detail = event.get("dialstatus", event.get("cause", ""))
                rows.append((event["type"], subject(event) or "", str(detail)))
        return rows

    async def close(self) -> None:
        await self.socket.close()
        await self._reader


class Rest:
    """ARI REST on the simulator with the right credentials; returns (status, body)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url + "ari"
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    async def __call__(self, method: str, path: str, **params: Any) -> tuple[int, Any]:
        query = {key: str(value) for key, value in params.items()}
        async with self.session.request(
            method, self.url + path, params=query, headers=self.headers
        ) as response:
            body = await response.json() if response.status != 204 else None
            return response.status, body
