"""The operator console: the /calls API of a running service against the simulated
Asterisk, driven by ``callcontrol console``, and the platform counters read from the
shared database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.cli import app as cli_app
from callcontrol.cli.console import app
from callcontrol.console_api import ConsoleApi
from callcontrol.service import Service
from callcontrol.session import CallSession
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from dialplan.daily import local_day
from dialplan.errors import ConfigError
from models.admins import AuditEntry, os_user
from models.billing import ActiveCallSlot, DailyUsage
from models.db import create_engine
from models.directory import SqlDirectory, TerminalView
from models.migrate import head, upgrade_async
from models.provisioning import DEMO_DATASET, load_file
from models.recordings import RecordingStore, list_recordings
from models.tenants import Client
from tests.test_fastagi import FakeAsterisk
from tests.test_service import CONFIG, _free_port, bridged, until

pytest_plugins = ["tests.test_service"]

TOKEN = "console-secret"


@contextlib.asynccontextmanager
async def running(
    sim: Simulator, directory: SqlDirectory, recordings: RecordingStore | None = None
) -> AsyncIterator[Service]:
    config = replace(
        CONFIG,
        ari_url=sim.url,
        health_port=_free_port(),
        shutdown_timeout=2.0,
        teardown_timeout=5.0,
        dial_timeout=30.0,  # a ringing call outlives the console's start
        console_token=TOKEN,
    )
    service = Service(config, directory, recordings=recordings)
    task = asyncio.create_task(service.run())
    await until(lambda: service.links[0].state == "connected")
    yield service
    service.request_stop()
    await asyncio.wait_for(task, 10)


@pytest.fixture
async def served(
    sim: Simulator, demo_engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[Service]:
    recordings = RecordingStore(demo_engine, tmp_path / "recordings")
    async with running(sim, SqlDirectory(demo_engine), recordings) as service:
        yield service


def url_of(service: Service) -> str:
    return f"http://127.0.0.1:{service.config.health_port}"


async def console(
    *args: str, token: str = TOKEN, database: AsyncEngine | str | None = None
) -> tuple[int, str, str]:
    """``callcontrol console ARGS``: (exit status, stdout, stderr). It runs in a thread,
    with its own event loop, while the service goes on in this one; ``database`` is the
    shared database it is given (its direct actions are audited there)."""
    env = {"CALLCONTROL_CONSOLE_TOKEN": token}
    if database is not None:
        url = database if isinstance(database, str) else str(database.url)
        env["CALLCONTROL_DATABASE_URL"] = url
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def session_of(service: Service, call: str) -> CallSession:
    return next(s for s in service.links[0].sessions if s.call_id == call)


def state_of(service: Service, call: str) -> str | None:
    """The call's state as the console shows it; None before (or after) it is live."""
    found = [s.snapshot()["state"] for s in service.links[0].sessions if s.call_id == call]
    return str(found[0]) if found else None


