"""The configuration a decision reads, held in memory: one immutable snapshot, one index per
question the pipeline asks (DESIGN §2: the core decides on plain data).

The shell loads a snapshot from the shared database (``models.snapshot``) and swaps in a new
one when provisioning changes the configuration; tests build one from plain views. The live
figures (balances, live calls, the day's spend) are not configuration: a :class:`Counters`
answers them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from dialplan.ddi import DdiRuleView
from dialplan.rating import RateView, RatingProfileView
from dialplan.views import AclView, CarrierView, ClientView, DdiView, ExtensionView, TerminalView


@dataclass(frozen=True, slots=True)
class Route:
    """An outbound route: calls of ``brand_id``'s clients (of ``client_id`` only, when set)
    to numbers starting with ``prefix`` (digits) leave through ``carrier``."""

    carrier: CarrierView
    prefix: str = ""
    priority: int = 0
    client_id: int | None = None
    brand_id: int = 1


@dataclass(frozen=True, slots=True)
class Size:
    """How much a snapshot holds (the benchmark prints it)."""

    clients: int
    terminals: int
    ddis: int
    extensions: int
    routes: int
    rates: int

    def text(self) -> str:
        return (
            f"{self.clients:,} clients, {self.terminals:,} terminals,"
            f" {self.extensions:,} extensions, {self.ddis:,} DDIs, {self.rates:,} rates"
        )


NARROWED = 4096
"""Numbers whose rating profiles a snapshot keeps built (the same numbers are called again
and again; a snapshot is never changed, so what it built stays true)."""


class Snapshot:
    """Every lookup is a dictionary access or a walk over the prefixes of one number."""

    def __init__(
        self,
        *,
        terminals: Iterable[TerminalView] = (),
        carriers: Iterable[CarrierView] = (),
        ddis: Iterable[DdiView] = (),
        extensions: Iterable[ExtensionView] = (),
        acls: Iterable[AclView] = (),
        routes: Iterable[Route] = (),
        ddi_rules: Iterable[DdiRuleView] = (),
        profiles: Mapping[int, Iterable[RatingProfileView]] | None = None,
        overrides: Mapping[int, frozenset[tuple[str, str]]] | None = None,
        emergency: Iterable[tuple[str, str]] = (),
        version: int = 0,
        loaded_at: float | None = None,
    ) -> None:
        self.version = version
        """The configuration's version (the database's counter) this snapshot was read at."""
        self.loaded_at = time.monotonic() if loaded_at is None else loaded_at
        self._terminals = {t.name: t for t in terminals}
        self._carriers = {c.endpoint: c for c in carriers}
        self._ddis = {d.e164: d for d in ddis}
        self._extensions: dict[tuple[int, str], ExtensionView] = {}
        self._siblings: dict[tuple[int, str], list[ExtensionView]] = {}
        for extension in extensions:
            client = extension.client
            self._extensions.setdefault((client.id, extension.number), extension)
            if client.corporation_id is not None:
                key = (client.corporation_id, extension.number)
                self._siblings.setdefault(key, []).append(extension)
        self._acls = {a.id: a for a in acls}
        self._rules = {r.id: r for r in ddi_rules}
        # Outbound routes by (brand, client or None), then by prefix: the best (lowest)
        # priority of each prefix, the first given on a tie.
        self._routes: dict[tuple[int, int | None], dict[str, Route]] = {}
        for route in routes:
            by_prefix = self._routes.setdefault((route.brand_id, route.client_id), {})
            known = by_prefix.get(route.prefix)
            if known is None or route.priority < known.priority:
                by_prefix[route.prefix] = route
        self._longest = max((len(p) for r in self._routes.values() for p in r), default=0)
        # Each plan's rates by prefix, so a number's candidates are found by its prefixes.
        self._profiles: dict[int, tuple[RatingProfileView, ...]] = {}
        self._rates: dict[int, dict[str, tuple[RateView, ...]]] = {}
        for client_id, listed in (profiles or {}).items():
            self._profiles[client_id] = tuple(listed)
            for profile in self._profiles[client_id]:
                plan = profile.plan
                if plan.id in self._rates:
                    continue
                rates: dict[str, list[RateView]] = {}
                for rate in plan.rates:
                    rates.setdefault(rate.prefix, []).append(rate)
                self._rates[plan.id] = {p: tuple(r) for p, r in rates.items()}
        self._narrowed: dict[tuple[int, str], tuple[RatingProfileView, ...]] = {}
        """``rating_profiles`` answers already built (bounded by ``NARROWED``)."""
        self._overrides = dict(overrides or {})
        self._emergency = frozenset(emergency)
        """(country, number) pairs: the platform's emergency numbers (DESIGN §3.5)."""

    @property
    def size(self) -> Size:
        clients = {t.client.id for t in self._terminals.values()}
        clients.update(d.client.id for d in self._ddis.values())
        clients.update(client_id for client_id, _ in self._extensions)
        return Size(
            clients=len(clients),
            terminals=len(self._terminals),
            ddis=len(self._ddis),
            extensions=len(self._extensions),
            routes=sum(len(r) for r in self._routes.values()),
            rates=sum(len(r) for plan in self._rates.values() for r in plan.values()),
        )

    def age(self) -> float:
        """Seconds since this snapshot was loaded."""
        return time.monotonic() - self.loaded_at

    def terminal(self, endpoint: str) -> TerminalView | None:
        return self._terminals.get(endpoint)

    def carrier(self, endpoint: str) -> CarrierView | None:
        return self._carriers.get(endpoint)

    def ddi(self, e164: str) -> DdiView | None:
        return self._ddis.get(e164)

    def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return self._extensions.get((client.id, number))

    def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        if client.corporation_id is None:
            return None
        siblings = self._siblings.get((client.corporation_id, number), ())
        return next((e for e in siblings if e.client.id != client.id), None)

    def call_acl(self, acl_id: int) -> AclView | None:
        return self._acls.get(acl_id)

    def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        """The client's own routes before its brand's; the longest prefix, then the lowest
        priority."""
        digits = e164.lstrip("+")
        for owner in (client.id, None):
            by_prefix = self._routes.get((client.brand_id, owner))
            if not by_prefix:
                continue
            for length in range(min(len(digits), self._longest), -1, -1):
                route = by_prefix.get(digits[:length])
                if route is not None:
                    return route.carrier
        return None

    def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        return self._rules.get(rule_id)

    def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        """Every profile of the client, each plan holding only the rates whose prefix is a
        prefix of ``e164`` (the empty prefix included), shortest prefix first."""
        profiles = self._profiles.get(client.id, ())
        if not profiles:
            return ()
        key = (client.id, e164)
        found = self._narrowed.get(key)
        if found is not None:
            return found
        digits = e164.lstrip("+")
        prefixes = [digits[:length] for length in range(len(digits) + 1)]
        narrowed = []
        for profile in profiles:
            by_prefix = self._rates.get(profile.plan.id, {})
            rates = tuple(rate for prefix in prefixes for rate in by_prefix.get(prefix, ()))
            narrowed.append(replace(profile, plan=replace(profile.plan, rates=rates)))
        if len(self._narrowed) >= NARROWED:  # numbers are the callers' to choose: bounded
            self._narrowed.clear()
        found = self._narrowed[key] = tuple(narrowed)
        return found

    def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        return self._overrides.get(client.id, frozenset())

    def emergency_number(self, client: ClientView, dialled: str) -> bool:
        """Whether ``dialled`` is an emergency number of the client's country."""
        return (client.country, dialled) in self._emergency


