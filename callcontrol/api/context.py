"""What every request of the API shares (the database, the settings, the clock, the login
limiter) and the dependencies that authenticate a request and find its client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.api.access import ClientFacts, Decision, Principal, Verb, decide, in_scope
from callcontrol.api.accounts import Clock, LoginLimiter, resolve
from models.tenants import Client, ClientFeature


@dataclass(frozen=True, slots=True)
class Api:
    engine: AsyncEngine
    token_ttl: float
    recordings_dir: Path
    limiter: LoginLimiter
    clock: Clock
    config_version: Callable[[AsyncEngine], Awaitable[int]]
    """How a write reads the configuration's version before the client's document
    (:mod:`callcontrol.api.writes`)."""


def api(request: Request) -> Api:
    return cast(Api, request.app.state.api)


_bearer = HTTPBearer(auto_error=False, description="The token POST /api/login returned.")

Context = Annotated[Api, Depends(api)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def unauthenticated(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def principal(context: Context, credentials: Credentials) -> Principal:
    """The administrator the request's bearer token belongs to, else 401."""
    if credentials is None:
        raise unauthenticated("log in first (POST /api/login) and send its bearer token")
    found = await resolve(context.engine, credentials.credentials, context.clock)
    if found is None:
        raise unauthenticated("the token is unknown or expired: log in again")
    return found


Caller = Annotated[Principal, Depends(principal)]


async def client_facts(engine: AsyncEngine, client_id: int) -> ClientFacts | None:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    Client.id,
                    Client.brand_id,
                    Client.show_invoices,
                    Client.show_rating_profiles,
                    Client.show_external_call_prices,
                    Client.allow_recording_removal,
                ).where(Client.id == client_id)
            )
        ).first()
        if row is None:
            return None
        features = await connection.scalars(
            select(ClientFeature.feature).where(ClientFeature.client_id == client_id)
        )
        return ClientFacts(
            id=row.id,
            brand_id=row.brand_id,
            features=frozenset(features),
            show_invoices=bool(row.show_invoices),
            show_rating_profiles=bool(row.show_rating_profiles),
            show_external_call_prices=bool(row.show_external_call_prices),
            allow_recording_removal=bool(row.allow_recording_removal),
        )


async def allowed(
    context: Api, who: Principal, client_id: int, section: str, verb: Verb
) -> ClientFacts:
    """The client, when ``who`` may ``verb`` its ``section``; else 404 or 403 (:func:`decide`)."""
    facts = await client_facts(context.engine, client_id)
    if facts is None:
        raise HTTPException(404, f"no client {client_id}")
    decision = decide(who, facts, section, verb)
    if decision is Decision.NOT_FOUND:
        # Out of scope reads the same as absent: no probing for other tenants' ids.
        if not in_scope(who, facts):
            raise HTTPException(404, f"no client {client_id}")
        raise HTTPException(404, f"client {client_id} has no {section} section")
    if decision is Decision.DENY:
        raise HTTPException(403, f"{who.username} may not {verb} {section}")
    return facts
