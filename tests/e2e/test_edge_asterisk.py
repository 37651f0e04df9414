"""Edge mode on a real Asterisk (issue 13): a sandbox rendered with one ``edge`` endpoint, SIPp
standing in for the Kamailio edge on other loopback addresses.

Linux routes the whole of 127.0.0.0/8 to loopback, so the "edge" is SIPp on ``127.0.0.3``
(in ``trusted_proxies``): an INVITE from there naming ``X-CC-Terminal: e2e-alice`` is her
call, and the leg to the carrier goes back to the edge's address (the ``edge`` endpoint's
outbound proxy) with the carrier's address in the Request-URI and ``X-CC-Relay-Set``. The
same INVITE from ``127.0.0.4`` (identified as the edge by Asterisk, here, but not a trusted
proxy for callcontrol) names nobody: ``no_client``, and the edge never sees a leg.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from callcontrol.asterisk.render import AriUser
from callcontrol.fastagi import AgiFront
from callcontrol.session import Outcome
from dialplan.pipeline import Pipeline
from models import Client
from models.db import create_engine
from models.directory import SqlDirectory
from models.platform import MediaRelaySet
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    run_sipp,
    serving,
    until,
)
from tests.e2e.sandboxes import (
    AsteriskHandle,
    provision,
    sandbox_settings,
    start_sandbox,
)
from tests.e2e.sipp import Sipp, SippResult
from tests.e2e.test_notifications import call_with_counter, final_status, heard_early_media
from tests.ports import free_port

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

EDGE_IP = "127.0.0.3"
"""The stand-in edge: trusted, and where legs leave to."""
FORGER_IP = "127.0.0.4"
"""An address Asterisk takes as the edge but callcontrol does not trust."""
ALICE = "e2e-alice"
"""A terminal of e2e-client, which records on demand (its calls are bridged by the app)."""
DAVE = "e2e-dave"
"""The terminal of e2e-quiet-client, which records nothing (its calls are handed back)."""
DAVE_DDI = "+34910000200"
NATIONAL = "600123123"
E164 = "+34600123123"
ARI = AriUser("e2e-edge", f"e2e-edge-secret-{os.getpid()}")
STANDBY = 10
"""Seconds the edge's UAS waits for a leg that must not come."""


@pytest.fixture(scope="module")
def edge_port() -> int:
    return free_port(address=EDGE_IP)


@pytest.fixture(scope="module")
def edge_asterisk(
    tmp_path_factory: pytest.TempPathFactory, edge_port: int
) -> Iterator[AsteriskHandle]:
    folder = tmp_path_factory.mktemp("edge-asterisk")
    carrier_port = free_port()
    database_url = provision(folder, carrier_port)
    asyncio.run(with_relay_set(database_url))
    fastagi_port = free_port(socket.SOCK_STREAM)
    fastagi_secret = secrets.token_hex(16)
    name = f"test-edge-{os.getpid()}"
    settings = replace(
        sandbox_settings(name, ARI, {}, (35000, 35999), fastagi_port, fastagi_secret),
        mode="edge",
        edge_address=f"{EDGE_IP}:{edge_port}",
        edge_match=(EDGE_IP, FORGER_IP),
        contacts={},
        bench_password=None,
    )
    instance, state = start_sandbox(database_url, settings)
    try:
        yield AsteriskHandle(
            instance,
            state,
            ARI.user,
            ARI.password,
            database_url,
            carrier_port,
            {},
            fastagi_port,
            fastagi_secret,
        )
    finally:
        instance.stop(settings.stop_timeout)
        shutil.rmtree(instance.folder, ignore_errors=True)


QUIET_SET = "e2e-quiet-set"
"""The media relay set of e2e-quiet-client (e2e-client has none: the default set, 0)."""


