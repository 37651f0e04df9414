"""The pipeline's Directory answered from the shared database.

Each lookup is one or two indexed queries on its own pooled connection, and
returns plain views (``dialplan.views``): no ORM object leaves this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

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
from models.routing import CallAcl, CallAclRule, Carrier, MatchList, MatchListPattern, OutboundRoute
from models.tenants import Client, ClientFeature, Corporation, Ddi, Extension, Terminal, User

_client_ddi = aliased(Ddi)
_user_ddi = aliased(Ddi)
_user_terminal = aliased(Terminal)


def _plus(digits: str | None) -> str | None:
    return f"+{digits}" if digits else None


def _client_query() -> Select[Any]:
    return (
        select(Client, Corporation.name.label("corporation"), _client_ddi.e164.label("c_ddi"))
        .outerjoin(Corporation, Corporation.id == Client.corporation_id)
        .outerjoin(_client_ddi, _client_ddi.id == Client.outgoing_ddi_id)
    )


def _first_extension() -> Any:
    return (
        select(func.min(Extension.number))
        .where(Extension.user_id == User.id, Extension.route == "user")
        .correlate(User)
        .scalar_subquery()
    )


def _user_columns() -> tuple[Any, ...]:
    return (
        User,
        _user_ddi.e164.label("u_ddi"),
        _first_extension().label("u_extension"),
        _user_terminal.name.label("u_terminal"),
    )


def _with_user(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(_user_ddi, _user_ddi.id == User.outgoing_ddi_id).outerjoin(
        _user_terminal, _user_terminal.user_id == User.id
    )


def _user_view(row: Row[Any]) -> UserView | None:
    user: User | None = row.User
    if user is None:
        return None
    return UserView(
        id=user.id,
        client_id=user.client_id,
        name=user.name,
        language=user.language,
        timezone=user.timezone,
        call_acl_id=user.call_acl_id,
        outgoing_ddi=_plus(row.u_ddi),
        extension=row.u_extension,
        terminal=row.u_terminal,
    )


class SqlDirectory:
    """:class:`dialplan.directory.Directory` over an engine of the shared database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def terminal(self, endpoint: str) -> TerminalView | None:
        query = _with_user(
            _client_query()
            .add_columns(Terminal.name.label("t_name"), *_user_columns())
            .join(Terminal, Terminal.client_id == Client.id)
            .outerjoin(User, User.id == Terminal.user_id)
        ).where(Terminal.name == endpoint)
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            client = await self._client(connection, row)
        return TerminalView(row.t_name, client, _user_view(row))

    async def carrier(self, endpoint: str) -> CarrierView | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(select(Carrier).where(Carrier.endpoint == endpoint))
            ).first()
        return None if row is None else CarrierView(row.id, row.name, row.endpoint, row.brand_id)

    async def ddi(self, e164: str) -> DdiView | None:
        query = _with_user(
            _client_query()
            .add_columns(Ddi, *_user_columns())
            .join(Ddi, Ddi.client_id == Client.id)
            .outerjoin(User, User.id == Ddi.user_id)
        ).where(Ddi.e164 == e164.lstrip("+"))
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            client = await self._client(connection, row)
            ddi: Ddi = row.Ddi
            extension = None
            if ddi.route == "extension" and ddi.extension_id is not None:
                extension = await self._extension(
                    connection, client, Extension.id == ddi.extension_id
                )
        return DdiView(
            e164=_plus(ddi.e164) or "",
            client=client,
            route=ddi.route,
            user=_user_view(row),
            extension=extension,
            record_calls=ddi.record_calls,
            language=ddi.language,
        )

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        async with self.engine.connect() as connection:
            return await self._extension(
                connection,
                client,
                and_(Extension.client_id == client.id, Extension.number == number),
            )

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        if client.corporation_id is None:
            return None
        sibling = aliased(Client)
        query = (
            _client_query()
            .join(Extension, Extension.client_id == Client.id)
            .where(
                Extension.number == number,
                Client.corporation_id == client.corporation_id,
                Client.id != client.id,
            )
        )
        del sibling
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            owner = await self._client(connection, row)
            return await self._extension(
                connection, owner, and_(Extension.client_id == owner.id, Extension.number == number)
            )

    async def call_acl(self, acl_id: int) -> AclView | None:
        async with self.engine.connect() as connection:
            acl = (await connection.execute(select(CallAcl).where(CallAcl.id == acl_id))).first()
            if acl is None:
                return None
            rows = (
                await connection.execute(
                    select(
                        CallAclRule.priority,
                        CallAclRule.policy,
                        MatchList.name,
                        MatchListPattern.kind,
                        MatchListPattern.value,
                    )
                    .join(MatchList, MatchList.id == CallAclRule.match_list_id)
                    .outerjoin(MatchListPattern, MatchListPattern.match_list_id == MatchList.id)
                    .where(CallAclRule.call_acl_id == acl_id)
                    .order_by(CallAclRule.priority, MatchListPattern.id)
                )
            ).all()
        return AclView(acl.id, acl.name, acl.default_policy, _acl_rules(rows))

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        digits = e164.lstrip("+")
        query = (
            select(OutboundRoute.prefix, OutboundRoute.priority, OutboundRoute.client_id, Carrier)
            .join(Carrier, Carrier.id == OutboundRoute.carrier_id)
            .where(
                OutboundRoute.brand_id == client.brand_id,
                or_(OutboundRoute.client_id == client.id, OutboundRoute.client_id.is_(None)),
            )
        )
        async with self.engine.connect() as connection:
            rows = [
                r for r in (await connection.execute(query)).all() if digits.startswith(r.prefix)
            ]
        if not rows:
            return None
        best = min(rows, key=lambda r: (r.client_id is None, -len(r.prefix), r.priority))
        return CarrierView(best.id, best.name, best.endpoint, best.brand_id)

    async def _client(self, connection: AsyncConnection, row: Row[Any]) -> ClientView:
        features = (
            await connection.execute(
                select(ClientFeature.feature).where(ClientFeature.client_id == row.id)
            )
        ).scalars()
        return ClientView(
            id=row.id,
            name=row.name,
            brand_id=row.brand_id,
            corporation_id=row.corporation_id,
            corporation=row.corporation,
            country=row.country,
            language=row.language,
            timezone=row.timezone,
            currency=row.currency,
            features=frozenset(features),
            billing_method=row.billing_method,
            max_calls=row.max_calls,
            outgoing_ddi=_plus(row.c_ddi),
        )

    async def _extension(
        self, connection: AsyncConnection, client: ClientView, where: Any
    ) -> ExtensionView | None:
        query = _with_user(
            select(Extension, *_user_columns()).outerjoin(User, User.id == Extension.user_id)
        ).where(where)
        row = (await connection.execute(query)).first()
        if row is None:
            return None
        extension: Extension = row.Extension
        return ExtensionView(
            number=extension.number,
            client=client,
            route=extension.route,
            user=_user_view(row),
            target_number=extension.target_number,
        )


def _acl_rules(rows: Sequence[Row[Any]]) -> tuple[AclRuleView, ...]:
    rules: list[AclRuleView] = []
    for row in rows:
        pattern = (MatchPattern(row.kind, row.value),) if row.kind is not None else ()
        if rules and rules[-1].priority == row.priority:
            last = rules[-1]
            rules[-1] = AclRuleView(
                last.priority, last.policy, last.match_list, last.patterns + pattern
            )
        else:
            rules.append(AclRuleView(row.priority, row.policy, row.name, pattern))
    return tuple(rules)
