"""What a call costs, answered or not (tests/cases/rating.py CHARGE_CASES): the rule itself,
the CDR the shell writes, and what ``explain`` says for the same call."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from callcontrol.explain import price_line, to_json
from callcontrol.session import Outcome, call_cdr
from dialplan.call import CallRequest
from dialplan.decisions import Dial
from dialplan.pipeline import Pipeline, Result
from dialplan.rating import billed_seconds, charge
from dialplan.views import TerminalView
from tests.cases.rating import BOTH, CHARGE_CASES, WEDNESDAY_NOON, ChargeCase
from tests.world import ALICE, MADRID, world

IDS = [case.name for case in CHARGE_CASES]


async def billed_call(number: str) -> Result:
    """alice's call to ``number``, her client billing postpaid with the table's profiles."""
    client = replace(MADRID, features=MADRID.features | {"billing"}, billing_method="postpaid")
    directory = world(
        terminals=[TerminalView("t-alice", client, ALICE)], profiles={client.id: list(BOTH)}
    )
    request = CallRequest(call_id="c1", endpoint="t-alice", dialled=number, at=WEDNESDAY_NOON)
    result = await Pipeline(directory).run(request)
    assert isinstance(result.decision, Dial), result.decision
    assert result.decision.billing is not None
    return result


@pytest.mark.parametrize("case", CHARGE_CASES, ids=IDS)
async def test_the_rule(case: ChargeCase) -> None:
    result = await billed_call(case.number)
    assert isinstance(result.decision, Dial)
    assert result.decision.billing is not None
    rate = result.decision.billing.rate
    assert charge(rate, case.duration, answered=case.answered) == Decimal(case.price)
    if case.answered:
        assert billed_seconds(rate, case.duration) == case.billed_seconds


@pytest.mark.parametrize("case", CHARGE_CASES, ids=IDS)
async def test_the_cdr(case: ChargeCase) -> None:
    result = await billed_call(case.number)
    outcome = Outcome(
        call_id="c1",
        decision="dial",
        result="answered" if case.answered else "no answer",
        answered=case.answered,
        seconds=case.duration,
    )
    answer = WEDNESDAY_NOON + timedelta(seconds=5) if case.answered else None
    end = WEDNESDAY_NOON + timedelta(seconds=5 + case.duration)
    cdr = call_cdr(result, outcome, start=WEDNESDAY_NOON, answer=answer, end=end, server="as-1")
    assert cdr is not None
    assert (cdr.duration, cdr.billed_seconds) == (case.duration, case.billed_seconds)
    assert cdr.price == Decimal(case.price)
    assert cdr.price is not None
    assert str(cdr.price) == case.price


@pytest.mark.parametrize("case", CHARGE_CASES, ids=IDS)
async def test_what_explain_says(case: ChargeCase) -> None:
    result = await billed_call(case.number)
    line = price_line(result.decision, case.duration, answered=case.answered)
    billing = to_json(result, case.duration, answered=case.answered)["decision"]["billing"]
    if case.answered:
        assert line is not None
        assert line.startswith(f"answered for {case.duration} s: price {case.price} EUR")
        assert f"({case.billed_seconds} s billed" in line
    else:
        assert line == "not answered: 0 EUR (an unanswered call costs nothing)"
    assert (billing["answered"], billing["duration"]) == (case.answered, case.duration)
    assert (billing["billed_seconds"], billing["price"]) == (case.billed_seconds, case.price)
