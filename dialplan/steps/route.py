"""Route: what the dialled number is. Extension, service code, inter-VPBX, or external.

An extension of another client of the caller's corporation is an inter-VPBX route only when
both clients have the ``friends`` feature (DESIGN §3.12); otherwise the number is not an
extension for the caller and is read as any other number. A ``NNN*`` outgoing-DDI prefix is
stripped before normalisation when the rule in force defines it, else the call is
``invalid_number`` (DESIGN §3.6).
"""

from __future__ import annotations

from dataclasses import replace

from dialplan.call import Call, External, Internal, InterVpbx, Service
from dialplan.ddi import rule_in_force, stray_prefix_why, undefined_prefix
from dialplan.errors import shown_plain
from dialplan.numbers import DDI_PREFIX, to_e164
from dialplan.reasons import Reason
from dialplan.recording import by_service_code
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep
from dialplan.views import ClientView, ExtensionView


@step
class RouteStep(BaseStep):
    """Sets ``call.route`` for calls placed by a terminal, or decides ``invalid_number``."""

    name = "route"
    applies_to = "calls placed by a terminal (a carrier's call is routed by its DDI)"

    def applies(self, call: Call) -> bool:
        return call.route is None  # inbound carrier calls were routed by their DDI

    async def run(self, call: Call) -> Verdict:
        assert call.client is not None
        client = call.client
        dialled = call.request.dialled
        code = client.on_demand_record_code
        if (
            client.has("recordings")
            and code is not None
            and by_service_code(client.on_demand_recording)
            and dialled.startswith(f"*{code}")
            and len(dialled) > len(code) + 1
        ):
            # *<code> before the number: record the call from answer; route the rest.
            call.record_code_dialled = True
            dialled = dialled[len(code) + 1 :]
        extension = await self.directory.extension(client, dialled)
        if extension is not None:
            return await self._extension(call, extension, Internal(extension), "extension")
        if dialled.startswith("*") and dialled[1:].isdigit():
            call.route = Service(dialled[1:])
            return Next(f"service code {dialled}", {"route": "service", "code": dialled})
        refused = None
        if client.corporation_id is not None:
            sibling = await self.directory.corporation_extension(client, dialled)
            if sibling is not None:
                gate = _friends_gate(client, sibling.client)
                if gate is None:
                    label = "inter-VPBX extension"
                    return await self._extension(call, sibling, InterVpbx(sibling), label)
                refused = f"extension {sibling.number} of client {sibling.client.name}: {gate}"
        verdict = await self._external(call, client, dialled)
        if refused is not None:
            verdict = replace(verdict, summary=f"{refused}; {verdict.summary}")
        return verdict

    async def _extension(
        self, call: Call, extension: ExtensionView, route: Internal | InterVpbx, label: str
    ) -> Verdict:
        if extension.route == "number" and extension.target_number is not None:
            # An extension that forwards to a public number is an external call.
            return await self._external(
                call, extension.client, extension.target_number, forwarded_by=extension
            )
        call.route = route
        if not call.traced:
            return PASS
        target = extension.user.name if extension.user else "nobody"
        where = (
            ""
            if extension.client.id == (call.client.id if call.client else None)
            else (f" of client {extension.client.name}")
        )
        return Next(
            f"{label} {extension.number}{where} → user {target}",
            {"route": route.kind, "extension": extension.number, "callee": target},
        )

    async def _external(
        self,
        call: Call,
        client: ClientView,
        dialled: str,
        forwarded_by: ExtensionView | None = None,
    ) -> Verdict:
        prefix = None
        prefixed = DDI_PREFIX.fullmatch(dialled)
        if prefixed is not None:
            prefix, dialled = prefixed["prefix"], prefixed["number"]
            stray = await self._stray_prefix(call, prefix)
            if stray is not None:
                return Decide(reject(call, Reason.INVALID_NUMBER), stray, {"ddi_prefix": prefix})
        e164 = to_e164(dialled, client.country)
        if e164 is None:
            return Decide(
                reject(call, Reason.INVALID_NUMBER),
                f"{shown_plain(dialled)} is not a number of {client.country}"
                " nor an international one",
            )
        call.route = External(e164, ddi_prefix=prefix, forwarded_by=forwarded_by)
        if not call.traced:
            return PASS
        details = {"route": "external", "e164": e164}
        summary = f"external number {e164}"
        if prefix:
            details["ddi_prefix"] = prefix
            summary += f" (outgoing-DDI prefix {prefix})"
        if forwarded_by is not None:
            summary += f", forwarded by extension {forwarded_by.number}"
        return Next(summary, details)

    async def _stray_prefix(self, call: Call, prefix: str) -> str | None:
        """Why ``prefix`` cannot be dialled: no pattern of the caller's rule in force defines
        it; None when one does."""
        assert call.client is not None
        user, client = call.user, call.client
        user_rule = client_rule = None
        if user is not None and user.outgoing_ddi_rule_id is not None:
            user_rule = await self.directory.ddi_rule(user.outgoing_ddi_rule_id)
        if user_rule is None and client.outgoing_ddi_rule_id is not None:
            client_rule = await self.directory.ddi_rule(client.outgoing_ddi_rule_id)
        rule, rule_of = rule_in_force(user_rule, client_rule)
        stray = undefined_prefix(rule, prefix)
        return None if stray is None else stray_prefix_why(rule, rule_of, stray)


def _friends_gate(caller: ClientView, callee: ClientView) -> str | None:
    """Why ``caller`` may not reach ``callee``'s extensions (DESIGN §3.12: both clients need
    the ``friends`` feature); None when it may."""
    lacking = [c.name for c in (caller, callee) if not c.has("friends")]
    if not lacking:
        return None
    return (
        f"inter-VPBX calls need the friends feature on both clients, "
        f"{' and '.join(lacking)} {'lacks' if len(lacking) == 1 else 'lack'} it"
    )
