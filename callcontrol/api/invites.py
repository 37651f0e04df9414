"""One-time links to set an administrator's password: the ``access_credentials`` e-mail.

An invitation is a random token (256 bits) stored only as its SHA-256
(``admin_invitations``), one live per administrator (a new one replaces the old), good
until ``api_invite_ttl`` seconds have passed. The e-mail is the notification template of
type ``access_credentials`` -- the client's, else its brand's, else the generic one, for a
client admin; the brand's or the generic one for a brand admin; the generic one for god --
rendered in the mailer's sandbox with ``username``, ``link``, ``expires_at``, ``client``,
``brand`` and ``level``. The link is ``<public URL>/set-password?token=...``.

``POST /api/set-password`` with the token and a new password stores the password (scrypt),
burns the token and ends every session of that administrator. A used, expired or unknown
token gets the same answer (400), in the same time: no oracle.

Invitations are sent when an administrator is made with an e-mail address (``callcontrol
admin create``, a client admin added through the API, ``callcontrol provision --invite``)
and on ``POST /api/clients/{id}/admins/{username}/invite`` or
``POST /api/admins/{username}/invite``. Neither the token nor the link is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import Kind, Principal, manages_admins
from callcontrol.api.accounts import MIN_PASSWORD, Clock, token_digest
from callcontrol.api.context import Caller, Context, allowed
from dialplan.errors import CallControlError
from models.admins import AdminInvitation, ApiToken, AuditNote, PlatformAdmin, record
from models.provisioning.passwords import hash_password
from models.templates import find_template
from models.tenants import Brand, Client, ClientAdmin

if TYPE_CHECKING:
    from callcontrol.mailer import Mailer

log = logging.getLogger("callcontrol.api.invites")

PAGE = Path(__file__).with_name("set_password.html")
REFUSED = "the link is used, expired or unknown: ask for a new one"
"""The one answer to any token that does not set a password."""
KIND = "access_credentials"


class InviteError(CallControlError):
    """An invitation cannot be sent (the message says why, naming the field)."""


@dataclass(frozen=True, slots=True)
class Invitee:
    """An administrator to invite, and what its e-mail says of it."""

    kind: Kind
    admin_id: int
    username: str
    email: str | None
    language: str
    client_id: int | None = None
    client: str = ""
    brand_id: int | None = None
    brand: str = ""


@dataclass(frozen=True, slots=True)
class Invites:
    """How this API sends invitations: its mailer (None: it sends none), its public URL
    and how long a link lives."""

    mailer: Mailer | None
    public_url: str
    ttl: float


async def client_invitee(engine: AsyncEngine, client_id: int, username: str) -> Invitee | None:
    """The client admin ``username`` of the client, or None."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    ClientAdmin.id,
                    ClientAdmin.email,
                    Client.language,
                    Client.name,
                    Client.brand_id,
                    Brand.name.label("brand"),
                )
                .join(Client, Client.id == ClientAdmin.client_id)
                .join(Brand, Brand.id == Client.brand_id)
                .where(ClientAdmin.client_id == client_id, ClientAdmin.username == username)
            )
        ).first()
    if row is None:
        return None
    return Invitee(
        kind="client",
        admin_id=row.id,
        username=username,
        email=row.email,
        language=row.language,
        client_id=client_id,
        client=row.name,
        brand_id=row.brand_id,
        brand=row.brand,
    )


