"""Recordings, variables, snoops and the dialplan through the simulated Asterisk."""

from __future__ import annotations

import wave
from pathlib import Path

from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import AppSocket, Rest

pytest_plugins = ["tests.simulator_fixtures"]


async def _bridged(app: AppSocket, control: ControlClient, rest: Rest) -> tuple[str, str]:
    a = (await control.call("alice", "1002"))["id"]
    b = (await control.call("bob", "1001"))["id"]
    await app.next("StasisStart", b)
    await rest("POST", "/bridges", bridgeId="br")
    await rest("POST", "/bridges/br/addChannel", channel=f"{a},{b}")
    await app.next("ChannelEnteredBridge", b)
    return a, b


async def test_a_bridge_recording_writes_a_wav_file_of_the_recorded_length(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a, _ = await _bridged(app, control, rest)
    status, live = await rest("POST", "/bridges/br/record", name="calls/c1", format="wav")
    assert status == 201
    assert live["state"] == "queued"
    assert live["target_uri"] == "bridge:br"
    assert (await app.next("RecordingStarted"))["recording"]["state"] == "recording"
    assert (await rest("GET", "/recordings/live/calls/c1"))[0] == 404  # the name has a slash
    assert (await rest("POST", f"/channels/{a}/record", name="solo", format="wav"))[0] == 409
    assert (await rest("POST", "/bridges/br/record", name="calls/c1", format="wav"))[0] == 409
    await rest("DELETE", "/bridges/br")
    finished = await app.next("RecordingFinished")
    assert finished["recording"]["state"] == "done"
    assert [e["type"] for e in app.history][-4:] == [
        "ChannelLeftBridge", "ChannelLeftBridge", "RecordingFinished", "BridgeDestroyed",
    ]  # fmt: skip
    path = sim.config.recordings_dir / "calls" / "c1.wav"
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
    status, stored = await rest("GET", "/recordings/stored")
    assert stored == [{"name": "calls/c1", "format": "wav"}]
    assert (await rest("POST", "/bridges", bridgeId="br2"))[0] == 200
    assert (await rest("POST", "/bridges/br2/record", name="calls/c1", format="wav"))[0] == 409


async def test_a_recording_stops_on_request_on_its_limit_and_on_a_key(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1002"))["id"]
    await rest("POST", f"/channels/{a}/record", name="stopped", format="ulaw")
    await app.next("RecordingStarted")
    assert (await rest("GET", "/recordings/live/stopped"))[1]["state"] == "recording"
    assert (await rest("POST", "/recordings/live/stopped/stop"))[0] == 204
    assert (await app.next("RecordingFinished"))["recording"]["name"] == "stopped"
    await rest("POST", f"/channels/{a}/record", name="limited", format="sln", maxDurationSeconds=1)
    finished = await app.next("RecordingFinished", within=5)
    assert finished["recording"]["duration"] == 1
    assert (sim.config.recordings_dir / "limited.sln").stat().st_size == 16000
    await rest("POST", f"/channels/{a}/record", name="keyed", format="wav", terminateOn="#")
    await app.next("RecordingStarted")
    await control.press(a, "1#", between=0.01)
    assert (await app.next("RecordingFinished"))["recording"]["name"] == "keyed"
    status, _ = await rest(
        "POST", f"/channels/{a}/record", name="keyed", format="wav", ifExists="append"
    )
    assert status == 201
    await rest("DELETE", f"/channels/{a}")
    assert (await app.next("RecordingFinished"))["recording"]["name"] == "keyed"


async def test_bad_recordings_are_refused_or_fail(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest, tmp_path: Path
) -> None:
    a = (await control.call("alice", "1002"))["id"]
    assert (await rest("POST", f"/channels/{a}/record", name="x", format="mp3"))[0] == 422
    assert (await rest("POST", f"/channels/{a}/record", name="../x", format="wav"))[0] == 400
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sim.config.recordings_dir = blocker
    status, _live = await rest("POST", f"/channels/{a}/record", name="x", format="wav")
    assert status == 201
    failed = await app.next("RecordingFailed")
    assert failed["recording"]["state"] == "failed"
    assert "cannot write" in failed["recording"]["cause"]


async def test_variables_read_the_source_address_and_change_the_caller(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1002", source_ip="2001:db8::5", caller_id="1001"))["id"]
    url = f"/channels/{a}/variable"
    assert (await rest("GET", url, variable="CHANNEL(pjsip,remote_addr)"))[1] == {
        "value": "[2001:db8::5]:5060"
    }
    assert (await rest("GET", url, variable="CALLERID(num)"))[1] == {"value": "1001"}
    assert (await rest("POST", url, variable="CALLERID(num)", value="+34910000000"))[0] == 204
    changed = await app.next("ChannelCallerId", a)
    assert changed["channel"]["caller"]["number"] == "+34910000000"
    await rest("POST", url, variable="CALLERID(name)", value="Acme")
    await rest("POST", url, variable="CHANNEL(language)", value="es")
    channel = (await rest("GET", f"/channels/{a}"))[1]
    assert (channel["caller"]["name"], channel["language"]) == ("Acme", "es")
    assert (await rest("GET", url, variable="NOT_SET"))[0] == 404
    await rest("POST", url, variable="CALL_ID", value="c-1")
    varset = await app.next("ChannelVarset", a)
    assert (varset["variable"], varset["value"]) == ("CALL_ID", "c-1")
    assert (await rest("GET", url, variable="CALL_ID"))[1] == {"value": "c-1"}
    assert (await rest("POST", url, variable="CHANNEL(name)", value="x"))[0] == 400
    assert (await control.channel(a))["variables"] == {"CALL_ID": "c-1"}


async def test_a_snoop_channel_enters_the_app_and_goes_with_its_target(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1002"))["id"]
    status, snoop = await rest(
        "POST", f"/channels/{a}/snoop", spy="both", app="callcontrol", appArgs="snoop", snoopId="s1"
    )
    assert status == 200
    assert snoop["name"].startswith(f"Snoop/{a}-")
    assert (await app.next("StasisStart", "s1"))["args"] == ["snoop"]
    await control.hang_up(a)
    await app.next("ChannelDestroyed", "s1")  # made through ARI: reported to the end
    await app.next("StasisEnd", a)  # entered through the dialplan: reported until here


async def test_continue_leaves_stasis_and_the_dialplan_hangs_up(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = (await control.call("alice", "1002"))["id"]
    await app.next("StasisStart", a)
    assert (await rest("POST", f"/channels/{a}/continue", context="fallback"))[0] == 204
    await app.next("StasisEnd", a)
    assert (await rest("POST", f"/channels/{a}/answer"))[0] in (404, 409)
    end = await control.wait_gone(a, 5)
    assert end["gone"] is True
    assert end["cause"] == 34  # the rendered dialplan after Stasis() answers 503


async def test_originate_rings_and_enters_the_app_when_answered(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    status, channel = await rest(
        "POST", "/channels", endpoint="PJSIP/bob", app="callcontrol", appArgs="callback",
        callerId='"Desk" <200>', channelId="o1",
    )  # fmt: skip
    assert status == 200
    assert channel["state"] == "Down"
    started = await app.next("StasisStart", "o1")
    assert started["args"] == ["callback"]
    assert started["channel"]["state"] == "Up"
    assert started["channel"]["caller"] == {"name": "Desk", "number": "200"}
    assert (await rest("POST", "/channels", endpoint="PJSIP/bob"))[0] == 400
    assert (await rest("POST", "/channels", endpoint="PJSIP/bob", app="x", channelId="o1"))[
        0
    ] == 409


async def test_the_app_hears_bridged_dtmf_only_from_a_dtmf_events_bridge(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a, _ = await _bridged(app, control, rest)  # a plain mixing bridge: native on Asterisk
    await control.press(a, "1")
    c = (await control.call("carol", "1004"))["id"]
    d = (await control.call("dave", "1003"))["id"]
    await app.next("StasisStart", d)
    await rest("POST", "/bridges", bridgeId="keys", type="mixing,dtmf_events")
    await rest("POST", "/bridges/keys/addChannel", channel=f"{c},{d}")
    await app.next("ChannelEnteredBridge", d)
    await control.press(c, "2")
    heard = await app.next("ChannelDtmfReceived")
    assert (heard["channel"]["id"], heard["digit"]) == (c, "2")
    # The 1 pressed in the plain bridge earlier was never heard: only the 2 was.
    assert [e for e in app.history if e["type"] == "ChannelDtmfReceived"] == [heard]
