"""Recorded call segments: stored as WAV files under one folder plus one row each.

A segment's file lives at a readable path relative to the recordings folder::

    <client>/<YYYY>/<MM>/<DD>/<HHMMSS>_<caller>_to_<callee>_<call id>_<segment>.wav

(the UTC start; every part reduced to ``[A-Za-z0-9+._-]``). The file and its row go
together: ``RecordingStore.save`` writes the file whole (a temporary file linked into
place, never over an existing one) before inserting the row, and removes the file if
the insert fails; ``remove`` deletes the row and sets the file aside in one transaction,
unlinks the file once that is committed, and puts it back if it could not be.

Errors of this module::

    CallControlError
    └── RecordingError             a recording cannot be stored, found or removed
        ├── DuplicateSegment       the call's segment is already recorded
        ├── RecordingNotFound      no recording has that id
        └── PermissionDenied       the actor may not remove that recording
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import re
import secrets
import shutil
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dialplan.errors import CallControlError, NotFound
from models import tenants
from models.admins import AdminPrivilege, AuditedBy, record
from models.files import atomic_bytes, atomic_text, sync_folder
from models.platform import Recording
from models.tenants import Client

log = logging.getLogger("callcontrol.recordings")

MANIFEST = "recordings.csv"
MANIFEST_COLUMNS = (
    "id",
    "client",
    "client_id",
    "call_id",
    "segment",
    "caller",
    "callee",
    "recorder_user_id",
    "recorder",
    "started_at",
    "duration",
    "file",
)
"""Columns of an export's manifest; ``file`` is relative to the export folder, empty
when the recording's file was missing."""

FILE_MODE = 0o640
"""Recordings are personal data: readable by the owner's group, not by everyone."""

_UNSAFE = re.compile(r"[^A-Za-z0-9+._-]+")
_PART_LENGTH = 64
_SECONDS = Decimal("0.001")
_MAX_SECONDS = Decimal(10**7)  # Numeric(10, 3)
_LENGTHS = {"client_name": 128, "call_id": 64, "caller": 64, "callee": 64, "recorder": 128}


class RecordingError(CallControlError):
    """A recording cannot be stored, found or removed."""


class DuplicateSegment(RecordingError):
    def __init__(self, call_id: str, segment: int, detail: str = "is already recorded") -> None:
        super().__init__(f"call {call_id!r} segment {segment} {detail}")
        self.call_id = call_id
        self.segment = segment


class RecordingNotFound(RecordingError):
    def __init__(self, recording_id: int) -> None:
        super().__init__(f"no recording with id {recording_id}")
        self.recording_id = recording_id


class PermissionDenied(RecordingError):
    """Removal refused; ``reason`` says why, without naming another client."""

    def __init__(self, recording_id: int, actor: Actor, reason: str) -> None:
        super().__init__(f"recording {recording_id}: removal refused for {actor}: {reason}")
        self.recording_id = recording_id
        self.actor = actor
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Operator:
    """The platform operator: may remove any recording."""

    def __str__(self) -> str:
        return "the platform operator"


@dataclass(frozen=True, slots=True)
class ClientAdmin:
    """A client-facing path, acting as the client admin ``username``: may remove only
    its own client's recordings, and only when that client allows recording removal."""

    username: str

    def __str__(self) -> str:
        return f"client admin {self.username!r}"


Actor = Operator | ClientAdmin


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """One recorded segment of a call, valid for the ``recordings`` table.

    ``started_at`` is normalised to UTC and ``duration`` to seconds with three places;
    anything the table cannot hold raises ``ValueError`` here, not at the insert.
    """

    client_id: int
    client_name: str
    call_id: str
    segment: int
    caller: str
    callee: str
    recorder_user_id: int | None = None
    recorder: str | None = None
    started_at: datetime
    duration: Decimal

    def __post_init__(self) -> None:
        where = f"segment {self.segment!r} of call {self.call_id!r}"
        numbers = {"client_id": self.client_id, "segment": self.segment}
        if self.recorder_user_id is not None:
            numbers["recorder_user_id"] = self.recorder_user_id
        for name, value in numbers.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{where}: {name} must be int")
        if self.segment < 1:
            raise ValueError(f"{where}: segments are numbered from 1")
        for name, length in _LENGTHS.items():
            value = getattr(self, name)
            if value is None and name == "recorder":
                continue
            if not isinstance(value, str) or len(value) > length:
                raise ValueError(f"{where}: {name} must be a string of at most {length}")
        if not self.call_id or not self.client_name:
            raise ValueError(f"{where}: call_id and client_name must not be empty")
        if not isinstance(self.started_at, datetime) or self.started_at.utcoffset() is None:
            raise ValueError(f"{where}: started_at must be a datetime with a time zone")
        object.__setattr__(self, "started_at", self.started_at.astimezone(UTC))
        object.__setattr__(self, "duration", _seconds(where, self.duration))


