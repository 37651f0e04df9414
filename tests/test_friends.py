"""The ``friends`` gate through the pipeline: the case table of tests/cases/friends.py."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dialplan.decisions import Dial, Reject
from dialplan.pipeline import Pipeline
from dialplan.views import ClientView, ExtensionView, TerminalView, UserView
from tests.cases.friends import CASES, FriendsCase
from tests.fakes import MemoryDirectory
from tests.world import ALICE, BOB, CAROL, DAVE, GLOBEX, LONDON, MADRID, from_terminal, world


def _features(client: ClientView, friends: bool) -> ClientView:
    features = client.features | {"friends"} if friends else client.features - {"friends"}
    return replace(client, features=features)


def _world(caller: bool, callee: bool) -> MemoryDirectory:
    madrid = _features(MADRID, caller)
    london = _features(LONDON, callee)
    globex = _features(GLOBEX, True)
    people: list[tuple[ClientView, UserView]] = [
        (madrid, ALICE),
        (madrid, BOB),
        (london, CAROL),
        (globex, DAVE),
    ]
    return world(
        terminals=[TerminalView(user.terminal or "", client, user) for client, user in people],
        extensions=[
            ExtensionView(user.extension or "", client, "user", user=user)
            for client, user in people
        ],
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_friends_gate(case: FriendsCase) -> None:
    result = await Pipeline(_world(case.caller, case.callee)).run(
        from_terminal(case.endpoint, case.dialled)
    )
    route = result.call.route.kind if result.call.route is not None else None
    reason = result.decision.reason if isinstance(result.decision, Reject) else None
    assert (route, reason) == (case.route, case.reason)
    if case.route is not None:
        assert isinstance(result.decision, Dial)
        assert result.decision.number == case.dialled


def test_case_names_are_unique() -> None:
    assert len({case.name for case in CASES}) == len(CASES)


async def test_the_trace_says_which_client_lacks_friends() -> None:
    result = await Pipeline(_world(False, True)).run(from_terminal("t-alice", "201"))
    summary = next(v.summary for v in result.trace if v.step == "route")
    assert summary.startswith(
        "extension 201 of client acme-london: inter-VPBX calls need the friends feature on"
        " both clients, acme-madrid lacks it; "
    )


async def test_the_trace_names_both_clients_when_neither_has_friends() -> None:
    result = await Pipeline(_world(False, False)).run(from_terminal("t-alice", "201"))
    summary = next(v.summary for v in result.trace if v.step == "route")
    assert "acme-madrid and acme-london lack it" in summary
