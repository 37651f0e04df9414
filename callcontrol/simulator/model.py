"""The simulated Asterisk's objects and their ARI JSON (the Channel, Bridge, Playback and
LiveRecording models of our api-docs).

Objects are plain mutable records; the engine owns every change to them. ``to_json``
gives the snapshot Asterisk would put in a response or an event at that moment.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

Json = dict[str, Any]


def ari_time(moment: datetime | None = None) -> str:
    """A time as ARI writes it: ``2026-11-25T12:00:00.123+0000`` (now by default)."""
    if moment is None:
        return _now_text()
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


_formatted: tuple[int, str] = (-1, "")


def _now_text() -> str:
    """Now, formatted once per millisecond: every event of a burst shares the string."""
    global _formatted
    millisecond = time.time_ns() // 1_000_000
    if _formatted[0] != millisecond:
        moment = datetime.fromtimestamp(millisecond / 1000, UTC)
        _formatted = (millisecond, ari_time(moment))
    return _formatted[1]


class ChannelState(StrEnum):
    """The channel states the simulator uses, spelled as ARI spells them."""

    DOWN = "Down"
    RING = "Ring"
    RINGING = "Ringing"
    UP = "Up"


@dataclass(slots=True)
class CallerId:
    name: str = ""
    number: str = ""

    def to_json(self) -> Json:
        return {"name": self.name, "number": self.number}


@dataclass(slots=True)
class Dialplan:
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    app_name: str = ""
    app_data: str = ""

    def to_json(self) -> Json:
        return {
            "context": self.context,
            "exten": self.exten,
            "priority": self.priority,
            "app_name": self.app_name,
            "app_data": self.app_data,
        }


@dataclass(slots=True, eq=False)
class Channel:
    """A channel. ``app`` is the Stasis application subscribed to it (None after it left
    for the dialplan); ``in_stasis`` is true between StasisStart and StasisEnd."""

    id: str
    name: str
    endpoint: str
    state: ChannelState
    caller: CallerId
    dialplan: Dialplan
    app: str | None
    language: str = "en"
    connected: CallerId = field(default_factory=CallerId)
    source_address: str = ""
    protocol_id: str = ""
    created: str = field(default_factory=ari_time)
    """``creationtime``, formatted once."""
    variables: dict[str, str] = field(default_factory=dict)
    in_stasis: bool = False
    bridge_id: str | None = None
    hangup_requested: bool = False
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    dial: Dial | None = None
    snoops: list[str] = field(default_factory=list)
    ari_created: bool = False
    """Made through ARI (create, originate, snoop): stays subscribed after StasisEnd."""
    reported: set[str] = field(default_factory=set)
    """Variables set with ``report_events``: shown as ``channelvars`` in snapshots."""
    indications: list[str] = field(default_factory=list)
    """``ring``, ``progress``, ``answer`` … as the application sent them, in order."""
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    cause: int = 0

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "name": self.name,
            "state": str(self.state),
            "protocol_id": self.protocol_id,
            "caller": self.caller.to_json(),
            "connected": self.connected.to_json(),
            "accountcode": "",
            "dialplan": self.dialplan.to_json(),
            "creationtime": self.created,
            "language": self.language,
        } | (
            {"channelvars": {name: self.variables.get(name, "") for name in sorted(self.reported)}}
            if self.reported
            else {}
        )

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(slots=True)
class Dial:
    """A dial in progress on the dialled channel: who dialled it and how it ends."""

    caller_id: str | None
    dialstring: str
    status: str = ""
    timeout: asyncio.TimerHandle | None = None


@dataclass(slots=True, eq=False)
class Bridge:
    """A bridge. ``apps`` are the applications subscribed to it: those whose channels
    joined it (Asterisk subscribes an application to a bridge its channel enters)."""

    id: str
    bridge_type: str = "mixing"
    name: str = ""
    channels: list[str] = field(default_factory=list)
    dtmf_events: bool = False
    """Created with type ``…,dtmf_events``: the app hears its channels' DTMF. Without it
    Asterisk 22 passes DTMF through the bridge (natively between two RTP legs) silently."""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    apps: list[str] = field(default_factory=list)

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "technology": "simple_bridge",
            "bridge_type": self.bridge_type,
            "bridge_class": "stasis",
            "creator": "Stasis",
            "name": self.name,
            "channels": list(self.channels),
            "creationtime": ari_time(self.created),
            "video_mode": "none",
        }


class PlaybackState(StrEnum):
    QUEUED = "queued"
    PLAYING = "playing"
    CONTINUING = "continuing"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class Playback:
    """A playback of one or more media on a channel or a bridge (``target_uri``
    ``channel:<id>`` or ``bridge:<id>``), played one after the other."""

    id: str
    app: str
    target_uri: str
    media: list[str]
    language: str
    state: PlaybackState = PlaybackState.QUEUED
    index: int = 0
    timer: asyncio.TimerHandle | None = None

    def to_json(self) -> Json:
        body: Json = {
            "id": self.id,
            "media_uri": self.media[self.index],
            "target_uri": self.target_uri,
            "language": self.language,
            "state": str(self.state),
        }
        if self.index + 1 < len(self.media):
            body["next_media_uri"] = self.media[self.index + 1]
        return body


class RecordingState(StrEnum):
    QUEUED = "queued"
    RECORDING = "recording"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(slots=True, eq=False)
class LiveRecording:
    """A recording of a channel or a bridge, written to its file when it ends. Asterisk 22
    reports only ``duration`` (whole seconds of audio in the file) when it finishes:
    ``talking_duration`` and ``silence_duration`` come with silence detection, which the
    simulator does not do."""

    name: str
    app: str
    format: str
    target_uri: str
    terminate_on: str = "none"
    if_exists: str = "fail"
    max_duration: int = 0
    state: RecordingState = RecordingState.QUEUED
    started: float = 0.0
    duration: int | None = None
    cause: str | None = None
    timer: asyncio.TimerHandle | None = None

    def to_json(self) -> Json:
        body: Json = {
            "name": self.name,
            "format": self.format,
            "target_uri": self.target_uri,
            "state": str(self.state),
        }
        if self.duration is not None:
            body["duration"] = self.duration
        if self.cause is not None:
            body["cause"] = self.cause
        return body


@dataclass(frozen=True, slots=True)
class FileBody:
    """A response that is a file, not JSON (``GET /recordings/stored/{name}/file``)."""

    data: bytes
    content_type: str
