"""Invalid provisioning documents: one line naming the path, and the database untouched.

Each case is a small mutation of a valid base document. Checking happens before
anything is written, so most cases run against the empty database of the
fixture; the cases that depend on what is already stored load the base first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import models
from dialplan.errors import ProvisioningError
from models.provisioning import dump_yaml, export_document, load_text
from models.provisioning.checks import check_document
from models.provisioning.syntax import parse_document, read_yaml
from models.provisioning.world import World

BASE = read_yaml(
    """
currencies:
  - {code: EUR, name: Euro, symbol: "€"}
  - {code: GBP, name: Pound sterling, symbol: "£"}
application_servers:
  - {name: as-1, address: 192.0.2.11}
brands:
  - name: iberia
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    features: [billing, queues, recordings, voice_notifications]
    corporations: [acme]
    carriers:
      - {name: telco, endpoint: carrier-telco, host: sip.telco.example.net}
    outbound_routes:
      - {carrier: telco, prefix: "34"}
      - {carrier: telco, prefix: "", priority: 1, client: acme-north}
    rating_plan_groups:
      - name: standard
        currency: EUR
        rates:
          - {prefix: "34", price_per_minute: 0.01, increments: 60/60}
  - name: albion
    default_language: en
    default_timezone: Europe/London
    default_currency: GBP
    default_country: GB
    features: [billing, voice_notifications]
    rating_plan_groups:
      - {name: uk, currency: GBP, rates: [{prefix: "44", price_per_minute: 0.02}]}
clients:
  - name: acme-north
    brand: iberia
    sip_domain: north.acme.example.com
    corporation: acme
    features: [billing, queues, recordings]
    authorized_sources: [198.51.100.0/24]
    geoip_countries: [ES, PT]
    max_calls: 5
    max_daily_usage: 20
    outgoing_ddi: "+34910000100"
    outgoing_ddi_rule:
      name: north
      patterns:
        - {priority: 1, prefix: "111*", action: force, forced_ddi: "+34910000101"}
        - {priority: 2, destination: premium, action: keep}
    on_demand_recording: {mode: dtmf, code: "5"}
    users:
      - {name: ana}
      - {name: bruno, call_acl: no-premium}
    terminals:
      - {name: north-ana, password: ana-secret-1, user: ana}
    extensions:
      - {number: "100", user: ana}
      - {number: "101", user: bruno}
    ddis:
      - {e164: "+34910000100", user: ana}
      - {e164: "+34910000101", extension: "101"}
    match_lists:
      - name: premium
        patterns: [{regexp: "^34(80|90)"}]
    call_acls:
      - name: no-premium
        default_policy: allow
        rules: [{priority: 1, match_list: premium, policy: deny}]
    rating_profiles:
      - {rating_plan_group: standard, activation_time: "2025-01-01T00:00:00+01:00"}
    admins:
      - {username: north-admin, password: north-admin-pass, restricted_sections: [invoices]}
    templates:
      - name: north-daily
        type: max_daily_usage
        contents:
          - {language: es, from_name: ACME, from_address: it@acme.example.com,
             subject: Límite diario, body: Límite alcanzado}
    template_choices: {max_daily_usage: north-daily}
  - name: acme-south
    brand: iberia
    sip_domain: south.acme.example.com
    corporation: acme
    features: [billing]
    users: [{name: dario}]
    terminals: [{name: south-dario, password: dario-secret-1, user: dario}]
    extensions: [{number: "200", user: dario}]
    ddis: [{e164: "+34954000200", user: dario}]
    outgoing_ddi_rule: {name: south, default_action: force, forced_ddi: "+34954000200"}
  - name: thames
    brand: albion
    sip_domain: thames.example.co.uk
    features: [voice_notifications]
    users: [{name: george}]
    terminals: [{name: thames-george, password: george-secret, user: george}]
    extensions: [{number: "200", user: george}]
    ddis: [{e164: "+442079460100", user: george}]
