"""A client's settings through the API: read from the provisioning export, changed through
the provisioning loader -- the same validation (one line naming the field), the same
transaction (all or nothing), and the change audited in it with before and after."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import Principal
from callcontrol.api.writes import one_writer
from dialplan.errors import ProvisioningError
from models.provisioning.export import export_one_client
from models.provisioning.load import Audit, load_text
from models.provisioning.schema_client import ClientDoc

SETTINGS: frozenset[str] = frozenset(ClientDoc.model_fields) - {
    "outgoing_ddi_rule",
    "outgoing_ddi_rules",
    "users",
    "terminals",
    "extensions",
    "ddis",
    "match_lists",
    "call_acls",
    "rating_profiles",
    "admins",
    "templates",
}
"""A client's own settings (DESIGN §3.1); what it owns has sections of its own."""
FIXED: frozenset[str] = frozenset({"brand", "name"})
"""Settings the API never changes: a client does not move between brands, and the loader
knows a client by its brand and name (a new name would be another client)."""


_OTHER_CLIENT = re.compile(r"\b(of|by) client ('[^']*'|\"[^\"]*\")")


def untold(who: Principal, message: str) -> str:
    """A loader's ``message`` as ``who`` may read it: a brand or client admin is not told
    which other client holds a DDI, a terminal name or a login it tried to take."""
    return message if who.kind == "god" else _OTHER_CLIENT.sub(r"\1 another client", message)


async def load_client(
    engine: AsyncEngine, who: Principal, document: dict[str, Any], note: Audit, seen: int
) -> None:
    """Load one client's ``document`` (back) whole, audited as ``note``, only if the
    configuration is still at version ``seen`` (else ``ConfigChanged``)."""
    await load_text(
        engine,
        json.dumps({"clients": [document]}),
        f"api:{who.username}",
        audit=note,
        expect_version=seen,
    )


class SettingsError(Exception):
    """A change refused by validation: ``field`` and the one-line ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def client_document(engine: AsyncEngine, client_id: int) -> dict[str, Any]:
    """The client as its provisioning document node (defaults left out)."""
    node = await export_one_client(engine, client_id)
    if node is None:
        raise SettingsError(f"no client {client_id}")
    return node


def settings_of(node: dict[str, Any], visible: frozenset[str]) -> dict[str, Any]:
    """The settings among ``visible``, defaults included, as JSON values."""
    full = ClientDoc.model_validate(node).model_dump(mode="json", by_alias=True)
    return {name: full[name] for name in sorted(SETTINGS & visible) if name in full}


@one_writer
async def change(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    seen: int,
    brand_id: int,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """Apply ``changes`` (already allowed for ``who``) through the provisioning loader,
    to the document as it is at version ``seen`` or not at all (:mod:`.writes`); the
    settings after. SettingsError (one line) when the result is invalid."""
    node = await client_document(engine, client_id)
    merged = {**node, **changes}
    if "balance" not in changes:
        # Calls move the balance: writing back the value read a moment ago would undo them.
        merged.pop("balance", None)
    try:
        checked = ClientDoc.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise SettingsError(f"{where}: {error['msg']}") from None
    dumped = checked.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    note = who.note(
        "client.update",
        str(client_id),
        brand_id=brand_id,
        client_id=client_id,
        before=settings_of(node, SETTINGS),
        after=settings_of(dumped, SETTINGS),
    )
    try:
        await load_client(engine, who, dumped, note, seen)
    except ProvisioningError as exc:
        raise SettingsError(untold(who, str(exc).replace("clients[0].", ""))) from None
    return settings_of(dumped, SETTINGS)
