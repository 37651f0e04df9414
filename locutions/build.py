"""Make the audio of every locution: text → espeak-ng → sox → ``sounds/<lang>/<sound>.wav``.

The files are what Asterisk 22 plays without transcoding a container: its ``wav`` format, which
is RIFF/WAVE PCM, 8000 Hz, mono, signed 16-bit. They are generated once and committed, so an
application server needs neither tool; ``check`` tells whether the committed set is whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dialplan.errors import CallControlError
from locutions.catalogue import CATALOGUE

SOUNDS_DIR = Path(__file__).parent / "sounds"
"""The committed audio, ``<lang>/<sound>.wav``."""
SUFFIX = ".wav"
RATE = 8000
CHANNELS = 1
SAMPLE_WIDTH = 2
"""Bytes per sample: signed 16-bit."""
SHORTEST = 0.5
LONGEST = 8.0
"""Seconds a locution may last: a caller waits through it before the call is refused."""

SPEED = 150
"""Words per minute: a little slower than espeak-ng's 175, for a telephone line."""
PEAK_DBFS = -3.0
SILENCE = "0.1%"
"""Below this level, leading and trailing audio counts as silence and is trimmed."""
FADE_IN = 0.02
FADE_OUT = 0.05
"""Seconds; a fade keeps the first and last sample from clicking."""
VOICES = {"en": "en-us", "es": "es"}
"""espeak-ng voice per catalogue language; any other language uses its own code as the voice."""
TOOL_TIMEOUT = 60.0
"""Seconds one espeak-ng | sox run may take (a locution takes well under one)."""
PACKAGES = {"espeak-ng": "espeak-ng", "sox": "sox"}
"""Command → the Debian package that provides it."""


class LocutionError(CallControlError):
    """Locution audio cannot be built, read or installed; says why in one line."""


@dataclass(frozen=True, slots=True)
class Audio:
    """What a WAV file holds, read from its header."""

    rate: int
    channels: int
    sample_width: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate if self.rate else 0.0

    def problems(self) -> list[str]:
        """Why Asterisk's ``wav`` format would not play it as a locution; empty when fine."""
        found = []
        if (self.rate, self.channels, self.sample_width) != (RATE, CHANNELS, SAMPLE_WIDTH):
            found.append(
                f"{self.rate} Hz, {self.channels} channel(s), {8 * self.sample_width}-bit "
                f"(want {RATE} Hz, mono, 16-bit)"
            )
        if not SHORTEST <= self.seconds <= LONGEST:
            found.append(f"{self.seconds:.2f} s long (want {SHORTEST}-{LONGEST} s)")
        return found


def read_audio(path: Path) -> Audio:
    """The format of the WAV file at ``path``; a missing or non-PCM file is a LocutionError."""
    try:
        with wave.open(str(path), "rb") as audio:
            return Audio(
                audio.getframerate(),
                audio.getnchannels(),
                audio.getsampwidth(),
                audio.getnframes(),
            )
    except FileNotFoundError:
        raise LocutionError(f"{path} is missing") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise LocutionError(f"{path} is not a PCM WAV file: {exc}") from None


def sound_file(root: Path, language: str, sound: str) -> Path:
    return root / language / f"{sound}{SUFFIX}"


