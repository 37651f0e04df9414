"""Stasis bridges: create, add and remove channels, destroy.

A bridge lives until an application destroys it (a Stasis bridge outlives its last
channel, as in Asterisk); its events go to the applications whose channels joined it.
When its last channel leaves, or it is destroyed, its recordings finish and its
playbacks fail (after the ChannelLeftBridge events), as on Asterisk 22. Moving a
channel that is already in another bridge takes it out of that one first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.events import EventType
from callcontrol.simulator.model import Bridge, Channel

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk

BRIDGE_TYPES = frozenset(
    {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}
)


class Bridges:
    """Every bridge of the simulated Asterisk."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk
        self.bridges: dict[str, Bridge] = {}
        self._ids = 0

    def create(self, kind: str | None, bridge_id: str | None, name: str | None) -> Bridge:
        """A new bridge, subscribed by no application yet (so no event announces it)."""
        kinds = [part.strip() for part in (kind or "mixing").split(",") if part.strip()]
        unknown = [part for part in kinds if part not in BRIDGE_TYPES]
        if unknown:
            raise RequestError(400, f"Invalid bridge type '{unknown[0]}'")
        if bridge_id and bridge_id in self.bridges:
            raise RequestError(409, "Bridge with the same bridgeId already exists")
        self._ids += 1
        bridge = Bridge(
            id=bridge_id or f"sim-bridge-{self._ids:06d}",
            bridge_type="holding" if "holding" in kinds else "mixing",
            name=name or "",
            dtmf_events="dtmf_events" in kinds,
        )
        self.bridges[bridge.id] = bridge
        return bridge

    def get(self, bridge_id: str) -> Bridge:
        bridge = self.bridges.get(bridge_id)
        if bridge is None:
            raise RequestError(404, "Bridge not found")
        return bridge

    def _members(self, channel_ids: list[str]) -> list[Channel]:
        members = []
        for channel_id in channel_ids:
            channel = self.asterisk.channels.get(channel_id)
            if channel is None or channel.hangup_requested:
                raise RequestError(400, "Channel not found")
            members.append(channel)
        return members

    def add(self, bridge: Bridge, channel_ids: list[str]) -> None:
        """Add channels: 400 if one is unknown, 422 if one is not in Stasis."""
        members = self._members(channel_ids)
        if any(not channel.in_stasis for channel in members):
            raise RequestError(422, "Channel not in Stasis application")
        for channel in members:
            if channel.bridge_id == bridge.id:
                continue
            if channel.bridge_id is not None:
                self.leave(channel)
            bridge.channels.append(channel.id)
            channel.bridge_id = bridge.id
            if channel.app and channel.app not in bridge.apps:
                bridge.apps.append(channel.app)
            self._event(bridge, channel, "ChannelEnteredBridge")

    def remove(self, bridge: Bridge, channel_ids: list[str]) -> None:
        """Remove channels: 400 if one is unknown, 422 if one is not in this bridge."""
        members = self._members(channel_ids)
        if any(channel.bridge_id != bridge.id for channel in members):
            raise RequestError(422, "Channel not in this bridge")
        for channel in members:
            self.leave(channel)

    def leave(self, channel: Channel) -> None:
        bridge = self.bridges.get(channel.bridge_id or "")
        channel.bridge_id = None
        if bridge is None:
            return
        bridge.channels.remove(channel.id)
        self._event(bridge, channel, "ChannelLeftBridge")
        if not bridge.channels:
            self._emptied(bridge)

    def _emptied(self, bridge: Bridge) -> None:
        self.asterisk.recordings.on_bridge_emptied(bridge)
        self.asterisk.media.on_bridge_emptied(bridge)

    def destroy(self, bridge: Bridge) -> None:
        """Every channel leaves (ChannelLeftBridge), its recordings finish and its
        playbacks fail, then BridgeDestroyed."""
        for channel_id in list(bridge.channels):
            self.leave(self.asterisk.channels[channel_id])
        self._emptied(bridge)  # a bridge that had no channel still records or plays
        del self.bridges[bridge.id]
        self.asterisk.hub.emit_to(bridge.apps, "BridgeDestroyed", bridge=bridge.to_json())

    def on_hangup(self, channel: Channel) -> None:
        if channel.bridge_id is not None:
            self.leave(channel)

    def _event(self, bridge: Bridge, channel: Channel, kind: EventType) -> None:
        fields: dict[str, Any] = {"bridge": bridge.to_json(), "channel": channel.to_json()}
        apps = list(bridge.apps)
        if channel.app and channel.app not in apps:
            apps.append(channel.app)
        self.asterisk.hub.emit_to(apps, kind, **fields)

    def reset(self) -> None:
        self.bridges.clear()
