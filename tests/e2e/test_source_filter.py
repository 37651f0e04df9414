"""The source filter on the real Asterisk sandbox (DESIGN §3.3): where a terminal calls from.

e2e-guarded-client (frank) filters by IP and authorizes only ``127.0.0.1/32``. Linux routes
the whole of 127.0.0.0/8 to the loopback interface, so a SIPp bound to ``127.0.0.2`` (SIP with
``-i``, media with ``-mi``) is, for Asterisk, a terminal calling from another address, with no
setup. Terminals authenticate by digest, not by address (``pjsip.conf.j2`` has no ``identify``
for them), so Asterisk takes the call from anywhere and the dialplan hands the service the
address it came from (``${CHANNEL(pjsip,remote_addr)}``, the second Stasis argument).

From the authorized address frank's external call goes out; from elsewhere it is refused with
``ip_not_allowed``: a 183 with SDP, the locution as early media (the platform speaks, although
the client lacks ``voice_notifications``), then 403, and the carrier never hears of it. The
filter is the client's: alice's client filters nothing, so she may call from anywhere.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from locutions.build import SOUNDS_DIR, read_audio, sound_file
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    no_channel_left,
    run_sipp,
    until,
)
from tests.e2e.rtp import rtp_counter, with_keys
from tests.e2e.sandboxes import AsteriskHandle, free_port
from tests.e2e.sipp import Message, Sipp, SippResult

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

AUTHORIZED = "127.0.0.1"
"""The one source e2e-guarded-client authorizes (``127.0.0.1/32``)."""
ELSEWHERE = "127.0.0.2"
"""Another loopback address: a source no filter of the dataset authorizes."""
FRANK = {"user": "e2e-frank", "password": "frank-e2e-secret"}
"""The terminal of e2e-guarded-client, which filters by IP and lacks voice_notifications."""
ALICE = {"user": "e2e-alice", "password": "alice-e2e-secret"}
"""A terminal of e2e-client, which does not filter by IP."""
FRANK_DDI = "+34910000300"
"""e2e-guarded-client's outgoing DDI: what the carrier sees of frank's external calls."""
NATIONAL = "600123123"
"""An external number, national in the clients' country (Spain)."""
E164 = "+34600123123"

MIN_PACKETS = 50
"""At 20 ms a packet, 1 s of audio: the ``ip_not_allowed`` locution lasts longer."""
SLACK_SECONDS = 0.1
"""How much shorter than its file the locution may arrive and still count as played whole."""
NOTIFIED = "refused after its voice notification"
"""The result the service logs for a refusal whose locution played to its end."""
CARRIER_STANDBY = 8
"""Seconds a SIPp carrier waits for an INVITE that must not come (a refusal takes ~3 s)."""


@pytest.fixture
def sipp_from(sipp_dir: Path) -> Callable[[str, str], Sipp]:
    """Make a SIPp role for a scenario that sends SIP and media from ``address`` (another
    loopback address than Asterisk's), on ports free there."""

    def make(scenario: str, address: str) -> Sipp:
        return Sipp(scenario, free_port(address=address), even_port(address), sipp_dir, address)

    return make


def even_port(address: str) -> int:
    """A free media port on ``address``: RTP on it, RTCP on the next."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM, address)
        if port % 2 == 0 and port < 65000:
            return port
    raise RuntimeError(f"no free even port on {address} in 50 tries")


def ok(result: SippResult) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), result.describe()


def final_status(result: SippResult) -> int:
    """The final response the caller got to its (authenticated) request."""
    finals = [s for s in result.received_statuses() if s >= 200 and s != 401]
    assert finals, result.describe()
    return finals[-1]


def responses(result: SippResult, status: int) -> list[Message]:
    return [m for m in result.messages if m.direction == "received" and m.status == status]


def received(result: SippResult, method: str) -> list[Message]:
    """Every request ``method`` a SIPp role received, in order."""
    return [
        m
        for m in result.messages
        if m.direction == "received" and m.first_line.startswith(f"{method} ")
    ]


def user_of(header: str | None) -> str:
    """``"x" <sip:+3491…@host>;tag=…`` → ``+3491…``."""
    assert header is not None
    return header.split("sip:", 1)[1].split("@", 1)[0]


def terminal_sources(service: LiveLink) -> list[str]:
    """The address each call from a terminal came from, as Asterisk handed it to the app (the
    Stasis arguments ``terminal,<remote_addr>``), in order."""
    return [
        str(event["args"][1])
        for event in service.events
        if event["type"] == "StasisStart" and event.get("args", [])[:1] == ["terminal"]
    ]


def host_of(address: str) -> str:
    """``127.0.0.2:5071`` → ``127.0.0.2``."""
    return address.rsplit(":", 1)[0]


def locution_seconds(sound: str, language: str = "en") -> float:
    """How long the stock locution ``sound`` lasts (the dataset's clients override none)."""
    return read_audio(sound_file(SOUNDS_DIR, language, sound)).seconds


async def answered_external_call(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], caller: Sipp, who: dict[str, str]
) -> tuple[SippResult, SippResult]:
    """``caller`` dials the external number; the SIPp carrier answers; the caller hangs up
    after 0.5 s. Both SIPp results."""
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    ringing = carrier.start(calls=1, timeout=20)
    called = await run_sipp(
        caller, asterisk.sip_target, service=NATIONAL, hold_ms=500, timeout=20, **who
    )
    answered = await finish_sipp(carrier, ringing)
    return called, answered


