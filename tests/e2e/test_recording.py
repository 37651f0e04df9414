"""On-demand recording on the real Asterisk sandbox (DESIGN §3.8): DTMF ``*<code>`` mid-call.

A SIPp terminal presses keys mid-call by playing RFC 2833 captures (:mod:`tests.e2e.dtmf`:
the digits sip-tester ships, ``*`` built from one of them); the SIPp carrier that answers
offers an RTP counter (:mod:`tests.e2e.rtp`) as its media port, so a test reads the DTMF that
reached the other party as RFC 4733 events. The e2e client's on-demand code is ``5``: ``*5``.

Without the ``recordings`` feature the code must start nothing: the keys reach the other party
unchanged and no recording file appears in Asterisk's spool.
"""

from __future__ import annotations

import array
import asyncio
import math
import re
import wave
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from models.recordings import RecordingStore, list_recordings
from tests.conftest import unavailable
from tests.e2e.dtmf import (
    build_capture,
    captures_folder,
    key_stream,
    read_capture,
    shipped_capture,
)
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    serving,
    until,
)
from tests.e2e.rtp import Dtmf, RtpStats, rtp_counter, telephone_event_payload_type, with_keys
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Sipp, SippResult

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]

ALICE = {"user": "e2e-alice", "password": "alice-e2e-secret"}
"""A terminal of e2e-client, which records on demand with code 5."""
DAVE = {"user": "e2e-dave", "password": "dave-e2e-secret"}
"""The terminal of e2e-quiet-client, which has no ``recordings`` feature."""
EXTERNAL = "600123123"
"""A national number: the e2e carrier (a SIPp UAS) answers it."""
CODE = "*5"
"""The e2e client's on-demand recording code, pressed as DTMF."""


def ok(result: SippResult) -> None:
    assert (result.returncode, result.successful, result.failed) == (0, 1, 0), result.describe()


# ---- reusable for the recorded cases ------------------------------------------------------
#
#   call = await dtmf_call(asterisk, sipp, rest, [(1.0, "*5"), (3.0, "*5"), (2.0, "*5")], 2000)
#   ok(call.caller); ok(call.carrier)
#   call.digits        # "*5*5*5": the keys the carrier received as RFC 4733 events
#   call.presses       # the same, one Dtmf each (ended, duration, SSRC, RTP timestamp)
#   call.rtp           # all the carrier received (call.rtp.audio_seconds: G.711 heard)
#   dtmf_seen(service) # the keys of the ChannelDtmfReceived the app got, in order
#
# terminal_dtmf.xml presses exactly three two-key codes; each (seconds, code) waits that long
# after the previous press (the first: after the ACK), then plays the two keys GAP_MS apart.
#
# What Asterisk 22 does with the keys (seen with this helper):
# - the service's bridge of type "mixing" goes native RTP: the caller's RFC 2833 packets reach
#   the carrier byte for byte (its SSRC, sequence numbers, timestamps) and the app gets NO
#   ChannelDtmfReceived at all;
# - a bridge of type "mixing,dtmf_events" is not native: the app gets ChannelDtmfReceived on
#   the caller's channel (digit, duration_ms 280) for every key, once it ended, and Asterisk
#   still sends every key on to the carrier, regenerated (its own SSRC and timestamps): a
#   code the service acts on reaches the other party unless something else stops it.

GAP_MS = 300
"""Between the two keys of one press: longer than a capture (~150 ms), as a person would."""
PRESSES = 3
"""How many presses terminal_dtmf.xml makes."""


@dataclass(frozen=True)
class DtmfCall:
    """A call whose caller pressed keys, and what the other party (the carrier) received."""

    caller: SippResult
    carrier: SippResult
    digits: str
    """The keys the carrier received, one per RFC 4733 event."""
    presses: list[Dtmf]
    payload_type: int
    """The telephone-event payload type Asterisk offered the carrier (and the carrier took)."""
    rtp: RtpStats
    """Everything the carrier's media port received."""


