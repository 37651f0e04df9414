"""Recording: whether the call is recorded from its answer, and whether ``*<code>``
toggles segments during it (DESIGN §3.8)."""

from __future__ import annotations

from typing import ClassVar

from dialplan.call import Call, External, Inbound, Internal, InterVpbx
from dialplan.recording import plan
from dialplan.registry import PASS, Next, Verdict, step
from dialplan.steps.base import BaseStep


@step
class RecordingStep(BaseStep):
    """Sets ``call.recording``; never refuses a call."""

    name = "recording"
    feature: ClassVar[str | None] = "recordings"
    applies_to = "calls that ring a terminal or a carrier"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, Internal | InterVpbx | External | Inbound)

    async def run(self, call: Call) -> Verdict:
        client = call.client
        assert client is not None
        route = call.route
        ddi, record_calls = None, "none"
        if isinstance(route, Inbound):
            ddi, record_calls = route.ddi.e164, route.ddi.record_calls
        elif isinstance(route, External) and call.ddi is not None and call.ddi.ddi is not None:
            presented = await self.directory.ddi(call.ddi.ddi)
            if presented is not None and presented.client.id == client.id:
                ddi, record_calls = presented.e164, presented.record_calls
        call.recording = plan(
            on_demand=client.on_demand_recording,
            code=client.on_demand_record_code,
            service_code_dialled=call.record_code_dialled,
            ddi=ddi,
            ddi_record_calls=record_calls,
            direction=call.direction,
        )
        if not call.traced:
            return PASS
        details = {"from_answer": str(call.recording.from_answer).lower()}
        if call.recording.dtmf_code is not None:
            details["dtmf"] = f"*{call.recording.dtmf_code}"
        return Next(call.recording.why, details)
