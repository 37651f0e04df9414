"""Billing: can this external call be billed, at which rate, for how long (DESIGN §3.7)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from dialplan.call import Call, External
from dialplan.rating import Billed, BillingCheck, NotBilled, check
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep

_PREPAID = frozenset({"prepaid", "pseudoprepaid"})


@step
class BillingStep(BaseStep):
    """Sets ``call.billing``; decides ``cannot_be_billed`` or ``insufficient_balance``."""

    name = "billing"
    feature: ClassVar[str | None] = "billing"
    applies_to = "external calls placed by a terminal"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, External)

    async def run(self, call: Call) -> Verdict:
        client, route = call.client, call.route
        assert client is not None
        assert isinstance(route, External)
        verdict: BillingCheck
        if call.is_emergency:
            verdict = NotBilled("emergency number: not priced, never refused for balance")
            call.billing = verdict
            return Next(verdict.why)
        if client.billing_method == "none":
            verdict = NotBilled("billing method none: calls are not priced")
            call.billing = verdict
            return Next(verdict.why)
        profiles = await self.directory.rating_profiles(client, route.e164)
        balance = (
            await self.directory.balance(client)
            if client.billing_method in _PREPAID
            else Decimal(0)
        )
        verdict = check(
            client.billing_method,
            True,
            balance,
            profiles,
            route.e164,
            call.request.at,
            client.timezone,
            client.currency,
        )
        call.billing = verdict
        if isinstance(verdict, NotBilled):
            return Next(verdict.why)
        if isinstance(verdict, Billed):
            if not call.traced:
                return PASS
            rate = verdict.rate
            details = {
                "plan": verdict.profile.plan.name,
                "prefix": rate.prefix,
                "price_per_minute": f"{rate.price_per_minute} {verdict.currency}",
                "connection_fee": f"{rate.connection_fee} {verdict.currency}",
                "increments": rate.increments,
            }
            if client.billing_method in _PREPAID:
                details["balance"] = f"{balance} {verdict.currency}"
            if verdict.max_duration is not None:
                details["max_duration"] = f"{verdict.max_duration} s"
            return Next(verdict.why, details)
        return Decide(reject(call, verdict.reason), verdict.why)
