"""A client's own audio for a voice notification (DESIGN §3.9): stored in the shared database
on SQLite, PostgreSQL and MariaDB, checked to be what Asterisk plays, installed beside the
platform's locutions (idempotently, stale files removed) and managed by `callcontrol locutions`."""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import re
import struct
import wave
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.cli.locutions import app
from dialplan.errors import NotFound
from locutions.build import LocutionError
from locutions.catalogue import CATALOGUE
from models.admins import os_user
from models.db import create_engine
from models.locutions import (
    ClientLocution,
    checked_override,
    install_overrides,
    install_overrides_report,
    list_overrides,
    overridden_sounds,
    override_sound,
    remove_override,
    set_override,
)
from models.tenants import Brand, Client
from tests.conftest import audit_entries, clients_of_one_brand

UNREACHABLE = "postgresql://postgres@127.0.0.1:9/test"
"""Nothing listens on port 9 (discard) here: connecting is refused at once."""


def a_wav(
    seconds: float = 1.0,
    *,
    rate: int = 8000,
    channels: int = 1,
    width: int = 2,
    pitch: float = 440.0,
) -> bytes:
    """A tone as a WAV file made with the standard library."""
    frames = round(seconds * rate)
    peak = 2 ** (8 * width - 1) - 1
    samples = bytearray()
    for n in range(frames):
        value = round(0.3 * peak * math.sin(2 * math.pi * pitch * n / rate))
        sample = (
            bytes([value + 128]) if width == 1 else value.to_bytes(width, "little", signed=True)
        )
        samples += sample * channels
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(channels)
        audio.setsampwidth(width)
        audio.setframerate(rate)
        audio.writeframes(bytes(samples))
    return out.getvalue()


