"""What a client owns through the API -- terminals, extensions, DDIs, authorized sources,
client admins, users, match lists, call ACLs, outgoing DDI rules and rating profiles (the
kinds: :mod:`callcontrol.api.kinds`): listed, read, created, changed and removed in the
client's provisioning document and written back by the provisioning loader, so the same
validation (one line naming the field), the same transaction (all or nothing) and the same
hashing (a terminal's password becomes its digest, an admin's its scrypt hash) apply;
a write that meets another writer's change starts over (:mod:`callcontrol.api.writes`).
Secrets are accepted on write and never returned; each change is audited with its secrets
masked."""

from __future__ import annotations

import json
import re
from enum import Enum
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import ClientFacts, Principal, Verb, manages_admins
from callcontrol.api.context import Api, Caller, Context, allowed
from callcontrol.api.invites import invite_added
from callcontrol.api.kinds import BY_FIELD, OWNED, Owned, OwnedError, key_of, masked, public
from callcontrol.api.settings import client_document, load_client, untold
from callcontrol.api.writes import one_writer
from dialplan.errors import ProvisioningError, one_line
from models.provisioning.schema_client import ClientDoc

MAX_ITEM = 65_536
"""The largest item a request writes, as JSON (a match list of a few thousand numbers)."""
NewItem = Annotated[Any, Body(description="The new item, as the provisioning document has it.")]
Changes = Annotated[Any, Body(description="The fields to change (null clears one).")]


async def items(engine: AsyncEngine, client_id: int, owned: Owned) -> list[Any]:
    """The client's items of this kind, as its provisioning document lists them."""
    return owned.take(await client_document(engine, client_id))


def find(owned: Owned, listed: list[Any], key: str) -> int:
    wanted = owned.normal(key)
    for index, item in enumerate(listed):
        if key_of(owned, item) == wanted:
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


@one_writer
async def create(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    seen: int,
    brand_id: int,
    owned: Owned,
    body: Any,
) -> dict[str, Any]:
    """Add an item; its public form."""
    item = _item_from(owned, _object(body))
    node = await client_document(engine, client_id)
    listed = owned.take(node)
    if owned.key is not None and owned.key not in item:
        raise OwnedError(422, f"{owned.key}: field required")
    key = key_of(owned, item)
    if any(key_of(owned, old) == key for old in listed):
        raise OwnedError(409, f"{owned.path} {_shown(item, owned)} exists already")
    listed = owned.settle([*listed, item], len(listed))
    item = listed[-1]
    await _write(engine, who, client_id, seen, brand_id, owned, node, listed, key, None, item)
    return public(owned, item)


@one_writer
async def update(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    seen: int,
    brand_id: int,
    owned: Owned,
    key: str,
    body: Any,
) -> dict[str, Any]:
    """Change an item's fields (``null`` clears one; a new secret replaces the digest)."""
    changes = _object(body)
    node = await client_document(engine, client_id)
    listed = owned.take(node)
    index = find(owned, listed, key)
    before = listed[index]
    key = key_of(owned, before)
    if owned.key is None:
        item: Any = _item_from(owned, changes)
    else:
        if owned.key in changes and owned.normal(str(changes[owned.key])) != key:
            raise OwnedError(422, f"{owned.key}: cannot be changed (remove and create)")
        item = {**before, **changes}
        if any(changes.get(secret) is not None for secret in owned.secrets):
            for digest in owned.digests:
                item.pop(digest, None)
        item = {k: v for k, v in item.items() if v is not None}
    listed[index] = item
    new_key = key_of(owned, item)
    if new_key != key and any(key_of(owned, old) == new_key for old in listed[:index]):
        raise OwnedError(409, f"{owned.path} {_shown(item, owned)} exists already")
    listed = owned.settle(listed, index)
    item = listed[index]
    await _write(engine, who, client_id, seen, brand_id, owned, node, listed, key, before, item)
    return public(owned, item)


@one_writer
async def delete(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    seen: int,
    brand_id: int,
    owned: Owned,
    key: str,
) -> None:
    node = await client_document(engine, client_id)
    listed = owned.take(node)
    index = find(owned, listed, key)
    before = listed.pop(index)
    key = key_of(owned, before)
    await _write(engine, who, client_id, seen, brand_id, owned, node, listed, key, before, None)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise OwnedError(422, "body: give a JSON object")
    if len(json.dumps(body)) > MAX_ITEM:
        # Each write re-validates and re-loads the whole client: one item stays small.
        raise OwnedError(413, f"body: one item is at most {MAX_ITEM} characters of JSON")
    return body


