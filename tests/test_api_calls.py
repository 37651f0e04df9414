"""Live calls through the API against a service on the simulated Asterisk: listed per
role, hung up and recorded by those allowed (audited), invisible to other tenants, and
streamed as server-sent events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.api.servers import LiveCalls, consoles, diff, new_key, register, seal, unseal
from callcontrol.cli import app as cli_app
from callcontrol.cli.console import app as console_app
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from models.admins import AuditEntry, os_user
from models.migrate import downgrade, upgrade_async
from models.platform import ApplicationServer
from models.tenants import Client
from tests.conftest import audit_entries
from tests.live_world import PASSWORDS, LiveWorld, live_world
from tests.test_console import TOKEN
from tests.test_service import bridged, until

pytest_plugins = ["tests.test_service"]


@pytest.fixture
async def world(
    sim: Simulator, demo_engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[tuple[LiveWorld, httpx.AsyncClient]]:
    async with live_world(sim, demo_engine, tmp_path) as found:
        yield found


async def listed(world: LiveWorld, http: httpx.AsyncClient, who: str) -> list[dict[str, Any]]:
    answer = await http.get("/api/calls", headers=await world.login(http, who))
    assert answer.status_code == 200, answer.text
    calls: list[dict[str, Any]] = answer.json()["calls"]
    return calls


async def test_live_calls_are_listed_per_role_and_hung_up_with_an_audit_entry(
    world: tuple[LiveWorld, httpx.AsyncClient], control: ControlClient
) -> None:
    live, http = world
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)

    for who in ("root", "iberia-admin", "acme-north-admin", "acme-north-viewer"):
        [seen] = await listed(live, http, who)
        assert (seen["id"], seen["client"], seen["server"]) == (call, "acme-north", "as-1")
        assert ("asterisk" in seen) is (who == "root")  # the Asterisk URL is god's
    for who in ("atlantic-admin", "thames-admin"):
        assert await listed(live, http, who) == []

    path = f"/api/calls/as-1/{call}/hangup"
    # Another client's (or brand's) admin: 404, as a call that does not exist.
    for who in ("thames-admin", "atlantic-admin"):
        answer = await http.post(path, headers=await live.login(http, who))
        assert answer.status_code == 404
        assert call in answer.json()["detail"]
    # Read-only on billable_calls: may see, may not hang up.
    answer = await http.post(path, headers=await live.login(http, "acme-north-viewer"))
    assert answer.status_code == 403
    assert (await control.channel(call)).get("bridge_id")

    answer = await http.post(path, headers=await live.login(http, "acme-north-admin"))
    assert answer.status_code == 202
    assert answer.json() == {"server": "as-1", "call": call, "action": "call.hangup"}
    assert (await control.wait_gone(call, within=5))["gone"]
    await until(lambda: not live.service.links[0].sessions)
    assert await listed(live, http, "acme-north-admin") == []

    async with live.engine.connect() as connection:
        entries = (
            await connection.execute(
                select(
                    AuditEntry.actor_kind, AuditEntry.actor, AuditEntry.action, AuditEntry.target
                ).where(AuditEntry.action.like("call.%"))
            )
        ).all()
    assert entries == [("client", "acme-north-admin", "call.hangup", f"as-1/{call}")]
    audit = await http.get("/api/audit", headers=await live.login(http, "thames-admin"))
    assert all(entry["action"] != "call.hangup" for entry in audit.json())


async def test_recording_from_the_api_and_unknown_calls(
    world: tuple[LiveWorld, httpx.AsyncClient], control: ControlClient
) -> None:
    live, http = world
    headers = await live.login(http, "acme-north-admin")
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    answer = await http.post(f"/api/calls/as-1/{call}/record/start", headers=headers)
    assert answer.status_code == 202, answer.text
    await until(
        lambda: any(
            s.recorder is not None and s.recorder.live is not None
            for s in live.service.links[0].sessions
        )
    )
    [seen] = await listed(live, http, "acme-north-admin")
    assert seen["recording"] is True
    assert (
        await http.post(f"/api/calls/as-1/{call}/record/stop", headers=headers)
    ).status_code == 202
    viewer = await live.login(http, "acme-north-viewer")
    assert (
        await http.post(f"/api/calls/as-1/{call}/record/start", headers=viewer)
    ).status_code == 403
    assert (
        await http.post(f"/api/calls/as-1/{call}/record/pause", headers=headers)
    ).status_code == 422
    assert (await http.post("/api/calls/as-1/nope/hangup", headers=headers)).status_code == 404
    assert (await http.post(f"/api/calls/as-9/{call}/hangup", headers=headers)).status_code == 404
    assert (await http.get("/api/calls")).status_code == 401
    await control.hang_up(call)
    async with live.engine.connect() as connection:
        actions = (
            await connection.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.action.like("call.%"))
                .order_by(AuditEntry.id)
            )
        ).all()
    assert actions == ["call.record_start", "call.record_stop"]


async def events_of(
    http: httpx.AsyncClient, headers: dict[str, str], wanted: int, within: float
) -> list[tuple[str, dict[str, Any]]]:
    """The first ``wanted`` events of a stream (bounded by ``within`` seconds)."""
    ticket = (await http.post("/api/calls/events/ticket", headers=headers)).json()["ticket"]
    found: list[tuple[str, dict[str, Any]]] = []
    async with (
        asyncio.timeout(within),
        http.stream("GET", "/api/calls/events", params={"ticket": ticket}) as stream,
    ):
        assert stream.status_code == 200
        name = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                found.append((name, json.loads(line.removeprefix("data: "))))
                if len(found) >= wanted:
                    break
    return found


async def test_the_events_stream_tells_start_answer_and_end_to_those_who_may_see(
    world: tuple[LiveWorld, httpx.AsyncClient], control: ControlClient
) -> None:
    live, http = world
    north = await live.login(http, "acme-north-admin")
    thames = await live.login(http, "thames-admin")

    async def place() -> str:
        await asyncio.sleep(1.0)  # the streams are open and polled once
        call = str((await control.call("acme-north-ana", "600123123"))["id"])
        await bridged(control, call)
        await asyncio.sleep(1.0)
        await control.hang_up(call)
        return call

    placing = asyncio.create_task(place())
    seen = await events_of(http, north, 3, within=20)
    call = await placing
    assert [(name, event["id"]) for name, event in seen] == [
        ("start", call),
        ("answer", call),
        ("end", call),
    ]
    # thames's stream saw none of it: the next call it is told of is its own.
    placing = asyncio.create_task(_thames_call(control))
    [(name, event)] = await events_of(http, thames, 1, within=20)
    assert (name, event["client"]) == ("start", "thames-consulting")
    await control.hang_up(await placing)

    # A ticket is good once.
    ticket = (await http.post("/api/calls/events/ticket", headers=north)).json()["ticket"]
    async with http.stream("GET", "/api/calls/events", params={"ticket": ticket}) as first:
        assert first.status_code == 200
    again = await http.get("/api/calls/events", params={"ticket": ticket})
    assert again.status_code == 401


async def test_a_stream_ends_when_its_session_does(
    world: tuple[LiveWorld, httpx.AsyncClient],
) -> None:
    live, http = world
    north = await live.login(http, "acme-north-admin")
    ticket = (await http.post("/api/calls/events/ticket", headers=north)).json()["ticket"]
    async with (
        asyncio.timeout(20),
        http.stream("GET", "/api/calls/events", params={"ticket": ticket}) as stream,
    ):
        lines = stream.aiter_lines()
        assert await anext(lines) == ": connected"
        assert (await http.post("/api/logout", headers=north)).status_code == 204
        rest = [line async for line in lines if line]
    assert rest[-2:] == ["event: expired", "data: {}"]


async def _thames_call(control: ControlClient) -> str:
    await asyncio.sleep(1.0)
    # An acme-north call first: thames's stream must skip it.
    other = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, other)
    await asyncio.sleep(0.6)
    await control.hang_up(other)
    call = str((await control.call("thames-george", "02079460123"))["id"])
    await bridged(control, call)
    return call


async def test_the_page_is_served_with_a_strict_policy(
    world: tuple[LiveWorld, httpx.AsyncClient],
) -> None:
    _, http = world
    answer = await http.get("/console")
    assert answer.status_code == 200
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert "innerHTML" not in answer.text  # tenant data goes through textContent
    assert "localStorage" not in answer.text
    assert "sessionStorage" not in answer.text


async def test_counters_show_money_only_where_prices_are_shown(
    world: tuple[LiveWorld, httpx.AsyncClient],
) -> None:
    live, http = world

    async def counters(who: str) -> dict[str, dict[str, Any]]:
        answer = await http.get("/api/counters", headers=await live.login(http, who))
        assert answer.status_code == 200, answer.text
        return {row["client"]: row for row in answer.json()}

    money = {"spent_today", "currency", "balance"}
    god = await counters("root")
    assert set(god) >= {"acme-north", "thames-consulting"}
    assert money <= set(god["thames-consulting"])
    assert (god["thames-consulting"]["balance"], god["acme-north"]["balance"]) == (
        "100.0000",
        None,  # postpaid: no balance to tell
    )
    # Neither client shows external call prices (show_external_call_prices off): their
    # admins see the calls counted, never the money.
    for who, client in (("acme-north-admin", "acme-north"), ("thames-admin", "thames-consulting")):
        seen = await counters(who)
        assert list(seen) == [client]
        assert set(seen[client]) == {"client", "calls", "max_calls", "day"}
    assert money <= set((await counters("atlantic-admin"))["thames-consulting"])

    # Once thames's brand shows it its prices, its admin sees its spend and balance too.
    brand = await live.login(http, "atlantic-admin")
    clients = (await http.get("/api/clients", headers=brand)).json()
    thames = next(row["id"] for row in clients if row["name"] == "thames-consulting")
    shown = {"invoice": {"show_external_call_prices": True}}
    answer = await http.patch(f"/api/clients/{thames}", headers=brand, json=shown)
    assert answer.status_code == 200, answer.text
    row = (await counters("thames-admin"))["thames-consulting"]
    assert (row["balance"], row["currency"]) == ("100.0000", "GBP")
    assert "spent_today" in row


def test_the_token_is_sealed_and_a_wrong_key_opens_nothing() -> None:
    made = CliRunner().invoke(cli_app, ["api", "console-key"])
    assert made.exit_code == 0
    key, other = made.stdout.strip(), new_key()
    sealed = seal(key, TOKEN)
    assert TOKEN not in sealed
    assert unseal(key, sealed) == TOKEN
    assert unseal(other, sealed) is None


def server_console_env(engine: AsyncEngine, key: str) -> dict[str, str]:
    """What ``callcontrol api server-console`` reads: the database, the sealing key, the
    server's console token."""
    return {
        "CALLCONTROL_DATABASE_URL": str(engine.url),
        "CALLCONTROL_API_SECRET_KEY": key,
        "CALLCONTROL_CONSOLE_TOKEN": TOKEN,
    }


