"""Implementations of the ``channels`` operations (see :mod:`.spec_channels`)."""

from __future__ import annotations

from typing import Any

from callcontrol.simulator import causes
from callcontrol.simulator.dialing import parse_caller_id
from callcontrol.simulator.engine import Asterisk, RequestError
from callcontrol.simulator.handlers import implements
from callcontrol.simulator.model import Channel, ChannelState, Dialplan, Json
from callcontrol.simulator.params import Args
from callcontrol.simulator.variables import get_variable, set_variable


def _args_of(args: Args) -> list[str]:
    text = args.optional("appArgs")
    return text.split(",") if text else []


def _initial_variables(channel: Channel, variables: dict[str, Any]) -> None:
    """``variables`` of a create/originate body, set before anyone hears of the channel."""
    for name, value in variables.items():
        if name == "CALLERID(num)":
            channel.caller.number = str(value)
        elif name == "CALLERID(name)":
            channel.caller.name = str(value)
        else:
            channel.variables[name] = str(value)


@implements("channels.list")
def list_channels(asterisk: Asterisk, args: Args) -> list[Json]:
    return [channel.to_json() for channel in asterisk.channels.values()]


@implements("channels.originate")
def originate(asterisk: Asterisk, args: Args) -> Json:
    app, extension = args.optional("app"), args.optional("extension")
    if not app and not extension:
        raise RequestError(400, "Application or extension must be specified")
    dialplan = Dialplan(
        args.optional("context") or "default", extension or "s", args.number("priority", 1)
    )
    channel = asterisk.dialer.originate(
        args.text("endpoint"),
        app,
        _args_of(args),
        args.optional("callerId"),
        args.number("timeout", 30),
        args.optional("channelId"),
        dialplan,
        lambda channel: _initial_variables(channel, args.mapping("variables")),
    )
    return channel.to_json()


@implements("channels.create")
def create(asterisk: Asterisk, args: Args) -> Json:
    channel = asterisk.dialer.create(
        args.text("endpoint"),
        args.text("app"),
        _args_of(args),
        args.optional("channelId"),
        lambda channel: _initial_variables(channel, args.mapping("variables")),
    )
    return channel.to_json()


@implements("channels.get")
def get(asterisk: Asterisk, args: Args) -> Json:
    return asterisk.channel(args.text("channelId")).to_json()


@implements("channels.hangup")
def hangup(asterisk: Asterisk, args: Args) -> None:
    code, reason = args.optional("reason_code"), args.optional("reason")
    if code is not None and reason is not None:
        raise RequestError(400, "The reason and reason_code can't both be specified")
    if code is not None:
        if not code.isdigit():
            raise RequestError(400, "Invalid reason_code for hangup provided")
        cause = int(code)
    else:
        cause = causes.REASONS[reason or "normal"]
    asterisk.hangup(asterisk.channel(args.text("channelId")), cause, soft=True)


@implements("channels.continueInDialplan")
def continue_in_dialplan(asterisk: Asterisk, args: Args) -> None:
    channel = asterisk.stasis_channel(args.text("channelId"))
    asterisk.continue_in_dialplan(
        channel,
        args.optional("context") or "",
        args.optional("extension") or "",
        args.number("priority", channel.dialplan.priority + 1),
    )


@implements("channels.answer")
def answer(asterisk: Asterisk, args: Args) -> None:
    asterisk.answer(asterisk.stasis_channel(args.text("channelId")))


@implements("channels.ring")
def ring(asterisk: Asterisk, args: Args) -> None:
    asterisk.indicate(asterisk.stasis_channel(args.text("channelId")), "ring")


@implements("channels.ringStop")
def ring_stop(asterisk: Asterisk, args: Args) -> None:
    asterisk.indicate(asterisk.stasis_channel(args.text("channelId")), "ring_stop")


@implements("channels.progress")
def progress(asterisk: Asterisk, args: Args) -> None:
    asterisk.indicate(asterisk.stasis_channel(args.text("channelId")), "progress")


@implements("channels.play")
def play(asterisk: Asterisk, args: Args) -> Json:
    channel = asterisk.stasis_channel(args.text("channelId"))
    media = args.many("media")
    return asterisk.media.play(channel, media, args.optional("lang"), args.optional("playbackId"))


@implements("channels.record")
def record(asterisk: Asterisk, args: Args) -> Json:
    channel = asterisk.stasis_channel(args.text("channelId"))
    return asterisk.recordings.record(
        channel,
        args.text("name"),
        args.text("format"),
        args.number("maxDurationSeconds"),
        args.text("ifExists"),
        args.text("terminateOn"),
    )


@implements("channels.getChannelVar")
def get_channel_var(asterisk: Asterisk, args: Args) -> Json:
    channel = asterisk.stasis_channel(args.text("channelId"))
    return {"value": get_variable(channel, args.text("variable"))}


@implements("channels.setChannelVar")
def set_channel_var(asterisk: Asterisk, args: Args) -> None:
    channel = asterisk.stasis_channel(args.text("channelId"))
    variable = args.text("variable")
    set_variable(asterisk, channel, variable, args.optional("value") or "")
    if args.flag("report_events"):
        channel.reported.add(variable)


@implements("channels.snoopChannel")
def snoop(asterisk: Asterisk, args: Args) -> Json:
    target = asterisk.channel(args.text("channelId"))
    app = args.text("app")
    snoop = asterisk.new_channel(
        f"Snoop/{target.id}",
        app=app,
        state=ChannelState.UP,
        channel_id=args.optional("snoopId"),
        caller=parse_caller_id(None),
        ari_created=True,
    )
    target.snoops.append(snoop.id)
    asterisk.enter_stasis(snoop, app, _args_of(args))
    return snoop.to_json()


@implements("channels.dial")
def dial(asterisk: Asterisk, args: Args) -> None:
    channel = asterisk.channel(args.text("channelId"))
    asterisk.dialer.dial(channel, args.optional("caller"), args.number("timeout"))
