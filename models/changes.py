"""The configuration's version: whatever changes the configuration raises it in the same
transaction, so running servers know when to reload their snapshot (``models.snapshot``).

On PostgreSQL the change is also announced (``NOTIFY callcontrol_config``, delivered at
commit) so listening servers reload at once; on MariaDB and SQLite they poll the version.
"""

from __future__ import annotations

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from models.platform import ConfigVersion

CHANNEL = "callcontrol_config"
"""The PostgreSQL notification channel a configuration change is announced on."""

_VERSION = select(ConfigVersion.version).where(ConfigVersion.id == 1)


async def version(connection: AsyncConnection) -> int:
    """The configuration's version now (0 before any change was recorded)."""
    return int(await connection.scalar(_VERSION) or 0)


async def bump(connection: AsyncConnection) -> None:
    """Record a configuration change, in the caller's transaction: running servers reload
    once it commits (a PostgreSQL notification wakes the listening ones at once)."""
    raised = await connection.execute(
        update(ConfigVersion).where(ConfigVersion.id == 1).values(version=ConfigVersion.version + 1)
    )
    if not raised.rowcount:
        await connection.execute(insert(ConfigVersion).values(id=1, version=1))
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"NOTIFY {CHANNEL}"))
