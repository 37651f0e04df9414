"""Put the committed locutions where Asterisk looks for them, and name them for ARI.

Asterisk finds a relative sound name under ``<astdatadir>/sounds``, first in the channel's (or
ARI ``play``'s ``lang``) language folder, then with its dialect stripped (``es_MX`` → ``es``),
then with no language, and last in ``en``. So ``sound:callcontrol/no_client`` played with
``lang=es`` is ``sounds/es/callcontrol/no_client.wav``, and a language we do not ship falls back
to ``sounds/en/callcontrol/no_client.wav``: the English files are always installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dialplan.errors import NotFound
from locutions.build import SOUNDS_DIR, LocutionError, check, expected, sound_file
from locutions.catalogue import CATALOGUE, FALLBACK_LANGUAGE

FOLDER = "callcontrol"
"""Our folder inside each language folder, so our names never shadow Asterisk's own prompts."""
MAX_LINKS = 40
"""Symbolic links followed in one path before it counts as a loop (Linux's limit)."""


@dataclass(frozen=True, slots=True)
class Installed:
    """What ``install`` did, per file: ``written`` were new or different, ``kept`` were equal."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def sound_uri(sound: str) -> str:
    """The ARI media URI of a locution; pass the caller's language as ``play``'s ``lang``."""
    if sound not in CATALOGUE:
        raise NotFound("locution", sound)
    return f"sound:{FOLDER}/{sound}"


def languages(source: Path = SOUNDS_DIR) -> tuple[str, ...]:
    """The languages we ship: every locution has a text and an audio file in each of them."""
    spoken = set.intersection(*(set(texts) for texts in CATALOGUE.values()))
    return tuple(
        sorted(
            language
            for language in spoken
            if all(sound_file(source, language, sound).is_file() for sound in CATALOGUE)
        )
    )


def install(
    target_dir: Path | PurePosixPath,
    *,
    chroot: Path | None = None,
    only: Iterable[str] | None = None,
    source: Path = SOUNDS_DIR,
) -> Installed:
    """Copy every locution to ``<target_dir>/<lang>/callcontrol/<sound>.wav``.

    ``target_dir`` is the sounds folder as Asterisk sees it (``<astdatadir>/sounds``). With
    ``chroot``, it is a path inside that chroot, and symbolic links on the way resolve as they do
    inside it (Debian's ``sounds/en`` is an absolute link through ``/etc/alternatives``).
    ``only`` limits the languages (English is always added: it is Asterisk's fallback).

    Each file is written to a temporary name and renamed, so Asterisk never opens half a file;
    a file already equal is left alone, so installing twice writes nothing the second time.
    """
    problems = [p for p in check(source) if not p.endswith("not in the catalogue")]
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise LocutionError(
            f"the locution audio is incomplete ({problems[0]}{more}): "
            "run `callcontrol locutions build`"
        )
    wanted = None if only is None else {*only, FALLBACK_LANGUAGE}
    shipped = {language for _, language in expected()}
    if wanted is not None and (strange := sorted(wanted - shipped)):
        raise LocutionError(
            f"no locutions in {', '.join(strange)} (we ship {', '.join(sorted(shipped))})"
        )
    root = Path("/") if chroot is None else chroot.absolute()
    seen = PurePosixPath("/") / PurePosixPath(target_dir if chroot else Path(target_dir).absolute())
    top = resolve(root, seen)
    if not top.exists():
        raise LocutionError(f"{target_dir} does not exist: give Asterisk's <astdatadir>/sounds")
    if not top.is_dir():
        raise LocutionError(f"{target_dir} is not a folder")
    done = Installed()
    folders: dict[str, Path] = {}
    for sound, language in expected(wanted):
        if language not in folders:
            folders[language] = _make_folder(root, seen / language / FOLDER)
        _place(sound_file(source, language, sound), folders[language] / f"{sound}.wav", done)
    return done


def resolve(root: Path, path: PurePosixPath) -> Path:
    """Where the absolute ``path``, as seen from inside ``root``, is on this machine: symbolic
    links are followed with ``root`` as their ``/``, and ``..`` never climbs above it. Parts
    that do not exist yet are kept as they are."""
    pending = list(path.parts[1:])
    done: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        here = root.joinpath(*done, part)
        if not here.is_symlink():
            done.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise LocutionError(f"{path}: too many symbolic links (a loop?)")
        link = PurePosixPath(os.readlink(here))
        if link.is_absolute():
            done = []
            pending = [*link.parts[1:], *pending]
        else:
            pending = [*link.parts, *pending]
    return root.joinpath(*done)


def _make_folder(root: Path, shown: PurePosixPath) -> Path:
    folder = resolve(root, shown)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LocutionError(f"cannot create {shown}: a file is in the way") from None
    except OSError as exc:
        raise LocutionError(f"cannot create {shown}: {exc.strerror}") from None
    return folder


def _place(source: Path, target: Path, done: Installed) -> None:
    (done.written if write_file(target, source.read_bytes()) else done.kept).append(target)


def write_file(target: Path, content: bytes) -> bool:
    """Put ``content`` at ``target`` whole or not at all (a temporary file beside it, renamed
    into place, readable by a non-root Asterisk); False when it was already there."""
    try:
        if target.is_file() and target.read_bytes() == content:
            return False
        handle, temporary = tempfile.mkstemp(prefix=f".{target.stem}.", dir=target.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(content)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from a non-root Asterisk
            os.replace(temporary, target)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as exc:
        raise LocutionError(f"cannot write {target}: {exc.strerror or exc}") from None
    return True
