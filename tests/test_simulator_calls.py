"""Calls through the simulated Asterisk: the events an application sees, in Asterisk's order."""

from __future__ import annotations

import pytest

from callcontrol.simulator.client import ControlClient, ControlError
from tests.simulator_helpers import AppSocket, Rest

pytest_plugins = ["tests.simulator_fixtures"]


async def _incoming(app: AppSocket, control: ControlClient, **options: object) -> str:
    channel = await control.call("alice", "1002", **options)
    await app.next("StasisStart", channel["id"])
    return str(channel["id"])


async def _created(app: AppSocket, rest: Rest, channel_id: str, endpoint: str) -> None:
    status, body = await rest(
        "POST", "/channels/create", endpoint=endpoint, app="callcontrol",
        appArgs="dialled", channelId=channel_id,
    )  # fmt: skip
    assert status == 200, body
    assert body["state"] == "Down"
    started = await app.next("StasisStart", channel_id)
    assert started["args"] == ["dialled"]


async def test_an_incoming_call_enters_the_app_ringing_with_its_origin(
    app: AppSocket, control: ControlClient
) -> None:
    channel = await control.call("alice", "1002", args=["terminal"], caller_id="Alice <1001>")
    event = await app.next("StasisStart", channel["id"])
    assert event["args"] == ["terminal", ""]  # the origin, then the (unknown) source address
    assert event["application"] == "callcontrol"
    assert {"timestamp", "asterisk_id"} <= event.keys()
    assert event["channel"]["state"] == "Ring"
    assert event["channel"]["name"].startswith("PJSIP/alice-")
    assert event["channel"]["caller"] == {"name": "Alice", "number": "1001"}
    assert event["channel"]["dialplan"]["exten"] == "1002"
    assert event["channel"]["dialplan"]["app_data"] == "callcontrol,terminal,"


