"""Connect: the last step. Turns the route the others agreed on into a Dial (or a service)."""

from __future__ import annotations

from decimal import Decimal

from dialplan.call import Call, External, Inbound, Internal, InterVpbx, Service
from dialplan.decisions import Dial, RunService
from dialplan.rating import Billed, max_duration
from dialplan.reasons import Reason
from dialplan.recording import RecordingPlan
from dialplan.registry import Decide, Verdict, reject, step
from dialplan.steps.base import BaseStep
from dialplan.views import UserView


@step
class ConnectStep(BaseStep):
    """Always decides: Dial the callee's terminal or a carrier, or run the service."""

    name = "connect"

    async def run(self, call: Call) -> Verdict:
        route = call.route
        if isinstance(route, Service):
            return Decide(RunService(route.code), f"run service *{route.code}")
        if isinstance(route, Internal | InterVpbx):
            caller = call.user.extension if call.user and call.user.extension else None
            name = call.user.name if call.user else None
            return self._ring(call, route.extension.user, caller, name)
        if isinstance(route, Inbound):
            return self._ring(call, route.user, call.request.caller_id, None)
        assert isinstance(route, External)
        assert call.client is not None
        carrier = await self.directory.outbound_carrier(call.client, route.e164)
        if carrier is None:
            return Decide(
                reject(call, Reason.DESTINATION_UNREACHABLE),
                f"no outbound route of client {call.client.name} reaches {route.e164}",
            )
        call.carrier = carrier
        presented = call.ddi.ddi if call.ddi is not None else None
        billing = call.billing if isinstance(call.billing, Billed) else None
        cap = _cap(billing, call.daily_remaining)
        if cap == 0:  # what is left of today's limit does not pay the first increment
            return Decide(
                reject(call, Reason.DAILY_LIMIT_REACHED),
                f"what is left of today's limit ({call.daily_remaining}) does not pay the"
                f" first {billing.rate.increment_first if billing else 0} s to {route.e164}",
            )
        dial = Dial(
            carrier.endpoint,
            "carrier",
            route.e164,
            caller_id=presented,
            max_duration=cap,
            diversion=call.diversion,
            billing=billing,
            recording=_recording(call),
        )
        return Decide(
            dial,
            f"dial {route.e164} through carrier {carrier.name} ({carrier.endpoint})"
            f" as {presented or 'no caller id'}",
            {"carrier": carrier.name, "endpoint": carrier.endpoint, "caller_id": presented or ""},
        )

    @staticmethod
    def _ring(
        call: Call, callee: UserView | None, caller_id: str | None, caller_name: str | None
    ) -> Verdict:
        if callee is None or callee.terminal is None:
            who = f"user {callee.name} has no terminal" if callee else "routes to no user"
            return Decide(reject(call, Reason.DESTINATION_UNREACHABLE), f"callee {who}")
        dial = Dial(
            callee.terminal,
            "terminal",
            callee.extension or callee.name,
            caller_id,
            caller_name,
            recording=_recording(call),
        )
        return Decide(
            dial,
            f"ring terminal {callee.terminal} of user {callee.name}",
            {"endpoint": callee.terminal, "callee": callee.name},
        )


def _cap(billing: Billed | None, daily_remaining: Decimal | None) -> int | None:
    """A prepaid call's longest duration: what its balance pays and, with a daily limit,
    what is left of today's (prepaid calls count against it as they run)."""
    if billing is None or billing.max_duration is None:
        return None
    if daily_remaining is None:
        return billing.max_duration
    allowed = max_duration(billing.rate, daily_remaining)
    return billing.max_duration if allowed is None else min(billing.max_duration, allowed)


def _recording(call: Call) -> RecordingPlan | None:
    """The call's recording plan when anything may record it, else None."""
    return call.recording if call.recording is not None and call.recording.records else None
