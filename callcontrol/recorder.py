"""The recording of one answered call: segments of its bridge, toggled by ``*<code>``
or running from answer, each fetched over ARI and saved with its row (DESIGN §3.8).

A failed segment is logged and cleaned up; the call never notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import wave
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from callcontrol.ari_ import Ari, Event
from callcontrol.errors import AriError, ChannelGone
from dialplan.errors import CallControlError
from dialplan.recording import RecordingPlan, Toggle
from locutions.install import sound_uri
from models.recordings import RecordingStore, Segment

log = logging.getLogger("callcontrol.recordings")

FETCH_ATTEMPTS = 20
FETCH_PAUSE = 0.1
"""Asterisk stores the file as the recording stops: a few tries bridge the gap."""


@dataclass(frozen=True, slots=True)
class Party:
    """Who a channel of the call is, for the Recording row."""

    user_id: int | None
    name: str | None


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What every segment row of the call repeats."""

    call_id: str
    client_id: int
    client_name: str
    caller: str
    callee: str
    language: str


class CallRecorder:
    """Segments of one bridge. ``start``/``stop`` are idempotent; ``finish`` ends the
    live segment and waits (bounded) for every segment to be saved."""

    def __init__(
        self,
        ari: Ari,
        store: RecordingStore,
        bridge: str,
        plan: RecordingPlan,
        facts: CallFacts,
        parties: dict[str, Party],
    ) -> None:
        self.ari = ari
        self.store = store
        self.bridge = bridge
        self.plan = plan
        self.facts = facts
        self.parties = parties
        self.segment = 0
        self.live: str | None = None
        self._live_since = 0.0
        self._live_at = datetime.now(UTC)
        self._live_by: Party = Party(None, None)
        self._toggles = {
            channel: Toggle(plan.dtmf_code) for channel in parties if plan.dtmf_code is not None
        }
        self._saving: set[asyncio.Task[None]] = set()
        self.saved: list[Segment] = []

    async def answered(self) -> None:
        if self.plan.from_answer:
            await self.start(None)

    async def on_event(self, event: Event) -> bool:
        """Handle a DTMF or recording event of this call; True when it was one."""
        kind = event["type"]
        if kind == "ChannelDtmfReceived":
            channel = str((event.get("channel") or {}).get("id", ""))
            toggle = self._toggles.get(channel)
            if toggle is not None and toggle.press(str(event.get("digit", "")), time.monotonic()):
                if self.live is None:
                    await self.start(channel)
                else:
                    await self.stop()
            return True
        if kind == "RecordingFailed":
            name = str((event.get("recording") or {}).get("name", ""))
            if name == self.live:
                self.live = None
                cause = (event.get("recording") or {}).get("cause", "unknown")
                log.warning("call %s: recording %s failed (%s)", self.facts.call_id, name, cause)
                self._spawn(self._discard(name))
            return True
        return kind in ("RecordingStarted", "RecordingFinished")

    async def start(self, by_channel: str | None) -> None:
        if self.live is not None:
            return
        self.segment += 1
        name = f"{self.facts.call_id}-{self.segment}"
        try:
            await self.ari.record_bridge(self.bridge, name)
        except AriError as exc:  # the call goes on unrecorded
            log.warning("call %s: recording not started: %s", self.facts.call_id, exc)
            return
        self.live = name
        self._live_since = time.monotonic()
        self._live_at = datetime.now(UTC)
        self._live_by = self.parties.get(by_channel or "", Party(None, None))
        log.info("call %s: recording segment %d started", self.facts.call_id, self.segment)
        await self._notice("recording_started")

    async def stop(self) -> None:
        name = self.live
        if name is None:
            return
        self.live = None
        seconds = time.monotonic() - self._live_since
        with contextlib.suppress(AriError):  # a channel left: Asterisk already stopped it
            await self.ari.stop_recording(name)
        segment = Segment(
            client_id=self.facts.client_id,
            client_name=self.facts.client_name,
            call_id=self.facts.call_id,
            segment=self.segment,
            caller=self.facts.caller,
            callee=self.facts.callee,
            recorder_user_id=self._live_by.user_id,
            recorder=self._live_by.name,
            started_at=self._live_at,
            duration=Decimal(seconds).quantize(Decimal("0.001")),
        )
        log.info("call %s: recording segment %d stopped", self.facts.call_id, self.segment)
        self._spawn(self._save(name, segment))
        await self._notice("recording_stopped")

    async def finish(self, within: float) -> None:
        await self.stop()
        if self._saving:
            await asyncio.wait(set(self._saving), timeout=within)

    async def _notice(self, sound: str) -> None:
        """A short notice to both parties; the call does not wait for it."""
        playback = f"{self.bridge}-{sound}-{self.segment}"
        with contextlib.suppress(AriError):
            await self.ari.play_bridge(self.bridge, sound_uri(sound), self.facts.language, playback)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def _save(self, name: str, segment: Segment) -> None:
        try:
            audio = await self._fetch(name)
            heard = audio_seconds(audio)
            if heard is not None:  # the file's own length, not the time between requests
                segment = replace(segment, duration=heard)
            path = await self.store.save(segment, audio)
            self.saved.append(segment)
            log.info("call %s: segment %d saved as %s", segment.call_id, segment.segment, path)
        except (AriError, CallControlError, OSError) as exc:
            log.warning("call %s: segment %d not saved: %s", segment.call_id, segment.segment, exc)
        except Exception as exc:  # a database error: the audio is lost, the call is not
            log.error("call %s: segment %d not saved: %s", segment.call_id, segment.segment, exc)
        finally:
            with contextlib.suppress(AriError):
                await self.ari.delete_stored(name)

    async def _fetch(self, name: str) -> bytes:
        for _ in range(FETCH_ATTEMPTS - 1):
            try:
                return await self.ari.stored_recording(name)
            except ChannelGone:
                await asyncio.sleep(FETCH_PAUSE)
        return await self.ari.stored_recording(name)

    async def _discard(self, name: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.delete_stored(name)


def audio_seconds(audio: bytes) -> Decimal | None:
    """How long a WAV recording lasts, from its header (None when it is not one): the
    time between the start and stop requests is longer than what Asterisk wrote."""
    try:
        with wave.open(io.BytesIO(audio), "rb") as recording:
            frames, rate = recording.getnframes(), recording.getframerate()
    except (wave.Error, EOFError):
        return None
    if rate <= 0:
        return None
    return (Decimal(frames) / Decimal(rate)).quantize(Decimal("0.001"))