async def dtmf_call(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    rest: AriRest,
    presses: list[tuple[float, str]],
    hold_after_ms: int,
    *,
    dialled: str = EXTERNAL,
    terminal: dict[str, str] = ALICE,
    gap_ms: int = GAP_MS,
) -> DtmfCall:
    """``terminal`` calls ``dialled`` (answered by the SIPp carrier, whose media is an RTP
    counter); once answered, it makes ``presses`` — each ``(seconds after the previous press,
    two-key code)`` — holds ``hold_after_ms`` and hangs up. Returns when both SIPp ended and
    the carrier's media went quiet."""
    if len(presses) != PRESSES or any(len(code) != 2 for _, code in presses):
        raise ValueError(f"terminal_dtmf.xml presses {PRESSES} two-key codes, not {presses}")
    if captures_folder() is None:
        unavailable("sip-tester's DTMF captures", "install the Debian package sip-tester")
    caller = sipp("terminal_dtmf.xml")
    keys: dict[str, object] = {"gap_ms": gap_ms}
    plays: list[tuple[float, str]] = []  # (seconds after the first key, key)
    for number, (seconds, code) in enumerate(presses, start=1):
        keys[f"pause{number}_ms"] = round(seconds * 1000)
        at = plays[-1][0] + seconds if plays else 0.0
        plays += [(at, code[0]), (at + gap_ms / 1000, code[1])]
    captures = iter(key_stream(plays, caller.workdir / "dtmf"))
    for number in range(1, PRESSES + 1):
        for which in (1, 2):
            keys[f"press{number}_key{which}"] = next(captures)
    length = sum(seconds for seconds, _ in presses) + (hold_after_ms + PRESSES * gap_ms) / 1000
    timeout = 20 + length
    async with rtp_counter(lifetime=timeout + 30) as rtp:
        answering = sipp("uas_answer_rtp_counter.xml", asterisk.carrier_port)
        carrier = with_keys(answering, rtp_port=rtp.port)
        ringing = carrier.start(calls=1, timeout=timeout)
        running = asyncio.create_task(
            run_sipp(
                with_keys(caller, **keys),
                asterisk.sip_target,
                service=dialled,
                hold_ms=hold_after_ms,
                timeout=timeout,
                **terminal,
            )
        )
        try:
            await until(rest.bridged_pair, within=10)
        finally:
            called = await running
        answered = await finish_sipp(carrier, ringing, within=timeout)
        await rtp.until_quiet(quiet=0.3, within=5)
    print(f"RTP the carrier received: {rtp.stats.describe()}")  # shown when a test fails
    payload_type = offered_telephone_event(answered)
    return DtmfCall(
        called,
        answered,
        rtp.stats.digits(payload_type),
        rtp.stats.dtmf(payload_type),
        payload_type,
        rtp.stats,
    )


def offered_telephone_event(carrier: SippResult) -> int:
    """The telephone-event payload type of the INVITE the carrier answered."""
    for message in carrier.messages:
        if message.direction == "received" and message.first_line.startswith("INVITE "):
            payload_type = telephone_event_payload_type(message.text)
            assert payload_type is not None, f"no telephone-event offered:\n{message.text}"
            return payload_type
    raise AssertionError(f"the carrier got no INVITE:\n{carrier.describe()}")


def dtmf_events(service: LiveLink) -> list[dict[str, Any]]:
    """The ChannelDtmfReceived events the app got, in order."""
    return [event for event in service.events if event["type"] == "ChannelDtmfReceived"]


def dtmf_seen(service: LiveLink) -> str:
    """The keys Asterisk told the app about (ChannelDtmfReceived), in order."""
    return "".join(str(event["digit"]) for event in dtmf_events(service))


def spool_folder(asterisk: AsteriskHandle) -> Path:
    """The sandbox's ``astspooldir`` (its asterisk.conf), as a path on this machine."""
    instance = asterisk.instance
    conf = (instance.chroot / instance.config.lstrip("/")).read_text()
    found = re.search(r"^astspooldir\s*=>?\s*(\S+)", conf, re.M)
    assert found is not None, conf
    return instance.chroot / found[1].lstrip("/")


def recording_files(asterisk: AsteriskHandle) -> set[Path]:
    """Every file in the spool folders Asterisk records into: ``recording`` (ARI live and
    stored recordings) and ``monitor`` (MixMonitor/Monitor without an absolute path)."""
    spool = spool_folder(asterisk)
    assert spool.is_dir(), f"no spool folder {spool}: the check would see nothing"
    return {
        path
        for folder in (spool / "recording", spool / "monitor")
        for path in folder.rglob("*")
        if path.is_file()
    }


# ---- the tests ----------------------------------------------------------------------------


async def test_without_the_recordings_feature_the_code_starts_nothing_and_reaches_the_callee(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp], service: LiveLink, rest: AriRest
) -> None:
    before = recording_files(asterisk)
    call = await dtmf_call(
        asterisk,
        sipp,
        rest,
        [(1.0, CODE), (1.5, CODE), (1.5, CODE)],
        hold_after_ms=1000,
        terminal=DAVE,
    )
    ok(call.caller)
    ok(call.carrier)
    # Every key reached the other party, once, whole (the end of each event came through).
    assert call.digits == CODE * 3, call.rtp.describe()
    assert all(press.ended for press in call.presses), call.presses
    outcome = await service.outcome()
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        True,
    )
    assert recording_files(asterisk) == before
    await no_channel_left(asterisk, rest)


def test_a_star_built_from_the_shipped_1_is_the_shipped_star_renumbered(tmp_path: Path) -> None:
    folder = captures_folder()
    if folder is None:
        unavailable("sip-tester's DTMF captures", "install the Debian package sip-tester")
    assert folder is not None
    built = read_capture(build_capture("*", tmp_path))
    source = read_capture(shipped_capture("1", folder))
    assert {packet.key for packet in built} == {"*"}
    assert all(packet.checksum_ok for packet in built)
    # Only the event changed: timing, numbering and flags are the source's ...
    unchanged = ("at", "sequence", "timestamp", "ssrc", "marker", "end", "duration")
    for mine, theirs in zip(built, source, strict=True):
        assert [getattr(mine, name) for name in unchanged] == [
            getattr(theirs, name) for name in unchanged
        ]
    # ... and it says what the package's own star says, but for numbering.
    star = folder / "dtmf_2833_star.pcap"
    if star.is_file():
        same = ("payload_type", "marker", "event", "end", "volume", "duration")
        assert [[getattr(packet, name) for name in same] for packet in built] == [
            [getattr(packet, name) for name in same] for packet in read_capture(star)
        ]