async def test_frank_calls_out_from_the_authorized_address(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    caller, carrier = await answered_external_call(
        asterisk, sipp, sipp("terminal_answered.xml"), FRANK
    )
    ok(caller)
    ok(carrier)
    assert final_status(caller) == 200
    [invite, *_] = received(carrier, "INVITE")
    assert invite.first_line.startswith(f"INVITE sip:{E164}@127.0.0.1:"), invite.text
    assert user_of(invite.header("From")) == FRANK_DDI, invite.text  # frank's client's call
    assert received(carrier, "BYE")
    assert [host_of(source) for source in terminal_sources(service)] == [AUTHORIZED]
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        None,
        True,
    )
    await no_channel_left(asterisk, rest)


async def test_frank_calling_from_another_address_hears_ip_not_allowed_then_403(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    sipp_from: Callable[[str, str], Sipp],
    service: LiveLink,
    rest: AriRest,
) -> None:
    # A carrier stands by: the refused call must not reach it.
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    standing_by = carrier.start(calls=1, timeout=CARRIER_STANDBY)
    # Asterisk sends early media to the caller's SDP, whose c= line is the SIPp media
    # address: the counter listens there, on 127.0.0.2 too.
    async with rtp_counter(ELSEWHERE, lifetime=60) as rtp:
        role = with_keys(
            sipp_from("terminal_refused_early_media.xml", ELSEWHERE), rtp_port=rtp.port
        )
        caller = await run_sipp(role, asterisk.sip_target, service=NATIONAL, timeout=20, **FRANK)
        await rtp.until_quiet(quiet=0.3, within=5)
    print(f"RTP the caller received: {rtp.stats.describe()}")  # shown when the test fails
    listening = standing_by.process.poll() is None  # it stood by through the whole call
    uninvited = await finish_sipp(carrier, standing_by, within=CARRIER_STANDBY + 10)

    # Asterisk took frank's INVITE from 127.0.0.2 (digest, not address) ...
    invite = next(m for m in caller.messages if m.first_line.startswith("INVITE "))
    assert f"SIP/2.0/UDP {ELSEWHERE}:" in (invite.header("Via") or ""), invite.text
    [source] = terminal_sources(service)
    assert host_of(source) == ELSEWHERE, source
    # ... and refused it after a 183 with SDP and the locution, never answering.
    ok(caller)
    statuses = caller.received_statuses()
    assert 200 not in statuses, caller.describe()
    assert final_status(caller) == 403, caller.describe()
    assert statuses.index(183) < statuses.index(403), caller.describe()
    [refusal, *_] = responses(caller, 403)
    assert refusal.header("Reason") == "Q.850;cause=21", refusal.text
    [progress, *_] = responses(caller, 183)
    assert progress.header("Content-Type") == "application/sdp", progress.text
    media = re.search(r"^c=IN IP4 (\S+)$.*^m=audio (\d+) ", progress.text, re.M | re.S)
    assert media is not None, progress.text
    stats = rtp.stats
    # Symmetric RTP: from the address and port the 183 announced, to 127.0.0.2.
    assert stats.sources == {(media[1], int(media[2]))}, stats.describe()
    assert stats.packets >= MIN_PACKETS, stats.describe()
    assert stats.audio_seconds >= locution_seconds("ip_not_allowed") - SLACK_SECONDS, (
        stats.describe()
    )
    assert stats.payload_types <= {0, 8}, stats.describe()
    assert stats.other == 0, stats.describe()

    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "reject",
        NOTIFIED,
        "ip_not_allowed",
        "rejected",
    )
    assert not outcome.answered
    assert listening
    assert received(uninvited, "INVITE") == [], uninvited.describe()
    assert uninvited.successful == 0
    await no_channel_left(asterisk, rest)


async def test_a_client_without_the_filter_calls_out_from_another_address(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    sipp_from: Callable[[str, str], Sipp],
    service: LiveLink,
    rest: AriRest,
) -> None:
    caller, carrier = await answered_external_call(
        asterisk, sipp, sipp_from("terminal_answered.xml", ELSEWHERE), ALICE
    )
    ok(caller)
    ok(carrier)
    assert final_status(caller) == 200
    [invite, *_] = received(carrier, "INVITE")
    assert invite.first_line.startswith(f"INVITE sip:{E164}@127.0.0.1:"), invite.text
    assert [host_of(source) for source in terminal_sources(service)] == [ELSEWHERE]
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        None,
        True,
    )
    await no_channel_left(asterisk, rest)


async def test_frank_registers_from_another_address(
    asterisk: AsteriskHandle, sipp_from: Callable[[str, str], Sipp]
) -> None:
    # The filter judges calls, not registrations: Asterisk knows a terminal by its digest.
    role = sipp_from("terminal_register.xml", ELSEWHERE)
    where = f"{ELSEWHERE}:{role.local_port}"

    def contacts() -> str:
        return asterisk.rx("pjsip show contacts")

    async def registered() -> bool:
        return (
            re.search(rf"e2e-frank/sip:\S*{re.escape(where)}", await asyncio.to_thread(contacts))
            is not None
        )

    running = role.start(asterisk.sip_target, calls=1, timeout=20, hold_ms=3000, **FRANK)
    try:
        await until(registered, within=10, every=0.2)
    finally:
        result = await finish_sipp(role, running, within=30)
    ok(result)
    [accepted, *_] = responses(result, 200)
    assert where in (accepted.header("Contact") or ""), accepted.text
    assert "e2e-frank/" not in await asyncio.to_thread(contacts)  # unregistered at the end
