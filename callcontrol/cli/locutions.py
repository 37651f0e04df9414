"""``callcontrol locutions …``: build the audio, check it, install it into Asterisk, list it;
store, remove and list clients' own audio (overrides, kept in the shared database).

Bad input ends in one line on stderr (``error: …``) and exit code 1, never a traceback, and
nothing half-written: a file is renamed into place whole, a database change is one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    fail,
    one_line_errors,
    run,
    settings,
)
from dialplan.errors import CallControlError, DatabaseUnavailable
from locutions.build import SOUNDS_DIR, LocutionError, build, check, expected, read_audio
from locutions.build import sound_file as path_of
from locutions.catalogue import CATALOGUE
from locutions.install import install as install_into

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from callcontrol.config import Config
    from models.locutions import OverridesInstalled

app = typer.Typer(
    help="Voice notifications: the audio of every reason, per language, and its installation.",
    no_args_is_help=True,
)


T = TypeVar("T")


SoundOption = Annotated[
    list[str] | None,
    typer.Option("--sound", help="Only this sound (repeat for more; default: every sound)."),
]
LanguageOption = Annotated[
    list[str] | None,
    typer.Option("--language", help="Only this language (repeat for more; default: all)."),
]
ClientArgument = Annotated[
    str,
    typer.Argument(help="The client's name (BRAND/CLIENT if brands share it).", metavar="CLIENT"),
]
SoundArgument = Annotated[
    str, typer.Argument(help="The locution's sound name (see `list`).", metavar="SOUND")
]
LanguageArgument = Annotated[
    str,
    typer.Argument(help="The caller's language it is for (es, en, pt_BR...).", metavar="LANGUAGE"),
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
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Copy every locution to DIR/<lang>/callcontrol/<sound>.wav, and with a database, every
    client override to DIR/<lang>/callcontrol/client-<id>/<sound>.wav (idempotent).

    Overrides of every language are installed, whatever --language says: the service plays one
    whenever the database has it. A database that cannot be reached is one warning: the
    platform's locutions are installed all the same."""
    with one_line_errors():
        url = configured_database(settings(config_file, database_url=database_url))
        done = install_into(target, chroot=chroot, only=language)
    typer.echo(f"installed into {target}: {len(done.written)} written, {len(done.kept)} unchanged")
    if url is None:
        return

    import asyncio

    from models.locutions import install_overrides_report

    async def place(engine: AsyncEngine) -> OverridesInstalled:
        return await install_overrides_report(engine, target, chroot=chroot)

    try:
        placed = asyncio.run(using_database(url, place))
    except DatabaseUnavailable as exc:
        typer.echo(f"warning: client overrides not installed: {exc}", err=True)
        return
    except CallControlError as exc:
        fail(str(exc))
    typer.echo(
        f"client overrides: {len(placed.written)} written, {len(placed.kept)} unchanged, "
        f"{len(placed.removed)} removed"
    )


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


# ---- clients' own audio ----------------------------------------------------------------------


def configured_database(config: Config) -> str | None:
    """The database to take overrides from; None when none is configured (the default URL,
    and its SQLite file was never created). A URL that is not one is a ConfigError."""
    from models.db import DEFAULT_URL

    if _sqlite_file_missing(config.database_url) and config.database_url == DEFAULT_URL:
        return None
    return config.database_url


def _sqlite_file_missing(url: str) -> bool:
    from models.db import normalise_url

    parsed = normalise_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return False
    return not Path(name).is_file()


async def using_database(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work`` on the database at ``url``, once it is known to be reachable and at our schema;
    DatabaseUnavailable otherwise. A missing SQLite file is not created."""
    from sqlalchemy.engine import make_url

    from models.db import create_engine, is_unavailable
    from models.migrate import current_revision, head

    missing = _sqlite_file_missing(url)  # first: a URL that is not one is a ConfigError
    shown = make_url(url).render_as_string(hide_password=True)
    if missing:
        raise DatabaseUnavailable(shown, "its SQLite file does not exist")
    try:
        revision = await current_revision(url)
        if revision != head():
            raise DatabaseUnavailable(
                shown,
                f"its schema is at revision {revision or 'none'}, not {head()} "
                "(run `callcontrol db upgrade`)",
            )
        engine = create_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()
    except Exception as exc:  # drivers raise their own classes; only outages are translated
        if isinstance(exc, CallControlError) or not is_unavailable(exc):
            raise
        lines = str(exc).strip().splitlines()
        raise DatabaseUnavailable(shown, lines[0] if lines else type(exc).__name__) from exc


def read_wav(path: Path) -> bytes:
    """The bytes of the file at ``path``, refusing one too big to be an override unread."""
    from models.locutions import MAX_FILE_BYTES

    try:
        size = path.stat().st_size
        if path.is_dir():
            fail(f"{path} is a folder, not a WAV file")
        if size > MAX_FILE_BYTES:
            fail(f"{path} is {size} bytes; an override is at most {MAX_FILE_BYTES} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        fail(f"{path} does not exist")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


@app.command("override")
def override_command(
    client: ClientArgument,
    sound: SoundArgument,
    language: LanguageArgument,
    file: Annotated[
        Path, typer.Argument(help="WAV: PCM, 8000 Hz, mono, 16-bit, 0.2-30 s.", metavar="FILE.wav")
    ],
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Make FILE.wav what CLIENT's callers in LANGUAGE hear for SOUND (replacing any before)."""
    from models.admins import command_line
    from models.locutions import canonical_wav, checked_override, set_override

    config = settings(config_file, database_url=database_url)
    data = read_wav(file)
    # Checked before connecting: bad input is not to be hidden behind an outage.
    try:
        canonical_wav(data)
    except LocutionError as exc:
        fail(f"{file}: {exc}")
    with one_line_errors():
        checked_override(sound, language, data)

    async def store(engine: AsyncEngine) -> str:
        done = await set_override(engine, client, sound, language, data, audited=command_line())
        return done.sha256

    digest = run(using_database(config.database_url, store))
    typer.echo(
        f"client {client}: {sound} in {language} is its own audio now (sha256 {digest[:12]}); "
        "run `callcontrol locutions install` on every application server"
    )


@app.command("override-rm")
def override_rm_command(
    client: ClientArgument,
    sound: SoundArgument,
    language: LanguageArgument,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """CLIENT's callers in LANGUAGE hear the platform's SOUND again."""
    from models.admins import command_line
    from models.locutions import remove_override

    config = settings(config_file, database_url=database_url)

    async def remove(engine: AsyncEngine) -> None:
        await remove_override(engine, client, sound, language, audited=command_line())

    run(using_database(config.database_url, remove))
    typer.echo(
        f"client {client}: {sound} in {language} is the platform's audio again; "
        "run `callcontrol locutions install` on every application server"
    )


@app.command("overrides")
def overrides_command(
    client: Annotated[str | None, typer.Option("--client", help="Only this client's.")] = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Clients' own audio: client, its id, sound, language, seconds, sha256, last change (UTC)."""
    from models.locutions import list_overrides

    config = settings(config_file, database_url=database_url)
    found = run(using_database(config.database_url, lambda engine: list_overrides(engine, client)))
    header = ("client", "id", "sound", "language", "seconds", "sha256", "updated (UTC)")
    rows = [header] + [
        (
            o.client,
            str(o.client_id),
            o.sound,
            o.language,
            f"{o.seconds:.2f}",
            o.sha256[:12],
            f"{o.updated_at:%Y-%m-%d %H:%M:%S}",
        )
        for o in found
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    typer.echo(f"{len(found)} override{'' if len(found) == 1 else 's'}")
