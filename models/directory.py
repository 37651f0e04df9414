"""The pipeline's Directory answered from the shared database.

Each lookup is one or two indexed queries (Core, labelled columns, no ORM
identity map) on a pooled connection, and returns plain views
(``dialplan.views``): no ORM object or session leaves this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, Select, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from dialplan.daily import spend_day
from dialplan.ddi import DdiPatternView, DdiRuleView
from dialplan.errors import DatabaseUnavailable
from dialplan.rating import RateView, RatingPlanView, RatingProfileView
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
from models.billing import ActiveCallSlot, DailyUsage, Rate, RatingPlanGroup, RatingProfile
from models.db import is_unavailable, unavailable
from models.locutions import ClientLocution
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

_client_ddi = aliased(Ddi)
_user_ddi = aliased(Ddi)
_user_terminal = aliased(Terminal)

_CLIENT_COLUMNS = (
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


def _first_extension() -> Any:
    return (
        select(func.min(Extension.number))
        .where(Extension.user_id == User.id, Extension.route == "user")
        .correlate(User)
        .scalar_subquery()
    )


_USER_COLUMNS = (
    User.id.label("u_id"),
    User.client_id.label("u_client_id"),
    User.name.label("u_name"),
    User.language.label("u_language"),
    User.timezone.label("u_timezone"),
    User.call_acl_id.label("u_call_acl_id"),
    _user_ddi.e164.label("u_ddi"),
    User.outgoing_ddi_rule_id.label("u_ddi_rule_id"),
    _first_extension().label("u_extension"),
    _user_terminal.name.label("u_terminal"),
)


def _listed(joined: str | None) -> tuple[str, ...]:
    return tuple(sorted(joined.split(","))) if joined else ()


def _plus(digits: str | None) -> str | None:
    return f"+{digits}" if digits else None


def _with_client(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(Corporation, Corporation.id == Client.corporation_id).outerjoin(
        _client_ddi, _client_ddi.id == Client.outgoing_ddi_id
    )


def _with_user(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(_user_ddi, _user_ddi.id == User.outgoing_ddi_id).outerjoin(
        _user_terminal, _user_terminal.user_id == User.id
    )


def _user_view(row: Row[Any]) -> UserView | None:
    if row.u_id is None:
        return None
    return UserView(
        id=row.u_id,
        client_id=row.u_client_id,
        name=row.u_name,
        language=row.u_language,
        timezone=row.u_timezone,
        call_acl_id=row.u_call_acl_id,
        outgoing_ddi=_plus(row.u_ddi),
        outgoing_ddi_rule_id=row.u_ddi_rule_id,
        extension=row.u_extension,
        terminal=row.u_terminal,
    )


_TERMINAL = _with_user(
    _with_client(
        select(Terminal.name.label("t_name"), *_CLIENT_COLUMNS, *_USER_COLUMNS)
        .join(Client, Client.id == Terminal.client_id)
        .outerjoin(User, User.id == Terminal.user_id)
    )
).where(Terminal.name == bindparam("endpoint"))

_CARRIER = (
    select(Carrier.id, Carrier.name, Carrier.endpoint, Carrier.brand_id, Brand.default_language)
    .join(Brand, Brand.id == Carrier.brand_id)
    .where(Carrier.endpoint == bindparam("endpoint"))
)

_DDI = _with_user(
    _with_client(
        select(
            Ddi.e164.label("d_e164"),
            Ddi.route.label("d_route"),
            Ddi.extension_id.label("d_extension_id"),
            Ddi.record_calls.label("d_record_calls"),
            Ddi.language.label("d_language"),
            *_CLIENT_COLUMNS,
            *_USER_COLUMNS,
        )
        .join(Client, Client.id == Ddi.client_id)
        .outerjoin(User, User.id == Ddi.user_id)
    )
).where(Ddi.e164 == bindparam("e164"))

_EXTENSION_COLUMNS = _with_user(
    select(
        Extension.number.label("e_number"),
        Extension.route.label("e_route"),
        Extension.target_number.label("e_target"),
        *_USER_COLUMNS,
    ).outerjoin(User, User.id == Extension.user_id)
)
_EXTENSION = _EXTENSION_COLUMNS.where(
    Extension.client_id == bindparam("client_id"), Extension.number == bindparam("number")
)
_EXTENSION_BY_ID = _EXTENSION_COLUMNS.where(Extension.id == bindparam("extension_id"))

_SIBLING = _with_client(
    select(*_CLIENT_COLUMNS).join(Extension, Extension.client_id == Client.id)
).where(
    Extension.number == bindparam("number"),
    Client.corporation_id == bindparam("corporation_id"),
    Client.id != bindparam("client_id"),
)

_CLIENT = _with_client(select(*_CLIENT_COLUMNS)).where(Client.id == bindparam("client_id"))

_ACL = (
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
    .where(CallAcl.id == bindparam("acl_id"))
    .order_by(CallAclRule.priority, MatchListPattern.id)
)

_ROUTES = (
    select(
        OutboundRoute.prefix,
        OutboundRoute.priority,
        OutboundRoute.client_id,
        Carrier.id,
        Carrier.name,
        Carrier.endpoint,
        Carrier.brand_id,
    )
    .join(Carrier, Carrier.id == OutboundRoute.carrier_id)
    .where(
        OutboundRoute.brand_id == bindparam("brand_id"),
        or_(OutboundRoute.client_id == bindparam("client_id"), OutboundRoute.client_id.is_(None)),
    )
)


_rule_ddi = aliased(Ddi)
_pattern_ddi = aliased(Ddi)
_DDI_RULE = (
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
    .where(OutgoingDdiRule.id == bindparam("rule_id"))
    .order_by(OutgoingDdiRulePattern.priority, MatchListPattern.id)
)

_RATING = (
    select(
        RatingProfile.id.label("p_id"),
        RatingProfile.activation_time.label("p_at"),
        RatingPlanGroup.id.label("g_id"),
        RatingPlanGroup.name.label("g_name"),
        RatingPlanGroup.currency.label("g_currency"),
        Rate.id.label("r_id"),
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
    )
    .join(RatingPlanGroup, RatingPlanGroup.id == RatingProfile.rating_plan_group_id)
    .outerjoin(
        Rate,
        (Rate.rating_plan_group_id == RatingPlanGroup.id)
        & Rate.prefix.in_(bindparam("prefixes", expanding=True)),
    )
    .where(RatingProfile.client_id == bindparam("client_id"))
    .order_by(RatingProfile.activation_time, Rate.id)
)

_OVERRIDES = select(ClientLocution.sound, ClientLocution.language).where(
    ClientLocution.client_id == bindparam("client_id")
)
_ACTIVE = (
    select(func.count())
    .select_from(ActiveCallSlot)
    .where(ActiveCallSlot.client_id == bindparam("client_id"))
    .where(ActiveCallSlot.lease_until > bindparam("now"))
)
_SPENT = select(DailyUsage.amount).where(
    DailyUsage.client_id == bindparam("client_id"), DailyUsage.day == bindparam("day")
)
_BALANCE = select(Client.balance).where(Client.id == bindparam("client_id"))
_COUNTERS = select(
    _ACTIVE.scalar_subquery().label("active"),
    _SPENT.scalar_subquery().label("spent"),
    _BALANCE.scalar_subquery().label("balance"),
)
"""A client's three guard counters (live slots, the day's spend, the balance) in one read."""


@dataclass(frozen=True, slots=True)
class _Counters:
    now: datetime
    day: date
    active: int
    spent: Decimal
    balance: Decimal


class SqlDirectory:
    """:class:`dialplan.directory.Directory` over an engine of the shared database.

    The statements are built once, at import, so executing one costs no SQL
    compilation or cache-key work.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._scoped: ContextVar[AsyncConnection | None] = ContextVar(
            f"directory-{id(self)}", default=None
        )
        self._counted: ContextVar[dict[int, _Counters] | None] = ContextVar(
            f"directory-counters-{id(self)}", default=None
        )

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        """Answer every lookup inside from one pooled connection (one per call), and a
        client's guard counters from one read. On PostgreSQL the reads run outside a
        transaction (no BEGIN and ROLLBACK around them). An outage (no connection, a
        locked or unreachable database) leaves it as DatabaseUnavailable."""
        try:
            async with self.engine.connect() as connection:
                if self.engine.dialect.name == "postgresql":
                    connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                token = self._scoped.set(connection)
                counted = self._counted.set({})
                try:
                    yield
                finally:
                    self._counted.reset(counted)
                    self._scoped.reset(token)
        except Exception as exc:  # drivers raise their own classes; only outages convert
            if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
                raise
            raise unavailable(self.engine, exc) from exc

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        scoped = self._scoped.get()
        if scoped is not None:
            yield scoped
            return
        async with self.engine.connect() as connection:
            yield connection

    async def terminal(self, endpoint: str) -> TerminalView | None:
        async with self._connect() as connection:
            row = (await connection.execute(_TERMINAL, {"endpoint": endpoint})).first()
            if row is None:
                return None
            client = self._client(row)
        return TerminalView(row.t_name, client, _user_view(row))

    async def client(self, client_id: int) -> ClientView | None:
        """The client with this id (the shell's lookup, e.g. for a CDR's e-mail)."""
        async with self._connect() as connection:
            row = (await connection.execute(_CLIENT, {"client_id": client_id})).first()
        return None if row is None else self._client(row)

    async def carrier(self, endpoint: str) -> CarrierView | None:
        async with self._connect() as connection:
            row = (await connection.execute(_CARRIER, {"endpoint": endpoint})).first()
        if row is None:
            return None
        return CarrierView(row.id, row.name, row.endpoint, row.brand_id, row.default_language)

    async def ddi(self, e164: str) -> DdiView | None:
        async with self._connect() as connection:
            row = (await connection.execute(_DDI, {"e164": e164.lstrip("+")})).first()
            if row is None:
                return None
            client = self._client(row)
            extension = None
            if row.d_route == "extension" and row.d_extension_id is not None:
                extension = await self._extension(
                    connection, client, _EXTENSION_BY_ID, {"extension_id": row.d_extension_id}
                )
        return DdiView(
            e164=f"+{row.d_e164}",
            client=client,
            route=row.d_route,
            user=_user_view(row),
            extension=extension,
            record_calls=row.d_record_calls,
            language=row.d_language,
        )

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        async with self._connect() as connection:
            return await self._extension(
                connection, client, _EXTENSION, {"client_id": client.id, "number": number}
            )

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        if client.corporation_id is None:
            return None
        parameters = {
            "number": number,
            "corporation_id": client.corporation_id,
            "client_id": client.id,
        }
        async with self._connect() as connection:
            row = (await connection.execute(_SIBLING, parameters)).first()
            if row is None:
                return None
            owner = self._client(row)
            return await self._extension(
                connection, owner, _EXTENSION, {"client_id": owner.id, "number": number}
            )

    async def call_acl(self, acl_id: int) -> AclView | None:
        async with self._connect() as connection:
            rows = (await connection.execute(_ACL, {"acl_id": acl_id})).all()
        if not rows:
            return None
        first = rows[0]
        return AclView(first.a_id, first.a_name, first.a_default, _acl_rules(rows))

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        digits = e164.lstrip("+")
        parameters = {"brand_id": client.brand_id, "client_id": client.id}
        async with self._connect() as connection:
            rows = (await connection.execute(_ROUTES, parameters)).all()
        matching = [row for row in rows if digits.startswith(row.prefix)]
        if not matching:
            return None
        best = min(matching, key=lambda r: (r.client_id is None, -len(r.prefix), r.priority))
        return CarrierView(best.id, best.name, best.endpoint, best.brand_id)

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        async with self._connect() as connection:
            rows = (await connection.execute(_DDI_RULE, {"rule_id": rule_id})).all()
        if not rows:
            return None
        first = rows[0]
        patterns: dict[int, tuple[Row[Any], list[MatchPattern]]] = {}
        for row in rows:
            if row.p_priority is None:  # a rule without patterns
                continue
            _, listed = patterns.setdefault(row.p_priority, (row, []))
            if row.m_kind is not None:
                listed.append(MatchPattern(row.m_kind, row.m_value))
        return DdiRuleView(
            id=first.r_id,
            name=first.r_name,
            default_action=first.r_action,
            forced_ddi=_plus(first.r_ddi),
            patterns=tuple(
                DdiPatternView(
                    priority=row.p_priority,
                    kind=row.p_kind,
                    prefix=row.p_prefix,
                    match_list=row.m_name,
                    match=tuple(listed),
                    action=row.p_action,
                    forced_ddi=_plus(row.p_ddi),
                )
                for row, listed in patterns.values()
            ),
        )

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        digits = e164.lstrip("+")
        prefixes = [digits[:length] for length in range(1, len(digits) + 1)]
        parameters = {"client_id": client.id, "prefixes": prefixes}
        async with self._connect() as connection:
            rows = (await connection.execute(_RATING, parameters)).all()
        profiles: dict[int, tuple[Row[Any], list[RateView]]] = {}
        for row in rows:
            _, rates = profiles.setdefault(row.p_id, (row, []))
            if row.r_id is not None:
                rates.append(
                    RateView(
                        id=row.r_id,
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
        return tuple(
            RatingProfileView(
                row.p_id,
                row.p_at,
                RatingPlanView(row.g_id, row.g_name, row.g_currency, tuple(rates)),
            )
            for row, rates in profiles.values()
        )

    async def _counters(
        self, client: ClientView, now: datetime | None, day: date | None
    ) -> _Counters | None:
        """Inside a scope: the client's three counters, read once (live slots at ``now``,
        the spend of ``day``, by default its local day at ``now``); None outside one. A
        later question about another instant or day is answered afresh."""
        counted = self._counted.get()
        if counted is None:
            return None
        known = counted.get(client.id)
        if (
            known is not None
            and (now is None or known.now == now)
            and (day is None or known.day == day)
        ):
            return known
        if now is None:
            now = known.now if known is not None else datetime.now(UTC)
        if day is None:
            day = spend_day(now, client.timezone)
        params = {"client_id": client.id, "now": now, "day": day}
        async with self._connect() as connection:
            row = (await connection.execute(_COUNTERS, params)).one()
        counters = _Counters(
            now,
            day,
            int(row.active or 0),
            Decimal(row.spent if row.spent is not None else 0),
            Decimal(row.balance if row.balance is not None else 0),
        )
        counted[client.id] = counters
        return counters

    async def balance(self, client: ClientView) -> Decimal:
        counters = await self._counters(client, None, None)
        if counters is not None:
            return counters.balance
        async with self._connect() as connection:
            balance = (await connection.execute(_BALANCE, {"client_id": client.id})).scalar()
        return Decimal(balance if balance is not None else 0)

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        async with self._connect() as connection:
            rows = (await connection.execute(_OVERRIDES, {"client_id": client.id})).all()
        return frozenset((row.sound, row.language) for row in rows)

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        counters = await self._counters(client, now, None)
        if counters is not None:
            return counters.active
        async with self._connect() as connection:
            found = await connection.scalar(_ACTIVE, {"client_id": client.id, "now": now})
        return int(found or 0)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        counters = await self._counters(client, None, day)
        if counters is not None:
            return counters.spent
        async with self._connect() as connection:
            found = await connection.scalar(_SPENT, {"client_id": client.id, "day": day})
        return Decimal(found if found is not None else 0)

    @staticmethod
    def _client(row: Row[Any]) -> ClientView:
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
            outgoing_ddi=_plus(row.c_ddi),
            outgoing_ddi_rule_id=row.c_ddi_rule_id,
            on_demand_recording=row.c_on_demand,
            on_demand_record_code=row.c_record_code,
            filter_by_ip=bool(row.c_filter_by_ip),
            authorized_sources=_listed(row.c_sources),
            geoip_countries=_listed(row.c_countries),
            max_daily_usage=row.c_max_daily_usage,
            max_daily_usage_email=row.c_max_daily_usage_email,
        )

    async def _extension(
        self,
        connection: AsyncConnection,
        client: ClientView,
        query: Select[Any],
        parameters: dict[str, Any],
    ) -> ExtensionView | None:
        row = (await connection.execute(query, parameters)).first()
        if row is None:
            return None
        return ExtensionView(
            number=row.e_number,
            client=client,
            route=row.e_route,
            user=_user_view(row),
            target_number=row.e_target,
        )


def _acl_rules(rows: Sequence[Row[Any]]) -> tuple[AclRuleView, ...]:
    """Fold (rule, pattern) rows, ordered by priority, into rules with their patterns."""
    rules: list[AclRuleView] = []
    for row in rows:
        if row.priority is None:  # an ACL without rules
            continue
        pattern = (MatchPattern(row.kind, row.value),) if row.kind is not None else ()
        if rules and rules[-1].priority == row.priority:
            last = rules[-1]
            rules[-1] = AclRuleView(
                last.priority, last.policy, last.match_list, last.patterns + pattern
            )
        else:
            rules.append(AclRuleView(row.priority, row.policy, row.name, pattern))
    return tuple(rules)


async def geoip_clients(engine: AsyncEngine) -> list[str]:
    """Names of the clients whose source filter allows calls by country (GeoIP)."""
    query = (
        select(Client.name)
        .where(Client.filter_by_ip.is_(True))
        .where(
            select(ClientGeoipCountry.country)
            .where(ClientGeoipCountry.client_id == Client.id)
            .exists()
        )
        .order_by(Client.name)
    )
    async with engine.connect() as connection:
        return [str(name) for name in (await connection.scalars(query)).all()]
