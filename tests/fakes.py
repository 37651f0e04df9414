"""An in-memory Directory built from plain data, for testing the core without a database: the
configuration answered by the service's own :class:`dialplan.snapshot.Snapshot`, the live
counters from dictionaries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from dialplan.ddi import DdiRuleView
from dialplan.rating import RatingProfileView
from dialplan.snapshot import Route, Snapshot
from dialplan.views import (
    AclView,
    CarrierView,
    ClientView,
    DdiView,
    ExtensionView,
    TerminalView,
)


@dataclass
class MemoryDirectory:
    """Answers the pipeline's questions from lists."""

    terminals: list[TerminalView] = field(default_factory=list)
    carriers: list[CarrierView] = field(default_factory=list)
    ddis: list[DdiView] = field(default_factory=list)
    extensions: list[ExtensionView] = field(default_factory=list)
    acls: list[AclView] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    ddi_rules: list[DdiRuleView] = field(default_factory=list)
    profiles: dict[int, list[RatingProfileView]] = field(default_factory=dict)
    """Rating profiles by client id."""
    balances: dict[int, Decimal] = field(default_factory=dict)
    overrides: dict[int, frozenset[tuple[str, str]]] = field(default_factory=dict)
    calls: dict[int, int] = field(default_factory=dict)
    """Live external calls by client id."""
    spending: dict[tuple[int, date], Decimal] = field(default_factory=dict)
    """Spend by (client id, local day)."""
    """(sound, language) pairs a client has its own audio for, by client id."""
    emergency: list[tuple[str, str]] = field(default_factory=list)
    """The platform's emergency numbers: (country, number)."""

    scopes: int = 0
    """How many calls were decided (each opens one scope)."""

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        self.scopes += 1
        yield

    def snapshot(self) -> Snapshot:
        """The lists as the service holds its configuration: built afresh per lookup, so a
        test may change them between calls."""
        return Snapshot(
            terminals=self.terminals,
            carriers=self.carriers,
            ddis=self.ddis,
            extensions=self.extensions,
            acls=self.acls,
            routes=self.routes,
            ddi_rules=self.ddi_rules,
            profiles=self.profiles,
            overrides=self.overrides,
            emergency=self.emergency,
        )

    async def terminal(self, endpoint: str) -> TerminalView | None:
        return self.snapshot().terminal(endpoint)

    async def carrier(self, endpoint: str) -> CarrierView | None:
        return self.snapshot().carrier(endpoint)

    async def ddi(self, e164: str) -> DdiView | None:
        return self.snapshot().ddi(e164)

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return self.snapshot().extension(client, number)

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return self.snapshot().corporation_extension(client, number)

    async def call_acl(self, acl_id: int) -> AclView | None:
        return self.snapshot().call_acl(acl_id)

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        return self.snapshot().outbound_carrier(client, e164)

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        return self.snapshot().ddi_rule(rule_id)

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        return self.snapshot().rating_profiles(client, e164)

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        return self.snapshot().locution_overrides(client)

    async def emergency_number(self, client: ClientView, dialled: str) -> bool:
        return self.snapshot().emergency_number(client, dialled)

    async def balance(self, client: ClientView) -> Decimal:
        return self.balances.get(client.id, Decimal(0))

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        return self.calls.get(client.id, 0)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        return self.spending.get((client.id, day), Decimal(0))
