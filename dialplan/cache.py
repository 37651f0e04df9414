"""A Directory that remembers answers for a while: configuration is read far more than written.

Views are immutable, so sharing one between calls is safe. A change made in the
shared database reaches a running service after at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from dialplan.ddi import DdiRuleView
from dialplan.directory import Directory
from dialplan.rating import RatingProfileView
from dialplan.views import AclView, CarrierView, ClientView, DdiView, ExtensionView, TerminalView

T = TypeVar("T")


class CachedDirectory:
    """Wraps a Directory; answers (None included) are kept ``ttl`` seconds, at most ``size``."""

    def __init__(
        self,
        inner: Directory,
        ttl: float,
        size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def scope(self) -> AbstractAsyncContextManager[None]:
        return self.inner.scope()

    async def _remember(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        now = self.clock()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            self.hits += 1
            self._entries.move_to_end(key)
            value: T = entry[1]
            return value
        self.misses += 1
        loaded = await load()
        self._entries[key] = (now + self.ttl, loaded)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return loaded

    async def terminal(self, endpoint: str) -> TerminalView | None:
        return await self._remember(("terminal", endpoint), lambda: self.inner.terminal(endpoint))

    async def carrier(self, endpoint: str) -> CarrierView | None:
        return await self._remember(("carrier", endpoint), lambda: self.inner.carrier(endpoint))

    async def ddi(self, e164: str) -> DdiView | None:
        return await self._remember(("ddi", e164), lambda: self.inner.ddi(e164))

    async def extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return await self._remember(
            ("extension", client.id, number), lambda: self.inner.extension(client, number)
        )

    async def corporation_extension(self, client: ClientView, number: str) -> ExtensionView | None:
        return await self._remember(
            ("corporation_extension", client.id, number),
            lambda: self.inner.corporation_extension(client, number),
        )

    async def call_acl(self, acl_id: int) -> AclView | None:
        return await self._remember(("call_acl", acl_id), lambda: self.inner.call_acl(acl_id))

    async def outbound_carrier(self, client: ClientView, e164: str) -> CarrierView | None:
        return await self._remember(
            ("outbound_carrier", client.id, e164),
            lambda: self.inner.outbound_carrier(client, e164),
        )

    async def ddi_rule(self, rule_id: int) -> DdiRuleView | None:
        return await self._remember(("ddi_rule", rule_id), lambda: self.inner.ddi_rule(rule_id))

    async def rating_profiles(self, client: ClientView, e164: str) -> tuple[RatingProfileView, ...]:
        return await self._remember(
            ("rating_profiles", client.id, e164),
            lambda: self.inner.rating_profiles(client, e164),
        )

    async def balance(self, client: ClientView) -> Decimal:
        return await self.inner.balance(client)

    async def locution_overrides(self, client: ClientView) -> frozenset[tuple[str, str]]:
        return await self._remember(
            ("locution_overrides", client.id), lambda: self.inner.locution_overrides(client)
        )

    async def active_calls(self, client: ClientView, now: datetime) -> int:
        return await self.inner.active_calls(client, now)

    async def spent(self, client: ClientView, day: date) -> Decimal:
        return await self.inner.spent(client, day)