async def _write(
    engine: AsyncEngine,
    who: Principal,
    client_id: int,
    seen: int,
    brand_id: int,
    owned: Owned,
    node: dict[str, Any],
    listed: list[Any],
    key: str,
    before: Any,
    after: Any,
) -> None:
    """The client document with ``listed`` in place, validated and loaded (if the
    configuration is still at version ``seen``), audited."""
    merged = owned.put(node, listed)
    # Calls move the balance: writing back the value read a moment ago would undo them.
    merged.pop("balance", None)
    dumped = checked_document(merged)
    action = "create" if before is None else "delete" if after is None else "update"
    note = who.note(
        f"{owned.field}.{action}",
        f"{client_id}/{key}",
        brand_id=brand_id,
        client_id=client_id,
        before=masked(owned, before),
        after=masked(owned, after),
    )
    try:
        await load_client(engine, who, dumped, note, seen)
    except ProvisioningError as exc:
        raise refused(who, merged, exc) from None


def checked_document(merged: dict[str, Any]) -> dict[str, Any]:
    """The client document ``merged`` validated and dumped as the loader takes it; an
    OwnedError (422, one line naming the field) when it is invalid."""
    try:
        checked = ClientDoc.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise OwnedError(422, _where(merged, list(error["loc"]), error["msg"])) from None
    dumped: dict[str, Any] = checked.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return dumped


def refused(who: Principal, merged: dict[str, Any], exc: ProvisioningError) -> OwnedError:
    """The loader's refusal of the client document ``merged`` as ``who`` reads it: 422, one
    line naming the field (an item of a list by its key)."""
    if not exc.path.startswith("clients[0]"):
        return OwnedError(422, untold(who, str(exc)))
    parts: list[str | int] = [
        int(part) if part.isdigit() else part
        for part in re.findall(r"[^.\[\]]+", exc.path.removeprefix("clients[0]"))
    ]
    return OwnedError(422, _where(merged, parts, untold(who, exc.message)))


def _where(merged: dict[str, Any], loc: list[str | int], message: str) -> str:
    """``terminals[desk-1].password: ...`` rather than a position in a list: the path of
    a validation or loader error in the client's document, each item of what the client
    owns named by its key; one line whatever a tenant wrote."""
    parts = [p for p in loc if not (isinstance(p, str) and _noise(p))]
    head = ""
    own_rule = merged.get("outgoing_ddi_rule")
    if parts[:1] == ["outgoing_ddi_rule"] and isinstance(own_rule, dict):
        head, parts = f"outgoing_ddi_rules[{own_rule.get('name')}]", parts[1:]
    elif len(parts) >= 2 and isinstance(parts[0], str) and isinstance(parts[1], int):
        listed, owned = merged.get(parts[0]), BY_FIELD.get(parts[0])
        if owned is not None and isinstance(listed, list) and parts[1] < len(listed):
            head, parts = f"{parts[0]}[{_shown(listed[parts[1]], owned)}]", parts[2:]
    text = head
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return one_line(f"{text.lstrip('.') or 'body'}: {message}", 400)


def _noise(part: str) -> bool:
    """A step of pydantic's error location that is no field: a validator, a model name."""
    return part.startswith("function-") or part.endswith("Doc")


def _shown(item: Any, owned: Owned) -> str:
    """The item's key as its writer wrote it (a string item: itself)."""
    if owned.key is None or not isinstance(item, dict):
        return str(item)
    return str(item.get(owned.key))


def install(app: FastAPI) -> None:
    """Each kind's routes: list (unless served elsewhere), read, create, update, delete."""
    for owned in OWNED.values():
        _install_one(app, owned)


def _install_one(app: FastAPI, owned: Owned) -> None:
    base = f"/api/clients/{{client_id}}/{owned.path}"
    one = f"{base}/{{key:path}}" if owned.key is None else f"{base}/{{key}}"
    tags: list[str | Enum] = [owned.tag or owned.path]

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
        request: Request,
    ) -> dict[str, Any]:
        facts = await gate(context, who, client_id, "create")
        try:
            added = await create(context, who, client_id, facts.brand_id, owned, body)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None
        if owned.path == "admins":
            await invite_added(request, who, client_id, key_of(owned, added))
        return added

    async def updated(
        client_id: int,
        key: str,
        who: Caller,
        context: Context,
        body: Changes,
    ) -> dict[str, Any]:
        facts = await gate(context, who, client_id, "update")
        try:
            return await update(context, who, client_id, facts.brand_id, owned, key, body)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None

    async def deleted(client_id: int, key: str, who: Caller, context: Context) -> Response:
        facts = await gate(context, who, client_id, "delete")
        try:
            await delete(context, who, client_id, facts.brand_id, owned, key)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None
        return Response(status_code=204)

    name = owned.path.replace("-", "_")
    if owned.listing:
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
