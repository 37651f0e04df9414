"""Write the brands' administrators of a checked document (one stage of a load).

Only brands whose node has an ``admins`` key are touched: their administrators become
exactly the listed ones, keyed by username across those brands (so one may move between
them and keep its id, tokens and invitations). An administrator no longer listed is
deleted with the logins (the first deletion wave), and the database removes its
privileges, tokens and invitations with it, as it does a dropped client admin's.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from models.admins import PlatformAdmin
from models.provisioning.schema_client import Document
from models.provisioning.sync import Written, upsert
from models.provisioning.write_owned import admin_secrets, admin_values, sync_privileges


async def write_brand_admins(session: AsyncSession, document: Document, written: Written) -> None:
    """After :func:`~models.provisioning.write_brand.write_brands` (brands have ids)."""
    listed = [doc for doc in document.brands if doc.admins is not None]
    if not listed:
        return
    ids = [written.brands[doc.name].id for doc in listed]
    stored = {
        row.username: row
        for row in await session.scalars(
            select(PlatformAdmin)
            .where(PlatformAdmin.role == "brand", PlatformAdmin.brand_id.in_(ids))
            .options(selectinload(PlatformAdmin.privileges))
        )
    }
    secrets = await admin_secrets([a for doc in listed for a in doc.admins or []], stored)
    wanted: set[str] = set()
    for doc in listed:
        for admin in doc.admins or []:
            values = {
                "role": "brand",
                "brand_id": written.brands[doc.name].id,
                **admin_values(admin, secrets[admin.username]),
            }
            row = upsert(session, stored, admin.username, PlatformAdmin, values)
            sync_privileges(row.privileges, admin)
            wanted.add(admin.username)
    written.waves[0].extend(row for name, row in stored.items() if name not in wanted)
