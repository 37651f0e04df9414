"""The configuration's version: whatever changes the configuration raises it in the same
transaction, so running servers know when to reload their snapshot (``models.snapshot``).

On PostgreSQL the change is also announced (``NOTIFY callcontrol_config``, delivered at
commit) so listening servers reload at once; on MariaDB and SQLite they poll the version.

A writer that read something and writes it back changed (the API's writes of a client's
document) read the version first and :func:`claim` it: the write goes through only if
nothing changed the configuration meanwhile, else :class:`ConfigChanged`.
"""

from __future__ import annotations

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.platform import ConfigVersion

CHANNEL = "callcontrol_config"
"""The PostgreSQL notification channel a configuration change is announced on."""

_VERSION = select(ConfigVersion.version).where(ConfigVersion.id == 1)


class ConfigChanged(Exception):
    """The configuration's version is no longer ``expected``: a change committed since it
    was read, so what was read then may be stale. Nothing was written; read again."""

    def __init__(self, expected: int) -> None:
        super().__init__(f"the configuration changed since version {expected}")
        self.expected = expected


async def version(connection: AsyncConnection) -> int:
    """The configuration's version now (0 before any change was recorded)."""
    return int(await connection.scalar(_VERSION) or 0)


async def current(engine: AsyncEngine) -> int:
    """:func:`version` on a connection of its own."""
    async with engine.connect() as connection:
        return await version(connection)


async def bump(connection: AsyncConnection) -> None:
    """Record a configuration change, in the caller's transaction: running servers reload
    once it commits (a PostgreSQL notification wakes the listening ones at once)."""
    raised = await connection.execute(
        update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version + 1)
    )
    if not raised.rowcount:
        await connection.execute(insert(ConfigVersion).values(id=1, version=1))
    await _announce(connection)


async def claim(connection: AsyncConnection, expected: int) -> None:
    """:func:`bump` the version only if it is still ``expected``, else raise ConfigChanged.

    One statement both checks and raises it, and the row stays locked until the caller's
    transaction ends (on SQLite the database's write lock, taken by that statement): a
    writer that claims before it writes anything cannot interleave with another claimant,
    and one waiting on the lock finds the version raised once it gets the row."""
    raised = await connection.execute(
        update(ConfigVersion)
        .where(ConfigVersion.id == 1, ConfigVersion.version == expected)
        .values(version=expected + 1)
    )
    if not raised.rowcount:
        if expected != 0 or await version(connection) != 0:
            raise ConfigChanged(expected)
        try:  # no change recorded yet: the first claimant inserts the row
            await connection.execute(insert(ConfigVersion).values(id=1, version=1))
        except IntegrityError as exc:  # another one did first
            raise ConfigChanged(expected) from exc
    await _announce(connection)


async def _announce(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"NOTIFY {CHANNEL}"))