async def test_a_server_registered_from_the_command_line_keeps_its_token_sealed(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    key = new_key()
    env = server_console_env(demo_engine, key)
    runner = CliRunner()
    args = ["api", "server-console", "as-1", "--url", "http://127.0.0.1:8089/"]
    result = await asyncio.to_thread(runner.invoke, cli_app, args, env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "server as-1: console http://127.0.0.1:8089 (token: sealed)\n"
    assert TOKEN not in result.output
    assert key not in result.output
    async with demo_engine.connect() as connection:
        stored = await connection.scalar(
            select(ApplicationServer.console_token).where(ApplicationServer.name == "as-1")
        )
    assert stored is not None
    assert TOKEN not in stored
    [found] = await consoles(demo_engine, key)
    assert (found.server, found.url, found.token) == ("as-1", "http://127.0.0.1:8089", TOKEN)
    assert TOKEN not in repr(found)
    assert await consoles(demo_engine, new_key()) == []  # another key: skipped

    keyless = {**env, "CALLCONTROL_API_SECRET_KEY": ""}
    args = ["api", "server-console", "as-1", "--url", "http://127.0.0.1:8089"]
    result = await asyncio.to_thread(runner.invoke, cli_app, args, env=keyless)
    assert (result.exit_code, result.stderr) == (
        1,
        "error: api_secret_key is not set: make one with `callcontrol api console-key`\n",
    )
    for bad, line in [
        (["as-9", "--url", "http://x:1"], "error: no application server named as-9\n"),
        (
            ["as-1", "--url", "ftp://x"],
            "error: --url ftp://x is not an http(s) URL without credentials\n",
        ),
    ]:
        result = await asyncio.to_thread(
            runner.invoke, cli_app, ["api", "server-console", *bad], env=env
        )
        assert (result.exit_code, result.stderr) == (1, line)


async def test_a_slow_subscriber_is_dropped_not_buffered() -> None:
    polls = iter(range(10_000))

    async def fetch() -> dict[tuple[str, str], dict[str, Any]]:
        n = next(polls)
        return {("as-1", f"c{n}"): {"id": f"c{n}", "state": "ringing"}}

    live = LiveCalls(fetch, interval=3600)
    async with live.subscribe(lambda call: True) as slow:
        await live.close()  # no background poller: polls by hand
        live.subscribers.add(slow)
        for _ in range(400):  # a start and an end per poll: past the queue's bound
            await live.poll_once()
        assert slow.dropped
        assert slow not in live.subscribers
        assert slow.queue.qsize() == 1
        assert slow.queue.get_nowait() is None


def test_the_diff_of_two_polls() -> None:
    ringing = {("as-1", "a"): {"id": "a", "state": "ringing", "recording": False}}
    answered = {("as-1", "a"): {"id": "a", "state": "answered", "recording": False}}
    recording = {("as-1", "a"): {"id": "a", "state": "answered", "recording": True}}
    assert [n for n, _ in diff({}, ringing)] == ["start"]
    assert [n for n, _ in diff({}, answered)] == ["start", "answer"]
    assert [n for n, _ in diff(ringing, answered)] == ["answer"]
    assert [n for n, _ in diff(answered, recording)] == ["update"]
    assert diff(answered, answered) == []
    assert [n for n, _ in diff(answered, {})] == ["end"]


async def test_the_console_commands_through_the_api_act_as_the_administrator(
    world: tuple[LiveWorld, httpx.AsyncClient], control: ControlClient, tmp_path: Path
) -> None:
    live, _ = world
    secret = tmp_path / "password"
    secret.write_text(PASSWORDS["acme-north-admin"] + "\n")

    async def console(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = await asyncio.to_thread(
            CliRunner().invoke, console_app, list(args), input=stdin, env={"COLUMNS": "200"}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)
    north = ("--api", live.url, "--user", "acme-north-admin", "--password-file", str(secret))
    code, out, err = await console("calls", *north)
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:3] == ["as-1", call, "acme-north"]
    assert out.splitlines()[-1] == "1 live call"

    thames = ("--api", live.url, "--user", "thames-admin")
    code, out, _ = await console("calls", *thames, stdin=PASSWORDS["thames-admin"] + "\n")
    assert (code, out.splitlines()[-1]) == (0, "0 live calls")
    code, _, err = await console("hangup", call, *thames, stdin=PASSWORDS["thames-admin"] + "\n")
    assert (code, err) == (1, f"error: no live call {call} that thames-admin may see\n")
    code, _, err = await console("calls", *thames, stdin="wrong-password\n")
    assert (code, err) == (1, "error: login as thames-admin: wrong username or password\n")
    code, _, err = await console("calls", "--user", "x")
    assert (code, err) == (1, "error: --user goes with --api URL\n")

    assert await console("hangup", call, *north) == (0, f"call {call}: hung up (on as-1)\n", "")
    assert (await control.wait_gone(call, within=5))["gone"]
    async with live.engine.connect() as connection:
        actors = (
            await connection.execute(
                select(AuditEntry.actor, AuditEntry.action).where(AuditEntry.action.like("call.%"))
            )
        ).all()
    assert actors == [("acme-north-admin", "call.hangup")]


async def run_console(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """``callcontrol console ARGS`` in a thread (the API and the service go on in this
    loop): (exit status, stdout, stderr)."""
    result = await asyncio.to_thread(
        CliRunner().invoke,
        console_app,
        list(args),
        input=stdin,
        env={"COLUMNS": "200", **(env or {})},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def counted_rows(out: str) -> dict[str, list[str]]:
    """``console counters``' table: each client's cells after its name."""
    _, *rows, _ = out.splitlines()
    return {row.split()[0]: row.split()[1:] for row in rows}


async def test_console_counters_through_the_api_show_the_administrators_clients_and_money(
    world: tuple[LiveWorld, httpx.AsyncClient], tmp_path: Path
) -> None:
    live, _ = world
    async with live.engine.begin() as connection:
        for client, shown in (("thames-consulting", False), ("acme-north", True)):
            await connection.execute(
                update(Client).where(Client.name == client).values(show_external_call_prices=shown)
            )
    secret = tmp_path / "password"
    secret.write_text(PASSWORDS["root"] + "\n")

    code, out, err = await run_console(
        "counters", "--api", live.url, "--user", "root", "--password-file", str(secret)
    )
    assert (code, err) == (0, "")
    god = counted_rows(out)
    assert {"acme-north", "thames-consulting", "hudson-dental"} <= set(god)
    assert god["thames-consulting"][2:] == ["0.0000", "GBP", "-", "100.0000", "GBP"]  # money
    assert out.splitlines()[-1] == f"{len(god)} clients"

    thames = ("--api", live.url, "--user", "thames-admin")
    code, out, err = await run_console("counters", *thames, stdin=PASSWORDS["thames-admin"] + "\n")
    assert (code, err) == (0, "")
    [(client, cells)] = counted_rows(out).items()
    assert client == "thames-consulting"
    assert cells[2:] == ["hidden", "hidden", "hidden"]  # its client hides prices from it

    code, out, err = await run_console(
        "counters", *thames, "--client", "acme-north", stdin=PASSWORDS["thames-admin"] + "\n"
    )
    assert (code, out) == (1, "")
    assert err == "error: no client named 'acme-north' that thames-admin may see\n"

    north = ("--api", live.url, "--user", "acme-north-admin")
    code, out, _ = await run_console(
        "counters", *north, "--client", "acme-north", stdin=PASSWORDS["acme-north-admin"] + "\n"
    )
    [(client, cells)] = counted_rows(out).items()
    assert (code, client, cells[0], cells[3]) == (0, "acme-north", "0/10", "EUR")


async def test_the_console_goes_through_the_configured_api_and_directly_only_when_asked(
    world: tuple[LiveWorld, httpx.AsyncClient],
    control: ControlClient,
    demo_engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    live, _ = world
    secret = tmp_path / "password"
    secret.write_text(PASSWORDS["thames-admin"] + "\n")
    port = live.service.config.health_port
    env = {
        "CALLCONTROL_CONSOLE_API_URL": live.url,
        "CALLCONTROL_CONSOLE_USER": "thames-admin",
        "CALLCONTROL_CONSOLE_PASSWORD_FILE": str(secret),
        "CALLCONTROL_CONSOLE_TOKEN": TOKEN,
        "CALLCONTROL_HEALTH_PORT": str(port),
        "CALLCONTROL_DATABASE_URL": str(demo_engine.url),
    }
    call = str((await control.call("acme-north-ana", "600123123"))["id"])
    await bridged(control, call)

    # Through the API, as the configured administrator: another client's call is not seen.
    code, out, err = await run_console("calls", env=env)
    assert (code, err, out.splitlines()[-1]) == (0, "", "0 live calls")
    code, out, _ = await run_console("counters", env=env)
    assert (code, list(counted_rows(out))) == (0, ["thames-consulting"])
    code, _, err = await run_console("hangup", call, env=env)
    assert (code, err) == (1, f"error: no live call {call} that thames-admin may see\n")

    # Directly, only when asked: the server's own /calls, the shared database.
    for direct in (("--direct",), ("--server", f"http://127.0.0.1:{port}")):
        code, out, err = await run_console("calls", *direct, env=env)
        assert (code, err, out.splitlines()[-1]) == (0, "", "1 live call")
    code, out, _ = await run_console("counters", "--direct", env=env)
    assert (code, "acme-north" in counted_rows(out)) == (0, True)
    code, _, err = await run_console("calls", "--api", live.url, "--direct", env=env)
    assert (code, err) == (1, "error: --api and --direct exclude each other\n")

    # Another administrator on the command line: its own password, not the configured one.
    north = PASSWORDS["acme-north-admin"] + "\n"
    code, out, err = await run_console(
        "hangup", call, "--user", "acme-north-admin", stdin=north, env=env
    )
    assert (code, out, err) == (0, f"call {call}: hung up (on as-1)\n", "")
    assert (await control.wait_gone(call, within=5))["gone"]
    async with live.engine.connect() as connection:
        actors = (
            await connection.execute(
                select(AuditEntry.actor_kind, AuditEntry.actor, AuditEntry.action).where(
                    AuditEntry.action.like("call.%")
                )
            )
        ).all()
    assert actors == [("client", "acme-north-admin", "call.hangup")]

    bad = {**env, "CALLCONTROL_CONSOLE_API_URL": "cc.example.com"}
    code, _, err = await run_console("calls", env=bad)
    assert (code, err) == (1, "error: console_api_url 'cc.example.com' is not an http(s) URL\n")
    nobody = {**env, "CALLCONTROL_CONSOLE_USER": ""}
    code, _, err = await run_console("calls", env=nobody)
    assert (code, err) == (
        1,
        "error: console_api_url needs --user NAME or console_user (an administrator of the API)\n",
    )


async def test_migration_0011_goes_down_and_up_keeping_the_servers(
    demo_engine: AsyncEngine,
) -> None:
    url = str(demo_engine.url).replace("+aiosqlite", "")
    key = new_key()
    assert await register(demo_engine, key, "as-1", "http://127.0.0.1:8089", TOKEN)
    await asyncio.to_thread(downgrade, url, "0010")

    def columns(connection: Any) -> set[str]:
        return {c["name"] for c in inspect(connection).get_columns("application_servers")}

    async with demo_engine.connect() as connection:
        assert "console_token" not in await connection.run_sync(columns)
        servers = (await connection.execute(text("SELECT name FROM application_servers"))).all()
    assert ("as-1",) in servers
    await upgrade_async(url)
    assert await consoles(demo_engine, key) == []  # registered again after an upgrade


async def test_registering_a_servers_console_is_audited_without_its_token(
    demo_engine: AsyncEngine,
) -> None:
    key = new_key()
    env = server_console_env(demo_engine, key)
    runner = CliRunner()
    for url, environment in (
        ("http://127.0.0.1:8089/", env),
        ("http://127.0.0.1:8090", {**env, "CALLCONTROL_CONSOLE_TOKEN": ""}),
    ):
        args = ["api", "server-console", "as-1", "--url", url]
        result = await asyncio.to_thread(runner.invoke, cli_app, args, env=environment)
        assert result.exit_code == 0, result.output
    missing = ["api", "server-console", "as-9", "--url", "http://127.0.0.1:1"]
    assert (await asyncio.to_thread(runner.invoke, cli_app, missing, env=env)).exit_code == 1

    entries = [e for e in await audit_entries(demo_engine) if e["action"] == "server.console"]
    assert [(e["target"], e["before"], e["after"]) for e in entries] == [
        (
            "as-1",
            {"console_url": None, "console_token": None},
            {"console_url": "http://127.0.0.1:8089", "console_token": "********"},
        ),
        (
            "as-1",
            {"console_url": "http://127.0.0.1:8089", "console_token": "********"},
            {"console_url": "http://127.0.0.1:8090", "console_token": None},
        ),
    ]  # the unknown server changed nothing and told nothing
    for entry in entries:
        assert (entry["actor_kind"], entry["actor"]) == ("cli", os_user())
        assert (entry["brand_id"], entry["client_id"]) == (None, None)  # god's to read
        assert TOKEN not in str(entry)
        assert key not in str(entry)
