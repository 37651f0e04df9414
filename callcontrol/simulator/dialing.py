"""Outgoing channels: ``POST /channels/create``, ``POST /channels/{id}/dial`` and
originate, answered by each endpoint as its :class:`~.settings.Behaviour` says.

As measured on Asterisk 22 (docs/asterisk.md), a dial emits about the dialled channel::

    [ChannelConnectedLine] → Dial "" → ChannelStateChange Ringing → Dial RINGING
        → ChannelStateChange Up → Dial ANSWER

A refused INVITE (486, 503, 480 …) ends it with no Dial status: ChannelHangupRequest and
ChannelDestroyed carry ``cause`` and ``tech_cause`` (the SIP code). Not measured, and
modelled on Asterisk's dial code: the dial timeout gives ``Dial NOANSWER`` then cause
19, and the application hanging up a channel still being dialled gives ``Dial CANCEL``.
``Dial`` events carry ``peer`` only (no ``caller``, even when ``caller=`` was given).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from callcontrol.simulator import causes
from callcontrol.simulator.causes import DialStatus
from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.model import CallerId, Channel, ChannelState, Dial, Dialplan

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk

Prepare = Callable[[Channel], None]


def parse_caller_id(text: str | None) -> CallerId:
    """``"Alice" <1001>``, ``Alice <1001>`` or ``1001`` as a CallerId."""
    if not text:
        return CallerId()
    name, bracket, rest = text.partition("<")
    if not bracket:
        return CallerId("", text.strip())
    return CallerId(name.strip().strip('"'), rest.partition(">")[0].strip())


class Dialer:
    """Creates outgoing channels and plays each endpoint's answer to a dial."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk

    def requestable(self, endpoint: str) -> str:
        """The resource of ``endpoint`` (``PJSIP/bob`` → ``bob``), if Asterisk could
        request a channel to it: 400 for a malformed endpoint, 500 otherwise."""
        tech, slash, resource = endpoint.partition("/")
        if not slash or not tech or not resource:
            raise RequestError(400, "Endpoint must be in the format tech/resource")
        behaviour = self.asterisk.config.behaviour(resource)
        if tech != "PJSIP" or behaviour.answer == "unreachable":
            raise RequestError(500, "Allocation failed")
        return resource

    def create(
        self,
        endpoint: str,
        app: str,
        args: list[str],
        channel_id: str | None,
        prepare: Prepare | None = None,
    ) -> Channel:
        """A new channel in ``app``, not yet dialled: StasisStart in state Down.
        ``prepare`` sets it up (variables) before the event announces it."""
        self.requestable(endpoint)
        channel = self.asterisk.new_channel(
            endpoint, app=app, state=ChannelState.DOWN, channel_id=channel_id, ari_created=True
        )
        if prepare is not None:
            prepare(channel)
        self.asterisk.enter_stasis(channel, app, args)
        return channel

    def originate(
        self,
        endpoint: str,
        app: str | None,
        args: list[str],
        caller_id: str | None,
        timeout: int,
        channel_id: str | None,
        dialplan: Dialplan,
        prepare: Prepare | None = None,
    ) -> Channel:
        """Create and dial at once; the channel enters ``app`` when it answers."""
        self.requestable(endpoint)
        channel = self.asterisk.new_channel(
            endpoint,
            app=app,
            state=ChannelState.DOWN,
            caller=parse_caller_id(caller_id),
            channel_id=channel_id,
            dialplan=dialplan,
            ari_created=True,
        )
        if prepare is not None:
            prepare(channel)

        def answered() -> None:
            if app:
                self.asterisk.enter_stasis(channel, app, args)

        self._start(channel, None, timeout, answered)
        return channel

    def dial(self, channel: Channel, caller_id: str | None, timeout: int) -> None:
        """Dial a created channel; ``caller_id`` names the channel it is dialled for."""
        if caller_id and caller_id not in self.asterisk.channels:
            raise RequestError(400, "Caller channel not found")
        if channel.dial is not None or channel.state != ChannelState.DOWN:
            raise RequestError(409, "Channel cannot be dialed")
        self._start(channel, caller_id, timeout, None)

    def dial_for(
        self, channel: Channel, caller: Channel, timeout: int, answered: Callable[[], None]
    ) -> None:
        """Dial ``channel`` for the dialplan's ``Dial()`` on ``caller``; ``answered``
        runs when it answers."""
        self._start(channel, caller.id, timeout, answered)

    def _start(
        self,
        channel: Channel,
        caller_id: str | None,
        timeout: int,
        answered: Callable[[], None] | None,
    ) -> None:
        asterisk = self.asterisk
        resource = channel.endpoint.partition("/")[2]
        behaviour = asterisk.config.behaviour(resource)
        channel.dial = Dial(caller_id, resource)
        caller = asterisk.channels.get(caller_id or "")
        if caller is not None:
            channel.connected = CallerId(caller.caller.name, caller.caller.number)
            asterisk.emit(channel, "ChannelConnectedLine")
        self._event(channel, DialStatus.START)
        if behaviour.rings:
            ring_at = asterisk.config.ring_after
            if behaviour.answer != "noanswer":
                ring_at = min(ring_at, behaviour.after)
            asterisk.later(channel, ring_at, lambda: self._ringing(channel))
        code = behaviour.sip_code
        if behaviour.answer == "answer":
            asterisk.later(channel, behaviour.after, lambda: self._answered(channel, answered))
        elif code is not None:
            asterisk.later(channel, behaviour.after, lambda: self._refused(channel, code))
        if timeout > 0:
            channel.dial.timeout = asterisk.later(channel, timeout, lambda: self._timeout(channel))

    def _ringing(self, channel: Channel) -> None:
        if channel.dial is None or channel.state != ChannelState.DOWN:
            return
        self.asterisk.set_state(channel, ChannelState.RINGING)
        self._event(channel, DialStatus.RINGING)
        self.asterisk.dialplan_dials.ringing(channel)

    def _answered(self, channel: Channel, then: Callable[[], None] | None) -> None:
        dial = channel.dial
        if dial is None:
            return
        if dial.timeout is not None:
            dial.timeout.cancel()
        self.asterisk.set_state(channel, ChannelState.UP)
        self._event(channel, DialStatus.ANSWER)
        channel.dial = None
        if then is not None:
            then()

    def _refused(self, channel: Channel, code: int) -> None:
        """The endpoint answered the INVITE with final response ``code``."""
        channel.dial = None
        self.asterisk.hangup(channel, causes.sip_cause(code), soft=False, tech_cause=code)

    def _timeout(self, channel: Channel) -> None:
        # As Asterisk 22 does (measured): no Dial NOANSWER; the dial's own hang-up reads as
        # a soft request (cause 32), and ChannelDestroyed carries 19 with SIP 480.
        channel.dial = None
        self.asterisk.hangup(channel, causes.NO_ANSWER, soft=True, tech_cause=480)

    def on_hangup(self, channel: Channel, *, soft: bool) -> None:
        """A channel still being dialled goes: the application cancelled the dial."""
        if channel.dial is not None and soft:
            self._event(channel, DialStatus.CANCEL)
        channel.dial = None

    def _event(self, peer: Channel, status: DialStatus) -> None:
        assert peer.dial is not None
        peer.dial.status = str(status)
        self.asterisk.hub.emit(
            peer.app,
            "Dial",
            peer=peer.to_json(),
            dialstring=peer.dial.dialstring,
            dialstatus=str(status),
        )
