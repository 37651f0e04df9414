"""The service on a real Asterisk, for end-to-end and contract tests.

:class:`LiveLink` runs an :class:`AsteriskLink` in-process on the test's loop and collects the
outcomes it logs; :class:`AriRest` reads what Asterisk itself says (applications, channels,
bridges) so a test can wait for the app to be registered and check that no channel is left.
SIPp runs in worker threads (:func:`run_sipp`, :func:`finish_sipp`): a blocking SIPp on the
loop would stall the very service under test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from callcontrol.config import Config
from callcontrol.service import AsteriskLink
from callcontrol.session import Outcome
from dialplan.pipeline import Pipeline
from models.db import create_engine
from models.directory import SqlDirectory
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Running, Sipp, SippResult

DIAL_TIMEOUT = 3.0
"""Seconds a dialled party may ring before the call is no answer (short, for the tests)."""


async def until(
    check: Callable[[], bool | Awaitable[bool]], within: float = 5.0, every: float = 0.05
) -> None:
    """Wait until ``check()`` holds; TimeoutError after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(every)


def link_config(asterisk: AsteriskHandle, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "ari_url": asterisk.ari_base,
        "ari_user": asterisk.ari_user,
        "ari_password": asterisk.ari_password,
        "app": asterisk.app,
        "database_url": asterisk.database_url,
        "dial_timeout": DIAL_TIMEOUT,
        "reconnect_min": 0.2,
        "reconnect_max": 1.0,
        "teardown_timeout": 3.0,
        "health_port": 0,
    }
    return Config(**(values | overrides))


class AriRest:
    """Plain ARI REST on one Asterisk, with its credentials: what Asterisk says, not the
    service."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.url = base_url.rstrip("/") + "/ari"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Basic {token}"}, timeout=aiohttp.ClientTimeout(total=10)
        )

    @classmethod
    def of(cls, asterisk: AsteriskHandle) -> AriRest:
        return cls(asterisk.ari_base, asterisk.ari_user, asterisk.ari_password)

    async def close(self) -> None:
        await self._session.close()

    async def get(self, path: str) -> Any:
        async with self._session.get(self.url + path) as response:
            response.raise_for_status()
            return await response.json()

    async def hang_up(self, channel_id: str) -> bool:
        """``DELETE /channels/{id}``: ARI ends any channel; False when it has no such one."""
        async with self._session.delete(f"{self.url}/channels/{channel_id}") as response:
            if response.status == 404:
                return False
            response.raise_for_status()
            return True

    async def apps(self) -> list[str]:
        """The registered Stasis applications (empty while Asterisk is down)."""
        try:
            return [str(app["name"]) for app in await self.get("/applications")]
        except (aiohttp.ClientError, OSError):
            return []

    async def channels(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.get("/channels")
        return result

    async def bridges(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.get("/bridges")
        return result

    async def has_app(self, app: str) -> bool:
        return app in await self.apps()

    async def lacks_app(self, app: str) -> bool:
        return app not in await self.apps()

    async def bridged_pair(self) -> bool:
        """True once some bridge holds two channels (a call is up)."""
        return any(len(bridge.get("channels", [])) == 2 for bridge in await self.bridges())

    async def no_channels(self) -> bool:
        return await self.channels() == []


class LiveLink:
    """An AsteriskLink running on this loop, and every outcome it logged, in order."""

    def __init__(self, config: Config, journal: bool = False) -> None:
        self.config = config
        self.engine = create_engine(config.database_url)
        self.link = AsteriskLink(config.ari_url, config, Pipeline(SqlDirectory(self.engine)))
        if journal:
            self.link.journal = []
        self.outcomes: list[Outcome] = []
        self.link.on_outcome = self.outcomes.append
        self.task: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []
        """Every event the link received, in order (to explain a failure)."""
        deliver = self.link.deliver

        def record(event: dict[str, Any]) -> None:
            self.events.append(event)
            deliver(event)

        self.link.deliver = record  # type: ignore[method-assign]

    async def start(self, rest: AriRest, within: float = 10.0) -> LiveLink:
        """Run the link; return once it is connected and Asterisk lists the app (calls then
        reach it)."""
        return await self.start_until(lambda: rest.has_app(self.config.app), within)

    async def start_until(
        self, registered: Callable[[], Awaitable[bool]], within: float = 10.0
    ) -> LiveLink:
        """Run the link; return once it is connected and ``registered()`` holds."""
        self.task = asyncio.create_task(self.link.run())
        await until(self.link.connected.is_set, within)
        await until(registered, within)
        return self

    async def outcome(self, within: float = 10.0, index: int = 0) -> Outcome:
        """The ``index``-th outcome logged, once it is."""
        await until(lambda: len(self.outcomes) > index, within)
        return self.outcomes[index]

    def story(self) -> str:
        """The events so far, one line each, without the ChannelVarset noise."""
        return "\n".join(
            describe(event) for event in self.events if event["type"] != "ChannelVarset"
        )

    async def stop(self) -> None:
        await self.link.stop(2.0)
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 10)
        await self.engine.dispose()


def describe(event: dict[str, Any]) -> str:
    """``Dial peer=… dialstatus=NOANSWER``: an event's type, subject and what matters in it."""
    parts = [str(event["type"])]
    for key in ("channel", "peer", "bridge"):
        value = event.get(key)
        if isinstance(value, dict):
            state = f" {value['state']}" if "state" in value else ""
            parts.append(f"{key}={value.get('id')}{state}")
    for key in ("dialstatus", "cause", "tech_cause", "soft", "args"):
        if key in event:
            parts.append(f"{key}={event[key]}")
    return " ".join(parts)


