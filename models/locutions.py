"""Clients' own audio for voice notifications (DESIGN §3.9), kept in the shared database.

A client may replace any locution of the catalogue, in any language, with a WAV of its own.
The audio lives in ``client_locutions`` because every application server reads the same
database; :func:`install_overrides` puts each one where Asterisk finds it, beside ours::

    <sounds>/<lang>/callcontrol/<sound>.wav                     the platform's (locutions.install)
    <sounds>/<lang>/callcontrol/client-<client id>/<sound>.wav  a client's override

The service plays ``sound:`` + :func:`override_sound` instead of ``sound:callcontrol/<sound>``
when :func:`overridden_sounds` holds the pair (sound, caller's language) for the client.

Audio is checked when stored (PCM, 8000 Hz, mono, 16-bit, 0.2–30 s: what Asterisk's ``wav``
format plays without transcoding) and stored as a plain RIFF/WAVE of a ``fmt `` and a ``data``
chunk, whatever other chunks the editor that made it added.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import ParamSpec, TypeVar

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Insert,
    LargeBinary,
    String,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from dialplan.errors import NotFound
from locutions.build import CHANNELS, RATE, SAMPLE_WIDTH, LocutionError
from locutions.catalogue import CATALOGUE
from locutions.install import FOLDER, resolve, write_file
from models.admins import AuditedBy, record
from models.base import Base
from models.changes import bump
from models.tenants import Brand, Client
from models.vocabulary import in_list

log = logging.getLogger("callcontrol.locutions")
P = ParamSpec("P")
R = TypeVar("R")

SOUNDS: tuple[str, ...] = tuple(CATALOGUE)
"""The sounds a client may override: every locution of the catalogue. A new sound needs a
migration too, since the database checks the name."""
SHORTEST = 0.2
LONGEST = 30.0
"""Seconds an override may last: the caller waits through it before the call is refused."""
MAX_FILE_BYTES = 2 * 1024 * 1024
"""Bytes of a WAV file we accept to read: 30 s of audio is 480 kB; the rest is room for the
chunks editors add (we drop them)."""
HEADER_BYTES = 44
"""A stored override is a canonical WAV: this header, then the samples."""
LANGUAGE = re.compile(r"[A-Za-z_]{2,8}")
"""An Asterisk language folder name: ``es``, ``en_GB``, ``pt_BR``..."""
CLIENT_FOLDER = re.compile(r"client-[0-9]+")

_AUDIO = LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
"""MariaDB's BLOB holds 64 kB, 4 s of audio; MEDIUMBLOB holds 16 MB."""


