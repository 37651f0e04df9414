"""Load a provisioning document: parse, check against the database, write, all in one transaction.

Nothing is written until the whole document has been checked; any error rolls
the transaction back, so the database is unchanged after a failed load.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from dialplan.errors import DatabaseUnavailable, ProvisioningError
from models.admins import AuditedBy, AuditNote, command_line, record
from models.billing import ActiveCallSlot, BillableCall
from models.changes import ConfigChanged, bump, claim
from models.db import session_factory, worth_retrying
from models.platform import Recording
from models.provisioning.audit import audit_clients, client_nodes
from models.provisioning.checks import check_document
from models.provisioning.renders import check_renders
from models.provisioning.report import LoadReport, Tally
from models.provisioning.schema_client import ClientDoc, Document
from models.provisioning.sync import Written
from models.provisioning.syntax import parse_document
from models.provisioning.world import read_world
from models.provisioning.write_admins import write_brand_admins
from models.provisioning.write_brand import write_brands, write_platform, write_routes
from models.provisioning.write_client import write_clients
from models.provisioning.write_links import write_links
from models.routing import OutboundRoute
from models.template_worker import RenderLimits
from models.tenants import Brand, Client

Audit = AuditNote | Callable[[AsyncConnection], Awaitable[AuditNote]]
"""How a load is audited: a note, or the function making it in the load's transaction."""


async def load_text(
    engine: AsyncEngine,
    text: str,
    source: str = "<document>",
    *,
    limits: RenderLimits | None = None,
    audit: Audit | None = None,
    expect_version: int | None = None,
) -> LoadReport:
    """Make the database match the document; raise ProvisioningError (one line) if invalid.

    Brands and clients the document lists are made to match it exactly (their
    absent children are deleted); others are left alone. Platform pieces are
    upserted. Loading the same text twice changes nothing the second time.
    Notification templates are test-rendered under ``limits`` (the service's
    ``template_*`` settings; default: theirs) before the transaction opens.

    A load that changes something is audited in its transaction: as ``audit`` says, or
    else as a ``provision`` by the operating-system user (marked ``cli``), with one more
    entry per listed client it changed (:mod:`models.provisioning.audit`). ``audit`` may be
    a function of the load's connection, called after its writes: its note then tells what
    the load made (a new client's id and settings as stored).

    With ``expect_version`` (the configuration's version read before what the document was
    made from) the load first claims that version (:func:`models.changes.claim`): if
    anything changed the configuration since, it raises ConfigChanged and writes nothing.
    A deadlock the database broke in such a load is a ConfigChanged too (a concurrent
    writer won). Without it, the version is raised at the end, whatever it was.
    """
    document = parse_document(text, source)
    await check_renders(document, limits or RenderLimits())
    tally = Tally()
    try:
        async with session_factory(engine)() as session, session.begin():
            if expect_version is not None:
                # Before any read: the claim's lock keeps other claimants out until commit.
                await claim(await session.connection(), expect_version)
            listed = (
                [] if audit is not None else [(doc.brand, doc.name) for doc in document.clients]
            )
            before = await client_nodes(await session.connection(), listed)
            check_document(document, await read_world(session))
            tally.attach(session.sync_session)
            await _write(session, document)
            await session.flush()
            report = tally.report(source)
            if report.changed:
                connection = await session.connection()
                if audit is not None:
                    note = audit if isinstance(audit, AuditNote) else await audit(connection)
                    await record(connection, note)
                else:
                    by = command_line()
                    await record(connection, _provisioned(by, report))
                    after = await client_nodes(connection, listed)
                    await audit_clients(connection, by, before, after)
            if expect_version is None:
                await bump(await session.connection())  # running servers reload at commit
    except DBAPIError as exc:
        raise _failed(engine, source, exc, expect_version) from exc
    except OSError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(url, _first_line(exc)) from exc
    return tally.report(source)


