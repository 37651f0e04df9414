"""Recording files: silence of the recorded length in the requested format.

``wav`` is a real RIFF/WAVE file (8 kHz, 16-bit, mono) that any audio tool opens; the raw
formats hold the bytes Asterisk would write for silence in that encoding. ``append``
extends an existing file, ``overwrite`` replaces it.
"""

from __future__ import annotations

import wave
from pathlib import Path

RATE = 8000
RAW_SILENCE: dict[str, bytes] = {"ulaw": b"\xff", "alaw": b"\xd5", "sln": b"\x00\x00"}
FORMATS = frozenset({"wav", *RAW_SILENCE})


def recording_path(folder: Path, name: str, fmt: str) -> Path:
    return folder / f"{name}.{fmt}"


def write_silence(path: Path, fmt: str, seconds: float, *, append: bool = False) -> None:
    """Write (or append) ``seconds`` of silence to ``path`` in ``fmt``; raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = max(int(seconds * RATE), 0)
    if fmt != "wav":
        with path.open("ab" if append else "wb") as out:
            out.write(RAW_SILENCE[fmt] * samples)
        return
    previous = b""
    if append and path.exists():
        with wave.open(str(path), "rb") as existing:
            previous = existing.readframes(existing.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(previous + b"\x00\x00" * samples)


def stored(folder: Path) -> list[tuple[str, str]]:
    """``(name, format)`` of every recording file under ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*"):
        fmt = path.suffix.lstrip(".")
        if path.is_file() and fmt in FORMATS:
            found.append((path.relative_to(folder).with_suffix("").as_posix(), fmt))
    return sorted(found)
