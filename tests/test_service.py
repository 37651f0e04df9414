"""The ARI service against the simulated Asterisk: real sockets, the demo platform in SQLite.

Each test places calls through the simulator's control API and asserts what the
service did (the outcome it logged) and what the simulated Asterisk saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import socket
import sys
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.ari_ import Ari
from callcontrol.config import Config
from callcontrol.errors import AriError
from callcontrol.service import AsteriskLink, Service, owner_ids
from callcontrol.session import Outcome, caller_of_leg, endpoint_of
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from callcontrol.simulator.settings import Behaviour
from dialplan.pipeline import Pipeline
from models.db import create_engine
from models.directory import SqlDirectory
from models.locutions import set_override
from models.migrate import upgrade_async
from models.provisioning import DEMO_DATASET, load_file
from tests.ports import free_port
from tests.simulator_helpers import APP, PASSWORD, USER, Rest, fast_config

CONFIG = Config(
    ari_user=USER,
    ari_password=PASSWORD,
    app=APP,
    dial_timeout=1.0,
    reconnect_min=0.05,
    reconnect_max=0.2,
    teardown_timeout=2.0,
    health_port=0,
)


async def until(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def demo_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    await load_file(engine, DEMO_DATASET)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(fast_config(tmp_path / "recordings")) as running:
        yield running


@pytest.fixture
async def control(sim: Simulator) -> AsyncIterator[ControlClient]:
    async with ControlClient(sim.url) as client:
        yield client


class Running:
    """A link of the service to the simulator, and the outcomes it logged."""

    def __init__(self, link: AsteriskLink) -> None:
        self.link = link
        self.outcomes: dict[str, Outcome] = {}
        link.on_outcome = lambda outcome: self.outcomes.__setitem__(outcome.call_id, outcome)
        self.task = asyncio.create_task(link.run())

    async def outcome(self, call_id: str, within: float = 10.0) -> Outcome:
        await until(lambda: call_id in self.outcomes, within)
        return self.outcomes[call_id]

    async def stop(self, grace: float = 1.0, within: float = 5.0) -> None:
        await self.link.stop(grace)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, within)


async def start_link(sim: Simulator, engine: AsyncEngine, config: Config = CONFIG) -> Running:
    """A link connected to ``sim``, once the simulator lists its app."""
    link = AsteriskLink(sim.url, config, Pipeline(SqlDirectory(engine)))
    running = Running(link)
    async with ControlClient(sim.url) as control:
        await until(lambda: _has_app(control))
    return running


@pytest.fixture
async def service(sim: Simulator, demo_engine: AsyncEngine) -> AsyncIterator[Running]:
    running = await start_link(sim, demo_engine)
    yield running
    await running.stop()


async def _has_app(control: ControlClient) -> bool:
    return APP in await control.apps()


async def bridged(control: ControlClient, channel_id: str) -> dict[str, Any]:
    async def check() -> bool:
        return bool((await control.channel(channel_id)).get("bridge_id"))

    await until(check)
    return await control.channel(channel_id)


async def test_a_terminal_calls_an_extension_and_the_caller_hangs_up(
    service: Running, control: ControlClient
) -> None:
    call = await control.call("acme-north-ana", "102")
    caller = call["id"]
    await bridged(control, caller)
    callee = await control.channel(await leg(control, caller))
    assert endpoint_of(callee) == "acme-north-bruno"
    assert callee["connected"]["number"] == "101"  # ana's extension is presented
    await control.hang_up(caller)
    outcome = await service.outcome(caller)
    assert outcome.answered
    assert outcome.result == "answered, caller hung up"
    assert (await control.wait_gone(callee["id"], within=3))["gone"]


async def test_an_ended_call_leaves_nothing_routed_to_it(
    service: Running, control: ControlClient
) -> None:
    bridged_call = (await control.call("acme-north-ana", "102"))["id"]
    await bridged(control, bridged_call)
    callee = await leg(control, bridged_call)
    link = service.link
    assert {bridged_call, callee} <= set(link.owners)
    refused = (await control.call("acme-north-bruno", "803123456"))["id"]
    await service.outcome(refused)
    assert refused not in link.owners  # its events go nowhere now
    assert bridged_call in link.owners  # the other call's still do
    await control.hang_up(bridged_call)
    await service.outcome(bridged_call)
    await until(lambda: not link.sessions)
    # Its channels and bridge are forgotten, remembered as ended (not adopted later).
    assert link.owners == {}
    assert {bridged_call, callee, refused} <= set(link.ended)


async def test_the_link_can_journal_the_requests_it_makes(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient
) -> None:
    link = AsteriskLink(sim.url, CONFIG, Pipeline(SqlDirectory(demo_engine)))
    link.journal = []
    running = Running(link)
    try:
        await until(lambda: _has_app(control))
        caller = (await control.call("acme-north-bruno", "803123456"))["id"]
        await running.outcome(caller)
    finally:
        await running.stop()
    operations = [name for name, _ in link.journal]
    # At connect: narrow the events, then look for calls to adopt.
    assert operations[:3] == ["applications.filter", "channels.list", "bridges.list"]
    # bruno's ACL refuses 803…; acme-north has voice notifications: early media first.
    assert operations[3:] == ["channels.progress", "channels.play", "channels.hangup"]
    assert link.journal[4][1] == {
        "channelId": caller,
        "media": "sound:callcontrol/not_allowed",
        "lang": "es",
        "playbackId": f"{caller}-notice",
    }
    assert link.journal[5][1] == {"channelId": caller, "reason": "rejected"}


async def test_the_callee_hangs_up_first_and_the_caller_is_hung_up(
    service: Running, control: ControlClient
) -> None:
    caller = (await control.call("acme-north-ana", "102"))["id"]
    await bridged(control, caller)
    await control.hang_up(await leg(control, caller))
    outcome = await service.outcome(caller)
    assert outcome.result == "answered, callee hung up"
    assert (await control.wait_gone(caller, within=3))["gone"]


async def test_an_external_call_presents_the_clients_ddi_to_the_carrier(
    service: Running, control: ControlClient
) -> None:
    caller = (await control.call("acme-north-ana", "0034600123123"))["id"]
    await bridged(control, caller)
    callee = await control.channel(await leg(control, caller))
    assert endpoint_of(callee) == "carrier-telco-es"
    assert callee["connected"]["number"] == "+34910000100"
    created = [r for r in await control.requests() if r["path"].endswith("/channels/create")]
    assert created[0]["params"]["endpoint"] == "PJSIP/+34600123123@carrier-telco-es"
    await control.hang_up(caller)
    assert (await service.outcome(caller)).answered


async def test_a_carrier_call_to_a_ddi_rings_its_user(
    service: Running, control: ControlClient
) -> None:
    caller = (
        await control.call(
            "carrier-telco-es", "+34910000101", args=["carrier"], caller_id="<+34600111222>"
        )
    )["id"]
    await bridged(control, caller)
    callee = await control.channel(await leg(control, caller))
    assert endpoint_of(callee) == "acme-north-bruno"
    assert callee["connected"]["number"] == "+34600111222"
    await control.hang_up(callee["id"])
    assert (await service.outcome(caller)).result == "answered, callee hung up"


@pytest.mark.parametrize(
    ("answer", "result", "cause"),
    [
        ("busy", "callee failed", "busy"),
        ("noanswer", "callee failed", "no_answer"),
        ("fail", "callee failed", "congestion"),
    ],
)
async def test_a_callee_that_does_not_answer_ends_the_call_with_its_cause(
    service: Running, control: ControlClient, answer: str, result: str, cause: str
) -> None:
    await control.endpoint("acme-north-bruno", answer, after=0.05)
    caller = (await control.call("acme-north-ana", "102"))["id"]
    outcome = await service.outcome(caller, within=5)
    assert not outcome.answered
    assert (outcome.result, outcome.cause) == (result, cause)
    gone = await control.wait_gone(caller, within=3)
    assert gone["gone"]


async def test_an_unknown_endpoint_is_refused_as_no_client(
    service: Running, control: ControlClient
) -> None:
    caller = (await control.call("intruder", "102"))["id"]
    outcome = await service.outcome(caller)
    assert (outcome.decision, outcome.reason, outcome.cause) == (
        "reject",
        "no_client",
        "unallocated",
    )
    assert (await control.wait_gone(caller, within=3))["cause"] == 1


async def test_a_refused_call_hangs_up_with_the_reasons_cause(
    service: Running, control: ControlClient
) -> None:
    caller = (await control.call("acme-north-bruno", "803123456"))["id"]
    outcome = await service.outcome(caller)
    assert (outcome.reason, outcome.cause) == ("not_allowed", "rejected")
    assert (await control.wait_gone(caller, within=3))["cause"] == 21


async def test_the_caller_hanging_up_while_it_rings_cancels_the_callee(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient
) -> None:
    # A long dial timeout: the caller's hang-up, not the timeout, must end the ringing.
    service = await start_link(sim, demo_engine, replace(CONFIG, dial_timeout=30.0))
    try:
        await control.endpoint("acme-north-bruno", "noanswer")
        caller = (await control.call("acme-north-ana", "102"))["id"]
        callee = await leg(control, caller)
        await control.hang_up(caller)
        outcome = await service.outcome(caller)
    finally:
        await service.stop()
    # Depending on how far the set-up got when the caller left:
    assert outcome.result in (
        "caller hung up before answer",
        "caller left while the call was being set up",
    )
    assert not outcome.answered
    assert (await control.wait_gone(callee, within=3))["gone"]


async def test_a_caller_taken_out_of_the_app_mid_set_up_fails_the_call_and_nothing_is_left(
    tmp_path: Path, demo_engine: AsyncEngine
) -> None:
    # Another ARI client moves the caller to the dialplan while its callee rings: the
    # answer that follows is refused (409), the caller is still there, so the call fails
    # as an ARI fault would, and both legs are hung up.
    config = fast_config(tmp_path / "recordings", dialplan_seconds=30.0)
    config.behaviours["acme-north-bruno"] = Behaviour("answer", after=1.0)
    async with (
        Simulator(config) as sim,
        ControlClient(sim.url) as control,
        aiohttp.ClientSession() as session,
    ):
        service = await start_link(sim, demo_engine, replace(CONFIG, dial_timeout=30.0))
        try:
            caller = str((await control.call("acme-north-ana", "102"))["id"])
            callee = await leg(control, caller)
            status, _ = await Rest(session, sim.url)("POST", f"/channels/{caller}/continue")
            outcome = await service.outcome(caller)
        finally:
            await service.stop()
        assert status == 204
        assert (outcome.result, outcome.reason, outcome.cause) == (
            "failed",
            "service_unavailable",
            "congestion",
        )
        assert (await control.wait_gone(callee, within=3))["gone"]
        assert (await control.wait_gone(caller, within=3))["gone"]


async def legs(control: ControlClient, caller: str) -> list[str]:
    """The ids of the legs dialled for ``caller`` that exist now."""
    return [str(c["id"]) for c in await control.channels() if caller_of_leg(str(c["id"])) == caller]


async def leg(control: ControlClient, caller: str, besides: str = "") -> str:
    """The id of the (new) leg dialled for ``caller``, once it exists."""

    async def dialled() -> bool:
        return any(found != besides for found in await legs(control, caller))

    await until(dialled)
    return next(found for found in await legs(control, caller) if found != besides)


async def test_the_service_reconnects_after_asterisk_goes_away(
    tmp_path: Path, demo_engine: AsyncEngine
) -> None:
    config = fast_config(tmp_path / "rec")
    first = Simulator(config)
    await first.start()
    port = first.port
    running = await start_link(first, demo_engine)
    await first.stop()
    await until(lambda: running.link.state != "connected")
    config.port = port  # Asterisk comes back where it was
    second = Simulator(config)
    await second.start()
    try:
        await until(lambda: running.link.state == "connected", within=5)
        async with ControlClient(second.url) as control:
            await until(lambda: _has_app(control))
            caller = (await control.call("acme-north-ana", "102"))["id"]
            await bridged(control, caller)
            await control.hang_up(caller)
            assert (await running.outcome(caller)).answered
    finally:
        await running.stop()
        await second.stop()


async def test_a_killed_service_leaves_calls_that_its_successor_adopts(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient, tmp_path: Path
) -> None:
    # The first service is a real `callcontrol run` process, killed with SIGKILL.
    environment = {
        **os.environ,
        "CALLCONTROL_DATABASE_URL": str(demo_engine.url),
        "CALLCONTROL_ARI_URL": sim.url,
        "CALLCONTROL_ARI_USER": USER,
        "CALLCONTROL_ARI_PASSWORD": PASSWORD,
        "CALLCONTROL_APP": APP,
        "CALLCONTROL_HEALTH_PORT": "0",
        "CALLCONTROL_DIAL_TIMEOUT": "30",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callcontrol", "run", env=environment, cwd=tmp_path
    )
    try:
        await until(lambda: _has_app(control), within=20)
        await control.endpoint("acme-north-carla", "noanswer")
        bridged_call = (await control.call("acme-north-ana", "102"))["id"]
        await bridged(control, bridged_call)
        bridged_leg = await leg(control, bridged_call)
        waiting = (await control.call("acme-north-bruno", "103"))["id"]  # carla never answers
        stale_leg = await leg(control, waiting)
    finally:
        process.kill()
        await process.wait()
    await until(lambda: _lacks_app(control))
    assert len(await control.channels()) == 4  # nobody tore them down

    # A long dial timeout: the new leg must still ring when the test hangs its caller up.
    second = await start_link(sim, demo_engine, replace(CONFIG, dial_timeout=30.0))
    try:
        await asyncio.wait_for(second.link.adopted.wait(), 5)
        # The bridged call is watched again: its caller hanging up ends both legs.
        await control.hang_up(bridged_call)
        adopted = await second.outcome(bridged_call)
        assert adopted.result == "answered, caller hung up"
        assert (await control.wait_gone(bridged_leg, within=3))["gone"]
        # The ringing call is decided afresh: a new leg rings, the stale one is hung up.
        assert (await control.wait_gone(stale_leg, within=3))["gone"]
        await leg(control, waiting, besides=stale_leg)
        await control.hang_up(waiting)
        assert (await second.outcome(waiting)).result in (
            "caller hung up before answer",
            "caller left while the call was being set up",  # under load, mid set-up
        )
        await until(lambda: _no_channels(control))
    finally:
        await second.stop()


async def _lacks_app(control: ControlClient) -> bool:
    return not await _has_app(control)


async def _no_channels(control: ControlClient) -> bool:
    return await control.channels() == []


async def test_stopping_lets_a_live_call_finish_and_turns_new_ones_away(
    service: Running, control: ControlClient
) -> None:
    live = (await control.call("acme-north-ana", "102"))["id"]
    await bridged(control, live)
    stopping = asyncio.create_task(service.link.stop(5.0))
    await until(lambda: not service.link.accepting)
    refused = (await control.call("acme-north-bruno", "101"))["id"]
    assert (await control.wait_gone(refused, within=3))["cause"] == 34
    assert not stopping.done()  # the live call is still up
    await control.hang_up(live)
    await asyncio.wait_for(stopping, 5)
    assert (await service.outcome(live)).result == "answered, caller hung up"


async def test_health_reports_the_ari_connection(
    sim: Simulator, demo_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callcontrol.service")
    config = replace(CONFIG, ari_url=sim.url, health_port=_free_port())
    service = Service(config, SqlDirectory(demo_engine))
    task = asyncio.create_task(service.run())
    url = f"http://127.0.0.1:{config.health_port}/health"
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(url) as response:
                        return response.status == 200
                return False

            # Healthy within a tenth of a second when run alone; a full CI run twice saw it
            # take over 5 s (unexplained: the service now logs its start-up's steps, and
            # a failure here says what /health answered by then).
            try:
                await until(healthy, within=30.0)
            except TimeoutError:
                pytest.fail(f"/health not 200 within 30 s: {service.health()}")
            async with http.get(url) as response:
                body = await response.json()
        assert body["status"] == "ok"
        assert body["asterisk"][0]["state"] == "connected"
        # The start-up says how long the configuration took to load, and what it holds.
        loaded = [r.getMessage() for r in caplog.records if "in memory" in r.getMessage()]
        version = body["configuration"]["version"]
        assert len(loaded) == 1
        assert loaded[0].startswith(f"configuration {version} in memory: ")
        assert " clients, " in loaded[0]
        assert " loaded in " in loaded[0]
    finally:
        service.request_stop()
        await asyncio.wait_for(task, 10)


def _free_port() -> int:
    return free_port(socket.SOCK_STREAM)


def test_events_are_routed_by_every_object_they_name() -> None:
    event = {
        "type": "PlaybackFinished",
        "playback": {"id": "p1", "target_uri": "channel:abc"},
    }
    assert owner_ids(event) == ["abc"]
    dial = {"type": "Dial", "peer": {"id": "x-b"}, "caller": {"id": "x"}}
    assert owner_ids(dial) == ["x-b", "x"]
    assert owner_ids({"type": "BridgeDestroyed", "bridge": {"id": "br"}}) == ["br"]


def test_the_endpoint_of_a_channel_keeps_dashes_in_its_name() -> None:
    assert endpoint_of({"name": "PJSIP/acme-north-ana-0000002a"}) == "acme-north-ana"


async def test_a_client_with_its_own_audio_for_a_locution_is_heard_with_it(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient
) -> None:
    samples = io.BytesIO()
    with wave.open(samples, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x10\x00" * 8000)
    override = await set_override(
        demo_engine, "acme-north", "not_allowed", "es", samples.getvalue()
    )
    link = AsteriskLink(sim.url, CONFIG, Pipeline(SqlDirectory(demo_engine)))
    link.journal = []
    running = Running(link)
    try:
        await until(lambda: _has_app(control))
        refused = (await control.call("acme-north-bruno", "803123456"))["id"]  # es, not_allowed
        english = (await control.call("acme-north-carla", "12345"))["id"]  # en, invalid_number
        await running.outcome(refused)
        await running.outcome(english)
    finally:
        await running.stop()
    played = {
        params["channelId"]: params["media"]
        for name, params in link.journal
        if name == "channels.play"
    }
    assert played[refused] == f"sound:callcontrol/client-{override.client_id}/not_allowed"
    assert played[english] == "sound:callcontrol/invalid_number"  # no override: the platform's


async def test_a_link_stopped_while_it_connects_ends_without_streaming(
    sim: Simulator, demo_engine: AsyncEngine
) -> None:
    link = AsteriskLink(sim.url, CONFIG, Pipeline(SqlDirectory(demo_engine)))
    task = asyncio.create_task(link.run())
    await asyncio.sleep(0)  # it is asking the Asterisk for its API
    assert link.state == "connecting"
    await link.stop(1.0)
    await asyncio.wait_for(task, 5)  # the connection it was making is closed, not used
    assert link.state == "stopped"
    assert not link.connected.is_set()


async def test_an_operation_the_asterisk_does_not_offer_is_an_ari_error(sim: Simulator) -> None:
    ari = await Ari.connect(sim.url, USER, PASSWORD)
    try:
        with pytest.raises(AriError, match="not offered by"):
            await ari.request("channels", "noSuchOperation", channelId="x")
    finally:
        await ari.close()


async def one_call_journaled(
    sim: Simulator, engine: AsyncEngine, control: ControlClient, caller: str, to: str = "102"
) -> tuple[AsteriskLink, Outcome, dict[str, Any]]:
    """One call from ``caller`` to ``to`` through a link that journals its ARI requests:
    the link, the call's outcome, and how the caller's channel went."""
    link = AsteriskLink(sim.url, CONFIG, Pipeline(SqlDirectory(engine)))
    link.journal = []
    running = Running(link)
    try:
        await until(lambda: _has_app(control))
        channel = (await control.call(caller, to))["id"]
        outcome = await running.outcome(channel)
        gone = await control.wait_gone(channel, within=3)
    finally:
        await running.stop()
    return link, outcome, gone


async def test_with_the_database_gone_a_call_hears_service_unavailable_and_gets_503(
    sim: Simulator, control: ControlClient, tmp_path: Path
) -> None:
    # The shared database is a file in a folder that does not exist: no connection at all.
    gone = create_engine(f"sqlite:///{tmp_path / 'missing' / 'platform.db'}")
    try:
        link, outcome, gone_at = await one_call_journaled(sim, gone, control, "acme-north-ana")
    finally:
        await gone.dispose()
    assert (outcome.decision, outcome.reason, outcome.cause, outcome.result) == (
        "reject",
        "service_unavailable",
        "congestion",
        "refused after its voice notification",
    )
    assert gone_at["cause"] == 34  # SIP 503
    played = [params for name, params in link.journal if name == "channels.play"]
    assert [(p["media"], p["lang"]) for p in played] == [
        ("sound:callcontrol/service_unavailable", "en")
    ]


async def test_a_callee_with_no_contact_is_unreachable_the_caller_hears_why_and_gets_480(
    sim: Simulator, demo_engine: AsyncEngine, control: ControlClient
) -> None:
    # Asterisk answers channels.create 500 "Allocation failed" for an endpoint with no
    # contact (a phone that never registered): not a fault of the service.
    await control.endpoint("acme-north-bruno", "unreachable")
    link, outcome, gone = await one_call_journaled(sim, demo_engine, control, "acme-north-ana")
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "dial terminal acme-north-bruno",
        "callee unreachable",
        "destination_unreachable",
        "no_answer",
    )
    assert gone["cause"] == 19  # chan_pjsip sends 480 Temporarily Unavailable
    played = [params["media"] for name, params in link.journal if name == "channels.play"]
    assert played == ["sound:callcontrol/destination_unreachable"]
