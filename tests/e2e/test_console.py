"""The operator console on the real Asterisk: ``callcontrol console`` lists a SIPp call the
service bridged and hangs it up, and both SIP parties get a BYE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from sqlalchemy import select
from typer.testing import CliRunner

from callcontrol.cli.console import app
from callcontrol.console_api import ConsoleApi
from callcontrol.session import Outcome
from models.admins import AuditEntry
from models.db import create_engine
from tests.e2e.harness import AriRest, LiveLink, no_channel_left
from tests.e2e.sandboxes import AsteriskHandle, free_port
from tests.e2e.sipp import Sipp, SippResult
from tests.e2e.test_calls import first, ok, sent_requests
from tests.e2e.test_reconnect import bridged_call

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]


@pytest.fixture
async def console_url(service: LiveLink) -> AsyncIterator[str]:
    """The console API over the service's link, as ``callcontrol run`` serves it."""
    application = web.Application()
    ConsoleApi("as-e2e", [service.link]).install(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def console(*args: str, database_url: str | None = None) -> tuple[int, str, str]:
    """The command's (exit code, stdout, stderr); ``database_url``: the shared database its
    direct actions are audited in (``CALLCONTROL_DATABASE_URL``)."""
    env = {"CALLCONTROL_DATABASE_URL": database_url} if database_url else None
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


async def listed_then_hung_up(
    console_url: str, server: str, call_id: str, shown: list[str], database_url: str
) -> None:
    """``callcontrol console calls`` lists the one live call, ``call_id`` on ``server``, as
    ``shown`` (kind, from, →, to, state); ``callcontrol console hangup`` ends it, and the
    shared database's audit trail records who did (the operating-system user, ``cli``)."""
    code, out, err = await console("calls", "--server", console_url)
    assert (code, err) == (0, "")
    row = out.splitlines()[1].split()
    assert row[:2] == [server, call_id]
    assert row[3:8] == shown
    assert await console("hangup", call_id, "--server", console_url, database_url=database_url) == (
        0,
        f"call {call_id}: hung up (on {console_url})\n",
        "",
    )
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.execute(
                select(AuditEntry.actor_kind, AuditEntry.action).where(
                    AuditEntry.target.contains(call_id)
                )
            )
            assert found.all() == [("cli", "call.hangup")]
    finally:
        await engine.dispose()


def ended_by_asterisk(caller: SippResult, callee: SippResult, outcome: Outcome) -> None:
    """Both parties got a BYE from Asterisk (the caller sent none), and the outcome says an
    operator ended the answered call."""
    ok(caller)
    ok(callee)
    assert first(caller, "BYE")  # Asterisk hung the caller up ...
    assert "BYE" not in sent_requests(caller)
    assert first(callee, "BYE")  # ... and the callee
    assert (outcome.result, outcome.answered) == ("answered, operator hung up", True)


async def test_an_operator_hangs_up_a_bridged_sip_call_and_both_parties_get_a_bye(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    service: LiveLink,
    rest: AriRest,
    console_url: str,
) -> None:
    calling, answering = await bridged_call(asterisk, sipp, rest)
    try:
        [session] = service.link.sessions
        shown = ["internal", "101", "→", "102", "answered"]
        await listed_then_hung_up(
            console_url, "as-e2e", session.call_id, shown, asterisk.database_url
        )
    finally:
        caller, callee = await calling, await answering
    ended_by_asterisk(caller, callee, await service.outcome())
    await no_channel_left(asterisk, rest)
