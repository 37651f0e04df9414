"""The platform through the API: clients created in a brand and removed, the brands, the
application servers.

A client is created as ``callcontrol provision`` would load its node (the provisioning
loader: the same validation, one line naming the field, all or nothing) and removed as the
loader removes what a client no longer lists, then the client itself
(:func:`models.provisioning.load.remove_client`). Who may do which is
:func:`callcontrol.api.access.decide_brand` and :func:`~callcontrol.api.access.sees_servers`;
each creation and removal is audited in its transaction (``client.create``,
``client.delete``), secrets masked."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from callcontrol.api.access import (
    ClientFacts,
    Decision,
    Principal,
    Verb,
    decide_brand,
    manages_admins,
    refused_field,
    sees_servers,
    visible_fields,
)
from callcontrol.api.context import Caller, Context, allowed, client_facts
from callcontrol.api.invites import invite_added
from callcontrol.api.kinds import OwnedError, section_of_field
from callcontrol.api.owned import checked_document, refused
from callcontrol.api.settings import (
    SETTINGS,
    SettingsError,
    client_document,
    load_client,
    settings_of,
    untold,
)
from callcontrol.api.writes import NEW_CLIENT, one_writer
from dialplan.errors import ProvisioningError, one_line
from models.admins import AuditNote
from models.platform import ApplicationServer
from models.provisioning.audit import client_nodes, masked_item
from models.provisioning.load import ClientInUse, remove_client
from models.tenants import Brand, BrandFeature, Client

MAX_CLIENT = 1_048_576
"""The largest client a request creates, as JSON (what it owns included)."""
NewClient = Annotated[
    Any, Body(description="The client as the provisioning document has it (`brand` optional "
              "for a brand administrator: its own).")
]  # fmt: skip


async def brand_named(engine: AsyncEngine, name: str) -> int | None:
    async with engine.connect() as connection:
        found: int | None = await connection.scalar(select(Brand.id).where(Brand.name == name))
    return found


async def brand_name(engine: AsyncEngine, brand_id: int) -> str:
    async with engine.connect() as connection:
        return str(await connection.scalar(select(Brand.name).where(Brand.id == brand_id)))


def brand_gate(who: Principal, brand_id: int | None, shown: str, verb: Verb) -> None:
    """Raise 404 or 403 unless ``who`` may ``verb`` clients of the brand ``brand_id`` (None:
    there is no such brand) (:func:`decide_brand`)."""
    decision = Decision.NOT_FOUND if brand_id is None else decide_brand(who, brand_id, verb)
    if decision is Decision.NOT_FOUND:
        raise HTTPException(404, one_line(f"no brand {shown}", 200))
    if decision is Decision.DENY:
        raise HTTPException(403, f"{who.username} may not {verb} clients")


def owned_refusal(who: Principal, body: dict[str, Any]) -> str | None:
    """The first part of a new client's ``body`` that ``who`` may not create: a god-only
    setting, what it owns of a section its privileges leave out, client admins (an
    unrestricted administrator's, :func:`manages_admins`); None when all may be."""
    field = refused_field(who, frozenset(body))
    if field is not None:
        return f"{field}: {who.username} may not set it"
    for name in sorted(body):
        if not body[name]:
            continue
        section = section_of_field(name)
        if not who.may(section, "create"):
            return f"{name}: {who.username} may not create {section}"
        if name == "admins" and not manages_admins(who):
            return f"{name}: {who.username} may not create client admins"
    return None


@one_writer
async def create(
    engine: AsyncEngine, who: Principal, _new: int, seen: int, brand_id: int, body: dict[str, Any]
) -> int:
    """Load the new client ``body`` of brand ``brand_id``; its id."""
    dumped = checked_document(body)
    name = dumped["name"]
    async with engine.connect() as connection:
        taken = await connection.scalar(
            select(Client.id).where(Client.brand_id == brand_id, Client.name == name)
        )
    if taken is not None:
        raise OwnedError(409, one_line(f"name: client {name} exists already", 200))
    made_ids: list[int] = []

    async def note(connection: AsyncConnection) -> AuditNote:
        """The new client as stored, in the load's transaction."""
        made = (await client_nodes(connection, [(dumped["brand"], name)]))[dumped["brand"], name]
        made_ids.append(made.client_id)
        return who.note(
            "client.create",
            str(made.client_id),
            brand_id=brand_id,
            client_id=made.client_id,
            after=masked_item(settings_of(made.node, SETTINGS)),
        )

    try:
        await load_client(engine, who, dumped, note, seen)
    except ProvisioningError as exc:
        raise refused(who, body, exc) from None
    return made_ids[-1]


@one_writer
async def remove(
    engine: AsyncEngine, who: Principal, client_id: int, seen: int, brand_id: int
) -> None:
    """Remove the client (:func:`remove_client`), audited with its settings before."""
    node = await client_document(engine, client_id)
    note = who.note(
        "client.delete",
        str(client_id),
        brand_id=brand_id,
        client_id=client_id,
        before=masked_item(settings_of(node, SETTINGS)),
    )
    await remove_client(engine, client_id, audit=note, expect_version=seen)


def install(app: FastAPI) -> None:
    @app.post("/api/clients", status_code=201, tags=["clients"])
    async def create_client(
        who: Caller, context: Context, body: NewClient, request: Request
    ) -> dict[str, Any]:
        """Create a client in a brand (a brand administrator: its own), from its node of a
        provisioning document; the client as ``GET`` shows it. Each client admin created
        with an e-mail address gets the ``access_credentials`` e-mail, as one added later."""
        if not isinstance(body, dict):
            raise HTTPException(422, "body: give a JSON object")
        if len(json.dumps(body)) > MAX_CLIENT:
            raise HTTPException(413, f"body: a client is at most {MAX_CLIENT} characters")
        if who.kind == "client":
            raise HTTPException(403, f"{who.username} may not create clients")
        body = dict(body)
        if who.kind == "brand" and "brand" not in body:
            assert who.brand_id is not None
            body["brand"] = await brand_name(context.engine, who.brand_id)
        named = body.get("brand")
        if not isinstance(named, str):
            raise HTTPException(422, "brand: give the name of the client's brand")
        brand_id = await brand_named(context.engine, named)
        brand_gate(who, brand_id, named, "create")
        assert brand_id is not None
        refusal = owned_refusal(who, body)
        if refusal is not None:
            raise HTTPException(403, one_line(refusal, 200))
        try:
            client_id = await create(context, who, NEW_CLIENT, brand_id, body)
        except OwnedError as exc:
            raise HTTPException(exc.status, exc.message) from None
        for admin in body.get("admins") or []:
            await invite_added(request, who, client_id, str(admin["username"]))
        facts = await client_facts(context.engine, client_id)
        assert facts is not None  # created just now
        return await shown_client(context.engine, who, facts)

    @app.delete("/api/clients/{client_id}", status_code=204, tags=["clients"])
    async def delete_client(client_id: int, who: Caller, context: Context) -> Response:
        """Remove a client and all it owns (god, or its brand's administrator); 409 while it
        has CDRs, recordings, calls in progress or routes of its own."""
        facts = await allowed(context, who, client_id, "client", "delete")
        brand_gate(who, facts.brand_id, str(facts.brand_id), "delete")
        try:
            await remove(context, who, client_id, facts.brand_id)
        except ClientInUse as exc:
            raise HTTPException(409, exc.message) from None
        except SettingsError:  # removed meanwhile
            raise HTTPException(404, f"no client {client_id}") from None
        except ProvisioningError as exc:
            raise HTTPException(422, untold(who, str(exc))) from None
        return Response(status_code=204)

    @app.get("/api/brands", tags=["platform"])
    async def brands(who: Caller, context: Context) -> list[dict[str, Any]]:
        """The brands the caller administers (god: all) and the defaults they give their
        clients."""
        if who.kind == "client":
            raise HTTPException(403, f"{who.username} may not read brands")
        async with context.engine.connect() as connection:
            rows = (await connection.execute(select(*Brand.__table__.c).order_by(Brand.id))).all()
            features = (
                await connection.execute(
                    select(BrandFeature.brand_id, BrandFeature.feature).order_by(
                        BrandFeature.feature
                    )
                )
            ).all()
        return [
            {**row._asdict(), "features": [f for b, f in features if b == row.id]}
            for row in rows
            if decide_brand(who, row.id, "read") is Decision.ALLOW
        ]

    @app.get("/api/application-servers", tags=["platform"])
    async def application_servers(who: Caller, context: Context) -> list[dict[str, Any]]:
        """The application servers (god only): where each takes SIP, whether it is drained,
        where its console answers (never its token)."""
        if not sees_servers(who):
            raise HTTPException(403, f"{who.username} may not read application servers")
        table = ApplicationServer.__table__
        query = select(
            table.c.id, table.c.name, table.c.address, table.c.sip_port, table.c.drained,
            table.c.console_url,
        ).order_by(table.c.name)  # fmt: skip
        async with context.engine.connect() as connection:
            return [row._asdict() for row in await connection.execute(query)]


async def shown_client(engine: AsyncEngine, who: Principal, facts: ClientFacts) -> dict[str, Any]:
    """The client's settings as ``who`` may see them (``GET /api/clients/{id}``)."""
    node = await client_document(engine, facts.id)
    shown = visible_fields(who, SETTINGS, facts)
    return {"id": facts.id, **settings_of(node, shown)}
