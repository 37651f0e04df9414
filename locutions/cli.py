"""``callcontrol locutions …``: build the audio, check it, install it into Asterisk, list it.

Bad input ends in one line on stderr (``error: …``) and exit code 1, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from dialplan.errors import CallControlError
from locutions.build import SOUNDS_DIR, LocutionError, build, check, expected, read_audio
from locutions.build import sound_file as path_of
from locutions.catalogue import CATALOGUE
from locutions.install import install as install_into

app = typer.Typer(
    help="Voice notifications: the audio of every reason, per language, and its installation.",
    no_args_is_help=True,
)


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Our errors end the command with their one line on stderr and exit code 1."""
    try:
        yield
    except CallControlError as exc:
        fail(str(exc))


SoundOption = Annotated[
    list[str] | None,
    typer.Option("--sound", help="Only this sound (repeat for more; default: every sound)."),
]
LanguageOption = Annotated[
    list[str] | None,
    typer.Option("--language", help="Only this language (repeat for more; default: all)."),
]


@app.command("build")
def build_command(
    sound: SoundOption = None,
    language: LanguageOption = None,
    into: Annotated[
        Path, typer.Option("--into", help="Folder to write <lang>/<sound>.wav into.")
    ] = SOUNDS_DIR,
    check_only: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing: exit 1 when a file is missing, stray or in the wrong format.",
        ),
    ] = False,
) -> None:
    """Generate the audio with espeak-ng and sox (WAV 8 kHz mono 16-bit), or check it."""
    with one_line_errors():
        if check_only:
            problems = check(into)
            for problem in problems[1:]:
                typer.echo(problem, err=True)
            if problems:
                fail(f"{problems[0]} ({len(problems)} problem(s) in {into})")
            typer.echo(f"{len(expected())} locutions in {into}: all present, WAV 8 kHz mono 16-bit")
            return
        if into.exists() and not into.is_dir():
            raise LocutionError(f"{into} is not a folder")
        written = build(into, sound, language)
        typer.echo(f"built {len(written)} locution(s) into {into}")


@app.command("install")
def install_command(
    target: Annotated[
        Path, typer.Argument(help="Asterisk's sounds folder: <astdatadir>/sounds.", metavar="DIR")
    ],
    language: LanguageOption = None,
    chroot: Annotated[
        Path | None,
        typer.Option("--chroot", help="DIR is inside this chroot (links resolve inside it)."),
    ] = None,
) -> None:
    """Copy every locution to DIR/<lang>/callcontrol/<sound>.wav (idempotent)."""
    with one_line_errors():
        done = install_into(target, chroot=chroot, only=language)
    typer.echo(f"installed into {target}: {len(done.written)} written, {len(done.kept)} unchanged")


@app.command("list")
def list_command(language: LanguageOption = None) -> None:
    """Every locution: sound, language, seconds, text."""
    known = {code for texts in CATALOGUE.values() for code in texts}
    if language and (strange := sorted(set(language) - known)):
        fail(f"no locutions in {', '.join(strange)} (the catalogue has {', '.join(sorted(known))})")
    rows = []
    for sound, code in expected(language):
        try:
            seconds = f"{read_audio(path_of(SOUNDS_DIR, code, sound)).seconds:.2f}"
        except LocutionError:
            seconds = "missing"
        rows.append((sound, code, seconds, CATALOGUE[sound][code]))
    width = max(len(row[0]) for row in rows)
    for sound, code, seconds, text in rows:
        typer.echo(f"{sound:<{width}}  {code:<3} {seconds:>7}  {text}")
