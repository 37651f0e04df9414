"""Recorded segments on SQLite, PostgreSQL and MariaDB: a file at a readable path and
its row stored together (or neither), listed, exported with a manifest, and removed
only by whoever may; ``callcontrol recordings`` over the same."""

from __future__ import annotations

import asyncio
import csv
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.cli.recordings import app
from dialplan.errors import NotFound
from models.admins import AdminPrivilege, os_user
from models.platform import Recording
from models.recordings import (
    MANIFEST,
    MANIFEST_COLUMNS,
    Actor,
    ClientAdmin,
    DuplicateSegment,
    Operator,
    PermissionDenied,
    RecordingError,
    RecordingNotFound,
    RecordingStore,
    Segment,
    export,
    list_recordings,
    remove,
    safe_part,
    segment_path,
)
from models.tenants import ClientAdmin as ClientAdminRow
from models.tenants import User
from tests.conftest import audit_entries, clients_of_one_brand

AT = datetime(2026, 11, 25, 10, 30, 5, tzinfo=UTC)
MADRID = timezone(timedelta(hours=1))
AUDIO = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(32))
CLIENT_IDS = {"acme": 1, "globex": 2, "initech": 3}
ALLOWS_REMOVAL = {"acme": True, "globex": False, "initech": True}
ADMINS = {  # username: (client, active, restricted from the recordings section)
    "acme-admin": ("acme", True, False),
    "acme-auditor": ("acme", True, True),
    "acme-former": ("acme", False, False),
    "globex-admin": ("globex", True, False),
    "initech-admin": ("initech", True, False),
}


CALL = "1764066605.17"


def a_segment(call_id: str = CALL, number: int = 1, **changes: Any) -> Segment:
    client = changes.pop("client", "acme")
    values: dict[str, Any] = {
        "client_id": CLIENT_IDS.get(client, 99),
        "client_name": client,
        "call_id": call_id,
        "segment": number,
        "caller": "+34910000100",
        "callee": "+34600123123",
        "recorder_user_id": None,
        "recorder": None,
        "started_at": AT,
        "duration": Decimal("12.345"),
    }
    return Segment(**(values | changes))


@pytest.fixture
async def clients(engine: AsyncEngine) -> dict[str, int]:
    """acme and initech allow recording removal, globex does not; their admins; a user."""
    async with engine.begin() as connection:
        await clients_of_one_brand(connection, CLIENT_IDS, allow_recording_removal=ALLOWS_REMOVAL)
        await connection.execute(
            insert(ClientAdminRow),
            [
                {
                    "id": number,
                    "client_id": CLIENT_IDS[client],
                    "username": username,
                    "password_hash": "not-a-real-hash",
                    "active": active,
                    "restricted": restricted,
                }
                for number, (username, (client, active, restricted)) in enumerate(ADMINS.items(), 1)
            ],
        )
        await connection.execute(
            insert(AdminPrivilege),
            [
                {"client_admin_id": number, "section": "recordings", "can_read": True}
                for number, (_, _, restricted) in enumerate(ADMINS.values(), 1)
                if restricted
            ],
        )
        await connection.execute(insert(User), [{"id": 1, "client_id": 1, "name": "alice"}])
    return CLIENT_IDS


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


@pytest.fixture
def store(engine: AsyncEngine, folder: Path) -> RecordingStore:
    return RecordingStore(engine, folder)