async def with_relay_set(url: str) -> None:
    """e2e-quiet-client's media anchored by a set of its own (before any service starts)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(MediaRelaySet).values(name=QUIET_SET))
            found = select(MediaRelaySet.id).where(MediaRelaySet.name == QUIET_SET)
            await connection.execute(
                update(Client)
                .where(Client.name == "e2e-quiet-client")
                .values(media_relay_set_id=found.scalar_subquery())
            )
    finally:
        await engine.dispose()


def quiet_set(url: str) -> str:
    async def read() -> str:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                found = select(MediaRelaySet.id).where(MediaRelaySet.name == QUIET_SET)
                return str(await connection.scalar(found))
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.fixture(scope="module")
def quiet_relay_set(edge_asterisk: AsteriskHandle) -> str:
    """The id of e2e-quiet-client's set, as X-CC-Relay-Set carries it."""
    return quiet_set(edge_asterisk.database_url)


@pytest.fixture
async def edge_rest(edge_asterisk: AsteriskHandle) -> AsyncIterator[AriRest]:
    client = AriRest.of(edge_asterisk)
    yield client
    await client.close()


@pytest.fixture
async def edge_service(
    edge_asterisk: AsteriskHandle, edge_rest: AriRest, edge_port: int
) -> AsyncIterator[LiveLink]:
    config = link_config(
        edge_asterisk,
        mode="edge",
        edge_address=f"{EDGE_IP}:{edge_port}",
        trusted_proxies=EDGE_IP,
    )
    async with serving(edge_asterisk, edge_rest, LiveLink(config)) as live:
        yield live


@pytest.fixture
async def edge_agi(edge_asterisk: AsteriskHandle, edge_port: int) -> AsyncIterator[list[Outcome]]:
    """The FastAGI front on the sandbox's port, in edge mode: the outcomes it logs."""
    config = link_config(
        edge_asterisk,
        server="as-agi",
        fastagi_secret=edge_asterisk.fastagi_secret,
        mode="edge",
        edge_address=f"{EDGE_IP}:{edge_port}",
        trusted_proxies=EDGE_IP,
    )
    engine = create_engine(edge_asterisk.database_url)
    outcomes: list[Outcome] = []
    try:
        front = AgiFront(config, Pipeline(SqlDirectory(engine)))
        front.on_outcome = outcomes.append
        await front.start("127.0.0.1", edge_asterisk.fastagi_port)
        try:
            yield outcomes
        finally:
            await front.stop()
    finally:
        await engine.dispose()


@pytest.fixture
def role(sipp_dir: Path) -> Callable[[str, str, int | None], Sipp]:
    """A SIPp role on ``address`` (a given SIP port, or a free one)."""

    def make(scenario: str, address: str, port: int | None = None) -> Sipp:
        sip = port or free_port(address=address)
        return Sipp(scenario, sip, even_port(address), sipp_dir, address)

    return make


def even_port(address: str) -> int:
    """A free media port on ``address``: RTP on it, RTCP on the next."""
    for _ in range(50):
        port = free_port(address=address)
        if port % 2 == 0 and port < 65000:
            return port
    raise RuntimeError(f"no free even port on {address} in 50 tries")


def relay_sets(invite: str) -> list[str]:
    """Every X-CC-Relay-Set value of an INVITE."""
    lines = (line.strip() for line in invite.splitlines())
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("X-CC-Relay-Set:")]


def invites(result: SippResult) -> list[str]:
    return [
        m.text
        for m in result.messages
        if m.direction == "received" and m.first_line.startswith("INVITE ")
    ]


async def answered_through_the_edge(
    asterisk: AsteriskHandle,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
    scenario: str,
    who: str,
    dialled: str,
) -> tuple[str, str]:
    """``who`` (named by the edge's header in ``scenario``) calls ``dialled`` from the edge;
    the edge's UAS answers the leg that comes back. (Request-Line, whole INVITE) of it."""
    uas = role("uas_answer.xml", EDGE_IP, edge_port)
    listening = uas.start(calls=1, timeout=30)
    caller = await run_sipp(
        role(scenario, EDGE_IP, None),
        asterisk.sip_target,
        service=dialled,
        user=who,
        timeout=30,
    )
    leg = await finish_sipp(uas, listening, within=40)
    assert (caller.returncode, caller.successful) == (0, 1), caller.describe()
    [invite, *_] = invites(leg)  # then re-INVITEs (the connected line)
    return invite.strip().splitlines()[0], invite


