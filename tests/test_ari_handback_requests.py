"""The hand-back's two requests, sent by ``callcontrol.ari_.Ari`` on its own HTTP session
(not through the swagger client), against the simulated Asterisk: what they do, how
their errors read, and that the session goes with the client."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from callcontrol.ari_ import Ari
from callcontrol.errors import AriError, AriUnavailable, ChannelGone
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import PASSWORD, USER, AppSocket

pytest_plugins = ["tests.simulator_fixtures"]


@pytest.fixture
async def ari(sim: Simulator) -> AsyncIterator[Ari]:
    client = await Ari.connect(sim.url, USER, PASSWORD)
    client.journal = []
    yield client
    await client.close()


async def _in_app(app: AppSocket, control: ControlClient) -> str:
    placed = await control.call("alice", "1002", source_ip="192.0.2.7")
    channel_id = str(placed["id"])
    await app.next("StasisStart", channel_id)
    return channel_id


async def test_a_call_is_handed_back_with_its_variable_and_leaves_the_app(
    ari: Ari, app: AppSocket, control: ControlClient
) -> None:
    channel_id = await _in_app(app, control)
    await ari.set_variable(channel_id, "CC", "dial.UEpTSVAvMTAwMg==.30.g")
    value = await ari.request("channels", "getChannelVar", channelId=channel_id, variable="CC")
    assert value == {"value": "dial.UEpTSVAvMTAwMg==.30.g"}
    await ari.continue_in_dialplan(channel_id, "callcontrol-dial")
    ended = await app.next("StasisEnd", channel_id)
    assert ended["channel"]["id"] == channel_id
    # What was asked is journalled as the swagger client's operations were.
    assert ari.journal is not None
    assert [name for name, _ in ari.journal] == [
        "channels.setChannelVar",
        "channels.getChannelVar",
        "channels.continueInDialplan",
    ]
    assert ari.journal[2][1] == {
        "channelId": channel_id,
        "context": "callcontrol-dial",
        "extension": "s",
        "priority": "1",
    }


async def test_a_refused_request_and_a_channel_gone_are_told_apart(
    ari: Ari, app: AppSocket, control: ControlClient
) -> None:
    channel_id = await _in_app(app, control)
    with pytest.raises(AriError) as refused:  # the channel is there: the request is wrong
        await ari.set_variable(channel_id, "CHANNEL(bogus)", "x")
    assert refused.value.status == 400
    assert not isinstance(refused.value, ChannelGone)
    assert "Unable to set variable" in refused.value.detail
    with pytest.raises(ChannelGone) as gone:
        await ari.set_variable("no-such-channel", "CC", "x")
    assert gone.value.status == 404
    assert "Channel not found" in str(gone.value)


async def test_an_asterisk_that_went_away_is_unavailable_and_the_session_closes(
    sim: Simulator,
) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = await Ari.connect(sim.url, USER, PASSWORD)
    client.url = f"http://127.0.0.1:{port}/"
    try:
        with pytest.raises(AriUnavailable):
            await client.set_variable("1.1", "CC", "x")
        session = client._session
        assert session is not None
        assert not session.closed
    finally:
        await client.close()
    assert session.closed
    with pytest.raises(AriUnavailable, match="closed"):  # and no new session is opened
        await client.set_variable("1.1", "CC", "x")
    assert client._session is session


async def test_a_stored_recording_asterisk_lacks_or_cannot_send_is_told_apart(
    sim: Simulator, ari: Ari
) -> None:
    with pytest.raises(ChannelGone) as missing:
        await ari.stored_recording("no-such-recording")
    assert missing.value.status == 404
    assert ari.journal is not None
    assert ari.journal[-1] == ("recordings.getStoredFile", {"recordingName": "no-such-recording"})
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ari.url = f"http://127.0.0.1:{port}/"
    with pytest.raises(AriUnavailable):
        await ari.stored_recording("no-such-recording")
    with pytest.raises(AriUnavailable, match="connect"):
        await Ari.connect(ari.url, USER, PASSWORD)
