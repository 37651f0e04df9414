"""File-system helpers shared by what writes files (the CDR spool, recordings, exports,
rendered configuration)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO, TextIO, cast


def sync_folder(folder: Path) -> None:
    """Make a created, renamed or removed file name survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _atomic(path: Path, mode: int | None, open_mode: str) -> Iterator[IO[str] | IO[bytes]]:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # 0o666 before the umask, as a plain open() creates a file, unless ``mode`` is given.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        if mode is not None:
            os.fchmod(descriptor, mode)
        text = {} if "b" in open_mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(descriptor, open_mode, **text) as out:  # type: ignore[call-overload]
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text(path: Path, mode: int | None = None) -> Iterator[TextIO]:
    """Write ``path`` (UTF-8, newlines as written) whole or not at all: a temporary file
    beside it, fsynced and renamed into place once the block ends, removed when it
    raises. ``mode`` sets its permission bits (else 0o666 less the umask)."""
    with _atomic(path, mode, "w") as out:
        yield cast(TextIO, out)


@contextlib.contextmanager
def atomic_bytes(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """:func:`atomic_text` for bytes."""
    with _atomic(path, mode, "wb") as out:
        yield cast(BinaryIO, out)
