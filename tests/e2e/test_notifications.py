"""Voice notifications on the real Asterisk sandbox (DESIGN §3, §3.9): what a refused caller hears.

A refused call whose client has ``voice_notifications`` (or refused for ``no_client``, which
the platform always speaks) gets a 183 with SDP, the reason's locution as early media, then the
reason's final response; the call is never answered and nobody else is called. Without the
feature, the same refusal comes with no 183 and no audio.

The caller's SDP offers the port of an RTP counter (:mod:`tests.e2e.rtp`) instead of SIPp's
own, so each test asserts how much audio really reached the caller.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import pytest

from locutions.build import SOUNDS_DIR, read_audio, sound_file
from tests.e2e.harness import (
    DIAL_TIMEOUT,
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    serving,
    until,
)
from tests.e2e.rtp import RtpCounter, rtp_counter, with_keys
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Message, Sipp, SippResult

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

ALICE = {"user": "e2e-alice", "password": "alice-e2e-secret"}
CAROL = {"user": "e2e-carol", "password": "carol-e2e-secret"}
DAVE = {"user": "e2e-dave", "password": "dave-e2e-secret"}
"""The terminal of e2e-quiet-client, which lacks voice_notifications."""
UNKNOWN_DDI = "+34910000999"
"""A DDI no client owns: a carrier's call to it is ``no_client``."""

MIN_PACKETS = 40
"""At 20 ms a packet, 0.8 s of audio: every locution lasts at least 1 s, so fewer means the
audio was cut (or never sent); a lower bound, since the exact count depends on the file."""
SLACK_SECONDS = 0.1
"""How much shorter than its file a locution may arrive and still count as played whole."""
NOTIFIED = "refused after its voice notification"
"""The result the service logs for a refusal whose locution played to its end."""
CARRIER_STANDBY = 8
"""Seconds a SIPp carrier waits for an INVITE that must not come (a refusal takes ~3 s)."""


def ok(result: SippResult) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), result.describe()


def final_status(result: SippResult) -> int:
    """The final response the caller got to its (authenticated) INVITE."""
    finals = [s for s in result.received_statuses() if s >= 200 and s != 401]
    assert finals, result.describe()
    return finals[-1]


def responses(result: SippResult, status: int) -> list[Message]:
    return [m for m in result.messages if m.direction == "received" and m.status == status]


def received_invites(result: SippResult) -> list[Message]:
    return [
        m
        for m in result.messages
        if m.direction == "received" and m.first_line.startswith("INVITE ")
    ]


def locution_seconds(sound: str, language: str = "en") -> float:
    """How long the stock locution ``sound`` lasts (the sandbox installs these files; the
    dataset's clients override none)."""
    return read_audio(sound_file(SOUNDS_DIR, language, sound)).seconds


def heard_early_media(result: SippResult, rtp: RtpCounter, final: int, sound: str) -> None:
    """The caller got a 183 with SDP before its final response ``final`` and, from the address
    the 183 announced, the whole locution ``sound`` in G.711 (the counter is read once the
    stream ends): the refusal waited for the playback to finish."""
    ok(result)
    statuses = result.received_statuses()
    assert 200 not in statuses, result.describe()  # early media only, never an answer
    assert final_status(result) == final, result.describe()
    assert 183 in statuses, result.describe()
    assert statuses.index(183) < statuses.index(final), result.describe()
    progress = responses(result, 183)[0]
    assert progress.header("Content-Type") == "application/sdp", progress.text
    media = re.search(r"^c=IN IP4 (\S+)$.*^m=audio (\d+) ", progress.text, re.M | re.S)
    assert media is not None, progress.text
    stats = rtp.stats
    # Symmetric RTP: the audio comes from the very address and port the 183 announced.
    assert stats.sources == {(media[1], int(media[2]))}, stats.describe()
    assert stats.packets >= MIN_PACKETS, stats.describe()
    # Whole: at most a couple of 20 ms packets short of the file (its last partial frame).
    assert stats.audio_seconds >= locution_seconds(sound) - SLACK_SECONDS, stats.describe()
    assert stats.payload_types <= {0, 8}, stats.describe()  # G.711, as offered
    assert stats.other == 0, stats.describe()


async def call_with_counter(
    role: Sipp, target: str, *, rtp_address: str = "127.0.0.1", **options: object
) -> tuple[SippResult, RtpCounter]:
    """Run ``role`` with its SDP offering a fresh RTP counter on ``rtp_address`` (the
    role's own, which its SDP names); the counter once the audio (if any) stopped."""
    async with rtp_counter(rtp_address, lifetime=60) as rtp:
        result = await run_sipp(with_keys(role, rtp_port=rtp.port), target, **options)
        await rtp.until_quiet(quiet=0.3, within=5)
    print(f"RTP the caller received: {rtp.stats.describe()}")  # shown when a test fails
    return result, rtp


@pytest.mark.parametrize(
    ("caller", "dialled", "reason", "cause", "status"),
    [
        pytest.param(ALICE, "12345", "invalid_number", "number_incomplete", 484, id="invalid"),
        pytest.param(CAROL, "803123456", "not_allowed", "rejected", 403, id="acl-deny"),
    ],
)
async def test_a_client_with_voice_notifications_hears_why_its_call_is_refused(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    service: LiveLink,
    rest: AriRest,
    caller: dict[str, str],
    dialled: str,
    reason: str,
    cause: str,
    status: int,
) -> None:
    # A carrier stands by: a refused call must not reach it.
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    standing_by = carrier.start(calls=1, timeout=CARRIER_STANDBY)
    result, rtp = await call_with_counter(
        sipp("terminal_refused_early_media.xml"),
        asterisk.sip_target,
        service=dialled,
        timeout=20,
        **caller,
    )
    listening = standing_by.process.poll() is None  # it stood by through the whole call
    uninvited = await finish_sipp(carrier, standing_by, within=CARRIER_STANDBY + 10)
    heard_early_media(result, rtp, status, reason)
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "reject",
        NOTIFIED,
        reason,
        cause,
    )
    assert not outcome.answered
    assert listening
    assert received_invites(uninvited) == [], uninvited.describe()
    assert uninvited.successful == 0
    await no_channel_left(asterisk, rest)