"""
)

Mutation = Callable[[dict[str, Any]], object]


def north(document: dict[str, Any]) -> dict[str, Any]:
    client: dict[str, Any] = document["clients"][0]
    return client


def south(document: dict[str, Any]) -> dict[str, Any]:
    client: dict[str, Any] = document["clients"][1]
    return client


def setting(key: str, value: object) -> Mutation:
    return lambda d: north(d).__setitem__(key, value)


def text_of(mutate: Mutation | str) -> str:
    if isinstance(mutate, str):
        return mutate
    document = copy.deepcopy(BASE)
    mutate(document)
    return dump_yaml(document)


P0 = "clients[0].outgoing_ddi_rule.patterns[0]"


def _price(value: str) -> str:
    return (
        "brands:\n  - name: iberia\n    rating_plan_groups:\n      - name: standard\n"
        "        currency: EUR\n        rates:\n"
        f"          - {{prefix: '34', price_per_minute: {value}}}\n"
    )


CASES: list[tuple[str, Mutation | str, str, str]] = [
    # id, mutation, expected path, expected message fragment
    (
        "route-to-unknown-client",
        lambda d: d["brands"][0]["outbound_routes"][1].__setitem__("client", "acme-west"),
        "brands[0].outbound_routes[1].client",
        "unknown client 'acme-west' of brand 'iberia'",
    ),
    ("unknown-brand", setting("brand", "iberla"), "clients[0].brand", "unknown brand 'iberla'"),
    (
        "duplicate-extension",
        lambda d: north(d)["extensions"][1].__setitem__("number", "100"),
        "clients[0].extensions[1].number",
        "duplicate extension '100', already at clients[0].extensions[0].number",
    ),
    (
        "ddi-of-two-clients",
        lambda d: south(d)["ddis"].append({"e164": "+34910000101"}),
        "clients[1].ddis[1].e164",
        "+34910000101 is already a DDI of client 'acme-north'",
    ),
    (
        "terminal-name-taken",
        lambda d: south(d)["terminals"][0].__setitem__("name", "north-ana"),
        "clients[1].terminals[0].name",
        "north-ana is already a terminal of client 'acme-north'",
    ),
    (
        "cidr-with-host-bits",
        setting("authorized_sources", ["198.51.100.7/24"]),
        "clients[0].authorized_sources[0]",
        "it has host bits set",
    ),
    (
        "bad-ipv6-network",
        setting("authorized_sources", ["2001:db8::/129"]),
        "clients[0].authorized_sources[0]",
        "not an IPv4/IPv6 network",
    ),
    (
        "bad-country",
        setting("geoip_countries", ["ES", "XX"]),
        "clients[0].geoip_countries[1]",
        "'XX' is not an ISO 3166 alpha-2 country code",
    ),
    ("ill-formed-currency", setting("currency", "euro"), "clients[0].currency", "ISO 4217"),
    ("unknown-currency", setting("currency", "JPY"), "clients[0].currency", "unknown currency"),
    (
        "prefix-of-four-digits",
        lambda d: north(d)["outgoing_ddi_rule"]["patterns"][0].__setitem__("prefix", "1111*"),
        f"{P0}.prefix",
        "must be 1-3 digits followed by '*'",
    ),
    (
        "prefix-without-star",
        lambda d: north(d)["outgoing_ddi_rule"]["patterns"][0].__setitem__("prefix", "12"),
        f"{P0}.prefix",
        "must be 1-3 digits followed by '*'",
    ),
    (
        "rule-forces-another-clients-ddi",
        lambda d: north(d)["outgoing_ddi_rule"]["patterns"][0].__setitem__(
            "forced_ddi", "+34954000200"
        ),
        f"{P0}.forced_ddi",
        "+34954000200 is a DDI of client 'acme-south', not of this client",
    ),
    (
        "outgoing-ddi-of-another-client",
        setting("outgoing_ddi", "+442079460100"),
        "clients[0].outgoing_ddi",
        "is a DDI of client 'thames'",
    ),
    ("negative-max-calls", setting("max_calls", -1), "clients[0].max_calls", "greater than"),
    (
        "negative-daily-usage",
        setting("max_daily_usage", -5),
        "clients[0].max_daily_usage",
        "greater than",
    ),
    (
        "negative-low-balance-threshold",
        setting("low_balance_threshold", -1),
        "clients[0].low_balance_threshold",
        "greater than",
    ),
    (
        "low-balance-threshold-without-a-balance",
        setting("low_balance_threshold", 5),
        "clients[0].low_balance_threshold",
        "only a prepaid or pseudoprepaid client has a balance to watch, not a 'none' one",
    ),
    (
        "bad-low-balance-email",
        setting("low_balance_email", "finance at acme"),
        "clients[0].low_balance_email",
        "",
    ),
    (
        "duplicate-emergency-number",
        lambda d: d.__setitem__(
            "emergency_numbers",
            [{"country": "ES", "number": "112"}, {"country": "ES", "number": "112"}],
        ),
        "emergency_numbers[1].number",
        "duplicate emergency number (country, number) ('ES', '112')",
    ),
    (
        "unknown-feature",
        setting("features", ["billing", "telepathy"]),
        "clients[0].features[1]",
        "unknown feature 'telepathy'",
    ),
    (
        "feature-not-on-brand",
        lambda d: d["clients"][2]["features"].append("recordings"),
        "clients[2].features[1]",
        "feature 'recordings' is not enabled on brand 'albion'",
    ),
    (
        "round-robin-with-queues",
        setting("distribute_method", "rr"),
        "clients[0].distribute_method",
        "cannot be used with feature 'queues'",
    ),
    (
        "static-without-server",
        setting("distribute_method", "static"),
        "clients[0].application_server",
        "required when distribute_method is 'static'",
    ),
    ("bad-timezone", setting("timezone", "Europe/Madird"), "clients[0].timezone", "time zone"),
    (
        "bad-regexp",
        lambda d: north(d)["match_lists"][0].__setitem__("patterns", [{"regexp": "^34(80"}]),
        "clients[0].match_lists[0].patterns[0].regexp",
        "invalid regular expression",
    ),
    (
        "acl-names-unknown-list",
        lambda d: north(d)["call_acls"][0]["rules"][0].__setitem__("match_list", "premuim"),
        "clients[0].call_acls[0].rules[0].match_list",
        "unknown match list 'premuim'",
    ),
    (
        "extension-to-unknown-user",
        lambda d: north(d)["extensions"][0].__setitem__("user", "zoe"),
        "clients[0].extensions[0].user",
        "unknown user 'zoe'",
    ),
    (
        "extension-not-digits",
        lambda d: north(d)["extensions"][0].__setitem__("number", "10a"),
        "clients[0].extensions[0].number",
        "must be 2-8 digits",
    ),
    (
        "ddi-not-e164",
        lambda d: north(d)["ddis"][0].__setitem__("e164", "910000100"),
        "clients[0].ddis[0].e164",
        "must be an E.164 number",
    ),
    (
        "typo-in-key",
        lambda d: north(d).__setitem__("extensoins", []),
        "clients[0].extensoins",
        "unknown key; did you mean 'extensions'?",
    ),
    (
        "recording-without-code",
        setting("on_demand_recording", {"mode": "dtmf"}),
        "clients[0].on_demand_recording",
        "mode 'dtmf' needs a digit 'code'",
    ),
    (
        "profile-with-group-of-another-brand",
        lambda d: north(d)["rating_profiles"][0].__setitem__("rating_plan_group", "uk"),
        "clients[0].rating_profiles[0].rating_plan_group",
        "unknown rating plan group 'uk' of brand 'iberia'",
    ),
    (
        "rate-with-zero-increment",
        lambda d: d["brands"][0]["rating_plan_groups"][0]["rates"][0].__setitem__(
            "increments", "0/6"
        ),
        "brands[0].rating_plan_groups[0].rates[0].increments",
        "both at least 1",
    ),
    (
        "unknown-template-type",
        lambda d: north(d)["templates"][0].__setitem__("type", "birthday"),
        "clients[0].templates[0].type",
        "unknown template type 'birthday'",
    ),
    (
        "unknown-admin-section",
        lambda d: north(d)["admins"][0].__setitem__("restricted_sections", ["payroll"]),
        "clients[0].admins[0].restricted_sections[0]",
        "unknown restricted section 'payroll'",
    ),
    (
        "extension-clash-in-corporation",
        lambda d: south(d)["extensions"][0].__setitem__("number", "100"),
        "clients[1].extensions[0].number",
        "100 is already an extension of client 'acme-north' in corporation 'acme'",
    ),
    (
        "user-with-two-terminals",
        lambda d: north(d)["terminals"].append(
            {"name": "north-ana-2", "password": "ana-secret-2", "user": "ana"}
        ),
        "clients[0].terminals[1].user",
        "user 'ana' already has terminal 'north-ana'",
    ),
    (
        "unknown-corporation",
        lambda d: south(d).__setitem__("corporation", "acme-group"),
        "clients[1].corporation",
        "unknown corporation 'acme-group' of brand 'iberia'",
    ),
    (
        "yaml-syntax-error",
        "clients:\n  - name: acme\n    brand: [iberia\n",
        "",
        "YAML syntax error",
    ),
    (
        "duplicate-yaml-key",
        "currencies:\n  - code: EUR\n    code: GBP\n    name: Euro\n",
        "",
        "duplicate key 'code'",
    ),
    # hostile and careless input: every refusal one line, a long value cut
    ("list-as-key", "? [a, b]\n: 1\n", "", "line 1, column 3: YAML syntax error: a key must be"),
    ("map-as-key", "? {a: 1}\n: 1\n", "", "a key must be text, not a map"),
    ("number-as-key", "1: x\n", "", "a key must be text, not the number 1"),
    ("null-as-key", "~: x\n", "", "a key must be text, not null"),
    ("not-a-number", "currencies: !!float .nan\n", "", "'.nan' is not a decimal number"),
    ("infinite-price", _price("!!float .inf"), "", "'.inf' is not a decimal number"),
    ("underscored-price", _price("!!float 1_000.5"), "", "'1_000.5' is not a decimal"),
    ("sexagesimal-int", _price("!!int 20:00"), "", "'20:00' is not a whole number"),
    ("yes-as-bool", "clients: !!bool yes\n", "", "'yes' is not true or false"),
    (
        "raw-control-character",
        "currencies:\n  - {code: EUR, name: Eu\x01ro}\n",
        "",
        "line 2, column 25: YAML syntax error: character '\\x01' is not allowed",
    ),
    (
        "nul-in-a-name",
        setting("name", "acme\x00north"),
        "clients[0].name",
        "holds the control character U+0000 at position 5",
    ),
    (
        "newline-in-a-user-name",
        lambda d: north(d)["users"][0].__setitem__("name", "ana\nbruno"),
        "clients[0].users[0].name",
        "control character U+000A",
    ),
    (
        "bidi-override-in-a-description",
        lambda d: d.__setitem__(
            "media_relay_sets", [{"name": "eu", "description": "safe\u202eevil"}]
        ),
        "media_relay_sets[0].description",
        "control character U+202E",
    ),
    (
        "lone-surrogate",
        setting("postal_address", "Calle \ud800 1"),
        "",
        "line 120, column 30: YAML syntax error: found invalid Unicode character escape code",
    ),
    (
        "quote-in-a-server-name-kamailio-would-render",
        lambda d: d["application_servers"][0].__setitem__("name", 'as "1"'),
        "application_servers[0].name",
        "must be 1-64 letters, digits",
    ),
    (
        "huge-country-is-cut",
        setting("country", "X" * 100_000),
        "clients[0].country",
        "'" + "X" * 80 + "'... (100,000 characters) is not an ISO 3166",
    ),
    (
        "destination-longer-than-any-backend-stores",
        lambda d: d["brands"][0]["rating_plan_groups"][0]["rates"][0].__setitem__(
            "destination", "d" * 129
        ),
        "brands[0].rating_plan_groups[0].rates[0].destination",
        "at most 128 characters",
    ),
    (
        "huge-unknown-key-is-cut",
        setting("k" * 10_000, 1),
        "clients[0]." + "'" + "k" * 40 + "'... (10,000 characters)",
        "unknown key",
    ),
]


async def table_rows(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    async with engine.connect() as connection:
        for table in models.Base.metadata.sorted_tables:
            rows = await connection.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [tuple(row) for row in rows]
    return found


async def test_the_base_document_is_valid(engine: AsyncEngine) -> None:
    assert (await load_text(engine, dump_yaml(BASE))).created > 0


@pytest.mark.parametrize(
    ("mutate", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_an_invalid_document_is_one_line_naming_the_path_and_writes_nothing(
    engine: AsyncEngine, mutate: Mutation | str, path: str, message: str
) -> None:
    before = await table_rows(engine)

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, text_of(mutate), "case.yaml")

    error = raised.value
    assert "\n" not in str(error)
    assert error.path == path
    assert message in error.message
    assert str(error).startswith(f"{path}: " if path else "case.yaml")
    assert await table_rows(engine) == before


async def test_a_ddi_of_a_client_the_document_does_not_list_cannot_be_taken(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, dump_yaml(BASE))
    before = await export_document(engine)
    only_south = copy.deepcopy(south(BASE))
    only_south["ddis"].append({"e164": "+442079460100"})

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, dump_yaml({"clients": [only_south]}))

    assert str(raised.value) == (
        "clients[0].ddis[1].e164: +442079460100 is already a DDI of client 'thames'"
    )
    assert await export_document(engine) == before


async def test_a_rating_plan_group_still_used_by_an_unlisted_client_cannot_be_dropped(
    engine: AsyncEngine,
) -> None:
    await load_text(engine, dump_yaml(BASE))
    before = await export_document(engine)
    brand = copy.deepcopy(BASE["brands"][0])
    brand["rating_plan_groups"] = []

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, dump_yaml({"brands": [brand]}))

    assert raised.value.path == "brands[0].rating_plan_groups"
    assert "'standard' is still used by client 'acme-north'" in raised.value.message
    assert await export_document(engine) == before


async def test_a_failure_while_writing_rolls_the_whole_document_back(engine: AsyncEngine) -> None:
    await load_text(engine, dump_yaml(BASE))
    before = await table_rows(engine)
    document = copy.deepcopy(BASE)
    north(document)["max_calls"] = 9  # a change written before the failure
    # Swapping two SIP domains passes the checks but trips the database's unique key.
    north(document)["sip_domain"], south(document)["sip_domain"] = (
        south(document)["sip_domain"],
        north(document)["sip_domain"],
    )

    with pytest.raises(ProvisioningError) as raised:
        await load_text(engine, dump_yaml(document), "swap.yaml")

    assert str(raised.value).startswith("swap.yaml: the database refused the document: ")
    assert "\n" not in str(raised.value)
    assert await table_rows(engine) == before


OFFICE = {"from": "08:00", "to": "20:00", "days": ["mon", "tue", "wed", "thu", "fri"]}


def brand(document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["brands"][0]
    return found


MORE_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "duplicate-brand",
        lambda d: d["brands"].append(copy.deepcopy(brand(d))),
        "brands[2].name",
        "duplicate brand 'iberia'",
    ),
    (
        "brand-currency-unknown",
        lambda d: brand(d).__setitem__("default_currency", "USD"),
        "brands[0].default_currency",
        "unknown currency 'USD'",
    ),
    (
        "carrier-endpoint-twice",
        lambda d: d["brands"][1].__setitem__(
            "carriers", [{"name": "other", "endpoint": "carrier-telco", "host": "192.0.2.9"}]
        ),
        "brands[1].carriers[0].endpoint",
        "endpoint 'carrier-telco' is already used at brands[0].carriers[0].endpoint",
    ),
    (
        "route-unknown-carrier",
        lambda d: brand(d)["outbound_routes"][0].__setitem__("carrier", "telko"),
        "brands[0].outbound_routes[0].carrier",
        "unknown carrier 'telko'",
    ),
    (
        "route-twice",
        lambda d: brand(d)["outbound_routes"].append({"carrier": "telco", "prefix": "34"}),
        "brands[0].outbound_routes[2]",
        "duplicate route",
    ),
    (
        "rate-twice",
        lambda d: brand(d)["rating_plan_groups"][0]["rates"].append(
            {"prefix": "34", "price_per_minute": 1}
        ),
        "brands[0].rating_plan_groups[0].rates[1]",
        "duplicate rate '34' every day weight 0,"
        " already at brands[0].rating_plan_groups[0].rates[0]",
    ),
    (
        "rate-twice-in-a-window-with-one-weight",
        lambda d: brand(d)["rating_plan_groups"][0]["rates"].extend(
            [
                {"prefix": "33", "price_per_minute": 1, "weight": 10, "time_window": OFFICE},
                {"prefix": "33", "price_per_minute": 2, "weight": 20, "time_window": OFFICE},
                {"prefix": "33", "price_per_minute": 3, "weight": 10, "time_window": OFFICE},
            ]
        ),
        "brands[0].rating_plan_groups[0].rates[3]",
        "duplicate rate '33' mon-fri 08:00-20:00 weight 10,"
        " already at brands[0].rating_plan_groups[0].rates[1]",
    ),
    (
        "rate-twice-on-some-days",
        lambda d: brand(d)["rating_plan_groups"][0]["rates"].extend(
            [{"prefix": "44", "price_per_minute": 1, "time_window": {"days": ["sat", "sun"]}}] * 2
        ),
        "brands[0].rating_plan_groups[0].rates[2]",
        "duplicate rate '44' sat-sun weight 0, already at brands[0].rating_plan_groups[0].rates[1]",
    ),
    (
        "group-currency-unknown",
        lambda d: brand(d)["rating_plan_groups"][0].__setitem__("currency", "CHF"),
        "brands[0].rating_plan_groups[0].currency",
        "unknown currency 'CHF'",
    ),
    (
        "choice-of-unknown-template",
        lambda d: north(d).__setitem__("template_choices", {"fax": "north-fax"}),
        "clients[0].template_choices.fax",
        "unknown template 'north-fax'",
    ),
    (
        "choice-of-wrong-type",
        lambda d: north(d).__setitem__("template_choices", {"fax": "north-daily"}),
        "clients[0].template_choices.fax",
        "is of type 'max_daily_usage', not 'fax'",
    ),
    (
        "template-language-twice",
        lambda d: north(d)["templates"][0]["contents"].append(
            north(d)["templates"][0]["contents"][0]
        ),
        "clients[0].templates[0].contents[1].language",
        "duplicate language 'es'",
    ),
    (
        "client-twice",
        lambda d: south(d).__setitem__("name", "acme-north"),
        "clients[1].name",
        "duplicate client",
    ),
    (
        "domain-twice",
        lambda d: south(d).__setitem__("sip_domain", "north.acme.example.com"),
        "clients[1].sip_domain",
        "north.acme.example.com is already the domain of client 'acme-north'",
    ),
    (
        "unknown-server",
        setting("application_server", "as-9"),
        "clients[0].application_server",
        "unknown application server 'as-9'",
    ),
    (
        "unknown-relay-set",
        setting("media_relay_set", "mars"),
        "clients[0].media_relay_set",
        "unknown media relay set 'mars'",
    ),
    (
        "recording-without-feature",
        lambda d: south(d).__setitem__("on_demand_recording", {"mode": "dtmf", "code": "5"}),
        "clients[1].on_demand_recording.mode",
        "needs the client feature 'recordings'",
    ),
    (
        "geoip-twice",
        setting("geoip_countries", ["ES", "ES"]),
        "clients[0].geoip_countries[1]",
        "duplicate country 'ES'",
    ),
    (
        "terminal-of-unknown-user",
        lambda d: north(d)["terminals"][0].__setitem__("user", "zoe"),
        "clients[0].terminals[0].user",
        "unknown user 'zoe'",
    ),
    (
        "ddi-to-unknown-extension",
        lambda d: north(d)["ddis"][1].__setitem__("extension", "199"),
        "clients[0].ddis[1].extension",
        "unknown extension '199'",
    ),
    (
        "ddi-through-unknown-carrier",
        lambda d: north(d)["ddis"][0].__setitem__("carrier", "telko"),
        "clients[0].ddis[0].carrier",
        "unknown carrier 'telko'",
    ),
    (
        "match-pattern-twice",
        lambda d: north(d)["match_lists"][0]["patterns"].append({"regexp": "^34(80|90)"}),
        "clients[0].match_lists[0].patterns[1]",
        "duplicate pattern",
    ),
    (
        "acl-priority-twice",
        lambda d: north(d)["call_acls"][0]["rules"].append(
            {"priority": 1, "match_list": "premium", "policy": "allow"}
        ),
        "clients[0].call_acls[0].rules[1].priority",
        "duplicate priority 1",
    ),
    (
        "user-with-unknown-acl",
        lambda d: north(d)["users"][1].__setitem__("call_acl", "nobody"),
        "clients[0].users[1].call_acl",
        "unknown call ACL 'nobody'",
    ),
    (
        "rule-name-twice",
        setting("outgoing_ddi_rules", [{"name": "north"}]),
        "clients[0].outgoing_ddi_rules[0].name",
        "duplicate rule 'north', already at clients[0].outgoing_ddi_rule.name",
    ),
    (
        "keep-rule-with-forced-ddi",
        lambda d: north(d)["outgoing_ddi_rule"].__setitem__("forced_ddi", "+34910000100"),
        "clients[0].outgoing_ddi_rule.forced_ddi",
        "only used with default_action 'force'",
    ),
    (
        "keep-pattern-with-forced-ddi",
        lambda d: north(d)["outgoing_ddi_rule"]["patterns"][1].__setitem__(
            "forced_ddi", "+34910000100"
        ),
        "clients[0].outgoing_ddi_rule.patterns[1].forced_ddi",
        "only used with action 'force'",
    ),
    (
        "pattern-with-unknown-list",
        lambda d: north(d)["outgoing_ddi_rule"]["patterns"][1].__setitem__("destination", "vip"),
        "clients[0].outgoing_ddi_rule.patterns[1].destination",
        "unknown match list 'vip'",
    ),
    (
        "user-with-unknown-rule",
        lambda d: north(d)["users"][0].__setitem__("outgoing_ddi_rule", "nope"),
        "clients[0].users[0].outgoing_ddi_rule",
        "unknown outgoing DDI rule 'nope'",
    ),
    (
        "profile-in-another-currency",
        lambda d: north(d).__setitem__("currency", "GBP"),
        "clients[0].rating_profiles[0].rating_plan_group",
        "group 'standard' prices in EUR, the client pays in GBP",
    ),
    (
        "activation-time-twice",
        lambda d: north(d)["rating_profiles"].append(
            {"rating_plan_group": "standard", "activation_time": "2025-01-01T00:00:00+01:00"}
        ),
        "clients[0].rating_profiles[1].activation_time",
        "duplicate activation time",
    ),
    (
        "login-twice",
        lambda d: south(d).__setitem__(
            "admins", [{"username": "north-admin", "password": "x" * 8}]
        ),
        "clients[1].admins[0].username",
        "north-admin is already a login of client 'acme-north'",
    ),
    (
        "password-and-hash",
        lambda d: north(d)["admins"][0].__setitem__("password_hash", "scrypt$1$1$1$AA==$AA=="),
        "clients[0].admins[0]",
        "give exactly one of 'password' or 'password_hash'",
    ),
    (
        "short-password",
        lambda d: north(d)["admins"][0].__setitem__("password", "short"),
        "clients[0].admins[0].password",
        "at least 8 characters",
    ),
    (
        "window-without-end",
        lambda d: brand(d)["rating_plan_groups"][0]["rates"][0].__setitem__(
            "time_window", {"from": "08:00"}
        ),
        "brands[0].rating_plan_groups[0].rates[0].time_window",
        "give both 'from' and 'to', or neither",
    ),
    (
        "window-day-twice",
        lambda d: brand(d)["rating_plan_groups"][0]["rates"][0].__setitem__(
            "time_window", {"days": ["sat", "sat"]}
        ),
        "brands[0].rating_plan_groups[0].rates[0].time_window",
        "names a weekday twice",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "message"), [c[1:] for c in MORE_CASES], ids=[c[0] for c in MORE_CASES]
)
def test_more_invalid_documents_are_caught_before_the_database_is_read(
    mutate: Mutation, path: str, message: str
) -> None:
    with pytest.raises(ProvisioningError) as raised:
        check_document(parse_document(text_of(mutate)), World())

    assert (raised.value.path, "\n" in str(raised.value)) == (path, False)
    assert message in raised.value.message


def terminal(document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = north(document)["terminals"][0]
    return found


SECRET = "s3cret-ana"
SIP_SECRET_CASES: list[tuple[str, Mutation, str, str]] = [
    (
        "newline",
        lambda d: terminal(d).__setitem__("password", f"{SECRET}\n[evil]"),
        "clients[0].terminals[0].password",
        "must not hold a newline or another control character",
    ),
    (
        "tab",
        lambda d: terminal(d).__setitem__("password", f"{SECRET}\tx"),
        "clients[0].terminals[0].password",
        "control character",
    ),
    (
        "quote",
        lambda d: terminal(d).__setitem__("password", f'{SECRET}"x'),
        "clients[0].terminals[0].password",
        "must not hold a double quote or a backslash",
    ),
    (
        "backslash",
        lambda d: terminal(d).__setitem__("password", f"{SECRET}\\x"),
        "clients[0].terminals[0].password",
        "double quote or a backslash",
    ),
    (
        "password-and-ha1",
        lambda d: terminal(d).__setitem__("ha1", "0" * 32),
        "clients[0].terminals[0]",
        "give exactly one of 'password' or 'ha1'",
    ),
    (
        "neither",
        lambda d: terminal(d).pop("password"),
        "clients[0].terminals[0]",
        "give exactly one of 'password' or 'ha1'",
    ),
    (
        "uppercase-ha1",
        lambda d: terminal(d).update(password=None, ha1="AB" * 16),
        "clients[0].terminals[0].ha1",
        "32 lowercase hex digits",
    ),
    (
        "short-ha1",
        lambda d: terminal(d).update(password=None, ha1="a" * 31),
        "clients[0].terminals[0].ha1",
        "32 lowercase hex digits",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "message"),
    [c[1:] for c in SIP_SECRET_CASES],
    ids=[c[0] for c in SIP_SECRET_CASES],
)
def test_a_terminal_secret_a_sip_phone_cannot_send_is_refused_without_echoing_it(
    mutate: Mutation, path: str, message: str
) -> None:
    with pytest.raises(ProvisioningError) as raised:
        parse_document(text_of(mutate))

    assert (raised.value.path, "\n" in str(raised.value)) == (path, False)
    assert message in raised.value.message
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("days", "text"),
    [
        (["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "every day"),
        (["mon", "tue", "wed", "thu", "fri"], "mon-fri"),
        (["sat", "sun"], "sat-sun"),
        (["mon", "wed", "fri"], "mon,wed,fri"),
        (["thu", "mon", "tue"], "mon-tue,thu"),
        (["sun"], "sun"),
    ],
)
def test_a_duplicate_rate_names_its_days_as_written_not_as_a_bitmask(
    days: list[str], text: str
) -> None:
    window = {"days": days}
    rate = {"prefix": "351", "price_per_minute": 1, "weight": 3, "time_window": window}

    def twice(document: dict[str, Any]) -> None:
        brand(document)["rating_plan_groups"][0]["rates"].extend([rate, rate])

    with pytest.raises(ProvisioningError) as raised:
        check_document(parse_document(text_of(twice)), World())

    assert raised.value.message == (
        f"duplicate rate '351' {text} weight 3, already at brands[0].rating_plan_groups[0].rates[1]"
    )