async def test_a_trusted_edge_call_leaves_through_the_edge_to_the_carrier(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
) -> None:
    # e2e-client records on demand: the app dials the leg (ARI), header set on the channel.
    first, invite = await answered_through_the_edge(
        edge_asterisk, role, edge_port, "edge_answered.xml", ALICE, NATIONAL
    )
    assert first == f"INVITE sip:{E164}@127.0.0.1:{edge_asterisk.carrier_port} SIP/2.0", invite
    assert relay_sets(invite) == ["0"], invite  # e2e-client has no relay set: the default
    outcome = await edge_service.outcome()
    assert (outcome.client, outcome.decision) == ("e2e-client", "dial carrier carrier-e2e")
    assert outcome.answered


async def test_a_handed_back_edge_call_is_dialled_through_the_edge_by_the_dialplan(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
    quiet_relay_set: str,
) -> None:
    # e2e-quiet-client records nothing: [callcontrol-dial] dials, [callcontrol-edge] adds
    # the header on the dialled leg: the calling client's set anchors a carrier leg.
    first, invite = await answered_through_the_edge(
        edge_asterisk, role, edge_port, "edge_answered.xml", DAVE, NATIONAL
    )
    assert first == f"INVITE sip:{E164}@127.0.0.1:{edge_asterisk.carrier_port} SIP/2.0", invite
    assert relay_sets(invite) == [quiet_relay_set], invite
    outcome = await edge_service.outcome()
    assert (outcome.client, outcome.decision) == ("e2e-quiet-client", "dial carrier carrier-e2e")
    assert outcome.answered


async def test_a_carrier_call_through_the_edge_rings_the_terminal_at_its_sip_domain(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
    quiet_relay_set: str,
) -> None:
    # The callee terminal's client's set anchors a terminal leg.
    first, invite = await answered_through_the_edge(
        edge_asterisk, role, edge_port, "edge_carrier_answered.xml", "carrier-e2e", DAVE_DDI
    )
    assert first == "INVITE sip:e2e-dave@quiet.e2e.example.net SIP/2.0", invite
    assert relay_sets(invite) == [quiet_relay_set], invite
    outcome = await edge_service.outcome()
    assert (outcome.client, outcome.decision) == ("e2e-quiet-client", "dial terminal e2e-dave")


async def test_the_same_call_from_an_untrusted_address_is_no_client(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
) -> None:
    uas = role("uas_answer.xml", EDGE_IP, edge_port)
    standing_by = uas.start(calls=1, timeout=STANDBY)
    caller = await run_sipp(
        role("edge_refused.xml", FORGER_IP, None),
        edge_asterisk.sip_target,
        service=NATIONAL,
        user=ALICE,
        timeout=30,
    )
    leg = await finish_sipp(uas, standing_by, within=STANDBY + 15)
    assert (caller.returncode, caller.successful) == (0, 1), caller.describe()
    assert invites(leg) == []  # nothing left through the edge
    outcome = await edge_service.outcome()
    assert (outcome.decision, outcome.reason, outcome.client) == ("reject", "no_client", None)


async def test_the_fastagi_front_believes_the_edge_only_from_a_trusted_address(
    edge_asterisk: AsteriskHandle,
    edge_agi: list[Outcome],
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
    quiet_relay_set: str,
) -> None:
    # No ARI app: the AGI arguments carry the edge's headers, the dialplan dials.
    first, invite = await answered_through_the_edge(
        edge_asterisk, role, edge_port, "edge_answered.xml", DAVE, NATIONAL
    )
    assert first == f"INVITE sip:{E164}@127.0.0.1:{edge_asterisk.carrier_port} SIP/2.0", invite
    assert relay_sets(invite) == [quiet_relay_set], invite
    await until(lambda: len(edge_agi) == 1, within=10)
    assert (edge_agi[0].client, edge_agi[0].decision) == (
        "e2e-quiet-client",
        "dial carrier carrier-e2e",
    )
    caller = await run_sipp(
        role("edge_refused.xml", FORGER_IP, None),
        edge_asterisk.sip_target,
        service=NATIONAL,
        user=DAVE,
        timeout=30,
    )
    assert (caller.returncode, caller.successful) == (0, 1), caller.describe()
    await until(lambda: len(edge_agi) == 2, within=10)
    assert (edge_agi[1].decision, edge_agi[1].reason) == ("reject", "no_client")