def files_under(folder: Path) -> list[str]:
    """Every file (hidden ones too), relative to ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


async def row_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Recording)) or 0)


EXPECTED_PATH = "acme/2026/11/25/103005_+34910000100_to_+34600123123_1764066605.17_1.wav"


# -- saving ------------------------------------------------------------------------


async def test_a_saved_segment_is_a_file_at_a_readable_path_and_its_row(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    segment = a_segment(
        recorder_user_id=1,
        recorder="alice",
        started_at=AT.astimezone(MADRID),
        duration=Decimal("12.5"),
    )
    path = await store.save(segment, AUDIO)

    assert path == folder / EXPECTED_PATH
    assert path.read_bytes() == AUDIO
    assert files_under(folder) == [EXPECTED_PATH]
    [stored] = await list_recordings(engine)
    assert stored.file_path == EXPECTED_PATH
    assert stored.segment == segment
    assert stored.segment.started_at == AT
    assert stored.segment.started_at.tzinfo is UTC
    assert str(stored.segment.duration) == "12.500"
    assert (stored.segment.recorder_user_id, stored.segment.recorder) == (1, "alice")


def test_every_part_of_the_file_name_is_reduced_to_safe_characters() -> None:
    segment = a_segment(
        "../../etc/passwd",
        2,
        client_name="Peña & Co/..",
        caller="Anónimo <sip:x@y>",
        callee="",
    )
    assert segment_path(segment) == (
        "Pena_Co/2026/11/25/103005_Anonimo_sip_x_y_to_unknown_etc_passwd_2.wav"
    )
    assert safe_part("..") == "unknown"
    assert safe_part(".hidden") == "hidden"
    assert safe_part("東京", "client-7") == "client-7"
    assert safe_part("+34 91.000-1_0") == "+34_91.000-1_0"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"started_at": datetime(2026, 11, 25, 10, 30)}, "time zone"),
        ({"duration": Decimal("1.2345")}, "at most 3 places"),
        ({"duration": Decimal(-1)}, "at most 3 places"),
        ({"duration": 1.5}, "finite Decimal"),
        ({"number": 0}, "numbered from 1"),
        ({"caller": "9" * 65}, "caller must be a string of at most 64"),
        ({"call_id": ""}, "must not be empty"),
        ({"recorder_user_id": True}, "recorder_user_id must be int"),
    ],
)
def test_a_segment_the_table_cannot_hold_is_refused_when_built(
    changes: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        a_segment(**changes)


async def test_a_failed_insert_leaves_no_file(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    with pytest.raises(IntegrityError):
        await store.save(a_segment(client="no-such-client"), AUDIO)
    assert files_under(folder) == []
    assert await row_count(engine) == 0


async def test_the_same_segment_saved_twice_is_refused_and_the_first_is_kept(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    first = await store.save(a_segment(), AUDIO)
    with pytest.raises(DuplicateSegment, match="segment 1 is already recorded") as refused:
        await store.save(a_segment(started_at=AT + timedelta(seconds=1)), b"other audio")
    assert "\n" not in str(refused.value)
    # A different call whose file name reads the same does not overwrite the first file.
    look_alike = a_segment("1764066605.17/")
    assert segment_path(look_alike) == EXPECTED_PATH
    with pytest.raises(DuplicateSegment, match="already has a file"):
        await store.save(look_alike, b"other audio")
    assert first.read_bytes() == AUDIO
    assert files_under(folder) == [EXPECTED_PATH]
    assert await row_count(engine) == 1


async def test_a_file_already_at_the_name_is_never_overwritten(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    (folder / EXPECTED_PATH).parent.mkdir(parents=True)
    (folder / EXPECTED_PATH).write_bytes(b"someone else's file")
    with pytest.raises(DuplicateSegment, match="already has a file"):
        await store.save(a_segment(), AUDIO)
    assert (folder / EXPECTED_PATH).read_bytes() == b"someone else's file"
    assert files_under(folder) == [EXPECTED_PATH]
    assert await row_count(engine) == 0


async def test_concurrent_saves_of_one_segment_store_it_once(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    """Half of them name the same file, half a file of their own (a later start): the
    database's unique key stops those, and their files are removed."""
    results = await asyncio.gather(
        *(
            store.save(a_segment(started_at=AT + timedelta(seconds=n % 2 * n)), AUDIO)
            for n in range(6)
        ),
        return_exceptions=True,
    )
    [saved] = [result for result in results if isinstance(result, Path)]
    assert all(isinstance(result, DuplicateSegment) for result in results if result != saved)
    assert files_under(folder) == [str(saved.relative_to(folder))]
    [stored] = await list_recordings(engine)
    assert folder / stored.file_path == saved