async def test_a_client_without_voice_notifications_is_refused_silently(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    result, rtp = await call_with_counter(
        sipp("terminal_refused_rtp_counter.xml"),
        asterisk.sip_target,
        service="12345",
        timeout=20,
        **DAVE,
    )
    ok(result)
    assert final_status(result) == 484
    assert 183 not in result.received_statuses(), result.describe()
    assert 200 not in result.received_statuses(), result.describe()
    assert rtp.stats.packets == 0, rtp.stats.describe()
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "reject",
        "refused",
        "invalid_number",
        "number_incomplete",
    )
    assert not outcome.answered
    await no_channel_left(asterisk, rest)


async def test_a_carrier_call_to_a_ddi_nobody_owns_hears_no_client_then_404(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    # No client, so no client feature: the platform speaks regardless.
    result, rtp = await call_with_counter(
        sipp("carrier_refused_early_media.xml", asterisk.carrier_port),
        asterisk.sip_target,
        service=UNKNOWN_DDI,
        timeout=20,
    )
    heard_early_media(result, rtp, 404, "no_client")
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "reject",
        NOTIFIED,
        "no_client",
        "unallocated",
    )
    assert not outcome.answered
    await no_channel_left(asterisk, rest)


async def test_without_the_service_the_caller_hears_service_unavailable_then_503(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], rest: AriRest
) -> None:
    # The dialplan's fallback when the app is not connected: the same early media path,
    # played by Asterisk alone (no service here).
    assert not await rest.has_app(asterisk.app)
    result, rtp = await call_with_counter(
        sipp("terminal_refused_early_media.xml"),
        asterisk.sip_target,
        service="102",
        timeout=20,
        **ALICE,
    )
    heard_early_media(result, rtp, 503, "service_unavailable")
    await no_channel_left(asterisk, rest)


@pytest.mark.parametrize("hand_back", [True, False], ids=["dialplan", "ari"])
async def test_a_colleague_whose_phone_never_registered_is_unreachable_said_then_480(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], rest: AriRest, hand_back: bool
) -> None:
    # e2e-alice (extension 101) has no contact: Asterisk's Dial() gives CHANUNAVAIL (handed
    # back to the dialplan) and channels.create 500 "Allocation failed" (bridged by the app).
    config = link_config(asterisk, hand_back=hand_back)
    async with serving(asterisk, rest, LiveLink(config)) as service:
        result, rtp = await call_with_counter(
            sipp("terminal_refused_early_media.xml"),
            asterisk.sip_target,
            service="101",
            timeout=20,
            **CAROL,
        )
        heard_early_media(result, rtp, 480, "destination_unreachable")
        outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "dial terminal e2e-alice",
        "callee unreachable",
        "destination_unreachable",
        "no_answer",
    )
    await no_channel_left(asterisk, rest)


async def test_a_colleague_whose_phone_died_registered_is_skipped_said_then_480(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], rest: AriRest, service: LiveLink
) -> None:
    # e2e-alice's phone registers, then dies without unregistering: its contact stays, and
    # the qualify OPTIONS (every 2 s in the sandbox) find nobody. Her callers are told at
    # once, instead of ringing a dead phone for the whole dial timeout.
    phone = sipp("terminal_register.xml")

    def contacts() -> str:
        return asterisk.rx("pjsip show contacts")

    async def shown(status: str) -> bool:
        listed = await asyncio.to_thread(contacts)
        return re.search(rf"e2e-alice/sip:\S+\s+\S+\s+{status}\b", listed) is not None

    running = phone.start(asterisk.sip_target, calls=1, timeout=60, hold_ms=60_000, **ALICE)
    try:
        await until(lambda: shown(r"\w+"), within=10, every=0.2)  # registered
        running.process.kill()  # dead: no unregister
        await finish_sipp(phone, running, within=10)
        await until(lambda: shown("Unavail"), within=15, every=0.2)
        started = time.monotonic()
        result, rtp = await call_with_counter(
            sipp("terminal_refused_early_media.xml"),
            asterisk.sip_target,
            service="101",
            timeout=20,
            **CAROL,
        )
        elapsed = time.monotonic() - started
        heard_early_media(result, rtp, 480, "destination_unreachable")
        outcome = await service.outcome()
    finally:
        if running.process.returncode is None:
            running.process.kill()
            await finish_sipp(phone, running, within=10)
        # the phone comes back and leaves properly: no contact left for the next tests
        await run_sipp(
            sipp("terminal_register.xml"), asterisk.sip_target, timeout=20, hold_ms=200, **ALICE
        )
    # never rang the dead phone until the dial timeout: told at once, nothing ringing
    assert 180 not in result.received_statuses(), result.describe()
    assert elapsed < DIAL_TIMEOUT + locution_seconds("destination_unreachable"), elapsed
    assert (outcome.decision, outcome.result, outcome.reason, outcome.cause) == (
        "dial terminal e2e-alice",
        "callee unreachable",
        "destination_unreachable",
        "no_answer",
    )
    await no_channel_left(asterisk, rest)
