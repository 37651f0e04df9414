"""An in-memory Directory built from plain data, for testing the core without a database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal

from dialplan.ddi import DdiRuleView
from dialplan.rating import RatingProfileView
from dialplan.views import (
    AclView,
    CarrierView,
    ClientView,
    DdiView,
    ExtensionView,
    TerminalView,
)


@dataclass(frozen=True)
class Route:
    carrier: CarrierView
    prefix: str = ""
    priority: int = 0
    client_id: int | None = None
    brand_id: int = 1


@dataclass
class MemoryDirectory:
    """Answers the pipeline's questions from lists; every lookup is a plain scan."""

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

    scopes: int = 0
    """How many calls were decided (each opens one scope)."""

    @asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        self.scopes += 1
        yield

    async def terminal(self, endpoint: str) -> TerminalView | None:
        return next((t for t in self.terminals if t.name == endpoint), None)

    async def carrier(self, endpoint: str) -> CarrierView | None:
        return next((c for c in self.carriers if c.endpoint == endpoint), None)

    async def ddi(self, e164: str) -> DdiView | None:
        return next((d for d in self.ddis if d.e164 == e164), None)

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return next(
            (e for e in self.extensions if e.client.id == client.id and e.number == number), None
        )

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return next(
            (
                e
                for e in self.extensions
                if e.number == number
                and e.client.id != client.id
                and e.client.corporation_id is not None
                and e.client.corporation_id == client.corporation_id
            ),
            None,
        )

    async def call_acl(self, acl_id: int) -> AclView | None:
        return next((a for a in self.acls if a.id == acl_id), None)

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        digits = e164.lstrip("+")
        candidates = [
            r
            for r in self.routes
            if r.brand_id == client.brand_id
            and r.client_id in (None, client.id)
            and digits.startswith(r.prefix)
        ]
        if not candidates:
            return None
        best = min(candidates, key=lambda r: (r.client_id is None, -len(r.prefix), r.priority))
        return best.carrier

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        return next((r for r in self.ddi_rules if r.id == rule_id), None)

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        digits = e164.lstrip("+")
        return tuple(
            replace(
                profile,
                plan=replace(
                    profile.plan,
                    rates=tuple(r for r in profile.plan.rates if digits.startswith(r.prefix)),
                ),
            )
            for profile in self.profiles.get(client.id, [])
        )

    async def balance(self, client: ClientView) -> Decimal:
        return self.balances.get(client.id, Decimal(0))

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        return self.overrides.get(client.id, frozenset())

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        return self.calls.get(client.id, 0)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        return self.spending.get((client.id, day), Decimal(0))