async def test_a_failed_recording_leaves_nothing_and_one_log_line(
    store: RecordingStore, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    partial = folder / "acme" / "partial.wav"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(AUDIO[:10])
    with caplog.at_level(logging.WARNING, logger="callcontrol.recordings"):
        assert await store.discard_failed(Path("acme/partial.wav"), "bridge gone", call_id="c-9")
        assert not await store.discard_failed(partial, "bridge gone", call_id="c-9")
        assert not await store.discard_failed(None, "snoop refused")
    assert files_under(folder) == []
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "call c-9: recording failed (bridge gone); removed acme/partial.wav",
        "call c-9: recording failed (bridge gone); no partial file left",
        "call -: recording failed (snoop refused); no partial file left",
    ]


# -- listing and exporting ---------------------------------------------------------


@pytest.fixture
async def saved(clients: dict[str, int], store: RecordingStore) -> list[Segment]:
    """Four segments: two of one acme call, one acme a day later, one globex."""
    day = timedelta(days=1)
    segments = [
        a_segment("acme-call", 1, started_at=AT),
        a_segment("acme-call", 2, started_at=AT + timedelta(seconds=40), recorder="alice"),
        a_segment("acme-later", 1, started_at=AT + day),
        a_segment("globex-call", 1, client="globex", started_at=AT + timedelta(hours=13)),
    ]
    for number, segment in enumerate(segments):
        await store.save(segment, AUDIO + bytes([number]))
    return segments


async def test_recordings_are_listed_by_start_and_filtered(
    engine: AsyncEngine, saved: list[Segment]
) -> None:
    def calls(found: list[Any]) -> list[tuple[str, int]]:
        return [(stored.segment.call_id, stored.segment.segment) for stored in found]

    every = await list_recordings(engine)
    assert [stored.segment for stored in every] == sorted(saved, key=lambda s: s.started_at)
    assert calls(await list_recordings(engine, client="globex")) == [("globex-call", 1)]
    assert calls(await list_recordings(engine, call_id="acme-call")) == [
        ("acme-call", 1),
        ("acme-call", 2),
    ]
    day = AT.date()
    assert calls(await list_recordings(engine, since=day, until=day)) == [
        ("acme-call", 1),
        ("acme-call", 2),
        ("globex-call", 1),
    ]
    found = await list_recordings(engine, client="acme", since=day + timedelta(days=1))
    assert calls(found) == [("acme-later", 1)]
    assert await list_recordings(engine, client="initech") == []
    with pytest.raises(NotFound, match="no client named 'nobody'"):
        await list_recordings(engine, client="nobody")


async def test_export_copies_the_files_and_a_manifest(
    engine: AsyncEngine, saved: list[Segment], folder: Path, tmp_path: Path
) -> None:
    [first, second, *_] = await list_recordings(engine, client="acme")
    (folder / second.file_path).unlink()
    target = tmp_path / "out" / "acme"

    report = await export(engine, folder, target, client="acme")

    assert (report.listed, report.copied, report.missing) == (3, 2, 1)
    assert report.manifest == target / MANIFEST
    acme_files = [name for name in files_under(folder) if name.startswith("acme/")]
    assert files_under(target) == sorted([*acme_files, MANIFEST])
    for name in acme_files:
        assert (target / name).read_bytes() == (folder / name).read_bytes()
    with report.manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        rows = list(reader)
    assert [row["call_id"] for row in rows] == ["acme-call", "acme-call", "acme-later"]
    assert rows[0] | {"file": ""} == {
        "id": str(first.id),
        "client": "acme",
        "client_id": "1",
        "call_id": "acme-call",
        "segment": "1",
        "caller": "+34910000100",
        "callee": "+34600123123",
        "recorder_user_id": "",
        "recorder": "",
        "started_at": "2026-11-25T10:30:05+00:00",
        "duration": "12.345",
        "file": "",
    }
    assert rows[0]["file"] == first.file_path
    assert (rows[1]["recorder"], rows[1]["file"]) == ("alice", "")

    again = await export(engine, folder, target, call_id="globex-call")
    assert (again.listed, again.copied, again.missing) == (1, 1, 0)
    manifest = again.manifest.read_text().splitlines()
    assert [row["call_id"] for row in csv.DictReader(manifest)] == ["globex-call"]
    with pytest.raises(RecordingError, match="recordings folder itself"):
        await export(engine, folder, folder / "exports")
    assert not (folder / "exports").exists()