def expected(languages: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Every (sound, language) the catalogue has a text for, optionally only ``languages``."""
    wanted = None if languages is None else set(languages)
    return [
        (sound, language)
        for sound, texts in sorted(CATALOGUE.items())
        for language in sorted(texts)
        if wanted is None or language in wanted
    ]


def check(root: Path = SOUNDS_DIR) -> list[str]:
    """What is wrong with the audio under ``root``, one line each: files missing, in the wrong
    format or length, and files the catalogue does not name. Empty when the set is whole."""
    found = []
    wanted = {sound_file(root, language, sound) for sound, language in expected()}
    for path in sorted(wanted):
        if not path.is_file():
            found.append(f"{path.relative_to(root)}: missing")
            continue
        try:
            found += [f"{path.relative_to(root)}: {p}" for p in read_audio(path).problems()]
        except LocutionError as exc:
            found.append(str(exc))
    if root.is_dir():
        for path in sorted(root.rglob(f"*{SUFFIX}")):
            if path not in wanted:
                found.append(f"{path.relative_to(root)}: not in the catalogue")
    return found


def require_tools() -> dict[str, str]:
    """The paths of espeak-ng and sox; missing ones are a LocutionError naming their packages."""
    found = {command: shutil.which(command) for command in PACKAGES}
    missing = sorted(PACKAGES[command] for command, path in found.items() if path is None)
    if missing:
        raise LocutionError(
            f"building locutions needs {' and '.join(missing)}: apt-get install {' '.join(missing)}"
        )
    return {command: path for command, path in found.items() if path is not None}


def sox_effects() -> list[str]:
    """Trim silence at both ends (reversing to reach the end without knowing the length), fade
    in and out, resample to 8 kHz mono, then normalise the peak."""
    trim = ["silence", "1", "0.01", SILENCE]
    return [
        *trim,
        "reverse",
        *trim,
        "fade",
        "q",
        str(FADE_OUT),
        "reverse",
        "fade",
        "q",
        str(FADE_IN),
        "rate",
        str(RATE),
        "channels",
        str(CHANNELS),
        "norm",
        str(PEAK_DBFS),
    ]


def synthesise(text: str, language: str, target: Path, tools: dict[str, str]) -> Audio:
    """Speak ``text`` in ``language`` into ``target`` (written whole or not at all)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=SUFFIX, dir=target.parent
    )
    os.close(handle)
    speak = [tools["espeak-ng"], "-v", VOICES.get(language, language), "-s", str(SPEED)]
    convert = [tools["sox"], "-R", "-q", "-t", "wav", "-", "-t", "wav", "-b", "16"]
    convert += ["-e", "signed-integer", temporary, *sox_effects()]
    try:
        spoken = subprocess.run(
            [*speak, "--stdout", text],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
        )
        if spoken.returncode != 0 or not spoken.stdout:
            detail = _last_line(spoken.stderr.decode(errors="replace"))
            raise LocutionError(f"espeak-ng -v {speak[2]} failed for {target.name}: {detail}")
        converted = subprocess.run(
            convert, input=spoken.stdout, capture_output=True, timeout=TOOL_TIMEOUT
        )
        if converted.returncode != 0:
            detail = _last_line(converted.stderr.decode(errors="replace"))
            raise LocutionError(f"sox failed for {target.name}: {detail}")
        audio = read_audio(Path(temporary))
        if audio.problems():
            raise LocutionError(f"{target.name} came out {'; '.join(audio.problems())}")
        os.replace(temporary, target)
        return audio
    except subprocess.TimeoutExpired as exc:
        raise LocutionError(
            f"{Path(str(exc.cmd[0])).name} took over {TOOL_TIMEOUT:.0f} s"
        ) from None
    finally:
        Path(temporary).unlink(missing_ok=True)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def build(
    root: Path = SOUNDS_DIR,
    sounds: Iterable[str] | None = None,
    languages: Iterable[str] | None = None,
) -> list[Path]:
    """Generate the audio of ``sounds`` (default: all) in ``languages`` (default: all) under
    ``root``; returns the files written. Unknown names are refused before anything is made."""
    chosen = sorted(CATALOGUE) if sounds is None else list(dict.fromkeys(sounds))
    unknown = [sound for sound in chosen if sound not in CATALOGUE]
    if unknown:
        raise LocutionError(f"no locution named {', '.join(map(repr, unknown))}")
    known_languages = {language for texts in CATALOGUE.values() for language in texts}
    wanted = None if languages is None else list(dict.fromkeys(languages))
    if wanted is not None and (strange := [x for x in wanted if x not in known_languages]):
        raise LocutionError(
            f"no locution in {', '.join(map(repr, strange))} "
            f"(the catalogue has {', '.join(sorted(known_languages))})"
        )
    tools = require_tools()
    written = []
    for sound, language in expected(wanted):
        if sound in chosen:
            target = sound_file(root, language, sound)
            synthesise(CATALOGUE[sound][language], language, target, tools)
            written.append(target)
    return written
