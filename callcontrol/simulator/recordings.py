"""Live and stored recordings.

A recording of a channel or a bridge answers ``queued``, then RecordingStarted; it ends
on ``stop``, on its ``maxDurationSeconds``, on a ``terminateOn`` digit (channels), when
its channel hangs up, or when its bridge is destroyed or loses its last channel, with
RecordingFinished (state ``done``, ``duration`` = whole seconds in the file); its file
is then written (:mod:`.wav`). A channel leaving a bridge that keeps others does not stop
it. A file that cannot be written ends it with RecordingFailed.

Measured on the sandbox (Asterisk 22.10, bridge recordings): destroying the bridge gives
ChannelLeftBridge for each channel, RecordingFinished, BridgeDestroyed; the last channel
hanging up gives ChannelHangupRequest, ChannelLeftBridge, RecordingFinished, StasisEnd.

A stored recording is the file ``<recordings_dir>/<name>.<format>``: listed, read,
downloaded (its bytes, ``audio/<format>``) and deleted; a name that is not there, or
that would leave the folder, is 404 "Recording not found".
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

from callcontrol.simulator import wav
from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.events import EventType
from callcontrol.simulator.model import (
    Bridge,
    Channel,
    FileBody,
    Json,
    LiveRecording,
    RecordingState,
)

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk

IF_EXISTS = ("fail", "overwrite", "append")
TERMINATE_ON = ("none", "any", "*", "#")
NOT_FOUND = "Recording not found"


class Recordings:
    """Every live recording of the simulated Asterisk, and the stored ones on disk."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk
        self.live_recordings: dict[str, LiveRecording] = {}

    @property
    def folder(self) -> Path:
        return self.asterisk.config.recordings_dir

    # -- live ------------------------------------------------------------------

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
        if name in self.live_recordings or (if_exists == "fail" and path.exists()):
            raise RequestError(409, "Recording with the same name already exists")
        if isinstance(target, Channel):
            if target.bridge_id is not None:
                raise RequestError(409, "Channel is currently bridged with other channels")
            app, uri = target.app or "", f"channel:{target.id}"
        else:
            app, uri = "", f"bridge:{target.id}"
        recording = LiveRecording(name, app, fmt, uri, terminate_on, if_exists, max_duration)
        self.live_recordings[name] = recording
        snapshot = recording.to_json()
        try:
            wav.write(path, fmt, 0, append=if_exists == "append")
        except OSError as exc:
            self._end(recording, RecordingState.FAILED, cause=f"cannot write file: {exc.strerror}")
            return snapshot
        recording.state = RecordingState.RECORDING
        recording.started = time.monotonic()
        self._event(recording, "RecordingStarted")
        if max_duration > 0:
            loop = asyncio.get_running_loop()
            recording.timer = loop.call_later(max_duration, self.stop, recording)
        return snapshot

    def live(self, name: str) -> LiveRecording:
        recording = self.live_recordings.get(name)
        if recording is None:
            raise RequestError(404, NOT_FOUND)
        return recording

    def stop(self, recording: LiveRecording) -> None:
        """Finish ``recording`` and write its file (RecordingFinished)."""
        seconds = time.monotonic() - recording.started
        if recording.max_duration > 0:
            seconds = min(seconds, recording.max_duration)
        try:
            samples = wav.write(
                wav.recording_path(self.folder, recording.name, recording.format),
                recording.format,
                seconds,
                append=True,
            )
        except OSError as exc:
            self._end(recording, RecordingState.FAILED, cause=f"cannot write file: {exc.strerror}")
            return
        recording.duration = samples // wav.RATE  # whole seconds, as Asterisk counts them
        self._end(recording, RecordingState.DONE)

    def _end(
        self, recording: LiveRecording, state: RecordingState, cause: str | None = None
    ) -> None:
        if recording.timer is not None:
            recording.timer.cancel()
        self.live_recordings.pop(recording.name, None)
        recording.state, recording.cause = state, cause
        failed = state == RecordingState.FAILED
        self._event(recording, "RecordingFailed" if failed else "RecordingFinished")

    def _event(self, recording: LiveRecording, kind: EventType) -> None:
        """To the channel's application, or to every application of the bridge."""
        kind_of, _, target = recording.target_uri.partition(":")
        bridge = self.asterisk.bridges.bridges.get(target) if kind_of == "bridge" else None
        apps = list(bridge.apps) if bridge is not None else [recording.app]
        self.asterisk.hub.emit_to(apps, kind, recording=recording.to_json())

    def _stop_all(self, target_uri: str) -> None:
        for recording in list(self.live_recordings.values()):
            if recording.target_uri == target_uri:
                self.stop(recording)

    # -- stored ----------------------------------------------------------------

    def stored(self) -> list[Json]:
        return [{"name": name, "format": fmt} for name, fmt in wav.stored(self.folder)]

    def _find(self, name: str) -> tuple[Path, str]:
        found = wav.find(self.folder, name) if _safe(name) else None
        if found is None:
            raise RequestError(404, NOT_FOUND)
        return found

    def get_stored(self, name: str) -> Json:
        _, fmt = self._find(name)
        return {"name": name, "format": fmt}

    def stored_file(self, name: str) -> FileBody:
        """The file's bytes; 403 when it cannot be opened (Asterisk's ``open()`` failing)."""
        path, fmt = self._find(name)
        try:
            data = path.read_bytes()
        except OSError:
            raise RequestError(403, "Recording could not be opened") from None
        return FileBody(data, wav.CONTENT_TYPES[fmt])

    def delete_stored(self, name: str) -> None:
        path, _ = self._find(name)
        try:
            path.unlink()
        except OSError:
            raise RequestError(500, "Delete failed") from None

    # -- hooks -----------------------------------------------------------------

    def on_dtmf(self, channel: Channel, digit: str) -> None:
        for recording in list(self.live_recordings.values()):
            if recording.target_uri == f"channel:{channel.id}" and recording.terminate_on in (
                "any",
                digit,
            ):
                self.stop(recording)

    def on_hangup(self, channel: Channel) -> None:
        """``channel`` goes (or leaves Stasis): its own recordings finish."""
        self._stop_all(f"channel:{channel.id}")

    def on_bridge_emptied(self, bridge: Bridge) -> None:
        """The last channel left ``bridge`` (or it is being destroyed): its recordings
        finish, the recorder having nothing left to hear."""
        self._stop_all(f"bridge:{bridge.id}")

    def reset(self) -> None:
        for recording in self.live_recordings.values():
            if recording.timer is not None:
                recording.timer.cancel()
        self.live_recordings.clear()


def _safe(name: str) -> bool:
    """A recording name stays inside the recordings folder."""
    return bool(name) and not name.startswith("/") and ".." not in name.split("/")
