"""Administrators' accounts: creating god and brand administrators, logging in (scrypt
passwords, a limit on failed attempts), and the bearer tokens that follow (random, stored
only as their SHA-256, expiring).

Nothing here logs or stores a password or a token in clear.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import selectinload

from callcontrol.api.access import Kind, Principal
from dialplan.errors import CallControlError
from models.admins import AdminPrivilege, ApiToken, LoginFailure, PlatformAdmin
from models.db import session_factory, transaction
from models.provisioning.passwords import hash_password, verify_password
from models.tenants import Brand, ClientAdmin

Clock = Callable[[], datetime]
log = logging.getLogger("callcontrol.api.accounts")

MIN_PASSWORD = 8


@functools.cache
def _decoy() -> str:
    """Checked against when the username is unknown, so a miss takes as long as a wrong
    password."""
    return hash_password(secrets.token_urlsafe(16))


class AccountError(CallControlError):
    """An administrator cannot be created as asked (the message says why)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_platform_admin(
    engine: AsyncEngine,
    username: str,
    password: str,
    *,
    brand: str | None = None,
    email: str | None = None,
    privileges: Mapping[str, str] | None = None,
) -> int:
    """A god administrator (``brand`` None) or an administrator of the brand named
    ``brand``; restricted when ``privileges`` (section -> "crud" letters) is given.
    Returns its id; AccountError when the name is taken (by any administrator), the
    brand unknown or the password too short."""
    if not username or len(username) > 128 or not username.isprintable():
        raise AccountError("the username must be 1 to 128 printable characters")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    secret = await asyncio.to_thread(hash_password, password)
    async with session_factory(engine)() as session, session.begin():
        for model in (PlatformAdmin, ClientAdmin):
            taken = await session.scalar(select(model.id).where(model.username == username))
            if taken is not None:
                level = "a god or brand" if model is PlatformAdmin else "a client"
                raise AccountError(
                    f"username: {username!r} is already the login of {level} administrator"
                )
        brand_id = None
        if brand is not None:
            brand_id = await session.scalar(select(Brand.id).where(Brand.name == brand))
            if brand_id is None:
                raise AccountError(f"no brand named {brand!r}")
        admin = PlatformAdmin(
            username=username,
            role="god" if brand is None else "brand",
            brand_id=brand_id,
            email=email,
            password_hash=secret,
            active=True,
            restricted=privileges is not None,
        )
        for section, letters in (privileges or {}).items():
            admin.privileges.append(
                AdminPrivilege(
                    section=section,
                    can_create="c" in letters,
                    can_read="r" in letters,
                    can_update="u" in letters,
                    can_delete="d" in letters,
                )
            )
        session.add(admin)
        await session.flush()
        return admin.id


class LoginLimiter:
    """At most ``attempts`` failed logins per (username, source) within ``window`` seconds
    of the pair's first failure; past them, logins of that pair are refused (429) until
    the window has passed. The counts live in the shared database (``login_failures``), so
    every API process on it refuses the same guesser; each count is one atomic
    ``UPDATE``, so concurrent guesses count at once. Pairs idle past the window are purged
    at each attempt: the table holds at most one window's worth of pairs. Each write is a
    :func:`~models.db.transaction` (on SQLite: this process's writers queue, then ``BEGIN
    IMMEDIATE``), so a burst of guesses never starves itself into a lock timeout."""

    def __init__(
        self, engine: AsyncEngine, attempts: int, window: float, clock: Clock = utc_now
    ) -> None:
        self.engine = engine
        self.attempts = attempts
        self.window = timedelta(seconds=window)
        self.clock = clock

    async def attempt(self, username: str, source: str) -> bool:
        """False when the pair is blocked; else True, the attempt counted as a failure
        until :meth:`succeeded` says otherwise (so concurrent guesses count at once)."""
        pair = _pair(username, source)
        now = self.clock()
        horizon = now - self.window
        table = LoginFailure.__table__
        fresh = (table.c.pair == pair) & (table.c.first_at > horizon)
        await self._purge(horizon)
        for _ in range(3):  # bounded: a lost insert race is retried, never looped on
            async with transaction(self.engine) as connection:
                counted = await connection.execute(
                    update(LoginFailure)
                    .where(fresh, LoginFailure.failures < self.attempts)
                    .values(failures=LoginFailure.failures + 1)
                )
                if counted.rowcount:
                    return True
                # Each statement sees what was committed when it started: a pair's first
                # failure committed by another guess after the update began is seen here,
                # with attempts left, and the update is tried again.
                failures = await connection.scalar(select(LoginFailure.failures).where(fresh))
                if failures is not None and failures >= self.attempts:
                    return False  # the window's attempts are spent
                if failures is not None:
                    continue
            try:
                async with transaction(self.engine) as connection:
                    await connection.execute(
                        insert(LoginFailure).values(pair=pair, failures=1, first_at=now)
                    )
                return True
            except IntegrityError:  # another process counted the pair's first failure
                continue
        return False

    async def _purge(self, horizon: datetime) -> None:
        """Forget the pairs whose window has passed, in a transaction of its own: a purge
        that collides with another process's (a lock timeout, a deadlock) is left to the
        next login, never a refused one."""
        try:
            async with transaction(self.engine) as connection:
                await connection.execute(
                    delete(LoginFailure).where(LoginFailure.first_at <= horizon)
                )
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise
            log.debug("login failures not purged this time: %s", type(exc).__name__)

    async def succeeded(self, username: str, source: str) -> None:
        async with transaction(self.engine) as connection:
            await connection.execute(
                delete(LoginFailure).where(LoginFailure.pair == _pair(username, source))
            )


