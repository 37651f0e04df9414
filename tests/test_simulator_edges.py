"""Edges of the simulated Asterisk: refusals, moves, and the command line in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

from typer.testing import CliRunner

from callcontrol.cli import app as cli
from callcontrol.cli.simulator import drive_call, serve_until_stopped
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from callcontrol.simulator.control_models import mentions
from callcontrol.simulator.variables import remote_addr
from tests.simulator_helpers import AppSocket, Rest, fast_config, until

pytest_plugins = ["tests.simulator_fixtures"]


async def test_bridges_refuse_what_asterisk_refuses_and_move_channels(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    assert (await rest("POST", "/bridges", type="mixing,bogus"))[0] == 400
    assert (await rest("POST", "/bridges", type="holding", bridgeId="one"))[1]["bridge_type"] == (
        "holding"
    )
    assert (await rest("POST", "/bridges", bridgeId="one"))[0] == 409
    await rest("POST", "/bridges", bridgeId="two")
    a = (await control.call("alice", "1"))["id"]
    assert (await rest("POST", "/bridges/one/addChannel", channel="nobody"))[0] == 400
    await rest("POST", "/channels/create", endpoint="PJSIP/bob", app="other", channelId="b")
    await rest("POST", "/channels/b/continue")
    assert (await rest("POST", "/bridges/one/addChannel", channel="b"))[0] in (400, 422)
    await rest("POST", "/bridges/one/addChannel", channel=a)
    await rest("POST", "/bridges/one/addChannel", channel=a)  # already there: nothing
    await rest("POST", "/bridges/two/addChannel", channel=a)  # moves
    assert (await rest("GET", "/bridges/one"))[1]["channels"] == []
    assert (await rest("GET", "/bridges/two"))[1]["channels"] == [a]
    assert (await rest("POST", "/bridges/one/removeChannel", channel=a))[0] == 422
    assert (await rest("POST", "/bridges/two/removeChannel", channel=a))[0] == 204
    for _ in range(2):
        await app.next("ChannelLeftBridge", a)
    assert [row[0] for row in app.about(a)][-3:] == [
        "ChannelLeftBridge",
        "ChannelEnteredBridge",
        "ChannelLeftBridge",
    ]
    assert [bridge["id"] for bridge in (await rest("GET", "/bridges"))[1]] == ["one", "two"]


async def test_hangup_takes_a_q850_code_or_a_reason_not_both(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1"))["id"]
    assert (await rest("DELETE", f"/channels/{a}", reason_code="21", reason="busy"))[0] == 400
    assert (await rest("DELETE", f"/channels/{a}", reason_code="x"))[0] == 400
    assert (await rest("DELETE", f"/channels/{a}", reason_code="21"))[0] == 204
    assert (await app.next("ChannelHangupRequest", a))["cause"] == 32  # always, for ARI
    end = await control.wait_gone(a, 5)
    assert (end["cause"], end["cause_txt"]) == (21, "Call Rejected")


async def test_created_channels_take_their_variables_before_stasis_start(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1"))["id"]
    body = {"variables": {"CALLERID(num)": "+34910000001", "CALLERID(name)": "Acme", "X": "1"}}
    async with rest.session.post(
        f"{rest.url}/channels/create",
        params={"endpoint": "PJSIP/bob", "app": "callcontrol", "channelId": "b"},
        json=body,
        headers=rest.headers,
    ) as response:
        assert response.status == 200
    started = await app.next("StasisStart", "b")
    assert started["channel"]["caller"] == {"name": "Acme", "number": "+34910000001"}
    assert (await rest("GET", "/channels/b/variable", variable="X"))[1] == {"value": "1"}
    assert (await rest("POST", "/channels/b/dial", caller="ghost"))[0] == 400
    assert (await rest("POST", "/channels/b/dial", caller=a))[0] == 204
    assert (await rest("POST", "/channels/b/dial", caller=a))[0] == 409
    async with rest.session.post(
        f"{rest.url}/channels/b/answer", data="not json", headers=rest.headers
    ) as response:
        assert response.status == 400
    async with rest.session.post(
        f"{rest.url}/channels/b/answer", json=[1], headers=rest.headers
    ) as response:
        assert response.status == 400
    async with rest.session.post(
        f"{rest.url}/channels/create", json={"variables": "x"}, headers=rest.headers,
        params={"endpoint": "PJSIP/bob", "app": "callcontrol"},
    ) as response:  # fmt: skip
        assert response.status == 400
    status, _ = await rest("GET", "/events", app="callcontrol")  # not an upgrade
    assert status == 400


async def test_events_of_another_app_go_to_that_app(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1"))["id"]
    async with rest.session.ws_connect(
        f"{sim.url}ari/events", params={"app": "other", "api_key": "callcontrol:secret"}
    ) as other:
        await rest("POST", "/channels/create", endpoint="PJSIP/bob", app="other", channelId="b")
        await rest("POST", "/channels/b/dial", caller=a)
        kinds = []
        while "Dial" not in kinds:
            kinds.append((await other.receive_json(timeout=5))["type"])
    assert kinds == [
        "ChannelDialplan",
        "ChannelVarset",
        "StasisStart",
        "ChannelConnectedLine",
        "Dial",
    ]
    assert app.about("b") == []  # not a channel of this app


def test_event_mentions_cover_targets_and_addresses_keep_given_ports() -> None:
    assert mentions({"playback": {"target_uri": "channel:c1"}}, "c1")
    assert mentions({"recording": {"target_uri": "channel:c1"}}, "c1")
    assert not mentions({"recording": {"target_uri": "bridge:c1"}}, "c1")
    assert remote_addr("") == ""
    assert remote_addr("10.0.0.1:5070") == "10.0.0.1:5070"
    assert remote_addr("192.0.2.1") == "192.0.2.1:5060"


async def test_serve_runs_until_a_signal(tmp_path: Path) -> None:
    lines: list[str] = []
    serving = asyncio.create_task(serve_until_stopped(fast_config(tmp_path), lines.append))

    async def listening() -> bool:
        return bool(lines)

    await until(listening)
    url = lines[0].split(" on ", 1)[1].split(" ", 1)[0]
    async with ControlClient(url) as control:
        assert await control.apps() == []
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 10)
    assert lines[-1] == "simulated Asterisk stopped"


async def test_a_call_still_up_is_reported_so(sim: Simulator, app: AppSocket) -> None:
    lines: list[str] = []
    end = await drive_call(sim.url, {"from": "alice", "to": "1"}, 0.05, lines.append)
    assert end["gone"] is False
    assert lines[-1] == "still up after 0.05 s"


def test_serve_and_call_fail_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["simulate", "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: cannot listen on 127.0.0.1:{port}")
    config = tmp_path / "bad.toml"
    config.write_text("nonsense = 1\n")
    result = runner.invoke(cli, ["simulate", "serve", "--config", str(config)])
    assert result.exit_code == 1
    assert "unknown setting" in result.output


def test_call_refused_by_the_simulator_is_one_line(tmp_path: Path) -> None:
    async def refused() -> str:
        async with Simulator(fast_config(tmp_path)) as sim:
            return sim.url

    # a simulator that stopped: nothing listens there any more
    url = asyncio.run(refused())
    result = CliRunner().invoke(cli, ["simulate", "call", "--from", "a", "--to", "1", "--url", url])
    assert result.exit_code == 1
    assert result.output.startswith("error: no simulator at")


def test_a_call_without_a_connected_app_says_so(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Simulator(fast_config(tmp_path)) as sim:
            result = await asyncio.to_thread(
                CliRunner().invoke,
                cli,
                ["simulate", "call", "--from", "a", "--to", "1", "--url", sim.url, "--wait", "5"],
            )
            assert result.exit_code == 0
            assert "the application is not connected" in result.output
            assert result.output.splitlines()[-1] == "ended: cause 34 (Circuit/channel congestion)"

    asyncio.run(scenario())


def test_a_refused_control_request_is_one_line(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Simulator(fast_config(tmp_path)) as sim:
            result = await asyncio.to_thread(
                CliRunner().invoke,
                cli,
                ["simulate", "call", "--from", "a", "--to", "1", "--url", sim.url, "--dtmf", "x"],
            )
            assert result.exit_code == 1
            assert result.output.startswith("error: DTMF 'x'")

    asyncio.run(scenario())
