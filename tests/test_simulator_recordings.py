"""Recording a bridge on demand through the simulated Asterisk, over real HTTP: record,
stop, list / get / download the stored file, delete it; notices played to a bridge; what
happens to both when parties leave or the bridge goes (as measured on Asterisk 22)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
import wave
from array import array

from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import AppSocket, Rest

pytest_plugins = ["tests.simulator_fixtures"]

NOTICE = "sound:callcontrol/recording_started"


async def _bridged(app: AppSocket, control: ControlClient, rest: Rest) -> tuple[str, str]:
    a = (await control.call("alice", "1002"))["id"]
    b = (await control.call("bob", "1001"))["id"]
    await app.next("StasisStart", b)
    await rest("POST", "/bridges", bridgeId="br")
    await rest("POST", "/bridges/br/addChannel", channel=f"{a},{b}")
    await app.next("ChannelEnteredBridge", b)
    return a, b


async def _download(rest: Rest, name: str) -> tuple[int, str, bytes]:
    """``GET /recordings/stored/{name}/file``: status, content type, body."""
    url = f"{rest.url}/recordings/stored/{name}/file"
    async with rest.session.get(url, headers=rest.headers) as response:
        return response.status, response.content_type, await response.read()


def _rms(frames: bytes) -> float:
    samples = array("h", frames)
    return math.sqrt(sum(sample * sample for sample in samples) / max(len(samples), 1))


def _types(app: AppSocket, since: int) -> list[str]:
    return [event["type"] for event in app.history[since:]]


async def test_a_recorded_bridge_is_stored_as_a_wav_of_its_length_downloaded_and_deleted(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await _bridged(app, control, rest)
    began = time.monotonic()
    status, live = await rest(
        "POST", "/bridges/br/record", name="calls/c1", format="wav", ifExists="fail"
    )
    assert status == 201
    assert live == {
        "name": "calls/c1",
        "format": "wav",
        "target_uri": "bridge:br",
        "state": "queued",
    }
    assert (await app.next("RecordingStarted"))["recording"]["target_uri"] == "bridge:br"
    await asyncio.sleep(1.5)  # the recording's length is the subject here
    assert (await rest("POST", "/recordings/live/calls%2Fc1/stop"))[0] == 204
    recorded = time.monotonic() - began  # from before the request that started it
    finished = (await app.next("RecordingFinished"))["recording"]
    assert finished == {
        "name": "calls/c1",
        "format": "wav",
        "target_uri": "bridge:br",
        "state": "done",
        "duration": finished["duration"],
    }
    assert (await rest("GET", "/recordings/live/calls%2Fc1"))[0] == 404

    assert (await rest("GET", "/recordings/stored"))[1] == [{"name": "calls/c1", "format": "wav"}]
    assert (await rest("GET", "/recordings/stored/calls%2Fc1"))[1] == {
        "name": "calls/c1",
        "format": "wav",
    }
    status, content_type, body = await _download(rest, "calls%2Fc1")
    assert (status, content_type) == (200, "audio/wav")
    assert body == (sim.config.recordings_dir / "calls" / "c1.wav").read_bytes()
    with wave.open(io.BytesIO(body), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        length = audio.getnframes() / 8000
        assert 1.5 <= length <= recorded
        assert finished["duration"] == int(length)  # whole seconds, as Asterisk counts them
        assert _rms(audio.readframes(audio.getnframes())) > 1000  # heard, not silence

    assert (await rest("DELETE", "/recordings/stored/calls%2Fc1"))[0] == 204
    assert (await rest("GET", "/recordings/stored/calls%2Fc1"))[0] == 404
    assert (await _download(rest, "calls%2Fc1"))[0] == 404
    assert (await rest("DELETE", "/recordings/stored/calls%2Fc1"))[0] == 404
    assert (await rest("GET", "/recordings/stored"))[1] == []


async def test_unknown_recordings_are_not_found(app: AppSocket, rest: Rest) -> None:
    not_found = (404, {"message": "Recording not found"})
    assert await rest("GET", "/recordings/stored/nope") == not_found
    assert await rest("DELETE", "/recordings/stored/nope") == not_found
    assert await rest("GET", "/recordings/live/nope") == not_found
    assert await rest("POST", "/recordings/live/nope/stop") == not_found
    assert await rest("GET", "/recordings/stored/..%2Foutside") == not_found
    status, content_type, body = await _download(rest, "nope")
    assert (status, content_type, json.loads(body)) == (404, "application/json", not_found[1])


async def test_a_raw_recording_downloads_with_its_format_as_content_type(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await _bridged(app, control, rest)
    await rest("POST", "/bridges/br/record", name="raw", format="ulaw", maxDurationSeconds=1)
    assert (await app.next("RecordingFinished"))["recording"]["duration"] == 1
    status, content_type, body = await _download(rest, "raw")
    assert (status, content_type, len(body)) == (200, "audio/ulaw", 8000)
    assert set(body) != {0xFF}  # 0xFF is mu-law silence


async def test_a_notice_played_to_a_bridge_starts_then_finishes_after_its_length(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await _bridged(app, control, rest)
    await control.media(0.3, NOTICE)
    began = time.monotonic()  # before the request: the notice cannot end sooner than 0.3 s on
    status, playback = await rest(
        "POST", "/bridges/br/play", media=NOTICE, lang="es", playbackId="notice-1"
    )
    assert status == 201
    assert playback == {
        "id": "notice-1",
        "media_uri": NOTICE,
        "target_uri": "bridge:br",
        "language": "es",
        "state": "queued",
    }
    started = await app.next("PlaybackStarted")
    assert started["playback"]["state"] == "playing"
    assert (await rest("GET", "/playbacks/notice-1"))[1]["state"] == "playing"
    status, queued = await rest("POST", "/bridges/br/play/notice-2", media=f"{NOTICE},sound:beep")
    assert (status, queued["id"], queued["state"]) == (201, "notice-2", "queued")
    finished = await app.next("PlaybackFinished")
    assert time.monotonic() - began >= 0.3
    assert (finished["playback"]["id"], finished["playback"]["state"]) == ("notice-1", "done")
    assert finished["playback"]["target_uri"] == "bridge:br"
    second = [await app.next(kind) for kind in ("PlaybackStarted", "PlaybackContinuing")]
    assert [event["playback"]["id"] for event in second] == ["notice-2", "notice-2"]
    assert second[1]["playback"]["media_uri"] == "sound:beep"
    assert (await app.next("PlaybackFinished"))["playback"]["id"] == "notice-2"
    assert (await rest("GET", "/playbacks/notice-1"))[0] == 404
    assert await rest("POST", "/bridges/nobridge/play", media=NOTICE) == (
        404,
        {"message": "Bridge not found"},
    )
    assert (await rest("POST", "/bridges/br/play"))[0] == 400  # media is required


async def test_a_bridge_recording_outlives_one_party_and_ends_with_the_last(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a, b = await _bridged(app, control, rest)
    await rest("POST", "/bridges/br/record", name="seg", format="wav")
    await app.next("RecordingStarted")
    await control.hang_up(a)
    await app.next("StasisEnd", a)
    assert (await rest("GET", "/recordings/live/seg"))[1]["state"] == "recording"
    mark = len(app.history)
    assert (await rest("POST", "/bridges/br/removeChannel", channel=b))[0] == 204
    finished = await app.next("RecordingFinished")
    assert finished["recording"]["state"] == "done"
    assert _types(app, mark) == ["ChannelLeftBridge", "RecordingFinished"]
    assert (await rest("GET", "/recordings/stored/seg"))[0] == 200
    assert (await rest("POST", "/recordings/live/seg/stop"))[0] == 404  # already over


async def test_the_last_party_hanging_up_finishes_the_recording_before_its_stasis_end(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a, b = await _bridged(app, control, rest)
    await rest("POST", "/bridges/br/record", name="seg", format="wav")
    await app.next("RecordingStarted")
    await control.hang_up(a)
    await app.next("StasisEnd", a)
    mark = len(app.history)
    await control.hang_up(b)
    await app.next("StasisEnd", b)
    assert _types(app, mark) == [
        "ChannelHangupRequest", "ChannelLeftBridge", "RecordingFinished", "StasisEnd",
    ]  # fmt: skip


async def test_destroying_a_bridge_finishes_its_recording_and_fails_its_notices(
    sim: Simulator, app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await _bridged(app, control, rest)
    await control.media(30, NOTICE)
    await rest("POST", "/bridges/br/record", name="seg", format="wav")
    await rest("POST", "/bridges/br/play", media=NOTICE, playbackId="n1")
    await rest("POST", "/bridges/br/play", media=NOTICE, playbackId="n2")
    await app.next("PlaybackStarted")
    mark = len(app.history)
    assert (await rest("DELETE", "/bridges/br"))[0] == 204
    await app.next("BridgeDestroyed")
    events = app.history[mark:]
    assert [(e["type"], e.get("playback", {}).get("state", "")) for e in events] == [
        ("ChannelLeftBridge", ""),
        ("ChannelLeftBridge", ""),
        ("RecordingFinished", ""),
        ("PlaybackFinished", "failed"),
        ("PlaybackStarted", "playing"),  # the queued notice starts and fails at once
        ("PlaybackFinished", "failed"),
        ("BridgeDestroyed", ""),
    ]
    assert events[2]["recording"]["state"] == "done"
    assert (await rest("GET", "/playbacks/n2"))[0] == 404
    assert (await rest("GET", "/recordings/stored/seg"))[0] == 200
