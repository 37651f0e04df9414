"""Checks of the administrators a document declares: client admins and brand administrators.

Every administrator of the platform -- god, brand and client -- logs in with one
username, so a name is unique across the three kinds. A brand whose node has an
``admins`` key gives up its stored administrators (the load replaces them), as a listed
client gives up its stored admins; every other stored login stays taken.
"""

from __future__ import annotations

from models.provisioning.checks_client import check_admins, fail
from models.provisioning.schema_client import Document
from models.provisioning.world import ClientFacts, World

GOD_OR_BRAND = "the login of a god or brand administrator"
"""How a client admin's clash with a platform administrator reads (the API says it too)."""


def check_brand_admins(document: Document, world: World, unlisted: list[ClientFacts]) -> set[str]:
    """Check each brand's ``admins``; return the god and brand administrators' logins once
    the document is loaded (a client admin may take none of them)."""
    replaced = {brand.name for brand in document.brands if brand.admins is not None}
    stored = {
        name: _owner(world.brand_admins.get(name))
        for name in world.platform_logins
        if world.brand_admins.get(name) not in replaced
    }
    clients = {facts.id: facts.name for facts in unlisted}
    declared: dict[str, str] = {}  # username -> brand name
    for index, brand in enumerate(document.brands):
        if brand.admins is None:
            continue
        path = f"brands[{index}].admins"
        check_admins(brand.admins, path)
        for number, admin in enumerate(brand.admins):
            name = admin.username
            owner = stored.get(name) or (_owner(declared[name]) if name in declared else None)
            client = clients.get(world.admins.get(name, 0))
            if owner is None and client is not None:
                owner = f"a login of client {client!r}"
            if owner is not None:
                fail(f"{path}[{number}].username", f"{name} is already {owner}")
            declared[name] = brand.name
    return set(stored) | set(declared)


def _owner(brand: str | None) -> str:
    """Whose login a platform administrator's is: a god's (no brand) or a brand's."""
    if brand is None:
        return "the login of a god administrator"
    return f"the login of an administrator of brand {brand!r}"