def test_keys_pressed_in_turn_make_one_coherent_rtp_stream(tmp_path: Path) -> None:
    if captures_folder() is None:
        unavailable("sip-tester's DTMF captures", "install the Debian package sip-tester")
    plays = [(0.0, "*"), (0.3, "5"), (1.8, "*"), (2.1, "5")]
    captures = [read_capture(path) for path in key_stream(plays, tmp_path)]
    assert ["".join({p.key for p in capture}) for capture in captures] == ["*", "5", "*", "5"]
    assert len({p.ssrc for capture in captures for p in capture}) == 1
    sequences = [p.sequence for capture in captures for p in capture]
    assert sorted(set(sequences)) == list(range(sequences[0], sequences[0] + len(set(sequences))))
    starts = [capture[0].timestamp - captures[0][0].timestamp for capture in captures]
    assert starts == [round(seconds * 8000) for seconds, _ in plays]
    assert all(p.checksum_ok for capture in captures for p in capture)


# ---- recorded calls -----------------------------------------------------------------------


@pytest.fixture
async def recording_service(
    asterisk: AsteriskHandle, rest: AriRest, tmp_path: Path
) -> AsyncIterator[tuple[LiveLink, Path]]:
    """The service with a RecordingStore on ``tmp_path/recordings``."""
    folder = tmp_path / "recordings"
    live = LiveLink(link_config(asterisk))
    live.link.recordings = RecordingStore(live.engine, folder)
    async with serving(asterisk, rest, live):
        yield live, folder


def audio_of(path: Path) -> tuple[float, float]:
    """(seconds, RMS of the 16-bit samples) of a WAV file."""
    with wave.open(str(path), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        frames = audio.readframes(audio.getnframes())
        seconds = audio.getnframes() / audio.getframerate()
    samples = array.array("h", frames)
    rms = math.sqrt(sum(sample * sample for sample in samples) / len(samples)) if samples else 0.0
    return seconds, rms


async def test_star_code_pressed_three_times_records_two_segments(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    recording_service: tuple[LiveLink, Path],
    rest: AriRest,
) -> None:
    service, folder = recording_service
    before = recording_files(asterisk)
    # *5 at ~1.3 s starts, *5 at ~3.1 s stops, *5 at ~4.9 s starts; the caller hangs up
    # 2 s after its last key, which ends the second segment.
    call = await dtmf_call(
        asterisk, sipp, rest, [(1.0, CODE), (1.5, CODE), (1.5, CODE)], hold_after_ms=2000
    )
    ok(call.caller)
    ok(call.carrier)
    outcome = await service.outcome()
    assert outcome.answered
    assert dtmf_seen(service) == CODE * 3  # the bridge reports keys for this client
    rows = await list_recordings(service.engine, call_id=outcome.call_id)
    assert [row.segment.segment for row in rows] == [1, 2]
    assert [row.segment.recorder for row in rows] == ["alice", "alice"]
    for row, expected in zip(rows, (1.8, 2.0), strict=True):
        seconds, rms = audio_of(folder / row.file_path)
        assert abs(seconds - expected) <= 1.0, (row.file_path, seconds)
        assert abs(float(row.segment.duration) - seconds) <= 0.001, (row.segment, seconds)
        assert rms > 100, (row.file_path, rms)  # not silence: the notice at least is in it
    # The stored recordings were fetched and deleted from Asterisk's spool.
    assert recording_files(asterisk) == before
    await no_channel_left(asterisk, rest)


async def test_the_service_code_records_the_call_from_answer(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    recording_service: tuple[LiveLink, Path],
    rest: AriRest,
) -> None:
    service, folder = recording_service
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    ringing = carrier.start(calls=1, timeout=20)
    caller = await run_sipp(
        sipp("terminal_answered.xml"),
        asterisk.sip_target,
        service=f"{CODE}{EXTERNAL}",
        hold_ms=2500,
        timeout=20,
        **ALICE,
    )
    answered = await finish_sipp(carrier, ringing)
    ok(caller)
    ok(answered)
    invite = next(m for m in answered.messages if m.first_line.startswith("INVITE "))
    assert invite.first_line.startswith("INVITE sip:+34600123123@"), invite.text
    outcome = await service.outcome()
    [row] = await list_recordings(service.engine, call_id=outcome.call_id)
    seconds, rms = audio_of(folder / row.file_path)
    assert (row.segment.segment, row.segment.recorder) == (1, None)
    assert abs(seconds - 2.5) <= 1.0, seconds
    assert rms > 100
    await no_channel_left(asterisk, rest)
