"""Upsert helpers: make stored rows match the document by natural key.

Only attributes whose value differs are assigned, so an unchanged row is never
dirty, never updated, and keeps its id. Rows the document no longer has are
either dropped from their parent's collection at once (leaf rows: the ORM
deletes orphans) or handed back to the caller, who deletes them once nothing
points at them any more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession

from models.base import Base
from models.platform import NotificationTemplate
from models.tenants import Brand, Client

M = TypeVar("M", bound=Base)
D = TypeVar("D")
K = TypeVar("K")

Values = dict[str, Any]


def first(pair: tuple[K, Any]) -> K:
    """The key of a ``(key, values)`` pair, for :func:`sync` over prepared pairs."""
    return pair[0]


def second(pair: tuple[Any, Values]) -> Values:
    """The values of a ``(key, values)`` pair."""
    return pair[1]


def fresh(model: Callable[..., M], values: Values) -> M:
    """A new row whose collections are loaded (empty), so later stages can fill them."""
    row = model(**values)
    for relationship in inspect(type(row)).relationships:
        if relationship.uselist and relationship.key not in values:
            setattr(row, relationship.key, [])
    return row


def assign(row: Base, values: Mapping[str, Any]) -> None:
    """Set each attribute that differs from ``values``."""
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def upsert(
    session: AsyncSession, rows: dict[K, M], key: K, model: Callable[..., M], values: Values
) -> M:
    """The row of ``key`` in ``rows``, updated to ``values``, or a new one added to the session."""
    row = rows.get(key)
    if row is None:
        row = fresh(model, values)
        session.add(row)
        rows[key] = row
    else:
        assign(row, values)
    return row


def sync(
    collection: list[M],
    items: Iterable[D],
    row_key: Callable[[M], K],
    item_key: Callable[[D], K],
    model: Callable[..., M],
    values: Callable[[D], Values],
    *,
    keep_leftovers: list[Base] | None = None,
) -> dict[K, M]:
    """Make a loaded relationship ``collection`` hold one row per item, by key.

    Rows without an item are removed from the collection (deleted on the next
    flush), or, with ``keep_leftovers``, left in place and appended to it for the
    caller to delete later. Returns the rows by key.
    """
    existing = {row_key(row): row for row in collection}
    result: dict[K, M] = {}
    for item in items:
        key = item_key(item)
        row = existing.pop(key, None)
        if row is None:
            row = fresh(model, values(item))
            collection.append(row)
        else:
            assign(row, values(item))
        result[key] = row
    for row in existing.values():
        if keep_leftovers is None:
            collection.remove(row)
        else:
            keep_leftovers.append(row)
    return result


WAVES = 5
"""Leftovers are deleted in waves, each flushed before the next, children first:
0 logins, call ACLs and outgoing DDI rules; 1 DDIs; 2 terminals and extensions;
3 users, match lists and client templates; 4 the brands' corporations, carriers,
rating plan groups and templates."""


@dataclass
class Written:
    """Rows written so far, by natural key, for the later stages of one load."""

    servers: dict[str, int] = field(default_factory=dict)
    relay_sets: dict[str, int] = field(default_factory=dict)
    generic_templates: dict[str, NotificationTemplate] = field(default_factory=dict)
    brands: dict[str, Brand] = field(default_factory=dict)
    clients: dict[tuple[str, str], Client] = field(default_factory=dict)
    ddis: dict[str, int] = field(default_factory=dict)  # e164 digits -> id
    waves: list[list[Base]] = field(default_factory=lambda: [[] for _ in range(WAVES)])

    async def delete_leftovers(self, session: AsyncSession) -> None:
        for wave in self.waves:
            for row in wave:
                await session.delete(row)
            await session.flush()
