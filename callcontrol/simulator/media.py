"""Playbacks and live recordings.

A playback plays its media one after the other, each for the configured duration
(PlaybackStarted → PlaybackContinuing … → PlaybackFinished); a channel plays one
playback at a time and queues the rest, as Asterisk does. A playback ends early when
stopped or when its channel goes.

A recording of a channel or a bridge answers ``queued``, then RecordingStarted; it ends
on ``stop``, on its ``maxDurationSeconds``, on a ``terminateOn`` digit (channels), or
when its channel hangs up / its bridge is destroyed (RecordingFinished), and then its
file is written. A file that cannot be written ends it with RecordingFailed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from callcontrol.simulator import wav
from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.events import EventType
from callcontrol.simulator.model import (
    Bridge,
    Channel,
    Json,
    LiveRecording,
    Playback,
    PlaybackState,
    RecordingState,
)

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk

IF_EXISTS = ("fail", "overwrite", "append")
TERMINATE_ON = ("none", "any", "*", "#")


class Media:
    """Every playback and live recording of the simulated Asterisk."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk
        self.playbacks: dict[str, Playback] = {}
        self.queues: dict[str, list[Playback]] = {}
        self.recordings: dict[str, LiveRecording] = {}

    @property
    def folder(self) -> Path:
        return self.asterisk.config.recordings_dir

    # -- playbacks -------------------------------------------------------------

    def play(
        self, channel: Channel, media: list[str], lang: str | None, playback_id: str | None
    ) -> Json:
        """Queue ``media`` on ``channel``; the snapshot as the response shows it."""
        if playback_id and playback_id in self.playbacks:
            raise RequestError(409, "Playback with the same playbackId already exists")
        playback = Playback(
            id=playback_id or str(uuid.uuid4()),
            app=channel.app or "",
            channel_id=channel.id,
            media=media,
            language=lang or channel.language,
        )
        self.playbacks[playback.id] = playback
        queue = self.queues.setdefault(channel.id, [])
        queue.append(playback)
        snapshot = playback.to_json()
        if len(queue) == 1:
            self._start(playback)
        return snapshot

    def get_playback(self, playback_id: str) -> Playback:
        playback = self.playbacks.get(playback_id)
        if playback is None:
            raise RequestError(404, "Playback not found")
        return playback

    def _start(self, playback: Playback) -> None:
        playback.state = PlaybackState.PLAYING
        self._playback_event(playback, "PlaybackStarted")
        self._schedule(playback)

    def _schedule(self, playback: Playback) -> None:
        seconds = self.asterisk.config.seconds_of(playback.media[playback.index])
        playback.timer = asyncio.get_running_loop().call_later(seconds, self._next, playback)

    def _next(self, playback: Playback) -> None:
        if playback.index + 1 < len(playback.media):
            playback.index += 1
            playback.state = PlaybackState.CONTINUING
            self._playback_event(playback, "PlaybackContinuing")
            self._schedule(playback)
        else:
            self.stop_playback(playback)

    def stop_playback(self, playback: Playback) -> None:
        """End ``playback`` (PlaybackFinished if it had started) and start the next."""
        if playback.timer is not None:
            playback.timer.cancel()
        self.playbacks.pop(playback.id, None)
        queue = self.queues.get(playback.channel_id, [])
        started = bool(queue) and queue[0] is playback
        if playback in queue:
            queue.remove(playback)
        if not started:
            return
        playback.state = PlaybackState.DONE
        self._playback_event(playback, "PlaybackFinished")
        if queue:
            self._start(queue[0])
        else:
            self.queues.pop(playback.channel_id, None)

    def _playback_event(self, playback: Playback, kind: EventType) -> None:
        self.asterisk.hub.emit(playback.app, kind, playback=playback.to_json())

    # -- recordings ------------------------------------------------------------

    def record(
        self,
        target: Channel | Bridge,
        name: str,
        fmt: str,
        max_duration: int,
        if_exists: str,
        terminate_on: str,
    ) -> Json:
        """Start recording ``target`` into ``<recordings_dir>/<name>.<fmt>``."""
        if fmt not in wav.FORMATS:
            raise RequestError(422, f"Recording format '{fmt}' is not supported")
        if if_exists not in IF_EXISTS or terminate_on not in TERMINATE_ON or not _safe(name):
            raise RequestError(400, "Invalid parameters")
        path = wav.recording_path(self.folder, name, fmt)
        if name in self.recordings or (if_exists == "fail" and path.exists()):
            raise RequestError(409, "Recording with the same name already exists")
        if isinstance(target, Channel):
            if target.bridge_id is not None:
                raise RequestError(409, "Channel is currently bridged with other channels")
            app, uri = target.app or "", f"channel:{target.id}"
        else:
            app, uri = "", f"bridge:{target.id}"
            target.recordings.append(name)
        recording = LiveRecording(name, app, fmt, uri, terminate_on, if_exists, max_duration)
        self.recordings[name] = recording
        snapshot = recording.to_json()
        try:
            wav.write_silence(path, fmt, 0, append=if_exists == "append")
        except OSError as exc:
            self._end(recording, RecordingState.FAILED, cause=f"cannot write file: {exc.strerror}")
            return snapshot
        recording.state = RecordingState.RECORDING
        recording.started = time.monotonic()
        self._recording_event(recording, "RecordingStarted")
        if max_duration > 0:
            loop = asyncio.get_running_loop()
            recording.timer = loop.call_later(max_duration, self.stop_recording, recording)
        return snapshot

    def live(self, name: str) -> LiveRecording:
        recording = self.recordings.get(name)
        if recording is None:
            raise RequestError(404, "Recording not found")
        return recording

    def stop_recording(self, recording: LiveRecording) -> None:
        """Finish ``recording`` and write its file (RecordingFinished)."""
        seconds = time.monotonic() - recording.started
        if recording.max_duration > 0:
            seconds = min(seconds, recording.max_duration)
        try:
            wav.write_silence(
                wav.recording_path(self.folder, recording.name, recording.format),
                recording.format,
                seconds,
                append=True,
            )
        except OSError as exc:
            self._end(recording, RecordingState.FAILED, cause=f"cannot write file: {exc.strerror}")
            return
        recording.duration = round(seconds)
        self._end(recording, RecordingState.DONE)

    def _end(
        self, recording: LiveRecording, state: RecordingState, cause: str | None = None
    ) -> None:
        if recording.timer is not None:
            recording.timer.cancel()
        self.recordings.pop(recording.name, None)
        kind, _, target = recording.target_uri.partition(":")
        bridge = self.asterisk.bridges.bridges.get(target) if kind == "bridge" else None
        if bridge is not None and recording.name in bridge.recordings:
            bridge.recordings.remove(recording.name)
        recording.state, recording.cause = state, cause
        failed = state == RecordingState.FAILED
        self._recording_event(recording, "RecordingFailed" if failed else "RecordingFinished")

    def _recording_event(self, recording: LiveRecording, kind: EventType) -> None:
        """To the channel's application, or to every application of the bridge."""
        kind_of, _, target = recording.target_uri.partition(":")
        bridge = self.asterisk.bridges.bridges.get(target) if kind_of == "bridge" else None
        apps = list(bridge.apps) if bridge is not None else [recording.app]
        self.asterisk.hub.emit_to(apps, kind, recording=recording.to_json())

    def stored(self) -> list[Json]:
        return [{"name": name, "format": fmt} for name, fmt in wav.stored(self.folder)]

    # -- hooks -----------------------------------------------------------------

    def on_dtmf(self, channel: Channel, digit: str) -> None:
        for recording in list(self.recordings.values()):
            if recording.target_uri == f"channel:{channel.id}" and recording.terminate_on in (
                "any",
                digit,
            ):
                self.stop_recording(recording)

    def on_hangup(self, channel: Channel) -> None:
        """``channel`` goes: its playbacks end, its recordings finish."""
        for playback in list(self.queues.get(channel.id, []))[::-1]:
            self.stop_playback(playback)
        for recording in list(self.recordings.values()):
            if recording.target_uri == f"channel:{channel.id}":
                self.stop_recording(recording)

    def on_bridge_destroyed(self, bridge: Bridge) -> None:
        for name in list(bridge.recordings):
            self.stop_recording(self.recordings[name])

    def reset(self) -> None:
        for playback in self.playbacks.values():
            if playback.timer is not None:
                playback.timer.cancel()
        for recording in self.recordings.values():
            if recording.timer is not None:
                recording.timer.cancel()
        self.playbacks.clear()
        self.queues.clear()
        self.recordings.clear()


def _safe(name: str) -> bool:
    """A recording name stays inside the recordings folder."""
    return bool(name) and not name.startswith("/") and ".." not in name.split("/")
