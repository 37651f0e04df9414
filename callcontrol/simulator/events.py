"""ARI events: their names, their envelope, and their delivery to connected applications.

Every event carries ``type``, ``timestamp``, ``application`` and ``asterisk_id``, as
Asterisk's do. An application has at most one events websocket: a second connection for
the same name replaces the first, which is told so by ``ApplicationReplaced`` (Asterisk's
behaviour). Events of an application with no socket are dropped, as Asterisk drops them.
Each socket has its own ordered queue drained by one writer task, so emitting never
awaits and never reorders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, get_args

from aiohttp import web

from callcontrol.simulator.model import Json, ari_time

EventType = Literal[
    "StasisStart",
    "StasisEnd",
    "ChannelStateChange",
    "ChannelDtmfReceived",
    "ChannelHangupRequest",
    "ChannelDestroyed",
    "ChannelVarset",
    "ChannelCallerId",
    "ChannelConnectedLine",
    "ChannelDialplan",
    "ChannelEnteredBridge",
    "ChannelLeftBridge",
    "BridgeDestroyed",
    "Dial",
    "PlaybackStarted",
    "PlaybackContinuing",
    "PlaybackFinished",
    "RecordingStarted",
    "RecordingFinished",
    "RecordingFailed",
    "ApplicationReplaced",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

_CLOSE = object()


class Connection:
    """One events websocket (of one or more applications), with its ordered queue."""

    def __init__(self, apps: list[str], socket: web.WebSocketResponse) -> None:
        self.apps = apps
        self.socket = socket
        self.queue: asyncio.Queue[str | object] = asyncio.Queue()

    async def write(self) -> None:
        """Send queued events in order until closed or the peer goes away."""
        while True:
            item = await self.queue.get()
            if item is _CLOSE or self.socket.closed:
                break
            assert isinstance(item, str)
            try:
                await self.socket.send_str(item)
            except (ConnectionError, RuntimeError):
                break
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.socket.close()

    def close(self) -> None:
        self.queue.put_nowait(_CLOSE)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which event types an application is sent, as Asterisk decides: a disallowed type
    never; otherwise any, or only the allowed ones when some are listed. Asterisk builds
    every event all the same: a filtered one is only not written to the socket."""

    allowed: frozenset[str] = frozenset()
    disallowed: frozenset[str] = frozenset()

    def allows(self, kind: str) -> bool:
        if kind in self.disallowed:
            return False
        return not self.allowed or kind in self.allowed

    def json(self) -> dict[str, list[Json]]:
        return {
            "events_allowed": [{"type": kind} for kind in sorted(self.allowed)],
            "events_disallowed": [{"type": kind} for kind in sorted(self.disallowed)],
        }


class EventHub:
    """Delivers events to applications and keeps a log of what was emitted."""

    def __init__(self, asterisk_id: str, log_limit: int = 200_000) -> None:
        self.asterisk_id = asterisk_id
        self.connections: dict[str, Connection] = {}
        self.log: deque[Json] = deque(maxlen=log_limit)
        self.sequence = 0
        self.filters: dict[str, EventFilter] = {}
        """Each application's event filter, as set through ARI (none: every event)."""

    def registered(self, app: str) -> bool:
        """True while ``app`` has an events websocket (so Stasis() can enter it)."""
        return app in self.connections

    def connect(self, connection: Connection) -> None:
        """Register ``connection`` for its applications, replacing older sockets."""
        for app in connection.apps:
            previous = self.connections.get(app)
            self.connections[app] = connection
            if previous is not None and previous is not connection:
                replaced = self._envelope("ApplicationReplaced", {}, app)
                previous.queue.put_nowait(json.dumps(replaced))
                self.disconnect(previous)

    def disconnect(self, connection: Connection) -> None:
        for app in connection.apps:
            if self.connections.get(app) is connection:
                del self.connections[app]
        connection.close()

    def emit(self, app: str | None, kind: EventType, /, **fields: Any) -> Json:
        """Build one event for ``app`` and queue it on the app's socket, if any."""
        event = self._envelope(kind, fields, app or "")
        self.sequence += 1
        self.log.append({"sequence": self.sequence, "delivered": False, **event})
        connection = self.connections.get(app) if app else None
        rule = self.filters.get(app) if app else None
        if connection is not None and (rule is None or rule.allows(kind)):
            self.log[-1]["delivered"] = True
            connection.queue.put_nowait(json.dumps(event))
        return event

    def emit_to(self, apps: list[str], kind: EventType, /, **fields: Any) -> None:
        """The same event to each of ``apps`` (each gets its own ``application``)."""
        for app in apps:
            self.emit(app, kind, **fields)

    def _envelope(self, kind: str, fields: dict[str, Any], app: str) -> Json:
        return {
            "type": kind,
            "timestamp": ari_time(),
            **fields,
            "asterisk_id": self.asterisk_id,
            "application": app,
        }

    def close_all(self) -> None:
        for connection in set(self.connections.values()):
            self.disconnect(connection)
