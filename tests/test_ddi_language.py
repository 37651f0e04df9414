"""A DDI's language: what a carrier's caller hears (tests/cases/ddi_language.py), on plain
data and from the shared database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.session import dial_notice
from dialplan.call import CallRequest
from dialplan.decisions import Dial, Reject
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason
from dialplan.views import DdiView, TerminalView
from models.directory import SqlDirectory
from models.provisioning import DEMO_DATASET, load_file
from models.slots import acquire
from tests.cases.ddi_language import CASES, LanguageCase
from tests.world import ALICE, BOB, EVE, MADRID, TRUNK_ES, from_carrier, from_terminal, world

USERS = {"alice": ALICE, "bob": BOB, "eve": EVE}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_refusal_language(case: LanguageCase) -> None:
    client = replace(MADRID, max_calls=1)
    assert client.outgoing_ddi is not None
    inbound = DdiView("+34910000001", client, "user", USERS.get(case.target), language=None)
    presented = DdiView(client.outgoing_ddi, client, "user", None, language=None)
    if case.caller == "carrier":
        inbound = replace(inbound, language=case.ddi_language)
        request = from_carrier(TRUNK_ES.endpoint, inbound.e164)
    else:
        presented = replace(presented, language=case.ddi_language)
        request = from_terminal(case.caller, case.target)
    directory = world(
        terminals=[TerminalView("t-alice", client, ALICE), TerminalView("t-bob", client, BOB)],
        ddis=[inbound, presented],
        calls={client.id: 1 if case.full else 0},
    )
    result = await Pipeline(directory).run(request)
    decision = result.decision
    assert isinstance(decision, Reject), decision
    assert (decision.reason, decision.language, decision.cause.sip) == (
        case.reason,
        case.language,
        case.sip,
    )
    assert decision.notify  # acme-madrid has voice notifications: the caller hears it


@pytest.mark.parametrize(("ddi_language", "heard"), [("fr", "fr"), (None, "es")])
async def test_a_callee_with_no_contact_is_announced_in_the_ddis_language(
    ddi_language: str | None, heard: str
) -> None:
    # The call rings alice's terminal; when it has no contact to call, the dialplan plays
    # destination_unreachable in the language the shell packed for it.
    inbound = DdiView("+34910000001", MADRID, "user", ALICE, language=ddi_language)
    directory = world(ddis=[inbound])
    result = await Pipeline(directory).run(from_carrier(TRUNK_ES.endpoint, inbound.e164))
    assert isinstance(result.decision, Dial)
    sound, language = await dial_notice(directory, result)
    assert (sound, language) == ("callcontrol/destination_unreachable", heard)


def test_case_names_are_unique() -> None:
    assert len({case.name for case in CASES}) == len(CASES)


AT = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)


async def test_the_shared_database_gives_a_ddi_its_language(engine: AsyncEngine) -> None:
    # The demo: acme-north (es, max_calls 10) has +34910000102 (language en) for carla
    # and +34910000101 (no language) for bruno. With every slot taken, a carrier's call
    # to each is busy, in the DDI's language or else the client's.
    await load_file(engine, DEMO_DATASET)
    directory = SqlDirectory(engine)
    ana = await directory.terminal("acme-north-ana")
    assert ana is not None
    for number in range(ana.client.max_calls):
        await acquire(
            engine,
            client_id=ana.client.id,
            max_calls=0,
            call_id=f"live-{number}",
            server="as-1",
            direction="inbound",
            now=AT,
            lease=60.0,
        )
    pipeline = Pipeline(directory)
    heard = {}
    for ddi in ("+34910000102", "+34910000101"):
        request = CallRequest("c", "carrier-telco-es", ddi, AT, origin="carrier")
        decision = (await pipeline.run(request)).decision
        assert isinstance(decision, Reject)
        assert decision.reason is Reason.MAX_CALLS_REACHED
        heard[ddi] = (decision.language, decision.cause.sip)
    assert heard == {"+34910000102": ("en", 486), "+34910000101": ("es", 486)}
