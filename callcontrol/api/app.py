"""The HTTP API (FastAPI): log in, clients' settings, CDRs, recordings, rating profiles and
the audit trail, each answer scoped to what the caller may see (:mod:`callcontrol.api.access`).

OpenAPI is served at ``/api/openapi.json`` (and its pages at ``/api/docs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api import calls as live_calls
from callcontrol.api import invites, owned, platform
from callcontrol.api import settings as client_settings
from callcontrol.api.access import (
    PRICE_FIELDS,
    ClientFacts,
    Principal,
    audit_scope,
    refused_field,
    shows_prices,
    visible_fields,
)
from callcontrol.api.accounts import (
    Clock,
    LoginLimiter,
    authenticate,
    close_session,
    open_session,
    utc_now,
)
from callcontrol.api.calls import Fleet
from callcontrol.api.context import Api, Caller, Context, Credentials, allowed, client_facts
from callcontrol.api.kinds import openapi_tags, readable, readable_fields
from callcontrol.api.writes import ClientChanged
from dialplan.errors import NotFound
from dialplan.reasons import Reason
from models.admins import AuditedBy, AuditEntry
from models.billing import BillableCall, RatingPlanGroup, RatingProfile
from models.cdrs import CDR_FIELDS
from models.changes import current
from models.provisioning.audit import PROVISIONED_CLIENT
from models.recordings import (
    ClientAdmin,
    Operator,
    PermissionDenied,
    RecordingNotFound,
    file_of,
    list_recordings,
    remove,
)
from models.tenants import Brand, Client

if TYPE_CHECKING:
    from callcontrol.mailer import Mailer

MAX_ROWS = 10_000


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class LoggedIn(BaseModel):
    token: str
    expires_at: datetime
    role: str


def build_app(
    engine: AsyncEngine,
    *,
    token_ttl: float = 3600.0,
    login_attempts: int = 5,
    login_window: float = 300.0,
    recordings_dir: Path | str = "var/recordings",
    clock: Clock = utc_now,
    secret_key: str = "",
    poll_interval: float = 1.0,
    console_timeout: float = 5.0,
    mailer: Mailer | None = None,
    public_url: str = "",
    invite_ttl: float = 259200.0,
    config_version: Callable[[AsyncEngine], Awaitable[int]] = current,
) -> FastAPI:
    """The API over ``engine``'s database (migrated to head); ``secret_key`` unseals the
    servers' console tokens (:mod:`callcontrol.api.servers`); ``mailer`` sends the
    ``access_credentials`` e-mails, whose links start with ``public_url`` and live
    ``invite_ttl`` seconds (:mod:`callcontrol.api.invites`; the app runs the mailer).
    ``config_version`` reads the configuration's version before a write reads the client's
    document (:mod:`callcontrol.api.writes`; a test interposes a change there)."""
    servers = Fleet(engine, secret_key, poll_interval, console_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sending = None if mailer is None else asyncio.create_task(mailer.run())
        try:
            yield
        finally:
            if mailer is not None and sending is not None:
                await mailer.stop(grace=5.0)
            await servers.close()

    app = FastAPI(
        lifespan=lifespan,
        title="callcontrol",
        summary="Multi-tenant call control: god, brand and client administrators.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_tags=openapi_tags(),
    )
    app.state.api = Api(
        engine=engine,
        token_ttl=token_ttl,
        recordings_dir=Path(recordings_dir),
        limiter=LoginLimiter(engine, login_attempts, login_window, clock),
        clock=clock,
        config_version=config_version,
    )
    app.state.fleet = servers
    app.state.invites = invites.Invites(mailer, public_url, invite_ttl)
    app.exception_handler(ClientChanged)(_client_changed)
    _routes(app)
    invites.install(app)
    owned.install(app)
    platform.install(app)
    live_calls.install(app)
    return app


async def _client_changed(_request: Request, exc: Exception) -> JSONResponse:
    """Every try of a client's write met another writer's change: 409, nothing written."""
    assert isinstance(exc, ClientChanged)
    return JSONResponse({"detail": exc.message}, status_code=409)


def _routes(app: FastAPI) -> None:
    @app.post("/api/login", response_model=LoggedIn, tags=["session"])
    async def login(body: Login, request: Request, context: Context) -> LoggedIn:
        """A bearer token for the administrator, or 401; 429 after too many failures."""
        source = request.client.host if request.client else "unknown"
        if not await context.limiter.attempt(body.username, source):
            raise HTTPException(429, "too many failed logins: wait and try again")
        found = await authenticate(context.engine, body.username, body.password)
        if found is None:
            raise HTTPException(401, "wrong username or password")
        await context.limiter.succeeded(body.username, source)
        session = await open_session(
            context.engine, found[0], found[1], context.token_ttl, source, context.clock
        )
        return LoggedIn(token=session.token, expires_at=session.expires_at, role=found[0])

    @app.post("/api/logout", status_code=204, tags=["session"])
    async def logout(who: Caller, context: Context, credentials: Credentials) -> Response:
        """End this token's session."""
        assert credentials is not None  # the Caller dependency refused a request without
        await close_session(context.engine, credentials.credentials)
        return Response(status_code=204)

    @app.get("/api/clients", tags=["clients"])
    async def clients(who: Caller, context: Context) -> list[dict[str, Any]]:
        """The clients the caller may see."""
        query = (
            select(Client.id, Client.name, Brand.name.label("brand"), Client.sip_domain)
            .join(Brand, Brand.id == Client.brand_id)
            .order_by(Client.id)
        )
        if who.kind == "brand":
            query = query.where(Client.brand_id == who.brand_id)
        elif who.kind == "client":
            query = query.where(Client.id == who.client_id)
        if not who.may("client", "read"):
            return []
        async with context.engine.connect() as connection:
            return [row._asdict() for row in await connection.execute(query)]

    @app.get("/api/clients/{client_id}", tags=["clients"])
    async def client(client_id: int, who: Caller, context: Context) -> dict[str, Any]:
        """The client's settings (DESIGN §3.1) the caller may see."""
        facts = await allowed(context, who, client_id, "client", "read")
        return await platform.shown_client(context.engine, who, facts)

    @app.patch("/api/clients/{client_id}", tags=["clients"])
    async def change_client(
        client_id: int,
        who: Caller,
        context: Context,
        changes: Annotated[dict[str, Any], Body(description="Settings to change.")],
    ) -> dict[str, Any]:
        """Change settings, validated as provisioning validates them (all or nothing)."""
        facts = await allowed(context, who, client_id, "client", "update")
        unknown = sorted(set(changes) - client_settings.SETTINGS)
        if unknown:
            raise HTTPException(422, f"{unknown[0]}: not a client setting")
        refused = refused_field(who, frozenset(changes))
        if refused is None and set(changes) & client_settings.FIXED:
            refused = sorted(set(changes) & client_settings.FIXED)[0]
        if refused is not None:
            raise HTTPException(403, f"{refused}: {who.username} may not change it")
        try:
            after = await client_settings.change(context, who, client_id, facts.brand_id, changes)
        except client_settings.SettingsError as exc:
            raise HTTPException(422, exc.message) from None
        shown = visible_fields(who, frozenset(after), facts)
        return {"id": client_id, **{name: after[name] for name in sorted(shown)}}

    @app.get("/api/clients/{client_id}/cdrs", tags=["cdrs"], response_model=None)
    async def cdrs(
        client_id: int,
        who: Caller,
        context: Context,
        since: date | None = None,
        until: date | None = None,
        direction: Literal["inbound", "outbound"] | None = None,
        outcome: Reason | None = None,
        answered: bool | None = None,
        number: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 1000,
        offset: Annotated[int, Query(ge=0)] = 0,
        format: Literal["json", "csv"] = "json",
    ) -> list[dict[str, Any]] | Response:
        """The client's CDRs by start time (UTC days, inclusive); prices only when shown.
        Filters: ``direction``; ``outcome``, the reason a call was refused or ended for;
        ``answered``; ``number``, the caller or the callee as stored. Pages: ``limit`` rows
        from ``offset``, in that order."""
        facts = await allowed(context, who, client_id, "billable_calls", "read")
        names = [n for n in CDR_FIELDS if shows_prices(who, facts) or n not in PRICE_FIELDS]
        table = BillableCall.__table__
        query = (
            select(*(table.c[name] for name in names))
            .where(table.c.client_id == client_id)
            .order_by(table.c.start_time, table.c.call_id)
            .limit(limit)
            .offset(offset)
        )
        if since is not None:
            query = query.where(table.c.start_time >= _midnight(since))
        if until is not None:
            query = query.where(table.c.start_time < _midnight(until + timedelta(days=1)))
        if direction is not None:
            query = query.where(table.c.direction == direction)
        if outcome is not None:
            query = query.where(table.c.outcome_reason == outcome.value)
        if answered is not None:
            is_answered = table.c.answer_time.is_not(None)
            query = query.where(is_answered if answered else ~is_answered)
        if number is not None:
            query = query.where((table.c.caller == number) | (table.c.callee == number))
        async with context.engine.connect() as connection:
            rows = [_plain(row._asdict()) for row in await connection.execute(query)]
        if format == "json":
            return rows
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")

    @app.get("/api/clients/{client_id}/recordings", tags=["recordings"])
    async def recordings(client_id: int, who: Caller, context: Context) -> list[dict[str, Any]]:
        """The client's recorded segments."""
        await allowed(context, who, client_id, "recordings", "read")
        return [
            stored.summary()
            for stored in await _client_recordings(context.engine, client_id)
            if stored.segment.client_id == client_id
        ]

    @app.get("/api/clients/{client_id}/recordings/{recording_id}", tags=["recordings"])
    async def recording_audio(
        client_id: int, recording_id: int, who: Caller, context: Context
    ) -> FileResponse:
        """The segment's audio (WAV)."""
        await allowed(context, who, client_id, "recordings", "read")
        stored = await _one_recording(context.engine, client_id, recording_id)
        path = file_of(context.recordings_dir, stored.file_path)
        if not path.is_file():
            raise HTTPException(404, f"recording {recording_id} has no audio file")
        return FileResponse(path, media_type="audio/wav", filename=path.name)

    @app.delete("/api/clients/{client_id}/recordings/{recording_id}", tags=["recordings"])
    async def remove_recording(
        client_id: int, recording_id: int, who: Caller, context: Context
    ) -> Response:
        """Remove a segment (a client admin only when its client allows it)."""
        await allowed(context, who, client_id, "recordings", "delete")
        await _one_recording(context.engine, client_id, recording_id)  # of this client
        actor = ClientAdmin(who.username) if who.kind == "client" else Operator()
        audited = AuditedBy(who.kind, who.username)
        try:
            await remove(
                context.engine, context.recordings_dir, recording_id, actor, audited=audited
            )
        except RecordingNotFound:
            raise HTTPException(404, f"no recording {recording_id}") from None
        except PermissionDenied as exc:
            raise HTTPException(403, exc.reason) from None
        return Response(status_code=204)

    @app.get("/api/clients/{client_id}/rating-profiles", tags=["billing"])
    async def rating_profiles(
        client_id: int, who: Caller, context: Context
    ) -> list[dict[str, Any]]:
        """The client's rating profiles (the active one is the latest activated)."""
        await allowed(context, who, client_id, "rating_profiles", "read")
        query = (
            select(RatingProfile.activation_time, RatingPlanGroup.name, RatingPlanGroup.currency)
            .join(RatingPlanGroup, RatingPlanGroup.id == RatingProfile.rating_plan_group_id)
            .where(RatingProfile.client_id == client_id)
            .order_by(RatingProfile.activation_time)
        )
        async with context.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            {"activation_time": row[0].isoformat(), "rating_plan_group": row[1], "currency": row[2]}
            for row in rows
        ]

    @app.get("/api/audit", tags=["audit"])
    async def audit(
        who: Caller,
        context: Context,
        client_id: int | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 100,
    ) -> list[dict[str, Any]]:
        """Audited changes the caller may read, newest first."""
        scope = audit_scope(who)
        if scope is None:
            raise HTTPException(403, f"{who.username} may not read the audit trail")
        query = select(*AuditEntry.__table__.c).order_by(AuditEntry.id.desc()).limit(limit)
        brand_id, own_client = scope
        if brand_id is not None:
            query = query.where(AuditEntry.brand_id == brand_id)
        if own_client is not None:
            query = query.where(AuditEntry.client_id == own_client)
        if client_id is not None:
            query = query.where(AuditEntry.client_id == client_id)
        async with context.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        # Each administrator reads the changes of what it may read: a restricted one of any
        # level only its sections', a client admin's hidden billing stays hidden.
        facts: dict[int, ClientFacts | None] = {}
        entries = []
        for row in rows:
            known = None
            if row.client_id is not None:
                if row.client_id not in facts:
                    found = await client_facts(context.engine, row.client_id)
                    facts[row.client_id] = found or _removed(row)
                known = facts[row.client_id]
                if known is None:
                    continue
            entry = _entry(row, who, known)
            if known is not None:
                if entry["action"] == PROVISIONED_CLIENT:
                    # A load's entry of a client tells every field it changed: each is its
                    # section's to read, and the entry is shown while any is left.
                    if not _readable_load(who, known, entry):
                        continue
                elif not readable(who, known, entry["action"]):
                    continue
            entries.append(entry)
        return entries


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat()
        if isinstance(value, datetime)
        else str(value)
        if value is not None and not isinstance(value, int | str | bool)
        else value
        for key, value in values.items()
    }