async def platform_invitee(engine: AsyncEngine, username: str) -> Invitee | None:
    """The god or brand administrator ``username``, or None."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    PlatformAdmin.id,
                    PlatformAdmin.role,
                    PlatformAdmin.email,
                    PlatformAdmin.brand_id,
                    Brand.name,
                    Brand.default_language,
                )
                .outerjoin(Brand, Brand.id == PlatformAdmin.brand_id)
                .where(PlatformAdmin.username == username)
            )
        ).first()
    if row is None:
        return None
    return Invitee(
        kind="god" if row.role == "god" else "brand",
        admin_id=row.id,
        username=username,
        email=row.email,
        language=row.default_language or "en",
        brand_id=row.brand_id,
        brand=row.name or "",
    )


def _owner(kind: Kind, admin_id: int) -> dict[str, int]:
    return {"client_admin_id" if kind == "client" else "platform_admin_id": admin_id}


def _of(table: Any, kind: Kind, admin_id: int) -> Any:
    column = table.client_admin_id if kind == "client" else table.platform_admin_id
    return column == admin_id


async def issue(
    engine: AsyncEngine, invitee: Invitee, ttl: float, clock: Clock
) -> tuple[str, datetime]:
    """A new token for ``invitee`` and when it expires (its earlier ones, and everyone's
    expired ones, go)."""
    token = secrets.token_urlsafe(32)
    now = clock()
    expires = now + timedelta(seconds=ttl)
    async with engine.begin() as connection:
        await connection.execute(
            delete(AdminInvitation).where(
                _of(AdminInvitation, invitee.kind, invitee.admin_id)
                | (AdminInvitation.expires_at <= now)
            )
        )
        await connection.execute(
            insert(AdminInvitation).values(
                token_hash=token_digest(token),
                created_at=now,
                expires_at=expires,
                **_owner(invitee.kind, invitee.admin_id),
            )
        )
    return token, expires


async def send_invitation(
    engine: AsyncEngine,
    mailer: Mailer,
    invitee: Invitee,
    *,
    public_url: str,
    ttl: float,
    clock: Clock,
) -> datetime:
    """Queue the ``access_credentials`` e-mail with a new one-time link to ``invitee``;
    when the link expires. InviteError when it has no e-mail address, no template applies
    or the mailer cannot take it."""
    if not invitee.email:
        raise InviteError(f"email: administrator {invitee.username!r} has no e-mail address")
    template = await find_template(
        engine,
        invitee.client_id,
        KIND,
        invitee.language,
        brand_id=invitee.brand_id,
    )
    if template is None:
        raise InviteError(f"no {KIND} notification template applies: provision one")
    token, expires = await issue(engine, invitee, ttl, clock)
    values = {
        "username": invitee.username,
        "link": f"{public_url.rstrip('/')}/set-password?token={token}",
        "expires_at": expires.isoformat(timespec="seconds"),
        "client": invitee.client,
        "brand": invitee.brand,
        "level": invitee.kind,
    }
    about = f"{KIND} e-mail of administrator {invitee.username!r}"
    if not mailer.notify(template, values, to=[invitee.email], about=about):
        raise InviteError(f"the {KIND} e-mail cannot be queued now: try again")
    return expires


async def set_password(engine: AsyncEngine, token: str, password: str, clock: Clock) -> bool:
    """Set the password of the administrator the live ``token`` invites, burn the token and
    end that administrator's sessions; False for a used, expired or unknown token."""
    # Hashed first, whatever the token: every refusal takes as long as a success.
    secret = await asyncio.to_thread(hash_password, password)
    now = clock()
    async with engine.begin() as connection:
        row = (
            await connection.execute(
                select(
                    AdminInvitation.id,
                    AdminInvitation.platform_admin_id,
                    AdminInvitation.client_admin_id,
                    AdminInvitation.expires_at,
                ).where(AdminInvitation.token_hash == token_digest(token))
            )
        ).first()
        if row is None:
            return False
        burned = await connection.execute(
            delete(AdminInvitation).where(AdminInvitation.id == row.id)
        )
        if burned.rowcount != 1 or row.expires_at <= now:  # used meanwhile, or too late
            return False
        model: Any = ClientAdmin if row.client_admin_id is not None else PlatformAdmin
        admin_id = int(row.client_admin_id or row.platform_admin_id)
        await connection.execute(
            update(model).where(model.id == admin_id).values(password_hash=secret)
        )
        kind: Kind = "client" if row.client_admin_id is not None else "brand"
        await connection.execute(delete(ApiToken).where(_of(ApiToken, kind, admin_id)))
        await _audit_set(connection, model, admin_id)
    return True


async def _audit_set(connection: Any, model: Any, admin_id: int) -> None:
    if model is ClientAdmin:
        found = (
            await connection.execute(
                select(ClientAdmin.username, Client.id, Client.brand_id)
                .join(Client, Client.id == ClientAdmin.client_id)
                .where(ClientAdmin.id == admin_id)
            )
        ).first()
        actor_kind, client_id, brand_id = "client", found[1], found[2]
    else:
        found = (
            await connection.execute(
                select(PlatformAdmin.username, PlatformAdmin.role, PlatformAdmin.brand_id).where(
                    PlatformAdmin.id == admin_id
                )
            )
        ).first()
        actor_kind, client_id, brand_id = found[1], None, found[2]
    note = AuditNote(
        actor_kind=actor_kind,
        actor=found[0],
        action="admin.set_password",
        target=found[0],
        brand_id=brand_id,
        client_id=client_id,
    )
    await record(connection, note)


async def audit_invite(engine: AsyncEngine, actor_kind: str, actor: str, invitee: Invitee) -> None:
    note = AuditNote(
        actor_kind=actor_kind,
        actor=actor,
        action="admin.invite",
        target=invitee.username,
        brand_id=invitee.brand_id,
        client_id=invitee.client_id,
        after={"email": invitee.email},
    )
    async with engine.begin() as connection:
        await record(connection, note)


