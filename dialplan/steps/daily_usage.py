"""Max daily usage: the client's external spend today, in its own timezone (DESIGN §3.5)."""

from __future__ import annotations

from dialplan.call import Call, External
from dialplan.daily import judge, local_day
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep


@step
class DailyUsageStep(BaseStep):
    """Decides ``daily_limit_reached`` for new external outbound calls once it is spent."""

    name = "daily_usage"
    applies_to = "external calls placed by a terminal"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, External)

    async def run(self, call: Call) -> Verdict:
        client = call.client
        assert client is not None
        if call.is_emergency:
            return Next("emergency number: never refused for daily usage")
        if client.max_daily_usage is None:
            return Next("no daily usage limit")
        day = local_day(call.request.at, client.timezone)
        spent = await self.directory.spent(client, day)
        verdict = judge(
            limit=client.max_daily_usage,
            spent=spent,
            currency=client.currency,
            timezone=client.timezone,
        )
        if verdict.allowed:
            call.daily_remaining = client.max_daily_usage - spent
            if not call.traced:
                return PASS
        details = {
            "day": day.isoformat(),
            "spent": str(spent),
            "limit": str(client.max_daily_usage),
        }
        if not verdict.allowed:
            return Decide(reject(call, Reason.DAILY_LIMIT_REACHED), verdict.why, details)
        return Next(verdict.why, details)
