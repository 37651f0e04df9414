"""Identify: who is calling. Terminal → user → client; carrier → called DDI → client."""

from __future__ import annotations

from dialplan.call import Call, Inbound
from dialplan.errors import shown_plain
from dialplan.numbers import to_e164
from dialplan.reasons import Reason
from dialplan.registry import PASS, Decide, Next, Verdict, reject, step
from dialplan.steps.base import BaseStep
from dialplan.text import describe_unprintable, unprintable


@step
class IdentifyStep(BaseStep):
    """Sets ``call.client`` (and user, terminal or carrier), or decides ``no_client``."""

    name = "identify"

    async def run(self, call: Call) -> Verdict:
        request = call.request
        if request.unidentified is not None:
            return Decide(reject(call, Reason.NO_CLIENT), request.unidentified)
        # The edge of the core: a NUL, a control character or invalid Unicode is in no
        # endpoint and no number; the call goes no further (and nothing logs or stores it).
        for what, value, reason in (
            ("endpoint", request.endpoint, Reason.NO_CLIENT),
            ("dialled number", request.dialled, Reason.INVALID_NUMBER),
        ):
            bad = unprintable(value)
            if bad is not None:
                return Decide(reject(call, reason), f"{what} {describe_unprintable(value, bad)}")
        if request.origin != "carrier":
            terminal = await self.directory.terminal(request.endpoint)
            if terminal is not None:
                call.terminal = terminal
                call.client = terminal.client
                call.user = terminal.user
                if not call.traced:
                    return PASS
                who = f"user {terminal.user.name}" if terminal.user else "no user"
                return Next(
                    f"terminal {terminal.name} of client {terminal.client.name} ({who})",
                    {"client": terminal.client.name, "terminal": terminal.name},
                )
        carrier = None
        if request.origin != "terminal":
            carrier = await self.directory.carrier(request.endpoint)
        if carrier is None:
            return Decide(
                reject(call, Reason.NO_CLIENT),
                f"endpoint {shown_plain(request.endpoint)} is neither a terminal nor a carrier",
            )
        call.carrier = carrier
        # A carrier presents the DDI in E.164, sometimes without '+'.
        dialled = request.dialled if request.dialled.startswith("+") else f"+{request.dialled}"
        e164 = to_e164(dialled, "ZZ")
        ddi = await self.directory.ddi(e164) if e164 is not None else None
        if ddi is None:
            return Decide(
                reject(call, Reason.NO_CLIENT),
                f"carrier {carrier.name}: DDI {shown_plain(request.dialled)} belongs to no client",
                {"carrier": carrier.name},
            )
        call.client = ddi.client
        target = ddi.user if ddi.route == "user" else ddi.extension.user if ddi.extension else None
        call.route = Inbound(ddi=ddi, user=target)
        if not call.traced:
            return PASS
        return Next(
            f"carrier {carrier.name} → DDI {ddi.e164} of client {ddi.client.name}",
            {"client": ddi.client.name, "carrier": carrier.name, "ddi": ddi.e164},
        )
