"""Simulated calls into the application, and what their far end does during them.

A call enters the dialplan in state Ring and reaches ``Stasis(<app>,<args>)`` as a SIP
call would: StasisStart with the origin (``terminal``, ``carrier``) as its argument. If
the application has no events websocket, Stasis() fails and the dialplan goes on, as in
Asterisk: the call never enters the application, and the dialplan after ``Stasis()``
hangs it up (``dialplan_cause``, 34 = the 503 of the rendered configuration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from callcontrol.simulator import causes
from callcontrol.simulator.engine import Asterisk, RequestError
from callcontrol.simulator.model import CallerId, Channel, ChannelState, Dialplan
from callcontrol.simulator.variables import remote_addr

DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class Dtmf:
    """Digits the far end presses ``after`` seconds from now, ``between`` apart."""

    digits: str
    after: float = 0.0
    between: float = 0.1
    duration_ms: int = 100


@dataclass(frozen=True, slots=True)
class CallSpec:
    """A call from ``endpoint`` (``alice`` or ``PJSIP/alice``) to ``exten``."""

    endpoint: str
    exten: str
    args: tuple[str, ...] = ("terminal",)
    caller: CallerId | None = None
    """Caller id; by default the endpoint's name as the number."""
    source_ip: str = ""
    app: str | None = None
    context: str | None = None
    language: str | None = None
    channel_id: str | None = None
    dtmf: tuple[Dtmf, ...] = field(default_factory=tuple)
    hangup_after: float | None = None
    """Seconds after which the caller hangs up (None: never by itself)."""


def place_call(asterisk: Asterisk, spec: CallSpec) -> Channel:
    """Start ``spec``: a channel in state Ring enters the application (StasisStart), or,
    with the application not connected, goes on in the dialplan and is hung up there."""
    app = spec.app or asterisk.config.app
    endpoint = spec.endpoint if "/" in spec.endpoint else f"PJSIP/{spec.endpoint}"
    resource = endpoint.partition("/")[2]
    if not resource:
        raise RequestError(400, "the calling endpoint needs a name")
    for press in spec.dtmf:
        check_digits(press.digits)
    origin = spec.args[0] if spec.args else "terminal"
    context = spec.context or ("from-carriers" if origin == "carrier" else asterisk.config.context)
    channel = asterisk.new_channel(
        endpoint,
        app=app,
        state=ChannelState.RING,
        caller=spec.caller or CallerId("", resource),
        dialplan=Dialplan(context, spec.exten, 1),
        channel_id=spec.channel_id,
        language=spec.language,
        source_address=spec.source_ip,
    )
    if not asterisk.hub.registered(app):
        channel.app = None
        asterisk.leave_to_dialplan(channel)
        return channel
    args = list(spec.args)
    if args in (["terminal"], ["carrier"]):
        # As the rendered dialplan: Stasis(<app>,<origin>,${CHANNEL(pjsip,remote_addr)}).
        args.append(remote_addr(channel.source_address))
    asterisk.enter_stasis(channel, app, args)
    for press in spec.dtmf:
        press_keys(asterisk, channel, press)
    if spec.hangup_after is not None:
        hang_up_later(asterisk, channel, spec.hangup_after, causes.NORMAL)
    return channel


def check_digits(digits: str) -> None:
    if not digits or any(digit not in DIGITS for digit in digits.upper()):
        raise RequestError(400, f"DTMF {digits!r}: use 0-9, *, #, A-D")


def press_keys(asterisk: Asterisk, channel: Channel, press: Dtmf) -> None:
    """Schedule ChannelDtmfReceived for each digit of ``press``."""
    check_digits(press.digits)
    for index, digit in enumerate(press.digits.upper()):
        asterisk.later(
            channel,
            press.after + index * press.between,
            partial(asterisk.dtmf, channel, digit, press.duration_ms),
        )


def hang_up_later(asterisk: Asterisk, channel: Channel, after: float, cause: int) -> None:
    """The far end hangs up ``after`` seconds from now (at once for 0)."""
    if after <= 0:
        asterisk.hangup(channel, cause, soft=False)
    else:
        asterisk.later(channel, after, lambda: asterisk.hangup(channel, cause, soft=False))