class Counters(Protocol):
    """The live figures a decision reads: never part of a snapshot, they change with calls."""

    def scope(self) -> AbstractAsyncContextManager[None]:
        """Around one call's reads: lets an implementation answer them from one round trip."""

    async def balance(self, client: ClientView) -> Decimal: ...

    async def active_calls(self, client: ClientView, now: datetime) -> int: ...

    async def spent(self, client: ClientView, day: date) -> Decimal: ...


class SnapshotSource(Protocol):
    """Where the snapshot in force comes from (the shell's holder reloads it on change)."""

    async def current(self) -> Snapshot: ...


class SnapshotDirectory:
    """:class:`dialplan.directory.Directory` over the snapshot in force and live counters."""

    def __init__(self, source: SnapshotSource, counters: Counters) -> None:
        self.source = source
        self.counters = counters

    def scope(self) -> AbstractAsyncContextManager[None]:
        return self.counters.scope()

    async def terminal(self, endpoint: str) -> TerminalView | None:
        return (await self.source.current()).terminal(endpoint)

    async def carrier(self, endpoint: str) -> CarrierView | None:
        return (await self.source.current()).carrier(endpoint)

    async def ddi(self, e164: str) -> DdiView | None:
        return (await self.source.current()).ddi(e164)

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return (await self.source.current()).extension(client, number)

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return (await self.source.current()).corporation_extension(client, number)

    async def call_acl(self, acl_id: int) -> AclView | None:
        return (await self.source.current()).call_acl(acl_id)

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        return (await self.source.current()).outbound_carrier(client, e164)

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        return (await self.source.current()).ddi_rule(rule_id)

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        return (await self.source.current()).rating_profiles(client, e164)

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        return (await self.source.current()).locution_overrides(client)

    async def emergency_number(self, client: ClientView, dialled: str) -> bool:
        return (await self.source.current()).emergency_number(client, dialled)

    async def balance(self, client: ClientView) -> Decimal:
        return await self.counters.balance(client)

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        return await self.counters.active_calls(client, now)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        return await self.counters.spent(client, day)