# --- the HTTP side ------------------------------------------------------------------------

GUESSER = " set-password"
"""The login limiter's username for tries of one-time links (a space: no admin's name)."""


class NewPassword(BaseModel):
    token: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class Invited(BaseModel):
    username: str
    email: str
    expires_at: datetime


def invites(request: Request) -> Invites:
    return cast(Invites, request.app.state.invites)


async def _send(request: Request, who: Principal, invitee: Invitee) -> Invited:
    setup = invites(request)
    context = request.app.state.api
    if setup.mailer is None:
        raise HTTPException(503, "this API sends no e-mail: it was started without a mailer")
    try:
        expires = await send_invitation(
            context.engine,
            setup.mailer,
            invitee,
            public_url=setup.public_url,
            ttl=setup.ttl,
            clock=context.clock,
        )
    except InviteError as exc:
        raise HTTPException(422, str(exc)) from None
    await audit_invite(context.engine, who.kind, who.username, invitee)
    assert invitee.email is not None
    return Invited(username=invitee.username, email=invitee.email, expires_at=expires)


def install(app: FastAPI) -> None:
    """The routes of invitations and of setting a password, and the invitation of a client
    admin added through the API."""

    @app.get("/set-password", include_in_schema=False)
    async def page() -> HTMLResponse:
        """A form to choose a password with the link's token."""
        return HTMLResponse(
            PAGE.read_text(encoding="utf-8"),
            headers={
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
            },
        )

    @app.post("/api/set-password", status_code=204, tags=["session"])
    async def choose(body: NewPassword, request: Request, context: Context) -> Response:
        """Set the password with a one-time link's token; 400 for a used, expired or
        unknown token (the same for each); 429 after as many refused tokens from one
        address as the login allows failed passwords (each try costs a password hash)."""
        if len(body.password) < MIN_PASSWORD:
            raise HTTPException(422, f"password: at least {MIN_PASSWORD} characters")
        source = request.client.host if request.client else "unknown"
        if not await context.limiter.attempt(GUESSER, source):
            raise HTTPException(429, "too many refused links: wait and try again")
        if not await set_password(context.engine, body.token, body.password, context.clock):
            raise HTTPException(400, REFUSED)
        await context.limiter.succeeded(GUESSER, source)
        return Response(status_code=204)

    @app.post(
        "/api/clients/{client_id}/admins/{username}/invite",
        status_code=202,
        response_model=Invited,
        tags=["admins"],
    )
    async def invite_client_admin(
        client_id: int, username: str, who: Caller, context: Context, request: Request
    ) -> Invited:
        """Send the client admin the access_credentials e-mail with a new one-time link."""
        await allowed(context, who, client_id, "client", "update")
        if not manages_admins(who):
            raise HTTPException(403, f"{who.username} may not invite client admins")
        invitee = await client_invitee(context.engine, client_id, username)
        if invitee is None:
            raise HTTPException(404, f"no admins {username}")
        return await _send(request, who, invitee)

    @app.post(
        "/api/admins/{username}/invite",
        status_code=202,
        response_model=Invited,
        tags=["admins"],
    )
    async def invite_platform_admin(
        username: str, who: Caller, context: Context, request: Request
    ) -> Invited:
        """Send a god or brand administrator the access_credentials e-mail (god, or an
        unrestricted administrator of that brand)."""
        invitee = await platform_invitee(context.engine, username)
        in_reach = invitee is not None and (
            who.kind == "god" or (who.kind == "brand" and invitee.brand_id == who.brand_id)
        )
        if invitee is None or not in_reach:
            raise HTTPException(404, f"no administrator {username}")
        if who.restricted:
            raise HTTPException(403, f"{who.username} may not invite administrators")
        return await _send(request, who, invitee)


async def invite_added(request: Request, who: Principal, client_id: int, username: str) -> None:
    """After a client admin is added through the API, the access_credentials e-mail goes
    to it when it has an e-mail address and the API sends e-mails; a failure to send is
    logged (the admin is added: the answer says so), never raised."""
    setup = invites(request)
    context = request.app.state.api
    try:
        invitee = await client_invitee(context.engine, client_id, username)
        if setup.mailer is None or invitee is None or not invitee.email:
            return
        await send_invitation(
            context.engine,
            setup.mailer,
            invitee,
            public_url=setup.public_url,
            ttl=setup.ttl,
            clock=context.clock,
        )
        await audit_invite(context.engine, who.kind, who.username, invitee)
    except InviteError as exc:
        log.warning("client admin %r added, its %s e-mail not sent: %s", username, KIND, exc)
    except Exception:
        log.exception("client admin %r added, its %s e-mail not sent", username, KIND)
