"""The simulated Asterisk's state and the life of its channels.

:class:`Asterisk` owns channels, and composes :class:`~.dialing.Dialer`,
:class:`~.bridging.Bridges`, :class:`~.media.Media` (playbacks) and
:class:`~.recordings.Recordings` for the rest. All of it runs on
one event loop, synchronously: a request changes state and emits its events before it
answers, and anything that happens later (ringing, answers, DTMF, playbacks ending) is a
timer on the loop, cancelled when its channel goes. Nothing polls and nothing sleeps, so
thousands of calls cost only their timers.

Channel teardown emits what Asterisk 22 emits, in its order (docs/asterisk.md)::

    ChannelHangupRequest → [Dial CANCEL] → PlaybackFinished / RecordingFinished
        → ChannelLeftBridge → [the bridge's RecordingFinished / PlaybackFinished when it
        was its last channel] → StasisEnd → [ChannelVarset STASISSTATUS → ChannelDestroyed]

A channel that entered through the dialplan's ``Stasis()`` stops being reported at its
StasisEnd; one created through ARI (create, originate, snoop) stays subscribed and also
gets ChannelVarset STASISSTATUS=SUCCESS and ChannelDestroyed. ChannelHangupRequest carries
``soft`` and cause 32 when ARI hung up, nothing for a plain BYE, and ``cause`` (with
``tech_cause``, the SIP code) when the far end refused.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from typing import Any

from callcontrol.simulator import causes
from callcontrol.simulator.events import EventHub, EventType
from callcontrol.simulator.model import CallerId, Channel, ChannelState, Dialplan
from callcontrol.simulator.settings import SimulatorConfig

ENDED_KEPT = 100_000
DIALPLAN_DIAL = "callcontrol-dial"
"""The rendered context that dials a call the application handed back (see .dialplan)."""


class RequestError(Exception):
    """A request Asterisk would refuse: HTTP ``status`` with ``{"message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class Asterisk:
    """The whole simulated Asterisk: every object, every rule, every event."""

    def __init__(self, config: SimulatorConfig, hub: EventHub) -> None:
        from callcontrol.simulator.bridging import Bridges
        from callcontrol.simulator.dialing import Dialer
        from callcontrol.simulator.dialplan import DialplanDials
        from callcontrol.simulator.media import Media
        from callcontrol.simulator.recordings import Recordings

        self.config = config
        self.hub = hub
        self.channels: dict[str, Channel] = {}
        self.ended: dict[str, int] = {}
        """Cause of each channel that ended (the most recent ``ENDED_KEPT``)."""
        self.started = time.time()
        self._ids = itertools.count(1)
        self._names = itertools.count(1)
        self.dialer = Dialer(self)
        self.dialplan_dials = DialplanDials(self)
        self.bridges = Bridges(self)
        self.media = Media(self)
        self.recordings = Recordings(self)

    # -- lookups ---------------------------------------------------------------

    def channel(self, channel_id: str) -> Channel:
        """The live channel ``channel_id``; 404 "Channel not found" otherwise."""
        channel = self.channels.get(channel_id)
        if channel is None or channel.hangup_requested:
            raise RequestError(404, "Channel not found")
        return channel

    def stasis_channel(self, channel_id: str) -> Channel:
        """A live channel inside a Stasis application; 409 when it is not in one."""
        channel = self.channel(channel_id)
        if not channel.in_stasis:
            raise RequestError(409, "Channel not in Stasis application")
        return channel

    # -- creation --------------------------------------------------------------

    def new_channel(
        self,
        endpoint: str,
        *,
        app: str | None,
        state: ChannelState,
        caller: CallerId | None = None,
        dialplan: Dialplan | None = None,
        channel_id: str | None = None,
        name: str | None = None,
        language: str | None = None,
        source_address: str = "",
        ari_created: bool = False,
    ) -> Channel:
        """Register a channel (no event: its creator emits what fits)."""
        if channel_id and channel_id in self.channels:
            raise RequestError(409, "Channel with given unique ID already exists")
        tech, _, resource = endpoint.partition("/")
        channel = Channel(
            id=channel_id or self._new_id(),
            name=name or f"{tech}/{resource.rpartition('@')[2]}-{next(self._names):08x}",
            endpoint=endpoint,
            state=state,
            caller=caller or CallerId(),
            dialplan=dialplan or Dialplan(),
            app=app,
            language=language or self.config.language,
            source_address=source_address,
            protocol_id=f"{uuid.uuid4().hex}@simulator",
            ari_created=ari_created,
        )
        self.channels[channel.id] = channel
        return channel

    def enter_stasis(self, channel: Channel, app: str, args: list[str]) -> None:
        """Put ``channel`` into ``app``: StasisStart with ``args``, preceded for a channel
        made through ARI by ChannelDialplan and ChannelVarset STASISSTATUS=""."""
        channel.app = app
        channel.in_stasis = True
        channel.dialplan.app_name = "Stasis"
        channel.dialplan.app_data = ",".join([app, *args])
        if channel.ari_created:
            self.emit(
                channel,
                "ChannelDialplan",
                dialplan_app="Stasis",
                dialplan_app_data=channel.dialplan.app_data,
            )
            self.emit(channel, "ChannelVarset", variable="STASISSTATUS", value="")
        self.emit(channel, "StasisStart", args=args, channel=channel.to_json())

    # -- events and timers -----------------------------------------------------

    def emit(self, channel: Channel, kind: EventType, /, **fields: Any) -> None:
        """Emit an event about ``channel`` to the application subscribed to it, if any."""
        if channel.app is None:
            return
        fields.setdefault("channel", channel.to_json())
        self.hub.emit(channel.app, kind, **fields)

    def later(
        self, channel: Channel, delay: float, action: Callable[[], None]
    ) -> asyncio.TimerHandle:
        """Run ``action`` after ``delay`` seconds unless ``channel`` goes first."""

        def fire() -> None:
            channel.timers.remove(handle)
            if not channel.hangup_requested:
                action()

        handle = asyncio.get_running_loop().call_later(max(delay, 0.0), fire)
        channel.timers.append(handle)
        return handle

    def set_state(self, channel: Channel, state: ChannelState) -> None:
        if channel.state != state:
            channel.state = state
            self.emit(channel, "ChannelStateChange")

    # -- indications -----------------------------------------------------------

    def _new_id(self) -> str:
        prefix = self.config.channel_id_prefix
        number = f"{int(self.started)}.{next(self._ids)}"
        return f"{prefix}-{number}" if prefix else number

    def answer(self, channel: Channel) -> None:
        channel.indications.append("answer")
        self.set_state(channel, ChannelState.UP)

    def indicate(self, channel: Channel, indication: str) -> None:
        """Ringing / progress towards the caller: no state change, no event."""
        channel.indications.append(indication)

    def dtmf(self, channel: Channel, digit: str, duration_ms: int) -> None:
        """The far end pressed ``digit``: the app hears it unless the channel is in a
        bridge created without ``dtmf_events`` (as on Asterisk 22)."""
        bridge = self.bridges.bridges.get(channel.bridge_id or "")
        if bridge is None or bridge.dtmf_events:
            self.emit(channel, "ChannelDtmfReceived", digit=digit, duration_ms=duration_ms)
        self.recordings.on_dtmf(channel, digit)

    # -- leaving ---------------------------------------------------------------

    def hangup(
        self, channel: Channel, cause: int, *, soft: bool, tech_cause: int | None = None
    ) -> None:
        """Hang ``channel`` up with ``cause``: ``soft`` when ARI asked; otherwise the far
        end did, with a BYE or (``tech_cause``) a SIP final response."""
        if channel.hangup_requested:
            return
        channel.hangup_requested = True
        channel.cause = cause
        channel.cancel_timers()
        request: dict[str, Any] = {}
        if soft:
            request = {"cause": causes.APP_HANGUP_REQUEST, "soft": True}
        elif tech_cause is not None:
            request = {"cause": cause, "tech_cause": tech_cause}
        elif cause != causes.NORMAL:
            request = {"cause": cause}
        self.emit(channel, "ChannelHangupRequest", **request)
        self.dialer.on_hangup(channel, soft=soft)
        self.media.on_hangup(channel)
        self.recordings.on_hangup(channel)
        for snoop_id in channel.snoops:
            snoop = self.channels.get(snoop_id)
            if snoop is not None:
                self.hangup(snoop, causes.NORMAL, soft=False)
        self.bridges.on_hangup(channel)
        if channel.in_stasis:
            channel.in_stasis = False
            self.emit(channel, "StasisEnd")
            if channel.ari_created:
                self.emit(channel, "ChannelVarset", variable="STASISSTATUS", value="SUCCESS")
            else:
                channel.app = None  # a dialplan channel's subscription ends with StasisEnd
        self.dialplan_dials.on_hangup(channel)
        destroyed: dict[str, Any] = {"cause": cause, "cause_txt": causes.cause_text(cause)}
        if tech_cause is not None:
            destroyed["tech_cause"] = tech_cause
        self.emit(channel, "ChannelDestroyed", **destroyed)
        del self.channels[channel.id]
        self.ended[channel.id] = cause
        if len(self.ended) > ENDED_KEPT:
            del self.ended[next(iter(self.ended))]
        channel.gone.set()

    def continue_in_dialplan(
        self, channel: Channel, context: str, exten: str, priority: int
    ) -> None:
        """Leave Stasis for the dialplan (StasisEnd, the last event the application gets
        about a dialplan channel); the dialplan then hangs it up."""
        self.bridges.on_hangup(channel)
        self.media.on_hangup(channel)
        self.recordings.on_hangup(channel)
        channel.in_stasis = False
        app = channel.app
        self.emit(channel, "StasisEnd")
        if not channel.ari_created:
            channel.app = None
        channel.dialplan = Dialplan(
            context or channel.dialplan.context, exten or channel.dialplan.exten, priority
        )
        if channel.dialplan.context == DIALPLAN_DIAL and app is not None:
            channel.dialplan.app_name = "Dial"
            self.dialplan_dials.start(channel, app)
        else:
            self.leave_to_dialplan(channel)

    def leave_to_dialplan(self, channel: Channel) -> None:
        """The dialplan after ``Stasis()`` runs: ``dialplan_seconds`` later it hangs the
        channel up with ``dialplan_cause``."""
        self.later(
            channel,
            self.config.dialplan_seconds,
            lambda: self.hangup(channel, self.config.dialplan_cause, soft=False),
        )

    def reset(self) -> None:
        """Forget every object without events (between test scenarios)."""
        for channel in list(self.channels.values()):
            channel.cancel_timers()
            channel.gone.set()
        self.channels.clear()
        self.ended.clear()
        self.bridges.reset()
        self.dialplan_dials.reset()
        self.media.reset()
        self.recordings.reset()
