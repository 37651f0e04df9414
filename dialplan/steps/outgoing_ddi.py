"""Outgoing DDI: which number an external call presents (DESIGN §3.6)."""

from __future__ import annotations

from dialplan.call import Call, External
from dialplan.ddi import DdiChoice, DdiRuleView, forwarded_presentation, select_ddi
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep
from dialplan.views import ClientView, UserView


@step
class OutgoingDdiStep(BaseStep):
    """Chooses ``call.ddi`` for an external call; decides ``no_outgoing_ddi`` when none."""

    name = "outgoing_ddi"
    applies_to = "external calls placed by a terminal"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, External)

    async def run(self, call: Call) -> Verdict:
        route = call.route
        assert isinstance(route, External)
        assert call.client is not None
        choice = await self._choose(call.client, call.user, route.e164, route.ddi_prefix)
        forwarding = route.forwarded_by
        if forwarding is not None:
            # A forwarded call presents the caller's DDI; the forwarding extension's
            # DDI goes in the Diversion (so it must have one).
            diverting = await self._choose(
                forwarding.client, forwarding.user, route.e164, route.ddi_prefix
            )
            if diverting.ddi is None:
                return Decide(
                    reject(call, Reason.NO_OUTGOING_DDI),
                    f"forwarding extension {forwarding.number}: {diverting.why}",
                )
            presented = forwarded_presentation(choice.ddi, diverting.ddi)
            call.ddi, call.diversion = choice, presented.diversion
            return Next(
                f"{choice.why}; forwarded by extension {forwarding.number} "
                f"(Diversion {presented.diversion})",
                _details(choice) | {"diversion": presented.diversion},
            )
        if choice.ddi is None:
            # Routing refuses an undefined prefix first; this keeps the step right on its own.
            reason = Reason.INVALID_NUMBER if choice.invalid_prefix else Reason.NO_OUTGOING_DDI
            return Decide(reject(call, reason), choice.why, _details(choice))
        call.ddi = choice
        if not call.traced:
            return PASS
        return Next(choice.why, _details(choice))

    async def _choose(
        self, client: ClientView, user: UserView | None, e164: str, prefix: str | None
    ) -> DdiChoice:
        return select_ddi(
            user_ddi=user.outgoing_ddi if user else None,
            client_ddi=client.outgoing_ddi,
            user_rule=await self._rule(user.outgoing_ddi_rule_id if user else None),
            client_rule=await self._rule(client.outgoing_ddi_rule_id),
            e164=e164,
            dialled_prefix=prefix,
        )

    async def _rule(self, rule_id: int | None) -> DdiRuleView | None:
        return None if rule_id is None else await self.directory.ddi_rule(rule_id)


def _details(choice: DdiChoice) -> dict[str, str]:
    details = {"ddi": choice.ddi or "", "base": choice.base or ""}
    if choice.rule is not None:
        details["rule"] = f"{choice.rule} ({choice.rule_of}'s)"
    if choice.pattern is not None:
        details["pattern"] = choice.pattern.describe()
    return details
