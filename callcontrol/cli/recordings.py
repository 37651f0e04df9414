"""``callcontrol recordings``: list, export and remove recorded call segments.

``list`` and ``export`` take the same filters: ``--client NAME``, ``--call CALL_ID``
and ``--since`` / ``--until`` (UTC days, inclusive). ``rm ID`` acts as the platform
operator, or with ``--as-admin USERNAME`` as that client admin would through a
client-facing path (refused unless the recording is of the admin's own client and
that client allows recording removal). The recordings folder is ``--recordings-dir``,
else the ``recordings_dir`` setting (``var/recordings`` by default). Bad input ends in one
line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from callcontrol.cli.common import (
    ConfigOption,
    DatabaseOption,
    database,
    fail,
    parse_day,
    run,
    settings,
)
from callcontrol.tables import echo_table, plural

if TYPE_CHECKING:
    from callcontrol.config import Config
    from models.recordings import ExportReport, Removed, StoredRecording

app = typer.Typer(help="Recorded call segments: list, export, remove.", no_args_is_help=True)

ClientOption = Annotated[
    str | None, typer.Option("--client", help="Only this client's recordings.")
]
CallOption = Annotated[str | None, typer.Option("--call", help="Only this call id's segments.")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Started from this UTC day on (YYYY-MM-DD).")
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="Started up to this UTC day, included (YYYY-MM-DD).")
]
FolderOption = Annotated[
    Path | None,
    typer.Option(
        "--recordings-dir",
        help="Folder holding the recordings (default: the recordings_dir setting, "
        "var/recordings unless configured).",
    ),
]


@dataclass(frozen=True, slots=True)
class Filters:
    """The checked filters of ``list`` and ``export``."""

    client: str | None
    call_id: str | None
    since: date | None
    until: date | None


def checked(client: str | None, call: str | None, since: str | None, until: str | None) -> Filters:
    first, last = parse_day("--since", since), parse_day("--until", until)
    if first and last and first > last:
        fail(f"--since {first} is after --until {last}")
    return Filters(client, call, first, last)


def recordings_folder(option: Path | None, config: Config) -> Path:
    if option is not None:
        return option
    return Path(config.recordings_dir)


TABLE_HEADER = (
    "id",
    "start (UTC)",
    "client",
    "caller → callee",
    "segment",
    "seconds",
    "recorder",
    "file",
)


def table_row(stored: StoredRecording, folder: Path) -> tuple[str, ...]:
    segment = stored.segment
    return (
        str(stored.id),
        f"{segment.started_at:%Y-%m-%d %H:%M:%S}",
        segment.client_name,
        f"{segment.caller} → {segment.callee}",
        str(segment.segment),
        str(segment.duration),
        segment.recorder or "-",
        str(folder / stored.file_path),
    )


@app.command("list")
def list_command(
    client: ClientOption = None,
    call: CallOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    recordings_dir: FolderOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """A table of the recordings matching the filters, by start time."""
    filters = checked(client, call, since, until)
    config = settings(config_file, database_url=database_url)
    folder = recordings_folder(recordings_dir, config)

    from models.recordings import list_recordings

    async def collect() -> list[StoredRecording]:
        async with database(config) as engine:
            return await list_recordings(
                engine, filters.client, filters.call_id, filters.since, filters.until
            )

    rows = [table_row(stored, folder) for stored in run(collect())]
    echo_table(TABLE_HEADER, rows)
    typer.echo(plural(len(rows), "recording"))


@app.command("export")
def export_command(
    target_dir: Annotated[
        Path, typer.Argument(metavar="TARGET_DIR", help="Folder to copy the files into.")
    ],
    client: ClientOption = None,
    call: CallOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    recordings_dir: FolderOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Copy the files of the recordings matching the filters into TARGET_DIR (same
    relative paths), with a recordings.csv manifest of them."""
    filters = checked(client, call, since, until)
    config = settings(config_file, database_url=database_url)
    folder = recordings_folder(recordings_dir, config)

    from models.recordings import export

    async def copy() -> ExportReport:
        async with database(config) as engine:
            return await export(
                engine,
                folder,
                target_dir,
                filters.client,
                filters.call_id,
                filters.since,
                filters.until,
            )

    report = run(copy())
    missing = f" ({plural(report.missing, 'file')} missing)" if report.missing else ""
    typer.echo(
        f"{plural(report.copied, 'recording')} exported to {target_dir}{missing}; "
        f"manifest {report.manifest}"
    )


@app.command("rm")
def rm_command(
    recording_id: Annotated[str, typer.Argument(metavar="ID", help="The recording's id.")],
    as_admin: Annotated[
        str | None,
        typer.Option(
            "--as-admin",
            metavar="USERNAME",
            help="Act as this client admin (a client-facing path), not as the operator.",
        ),
    ] = None,
    recordings_dir: FolderOption = None,
    database_url: DatabaseOption = None,
    config_file: ConfigOption = None,
) -> None:
    """Remove a recording: its file and its row together."""
    try:
        number = int(recording_id)
    except ValueError:
        fail(f"recording id {recording_id!r} is not a whole number")
    from models.recordings import Actor, ClientAdmin, Operator, remove

    actor: Actor = Operator() if as_admin is None else ClientAdmin(as_admin)
    config = settings(config_file, database_url=database_url)
    folder = recordings_folder(recordings_dir, config)

    async def remove_one() -> Removed:
        from models.admins import command_line

        async with database(config) as engine:
            return await remove(engine, folder, number, actor, audited=command_line(as_admin))

    removed = run(remove_one())
    segment = removed.recording.segment
    typer.echo(
        f"removed recording {number} (call {segment.call_id} segment {segment.segment}): "
        f"{folder / removed.recording.file_path}"
    )
    if removed.file_missing:
        typer.echo(f"warning: recording {number} had no file; its row is removed", err=True)
