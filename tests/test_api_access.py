"""The one authorization decision (callcontrol.api.access), as a table of plain values."""

from __future__ import annotations

import pytest

from callcontrol.api.access import (
    ClientFacts,
    Decision,
    Principal,
    Verb,
    audit_scope,
    decide,
    refused_field,
    shows_prices,
    visible_fields,
)

ALLOW, DENY, NOT_FOUND = Decision.ALLOW, Decision.DENY, Decision.NOT_FOUND
ALL = frozenset({"create", "read", "update", "delete"})

GOD = Principal("god", 1, "root")
BRAND = Principal("brand", 2, "iberia-admin", brand_id=10)
OTHER_BRAND = Principal("brand", 3, "albion-admin", brand_id=20)
ADMIN = Principal("client", 4, "north-admin", client_id=100)
READER = Principal(
    "client",
    5,
    "north-reader",
    client_id=100,
    restricted=True,
    privileges={"client": frozenset({"read"}), "recordings": frozenset({"read"})},
)
BLIND = Principal("client", 6, "north-blind", client_id=100, restricted=True)
OTHER_CLIENT = Principal("client", 7, "south-admin", client_id=101)
READ_ONLY_BRAND = Principal(
    "brand",
    8,
    "iberia-viewer",
    brand_id=10,
    restricted=True,
    privileges={"client": frozenset({"read"})},
)

NORTH = ClientFacts(
    id=100,
    brand_id=10,
    features=frozenset({"recordings", "billing", "invoices"}),
    show_invoices=True,
    show_rating_profiles=True,
    show_external_call_prices=True,
    allow_recording_removal=True,
)
BARE = ClientFacts(id=100, brand_id=10)  # no features, every show_* flag off

TABLE: list[tuple[Principal, ClientFacts, str, Verb, Decision]] = [
    # scope
    (GOD, NORTH, "client", "update", ALLOW),
    (BRAND, NORTH, "client", "update", ALLOW),
    (OTHER_BRAND, NORTH, "client", "read", NOT_FOUND),
    (ADMIN, NORTH, "client", "update", ALLOW),
    (OTHER_CLIENT, NORTH, "client", "read", NOT_FOUND),
    # restricted privileges
    (READER, NORTH, "client", "read", ALLOW),
    (READER, NORTH, "client", "update", DENY),
    (READER, NORTH, "recordings", "read", ALLOW),
    (READER, NORTH, "recordings", "delete", DENY),
    (READER, NORTH, "billable_calls", "read", DENY),
    (BLIND, NORTH, "client", "read", DENY),
    (READ_ONLY_BRAND, NORTH, "client", "read", ALLOW),
    (READ_ONLY_BRAND, NORTH, "client", "update", DENY),
    # features: no section without them, for everyone
    (GOD, BARE, "recordings", "read", NOT_FOUND),
    (BRAND, BARE, "rating_profiles", "read", NOT_FOUND),
    (ADMIN, BARE, "invoices", "read", NOT_FOUND),
    (GOD, BARE, "billable_calls", "read", ALLOW),
    # show_* flags hide from the client admin only
    (ADMIN, NORTH, "rating_profiles", "read", ALLOW),
    (ADMIN, NORTH, "invoices", "read", ALLOW),
    (ADMIN, ClientFacts(100, 10, frozenset({"billing"})), "rating_profiles", "read", NOT_FOUND),
    (ADMIN, ClientFacts(100, 10, frozenset({"invoices"})), "invoices", "read", NOT_FOUND),
    (BRAND, ClientFacts(100, 10, frozenset({"billing"})), "rating_profiles", "read", ALLOW),
    # rating profiles: written by god and brand admins; a client admin reads them at most
    (GOD, NORTH, "rating_profiles", "create", ALLOW),
    (BRAND, NORTH, "rating_profiles", "update", ALLOW),
    (ADMIN, NORTH, "rating_profiles", "create", DENY),
    (ADMIN, NORTH, "rating_profiles", "update", DENY),
    (ADMIN, NORTH, "rating_profiles", "delete", DENY),
    (BRAND, BARE, "rating_profiles", "create", NOT_FOUND),
    (ADMIN, ClientFacts(100, 10, frozenset({"billing"})), "rating_profiles", "delete", NOT_FOUND),
    (READ_ONLY_BRAND, NORTH, "rating_profiles", "create", DENY),
    # recording removal by a client admin only when the client allows it
    (ADMIN, NORTH, "recordings", "delete", ALLOW),
    (ADMIN, ClientFacts(100, 10, frozenset({"recordings"})), "recordings", "delete", DENY),
    (BRAND, ClientFacts(100, 10, frozenset({"recordings"})), "recordings", "delete", ALLOW),
]


@pytest.mark.parametrize(("who", "client", "section", "verb", "expected"), TABLE)
def test_the_decision_table(
    who: Principal, client: ClientFacts, section: str, verb: Verb, expected: Decision
) -> None:
    assert decide(who, client, section, verb) is expected


@pytest.mark.parametrize("verb", sorted(ALL))
def test_one_section_verb_by_verb_allows_that_verb_alone(verb: Verb) -> None:
    alone = Principal(
        "client",
        9,
        "north-one",
        client_id=100,
        restricted=True,
        privileges={"recordings": frozenset({verb})},
    )
    decisions = {v: decide(alone, NORTH, "recordings", v) for v in sorted(ALL)}  # type: ignore[arg-type]
    assert decisions == {v: ALLOW if v == verb else DENY for v in sorted(ALL)}


def test_distribute_method_and_application_server_are_only_for_god() -> None:
    names = frozenset({"language", "distribute_method", "application_server"})
    assert visible_fields(GOD, names, NORTH) == names
    for who in (BRAND, ADMIN):
        assert visible_fields(who, names, NORTH) == {"language"}
        assert refused_field(who, frozenset({"distribute_method"})) == "distribute_method"
        assert refused_field(who, frozenset({"application_server"})) == "application_server"
    assert refused_field(GOD, names) is None


def test_a_client_admin_changes_only_its_own_settings_not_its_brands() -> None:
    assert refused_field(ADMIN, frozenset({"language", "timezone"})) is None
    for brand_setting in ("max_calls", "features", "billing_method", "invoice", "balance"):
        assert refused_field(ADMIN, frozenset({brand_setting})) == brand_setting
        assert refused_field(BRAND, frozenset({brand_setting})) is None


def test_prices_are_hidden_from_the_client_admin_only_when_the_client_says_so() -> None:
    hidden = ClientFacts(100, 10)
    assert not shows_prices(ADMIN, hidden)
    assert shows_prices(ADMIN, NORTH)
    assert shows_prices(BRAND, hidden)
    assert shows_prices(GOD, hidden)
    # The balance setting goes with the prices, as in the counters.
    names = frozenset({"language", "balance"})
    assert visible_fields(ADMIN, names, hidden) == {"language"}
    assert visible_fields(ADMIN, names, NORTH) == names
    assert visible_fields(BRAND, names, hidden) == names
    assert visible_fields(ADMIN, names, None) == names  # no client's money in question


def test_the_audit_trail_is_read_within_scope() -> None:
    assert audit_scope(GOD) == (None, None)
    assert audit_scope(BRAND) == (10, None)
    assert audit_scope(ADMIN) == (None, 100)
    assert audit_scope(READER) is None  # restricted without "audit"