def _pair(username: str, source: str) -> str:
    return hashlib.sha256(f"{username}\0{source}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    """A new login: the token (shown once, never stored) and when it expires."""

    token: str
    expires_at: datetime
    principal: Principal


async def authenticate(
    engine: AsyncEngine, username: str, password: str
) -> tuple[Kind, int] | None:
    """The (level, id) of the active administrator ``username`` whose password this is."""
    found: tuple[str, int, str] | None = None
    async with engine.connect() as connection:
        platform = (
            await connection.execute(
                select(PlatformAdmin.role, PlatformAdmin.id, PlatformAdmin.password_hash).where(
                    PlatformAdmin.username == username, PlatformAdmin.active
                )
            )
        ).first()
        if platform is not None:
            found = (platform[0], platform[1], platform[2])
        else:
            client = (
                await connection.execute(
                    select(ClientAdmin.id, ClientAdmin.password_hash).where(
                        ClientAdmin.username == username, ClientAdmin.active
                    )
                )
            ).first()
            if client is not None:
                found = ("client", client[0], client[1])
    stored = _decoy() if found is None else found[2]
    matches = await asyncio.to_thread(verify_password, password, stored)
    if found is None or not matches:
        return None
    kind: Kind = "god" if found[0] == "god" else "brand" if found[0] == "brand" else "client"
    return kind, int(found[1])


async def open_session(
    engine: AsyncEngine, kind: Kind, admin_id: int, ttl: float, source: str, clock: Clock
) -> Session:
    token = secrets.token_urlsafe(32)
    now = clock()
    expires = now + timedelta(seconds=ttl)
    column = "client_admin_id" if kind == "client" else "platform_admin_id"
    async with engine.begin() as connection:
        await connection.execute(
            insert(ApiToken).values(
                token_hash=token_digest(token),
                created_at=now,
                expires_at=expires,
                source=source[:64],
                **{column: admin_id},
            )
        )
        # Expired tokens of anyone go at each login: the table holds live sessions only.
        await connection.execute(delete(ApiToken).where(ApiToken.expires_at <= now))
        principal = await load_principal(connection, kind, admin_id)
    assert principal is not None
    return Session(token, expires, principal)


async def resolve(engine: AsyncEngine, token: str, clock: Clock) -> Principal | None:
    """The administrator a live token belongs to; None for an unknown or expired token
    (or an administrator since deactivated)."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(
                    ApiToken.platform_admin_id, ApiToken.client_admin_id, ApiToken.expires_at
                ).where(ApiToken.token_hash == token_digest(token))
            )
        ).first()
        if row is None or row.expires_at <= clock():
            return None
        if row.client_admin_id is not None:
            return await load_principal(connection, "client", row.client_admin_id)
        role = await connection.scalar(
            select(PlatformAdmin.role).where(PlatformAdmin.id == row.platform_admin_id)
        )
        kind: Kind = "god" if role == "god" else "brand"
        return await load_principal(connection, kind, int(row.platform_admin_id))


async def close_session(engine: AsyncEngine, token: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(delete(ApiToken).where(ApiToken.token_hash == token_digest(token)))


async def load_principal(
    connection: AsyncConnection, kind: Kind, admin_id: int
) -> Principal | None:
    async with session_factory(connection.engine)(bind=connection) as session:
        if kind == "client":
            client_admin = await session.scalar(
                select(ClientAdmin)
                .where(ClientAdmin.id == admin_id, ClientAdmin.active)
                .options(selectinload(ClientAdmin.privileges))
            )
            if client_admin is None:
                return None
            return Principal(
                kind="client",
                admin_id=client_admin.id,
                username=client_admin.username,
                client_id=client_admin.client_id,
                restricted=client_admin.restricted,
                privileges={p.section: p.verbs() for p in client_admin.privileges},
            )
        admin = await session.scalar(
            select(PlatformAdmin)
            .where(PlatformAdmin.id == admin_id, PlatformAdmin.active)
            .options(selectinload(PlatformAdmin.privileges))
        )
        if admin is None:
            return None
        return Principal(
            kind=kind,
            admin_id=admin.id,
            username=admin.username,
            brand_id=admin.brand_id,
            restricted=admin.restricted,
            privileges={p.section: p.verbs() for p in admin.privileges},
        )