async def _client_recordings(engine: AsyncEngine, client_id: int) -> list[Any]:
    async with engine.connect() as connection:
        name = await connection.scalar(select(Client.name).where(Client.id == client_id))
    try:
        return await list_recordings(engine, client=name)
    except NotFound:
        return []


async def _one_recording(engine: AsyncEngine, client_id: int, recording_id: int) -> Any:
    for stored in await _client_recordings(engine, client_id):
        if stored.id == recording_id and stored.segment.client_id == client_id:
            return stored
    raise HTTPException(404, f"no recording {recording_id} of client {client_id}")


def _removed(row: Any) -> ClientFacts | None:
    """A removed client as its audit entries are read (its removal's among them): a client
    of the entry's brand with no feature, so its brand's administrators and god read what
    its ``client`` section holds; None when the entry tells no brand."""
    if row.brand_id is None:
        return None
    return ClientFacts(id=row.client_id, brand_id=row.brand_id)


def _readable_load(who: Principal, client: ClientFacts, entry: dict[str, Any]) -> bool:
    """Leave in a load's ``entry`` of ``client`` the changed fields ``who`` may read, each
    its section's; False when none is left (nothing of it is ``who``'s to read)."""
    for side in ("before", "after"):
        if entry[side] is not None:
            entry[side] = readable_fields(who, client, entry[side])
    return bool(entry["after"])


def _entry(row: Any, who: Principal, client: ClientFacts | None) -> dict[str, Any]:
    """An audit entry as ``who`` may read it: the settings it may not see of ``client``
    (the god-only ones, a hidden balance) left out of its states."""
    entry: dict[str, Any] = row._asdict()
    entry["at"] = entry["at"].isoformat()
    for side in ("before", "after"):
        state = None if entry[side] is None else json.loads(entry[side])
        if isinstance(state, dict):
            shown = visible_fields(who, frozenset(state), client)
            state = {k: v for k, v in state.items() if k in shown}
        entry[side] = state
    return entry
