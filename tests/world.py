"""A small world of plain views shared by the core's tests.

acme-madrid (ES, voice notifications) and acme-london (GB) form corporation acme, and both
have the ``friends`` feature, so each dials the other's extensions;
globex (ES, no features) is alone in corporation globex. Alice of acme-madrid has a
call ACL that denies Spanish premium numbers (80x / 90x).
"""

from __future__ import annotations

from datetime import UTC, datetime

from dialplan.call import CallRequest
from dialplan.views import (
    AclRuleView,
    AclView,
    CarrierView,
    ClientView,
    DdiView,
    ExtensionView,
    MatchPattern,
    TerminalView,
    UserView,
)
from tests.fakes import MemoryDirectory, Route

NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

MADRID = ClientView(
    id=1,
    name="acme-madrid",
    brand_id=1,
    corporation_id=1,
    corporation="acme",
    country="ES",
    language="es",
    timezone="Europe/Madrid",
    currency="EUR",
    features=frozenset({"voice_notifications", "recordings", "friends"}),
    outgoing_ddi="+34910000000",
)
LONDON = ClientView(
    id=2,
    name="acme-london",
    brand_id=1,
    corporation_id=1,
    corporation="acme",
    country="GB",
    language="en",
    timezone="Europe/London",
    currency="GBP",
    features=frozenset({"friends"}),
    outgoing_ddi="+442079460000",
)
GLOBEX = ClientView(
    id=3,
    name="globex",
    brand_id=1,
    corporation_id=2,
    corporation="globex",
    country="ES",
    language="es",
    timezone="Europe/Madrid",
    currency="EUR",
    features=frozenset(),
)

ALICE = UserView(1, 1, "alice", language="en", call_acl_id=1, extension="101", terminal="t-alice")
BOB = UserView(2, 1, "bob", extension="102", terminal="t-bob", outgoing_ddi="+34910000002")
CAROL = UserView(3, 2, "carol", extension="201", terminal="t-carol")
DAVE = UserView(4, 3, "dave", extension="301", terminal="t-dave")
EVE = UserView(5, 1, "eve", extension="103", terminal=None)

TRUNK_ES = CarrierView(1, "trunk-es", "carrier-es", 1)
TRUNK_UK = CarrierView(2, "trunk-uk", "carrier-uk", 1)

PREMIUM = AclView(
    id=1,
    name="no-premium",
    default_policy="allow",
    rules=(
        AclRuleView(
            10,
            "deny",
            "premium-es",
            (MatchPattern("regexp", r"^\+34(80|90)"), MatchPattern("number", "+34900000000")),
        ),
    ),
)
ONLY_SPAIN = AclView(
    id=2,
    name="only-spain",
    default_policy="deny",
    rules=(AclRuleView(1, "allow", "spain", (MatchPattern("regexp", "^34"),)),),
)


def ext(client: ClientView, user: UserView) -> ExtensionView:
    assert user.extension is not None
    return ExtensionView(user.extension, client, "user", user=user)


def world(**changes: object) -> MemoryDirectory:
    directory = MemoryDirectory(
        terminals=[
            TerminalView("t-alice", MADRID, ALICE),
            TerminalView("t-bob", MADRID, BOB),
            TerminalView("t-carol", LONDON, CAROL),
            TerminalView("t-dave", GLOBEX, DAVE),
            TerminalView("t-fax", MADRID, None),
        ],
        carriers=[TRUNK_ES, TRUNK_UK],
        ddis=[
            DdiView("+34910000001", MADRID, "user", user=ALICE),
            DdiView("+442079460001", LONDON, "user", user=CAROL),
        ],
        extensions=[
            ext(MADRID, ALICE),
            ext(MADRID, BOB),
            ext(MADRID, EVE),
            ext(LONDON, CAROL),
            ext(GLOBEX, DAVE),
            ExtensionView("199", MADRID, "number", target_number="600123123"),
        ],
        acls=[PREMIUM, ONLY_SPAIN],
        routes=[Route(TRUNK_ES), Route(TRUNK_UK, prefix="44")],
    )
    for name, value in changes.items():
        setattr(directory, name, value)
    return directory


def from_terminal(endpoint: str, dialled: str) -> CallRequest:
    return CallRequest(call_id="c1", endpoint=endpoint, dialled=dialled, at=NOON)


def from_carrier(endpoint: str, ddi: str, caller: str = "+34600111222") -> CallRequest:
    return CallRequest(
        call_id="c2", endpoint=endpoint, dialled=ddi, at=NOON, caller_id=caller, origin="carrier"
    )
