"""Implementations of the ``asterisk``, ``bridges``, ``recordings``, ``playbacks`` and
``applications`` operations (see :mod:`.spec_resources`)."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from callcontrol.simulator.engine import Asterisk, RequestError
from callcontrol.simulator.events import EventFilter
from callcontrol.simulator.handlers import implements
from callcontrol.simulator.model import FileBody, Json, ari_time
from callcontrol.simulator.params import Args


@implements("asterisk.getInfo")
def get_info(asterisk: Asterisk, args: Args) -> Json:
    config = asterisk.config
    started = ari_time(datetime.fromtimestamp(asterisk.started, UTC))
    sections: Json = {
        "build": {
            "os": platform.system(),
            "kernel": platform.release(),
            "machine": platform.machine(),
            "options": "simulated",
            "date": started,
            "user": "callcontrol",
        },
        "system": {"version": config.version, "entity_id": config.asterisk_id},
        "config": {
            "name": config.system_name,
            "default_language": config.language,
            "setid": {"user": str(os.getuid()), "group": str(os.getgid())},
        },
        "status": {"startup_time": started, "last_reload_time": started},
    }
    only = args.many("only")
    return {key: value for key, value in sections.items() if not only or key in only}


@implements("bridges.list")
def list_bridges(asterisk: Asterisk, args: Args) -> list[Json]:
    return [bridge.to_json() for bridge in asterisk.bridges.bridges.values()]


@implements("bridges.create")
def create_bridge(asterisk: Asterisk, args: Args) -> Json:
    bridge = asterisk.bridges.create(
        args.optional("type"), args.optional("bridgeId"), args.optional("name")
    )
    return bridge.to_json()


@implements("bridges.get")
def get_bridge(asterisk: Asterisk, args: Args) -> Json:
    return asterisk.bridges.get(args.text("bridgeId")).to_json()


@implements("bridges.destroy")
def destroy_bridge(asterisk: Asterisk, args: Args) -> None:
    asterisk.bridges.destroy(asterisk.bridges.get(args.text("bridgeId")))


@implements("bridges.addChannel")
def add_channel(asterisk: Asterisk, args: Args) -> None:
    bridge = asterisk.bridges.get(args.text("bridgeId"))
    asterisk.bridges.add(bridge, args.many("channel"))


@implements("bridges.removeChannel")
def remove_channel(asterisk: Asterisk, args: Args) -> None:
    bridge = asterisk.bridges.get(args.text("bridgeId"))
    asterisk.bridges.remove(bridge, args.many("channel"))


@implements("bridges.record")
def record_bridge(asterisk: Asterisk, args: Args) -> Json:
    bridge = asterisk.bridges.get(args.text("bridgeId"))
    return asterisk.recordings.record(
        bridge,
        args.text("name"),
        args.text("format"),
        args.number("maxDurationSeconds"),
        args.text("ifExists"),
        args.text("terminateOn"),
    )


@implements("bridges.play")
def play_on_bridge(asterisk: Asterisk, args: Args) -> Json:
    bridge = asterisk.bridges.get(args.text("bridgeId"))
    return asterisk.media.play(
        bridge, args.many("media"), args.optional("lang"), args.optional("playbackId")
    )


@implements("bridges.playWithId")
def play_on_bridge_with_id(asterisk: Asterisk, args: Args) -> Json:
    bridge = asterisk.bridges.get(args.text("bridgeId"))
    return asterisk.media.play(
        bridge, args.many("media"), args.optional("lang"), args.text("playbackId")
    )


@implements("recordings.listStored")
def list_stored(asterisk: Asterisk, args: Args) -> list[Json]:
    return asterisk.recordings.stored()


@implements("recordings.getStored")
def get_stored(asterisk: Asterisk, args: Args) -> Json:
    return asterisk.recordings.get_stored(args.text("recordingName"))


@implements("recordings.getStoredFile")
def get_stored_file(asterisk: Asterisk, args: Args) -> FileBody:
    return asterisk.recordings.stored_file(args.text("recordingName"))


@implements("recordings.deleteStored")
def delete_stored(asterisk: Asterisk, args: Args) -> None:
    asterisk.recordings.delete_stored(args.text("recordingName"))


@implements("recordings.getLive")
def get_live(asterisk: Asterisk, args: Args) -> Json:
    return asterisk.recordings.live(args.text("recordingName")).to_json()


@implements("recordings.stop")
def stop_recording(asterisk: Asterisk, args: Args) -> None:
    asterisk.recordings.stop(asterisk.recordings.live(args.text("recordingName")))


@implements("playbacks.get")
def get_playback(asterisk: Asterisk, args: Args) -> Json:
    return asterisk.media.get_playback(args.text("playbackId")).to_json()


@implements("playbacks.stop")
def stop_playback(asterisk: Asterisk, args: Args) -> None:
    asterisk.media.stop_playback(asterisk.media.get_playback(args.text("playbackId")))


@implements("applications.filter")
def filter_events(asterisk: Asterisk, args: Args) -> Json:
    """Set which event types an application is sent (no body: all of them again)."""
    name = args.text("applicationName")
    hub = asterisk.hub
    if not hub.registered(name):
        raise RequestError(404, "Application not found")
    given = args.mapping("filter")
    rule = EventFilter(_types(given, "allowed"), _types(given, "disallowed"))
    if rule == EventFilter():
        hub.filters.pop(name, None)
    else:
        hub.filters[name] = rule
    return {
        "name": name,
        "channel_ids": [],
        "bridge_ids": [],
        "endpoint_ids": [],
        "device_names": [],
        **rule.json(),
    }


def _types(given: Json, key: str) -> frozenset[str]:
    """The event types listed under ``key``: ``[{"type": "StasisStart"}, …]``."""
    listed = given.get(key, [])
    if not isinstance(listed, list) or not all(
        isinstance(item, dict) and isinstance(item.get("type"), str) for item in listed
    ):
        raise RequestError(400, "Invalid format definition")
    return frozenset(str(item["type"]) for item in listed)
