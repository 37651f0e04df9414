"""What a client owns through the API -- terminals, extensions, DDIs, authorized sources and
client admins: listed, read, created, changed and removed in the client's provisioning
document and written back by the provisioning loader, so the same validation (one line
naming the field), the same transaction (all or nothing) and the same hashing (a terminal's
password becomes its digest, an admin's its scrypt hash) apply. Secrets are accepted on
write and never returned; each change is audited with its secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import ClientFacts, Principal, Verb
from callcontrol.api.context import Api, Caller, Context, allowed
from callcontrol.api.settings import client_document
from dialplan.errors import ProvisioningError
from models.admins import AuditNote
from models.provisioning.load import load_text
from models.provisioning.schema_client import ClientDoc

MASK = "********"
NewItem = Annotated[Any, Body(description="The new item, as the provisioning document has it.")]
Changes = Annotated[Any, Body(description="The fields to change (null clears one).")]


@dataclass(frozen=True, slots=True)
class Owned:
    """One kind of thing a client owns: its URL ``path``, the document ``field`` holding
    the list, the ``key`` naming an item (None: the items are plain strings), the access
    ``section``, the ``secrets`` written in clear and the ``digests`` the export keeps."""

    path: str
    field: str
    key: str | None
    section: str
    secrets: tuple[str, ...] = ()
    digests: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The item's key as an API answer names it."""
        return self.key or "source"


OWNED: dict[str, Owned] = {
    owned.path: owned
    for owned in (
        Owned("terminals", "terminals", "name", "terminals", ("password",), ("ha1",)),
        Owned("extensions", "extensions", "number", "extensions"),
        Owned("ddis", "ddis", "e164", "ddis"),
        # The source filter is a client setting: the "client" section decides.
        Owned("authorized-sources", "authorized_sources", None, "client"),
        # Client admins belong to the client's settings too; see ``manages_admins``.
        Owned("admins", "admins", "username", "client", ("password",), ("password_hash",)),
    )
}


class OwnedError(Exception):
    """A refused change: ``status`` (404, 409 or 422) and the one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def manages_admins(who: Principal) -> bool:
    """Only an unrestricted administrator creates, changes or removes client admins: a
    restricted one could otherwise give an admin more than it holds itself."""
    return not who.restricted


def public(owned: Owned, item: Any) -> dict[str, Any]:
    """An item as an answer shows it: no secret, no digest."""
    if owned.key is None:
        return {"source": item}
    return {k: v for k, v in item.items() if k not in owned.secrets + owned.digests}


def masked(owned: Owned, item: Any) -> dict[str, Any] | None:
    """An item as the audit trail keeps it: each secret or digest that is set masked."""
    if item is None:
        return None
    if owned.key is None:
        return {"source": item}
    return {
        k: MASK if k in owned.secrets + owned.digests and v is not None else v
        for k, v in item.items()
    }


def key_of(owned: Owned, item: Any) -> str:
    return str(item if owned.key is None else item[owned.key])


async def items(engine: AsyncEngine, client_id: int, owned: Owned) -> list[Any]:
    """The client's items of this kind, as its provisioning document lists them."""
    node = await client_document(engine, client_id)
    return list(node.get(owned.field, []))


def find(owned: Owned, listed: list[Any], key: str) -> int:
    for index, item in enumerate(listed):
        if key_of(owned, item) == key:
            return index
    raise OwnedError(404, f"no {owned.path} {key}")


def _item_from(owned: Owned, body: dict[str, Any]) -> Any:
    if owned.key is None:
        unknown = sorted(set(body) - {"source"})
        if unknown:
            raise OwnedError(422, f"{unknown[0]}: not a field of an authorized source")
        source = body.get("source")
        if not isinstance(source, str):
            raise OwnedError(422, "source: give the address or network (CIDR) as a string")
        return source
    return dict(body)


async def create(
    engine: AsyncEngine, who: Principal, client_id: int, brand_id: int, owned: Owned, body: Any
) -> dict[str, Any]:
    """Add an item; its public form."""
    item = _item_from(owned, _object(body))
    node = await client_document(engine, client_id)
    listed = list(node.get(owned.field, []))
    if owned.key is not None and owned.key not in item:
        raise OwnedError(422, f"{owned.key}: field required")
    key = key_of(owned, item)
    if any(key_of(owned, old) == key for old in listed):
        raise OwnedError(409, f"{owned.path} {key} exists already")
    listed.append(item)
    await _write(engine, who, client_id, brand_id, owned, node, listed, key, None, item)
    return public(owned, item)


async def update(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    brand_id: int,
    owned: Owned,
    key: str,
    body: Any,
) -> dict[str, Any]:
    """Change an item's fields (``null`` clears one; a new secret replaces the digest)."""
    changes = _object(body)
    node = await client_document(engine, client_id)
    listed = list(node.get(owned.field, []))
    index = find(owned, listed, key)
    before = listed[index]
    if owned.key is None:
        item: Any = _item_from(owned, changes)
    else:
        if owned.key in changes and str(changes[owned.key]) != key:
            raise OwnedError(422, f"{owned.key}: cannot be changed (remove and create)")
        item = {**before, **changes}
        if any(changes.get(secret) is not None for secret in owned.secrets):
            for digest in owned.digests:
                item.pop(digest, None)
        item = {k: v for k, v in item.items() if v is not None}
    listed[index] = item
    new_key = key_of(owned, item)
    if new_key != key and any(key_of(owned, old) == new_key for old in listed[:index]):
        raise OwnedError(409, f"{owned.path} {new_key} exists already")
    await _write(engine, who, client_id, brand_id, owned, node, listed, key, before, item)
    return public(owned, item)