def _seconds(where: str, value: object) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{where}: duration must be a finite Decimal")
    exact = value.quantize(_SECONDS)
    if exact != value or not 0 <= exact < _MAX_SECONDS:
        raise ValueError(f"{where}: duration {value} is not seconds with at most 3 places")
    return exact


@dataclass(frozen=True, slots=True)
class StoredRecording:
    """A stored segment; ``file_path`` is relative to the recordings folder, '/'-separated."""

    id: int
    file_path: str
    segment: Segment

    def summary(self) -> dict[str, Any]:
        """The recording as an answer lists it and the audit trail keeps it."""
        segment = self.segment
        return {
            "id": self.id,
            "call_id": segment.call_id,
            "segment": segment.segment,
            "caller": segment.caller,
            "callee": segment.callee,
            "recorder": segment.recorder,
            "started_at": segment.started_at.isoformat(),
            "duration": str(segment.duration),
        }


@dataclass(frozen=True, slots=True)
class Removed:
    """A removed recording; ``file_missing`` when only its row was left to remove."""

    recording: StoredRecording
    file_missing: bool


@dataclass(frozen=True, slots=True)
class ExportReport:
    """An export: recordings listed in the manifest, files copied, files not found."""

    listed: int
    copied: int
    missing: int
    manifest: Path


def safe_part(text: str, fallback: str = "unknown") -> str:
    """``text`` as a file-name part of ``[A-Za-z0-9+._-]``: accents dropped, anything
    else turned into ``_``, no dot or ``_`` at either end (nothing hidden, never ``..``)."""
    plain = "".join(
        char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char)
    )
    cleaned = _UNSAFE.sub("_", plain)[:_PART_LENGTH].strip("._")
    return cleaned or fallback


def segment_path(segment: Segment) -> str:
    """The readable path of ``segment``'s file, relative to the recordings folder."""
    at = segment.started_at
    name = (
        f"{at:%H%M%S}_{safe_part(segment.caller)}_to_{safe_part(segment.callee)}_"
        f"{safe_part(segment.call_id, 'call')}_{segment.segment}.wav"
    )
    client = safe_part(segment.client_name, f"client-{segment.client_id}")
    return f"{client}/{at:%Y}/{at:%m}/{at:%d}/{name}"


def file_of(folder: Path, relative: str) -> Path:
    """The file of a row's ``file_path``; refused when it would point outside ``folder``."""
    path = PurePosixPath(relative)
    if not path.parts or path.is_absolute() or ".." in path.parts:
        raise RecordingError(f"recording file {relative!r} is not inside the recordings folder")
    return folder.joinpath(*path.parts)


class RecordingStore:
    """Stores segments under ``folder``: a complete file and its row, or neither.

    A stored file is never overwritten, and a (call id, segment) is stored once.
    """

    def __init__(self, engine: AsyncEngine, folder: Path | str) -> None:
        self.engine = engine
        self.folder = Path(folder)

    async def save(self, segment: Segment, audio: bytes) -> Path:
        """Write ``audio`` (a WAV file) at the segment's readable path, then its row.

        ``DuplicateSegment`` when the call's segment is already recorded (or its file
        exists); any failure to insert the row removes the file and propagates."""
        if await _recorded(self.engine, segment):
            raise DuplicateSegment(segment.call_id, segment.segment)
        relative = segment_path(segment)
        target = file_of(self.folder, relative)
        try:
            await asyncio.to_thread(_write_new, target, audio)
        except FileExistsError:
            raise DuplicateSegment(
                segment.call_id, segment.segment, f"already has a file {relative}"
            ) from None
        try:
            await self._insert(segment, relative)
        except BaseException:
            # Synchronous, so that a cancelled save leaves no file without a row either.
            target.unlink(missing_ok=True)
            raise
        log.info(
            "call %s: segment %d recorded in %s (%s s)",
            segment.call_id,
            segment.segment,
            relative,
            segment.duration,
        )
        return target

    async def _insert(self, segment: Segment, relative: str) -> None:
        row = {name: getattr(segment, name) for name in _ROW_FIELDS} | {"file_path": relative}
        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(Recording), row)
        except IntegrityError as exc:
            if await _recorded(self.engine, segment):  # a concurrent save of the same segment
                raise DuplicateSegment(segment.call_id, segment.segment) from exc
            raise

    async def discard_failed(
        self, partial: Path | None, reason: str, *, call_id: str | None = None
    ) -> bool:
        """After a recording failed mid-call: remove its partial file (absolute, or
        relative to the folder), if any, and log one line. True when a file was removed."""
        removed, problem = False, ""
        if partial is not None:
            path = partial if partial.is_absolute() else self.folder / partial
            try:
                await asyncio.to_thread(path.unlink)
                removed = True
            except FileNotFoundError:
                pass
            except OSError as exc:
                problem = f"; could not remove {path}: {exc.strerror or exc}"
        left = f"removed {partial}" if removed else "no partial file left"
        log.warning("call %s: recording failed (%s); %s%s", call_id or "-", reason, left, problem)
        return removed