async def test_dial_answer_bridge_and_hang_up_emit_asterisks_sequence(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = await _incoming(app, control)
    await _created(app, rest, "b", "PJSIP/bob")
    assert (await rest("POST", "/channels/b/dial", caller=a, timeout=10))[0] == 204
    answered = await app.next("Dial", "b")
    while answered["dialstatus"] != "ANSWER":
        answered = await app.next("Dial", "b")
    assert "caller" not in answered  # Asterisk 22 sends only the peer
    assert answered["dialstring"] == "bob"
    assert (await rest("POST", f"/channels/{a}/answer"))[0] == 204
    status, bridge = await rest("POST", "/bridges", type="mixing", bridgeId="br")
    assert status == 200
    assert bridge["bridge_type"] == "mixing"
    assert (await rest("POST", "/bridges/br/addChannel", channel=f"{a},b"))[0] == 204
    await control.hang_up("b")
    await app.next("ChannelDestroyed", "b")
    assert (await rest("DELETE", f"/channels/{a}", reason="normal"))[0] == 204
    await app.next("StasisEnd", a)
    assert (await rest("DELETE", "/bridges/br"))[0] == 204
    await app.next("BridgeDestroyed")
    assert app.about(a, "b") == [
        ("StasisStart", a, ""),
        ("ChannelDialplan", "b", ""),
        ("ChannelVarset", "b", ""),
        ("StasisStart", "b", ""),
        ("ChannelConnectedLine", "b", ""),
        ("Dial", "b", ""),
        ("ChannelStateChange", "b", ""),
        ("Dial", "b", "RINGING"),
        ("ChannelStateChange", "b", ""),
        ("Dial", "b", "ANSWER"),
        ("ChannelStateChange", a, ""),
        ("ChannelEnteredBridge", a, ""),
        ("ChannelEnteredBridge", "b", ""),
        ("ChannelHangupRequest", "b", ""),
        ("ChannelLeftBridge", "b", ""),
        ("StasisEnd", "b", ""),
        ("ChannelVarset", "b", ""),
        ("ChannelDestroyed", "b", "16"),
        ("ChannelHangupRequest", a, "32"),
        ("ChannelLeftBridge", a, ""),
        ("StasisEnd", a, ""),
        ("BridgeDestroyed", "", ""),
    ]
    requests = [e for e in app.history if e["type"] == "ChannelHangupRequest"]
    assert "cause" not in requests[0]  # a BYE carries no cause
    assert "soft" not in requests[0]
    assert requests[1]["soft"] is True
    statuses = [e["value"] for e in app.history if e["type"] == "ChannelVarset"]
    assert statuses == ["", "SUCCESS"]


@pytest.mark.parametrize(
    ("answer", "sip", "cause", "text"),
    [
        ("busy", None, 17, "User busy"),
        ("fail", None, 34, "Circuit/channel congestion"),
        ("fail", 403, 21, "Call Rejected"),
        ("unavailable", None, 19, "User alerting, no answer"),
    ],
)
async def test_a_refusing_endpoint_ends_the_dial_with_its_cause_and_sip_code(
    app: AppSocket, control: ControlClient, rest: Rest, answer: str, sip: int | None,
    cause: int, text: str,
) -> None:  # fmt: skip
    await control.endpoint("bob", answer, after=0.02, sip=sip)
    a = await _incoming(app, control)
    await _created(app, rest, "b", "PJSIP/bob")
    await rest("POST", "/channels/b/dial", caller=a, timeout=10)
    destroyed = await app.next("ChannelDestroyed", "b")
    code = sip or {"busy": 486, "fail": 503, "unavailable": 480}[answer]
    assert (destroyed["cause"], destroyed["cause_txt"], destroyed["tech_cause"]) == (
        cause, text, code,
    )  # fmt: skip
    assert app.about("b")[-6:] == [
        ("ChannelConnectedLine", "b", ""),
        ("Dial", "b", ""),  # no Dial with the failure: Asterisk 22 sends none
        ("ChannelHangupRequest", "b", str(cause)),
        ("StasisEnd", "b", ""),
        ("ChannelVarset", "b", ""),
        ("ChannelDestroyed", "b", str(cause)),
    ]
    request = next(e for e in app.history if e["type"] == "ChannelHangupRequest")
    assert request["tech_cause"] == code


async def test_an_endpoint_that_never_answers_ends_as_noanswer_at_the_dial_timeout(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await control.endpoint("bob", "noanswer")
    a = await _incoming(app, control)
    await _created(app, rest, "b", "PJSIP/bob")
    await rest("POST", "/channels/b/dial", caller=a, timeout=1)
    destroyed = await app.next("ChannelDestroyed", "b", within=5)
    assert (destroyed["cause"], destroyed["tech_cause"]) == (19, 480)
    # Like Asterisk 22: no Dial NOANSWER, and the hang-up request reads as soft (32).
    assert [row[2] for row in app.about("b") if row[0] == "Dial"] == ["", "RINGING"]
    request = next(e for e in app.history if e["type"] == "ChannelHangupRequest")
    assert (request["cause"], request["soft"]) == (32, True)


async def test_hanging_up_a_channel_still_ringing_cancels_the_dial(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await control.endpoint("bob", "noanswer")
    a = await _incoming(app, control)
    await _created(app, rest, "b", "PJSIP/bob")
    await rest("POST", "/channels/b/dial", caller=a)
    await app.next("ChannelStateChange", "b")
    await rest("DELETE", "/channels/b")
    await app.next("ChannelDestroyed", "b")
    assert app.about("b")[-5:] == [
        ("ChannelHangupRequest", "b", "32"),
        ("Dial", "b", "CANCEL"),
        ("StasisEnd", "b", ""),
        ("ChannelVarset", "b", ""),
        ("ChannelDestroyed", "b", "16"),
    ]


async def test_an_unreachable_endpoint_cannot_even_be_created(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await control.endpoint("ghost", "unreachable")
    status, body = await rest("POST", "/channels/create", endpoint="PJSIP/ghost", app="x")
    assert (status, body) == (500, {"message": "Allocation failed"})
    assert (await rest("POST", "/channels", endpoint="PJSIP/ghost", app="x"))[0] == 500
    assert (await rest("POST", "/channels/create", endpoint="ghost", app="x"))[0] == 400


async def test_a_number_at_a_carrier_can_answer_differently_from_the_carrier(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    await control.endpoint("carrier-1", "answer", after=0.01)
    await control.endpoint("600000000@carrier-1", "busy")
    a = await _incoming(app, control)
    await _created(app, rest, "b", "PJSIP/600000000@carrier-1")
    await rest("POST", "/channels/b/dial", caller=a)
    assert (await app.next("ChannelDestroyed", "b"))["cause"] == 17
    await _created(app, rest, "c", "PJSIP/600000001@carrier-1")
    await rest("POST", "/channels/c/dial", caller=a)
    assert (await app.next("Dial", "c"))["dialstatus"] == ""  # rings: no 486
    await app.next("ChannelStateChange", "c")


async def test_dtmf_pressed_by_the_far_end_arrives_digit_by_digit(
    app: AppSocket, control: ControlClient
) -> None:
    a = await _incoming(app, control, dtmf=[{"digits": "*1", "after": 0.0, "between": 0.01}])
    digits = [(await app.next("ChannelDtmfReceived", a))["digit"] for _ in range(2)]
    await control.press(a, "#9", between=0.01)
    digits += [(await app.next("ChannelDtmfReceived", a))["digit"] for _ in range(2)]
    assert digits == ["*", "1", "#", "9"]
    with pytest.raises(ControlError) as refused:
        await control.press(a, "x")
    assert refused.value.status == 400


async def test_playbacks_play_in_turn_and_end_with_their_channel(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = await _incoming(app, control)
    status, first = await rest(
        "POST", f"/channels/{a}/play", media="sound:one,sound:two", playbackId="p1"
    )
    assert status == 201  # Created, as Asterisk answers play
    assert first["state"] == "queued"
    assert first["next_media_uri"] == "sound:two"
    started = await app.next("PlaybackStarted")
    assert started["playback"]["target_uri"] == f"channel:{a}"
    assert (await app.next("PlaybackContinuing"))["playback"]["media_uri"] == "sound:two"
    assert (await app.next("PlaybackFinished"))["playback"]["state"] == "done"
    await control.media(30.0, "sound:long")
    await rest("POST", f"/channels/{a}/play", media="sound:long", playbackId="p2")
    await rest("POST", f"/channels/{a}/play", media="sound:queued", playbackId="p3")
    assert (await rest("GET", "/playbacks/p3"))[1]["state"] == "queued"
    assert (await rest("DELETE", "/playbacks/p3"))[0] == 204
    assert (await rest("GET", "/playbacks/p3"))[0] == 404
    await rest("DELETE", f"/channels/{a}")
    await app.next("StasisEnd", a)
    kinds = [e["type"] for e in app.history][-3:]
    assert kinds == ["ChannelHangupRequest", "PlaybackFinished", "StasisEnd"]


async def test_stopping_a_playback_ends_it_and_a_duplicate_id_is_refused(
    app: AppSocket, control: ControlClient, rest: Rest
) -> None:
    a = await _incoming(app, control)
    await control.media(30.0)
    await rest("POST", f"/channels/{a}/play", media="sound:x", playbackId="p")
    await app.next("PlaybackStarted")
    assert (await rest("POST", f"/channels/{a}/play", media="sound:y", playbackId="p"))[0] == 409
    assert (await rest("DELETE", "/playbacks/p"))[0] == 204
    assert (await app.next("PlaybackFinished"))["playback"]["id"] == "p"
    assert (await rest("DELETE", "/playbacks/p"))[0] == 404
