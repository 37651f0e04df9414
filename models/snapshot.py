"""The configuration snapshot read from the shared database, and the version that says when
to read it again.

:func:`load` reads every table a decision needs in a dozen statements (one per kind, no
per-client query) and builds a :class:`dialplan.snapshot.Snapshot` of plain views. Whatever
changes the configuration calls ``models.changes.bump`` in its transaction.
:class:`Snapshots` holds the snapshot in force and reloads it when the version moved.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import aliased

from dialplan.ddi import DdiPatternView, DdiRuleView
from dialplan.errors import DatabaseUnavailable
from dialplan.rating import RateView, RatingPlanView, RatingProfileView
from dialplan.snapshot import Route, Snapshot
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
from models.billing import Rate, RatingPlanGroup, RatingProfile
from models.changes import version
from models.db import is_unavailable, unavailable
from models.locutions import ClientLocution
from models.platform import EmergencyNumber
from models.routing import (
    CallAcl,
    CallAclRule,
    Carrier,
    MatchList,
    MatchListPattern,
    OutboundRoute,
    OutgoingDdiRule,
    OutgoingDdiRulePattern,
)
from models.tenants import (
    Brand,
    Client,
    ClientAuthorizedSource,
    ClientFeature,
    ClientGeoipCountry,
    Corporation,
    Ddi,
    Extension,
    Terminal,
    User,
)

log = logging.getLogger(__name__)

_client_ddi = aliased(Ddi)
_user_ddi = aliased(Ddi)
_user_terminal = aliased(Terminal)

CLIENT_COLUMNS = (
    Client.id.label("c_id"),
    Client.name.label("c_name"),
    Client.brand_id.label("c_brand_id"),
    Client.corporation_id.label("c_corporation_id"),
    Corporation.name.label("c_corporation"),
    Client.country.label("c_country"),
    Client.language.label("c_language"),
    Client.timezone.label("c_timezone"),
    Client.currency.label("c_currency"),
    Client.billing_method.label("c_billing_method"),
    Client.max_calls.label("c_max_calls"),
    _client_ddi.e164.label("c_ddi"),
    Client.outgoing_ddi_rule_id.label("c_ddi_rule_id"),
    Client.on_demand_recording.label("c_on_demand"),
    Client.on_demand_record_code.label("c_record_code"),
    Client.filter_by_ip.label("c_filter_by_ip"),
    Client.max_daily_usage.label("c_max_daily_usage"),
    Client.max_daily_usage_email.label("c_max_daily_usage_email"),
    Client.low_balance_threshold.label("c_low_balance_threshold"),
    Client.low_balance_email.label("c_low_balance_email"),
    Client.sip_domain.label("c_sip_domain"),
    Client.media_relay_set_id.label("c_media_relay_set_id"),
    select(func.aggregate_strings(ClientAuthorizedSource.cidr, ","))
    .where(ClientAuthorizedSource.client_id == Client.id)
    .correlate(Client)
    .scalar_subquery()
    .label("c_sources"),
    select(func.aggregate_strings(ClientGeoipCountry.country, ","))
    .where(ClientGeoipCountry.client_id == Client.id)
    .correlate(Client)
    .scalar_subquery()
    .label("c_countries"),
    select(func.aggregate_strings(ClientFeature.feature, ","))
    .where(ClientFeature.client_id == Client.id)
    .correlate(Client)
    .scalar_subquery()
    .label("c_features"),
)


def with_client(query: Select[Any]) -> Select[Any]:
    """``query`` (over Client) joined to what :data:`CLIENT_COLUMNS` reads besides it."""
    return query.outerjoin(Corporation, Corporation.id == Client.corporation_id).outerjoin(
        _client_ddi, _client_ddi.id == Client.outgoing_ddi_id
    )


_CLIENTS = with_client(select(*CLIENT_COLUMNS))

_USERS = (
    select(
        User.id.label("u_id"),
        User.client_id.label("u_client_id"),
        User.name.label("u_name"),
        User.language.label("u_language"),
        User.timezone.label("u_timezone"),
        User.call_acl_id.label("u_call_acl_id"),
        _user_ddi.e164.label("u_ddi"),
        User.outgoing_ddi_rule_id.label("u_ddi_rule_id"),
        select(func.min(Extension.number))
        .where(Extension.user_id == User.id, Extension.route == "user")
        .correlate(User)
        .scalar_subquery()
        .label("u_extension"),
        _user_terminal.name.label("u_terminal"),
    )
    .outerjoin(_user_ddi, _user_ddi.id == User.outgoing_ddi_id)
    .outerjoin(_user_terminal, _user_terminal.user_id == User.id)
)

_TERMINALS = select(Terminal.name, Terminal.client_id, Terminal.user_id)

_CARRIERS = select(
    Carrier.id,
    Carrier.name,
    Carrier.endpoint,
    Carrier.brand_id,
    Brand.default_language,
    Carrier.host,
    Carrier.port,
).join(Brand, Brand.id == Carrier.brand_id)

_EXTENSIONS = select(
    Extension.id,
    Extension.client_id,
    Extension.number,
    Extension.route,
    Extension.target_number,
    Extension.user_id,
).order_by(Extension.id)

_DDIS = select(
    Ddi.e164,
    Ddi.client_id,
    Ddi.route,
    Ddi.user_id,
    Ddi.extension_id,
    Ddi.record_calls,
    Ddi.language,
)

_ACLS = (
    select(
        CallAcl.id.label("a_id"),
        CallAcl.name.label("a_name"),
        CallAcl.default_policy.label("a_default"),
        CallAclRule.priority,
        CallAclRule.policy,
        MatchList.name,
        MatchListPattern.kind,
        MatchListPattern.value,
    )
    .outerjoin(CallAclRule, CallAclRule.call_acl_id == CallAcl.id)
    .outerjoin(MatchList, MatchList.id == CallAclRule.match_list_id)
    .outerjoin(MatchListPattern, MatchListPattern.match_list_id == MatchList.id)
    .order_by(CallAcl.id, CallAclRule.priority, MatchListPattern.id)
)

_ROUTES = (
    select(
        OutboundRoute.prefix,
        OutboundRoute.priority,
        OutboundRoute.client_id,
        OutboundRoute.brand_id.label("route_brand_id"),
        Carrier.id,
        Carrier.name,
        Carrier.endpoint,
        Carrier.brand_id,
        Carrier.host,
        Carrier.port,
    )
    .join(Carrier, Carrier.id == OutboundRoute.carrier_id)
    .order_by(OutboundRoute.id)
)

_rule_ddi = aliased(Ddi)
_pattern_ddi = aliased(Ddi)
_DDI_RULES = (
    select(
        OutgoingDdiRule.id.label("r_id"),
        OutgoingDdiRule.name.label("r_name"),
        OutgoingDdiRule.default_action.label("r_action"),
        _rule_ddi.e164.label("r_ddi"),
        OutgoingDdiRulePattern.priority.label("p_priority"),
        OutgoingDdiRulePattern.kind.label("p_kind"),
        OutgoingDdiRulePattern.prefix.label("p_prefix"),
        OutgoingDdiRulePattern.action.label("p_action"),
        _pattern_ddi.e164.label("p_ddi"),
        MatchList.name.label("m_name"),
        MatchListPattern.kind.label("m_kind"),
        MatchListPattern.value.label("m_value"),
    )
    .outerjoin(_rule_ddi, _rule_ddi.id == OutgoingDdiRule.forced_ddi_id)
    .outerjoin(OutgoingDdiRulePattern, OutgoingDdiRulePattern.rule_id == OutgoingDdiRule.id)
    .outerjoin(_pattern_ddi, _pattern_ddi.id == OutgoingDdiRulePattern.forced_ddi_id)
    .outerjoin(MatchList, MatchList.id == OutgoingDdiRulePattern.match_list_id)
    .outerjoin(MatchListPattern, MatchListPattern.match_list_id == MatchList.id)
    .order_by(OutgoingDdiRule.id, OutgoingDdiRulePattern.priority, MatchListPattern.id)
)

_PROFILES = select(
    RatingProfile.id,
    RatingProfile.client_id,
    RatingProfile.activation_time,
    RatingProfile.rating_plan_group_id,
).order_by(RatingProfile.activation_time, RatingProfile.id)

_PLANS = select(RatingPlanGroup.id, RatingPlanGroup.name, RatingPlanGroup.currency)

_RATES = select(
    Rate.id,
    Rate.rating_plan_group_id,
    Rate.prefix,
    Rate.destination,
    Rate.connection_fee,
    Rate.price_per_minute,
    Rate.increment_first,
    Rate.increment_next,
    Rate.weight,
    Rate.time_from,
    Rate.time_to,
    Rate.weekdays,
).order_by(Rate.id)

_OVERRIDES = select(ClientLocution.client_id, ClientLocution.sound, ClientLocution.language)
_EMERGENCY = select(EmergencyNumber.country, EmergencyNumber.number)


def plus(digits: str | None) -> str | None:
    return f"+{digits}" if digits else None


def _listed(joined: str | None) -> tuple[str, ...]:
    return tuple(sorted(joined.split(","))) if joined else ()


def client_view(row: Row[Any]) -> ClientView:
    """The client of a row read with :data:`CLIENT_COLUMNS`."""
    return ClientView(
        id=row.c_id,
        name=row.c_name,
        brand_id=row.c_brand_id,
        corporation_id=row.c_corporation_id,
        corporation=row.c_corporation,
        country=row.c_country,
        language=row.c_language,
        timezone=row.c_timezone,
        currency=row.c_currency,
        features=frozenset(row.c_features.split(",") if row.c_features else ()),
        billing_method=row.c_billing_method,
        max_calls=row.c_max_calls,
        outgoing_ddi=plus(row.c_ddi),
        outgoing_ddi_rule_id=row.c_ddi_rule_id,
        on_demand_recording=row.c_on_demand,
        on_demand_record_code=row.c_record_code,
        filter_by_ip=bool(row.c_filter_by_ip),
        authorized_sources=_listed(row.c_sources),
        geoip_countries=_listed(row.c_countries),
        max_daily_usage=row.c_max_daily_usage,
        max_daily_usage_email=row.c_max_daily_usage_email,
        low_balance_threshold=row.c_low_balance_threshold,
        low_balance_email=row.c_low_balance_email,
        sip_domain=row.c_sip_domain,
        media_relay_set_id=row.c_media_relay_set_id,
    )


def _user_view(row: Row[Any]) -> UserView:
    return UserView(
        id=row.u_id,
        client_id=row.u_client_id,
        name=row.u_name,
        language=row.u_language,
        timezone=row.u_timezone,
        call_acl_id=row.u_call_acl_id,
        outgoing_ddi=plus(row.u_ddi),
        outgoing_ddi_rule_id=row.u_ddi_rule_id,
        extension=row.u_extension,
        terminal=row.u_terminal,
    )


async def load(engine: AsyncEngine) -> Snapshot:
    """The whole configuration as one snapshot, read in one transaction (so consistent).
    An outage is DatabaseUnavailable."""
    started = time.monotonic()
    try:
        async with engine.connect() as connection, connection.begin():
            at = await version(connection)
            rows = [
                (await connection.execute(query)).all()
                for query in (
                    _CLIENTS,
                    _USERS,
                    _TERMINALS,
                    _CARRIERS,
                    _EXTENSIONS,
                    _DDIS,
                    _ACLS,
                    _ROUTES,
                    _DDI_RULES,
                    _PROFILES,
                    _PLANS,
                    _RATES,
                    _OVERRIDES,
                    _EMERGENCY,
                )
            ]
    except Exception as exc:  # drivers raise their own classes; only outages convert
        if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
            raise
        raise unavailable(engine, exc) from exc
    # Building the views is pure work: off the event loop, so calls go on meanwhile.
    snapshot = await asyncio.to_thread(_build, at, rows)
    log.info(
        "configuration version %d loaded in %.0f ms: %s",
        at,
        (time.monotonic() - started) * 1000,
        snapshot.size.text(),
    )
    return snapshot


def _build(at: int, rows: list[Sequence[Row[Any]]]) -> Snapshot:
    (
        clients_rows,
        users_rows,
        terminals_rows,
        carriers_rows,
        extensions_rows,
        ddis_rows,
        acls_rows,
        routes_rows,
        rules_rows,
        profiles_rows,
        plans_rows,
        rates_rows,
        overrides_rows,
        emergency_rows,
    ) = rows
    clients = {row.c_id: client_view(row) for row in clients_rows}
    users = {row.u_id: _user_view(row) for row in users_rows}
    terminals = [
        TerminalView(row.name, clients[row.client_id], users.get(row.user_id))
        for row in terminals_rows
    ]
    carriers = [
        CarrierView(
            row.id,
            row.name,
            row.endpoint,
            row.brand_id,
            row.default_language,
            row.host,
            row.port,
        )
        for row in carriers_rows
    ]
    extensions = {
        row.id: ExtensionView(
            number=row.number,
            client=clients[row.client_id],
            route=row.route,
            user=users.get(row.user_id),
            target_number=row.target_number,
        )
        for row in extensions_rows
    }
    ddis = [
        DdiView(
            e164=f"+{row.e164}",
            client=clients[row.client_id],
            route=row.route,
            user=users.get(row.user_id),
            extension=(
                extensions.get(row.extension_id)
                if row.route == "extension" and row.extension_id is not None
                else None
            ),
            record_calls=row.record_calls,
            language=row.language,
        )
        for row in ddis_rows
    ]
    routes = [
        Route(
            CarrierView(row.id, row.name, row.endpoint, row.brand_id, host=row.host, port=row.port),
            row.prefix,
            row.priority,
            row.client_id,
            row.route_brand_id,
        )
        for row in routes_rows
    ]
    plans: dict[int, tuple[Row[Any], list[RateView]]] = {row.id: (row, []) for row in plans_rows}
    for row in rates_rows:
        plans[row.rating_plan_group_id][1].append(
            RateView(
                id=row.id,
                prefix=row.prefix,
                destination=row.destination,
                connection_fee=row.connection_fee,
                price_per_minute=row.price_per_minute,
                increment_first=row.increment_first,
                increment_next=row.increment_next,
                weight=row.weight,
                time_from=row.time_from,
                time_to=row.time_to,
                weekdays=row.weekdays,
            )
        )
    plan_views = {
        plan_id: RatingPlanView(row.id, row.name, row.currency, tuple(rates))
        for plan_id, (row, rates) in plans.items()
    }
    profiles: dict[int, list[RatingProfileView]] = {}
    for row in profiles_rows:
        profiles.setdefault(row.client_id, []).append(
            RatingProfileView(row.id, row.activation_time, plan_views[row.rating_plan_group_id])
        )
    overrides: dict[int, set[tuple[str, str]]] = {}
    for row in overrides_rows:
        overrides.setdefault(row.client_id, set()).add((row.sound, row.language))
    return Snapshot(
        terminals=terminals,
        carriers=carriers,
        ddis=ddis,
        extensions=extensions.values(),
        acls=_acls(acls_rows),
        routes=routes,
        ddi_rules=_ddi_rules(rules_rows),
        profiles=profiles,
        overrides={client: frozenset(pairs) for client, pairs in overrides.items()},
        emergency=[(row.country, row.number) for row in emergency_rows],
        version=at,
    )


def _acls(rows: Sequence[Row[Any]]) -> list[AclView]:
    """Fold (ACL, rule, pattern) rows, ordered by ACL and priority, into ACLs."""
    acls: list[AclView] = []
    rules: list[AclRuleView] = []
    for n, row in enumerate(rows):
        if row.priority is not None:
            pattern = (MatchPattern(row.kind, row.value),) if row.kind is not None else ()
            if rules and rules[-1].priority == row.priority:
                last = rules[-1]
                rules[-1] = AclRuleView(
                    last.priority, last.policy, last.match_list, last.patterns + pattern
                )
            else:
                rules.append(AclRuleView(row.priority, row.policy, row.name, pattern))
        if n + 1 == len(rows) or rows[n + 1].a_id != row.a_id:
            acls.append(AclView(row.a_id, row.a_name, row.a_default, tuple(rules)))
            rules = []
    return acls


def _ddi_rules(rows: Sequence[Row[Any]]) -> list[DdiRuleView]:
    """Fold (rule, pattern, match) rows, ordered by rule and priority, into rules."""
    by_rule: dict[int, tuple[Row[Any], dict[int, tuple[Row[Any], list[MatchPattern]]]]] = {}
    for row in rows:
        _, patterns = by_rule.setdefault(row.r_id, (row, {}))
        if row.p_priority is None:  # a rule without patterns
            continue
        _, listed = patterns.setdefault(row.p_priority, (row, []))
        if row.m_kind is not None:
            listed.append(MatchPattern(row.m_kind, row.m_value))
    return [
        DdiRuleView(
            id=first.r_id,
            name=first.r_name,
            default_action=first.r_action,
            forced_ddi=plus(first.r_ddi),
            patterns=tuple(
                DdiPatternView(
                    priority=row.p_priority,
                    kind=row.p_kind,
                    prefix=row.p_prefix,
                    match_list=row.m_name,
                    match=tuple(listed),
                    action=row.p_action,
                    forced_ddi=plus(row.p_ddi),
                )
                for row, listed in patterns.values()
            ),
        )
        for first, patterns in by_rule.values()
    ]


class Snapshots:
    """The snapshot in force, loaded at first use and again whenever the configuration's
    version has moved (:meth:`refresh`, called by the service's watcher)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._snapshot: Snapshot | None = None
        self._loading = asyncio.Lock()
        self.reloads = 0

    @property
    def loaded(self) -> Snapshot | None:
        return self._snapshot

    async def current(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        async with self._loading:
            if self._snapshot is None:
                self._snapshot = await load(self.engine)
            return self._snapshot

    async def refresh(self, force: bool = False) -> bool:
        """Reload if the version moved (or ``force``); True when a new snapshot is in force.
        One small read when nothing changed."""
        async with self._loading:
            known = self._snapshot
            if known is not None and not force:
                async with self.engine.connect() as connection:
                    if await version(connection) == known.version:
                        return False
            self._snapshot = await load(self.engine)
            if known is not None:
                self.reloads += 1
            return True
