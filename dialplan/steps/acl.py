"""Call ACL: may this user call this external destination? First matching rule decides."""

from __future__ import annotations

from dialplan.call import Call, External
from dialplan.matching import matches
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep


@step
class CallAclStep(BaseStep):
    """Judges external calls placed by a user; decides ``not_allowed`` on a deny."""

    name = "call_acl"
    applies_to = "external calls placed by a user"

    def applies(self, call: Call) -> bool:
        return isinstance(call.route, External) and call.user is not None

    async def run(self, call: Call) -> Verdict:
        assert call.user is not None
        assert isinstance(call.route, External)
        if call.user.call_acl_id is None:
            if not call.traced:
                return PASS
            return Next(f"user {call.user.name} has no call ACL: every destination allowed")
        acl = await self.directory.call_acl(call.user.call_acl_id)
        if acl is None:  # deleted between identify and now: fail closed
            return Decide(reject(call, Reason.NOT_ALLOWED), "call ACL vanished: denied")
        e164 = call.route.e164
        for rule in acl.rules:
            pattern = matches(rule.patterns, e164)
            if pattern is None:
                continue
            if rule.policy != "deny" and not call.traced:
                return PASS
            details = {
                "acl": acl.name,
                "rule": str(rule.priority),
                "match_list": rule.match_list,
                "pattern": f"{pattern.kind} {pattern.value}",
                "policy": rule.policy,
            }
            summary = (
                f"ACL {acl.name}: rule {rule.priority} (match list {rule.match_list}, "
                f"{pattern.kind} {pattern.value}) → {rule.policy}"
            )
            if rule.policy == "deny":
                return Decide(reject(call, Reason.NOT_ALLOWED), summary, details)
            return Next(summary, details)
        if acl.default_policy != "deny" and not call.traced:
            return PASS
        summary = f"ACL {acl.name}: no rule matches {e164} → default {acl.default_policy}"
        details = {"acl": acl.name, "policy": acl.default_policy}
        if acl.default_policy == "deny":
            return Decide(reject(call, Reason.NOT_ALLOWED), summary, details)
        return Next(summary, details)