async def delete(
    engine: AsyncEngine, who: Principal, client_id: int, brand_id: int, owned: Owned, key: str
) -> None:
    node = await client_document(engine, client_id)
    listed = list(node.get(owned.field, []))
    index = find(owned, listed, key)
    before = listed.pop(index)
    await _write(engine, who, client_id, brand_id, owned, node, listed, key, before, None)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise OwnedError(422, "body: give a JSON object")
    return body


async def _write(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    brand_id: int,
    owned: Owned,
    node: dict[str, Any],
    listed: list[Any],
    key: str,
    before: Any,
    after: Any,
) -> None:
    """The client document with ``listed`` in place, validated and loaded, audited."""
    merged = {**node, owned.field: listed}
    # Calls move the balance: writing back the value read a moment ago would undo them.
    merged.pop("balance", None)
    try:
        checked = ClientDoc.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise OwnedError(422, _where(owned, listed, error["loc"], error["msg"])) from None
    dumped = checked.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    action = "create" if before is None else "delete" if after is None else "update"
    note = AuditNote(
        actor_kind=who.kind,
        actor=who.username,
        action=f"{owned.field}.{action}",
        target=f"{client_id}/{key}",
        brand_id=brand_id,
        client_id=client_id,
        before=masked(owned, before),
        after=masked(owned, after),
    )
    try:
        await load_text(
            engine, json.dumps({"clients": [dumped]}), f"api:{who.username}", audit=note
        )
    except ProvisioningError as exc:
        raise OwnedError(422, str(exc).replace("clients[0].", "")) from None


def _where(owned: Owned, listed: list[Any], loc: tuple[Any, ...], message: str) -> str:
    """``terminals[desk-1].password: ...`` rather than a position in a list."""
    parts = [str(part) for part in loc]
    if len(parts) >= 2 and parts[0] == owned.field and parts[1].isdigit():
        index = int(parts[1])
        name = key_of(owned, listed[index]) if index < len(listed) else parts[1]
        head = f"{owned.field}[{name}]"
        rest = [p for p in parts[2:] if p not in ("function-after", "TerminalDoc")]
        return ".".join([head, *rest]) + f": {message}"
    return ".".join(parts) + f": {message}"


def install(app: FastAPI) -> None:
    """The five sections' routes: list, read, create, update, delete each."""
    for owned in OWNED.values():
        _install_one(app, owned)


def _install_one(app: FastAPI, owned: Owned) -> None:
    base = f"/api/clients/{{client_id}}/{owned.path}"
    one = f"{base}/{{key:path}}" if owned.key is None else f"{base}/{{key}}"
    tags: list[str | Enum] = [owned.path]

    async def gate(context: Api, who: Principal, client_id: int, verb: Verb) -> ClientFacts:
        facts = await allowed(context, who, client_id, owned.section, verb)
        if owned.path == "admins" and verb != "read" and not manages_admins(who):
            raise HTTPException(403, f"{who.username} may not {verb} client admins")
        return facts

    async def listing(client_id: int, who: Caller, context: Context) -> list[dict[str, Any]]:
        await gate(context, who, client_id, "read")
        return [public(owned, item) for item in await items(context.engine, client_id, owned)]

    async def read(client_id: int, key: str, who: Caller, context: Context) -> dict[str, Any]:
        await gate(context, who, client_id, "read")
        listed = await items(context.engine, client_id, owned)
        try:
            return public(owned, listed[find(owned, listed, key)])
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None

    async def created(
        client_id: int,
        who: Caller,
        context: Context,
        body: NewItem,
    ) -> dict[str, Any]:
        facts = await gate(context, who, client_id, "create")
        try:
            return await create(context.engine, who, client_id, facts.brand_id, owned, body)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None

    async def updated(
        client_id: int,
        key: str,
        who: Caller,
        context: Context,
        body: Changes,
    ) -> dict[str, Any]:
        facts = await gate(context, who, client_id, "update")
        try:
            return await update(context.engine, who, client_id, facts.brand_id, owned, key, body)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None

    async def deleted(client_id: int, key: str, who: Caller, context: Context) -> Response:
        facts = await gate(context, who, client_id, "delete")
        try:
            await delete(context.engine, who, client_id, facts.brand_id, owned, key)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None
        return Response(status_code=204)

    name = owned.path.replace("-", "_")
    app.get(base, tags=tags, name=f"list_{name}", summary=f"List the client's {owned.path}")(
        listing
    )
    app.post(base, tags=tags, status_code=201, name=f"create_{name}", summary=f"Add {owned.path}")(
        created
    )
    app.get(one, tags=tags, name=f"read_{name}", summary=f"Read one of {owned.path}")(read)
    app.patch(one, tags=tags, name=f"update_{name}", summary=f"Change one of {owned.path}")(updated)
    app.delete(
        one, tags=tags, status_code=204, name=f"delete_{name}", summary=f"Remove {owned.path}"
    )(deleted)