async def refused_for_the_relay(
    asterisk: AsteriskHandle,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
    scenario: str,
    who: str,
) -> SippResult:
    """``who`` calls a national number from the edge; the edge refuses the leg that comes
    back as it does when the leg's media relay set has no live rtpengine (503, Q.850 47)."""
    uas = role("uas_relay_unavailable.xml", EDGE_IP, edge_port)
    listening = uas.start(calls=1, timeout=30)
    caller = role(scenario, EDGE_IP, None)
    if scenario == "edge_refused_early_media.xml":
        result, rtp = await call_with_counter(
            caller,
            asterisk.sip_target,
            rtp_address=EDGE_IP,
            service=NATIONAL,
            user=who,
            timeout=30,
        )
        leg = await finish_sipp(uas, listening, within=40)
        heard_early_media(result, rtp, 503, "service_unavailable")
    else:
        result = await run_sipp(caller, asterisk.sip_target, service=NATIONAL, user=who, timeout=30)
        leg = await finish_sipp(uas, listening, within=40)
        assert (result.returncode, result.successful) == (0, 1), result.describe()
        assert final_status(result) == 503, result.describe()
        assert 183 not in result.received_statuses(), result.describe()  # no voice notifications
    assert len(invites(leg)) == 1, leg.describe()
    return result


async def test_a_leg_the_edge_cannot_anchor_is_spoken_as_service_unavailable(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
) -> None:
    # e2e-client (voice notifications, bridged by the app): the callee's leg gets the edge's
    # 503 with cause 47: the caller hears service_unavailable, then 503.
    await refused_for_the_relay(
        edge_asterisk, role, edge_port, "edge_refused_early_media.xml", ALICE
    )
    outcome = await edge_service.outcome()
    assert (outcome.client, outcome.reason, outcome.cause) == (
        "e2e-client",
        "service_unavailable",
        "congestion",
    )
    assert not outcome.answered


async def test_a_handed_back_leg_the_edge_cannot_anchor_ends_as_service_unavailable(
    edge_asterisk: AsteriskHandle,
    edge_service: LiveLink,
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
) -> None:
    # e2e-quiet-client (no voice notifications, dialled by the dialplan): the same 503, no sound.
    await refused_for_the_relay(edge_asterisk, role, edge_port, "edge_refused.xml", DAVE)
    outcome = await edge_service.outcome()
    assert (outcome.client, outcome.reason, outcome.cause) == (
        "e2e-quiet-client",
        "service_unavailable",
        "congestion",
    )


async def test_the_fastagi_front_ends_a_leg_the_edge_cannot_anchor_as_service_unavailable(
    edge_asterisk: AsteriskHandle,
    edge_agi: list[Outcome],
    role: Callable[[str, str, int | None], Sipp],
    edge_port: int,
) -> None:
    await refused_for_the_relay(edge_asterisk, role, edge_port, "edge_refused.xml", DAVE)
    await until(lambda: len(edge_agi) == 1, within=10)
    assert (edge_agi[0].client, edge_agi[0].reason, edge_agi[0].cause) == (
        "e2e-quiet-client",
        "service_unavailable",
        "congestion",
    )


def test_asterisk_warned_of_nothing_in_these_calls(edge_asterisk: AsteriskHandle) -> None:
    """Every dialplan function of the edge contexts was given what it needs (an empty
    BASE64_ENCODE/DECODE argument warns on every call)."""
    console = edge_asterisk.instance.console_log.read_text(errors="replace")
    assert "base64_helper" not in console
    assert "PJSIP_HEADER" not in console