class ClientInUse(Exception):
    """A client :func:`remove_client` keeps: it has CDRs, recordings, calls in progress or
    routes (``message``, one line)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def remove_client(
    engine: AsyncEngine, client_id: int, *, audit: AuditNote, expect_version: int
) -> None:
    """Remove the client ``client_id`` in one transaction, audited as ``audit``, only if
    the configuration is still at version ``expect_version`` (else ConfigChanged).

    A load never removes a client a document leaves out, only what a listed client no
    longer lists: so what the client owns goes as a load of the client listing nothing
    (its DDIs, terminals, logins, rules... in the loader's order, the cycles between them
    broken as a load breaks them), then the bare client row; what no document writes
    (its daily spend, its own locutions' rows) goes with it by the database's cascades.
    A client with CDRs, recordings, calls in progress or outbound routes of its own is
    kept (ClientInUse): its CDRs are its invoices' (the database refuses their client's
    removal), its recordings are files on disk, its routes its brand's document's. A
    client that does not exist raises ProvisioningError."""
    source = f"client {client_id}"
    try:
        async with session_factory(engine)() as session, session.begin():
            connection = await session.connection()
            await claim(connection, expect_version)
            found = (
                await connection.execute(
                    select(Brand.name, Client.name, Client.sip_domain)
                    .join(Brand, Brand.id == Client.brand_id)
                    .where(Client.id == client_id)
                )
            ).first()
            if found is None:
                raise ProvisioningError("", f"no client {client_id}")
            brand, name, sip_domain = found
            await _refuse_in_use(connection, client_id, name)
            bare = ClientDoc.model_validate(
                {"name": name, "brand": brand, "sip_domain": sip_domain}
            )
            document = Document(clients=[bare])
            check_document(document, await read_world(session))
            await _write(session, document)
            await session.flush()
            await connection.execute(delete(Client).where(Client.id == client_id))
            await record(connection, audit)
    except IntegrityError as exc:  # a CDR written since the count: the database keeps it
        raise ClientInUse(f"{source} is in use: {_first_line(exc)}") from exc
    except DBAPIError as exc:
        raise _failed(engine, source, exc, expect_version) from exc
    except OSError as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailable(url, _first_line(exc)) from exc


async def _refuse_in_use(connection: AsyncConnection, client_id: int, name: str) -> None:
    for table, what in (
        (BillableCall, "CDRs"),
        (Recording, "recordings"),
        (ActiveCallSlot, "calls in progress"),
        (OutboundRoute, "outbound routes of its brand"),
    ):
        count = await connection.scalar(
            select(func.count()).select_from(table).where(table.client_id == client_id)
        )
        if count:
            raise ClientInUse(f"client {name!r} has {count} {what}: it is kept")


def _failed(
    engine: AsyncEngine, source: str, exc: DBAPIError, expect_version: int | None
) -> Exception:
    """The error a load's failed transaction (rolled back) raises."""
    if expect_version is not None and not exc.connection_invalidated and worth_retrying(exc):
        return ConfigChanged(expect_version)
    url = engine.url.render_as_string(hide_password=True)
    refused = f"{source}: the database refused the document: {_first_line(exc)}"
    if isinstance(exc, IntegrityError | DataError):
        # The checks should have caught it; the transaction is rolled back either way.
        return ProvisioningError("", refused)
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return DatabaseUnavailable(url, _first_line(exc))
    # asyncpg's refusals (a value too long, a character its encoding lacks) arrive
    # as the generic DBAPIError: still a refusal of this document, in one line
    return ProvisioningError("", refused)


async def load_file(
    engine: AsyncEngine, path: Path, *, limits: RenderLimits | None = None
) -> LoadReport:
    """:func:`load_text` of a UTF-8 file; a missing or unreadable file is a ProvisioningError."""
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except FileNotFoundError as exc:
        raise ProvisioningError("", f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ProvisioningError("", f"{path}: cannot be read: {exc}") from exc
    return await load_text(engine, text, str(path), limits=limits)


def _provisioned(by: AuditedBy, report: LoadReport) -> AuditNote:
    counts = {"created": report.created, "updated": report.updated, "deleted": report.deleted}
    return by.note("provision", report.source, after=counts)


def _first_line(error: Exception) -> str:
    cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
    lines = str(cause).strip().splitlines()
    # asyncpg's adapted errors read "<class 'asyncpg....'>: message"
    return re.sub(r"^<class '[^']+'>: ", "", lines[0]) if lines else type(cause).__name__


async def _write(session: AsyncSession, document: Document) -> None:
    written = Written()
    await write_platform(session, document, written)
    await write_brands(session, document, written)
    await write_brand_admins(session, document, written)
    await write_clients(session, document, written)
    await write_links(session, document, written)
    await write_routes(session, document, written)
    await written.delete_leftovers(session)
