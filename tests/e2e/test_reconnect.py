"""The service survives the real Asterisk going away and its own death.

- Asterisk stopped and started again: the link reconnects by itself and new calls work. This
  runs on a sandbox instance of its own, so the session's instance is never disturbed.
- ``callcontrol run`` killed (SIGKILL) with a bridged call: a new link adopts the call, ends it
  cleanly when the caller hangs up, and leaves no channel behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callcontrol.ari_ import Ari
from callcontrol.asterisk.render import AriUser
from callcontrol.errors import AriUnavailable
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    close_http_sessions_opened_since,
    finish_sipp,
    link_config,
    no_channel_left,
    open_http_sessions,
    run_sipp,
    until,
)
from tests.e2e.sandboxes import (
    AsteriskHandle,
    forget_ghost,
    free_port,
    provision,
    sandbox_settings,
    start_sandbox,
)
from tests.e2e.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

ALICE = {"user": "e2e-alice", "password": "alice-e2e-secret"}


def ok(result: SippResult) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), result.describe()


class Restartable:
    """A sandbox instance of this test's own that it may stop and start again."""

    def __init__(self, folder: Path) -> None:
        self.database_url = provision(folder, free_port())
        forget_ghost(self.database_url)
        self.callee_ports = {"e2e-bob": free_port()}
        self.ari = AriUser("restart", f"restart-{os.getpid()}")
        self.settings = sandbox_settings(
            f"test-restart-{os.getpid()}", self.ari, self.callee_ports, (36000, 36999)
        )
        self.handle: AsteriskHandle | None = None

    async def start(self) -> AsteriskHandle:
        instance, state = await asyncio.to_thread(start_sandbox, self.database_url, self.settings)
        self.handle = AsteriskHandle(
            instance,
            state,
            self.ari.user,
            self.ari.password,
            self.database_url,
            0,
            self.callee_ports,
        )
        return self.handle

    async def stop(self) -> None:
        if self.handle is not None:
            await asyncio.to_thread(self.handle.instance.stop, self.settings.stop_timeout)

    def remove(self) -> None:
        if self.handle is not None:
            shutil.rmtree(self.handle.instance.folder, ignore_errors=True)


@pytest.fixture
async def restartable(tmp_path: Path) -> AsyncIterator[Restartable]:
    own = await asyncio.to_thread(Restartable, tmp_path)  # it runs its own loop to provision
    try:
        yield own
    finally:
        await own.stop()
        own.remove()


async def bridged_call(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    rest: AriRest,
    hold_ms: int | None = None,
) -> tuple[asyncio.Task[SippResult], asyncio.Task[SippResult]]:
    """alice calls bob (who answers) and hangs up after ``hold_ms``, or with None waits
    for Asterisk to hang her up: returns once Asterisk bridges them, with the tasks that
    end with the caller's and bob's results."""
    bob = sipp("uas_answer.xml", asterisk.callee_ports["e2e-bob"])
    ringing = bob.start(calls=1, timeout=30)
    scenario = "terminal_answered_remote_bye.xml" if hold_ms is None else "terminal_answered.xml"
    held = {} if hold_ms is None else {"hold_ms": hold_ms}
    caller = asyncio.create_task(
        run_sipp(sipp(scenario), asterisk.sip_target, service="102", timeout=30, **held, **ALICE)
    )
    callee = asyncio.create_task(finish_sipp(bob, ringing))
    try:
        await until(rest.bridged_pair, within=10)
    except BaseException:
        await asyncio.gather(caller, callee, return_exceptions=True)
        raise
    return caller, callee


async def test_the_link_reconnects_after_asterisk_restarts_and_new_calls_work(
    restartable: Restartable, sipp: Callable[..., Sipp]
) -> None:
    sessions = open_http_sessions()
    asterisk = await restartable.start()
    rest = AriRest.of(asterisk)
    live = await LiveLink(link_config(asterisk)).start(rest)
    try:
        await restartable.stop()
        await until(lambda: live.link.state != "connected", within=10)
        assert not live.link.connected.is_set()

        asterisk = await restartable.start()  # same ports, fresh process
        await until(lambda: live.link.state == "connected", within=15)
        await until(lambda: rest.has_app(asterisk.app), within=10)

        caller, callee = await bridged_call(asterisk, sipp, rest, hold_ms=300)
        ok(await caller)
        ok(await callee)
        outcome = await live.outcome()
        assert (outcome.result, outcome.answered) == ("answered, caller hung up", True)
        await no_channel_left(asterisk, rest)
    finally:
        await live.stop()
        await rest.close()
        # No attempt made while Asterisk was down may leave an HTTP session open.
        assert await close_http_sessions_opened_since(sessions) == 0


async def test_a_failed_connection_attempt_leaves_no_http_session_open() -> None:
    # aioari.connect makes its HTTP session before it loads the api-docs: a failed attempt
    # must close it, or each reconnection attempt while Asterisk is down leaks one.
    before = open_http_sessions()
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    for _ in range(3):
        with pytest.raises(AriUnavailable):
            await Ari.connect(f"http://127.0.0.1:{port}/", "user", "password")
    assert await close_http_sessions_opened_since(before) == 0


async def test_a_killed_service_leaves_a_bridged_call_that_its_successor_adopts(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], tmp_path: Path
) -> None:
    rest = AriRest.of(asterisk)
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": asterisk.database_url,
        "CALLCONTROL_ARI_URL": asterisk.ari_base,
        "CALLCONTROL_ARI_USER": asterisk.ari_user,
        "CALLCONTROL_ARI_PASSWORD": asterisk.ari_password,
        "CALLCONTROL_APP": asterisk.app,
        "CALLCONTROL_HEALTH_PORT": "0",
        "CALLCONTROL_LOG_LEVEL": "DEBUG",  # every request line, none with the password
    }
    log = (tmp_path / "callcontrol-run.log").open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "callcontrol",
        "run",
        env=environment,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )
    live: LiveLink | None = None
    try:
        try:
            await until(lambda: rest.has_app(asterisk.app), within=20)
            caller, callee = await bridged_call(asterisk, sipp, rest, hold_ms=5000)
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            log.close()
        printed = (tmp_path / "callcontrol-run.log").read_text(errors="replace")
        assert "api_key=***" in printed
        assert asterisk.ari_password not in printed
        # Asterisk keeps an app that lost its websocket listed while it holds channels.
        held = await rest.get(f"/applications/{asterisk.app}")
        assert len(held["channel_ids"]) == 2, held  # nobody tore the call down
        assert len(await rest.channels()) == 2

        live = await LiveLink(link_config(asterisk)).start(rest)
        # The caller hangs up when its 5 s are over: the adopted call ends with both legs.
        outcome = await live.outcome(within=15)
        assert (outcome.result, outcome.answered) == ("answered, caller hung up", True), (
            live.story()
        )
        ok(await caller)
        ok(await callee)
        await no_channel_left(asterisk, rest)
    finally:
        if live is not None:
            await live.stop()
        if not await rest.no_channels():
            await asyncio.to_thread(asterisk.hang_up_all)
        await rest.close()
