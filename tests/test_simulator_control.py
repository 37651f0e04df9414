"""The control API and ``callcontrol simulate``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from typer.testing import CliRunner

from callcontrol.cli import app as cli
from callcontrol.cli.simulator import drive_call
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient, ControlError
from tests.simulator_helpers import APP, PASSWORD, USER, AppSocket, Rest

pytest_plugins = ["tests.simulator_fixtures"]


async def test_without_the_app_the_call_goes_on_in_the_dialplan_and_ends_there(
    sim: Simulator, control: ControlClient
) -> None:
    channel = await control.call("alice", "1002")
    assert channel["in_stasis"] is False
    end = await control.wait_gone(channel["id"], 5)
    assert (end["cause"], end["cause_txt"]) == (34, "Circuit/channel congestion")
    assert await control.events() == []  # nobody was told


async def test_bad_control_requests_name_what_is_wrong(
    app: AppSocket, control: ControlClient
) -> None:
    with pytest.raises(ControlError, match="to: Field required"):
        await control._request("POST", "/calls", json={"from": "alice"})
    with pytest.raises(ControlError, match="reason"):
        await control._request("POST", "/calls", json={"from": "a", "to": "1", "reason": "x"})
    with pytest.raises(ControlError) as gone:
        await control.press("nobody", "1")
    assert gone.value.status == 404
    with pytest.raises(ControlError, match="unknown reason"):
        channel = await control.call("alice", "1")
        await control.hang_up(channel["id"], reason="vanished")
    with pytest.raises(ControlError, match="since"):
        await control._request("GET", "/events", params={"since": "x"})
    with pytest.raises(ControlError, match="timeout"):
        await control._request("GET", f"/channels/{channel['id']}/wait", params={"timeout": "x"})
    with pytest.raises(ControlError):
        await control.call("PJSIP/", "1")
    with pytest.raises(ControlError) as unknown:
        await control.wait_gone("never-existed", 0.01)
    assert unknown.value.status == 404


async def test_a_far_end_hangup_is_scheduled_and_awaited_without_polling(
    app: AppSocket, control: ControlClient
) -> None:
    channel = await control.call("alice", "1002", hangup_after=1.0, args="carrier")
    assert channel["dialplan"]["context"] == "from-carriers"
    assert (await control.wait_gone(channel["id"], 0.001))["gone"] is False
    end = await control.wait_gone(channel["id"], 5)
    assert end == {"id": channel["id"], "gone": True, "cause": 16, "cause_txt": "Normal Clearing"}
    assert (await control.wait_gone(channel["id"], 5))["gone"] is True  # already gone
    other = await control.call("bob", "1002")
    await control.hang_up(other["id"], after=0.01, cause=21)
    assert (await control.wait_gone(other["id"], 5))["cause"] == 21


async def test_endpoints_media_and_logs_can_be_read_and_reset(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await control.endpoint("_default", "busy", after=0.0)
    await control.endpoint("carrier-1", "noanswer", ring=True)
    behaviours = await control._request("GET", "/endpoints")
    assert behaviours["_default"] == {"answer": "busy", "after": 0.0, "ring": False, "sip": 486}
    assert behaviours["carrier-1"]["ring"] is True
    await control._request("DELETE", "/endpoints/carrier-1")
    await control.media(2.5, "sound:beep")
    await control.media(0.2)
    assert (sim.config.media_seconds, sim.config.playback_seconds) == ({"sound:beep": 2.5}, 0.2)
    channel = await control.call("alice", "1002")
    await rest("POST", f"/channels/{channel['id']}/ring")
    await rest("POST", f"/channels/{channel['id']}/progress")
    await rest("DELETE", f"/channels/{channel['id']}/ring")
    assert (await control.channel(channel["id"]))["indications"] == [
        "ring",
        "progress",
        "ring_stop",
    ]
    await rest("POST", "/bridges", bridgeId="b1")
    assert [bridge["id"] for bridge in await control.bridges()] == ["b1"]
    assert await control.recordings() == {"live": [], "stored": []}
    logged = await control.requests()
    assert [row["operation"] for row in logged[-4:]] == [
        "channels.ring", "channels.progress", "channels.ringStop", "bridges.create",
    ]  # fmt: skip
    assert logged[-1]["params"] == {"bridgeId": "b1"}
    assert logged[-1]["status"] == 200
    assert await control.requests(since=logged[-1]["sequence"]) == []
    events = await control.events(channel["id"])
    assert [event["type"] for event in events] == ["StasisStart"]
    await control.reset()
    assert await control.channels() == []
    assert await control.requests() == []
    assert sim.config.default_behaviour.answer == "answer"


async def test_simulate_call_prints_the_call_as_it_happened(
    sim: Simulator, app: AppSocket, rest: Rest
) -> None:
    lines: list[str] = []
    placing = asyncio.create_task(
        drive_call(
            sim.url, {"from": "alice", "to": "1002", "dtmf": [{"digits": "5"}]}, 5, lines.append
        )
    )
    started = await app.next("StasisStart")
    await app.next("ChannelDtmfReceived")
    await rest("DELETE", f"/channels/{started['channel']['id']}", reason="busy")
    end = await placing
    assert end["cause"] == 17
    assert lines[0].startswith(f"call {started['channel']['id']} PJSIP/alice-")
    assert any("ChannelDtmfReceived  5" in line for line in lines)
    assert lines[-1] == "ended: cause 17 (User busy)"


def test_simulate_has_help_and_fails_in_one_line_without_a_simulator() -> None:
    runner = CliRunner()
    assert "serve" in runner.invoke(cli, ["simulate", "--help"]).output
    result = runner.invoke(
        cli, ["simulate", "call", "--from", "a", "--to", "1", "--url", "http://127.0.0.1:9/"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: no simulator at http://127.0.0.1:9/")
    bad = runner.invoke(cli, ["simulate", "call", "--from", "a", "--to", "1", "--dtmf", "1@x"])
    assert bad.exit_code == 2


async def test_simulate_serve_and_call_work_from_the_command_line(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "from callcontrol.cli import main; main()", "simulate"]
    server = await asyncio.create_subprocess_exec(
        *command, "serve", "--port", "0", "--user", USER, "--password", PASSWORD,
        "--recordings-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, cwd=tmp_path,
        env={**os.environ, "CALLCONTROL_APP": APP},
    )  # fmt: skip
    assert server.stdout is not None
    first = (await asyncio.wait_for(server.stdout.readline(), 30)).decode()
    url = first.split(" on ", 1)[1].split(" ", 1)[0]
    async with aiohttp.ClientSession() as session:
        app = await AppSocket.connect(session, url)
        caller = await asyncio.create_subprocess_exec(
            *command, "call", "--from", "alice", "--to", "1002", "--url", url,
            "--hangup-after", "0.05", "--caller-id", "Alice <1001>",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output = (await asyncio.wait_for(caller.communicate(), 30))[0].decode()
        assert caller.returncode == 0, output
        assert (await app.next("StasisStart"))["channel"]["caller"]["number"] == "1001"
        await app.close()
    assert output.splitlines()[-1] == "ended: cause 16 (Normal Clearing)"
    server.send_signal(signal.SIGTERM)
    rest = (await asyncio.wait_for(server.communicate(), 30))[0].decode()
    assert server.returncode == 0
    assert "stopped" in rest
