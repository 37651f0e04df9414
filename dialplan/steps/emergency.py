"""Emergency: a number of the platform's list for the caller's country (DESIGN §3.5).

Such a call is routed as an external one, through the client's outbound routes and
carrier, and gets its CDR; max calls, daily usage, billing and balance never refuse it
(their steps let it pass, and the shell takes its slot whatever the limit).
"""

from __future__ import annotations

from dialplan.call import Call, External
from dialplan.registry import PASS, Next, Verdict, step
from dialplan.steps.base import BaseStep


@step
class EmergencyStep(BaseStep):
    """Routes an emergency number before any other reading of the dialled digits."""

    name = "emergency"
    applies_to = "calls placed by a terminal (a carrier's call is routed by its DDI)"

    def applies(self, call: Call) -> bool:
        return call.route is None  # inbound carrier calls were routed by their DDI

    async def run(self, call: Call) -> Verdict:
        client = call.client
        assert client is not None
        dialled = call.request.dialled
        if not await self.directory.emergency_number(client, dialled):
            if not call.traced:
                return PASS
            return Next(f"not an emergency number of {client.country}")
        # Before extensions and normalisation: a short number such as 112 is not a
        # possible E.164 number, and no client's extension may hide it.
        call.route = External(dialled, emergency=True)
        return Next(
            f"emergency number {dialled} of {client.country}: max calls, daily usage,"
            " billing and balance do not apply",
            {"route": "external", "number": dialled, "emergency": "yes"},
        )