# -- removal -----------------------------------------------------------------------

REMOVAL_CASES = [
    # actor, the recording's client, removed? (else the reason refused)
    (Operator(), "acme", None),
    (Operator(), "globex", None),
    (ClientAdmin("acme-admin"), "acme", None),
    (ClientAdmin("globex-admin"), "globex", "client globex does not allow recording removal"),
    (ClientAdmin("acme-admin"), "initech", "the recording belongs to another client"),
    (ClientAdmin("globex-admin"), "acme", "the recording belongs to another client"),
    (ClientAdmin("acme-auditor"), "acme", "the admin may not use the recordings section"),
    (ClientAdmin("acme-former"), "acme", "the admin is not active"),
    (ClientAdmin("nobody"), "acme", "no such client admin"),
]


@pytest.mark.parametrize(("actor", "owner", "refusal"), REMOVAL_CASES)
async def test_who_may_remove_a_recording(
    engine: AsyncEngine,
    clients: dict[str, int],
    store: RecordingStore,
    folder: Path,
    actor: Actor,
    owner: str,
    refusal: str | None,
) -> None:
    kept = await store.save(a_segment("kept", client="initech"), AUDIO)
    path = await store.save(a_segment(client=owner), AUDIO)
    [recording] = await list_recordings(engine, call_id=CALL)

    if refusal is None:
        removed = await remove(engine, folder, recording.id, actor)
        assert (removed.recording, removed.file_missing) == (recording, False)
        assert await list_recordings(engine, call_id=CALL) == []
        assert files_under(folder) == [str(kept.relative_to(folder))]
    else:
        with pytest.raises(PermissionDenied) as refused:
            await remove(engine, folder, recording.id, actor)
        expected = f"recording {recording.id}: removal refused for {actor}: {refusal}"
        assert str(refused.value) == expected
        assert path.read_bytes() == AUDIO
        assert await list_recordings(engine, call_id=CALL) == [recording]
        assert len(files_under(folder)) == 2
    assert kept.read_bytes() == AUDIO
    assert len(await list_recordings(engine, call_id="kept")) == 1


