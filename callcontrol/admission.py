"""Admission: a call the pipeline would dial, held to what the shared counters allow now.

Both fronts call :func:`admit` between the decision and the dial. An external call takes its
concurrent-call slot on every server at once (DESIGN §3.4); a prepaid one also reserves the
price of its cap from the balance (§3.5), at most ``prepaid_call_limit`` seconds of it, so
concurrent calls never spend more than the balance. Its CDR settles the reservation.

An emergency call (§3.5) takes a slot too, whatever the limit: it is a live external call
that the others' limit counts (and the console shows), but no limit, nor an outage of the
shared database, ever refuses it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from decimal import Decimal

from callcontrol.config import Config
from callcontrol.guards import Guards
from dialplan.call import Call, CallRequest
from dialplan.decisions import Dial, Reject
from dialplan.errors import DatabaseUnavailable
from dialplan.pipeline import Pipeline, Result, reject
from dialplan.rating import price
from dialplan.reasons import Reason
from models.directory import SqlCounters, Ticket

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Admission:
    decision: Dial | Reject
    """The dial, its cap perhaps shortened to what was reserved; or the refusal."""
    slot: bool
    """Whether a slot may be held: release it when the call ends, whatever happened."""


def reservation(call: Call, decision: Dial, longest: float) -> tuple[Dial, Decimal]:
    """What a prepaid call reserves, and the dial capped to it: the price of its cap (what
    the balance left pays), at most ``longest`` seconds (0: no such bound)."""
    client, billed = call.client, decision.billing
    if client is None or client.billing_method != "prepaid" or billed is None:
        return decision, Decimal(0)
    cap = decision.max_duration
    if cap is None:  # free per minute and the fee paid: nothing to hold back
        return decision, Decimal(0)
    if longest > 0:
        cap = min(cap, int(longest))
    return replace(decision, max_duration=cap), price(billed.rate, cap)


async def decide_taking_slot(
    pipeline: Pipeline, guards: Guards | None, request: CallRequest
) -> tuple[Result, Ticket | None]:
    """The pipeline's decision; with guards on the shared database, the call's slot is
    taken with its client's counters (one round trip), so :func:`admit` needs none more
    for a postpaid call. The ticket says whether a slot may be held (release it at the
    end, whatever the decision)."""
    counters = getattr(pipeline.directory, "counters", None)
    if guards is None or not isinstance(counters, SqlCounters):
        return await pipeline.run(request), None
    direction = "inbound" if request.origin == "carrier" else "outbound"
    stock = guards.keeper.stock if guards.keeper is not None else None
    ticket = Ticket(request.call_id, guards.server, guards.lease, direction, stock=stock)
    with counters.admitting(ticket):
        result = await pipeline.run(request)
    return result, ticket


async def admit(
    guards: Guards | None,
    config: Config,
    call: Call,
    decision: Dial,
    call_id: str,
    ticket: Ticket | None = None,
) -> Admission:
    """Take the slot (and the reservation) of an external call; the refusal when another
    call took the last slot, or the balance left, since the pipeline read the counters.
    An outage, or no answer within ``decision_timeout``, is ``service_unavailable``. With
    a ``ticket`` whose slot was taken while deciding, only a prepaid call's reservation is
    left to take."""
    if guards is None or call.client is None or not call.is_external:
        return Admission(decision, slot=ticket is not None and ticket.holds)
    client = call.client
    if call.is_emergency:
        return await _emergency(guards, config, call, decision, call_id)
    dial, reserve = reservation(call, decision, config.prepaid_call_limit)
    if ticket is not None and ticket.verdict is not None and ticket.verdict.taken:
        return await _hold(guards, config, call, dial, call_id, reserve)
    try:
        async with asyncio.timeout(config.decision_timeout or None):
            verdict = await guards.take_slot(client, call_id, call.direction, reserve)
    except (DatabaseUnavailable, TimeoutError) as exc:
        log.warning("call %s: no slot: %s", call_id, exc or "no answer in time")
        # Released at the end all the same: an acquire cut short may have committed.
        return Admission(reject(call, Reason.SERVICE_UNAVAILABLE), slot=True)
    if not verdict.funded:
        log.info("call %s: client %s cannot reserve %s", call_id, client.name, reserve)
        return Admission(reject(call, Reason.INSUFFICIENT_BALANCE), slot=False)
    if not verdict.taken:
        log.info(
            "call %s: client %s at %d of %d calls",
            call_id,
            client.name,
            verdict.held,
            verdict.limit,
        )
        return Admission(reject(call, Reason.MAX_CALLS_REACHED), slot=False)
    return Admission(dial, slot=True)


async def _emergency(
    guards: Guards, config: Config, call: Call, dial: Dial, call_id: str
) -> Admission:
    """An emergency call's slot, taken beyond the limit; dialled even when it cannot be."""
    assert call.client is not None
    try:
        async with asyncio.timeout(config.decision_timeout or None):
            await guards.take_slot(call.client, call_id, call.direction, limited=False)
    except (DatabaseUnavailable, TimeoutError) as exc:
        log.warning("call %s: emergency call dialled without a slot: %s", call_id, exc)
    # Released at the end whatever happened: an acquire cut short may have committed.
    return Admission(dial, slot=True)


async def _hold(
    guards: Guards, config: Config, call: Call, dial: Dial, call_id: str, amount: Decimal
) -> Admission:
    """The slot is the call's already: hold a prepaid call's reservation with it."""
    assert call.client is not None
    if not amount:
        return Admission(dial, slot=True)
    try:
        async with asyncio.timeout(config.decision_timeout or None):
            held = await guards.hold(call.client, call_id, amount)
    except (DatabaseUnavailable, TimeoutError) as exc:
        log.warning("call %s: no reservation: %s", call_id, exc or "no answer in time")
        return Admission(reject(call, Reason.SERVICE_UNAVAILABLE), slot=True)
    if not held:
        log.info("call %s: client %s cannot reserve %s", call_id, call.client.name, amount)
        return Admission(reject(call, Reason.INSUFFICIENT_BALANCE), slot=True)
    return Admission(dial, slot=True)