_ROW_FIELDS = (
    "client_id",
    "call_id",
    "segment",
    "caller",
    "callee",
    "recorder_user_id",
    "recorder",
    "started_at",
    "duration",
)


async def _recorded(engine: AsyncEngine, segment: Segment) -> bool:
    query = select(
        exists().where(Recording.call_id == segment.call_id, Recording.segment == segment.segment)
    )
    async with engine.connect() as connection:
        return bool(await connection.scalar(query))


def _write_new(target: Path, audio: bytes) -> None:
    """``target`` complete with ``audio``, or untouched: written to a temporary file
    beside it, then hard-linked into place (unlike a rename, a link never replaces a
    file that is already there: ``FileExistsError``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(audio)
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    sync_folder(target.parent)


_COLUMNS = (
    Recording.id,
    Recording.file_path,
    Client.name.label("client_name"),
    *(getattr(Recording, name) for name in _ROW_FIELDS),
)
_LIST = (
    select(*_COLUMNS)
    .join(Client, Client.id == Recording.client_id)
    .order_by(Recording.started_at, Recording.call_id, Recording.segment)
)


async def list_recordings(
    engine: AsyncEngine,
    client: str | None = None,
    call_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[StoredRecording]:
    """Recordings by start: of the client named ``client``, of the call ``call_id``,
    started from ``since`` to ``until`` (UTC days, inclusive). ``NotFound`` when no
    client has that name."""
    query = _LIST
    if client is not None:
        query = query.where(Client.name == client)
    if call_id is not None:
        query = query.where(Recording.call_id == call_id)
    if since is not None:
        query = query.where(Recording.started_at >= _midnight(since))
    if until is not None:
        query = query.where(Recording.started_at < _midnight(until + timedelta(days=1)))
    async with engine.connect() as connection:
        if client is not None:
            known = await connection.scalar(select(Client.id).where(Client.name == client))
            if known is None:
                raise NotFound("client", client)
        rows = (await connection.execute(query)).all()
    return [_stored(row) for row in rows]


def _stored(row: Row[Any]) -> StoredRecording:
    values = row._asdict()
    return StoredRecording(values.pop("id"), values.pop("file_path"), Segment(**values))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def remove(
    engine: AsyncEngine,
    folder: Path | str,
    recording_id: int,
    actor: Actor,
    *,
    audited: AuditedBy | None = None,
) -> Removed:
    """Remove a recording's file and row together, if ``actor`` may.

    ``RecordingNotFound`` for an unknown id; ``PermissionDenied`` (nothing touched)
    when a client admin may not. In one transaction the row is deleted and the file
    renamed aside; once committed the file is unlinked, and if the commit fails it is
    renamed back. A file already missing does not keep the row (it is logged). With
    ``audited``, the removal is audited as it in the same transaction
    (``recording.delete``, the client's brand and id, the recording before)."""
    folder = Path(folder)
    moved: tuple[Path, Path] | None = None  # (the file, where it was set aside)
    try:
        async with engine.begin() as connection:
            row = (await connection.execute(_LIST.where(Recording.id == recording_id))).first()
            if row is None:
                raise RecordingNotFound(recording_id)
            stored = _stored(row)
            if isinstance(actor, ClientAdmin):
                await _check_admin(connection, stored, actor)
            source = file_of(folder, stored.file_path)
            # The delete comes first: it waits for (or finds nothing after) a concurrent
            # removal of the same row, so only the removal that wins touches the file.
            deleted = await connection.execute(
                delete(Recording).where(Recording.id == recording_id)
            )
            if deleted.rowcount != 1:
                raise RecordingNotFound(recording_id)
            if audited is not None:
                await _audit_removal(connection, stored, audited)
            aside = source.with_name(f".{source.name}.{secrets.token_hex(4)}.removing")
            if await asyncio.to_thread(_move, source, aside):
                moved = (source, aside)
    except BaseException:
        if moved is not None:
            os.rename(moved[1], moved[0])  # synchronous: also when the removal is cancelled
        raise
    if moved is None:
        log.warning(
            "recording %d removed by %s; its file %s was already missing",
            recording_id,
            actor,
            stored.file_path,
        )
        return Removed(stored, file_missing=True)
    try:
        await asyncio.to_thread(moved[1].unlink)
    except OSError as exc:  # the row is gone: say where the file is rather than fail
        log.error("recording %d removed, but not its file %s: %s", recording_id, moved[1], exc)
    log.info("recording %d (%s) removed by %s", recording_id, stored.file_path, actor)
    return Removed(stored, file_missing=False)


async def _audit_removal(
    connection: AsyncConnection, stored: StoredRecording, audited: AuditedBy
) -> None:
    client_id = stored.segment.client_id
    brand_id = await connection.scalar(select(Client.brand_id).where(Client.id == client_id))
    note = audited.note(
        "recording.delete",
        str(stored.id),
        brand_id=brand_id,
        client_id=client_id,
        before=stored.summary(),
    )
    await record(connection, note)


def _move(source: Path, aside: Path) -> bool:
    try:
        os.rename(source, aside)
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _AdminFacts:
    client_id: int
    active: bool
    client_name: str
    allowed: bool
    restricted: bool


async def _check_admin(
    connection: AsyncConnection, stored: StoredRecording, actor: ClientAdmin
) -> None:
    admin = tenants.ClientAdmin
    privilege = AdminPrivilege
    query = (
        select(
            admin.client_id,
            admin.active,
            Client.name,
            Client.allow_recording_removal,
            admin.restricted
            & ~exists().where(
                privilege.client_admin_id == admin.id,
                privilege.section == "recordings",
                privilege.can_delete,
            ),
        )
        .join(Client, Client.id == admin.client_id)
        .where(admin.username == actor.username)
    )
    row = (await connection.execute(query)).first()
    facts = None if row is None else _AdminFacts(*row)
    reason = _refusal(stored.segment.client_id, facts)
    if reason is not None:
        raise PermissionDenied(stored.id, actor, reason)


def _refusal(recording_client: int, admin: _AdminFacts | None) -> str | None:
    """Why ``admin`` may not remove a recording of ``recording_client``; None if it may."""
    if admin is None:
        return "no such client admin"
    if not admin.active:
        return "the admin is not active"
    if admin.client_id != recording_client:
        return "the recording belongs to another client"
    if admin.restricted:
        return "the admin may not use the recordings section"
    if not admin.allowed:
        return f"client {admin.client_name} does not allow recording removal"
    return None


async def export(
    engine: AsyncEngine,
    folder: Path | str,
    target_dir: Path | str,
    client: str | None = None,
    call_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> ExportReport:
    """Copy the files of the recordings matching the filters (as :func:`list_recordings`)
    into ``target_dir`` at the same relative paths, with a ``recordings.csv`` manifest.

    Each file, and the manifest, is written whole or not at all; an existing copy is
    replaced. A recording whose file is missing is logged and listed with no file."""
    folder, target = Path(folder), Path(target_dir)
    if await asyncio.to_thread(_is_within, target, folder):
        raise RecordingError(f"cannot export into the recordings folder itself ({target})")
    found = await list_recordings(engine, client, call_id, since, until)
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    rows: list[list[str]] = []
    copied = 0
    for stored in found:
        source = file_of(folder, stored.file_path)
        present = await asyncio.to_thread(_copy, source, file_of(target, stored.file_path))
        if present:
            copied += 1
        else:
            log.warning("recording %d: file %s is missing, not exported", stored.id, source)
        rows.append(_manifest_row(stored, stored.file_path if present else ""))
    manifest = target / MANIFEST
    await asyncio.to_thread(_write_manifest, manifest, rows)
    return ExportReport(len(found), copied, len(found) - copied, manifest)


def _is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _manifest_row(stored: StoredRecording, file: str) -> list[str]:
    segment = stored.segment
    values: dict[str, object] = {name: getattr(segment, name) for name in _ROW_FIELDS}
    values |= {"id": stored.id, "client": segment.client_name, "file": file}
    values["started_at"] = segment.started_at.isoformat()
    return ["" if values[name] is None else str(values[name]) for name in MANIFEST_COLUMNS]


def _copy(source: Path, target: Path) -> bool:
    """Copy ``source`` to ``target`` atomically; False when ``source`` does not exist."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with source.open("rb") as audio, atomic_bytes(target) as out:
            shutil.copyfileobj(audio, out)
    except FileNotFoundError:
        if source.exists():
            raise
        return False
    return True


def _write_manifest(path: Path, rows: list[list[str]]) -> None:
    with atomic_text(path) as out:
        writer = csv.writer(out)
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows(rows)
    sync_folder(path.parent)
