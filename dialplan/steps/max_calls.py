"""Max calls: the client's concurrent external calls, on every server, against its limit
(DESIGN §3.4).

The step only reads the count (explain must not take a slot); the shell takes the slot
atomically in the shared database before it dials out or answers, and refuses the call
the same way when another server took the last one meanwhile.
"""

from __future__ import annotations

from dialplan.call import Call, External, Inbound
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep


@step
class MaxCallsStep(BaseStep):
    """Decides ``max_calls_reached`` when the client's slots are all taken."""

    name = "max_calls"
    applies_to = "external calls (internal and inter-VPBX calls never count)"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, External | Inbound)

    async def run(self, call: Call) -> Verdict:
        client = call.client
        assert client is not None
        if call.is_emergency:
            return Next("emergency number: never refused for max calls")
        if client.max_calls == 0:
            return Next("max calls 0: unlimited")
        held = await self.directory.active_calls(client, call.request.at)
        if held < client.max_calls and not call.traced:
            return PASS
        details = {"held": str(held), "limit": str(client.max_calls)}
        summary = f"{held} of {client.max_calls} concurrent external calls in use"
        if held >= client.max_calls:
            return Decide(reject(call, Reason.MAX_CALLS_REACHED), summary, details)
        return Next(summary, details)