class ClientLocution(Base):
    """A client's own audio for one locution in one language."""

    __tablename__ = "client_locutions"
    __table_args__ = (
        UniqueConstraint("client_id", "sound", "language"),
        CheckConstraint(in_list("sound", SOUNDS), name="sound"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    sound: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    audio: Mapped[bytes] = mapped_column(_AUDIO)
    """A canonical WAV (44-byte header): PCM, 8000 Hz, mono, 16-bit."""
    sha256: Mapped[str] = mapped_column(String(64))
    """Hex digest of ``audio``: compare without reading the audio."""
    updated_at: Mapped[datetime]


_KEY = ("client_id", "sound", "language")


@dataclass(frozen=True, slots=True)
class Override:
    """One stored override, without its audio."""

    client_id: int
    client: str
    sound: str
    language: str
    size: int
    """Bytes of the stored WAV."""
    sha256: str
    updated_at: datetime

    @property
    def seconds(self) -> float:
        return max(self.size - HEADER_BYTES, 0) / (RATE * CHANNELS * SAMPLE_WIDTH)


@dataclass(frozen=True, slots=True)
class OverridesInstalled:
    """What installing the overrides did to each file."""

    written: list[Path] = field(default_factory=list)
    """New or different, now equal to the database."""
    kept: list[Path] = field(default_factory=list)
    """Already equal to the database."""
    removed: list[Path] = field(default_factory=list)
    """Overrides no longer in the database."""


def override_sound(client_id: int, sound: str) -> str:
    """The sound name Asterisk plays for the client's override of ``sound`` (with ``lang``)."""
    if sound not in CATALOGUE:
        raise NotFound("locution", sound)
    return f"{FOLDER}/client-{client_id}/{sound}"


def canonical_wav(data: bytes) -> bytes:
    """``data`` as a canonical WAV, if it is one Asterisk plays as a locution; otherwise a
    LocutionError saying what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise LocutionError(
            f"the audio is {len(data)} bytes; an override is at most {MAX_FILE_BYTES} bytes"
        )
    try:
        with wave.open(io.BytesIO(data), "rb") as audio:
            rate, channels = audio.getframerate(), audio.getnchannels()
            width, frames = audio.getsampwidth(), audio.getnframes()
            samples = audio.readframes(frames)
    except (EOFError, wave.Error) as exc:
        detail = str(exc) or "it ends too soon"
        raise LocutionError(f"the audio is not a PCM WAV file ({detail})") from None
    if (rate, channels, width) != (RATE, CHANNELS, SAMPLE_WIDTH):
        raise LocutionError(
            f"the audio is {rate} Hz, {channels} channel(s), {8 * width}-bit; "
            f"an override must be {RATE} Hz, mono, {8 * SAMPLE_WIDTH}-bit PCM"
        )
    if len(samples) != frames * width:
        raise LocutionError(
            f"the audio is truncated: {frames} samples announced, {len(samples) // width} present"
        )
    seconds = frames / rate
    if not SHORTEST <= seconds <= LONGEST:
        raise LocutionError(
            f"the audio lasts {seconds:.2f} s; an override lasts {SHORTEST}-{LONGEST:.0f} s"
        )
    out = io.BytesIO()
    with wave.open(out, "wb") as canonical:
        canonical.setnchannels(CHANNELS)
        canonical.setsampwidth(SAMPLE_WIDTH)
        canonical.setframerate(RATE)
        canonical.writeframes(samples)
    return out.getvalue()


def checked_override(sound: str, language: str, wav_bytes: bytes) -> bytes:
    """The audio to store for an override of ``sound`` in ``language`` (see
    :func:`canonical_wav`); NotFound for a sound the catalogue lacks, LocutionError for a bad
    language or audio. Needs no database, so a command checks its input before connecting."""
    _checked_key(sound, language)
    return canonical_wav(wav_bytes)


def _checked_key(sound: str, language: str) -> None:
    if sound not in CATALOGUE:
        raise NotFound("locution", sound)
    if not LANGUAGE.fullmatch(language):
        raise LocutionError(
            f"language {language!r} is not a language code (2-8 letters or _, e.g. es, pt_BR)"
        )


async def _client_id(connection: AsyncConnection, name: str) -> int:
    """The id of the client called ``name``; ``BRAND/CLIENT`` tells apart clients of the same
    name in different brands (names are unique only within a brand)."""
    named = select(Client.id, Brand.name).join(Brand, Brand.id == Client.brand_id)
    found = (await connection.execute(named.where(Client.name == name))).all()
    brand, slash, client = name.rpartition("/")
    if not found and slash:
        qualified = named.where(Client.name == client, Brand.name == brand)
        found = (await connection.execute(qualified)).all()
    if not found:
        raise NotFound("client", name)
    if len(found) > 1:
        brands = ", ".join(sorted(row[1] for row in found))
        raise LocutionError(
            f"{len(found)} clients are named {name!r} (brands {brands}): write BRAND/{name}"
        )
    client_id: int = found[0][0]
    return client_id


def _upsert(dialect: str, values: dict[str, object]) -> Insert:
    """Insert, or replace the audio of the row with the same client, sound and language, in
    one statement (no window for another writer between a read and a write)."""
    replaced = ("audio", "sha256", "updated_at")
    if dialect in ("mysql", "mariadb"):
        # aiomysql 0.2 fails on any bytes parameter with PyMySQL 1.2 ("'str' object is not
        # callable", aio-libs/aiomysql#1080): send the audio as hex text the server decodes.
        audio = values["audio"]
        assert isinstance(audio, bytes)
        values = values | {"audio": func.unhex(audio.hex())}
        mine = mysql.insert(ClientLocution).values(values)
        return mine.on_duplicate_key_update({name: mine.inserted[name] for name in replaced})
    if dialect == "postgresql":
        pg = postgresql.insert(ClientLocution).values(values)
        return pg.on_conflict_do_update(
            index_elements=_KEY, set_={name: pg.excluded[name] for name in replaced}
        )
    lite = sqlite.insert(ClientLocution).values(values)
    return lite.on_conflict_do_update(
        index_elements=_KEY, set_={name: lite.excluded[name] for name in replaced}
    )


async def set_override(
    engine: AsyncEngine,
    client_name: str,
    sound: str,
    language: str,
    wav_bytes: bytes,
    *,
    audited: AuditedBy | None = None,
) -> Override:
    """Store ``wav_bytes`` as the client's ``sound`` in ``language``, replacing the one it
    had. Unknown client or sound: NotFound; a bad language or audio: LocutionError. Nothing
    is stored unless everything is right. With ``audited``, audited as it in the same
    transaction (``locution.override``: the audio's digest and length before and after)."""
    audio = checked_override(sound, language, wav_bytes)
    digest = hashlib.sha256(audio).hexdigest()
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        client_id = await _client_id(connection, client_name)
        before = await _audio_facts(connection, client_id, sound, language)
        values: dict[str, object] = {
            "client_id": client_id,
            "sound": sound,
            "language": language,
            "audio": audio,
            "sha256": digest,
            "updated_at": now,
        }
        await connection.execute(_upsert(engine.dialect.name, values))
        if audited is not None:
            after = {"sha256": digest, "bytes": len(audio)}
            await _audit(
                connection, audited, "locution.override", client_id, sound, language, before, after
            )
        await bump(connection)
    return Override(client_id, client_name, sound, language, len(audio), digest, now)


async def remove_override(
    engine: AsyncEngine,
    client_name: str,
    sound: str,
    language: str,
    *,
    audited: AuditedBy | None = None,
) -> None:
    """Remove the client's override of ``sound`` in ``language``; LocutionError if it has
    none. With ``audited``, audited as it in the same transaction (``locution.remove``)."""
    _checked_key(sound, language)
    async with engine.begin() as connection:
        client_id = await _client_id(connection, client_name)
        before = await _audio_facts(connection, client_id, sound, language)
        gone = await connection.execute(
            delete(ClientLocution).where(
                ClientLocution.client_id == client_id,
                ClientLocution.sound == sound,
                ClientLocution.language == language,
            )
        )
        if gone.rowcount == 0:
            raise LocutionError(
                f"client {client_name!r} has no override of {sound} in {language!r}"
            )
        if audited is not None:
            await _audit(
                connection, audited, "locution.remove", client_id, sound, language, before, None
            )
        await bump(connection)


async def _audio_facts(
    connection: AsyncConnection, client_id: int, sound: str, language: str
) -> dict[str, object] | None:
    """What the audit keeps of a stored override: its digest and length (not the audio)."""
    row = (
        await connection.execute(
            select(ClientLocution.sha256, func.length(ClientLocution.audio)).where(
                ClientLocution.client_id == client_id,
                ClientLocution.sound == sound,
                ClientLocution.language == language,
            )
        )
    ).first()
    return None if row is None else {"sha256": row[0], "bytes": row[1]}


async def _audit(
    connection: AsyncConnection,
    audited: AuditedBy,
    action: str,
    client_id: int,
    sound: str,
    language: str,
    before: dict[str, object] | None,
    after: dict[str, object] | None,
) -> None:
    brand_id = await connection.scalar(select(Client.brand_id).where(Client.id == client_id))
    note = audited.note(
        action,
        f"{client_id}/{sound}/{language}",
        brand_id=brand_id,
        client_id=client_id,
        before=before,
        after=after,
    )
    await record(connection, note)


async def list_overrides(engine: AsyncEngine, client_name: str | None = None) -> list[Override]:
    """The overrides of every client (or of ``client_name``), by client, sound and language."""
    query = (
        select(
            ClientLocution.client_id,
            Client.name,
            ClientLocution.sound,
            ClientLocution.language,
            func.length(ClientLocution.audio),
            ClientLocution.sha256,
            ClientLocution.updated_at,
        )
        .join(Client, Client.id == ClientLocution.client_id)
        .order_by(
            Client.name, ClientLocution.client_id, ClientLocution.sound, ClientLocution.language
        )
    )
    async with engine.connect() as connection:
        if client_name is not None:
            query = query.where(
                ClientLocution.client_id == await _client_id(connection, client_name)
            )
        rows = (await connection.execute(query)).all()
    return [Override(*row) for row in rows]


async def overridden_sounds(engine: AsyncEngine, client_id: int) -> frozenset[tuple[str, str]]:
    """The (sound, language) pairs the client has its own audio for."""
    query = select(ClientLocution.sound, ClientLocution.language).where(
        ClientLocution.client_id == client_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return frozenset((sound, language) for sound, language in rows)


# ---- installation ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placed:
    key: tuple[int, str, str]
    sha256: str
    target: Path


async def install_overrides(
    engine: AsyncEngine, target_dir: Path | PurePosixPath, *, chroot: Path | None = None
) -> int:
    """Write every override to ``<target_dir>/<lang>/callcontrol/client-<id>/<sound>.wav``
    and return how many files were written; see :func:`install_overrides_report`."""
    return len((await install_overrides_report(engine, target_dir, chroot=chroot)).written)


async def install_overrides_report(
    engine: AsyncEngine, target_dir: Path | PurePosixPath, *, chroot: Path | None = None
) -> OverridesInstalled:
    """Make the ``client-*`` folders under ``target_dir`` (Asterisk's sounds folder; with
    ``chroot``, as seen inside it) hold exactly the overrides of the database.

    Each file is written to a temporary name and renamed, so Asterisk never plays half a
    file; a file whose bytes already match is left alone (and its audio not even read from
    the database), so a second run writes nothing. A ``.wav`` in a ``client-<id>`` folder
    that no override names is removed, and so is a folder left empty.
    """
    root, seen = await _on_disk(_where, target_dir, chroot)
    listing = select(
        ClientLocution.client_id,
        ClientLocution.sound,
        ClientLocution.language,
        ClientLocution.sha256,
    ).order_by(ClientLocution.client_id, ClientLocution.sound, ClientLocution.language)
    done = OverridesInstalled()
    async with engine.connect() as connection:
        rows = (await connection.execute(listing)).tuples().all()
        wanted = await _on_disk(_targets, root, seen, rows)
        for placed in wanted:
            if await _on_disk(_matches, placed.target, placed.sha256):
                done.kept.append(placed.target)
                continue
            client_id, sound, language = placed.key
            audio = await connection.scalar(
                select(ClientLocution.audio).where(
                    ClientLocution.client_id == client_id,
                    ClientLocution.sound == sound,
                    ClientLocution.language == language,
                )
            )
            if audio is None:  # removed since we listed it: the next run removes its file
                continue
            if await _on_disk(_write, placed.target, audio):
                done.written.append(placed.target)
            else:
                done.kept.append(placed.target)
    keep = {placed.target for placed in wanted}
    done.removed.extend(await _on_disk(_remove_stale, root, seen, keep))
    return done


async def _on_disk(work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``work`` on the files, in a thread; a failure of the file system is a LocutionError
    (never to be mistaken for the database's)."""
    try:
        return await asyncio.to_thread(work, *args, **kwargs)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise LocutionError(f"{where}{exc.strerror or exc}") from None


def _where(target_dir: Path | PurePosixPath, chroot: Path | None) -> tuple[Path, PurePosixPath]:
    """The root links resolve against and the sounds folder as Asterisk sees it (as
    ``locutions.install.install`` does); the folder must exist."""
    root = Path("/") if chroot is None else chroot.absolute()
    seen = PurePosixPath("/") / PurePosixPath(target_dir if chroot else Path(target_dir).absolute())
    top = resolve(root, seen)
    if not top.is_dir():
        raise LocutionError(f"{target_dir} is not a folder: give Asterisk's <astdatadir>/sounds")
    return root, seen


def _targets(
    root: Path, seen: PurePosixPath, rows: Iterable[tuple[int, str, str, str]]
) -> list[_Placed]:
    placed = []
    for client_id, sound, language, digest in rows:
        if not LANGUAGE.fullmatch(language) or sound not in CATALOGUE:
            # Written by another tool: no file name we could trust it with.
            log.warning("client %s: override %r in %r skipped", client_id, sound, language)
            continue
        folder = seen / language / FOLDER / f"client-{client_id}"
        target = resolve(root, folder) / f"{sound}.wav"
        placed.append(_Placed((client_id, sound, language), digest, target))
    return placed


def _matches(path: Path, digest: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == digest
    except OSError:
        return False


def _write(target: Path, content: bytes) -> bool:
    """Put ``content`` at ``target`` atomically, its folder made; False when it was there."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocutionError(f"cannot write {target}: {exc.strerror or exc}") from None
    return write_file(target, content)


def _remove_stale(root: Path, seen: PurePosixPath, keep: set[Path]) -> list[Path]:
    removed = []
    top = resolve(root, seen)
    for language in sorted(entry.name for entry in top.iterdir()):
        ours = resolve(root, seen / language / FOLDER)
        if not ours.is_dir():
            continue
        for folder in sorted(ours.iterdir()):
            # Only our own folders, and never through a link: a stray link must not make us
            # delete files elsewhere.
            if not CLIENT_FOLDER.fullmatch(folder.name) or folder.is_symlink():
                continue
            if not folder.is_dir():
                continue
            try:
                for path in sorted(folder.glob("*.wav")):
                    if path not in keep:
                        path.unlink()
                        removed.append(path)
                if not any(folder.iterdir()):
                    folder.rmdir()
            except OSError as exc:
                raise LocutionError(f"cannot clean {folder}: {exc.strerror or exc}") from None
    return removed
