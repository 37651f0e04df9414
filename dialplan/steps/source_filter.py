"""Source filter: may the client's terminal call from where it is (DESIGN §3.3)."""

from __future__ import annotations

from dialplan.call import Call
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.source_filter import judge
from dialplan.steps.base import BaseStep


@step
class SourceFilterStep(BaseStep):
    """Decides ``ip_not_allowed`` (spoken by the platform) for a call from elsewhere."""

    name = "source_filter"
    applies_to = "calls placed from a terminal"

    def applies(self, call: Call) -> bool:
        return call.terminal is not None

    async def run(self, call: Call) -> Verdict:
        client = call.client
        assert client is not None
        request = call.request
        verdict = judge(
            filter_on=client.filter_by_ip,
            source_ip=request.source_ip,
            country=request.source_country,
            authorized=client.authorized_sources,
            allowed_countries=client.geoip_countries,
        )
        if verdict.allowed and not call.traced:
            return PASS
        details = {"source": request.source_ip or "", "matched": verdict.matched or ""}
        if request.source_country:
            details["country"] = request.source_country
        if not verdict.allowed:
            return Decide(reject(call, Reason.IP_NOT_ALLOWED), verdict.why, details)
        return Next(verdict.why, details)