def with_extra_chunk(wav: bytes) -> bytes:
    """``wav`` with a LIST chunk (the metadata editors add) between ``fmt `` and ``data``."""
    info = b"INFOISFT" + struct.pack("<I", 6) + b"Tests\x00"
    chunk = b"LIST" + struct.pack("<I", len(info)) + info
    body = wav[12:36] + chunk + wav[36:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def samples_of(wav: bytes) -> bytes:
    with wave.open(io.BytesIO(wav), "rb") as audio:
        return audio.readframes(audio.getnframes())


HELLO = a_wav(1.0, pitch=440.0)
GOODBYE = a_wav(2.5, pitch=660.0)


@pytest.fixture
async def clients(engine: AsyncEngine) -> dict[str, int]:
    """Two clients of one brand: acme (id 1) and globex (id 2)."""
    names = {"acme": 1, "globex": 2}
    async with engine.begin() as connection:
        await clients_of_one_brand(connection, names)
    return names


async def stored_audio(engine: AsyncEngine) -> dict[tuple[int, str, str], bytes]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                ClientLocution.client_id,
                ClientLocution.sound,
                ClientLocution.language,
                ClientLocution.audio,
            )
        )
        return {(client, sound, language): audio for client, sound, language, audio in rows}


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def mtimes(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*.wav")}


# ---- storing ---------------------------------------------------------------------------------


async def test_an_override_is_stored_replaced_listed_and_removed(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    first = await set_override(engine, "acme", "no_client", "es", HELLO)
    assert first.sha256 == hashlib.sha256(HELLO).hexdigest()
    assert await overridden_sounds(engine, clients["acme"]) == {("no_client", "es")}

    second = await set_override(engine, "acme", "no_client", "es", GOODBYE)
    [listed] = await list_overrides(engine)
    assert (listed.client, listed.client_id, listed.sound, listed.language) == (
        "acme",
        clients["acme"],
        "no_client",
        "es",
    )
    assert listed.sha256 == second.sha256 == hashlib.sha256(GOODBYE).hexdigest()
    assert listed.seconds == pytest.approx(2.5)
    assert listed.updated_at >= first.updated_at
    assert await stored_audio(engine) == {(clients["acme"], "no_client", "es"): GOODBYE}

    await remove_override(engine, "acme", "no_client", "es")
    assert await list_overrides(engine) == []
    assert await overridden_sounds(engine, clients["acme"]) == frozenset()


async def test_overrides_are_kept_per_client_sound_and_language(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    await set_override(engine, "acme", "no_client", "en", GOODBYE)
    await set_override(engine, "acme", "max_calls_reached", "pt_BR", HELLO)
    await set_override(engine, "globex", "no_client", "es", GOODBYE)

    assert await overridden_sounds(engine, clients["acme"]) == {
        ("no_client", "es"),
        ("no_client", "en"),
        ("max_calls_reached", "pt_BR"),
    }
    assert await overridden_sounds(engine, clients["globex"]) == {("no_client", "es")}
    only_globex = await list_overrides(engine, "globex")
    assert [(o.client, o.sound, o.language) for o in only_globex] == [("globex", "no_client", "es")]
    everyone = await list_overrides(engine)
    assert [(o.client, o.sound, o.language) for o in everyone] == [
        ("acme", "max_calls_reached", "pt_BR"),
        ("acme", "no_client", "en"),
        ("acme", "no_client", "es"),
        ("globex", "no_client", "es"),
    ]


async def test_thirty_seconds_of_audio_fit_on_every_backend(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    # 480 kB: more than MariaDB's BLOB (64 kB) holds, hence MEDIUMBLOB.
    longest = a_wav(30.0)
    await set_override(engine, "acme", "service_unavailable", "en", longest)
    assert await stored_audio(engine) == {(clients["acme"], "service_unavailable", "en"): longest}


async def test_the_audio_is_stored_without_the_chunks_an_editor_added(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    tagged = with_extra_chunk(HELLO)
    assert b"LIST" in tagged
    stored = await set_override(engine, "acme", "no_client", "es", tagged)
    [audio] = (await stored_audio(engine)).values()
    assert audio == HELLO
    assert samples_of(audio) == samples_of(tagged)
    assert stored.sha256 == hashlib.sha256(HELLO).hexdigest()


def truncated(wav: bytes) -> bytes:
    return wav[:-1000]


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (a_wav(rate=16000), "16000 Hz, 1 channel(s), 16-bit"),
        (a_wav(channels=2), "8000 Hz, 2 channel(s), 16-bit"),
        (a_wav(width=1), "8000 Hz, 1 channel(s), 8-bit"),
        (a_wav(30.5), "lasts 30.50 s"),
        (a_wav(0.1), "lasts 0.10 s"),
        (truncated(HELLO), "truncated"),
        (b"", "not a PCM WAV file"),
        (b"ID3\x04" + bytes(200), "not a PCM WAV file"),
    ],
    ids=["16kHz", "stereo", "8-bit", "too-long", "too-short", "truncated", "empty", "mp3"],
)
async def test_audio_asterisk_would_not_play_as_a_locution_is_refused(
    engine: AsyncEngine, clients: dict[str, int], audio: bytes, message: str
) -> None:
    with pytest.raises(LocutionError, match=re.escape(message)) as raised:
        await set_override(engine, "acme", "no_client", "es", audio)
    assert "\n" not in str(raised.value)
    assert await list_overrides(engine) == []


async def test_an_unknown_client_sound_or_language_is_refused_and_nothing_stored(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    with pytest.raises(NotFound, match="no client named 'initech'"):
        await set_override(engine, "initech", "no_client", "es", HELLO)
    with pytest.raises(NotFound, match="no locution named 'welcome'"):
        await set_override(engine, "acme", "welcome", "es", HELLO)
    for language in ("e", "../en", "espanol_de_mexico", "es-MX"):
        with pytest.raises(LocutionError, match="is not a language code"):
            await set_override(engine, "acme", "no_client", language, HELLO)
    assert await list_overrides(engine) == []


async def test_removing_an_override_the_client_does_not_have_is_an_error(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    with pytest.raises(LocutionError, match="client 'acme' has no override of no_client in 'en'"):
        await remove_override(engine, "acme", "no_client", "en")
    with pytest.raises(LocutionError, match="client 'globex' has no override of no_client"):
        await remove_override(engine, "globex", "no_client", "es")
    assert [o.language for o in await list_overrides(engine)] == ["es"]


async def test_clients_of_the_same_name_in_two_brands_are_told_apart_by_brand(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(Brand), [{"id": 2, "name": "nordic"}])
        await connection.execute(
            insert(Client),
            [
                {
                    "id": 3,
                    "brand_id": 2,
                    "name": "acme",
                    "sip_domain": "acme.nordic.example.net",
                    "language": "en",
                    "timezone": "UTC",
                    "currency": "EUR",
                    "country": "SE",
                }
            ],
        )
    with pytest.raises(LocutionError, match=r"2 clients are named 'acme' \(brands iberia-voice"):
        await set_override(engine, "acme", "no_client", "en", HELLO)
    await set_override(engine, "nordic/acme", "no_client", "en", HELLO)
    assert await overridden_sounds(engine, 3) == {("no_client", "en")}
    assert await overridden_sounds(engine, clients["acme"]) == frozenset()


async def test_a_deleted_client_takes_its_overrides_with_it(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    await set_override(engine, "globex", "no_client", "es", HELLO)
    async with engine.begin() as connection:
        await connection.execute(delete(Client).where(Client.id == clients["globex"]))
    assert await stored_audio(engine) == {}


async def test_the_database_refuses_a_sound_the_catalogue_lacks(
    engine: AsyncEngine, clients: dict[str, int]
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    # MariaDB reports a failed CHECK as an OperationalError, the others as IntegrityError.
    with pytest.raises(DBAPIError, match="ck_client_locutions_sound"):
        async with engine.begin() as connection:
            await connection.execute(update(ClientLocution).values(sound="welcome"))
    assert [o.sound for o in await list_overrides(engine)] == ["no_client"]


def test_an_override_plays_from_the_clients_folder() -> None:
    assert override_sound(7, "no_client") == "callcontrol/client-7/no_client"
    with pytest.raises(NotFound, match="no locution named 'welcome'"):
        override_sound(7, "welcome")


# ---- installing ------------------------------------------------------------------------------


@pytest.fixture
def sounds(tmp_path: Path) -> Path:
    """Asterisk's sounds folder (beside, not holding, the SQLite database)."""
    folder = tmp_path / "sounds"
    folder.mkdir()
    return folder


async def test_install_writes_each_override_beside_the_platform_locutions(
    engine: AsyncEngine, clients: dict[str, int], sounds: Path
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    await set_override(engine, "acme", "no_client", "en", GOODBYE)
    await set_override(engine, "globex", "max_calls_reached", "pt_BR", GOODBYE)

    assert await install_overrides(engine, sounds) == 3

    assert files_under(sounds) == {
        "en/callcontrol/client-1/no_client.wav": GOODBYE,
        "es/callcontrol/client-1/no_client.wav": HELLO,
        "pt_BR/callcontrol/client-2/max_calls_reached.wav": GOODBYE,
    }
    played = sounds / "es" / f"{override_sound(clients['acme'], 'no_client')}.wav"
    assert played.read_bytes() == HELLO
    assert (played.stat().st_mode & 0o777) == 0o644


async def test_install_twice_writes_nothing_the_second_time(
    engine: AsyncEngine, clients: dict[str, int], sounds: Path
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    await set_override(engine, "globex", "no_client", "es", GOODBYE)
    assert await install_overrides(engine, sounds) == 2
    before = mtimes(sounds)

    again = await install_overrides_report(engine, sounds)

    assert (again.written, again.removed) == ([], [])
    assert sorted(again.kept) == sorted(before)
    assert mtimes(sounds) == before
    assert await install_overrides(engine, sounds) == 0


async def test_install_rewrites_a_replaced_or_damaged_override(
    engine: AsyncEngine, clients: dict[str, int], sounds: Path
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    await set_override(engine, "acme", "not_allowed", "es", HELLO)
    await install_overrides(engine, sounds)
    folder = sounds / "es" / "callcontrol" / "client-1"
    (folder / "not_allowed.wav").write_bytes(b"damaged")
    await set_override(engine, "acme", "no_client", "es", GOODBYE)

    done = await install_overrides_report(engine, sounds)

    assert sorted(p.name for p in done.written) == ["no_client.wav", "not_allowed.wav"]
    assert files_under(folder) == {"no_client.wav": GOODBYE, "not_allowed.wav": HELLO}
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


async def test_install_removes_overrides_gone_from_the_database_and_nothing_else(
    engine: AsyncEngine, clients: dict[str, int], sounds: Path
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    await set_override(engine, "globex", "no_client", "es", GOODBYE)
    await install_overrides(engine, sounds)
    ours = sounds / "es" / "callcontrol"
    (ours / "no_client.wav").write_bytes(b"the platform's own")
    (ours / "client-99").mkdir()
    (ours / "client-99" / "no_client.wav").write_bytes(b"a client deleted long ago")
    (ours / "client-1" / "notes.txt").write_text("left by an operator")
    await remove_override(engine, "acme", "no_client", "es")
    await remove_override(engine, "globex", "no_client", "es")
    await set_override(engine, "globex", "not_allowed", "es", HELLO)

    done = await install_overrides_report(engine, sounds)

    assert sorted(str(p.relative_to(sounds)) for p in done.removed) == [
        "es/callcontrol/client-1/no_client.wav",
        "es/callcontrol/client-2/no_client.wav",
        "es/callcontrol/client-99/no_client.wav",
    ]
    assert files_under(sounds) == {
        "es/callcontrol/no_client.wav": b"the platform's own",
        "es/callcontrol/client-1/notes.txt": b"left by an operator",
        "es/callcontrol/client-2/not_allowed.wav": HELLO,
    }
    assert not (ours / "client-99").exists()


async def test_install_into_a_folder_that_does_not_exist_is_an_error(
    engine: AsyncEngine, clients: dict[str, int], sounds: Path
) -> None:
    await set_override(engine, "acme", "no_client", "es", HELLO)
    with pytest.raises(LocutionError, match="is not a folder"):
        await install_overrides(engine, sounds / "nowhere")
    assert not (sounds / "nowhere").exists()


# ---- the commands ----------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def overrides_of(url: str) -> list[tuple[str, str, str, str]]:
    async def read() -> list[tuple[str, str, str, str]]:
        engine = create_engine(url)
        try:
            return [(o.client, o.sound, o.language, o.sha256) for o in await list_overrides(engine)]
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.fixture
def wav_file(tmp_path: Path) -> Path:
    path = tmp_path / "hello.wav"
    path.write_bytes(HELLO)
    return path


def test_override_commands_store_list_and_remove(
    db_url: str, clients: dict[str, int], wav_file: Path, tmp_path: Path
) -> None:
    code, out, err = cli(
        "override", "acme", "no_client", "es", str(wav_file), "--database-url", db_url
    )
    assert (code, err) == (0, "")
    assert "client acme: no_client in es is its own audio now" in out
    other = tmp_path / "bye.wav"
    other.write_bytes(GOODBYE)
    assert (
        cli("override", "globex", "no_client", "en", str(other), "--database-url", db_url)[0] == 0
    )
    assert overrides_of(db_url) == [
        ("acme", "no_client", "es", hashlib.sha256(HELLO).hexdigest()),
        ("globex", "no_client", "en", hashlib.sha256(GOODBYE).hexdigest()),
    ]

    code, out, _ = cli("overrides", "--client", "globex", "--database-url", db_url)
    header, row, total = out.splitlines()
    assert header.split()[:6] == ["client", "id", "sound", "language", "seconds", "sha256"]
    assert row.split()[:6] == [
        "globex",
        "2",
        "no_client",
        "en",
        "2.50",
        hashlib.sha256(GOODBYE).hexdigest()[:12],
    ]
    assert (code, total) == (0, "1 override")
    assert cli("overrides", "--database-url", db_url)[1].splitlines()[-1] == "2 overrides"

    code, out, err = cli("override-rm", "acme", "no_client", "es", "--database-url", db_url)
    assert (code, err) == (0, "")
    assert "platform's audio again" in out
    assert [row[0] for row in overrides_of(db_url)] == ["globex"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["override", "acme", "no_client", "es", "{stereo}"], "2 channel(s)"),
        (["override", "acme", "no_client", "es", "{missing}"], "does not exist"),
        (["override", "acme", "no_client", "es", "{folder}"], "is a folder"),
        (["override", "acme", "welcome", "es", "{wav}"], "no locution named 'welcome'"),
        (["override", "initech", "no_client", "es", "{wav}"], "no client named 'initech'"),
        (["override", "acme", "no_client", "es-MX", "{wav}"], "is not a language code"),
        (["override-rm", "acme", "no_client", "en"], "has no override of no_client"),
        (["overrides", "--client", "initech"], "no client named 'initech'"),
    ],
    ids=["stereo", "missing", "folder", "sound", "client", "language", "rm-none", "list-client"],
)
def test_override_commands_refuse_bad_input_in_one_line_and_change_nothing(
    db_url: str, clients: dict[str, int], tmp_path: Path, arguments: list[str], message: str
) -> None:
    places = {
        "stereo": tmp_path / "stereo.wav",
        "missing": tmp_path / "missing.wav",
        "folder": tmp_path,
        "wav": tmp_path / "hello.wav",
    }
    places["stereo"].write_bytes(a_wav(channels=2))
    places["wav"].write_bytes(HELLO)
    argv = [a.format(**{k: str(v) for k, v in places.items()}) for a in arguments]

    code, out, err = cli(*argv, "--database-url", db_url)

    assert (code, out) == (1, "")
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert message in err
    assert overrides_of(db_url) == []


def test_override_commands_say_when_the_database_is_unreachable(
    wav_file: Path, tmp_path: Path
) -> None:
    code, out, err = cli(
        "override", "acme", "no_client", "es", str(wav_file), "--database-url", UNREACHABLE
    )
    assert (code, out) == (1, "")
    assert err.startswith("error: database postgresql://postgres@127.0.0.1:9/test is unavailable: ")
    assert err.count("\n") == 1
    never_made = tmp_path / "never.db"
    code, _, err = cli("overrides", "--database-url", f"sqlite:///{never_made}")
    assert code == 1
    assert err.endswith("is unavailable: its SQLite file does not exist\n")
    assert not never_made.exists()


def test_install_command_installs_the_overrides_of_the_database(
    db_url: str, clients: dict[str, int], wav_file: Path, tmp_path: Path
) -> None:
    sounds = tmp_path / "sounds"
    sounds.mkdir()
    cli("override", "acme", "no_client", "es", str(wav_file), "--database-url", db_url)

    code, out, err = cli("install", str(sounds), "--database-url", db_url)

    assert (code, err) == (0, "")
    platform = sum(len(texts) for texts in CATALOGUE.values())
    assert out.splitlines() == [
        f"installed into {sounds}: {platform} written, 0 unchanged",
        "client overrides: 1 written, 0 unchanged, 0 removed",
    ]
    assert (sounds / "es" / "callcontrol" / "client-1" / "no_client.wav").read_bytes() == HELLO
    assert (sounds / "es" / "callcontrol" / "no_client.wav").is_file()

    cli("override-rm", "acme", "no_client", "es", "--database-url", db_url)
    code, out, _ = cli("install", str(sounds), "--database-url", db_url)
    assert out.splitlines()[1] == "client overrides: 0 written, 0 unchanged, 1 removed"
    assert not (sounds / "es" / "callcontrol" / "client-1").exists()


def test_install_without_the_database_installs_the_platform_audio_and_warns_once(
    tmp_path: Path,
) -> None:
    code, out, err = cli("install", str(tmp_path), "--database-url", UNREACHABLE)
    assert code == 0
    platform = sum(len(texts) for texts in CATALOGUE.values())
    assert out == f"installed into {tmp_path}: {platform} written, 0 unchanged\n"
    assert err.startswith("warning: client overrides not installed: database ")
    assert err.count("\n") == 1
    assert len(list(tmp_path.rglob("*.wav"))) == platform


def test_install_takes_the_database_from_the_config_file(
    db_url: str, clients: dict[str, int], wav_file: Path, tmp_path: Path
) -> None:
    cli("override", "globex", "not_allowed", "en", str(wav_file), "--database-url", db_url)
    config = tmp_path / "callcontrol.toml"
    config.write_text(f'database_url = "{db_url}"\n')
    sounds = tmp_path / "sounds"
    sounds.mkdir()

    code, out, err = cli("install", str(sounds), "--config", str(config))

    assert (code, err) == (0, "")
    assert out.splitlines()[1] == "client overrides: 1 written, 0 unchanged, 0 removed"
    assert (sounds / "en" / "callcontrol" / "client-2" / "not_allowed.wav").read_bytes() == HELLO


def test_install_with_no_database_configured_installs_the_platform_audio_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CALLCONTROL_DATABASE_URL", raising=False)
    monkeypatch.delenv("CALLCONTROL_CONFIG", raising=False)
    sounds = tmp_path / "sounds"
    sounds.mkdir()

    code, out, err = cli("install", str(sounds))

    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 1
    assert list(tmp_path.glob("*.db")) == []


def test_install_with_a_missing_sqlite_file_warns_and_does_not_create_it(tmp_path: Path) -> None:
    never_made = tmp_path / "never.db"
    sounds = tmp_path / "sounds"
    sounds.mkdir()

    code, _, err = cli("install", str(sounds), "--database-url", f"sqlite:///{never_made}")

    assert code == 0
    assert err == (
        f"warning: client overrides not installed: database sqlite:///{never_made} "
        "is unavailable: its SQLite file does not exist\n"
    )
    assert not never_made.exists()


async def test_override_commands_are_audited_as_the_operating_system_user(
    engine: AsyncEngine, db_url: str, clients: dict[str, int], wav_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "bye.wav"
    other.write_bytes(GOODBYE)
    at = ["--database-url", db_url]
    for argv in (
        ["override", "acme", "no_client", "es", str(wav_file), *at],
        ["override", "acme", "no_client", "es", str(other), *at],
        ["override-rm", "acme", "no_client", "es", *at],
    ):
        assert (await asyncio.to_thread(cli, *argv))[0] == 0
    refused = await asyncio.to_thread(cli, "override-rm", "acme", "no_client", "es", *at)
    assert refused[0] == 1

    first, second = (
        {"sha256": hashlib.sha256(audio).hexdigest(), "bytes": len(audio)}
        for audio in (checked_override("no_client", "es", wav) for wav in (HELLO, GOODBYE))
    )
    entries = await audit_entries(engine)
    assert [(e["action"], e["before"], e["after"]) for e in entries] == [
        ("locution.override", None, first),
        ("locution.override", first, second),
        ("locution.remove", second, None),
    ]  # the refused removal changed nothing and told nothing
    for entry in entries:
        assert (entry["actor_kind"], entry["actor"]) == ("cli", os_user())
        assert (entry["brand_id"], entry["client_id"]) == (1, clients["acme"])
        assert entry["target"] == f"{clients['acme']}/no_client/es"