async def test_an_operator_lists_records_and_hangs_up_a_live_call(
    served: Service, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    server = url_of(served)
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    session = session_of(served, call)

    code, out, err = await console("calls", "--server", server)
    assert (code, err) == (0, "")
    header, row, total = out.splitlines()
    assert header.split()[:4] == ["server", "call", "client", "kind"]
    assert row.split()[:8] == [
        "as-1",
        call,
        "acme-north",
        "external",
        "101",
        "→",
        "+34600123123",
        "answered",
    ]
    assert row.split()[-1] == "off"  # recordable, not recording
    assert total == "1 live call"

    assert await console("record", call, "start", "--server", server, database=demo_engine) == (
        0,
        f"call {call}: recording started on {server}\n",
        "",
    )
    await until(lambda: session.recorder is not None and session.recorder.live is not None)
    _, out, _ = await console("calls", "--server", server, "--client", "acme-north")
    assert out.splitlines()[1].split()[-1] == "on"
    await console("record", call, "stop", "--server", server, database=demo_engine)

    async def saved() -> bool:
        return len(await list_recordings(demo_engine, call_id=call)) == 1

    await until(saved)
    [segment] = await list_recordings(demo_engine, call_id=call)
    assert segment.segment.recorder is None  # started by an operator, not a party

    assert await console("hangup", call, "--server", server, database=demo_engine) == (
        0,
        f"call {call}: hung up (on {server})\n",
        "",
    )
    assert (await control.wait_gone(call, within=3))["gone"]
    await until(lambda: not served.links[0].sessions)
    _, out, _ = await console("calls", "--server", server)
    assert out.splitlines()[-1] == "0 live calls"

    # Each direct action is audited as this operating-system user, scoped to the call's
    # client, as the API audits its own.
    async with demo_engine.connect() as connection:
        north = (
            await connection.execute(
                select(Client.id, Client.brand_id).where(Client.name == "acme-north")
            )
        ).one()
        entries = (
            await connection.execute(
                select(
                    AuditEntry.actor_kind,
                    AuditEntry.actor,
                    AuditEntry.action,
                    AuditEntry.target,
                    AuditEntry.client_id,
                    AuditEntry.brand_id,
                    AuditEntry.before,
                )
                .where(AuditEntry.action.like("call.%"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert [(e.actor_kind, e.actor, e.action, e.target) for e in entries] == [
        ("cli", os_user(), action, f"as-1/{call}")
        for action in ("call.record_start", "call.record_stop", "call.hangup")
    ]
    assert {(e.client_id, e.brand_id) for e in entries} == {(north.id, north.brand_id)}
    assert json.loads(entries[-1].before or "{}")["id"] == call
    assert "asterisk" not in json.loads(entries[-1].before or "{}")


async def test_a_direct_action_the_shared_database_cannot_record_is_told_in_a_warning(
    served: Service, control: ControlClient, tmp_path: Path
) -> None:
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    missing = tmp_path / "none.db"
    code, out, err = await console(
        "hangup", call, "--server", url_of(served), database=f"sqlite:///{missing}"
    )
    assert (code, out) == (0, f"call {call}: hung up (on {url_of(served)})\n")
    assert err == (
        f"warning: call.hangup of call {call} on as-1 by {os_user()} (cli) is not audited: "
        f"no shared database here (sqlite:///{missing})\n"
    )
    assert not missing.exists()  # not made, empty, by asking
    assert (await control.wait_gone(call, within=3))["gone"]

    # A database that cannot take the entry: the action stands, and the line says why.
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    empty = tmp_path / "empty.db"
    empty.touch()
    code, out, err = await console(
        "hangup", call, "--server", url_of(served), database=f"sqlite:///{empty}"
    )
    assert (code, out) == (0, f"call {call}: hung up (on {url_of(served)})\n")
    assert err.startswith(f"warning: call.hangup of call {call} on as-1 by {os_user()} (cli) ")
    assert err.endswith(f"is at revision none, not {head()}: run `callcontrol db upgrade`\n")


async def test_console_refusals_are_one_line_and_a_non_zero_exit(
    served: Service, control: ControlClient
) -> None:
    server = url_of(served)
    code, out, err = await console("hangup", "no-such-call", "--server", server)
    assert (code, out) == (1, "")
    assert err == "error: no live call no-such-call on 1 server asked\n"

    # thames-consulting has no recordings feature: its calls cannot be recorded.
    call = str((await control.call("thames-george", "02079460123"))["id"])
    await bridged(control, call)
    code, _, err = await console("record", call, "start", "--server", server)
    assert (code, err) == (
        1,
        f"error: call {call} cannot be recorded (unanswered, or no feature)\n",
    )
    code, _, err = await console("record", call, "pause", "--server", server)
    assert (code, err) == (1, "error: action 'pause' is not start or stop\n")
    await control.hang_up(call)

    code, _, err = await console("calls", "--server", server, token="wrong")
    assert (code, err) == (1, f"error: server {server}: a valid console token is required\n")
    async with aiohttp.ClientSession() as http, http.get(server + "/calls") as response:
        assert response.status == 401

    nobody = f"http://127.0.0.1:{_free_port()}"
    code, out, err = await console("calls", "--server", server, "--server", nobody)
    assert code == 1
    assert out.splitlines()[-1] == "0 live calls"  # the reachable server still answers
    assert err.startswith(f"error: server {nobody}: not reachable (")
    assert len(err.splitlines()) == 1


async def test_a_call_hung_up_before_it_is_answered_says_the_operator_did(
    served: Service, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    outcomes: list[str] = []
    served.links[0].on_outcome = lambda outcome: outcomes.append(outcome.result)
    await control.endpoint("acme-north-bruno", "noanswer", after=30)
    call = str((await control.call("acme-north-ana", "102"))["id"])
    await until(lambda: state_of(served, call) == "ringing")
    assert await console("hangup", call, "--server", url_of(served), database=demo_engine) == (
        0,
        f"call {call}: hung up (on {url_of(served)})\n",
        "",
    )
    await until(lambda: outcomes == ["hung up by operator before answer"])


class Gated(SqlDirectory):
    """The demo directory, holding every terminal lookup until ``gate`` opens."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.gate = asyncio.Event()

    async def terminal(self, endpoint: str) -> TerminalView | None:
        await self.gate.wait()
        return await super().terminal(endpoint)


async def test_a_call_hung_up_while_it_is_decided_says_the_operator_did(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    # The refusal's first request (183 on the caller's leg) finds the leg already gone.
    directory = Gated(demo_engine)
    async with running(sim, directory) as service:
        outcomes: list[str] = []
        service.links[0].on_outcome = lambda outcome: outcomes.append(outcome.result)
        # bruno may not call premium numbers: a refusal, once decided.
        call = str((await control.call("acme-north-bruno", "803123456"))["id"])
        await until(lambda: state_of(service, call) == "deciding")
        code, out, _ = await console("hangup", call, "--server", url_of(service))
        assert (code, out) == (0, f"call {call}: hung up (on {url_of(service)})\n")
        assert (await control.wait_gone(call, within=3))["gone"]
        directory.gate.set()
        await until(lambda: outcomes == ["hung up by operator before answer"])


@pytest.fixture
def counted(tmp_path: Path) -> str:
    """The demo platform with acme-north (Europe/Madrid) holding three slots, one of them
    expired, and a spend on its own day and on the day before."""
    url = f"sqlite:///{tmp_path / 'counters.db'}"

    async def prepare() -> None:
        await upgrade_async(url)
        engine = create_engine(url)
        try:
            await load_file(engine, DEMO_DATASET)
            async with engine.begin() as connection:
                north = await connection.scalar(
                    select(Client.id).where(Client.name == "acme-north")
                )
                await connection.execute(
                    update(Client).where(Client.id == north).values(max_daily_usage=Decimal("12.5"))
                )
                now = datetime.now(UTC)
                await connection.execute(
                    insert(ActiveCallSlot),
                    [
                        {
                            "client_id": north,
                            "call_id": f"call-{n}",
                            "server": "as-1",
                            "direction": "outbound",
                            "acquired_at": now,
                            "lease_until": now + timedelta(seconds=lease),
                        }
                        for n, lease in enumerate((60, 60, -60))
                    ],
                )
                day = local_day(now, "Europe/Madrid")
                await connection.execute(
                    insert(DailyUsage),
                    [
                        {"client_id": north, "day": day, "amount": Decimal("3.2")},
                        {"client_id": north, "day": day - timedelta(days=1), "amount": Decimal(9)},
                    ],
                )
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    return url


def test_counters_show_every_clients_live_calls_and_spend_of_its_own_day(counted: str) -> None:
    result = CliRunner().invoke(app, ["counters", "--database-url", counted])
    day = local_day(datetime.now(UTC), "Europe/Madrid")
    assert (result.exit_code, result.stderr) == (0, "")
    header, *rows, total = result.stdout.splitlines()
    assert header.split() == [
        "client",
        "calls",
        "day",
        "spent",
        "today",
        "daily",
        "limit",
        "balance",
    ]
    by_client = {row.split()[0]: row.split()[1:] for row in rows}
    assert by_client["acme-north"] == [
        "2/10",
        day.isoformat(),
        "3.2000",
        "EUR",
        "12.5000",
        "EUR",
        "-",
    ]
    assert total == f"{len(rows)} clients"
    assert len(rows) >= 3

    result = CliRunner().invoke(app, ["counters", "--database-url", counted, "--client", "nobody"])
    assert (result.exit_code, result.stderr) == (1, "error: no client named 'nobody'\n")


async def test_a_call_the_fastagi_front_decided_is_listed_and_ended_through_ari(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    config = replace(
        CONFIG,
        ari_url=sim.url,
        health_port=_free_port(),
        fastagi_port=_free_port(),
        console_token=TOKEN,
    )
    service = Service(config, SqlDirectory(demo_engine))
    task = asyncio.create_task(service.run())
    try:
        await until(lambda: service.links[0].state == "connected")
        assert service.fastagi is not None
        asterisk = FakeAsterisk(config.fastagi_port)
        decided = await asterisk.decide("agi-1.1", "thames-george", "02079460123")
        assert decided["CC_ACTION"] == "dial"
        code, out, _ = await console("calls", "--server", url_of(service))
        row = out.splitlines()[1].split()
        assert (code, row[1], row[3], row[7]) == (0, "agi-1.1", "external", "dialplan")
        # This Asterisk has no such channel: nothing to end, and the call is not marked.
        code, _, err = await console("hangup", "agi-1.1", "--server", url_of(service))
        assert (code, "no live call agi-1.1" in err) == (1, True)
        assert not service.fastagi.decided["agi-1.1"].by_operator
        # A channel it has is ended through its ARI link, whoever decided it.
        live = str((await control.call("acme-north-bruno", "102"))["id"])
        assert await service.hang_up_channel(live)
        await control.wait_gone(live, within=5)
        assert not await service.hang_up_channel("no-such-channel")
        # Its end, reported by the dialplan, takes it off the list (a stop waits for it).
        ended = {"agi_arg_1": "dial", "agi_arg_2": "ANSWER", "agi_arg_3": "900", "agi_arg_4": "16"}
        assert await asterisk.request("end", "agi-1.1", **ended) == []
        assert "agi-1.1" not in service.fastagi.decided
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def console_only(token: str = TOKEN) -> AsyncIterator[int]:
    """The console's routes alone (no call), served on a free loopback port."""
    application = web.Application()
    ConsoleApi("as-1", [], token).install(application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes, bytes]:
    """Send bytes no HTTP client would (undecodable headers, bad charsets): the status,
    the headers and the body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    headers, _, content = answer.partition(b"\r\n\r\n")
    return int(headers.split()[1]), headers, content


def recording_post(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"POST /calls/call-1/recording HTTP/1.1\r\nHost: console\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: "
        + content_type
        + f"\r\nContent-Length: {len(body)}\r\n".encode()
    )


MALFORMED = {
    "token bytes that are not UTF-8": (
        b"GET /calls HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer \xff\xfe\r\n",
        b"",
        401,
    ),
    "a body that is not UTF-8": (recording_post(b'{"action": "\xff"}'), b'{"action": "\xff"}', 400),
    "an unknown charset": (
        recording_post(b'{"action": "start"}', b"application/json; charset=x-bogus"),
        b'{"action": "start"}',
        415,
    ),
    "a UTF-16 body": (
        recording_post(b'{"action": "start"} ', b"application/json; charset=utf-16"),
        b'{"action": "start"} ',
        415,
    ),
    "JSON nested too deeply": (recording_post(b"[" * 60_000), b"[" * 60_000, 400),
    "a hundred thousand brackets": (recording_post(b"[" * 100_000), b"[" * 100_000, 413),
    "a body over 64 KiB": (recording_post(b" " * 2_000_000), b" " * 2_000_000, 413),
    "a chunked body over 64 KiB": (
        b"POST /calls/call-1/recording HTTP/1.1\r\nHost: console\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n",
        b"".join(b"4000\r\n" + b" " * 0x4000 + b"\r\n" for _ in range(5)) + b"0\r\n\r\n",
        413,
    ),
    "JSON that is not an object": (recording_post(b'["start"]'), b'["start"]', 400),
    "an action the console does not have": (
        b"POST /calls/call-1/transfer HTTP/1.1\r\nHost: console\r\n",
        b"",
        404,
    ),
    "a method a route does not take": (
        b"GET /calls/call-1/hangup HTTP/1.1\r\nHost: console\r\n",
        b"",
        405,
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_console_request_is_a_4xx_with_a_one_line_json_reason(
    case: str,
) -> None:
    head, body, status = MALFORMED[case]
    async with console_only() as port:
        answered, headers, content = await raw_request(port, head, body)
    assert answered == status
    assert b"application/json" in headers
    reason = json.loads(content)["error"]
    assert reason
    assert "\n" not in reason
    assert len(reason) < 120


async def test_the_console_still_answers_after_malformed_requests() -> None:
    async with console_only() as port, aiohttp.ClientSession() as http:
        for head, body, _ in MALFORMED.values():
            await raw_request(port, head, body)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with http.get(f"http://127.0.0.1:{port}/calls", headers=headers) as response:
            assert (response.status, await response.json()) == (
                200,
                {"server": "as-1", "calls": []},
            )
        url = f"http://127.0.0.1:{port}/calls/{'x' * 500}/recording"
        async with http.post(url, json={"action": "start"}, headers=headers) as response:
            assert response.status == 404
            assert (await response.json())["error"] == (
                f"no live call '{'x' * 80}'... (500 characters) on as-1"
            )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "console.example"])
async def test_without_a_token_the_console_is_not_served_on_a_public_address(
    host: str, sim: Simulator, demo_engine: AsyncEngine
) -> None:
    port = _free_port()
    config = replace(CONFIG, ari_url=sim.url, health_host=host, health_port=port)
    service = Service(config, SqlDirectory(demo_engine))
    with pytest.raises(ConfigError, match="console_token is not set") as refused:
        await asyncio.wait_for(service.run(), 5)
    assert "\n" not in str(refused.value)
    assert service.links[0].state == "connecting"  # never started
    with pytest.raises(ConnectionRefusedError):  # nothing listens
        await asyncio.open_connection("127.0.0.1", port)


def test_run_refuses_a_tokenless_console_on_a_public_address_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'public.db'}"
    assert CliRunner().invoke(cli_app, ["db", "upgrade", "--database-url", url]).exit_code == 0
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": url,
        "CALLCONTROL_HEALTH_HOST": "0.0.0.0",
        "CALLCONTROL_HEALTH_PORT": str(_free_port()),
        "CALLCONTROL_ARI_URL": "http://127.0.0.1:9/",  # never reached
    }
    # A process, bounded: a run that does not refuse serves until stopped.
    done = subprocess.run(
        [sys.executable, "-m", "callcontrol", "run"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == (
        "error: health_host '0.0.0.0' is not a loopback address and console_token is not set: "
        "anyone reaching it could hang up calls; set console_token (or health_host = 127.0.0.1)"
    )


async def test_a_tokenless_console_on_loopback_is_served_with_a_warning_and_logs_actions(
    sim: Simulator,
    demo_engine: AsyncEngine,
    control: ControlClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = _free_port()
    config = replace(
        CONFIG, ari_url=sim.url, health_port=port, dial_timeout=30.0, shutdown_timeout=2.0
    )
    service = Service(config, SqlDirectory(demo_engine))
    with caplog.at_level(logging.INFO, logger="callcontrol.console"):
        task = asyncio.create_task(service.run())
        try:
            await until(lambda: service.links[0].state == "connected")
            [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert warning.getMessage() == (
                f"console on 127.0.0.1:{port} has no console_token: any local user can list, "
                "hang up and record calls"
            )
            call = str((await control.call("acme-north-ana", "102"))["id"])
            await bridged(control, call)
            base = f"http://127.0.0.1:{port}/calls"
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/{call}/hangup") as response:
                    assert response.status == 202
                async with http.post(f"{base}/nobody/hangup") as response:
                    assert response.status == 404
        finally:
            service.request_stop()
            await asyncio.wait_for(task, 10)
    actions = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert actions == [
        f"operator at 127.0.0.1: hangup of call {call}: done (202)",
        "operator at 127.0.0.1: hangup of call nobody: no such live call (404)",
    ]


async def test_every_operator_action_is_one_line_naming_who_what_and_which_call(
    served: Service, control: ControlClient, caplog: pytest.LogCaptureFixture
) -> None:
    server = url_of(served)
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    with caplog.at_level(logging.INFO, logger="callcontrol.console"):
        await console("record", call, "start", "--server", server)
        await console("record", call, "stop", "--server", server)
        await console("hangup", call, "--server", server)
        await console("calls", "--server", server, token="wrong")
    lines = [r.getMessage() for r in caplog.records if r.name == "callcontrol.console"]
    assert lines == [
        f"operator at 127.0.0.1: recording start of call {call}: done (202)",
        f"operator at 127.0.0.1: recording stop of call {call}: done (202)",
        f"operator at 127.0.0.1: hangup of call {call}: done (202)",
        "console: GET /calls refused to 127.0.0.1: no valid token",
    ]
