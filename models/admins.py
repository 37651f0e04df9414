"""Administrators of the HTTP API (DESIGN §3.13): god and brand administrators, the
per-section privileges of restricted administrators of any level, login tokens and the
audit trail.

Client administrators stay in :mod:`models.tenants` (``client_admins``, provisioned with
their client); god and brand administrators live here (``platform_admins``). A
**restricted** administrator holds one :class:`AdminPrivilege` row per section it may use
(create, read, update, delete, each on or off; a missing row is no verb at all); an
unrestricted one ignores the rows and may do everything its level allows.

Passwords are stored as scrypt strings (:mod:`models.provisioning.passwords`); tokens
only as the SHA-256 of their random value (they are 256 random bits, so a slow hash adds
nothing).
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from models.base import Base, children
from models.vocabulary import ADMIN_SECTIONS, NAME_LENGTH, in_list

ROLES: tuple[str, ...] = ("god", "brand")
"""Levels of a platform administrator (client administrators are ``client_admins``)."""
VERBS: tuple[str, ...] = ("create", "read", "update", "delete")
SECTIONS: tuple[str, ...] = ("client", *ADMIN_SECTIONS, "audit")
"""Sections a privilege names: the client's own settings, the portal's sections, the
audit trail."""
ACTOR_KINDS: tuple[str, ...] = ("god", "brand", "client", "cli")
"""Who made an audited change: an administrator of a level, or an operating-system user
through the command line (provisioning included)."""


class PlatformAdmin(Base):
    """A god administrator (everything) or a brand administrator (its brand's clients)."""

    __tablename__ = "platform_admins"
    __table_args__ = (
        CheckConstraint(in_list("role", ROLES), name="role"),
        CheckConstraint(
            "(role = 'god' AND brand_id IS NULL) OR (role = 'brand' AND brand_id IS NOT NULL)",
            name="role_brand",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(8))
    brand_id: Mapped[int | None] = mapped_column(
        ForeignKey("brands.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    restricted: Mapped[bool] = mapped_column(default=False)

    privileges: Mapped[list[AdminPrivilege]] = children(
        order_by="AdminPrivilege.section", foreign_keys="AdminPrivilege.platform_admin_id"
    )


class AdminPrivilege(Base):
    """What a restricted administrator (platform or client) may do in one section."""

    __tablename__ = "admin_privileges"
    __table_args__ = (
        CheckConstraint(in_list("section", SECTIONS), name="section"),
        CheckConstraint(
            "(platform_admin_id IS NULL AND client_admin_id IS NOT NULL)"
            " OR (platform_admin_id IS NOT NULL AND client_admin_id IS NULL)",
            name="one_admin",
        ),
        UniqueConstraint("platform_admin_id", "section"),
        UniqueConstraint("client_admin_id", "section"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform_admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("platform_admins.id", ondelete="CASCADE")
    )
    client_admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("client_admins.id", ondelete="CASCADE")
    )
    section: Mapped[str] = mapped_column(String(32))
    can_create: Mapped[bool] = mapped_column(default=False)
    can_read: Mapped[bool] = mapped_column(default=False)
    can_update: Mapped[bool] = mapped_column(default=False)
    can_delete: Mapped[bool] = mapped_column(default=False)

    def verbs(self) -> frozenset[str]:
        flags = (self.can_create, self.can_read, self.can_update, self.can_delete)
        return frozenset(verb for verb, on in zip(VERBS, flags, strict=True) if on)


class _OfOneAdmin:
    """A row of exactly one administrator: a god or brand one, or a client admin (removed
    with it), found by the SHA-256 of a random token (the token is never stored)."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[CheckConstraint]:
        return (
            CheckConstraint(
                "(platform_admin_id IS NULL AND client_admin_id IS NOT NULL)"
                " OR (platform_admin_id IS NOT NULL AND client_admin_id IS NULL)",
                name="one_admin",
            ),
        )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    platform_admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("platform_admins.id", ondelete="CASCADE"), index=True
    )
    client_admin_id: Mapped[int | None] = mapped_column(
        ForeignKey("client_admins.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class ApiToken(_OfOneAdmin, Base):
    """A bearer token of the API; it ends at ``expires_at`` or at logout (the row is
    deleted)."""

    __tablename__ = "api_tokens"

    source: Mapped[str] = mapped_column(String(64), default="")


class AdminInvitation(_OfOneAdmin, Base):
    """A one-time link to set an administrator's password (the ``access_credentials``
    e-mail): used once (the row is deleted) or never after ``expires_at``."""

    __tablename__ = "admin_invitations"


class LoginFailure(Base):
    """Failed logins of one (username, source) pair since ``first_at``, shared by every
    API process. ``pair`` is the SHA-256 of the two (a password typed as a username is
    not kept in clear); a row older than the window counts for nothing and is purged."""

    __tablename__ = "login_failures"

    pair: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int]
    first_at: Mapped[datetime] = mapped_column(index=True)


class AuditEntry(Base):
    """One change or operator action: who, when, what, and the state before and after
    (JSON text, secrets left out). ``brand_id`` and ``client_id`` scope who may read it;
    they are plain numbers, not foreign keys, so the trail outlives what it mentions."""

    __tablename__ = "audit_entries"
    __table_args__ = (CheckConstraint(in_list("actor_kind", ACTOR_KINDS), name="actor_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_kind: Mapped[str] = mapped_column(String(8))
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    brand_id: Mapped[int | None] = mapped_column(index=True)
    client_id: Mapped[int | None] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255), default="")
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditNote:
    """What one audit entry says; ``before`` and ``after`` are JSON-able (no secrets)."""

    actor_kind: str
    actor: str
    action: str
    target: str = ""
    brand_id: int | None = None
    client_id: int | None = None
    before: Any = None
    after: Any = None


@dataclass(frozen=True, slots=True)
class AuditedBy:
    """Who makes an audited change: ``kind`` (one of :data:`ACTOR_KINDS`) and ``name``."""

    kind: str
    name: str

    def note(self, action: str, target: str = "", **facts: Any) -> AuditNote:
        """An entry of ``action`` on ``target`` by this actor; ``facts`` as
        :class:`AuditNote` takes them (``brand_id``, ``client_id``, ``before``, ``after``)."""
        return AuditNote(
            actor_kind=self.kind, actor=self.name, action=action, target=target, **facts
        )


def command_line(as_admin: str | None = None) -> AuditedBy:
    """The operating-system user running the command line, marked ``cli`` (and naming the
    client admin it acts as, if any)."""
    user = os_user()
    return AuditedBy("cli", user if as_admin is None else f"{user} as {as_admin}")


def os_user() -> str:
    """The operating-system user running the command line (as the audit names it)."""
    try:
        return getpass.getuser()[:NAME_LENGTH]
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid {os.getuid()}"


async def record(connection: AsyncConnection, note: AuditNote) -> None:
    """Write ``note`` as an audit entry, in the caller's transaction."""
    await connection.execute(
        insert(AuditEntry).values(
            at=datetime.now(UTC),
            actor_kind=note.actor_kind,
            actor=note.actor[:NAME_LENGTH],
            brand_id=note.brand_id,
            client_id=note.client_id,
            action=note.action[:64],
            target=note.target[:255],
            before=_json(note.before),
            after=_json(note.after),
        )
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str, sort_keys=True)