async def run_sipp(role: Sipp, remote: str | None, **options: Any) -> SippResult:
    """Run a SIPp role to its end in a worker thread (the loop keeps serving the service)."""
    return await asyncio.to_thread(role.run, remote, **options)


async def finish_sipp(role: Sipp, running: Running, within: float = 30.0) -> SippResult:
    return await asyncio.to_thread(role.finish, running, within)


async def no_channel_left(asterisk: AsteriskHandle, rest: AriRest, within: float = 5.0) -> None:
    """Assert Asterisk holds no channel (some take a moment to be destroyed); if some stay,
    hang them all up so the next test starts clean, and fail naming them."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await rest.no_channels():
            return
        await asyncio.sleep(0.1)
    left = [f"{c['id']} {c['name']} {c['state']}" for c in await rest.channels()]
    await asyncio.to_thread(asterisk.hang_up_all)
    raise AssertionError(f"channels left in Asterisk after {within:.0f} s: {left}")


def open_http_sessions() -> list[aiohttp.ClientSession]:
    """Every aiohttp session of this process still reachable and not closed."""
    _collect()
    return [
        found
        for found in gc.get_objects()
        if isinstance(found, aiohttp.ClientSession) and not found.closed
    ]


async def close_http_sessions_opened_since(before: list[aiohttp.ClientSession]) -> int:
    """How many sessions opened since ``before`` nobody closed; closes them. A leaked
    session warns when it is collected, which would fail whichever test runs then."""
    known = {id(session) for session in before}
    collected = _collect()
    leaked = [session for session in open_http_sessions() if id(session) not in known]
    for session in leaked:
        await session.close()
    return collected + len(leaked)


def _collect() -> int:
    """Collect garbage; how many unclosed sessions went with it (their warnings swallowed)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return sum("Unclosed client session" in str(warning.message) for warning in caught)


@contextlib.asynccontextmanager
async def serving(
    asterisk: AsteriskHandle, rest: AriRest, live: LiveLink
) -> AsyncIterator[LiveLink]:
    """Run ``live`` against the sandbox; afterwards print what it heard and what Asterisk
    logged meanwhile (shown when a test fails), stop it and leave no app nor channel."""
    console = asterisk.instance.console_log
    start = console.stat().st_size if console.exists() else 0
    await live.start(rest)
    try:
        yield live
    finally:
        print(f"events the service received:\n{live.story()}")
        with console.open(errors="replace") as log:
            log.seek(start)
            print(f"Asterisk console:\n{log.read()[-4000:]}")
        await live.stop()
        # Later tests expect the app gone (test_sandbox calls with no app connected).
        await until(lambda: rest.lacks_app(asterisk.app), within=5)
        if not await rest.no_channels():
            await asyncio.to_thread(asterisk.hang_up_all)
