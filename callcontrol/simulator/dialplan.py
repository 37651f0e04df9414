"""The rendered dialplan's ``[callcontrol-dial]`` context, as the simulator plays it.

A channel the application continues there (a call handed back, see
``callcontrol.handback``) dials what its ``CC`` variable packs, natively: the dialled
channel belongs to no application, so neither leg emits anything to the app while the
call lasts. The caller hears the callee's ringing and is answered with it; both then
share a bridge of the dialplan's own (``bridge_id`` set, no events). Dial's ``S(n)``
ends the call n seconds after the answer.

When either leg goes, the other is hung up, and the caller's ``h`` extension runs
``Stasis(<app>,end,${DIALSTATUS},${ANSWEREDTIME_MS},${HANGUPCAUSE},${CC_BY})``: the app
gets a StasisStart with those arguments, then StasisEnd, and nothing after (as on
Asterisk 22, where Stasis() returns at once on a channel that is hung up). A failed dial
hangs the caller up with the callee's cause, as Dial() does.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from callcontrol.handback import unpack
from callcontrol.simulator import causes
from callcontrol.simulator.model import CallerId, Channel, ChannelState

if TYPE_CHECKING:
    from callcontrol.simulator.engine import Asterisk

_DURATION = re.compile(r"S\((\d+)\)")
_STATUS_OF_CAUSE = {
    causes.BUSY: "BUSY",
    causes.NO_ANSWER: "NOANSWER",
    causes.NO_USER_RESPONSE: "NOANSWER",
    causes.CONGESTION: "CONGESTION",
    causes.FAILURE: "CONGESTION",
}


@dataclass(slots=True, eq=False)
class _Call:
    app: str
    caller: Channel
    callee: Channel | None = None
    answered_at: float | None = None
    status: str = ""
    by_callee: bool = False


class DialplanDials:
    """Calls dialled by ``[callcontrol-dial]``, by caller and by callee channel id."""

    def __init__(self, asterisk: Asterisk) -> None:
        self.asterisk = asterisk
        self.calls: dict[str, _Call] = {}

    def start(self, caller: Channel, app: str) -> None:
        """Run the context for ``caller``, which just left ``app``."""
        call = _Call(app, caller)
        self.calls[caller.id] = call
        try:
            packed = unpack(caller.variables.get("CC", ""))
            dial, ring, options = packed["CC_DIAL"], int(packed["CC_TIMEOUT"]), packed["CC_OPTIONS"]
            number, name = packed["CC_CALLERID"], packed["CC_CALLERNAME"]
        except (KeyError, ValueError):
            self.asterisk.hangup(caller, causes.FAILURE, soft=False)  # Dial() of nothing
            return
        if number:
            caller.caller.number = number
        if name:
            caller.caller.name = name
        dialer = self.asterisk.dialer
        try:
            dialer.requestable(dial)
        except Exception:  # chan_pjsip cannot make the channel: CHANUNAVAIL
            # the context's "unreachable" branch: the notice (not modelled), then cause 19
            call.status = "CHANUNAVAIL"
            self.asterisk.hangup(caller, causes.NO_ANSWER, soft=False, tech_cause=480)
            return
        callee = self.asterisk.new_channel(
            dial,
            app=None,
            state=ChannelState.DOWN,
            caller=CallerId(caller.caller.name, caller.caller.number),
        )
        call.callee = callee
        self.calls[callee.id] = call
        limit = _DURATION.search(options)

        def answered() -> None:
            call.status = "ANSWER"
            call.answered_at = time.monotonic()
            self.asterisk.answer(caller)
            bridge = self.asterisk.bridges.create(None, f"{caller.id}-dial", "dial")
            for channel in (caller, callee):
                bridge.channels.append(channel.id)
                channel.bridge_id = bridge.id
            if limit is not None:
                self.asterisk.later(callee, float(limit[1]), lambda: self._ran_out(call))

        dialer.dial_for(callee, caller, ring, answered)

    def ringing(self, callee: Channel) -> None:
        """The dialled channel rings: the caller hears it."""
        call = self.calls.get(callee.id)
        if call is not None and call.callee is callee:
            self.asterisk.indicate(call.caller, "ring")

    def _ran_out(self, call: _Call) -> None:
        call.by_callee = True
        if call.callee is not None:
            self.asterisk.hangup(call.callee, causes.NORMAL, soft=False)

    def on_hangup(self, channel: Channel) -> None:
        """A leg of a dialplan call is going: end the other; the caller reports."""
        call = self.calls.pop(channel.id, None)
        if call is None:
            return
        asterisk = self.asterisk
        if channel is call.callee:
            if call.status == "ANSWER":
                call.by_callee = True
                cause = causes.NORMAL
            else:
                call.status = _STATUS_OF_CAUSE.get(channel.cause, "CHANUNAVAIL")
                cause = channel.cause
            if call.caller.id in asterisk.channels and not call.caller.hangup_requested:
                asterisk.hangup(call.caller, cause, soft=False)
            return
        callee = call.callee
        if callee is not None:
            self.calls.pop(callee.id, None)
            if not call.status:
                call.status = "CANCEL"
            if callee.id in asterisk.channels and not callee.hangup_requested:
                asterisk.hangup(callee, causes.NORMAL, soft=False)
        self._report(call)

    def _report(self, call: _Call) -> None:
        """The caller's ``h`` extension: Stasis(<app>,end,…) returns at once."""
        caller = call.caller
        answered_ms = round((time.monotonic() - call.answered_at) * 1000) if call.answered_at else 0
        args = [
            "end",
            call.status,
            str(answered_ms) if call.status == "ANSWER" else "",
            str(caller.cause),
            "callee" if call.by_callee else "",
        ]
        caller.app = call.app
        caller.dialplan.app_name = "Stasis"
        caller.dialplan.app_data = ",".join([call.app, *args])
        self.asterisk.emit(caller, "StasisStart", args=args, channel=caller.to_json())
        self.asterisk.emit(caller, "StasisEnd")
        caller.app = None

    def reset(self) -> None:
        self.calls.clear()