async def test_a_recording_whose_file_is_missing_is_still_removed(
    engine: AsyncEngine,
    clients: dict[str, int],
    store: RecordingStore,
    folder: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = await store.save(a_segment(), AUDIO)
    path.unlink()
    [recording] = await list_recordings(engine)
    with caplog.at_level(logging.WARNING, logger="callcontrol.recordings"):
        removed = await remove(engine, folder, recording.id, Operator())
    assert removed.file_missing
    assert await row_count(engine) == 0
    [record] = caplog.records
    assert record.getMessage() == (
        f"recording {recording.id} removed by the platform operator; "
        f"its file {EXPECTED_PATH} was already missing"
    )
    with pytest.raises(RecordingNotFound, match=f"no recording with id {recording.id}"):
        await remove(engine, folder, recording.id, Operator())


async def test_concurrent_removals_of_one_recording_remove_it_once(
    engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    await store.save(a_segment(), AUDIO)
    [recording] = await list_recordings(engine)
    results = await asyncio.gather(
        *(remove(engine, folder, recording.id, Operator()) for _ in range(4)),
        return_exceptions=True,
    )
    removed = [result for result in results if not isinstance(result, BaseException)]
    assert [result.file_missing for result in removed] == [False]
    assert all(isinstance(result, RecordingNotFound) for result in results if result not in removed)
    assert files_under(folder) == []
    assert await row_count(engine) == 0


async def test_a_removal_the_database_refuses_keeps_the_file_and_the_row(
    db_url: str, engine: AsyncEngine, clients: dict[str, int], store: RecordingStore, folder: Path
) -> None:
    """A row of another table still points at the recording. SQLite and PostgreSQL check
    that (deferred) at commit, after the file was set aside: it is put back. MariaDB
    checks it at the delete, before the file is touched."""
    path = await store.save(a_segment(), AUDIO)
    [recording] = await list_recordings(engine)
    mariadb = make_url(db_url).get_backend_name() == "mariadb"
    deferred = "" if mariadb else "DEFERRABLE INITIALLY DEFERRED"
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TABLE test_recording_holds (recording_id INTEGER, "
                f"FOREIGN KEY (recording_id) REFERENCES recordings (id) {deferred})"
            )
        )
        await connection.execute(
            text("INSERT INTO test_recording_holds VALUES (:id)"), {"id": recording.id}
        )
    try:
        with pytest.raises(IntegrityError):
            await remove(engine, folder, recording.id, Operator())
        assert path.read_bytes() == AUDIO
        assert files_under(folder) == [EXPECTED_PATH]
        assert await list_recordings(engine) == [recording]
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE test_recording_holds"))


async def test_a_row_pointing_outside_the_folder_is_not_followed(
    engine: AsyncEngine,
    clients: dict[str, int],
    store: RecordingStore,
    folder: Path,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    await store.save(a_segment(), AUDIO)
    async with engine.begin() as connection:
        await connection.execute(Recording.__table__.update().values(file_path="../precious.txt"))
    [recording] = await list_recordings(engine)
    with pytest.raises(RecordingError, match="not inside the recordings folder"):
        await remove(engine, folder, recording.id, Operator())
    assert outside.read_text() == "keep me"
    assert await row_count(engine) == 1


# -- callcontrol recordings --------------------------------------------------------


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def options(db_url: str, saved: list[Segment], folder: Path) -> list[str]:
    return ["--database-url", db_url, "--recordings-dir", str(folder)]


def test_recordings_list_shows_a_table_filtered_like_the_query(
    options: list[str], folder: Path
) -> None:
    code, out, err = cli("list", *options)
    assert (code, err) == (0, "")
    header, *rows, total = out.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "id",
        "start (UTC)",
        "client",
        "caller → callee",
        "segment",
        "seconds",
        "recorder",
        "file",
    ]
    assert total == "4 recordings"
    first = rows[0].split()
    assert first[1:10] == [
        "2026-11-25",
        "10:30:05",
        "acme",
        "+34910000100",
        "→",
        "+34600123123",
        "1",
        "12.345",
        "-",
    ]
    assert first[10].startswith(str(folder / "acme/2026/11/25/103005_"))
    assert rows[1].split()[9] == "alice"

    code, out, _ = cli("list", "--call", "acme-call", "--since", "2026-11-25", *options)
    assert (code, out.splitlines()[-1]) == (0, "2 recordings")
    code, out, _ = cli("list", "--client", "acme", "--until", "2026-11-25", *options)
    assert (code, out.splitlines()[-1]) == (0, "2 recordings")
    code, out, _ = cli("list", "--client", "initech", *options)
    assert (code, out.splitlines()[1:]) == (0, ["0 recordings"])


def test_the_recordings_folder_defaults_to_the_setting(
    db_url: str, saved: list[Segment], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "configured"
    env = {"CALLCONTROL_RECORDINGS_DIR": str(elsewhere)}
    code, out, _ = cli("list", "--call", "globex-call", "--database-url", db_url, env=env)
    assert code == 0
    assert out.splitlines()[1].split()[-1].startswith(f"{elsewhere}/globex/2026/11/25/")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--since", "25/11/2026"], "error: --since '25/11/2026' is not a day"),
        (["list", "--since", "2026-11-26", "--until", "2026-11-25"], "error: --since 2026-11-26"),
        (["list", "--client", "nobody"], "error: no client named 'nobody'"),
        (["rm", "999"], "error: no recording with id 999"),
        (["rm", "first"], "error: recording id 'first' is not a whole number"),
        (
            ["rm", "4", "--as-admin", "globex-admin"],
            "error: recording 4: removal refused for client admin 'globex-admin': "
            "client globex does not allow recording removal",
        ),
        (["rm", "1", "--as-admin", "initech-admin"], "error: recording 1: removal refused"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    options: list[str], folder: Path, args: list[str], message: str
) -> None:
    before = files_under(folder)
    code, out, err = cli(*args, *options)
    assert code == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(message)
    assert files_under(folder) == before


def test_recordings_rm_removes_as_operator_or_as_an_allowed_admin(
    options: list[str], folder: Path
) -> None:
    before = files_under(folder)
    code, out, err = cli("rm", "1", *options)
    assert (code, err) == (0, "")
    assert out.startswith("removed recording 1 (call acme-call segment 1): ")
    code, out, err = cli("rm", "3", "--as-admin", "acme-admin", *options)
    assert (code, err) == (0, "")
    assert out.startswith("removed recording 3 (call acme-later segment 1)")
    assert len(files_under(folder)) == len(before) - 2
    code, out, _ = cli("list", *options)
    assert out.splitlines()[-1] == "2 recordings"

    [globex] = [name for name in files_under(folder) if name.startswith("globex/")]
    (folder / globex).unlink()
    code, out, err = cli("rm", "4", *options)
    assert (code, err) == (0, "warning: recording 4 had no file; its row is removed\n")
    assert out.startswith("removed recording 4 (call globex-call segment 1)")
    assert files_under(folder) == [name for name in before if "/103045_" in name]


def test_recordings_export_writes_files_and_manifest(
    options: list[str], folder: Path, tmp_path: Path
) -> None:
    target = tmp_path / "export"
    code, out, err = cli("export", str(target), "--client", "globex", *options)
    assert (code, err) == (0, "")
    assert out == f"1 recording exported to {target}; manifest {target / MANIFEST}\n"
    [copied] = [name for name in files_under(target) if name != MANIFEST]
    assert copied.startswith("globex/2026/11/25/233005_")
    assert (target / copied).read_bytes() == (folder / copied).read_bytes()


def test_a_database_without_the_schema_is_one_line(tmp_path: Path) -> None:
    code, _, err = cli("list", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}")
    assert code == 1
    assert err.startswith("error: database sqlite:///")
    assert err.rstrip().endswith("run `callcontrol db upgrade`")


async def test_recordings_rm_is_audited_as_the_operating_system_user_with_client_and_brand(
    engine: AsyncEngine, options: list[str], clients: dict[str, int]
) -> None:
    assert (await asyncio.to_thread(cli, "rm", "1", *options))[0] == 0
    assert (await asyncio.to_thread(cli, "rm", "3", "--as-admin", "acme-admin", *options))[0] == 0
    refused = await asyncio.to_thread(cli, "rm", "4", "--as-admin", "globex-admin", *options)
    assert refused[0] == 1

    entries = await audit_entries(engine)
    assert [(e["actor"], e["target"], e["before"]["call_id"]) for e in entries] == [
        (os_user(), "1", "acme-call"),
        (f"{os_user()} as acme-admin", "3", "acme-later"),
    ]  # the refused removal is not there
    for entry in entries:
        assert (entry["actor_kind"], entry["action"]) == ("cli", "recording.delete")
        assert (entry["brand_id"], entry["client_id"]) == (1, clients["acme"])
        assert entry["after"] is None
    assert entries[0]["before"]["segment"] == 1
    assert (entries[0]["before"]["caller"], entries[0]["before"]["callee"]) == (
        "+34910000100",
        "+34600123123",
    )
