"""Recording files: a tone of the recorded length in the requested format.

There is no RTP to record, so a recording holds a steady 400 Hz tone (about -12 dBFS):
audibly not silence, the way a recording of a call that was talked over is not. ``wav``
is a real RIFF/WAVE file (8 kHz, 16-bit, mono) that any audio tool opens; ``sln`` is the
same samples raw (little-endian), ``ulaw`` and ``alaw`` are them G.711-encoded.
``append`` extends an existing file, otherwise it is replaced.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

RATE = 8000
TONE_HZ = 400
"""A whole number of samples per period (20), so the period repeats exactly."""
AMPLITUDE = 8000
CONTENT_TYPES = {"wav": "audio/wav", "sln": "audio/sln", "ulaw": "audio/ulaw", "alaw": "audio/alaw"}
"""What ``GET /recordings/stored/{name}/file`` answers: Asterisk's ``audio/<extension>``."""
FORMATS = frozenset(CONTENT_TYPES)


def _ulaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 mu-law byte."""
    value = sample >> 2
    mask = 0xFF if value >= 0 else 0x7F
    value = min(abs(value), 8159) + 0x21
    segment = value.bit_length() - 6
    if segment > 7:  # past the last segment: the loudest code
        return 0x7F ^ mask
    return (segment << 4 | (value >> (segment + 1)) & 0x0F) ^ mask


def _alaw(sample: int) -> int:
    """One 16-bit linear sample as a G.711 A-law byte."""
    value = sample >> 3
    mask = 0xD5 if value >= 0 else 0x55
    if value < 0:
        value = -value - 1
    value = min(value, 0xFFF)
    if value < 32:
        code = value >> 1
    else:
        segment = value.bit_length() - 5
        code = segment << 4 | (value >> segment) & 0x0F
    return code ^ mask


_PERIOD = [
    round(AMPLITUDE * math.sin(2 * math.pi * TONE_HZ * n / RATE)) for n in range(RATE // TONE_HZ)
]
_LINEAR = b"".join(sample.to_bytes(2, "little", signed=True) for sample in _PERIOD)
_ENCODED: dict[str, bytes] = {
    "sln": _LINEAR,
    "ulaw": bytes(_ulaw(sample) for sample in _PERIOD),
    "alaw": bytes(_alaw(sample) for sample in _PERIOD),
}


def audio(fmt: str, samples: int) -> bytes:
    """``samples`` of the tone in the raw encoding of ``fmt`` (``wav`` = ``sln``)."""
    period = _ENCODED["sln" if fmt == "wav" else fmt]
    width = len(period) // len(_PERIOD)
    whole, rest = divmod(samples, len(_PERIOD))
    return period * whole + period[: rest * width]


def recording_path(folder: Path, name: str, fmt: str) -> Path:
    return folder / f"{name}.{fmt}"


def write(path: Path, fmt: str, seconds: float, *, append: bool = False) -> int:
    """Write (or append) ``seconds`` of the tone to ``path`` in ``fmt``; returns the
    samples written. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = max(int(seconds * RATE), 0)
    if fmt != "wav":
        with path.open("ab" if append else "wb") as out:
            out.write(audio(fmt, samples))
        return samples
    previous = b""
    if append and path.exists():
        with wave.open(str(path), "rb") as existing:
            previous = existing.readframes(existing.getnframes())
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(previous + audio(fmt, samples))
    return samples


def find(folder: Path, name: str) -> tuple[Path, str] | None:
    """The file of the stored recording ``name`` and its format, if there is one."""
    for fmt in sorted(FORMATS):
        path = recording_path(folder, name, fmt)
        if path.is_file():
            return path, fmt
    return None


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
