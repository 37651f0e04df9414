"""Playbacks on channels and on bridges.

A playback plays its media one after the other, each for the configured duration
(PlaybackStarted → PlaybackContinuing … → PlaybackFinished); a channel or a bridge plays
one playback at a time and queues the rest, as Asterisk does. A playback ends early when
stopped (state ``done``) or when its channel goes.

A bridge's playback (``target_uri`` ``bridge:<id>``) is heard by every channel in the
bridge, and its events go to the applications subscribed to the bridge. When the bridge
is destroyed or its last channel leaves, Asterisk 22 fails it: PlaybackFinished with
state ``failed`` after the ChannelLeftBridge, then each queued playback starts and fails
at once (PlaybackStarted, PlaybackFinished ``failed``), as measured on the sandbox.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.events import EventType
from callcontrol.simulator.model import Bridge, Channel, Json, Playback, PlaybackState

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk


class Media:
    """Every playback of the simulated Asterisk, queued per target."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk
        self.playbacks: dict[str, Playback] = {}
        self.queues: dict[str, list[Playback]] = {}
        """Per ``target_uri``: the playing playback first, then the queued ones."""

    def play(
        self,
        target: Channel | Bridge,
        media: list[str],
        lang: str | None,
        playback_id: str | None,
    ) -> Json:
        """Queue ``media`` on ``target``; the snapshot as the response shows it."""
        if playback_id and playback_id in self.playbacks:
            raise RequestError(409, "Playback with the same playbackId already exists")
        if isinstance(target, Channel):
            app, uri, language = target.app or "", f"channel:{target.id}", target.language
        else:
            app, uri, language = "", f"bridge:{target.id}", self.asterisk.config.language
        playback = Playback(
            id=playback_id or str(uuid.uuid4()),
            app=app,
            target_uri=uri,
            media=media,
            language=lang or language,
        )
        self.playbacks[playback.id] = playback
        queue = self.queues.setdefault(uri, [])
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
        self._event(playback, "PlaybackStarted")
        self._schedule(playback)

    def _schedule(self, playback: Playback) -> None:
        seconds = self.asterisk.config.seconds_of(playback.media[playback.index])
        playback.timer = asyncio.get_running_loop().call_later(seconds, self._next, playback)

    def _next(self, playback: Playback) -> None:
        if playback.index + 1 < len(playback.media):
            playback.index += 1
            playback.state = PlaybackState.CONTINUING
            self._event(playback, "PlaybackContinuing")
            self._schedule(playback)
        else:
            self.stop_playback(playback)

    def stop_playback(self, playback: Playback) -> None:
        """End ``playback`` (PlaybackFinished if it had started) and start the next."""
        if playback.timer is not None:
            playback.timer.cancel()
        self.playbacks.pop(playback.id, None)
        queue = self.queues.get(playback.target_uri, [])
        started = bool(queue) and queue[0] is playback
        if playback in queue:
            queue.remove(playback)
        if not started:
            return
        playback.state = PlaybackState.DONE
        self._event(playback, "PlaybackFinished")
        if queue:
            self._start(queue[0])
        else:
            self.queues.pop(playback.target_uri, None)

    def _fail_all(self, target_uri: str) -> None:
        """The target cannot play any more: the playing playback fails, then each queued
        one starts and fails."""
        for index, playback in enumerate(self.queues.pop(target_uri, [])):
            if playback.timer is not None:
                playback.timer.cancel()
            self.playbacks.pop(playback.id, None)
            if index > 0:
                playback.state = PlaybackState.PLAYING
                self._event(playback, "PlaybackStarted")
            playback.state = PlaybackState.FAILED
            self._event(playback, "PlaybackFinished")

    def _event(self, playback: Playback, kind: EventType) -> None:
        """To the channel's application, or to every application of the bridge."""
        kind_of, _, target = playback.target_uri.partition(":")
        bridge = self.asterisk.bridges.bridges.get(target) if kind_of == "bridge" else None
        apps = list(bridge.apps) if bridge is not None else [playback.app]
        self.asterisk.hub.emit_to(apps, kind, playback=playback.to_json())

    # -- hooks -----------------------------------------------------------------

    def on_hangup(self, channel: Channel) -> None:
        """``channel`` goes: its playback ends and its queue is dropped."""
        for playback in list(self.queues.get(f"channel:{channel.id}", []))[::-1]:
            self.stop_playback(playback)

    def on_bridge_emptied(self, bridge: Bridge) -> None:
        """The last channel left ``bridge`` (or it is being destroyed)."""
        self._fail_all(f"bridge:{bridge.id}")

    def reset(self) -> None:
        for playback in self.playbacks.values():
            if playback.timer is not None:
                playback.timer.cancel()
        self.playbacks.clear()
        self.queues.clear()
