"""The catalogue covers every reason in the languages we ship, and falls back to English; its
audio is committed in the format Asterisk plays, installs where Asterisk looks, and rebuilds."""

from __future__ import annotations

import array
import math
import shutil
import sys
import wave
from pathlib import Path, PurePosixPath

import pytest
from typer.testing import CliRunner

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.render import (
    AriUser,
    Network,
    Paths,
    RenderContext,
    StaticBench,
    ari_login,
    render,
)
from callcontrol.cli.locutions import app
from dialplan.errors import NotFound
from dialplan.reasons import Reason
from locutions import CATALOGUE, locution
from locutions.build import (
    SOUNDS_DIR,
    LocutionError,
    build,
    check,
    require_tools,
    synthesise,
)
from locutions.install import install, languages, resolve, sound_uri
from tests.conftest import unavailable

QUIET_DBFS = -35.0
"""Speech normalised to -3 dBFS peaks sits near -20 dBFS RMS; silence or hiss far below this."""


def test_every_reason_has_a_locution_in_english_and_spanish() -> None:
    for reason in Reason:
        assert set(CATALOGUE[reason.locution]) >= {"en", "es"}, reason


def test_a_language_we_lack_falls_back_to_english() -> None:
    spoken = locution("not_allowed", "fr")
    assert spoken.language == "en"
    assert spoken.text == CATALOGUE["not_allowed"]["en"]


def test_spanish_is_spoken_in_spanish() -> None:
    assert locution("invalid_number", "es").text.startswith("El número")


# ---- the committed audio --------------------------------------------------------------------


def rms_dbfs(path: Path) -> float:
    """Root mean square level of a 16-bit PCM WAV, in dB below full scale."""
    with wave.open(str(path), "rb") as audio:
        assert audio.getsampwidth() == 2
        samples = array.array("h", audio.readframes(audio.getnframes()))
    if sys.byteorder == "big":  # WAV samples are little-endian
        samples.byteswap()
    if not samples:
        return -math.inf
    mean_square = sum(sample * sample for sample in samples) / len(samples)
    return 10 * math.log10(mean_square / 32768**2) if mean_square else -math.inf


def assert_asterisk_wav(path: Path) -> None:
    with wave.open(str(path), "rb") as audio:
        assert audio.getcomptype() == "NONE", path
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (8000, 1, 2)
        seconds = audio.getnframes() / audio.getframerate()
    assert 0.5 <= seconds <= 8.0, (path, seconds)
    assert rms_dbfs(path) > QUIET_DBFS, path


def test_every_sound_has_a_committed_file_in_english_and_spanish() -> None:
    for sound in CATALOGUE:
        for language in ("en", "es"):
            assert (SOUNDS_DIR / language / f"{sound}.wav").is_file(), (sound, language)


def test_every_committed_file_is_speech_asterisk_plays_natively() -> None:
    files = sorted(SOUNDS_DIR.rglob("*.wav"))
    assert len(files) == sum(len(texts) for texts in CATALOGUE.values())
    for path in files:
        assert_asterisk_wav(path)


def test_the_committed_set_passes_the_check() -> None:
    assert check() == []
    result = CliRunner().invoke(app, ["build", "--check"])
    assert result.exit_code == 0, result.output
    assert "all present" in result.stdout


def test_the_check_names_missing_stray_and_misformatted_files(tmp_path: Path) -> None:
    shutil.copytree(SOUNDS_DIR, tmp_path / "sounds")
    sounds = tmp_path / "sounds"
    (sounds / "es" / "no_client.wav").unlink()
    with wave.open(str(sounds / "en" / "not_allowed.wav"), "wb") as stereo:
        stereo.setnchannels(2)
        stereo.setsampwidth(2)
        stereo.setframerate(44100)
        stereo.writeframes(b"\x10\x00" * 2 * 44100)
    shutil.copy(sounds / "en" / "no_client.wav", sounds / "en" / "retired.wav")

    problems = check(sounds)

    assert problems == [
        "en/not_allowed.wav: 44100 Hz, 2 channel(s), 16-bit (want 8000 Hz, mono, 16-bit)",
        "es/no_client.wav: missing",
        "en/retired.wav: not in the catalogue",
    ]
    result = CliRunner().invoke(app, ["build", "--check", "--into", str(sounds)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: en/not_allowed.wav")


def test_the_check_names_a_too_short_file_and_one_that_is_not_a_wav(tmp_path: Path) -> None:
    shutil.copytree(SOUNDS_DIR, tmp_path, dirs_exist_ok=True)
    with wave.open(str(tmp_path / "en" / "no_client.wav"), "wb") as short:
        short.setnchannels(1)
        short.setsampwidth(2)
        short.setframerate(8000)
        short.writeframes(b"\x10\x00" * 800)
    (tmp_path / "es" / "no_client.wav").write_bytes(b"ID3 an mp3, say")

    problems = check(tmp_path)

    assert problems[0] == "en/no_client.wav: 0.10 s long (want 0.5-8.0 s)"
    assert problems[1].endswith(
        "es/no_client.wav is not a PCM WAV file: file does not start with RIFF id"
    )
    assert len(problems) == 2


def test_the_service_names_a_locution_by_uri_and_plays_it_with_a_language() -> None:
    assert sound_uri("service_unavailable") == "sound:callcontrol/service_unavailable"
    assert languages() == ("en", "es")
    with pytest.raises(NotFound, match="no locution named 'nope'"):
        sound_uri("nope")


# ---- install --------------------------------------------------------------------------------


def test_install_lays_out_every_language_as_asterisk_looks_it_up(tmp_path: Path) -> None:
    done = install(tmp_path)

    expected = {
        tmp_path / language / "callcontrol" / f"{sound}.wav"
        for sound, texts in CATALOGUE.items()
        for language in texts
    }
    assert set(done.written) == expected
    assert done.kept == []
    assert {p for p in tmp_path.rglob("*") if p.is_file()} == expected  # no temporary left
    for path in expected:
        language, _, name = path.relative_to(tmp_path).parts
        assert path.read_bytes() == (SOUNDS_DIR / language / name).read_bytes()
        assert path.stat().st_mode & 0o444 == 0o444  # readable by a non-root Asterisk


def test_installing_again_writes_nothing_and_repairs_a_changed_file(tmp_path: Path) -> None:
    first = install(tmp_path)
    damaged = tmp_path / "es" / "callcontrol" / "no_client.wav"
    damaged.write_bytes(b"not audio")

    second = install(tmp_path)
    third = install(tmp_path)

    assert second.written == [damaged]
    assert len(second.kept) == len(first.written) - 1
    assert damaged.read_bytes() == (SOUNDS_DIR / "es" / "no_client.wav").read_bytes()
    assert (third.written, len(third.kept)) == ([], len(first.written))


def test_installing_one_language_brings_english_along(tmp_path: Path) -> None:
    install(tmp_path, only=["es"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["en", "es"]


def test_install_inside_a_chroot_follows_debians_absolute_links_inside_it(
    tmp_path: Path,
) -> None:
    # Debian: sounds/en -> /etc/alternatives/asterisk-prompt-en -> .../sounds/en_US_f_Allison.
    root = tmp_path / "chroot"
    sounds = root / "usr/share/asterisk/sounds"
    (sounds / "en_US_f_Allison").mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "etc/alternatives/asterisk-prompt-en").symlink_to(
        "/usr/share/asterisk/sounds/en_US_f_Allison"
    )
    (sounds / "en").symlink_to("/etc/alternatives/asterisk-prompt-en")

    done = install(PurePosixPath("/usr/share/asterisk/sounds"), chroot=root)

    prompts = sounds / "en_US_f_Allison" / "callcontrol"
    assert prompts / "no_client.wav" in done.written
    assert len(list(prompts.glob("*.wav"))) == len(CATALOGUE)
    assert (sounds / "es" / "callcontrol" / "no_client.wav").is_file()
    assert resolve(root, PurePosixPath("/usr/share/asterisk/sounds/en/../../x")) == (
        root / "usr/share/asterisk/x"
    )


def test_a_loop_of_symbolic_links_is_refused_not_followed_forever(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("/a")
    with pytest.raises(LocutionError, match="too many symbolic links"):
        install(PurePosixPath("/a"), chroot=tmp_path)


def test_install_from_an_incomplete_build_is_refused_before_writing(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(SOUNDS_DIR, source)
    (source / "es" / "no_client.wav").unlink()
    target = tmp_path / "sounds"
    target.mkdir()
    with pytest.raises(LocutionError, match=r"incomplete \(es/no_client\.wav: missing\)"):
        install(target, source=source)
    assert list(target.iterdir()) == []


def test_starting_a_sandbox_installs_the_locutions_into_its_chroot(tmp_path: Path) -> None:
    root = tmp_path / "chroot"
    (root / "etc").mkdir(parents=True)
    (root / "usr/share/asterisk/sounds").mkdir(parents=True)
    instance = sandbox.Instance(root, "t")
    paths = Paths.for_instance(instance.inside, "/mods")

    instance.prepare({"asterisk.conf": "[directories]\n"}, paths)

    installed = root / paths.data.lstrip("/") / "sounds" / "es" / "callcontrol"
    assert (installed / "service_unavailable.wav").read_bytes() == (
        SOUNDS_DIR / "es" / "service_unavailable.wav"
    ).read_bytes()


def test_without_the_app_the_dialplan_plays_our_notice_then_the_stock_one_if_missing() -> None:
    context = RenderContext(
        app="callcontrol",
        paths=Paths.for_instance(PurePosixPath("/srv/callcontrol/t"), "/mods"),
        network=Network(),
        ari=ari_login(AriUser()),
        terminals=(),
        carriers=(),
        static_bench=StaticBench(None),
        bench_caller=None,
        unavailable_sound="ss-noservice",
        unavailable_cause=34,
    )
    dialplan = render(context)["extensions.conf"]
    block = dialplan.split("[from-terminal]")[1].split("\n\n")[0]
    assert block.strip().splitlines() == [
        "exten => _[0-9*#+]!,1,Stasis(callcontrol,terminal,${CHANNEL(pjsip,remote_addr)})",
        " same => n,Progress()",
        " same => n,Playback(callcontrol/service_unavailable,noanswer)",
        ' same => n,GotoIf($["${PLAYBACKSTATUS}" = "SUCCESS"]?refuse)',
        " same => n,Playback(ss-noservice,noanswer)",
        " same => n(refuse),Hangup(34)",
    ]


# ---- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["install", "{file}"], "is not a folder"),
        (["install", "{missing}"], "does not exist"),
        (["install", "{blocked}"], "a file is in the way"),
        (["install", "{folder}", "--language", "fr"], "no locutions in fr"),
        (["build", "--sound", "nope"], "no locution named 'nope'"),
        (["build", "--language", "fr"], "no locution in 'fr'"),
        (["build", "--into", "{file}"], "is not a folder"),
        (["list", "--language", "fr"], "no locutions in fr"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    places = {
        "file": tmp_path / "a-file",
        "missing": tmp_path / "nowhere",
        "folder": tmp_path / "sounds",
        "blocked": tmp_path / "blocked",
    }
    places["file"].write_text("not a folder")
    places["folder"].mkdir()
    places["blocked"].mkdir()
    (places["blocked"] / "en").write_text("a file where the en folder goes")
    argv = [argument.format(**{k: str(v) for k, v in places.items()}) for argument in arguments]

    result = CliRunner().invoke(app, argv)

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert list(places["folder"].iterdir()) == []


def test_install_command_reports_what_it_wrote_then_what_it_kept(tmp_path: Path) -> None:
    count = sum(len(texts) for texts in CATALOGUE.values())
    first = CliRunner().invoke(app, ["install", str(tmp_path)])
    second = CliRunner().invoke(app, ["install", str(tmp_path)])
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert f"{count} written, 0 unchanged" in first.stdout
    assert f"0 written, {count} unchanged" in second.stdout


def test_list_shows_sound_language_seconds_and_text() -> None:
    result = CliRunner().invoke(app, ["list", "--language", "es"])
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert len(rows) == len(CATALOGUE)
    row = next(r for r in rows if r.startswith("service_unavailable "))
    sound, language, seconds, *text = row.split()
    assert (sound, language) == ("service_unavailable", "es")
    assert 0.5 <= float(seconds) <= 8.0
    assert " ".join(text) == CATALOGUE["service_unavailable"]["es"]


# ---- the build ------------------------------------------------------------------------------


def needs_tools() -> None:
    try:
        require_tools()
    except LocutionError:
        unavailable("espeak-ng or sox", "apt-get install espeak-ng sox")


def test_the_build_regenerates_one_sound_in_the_committed_format(tmp_path: Path) -> None:
    needs_tools()
    result = CliRunner().invoke(
        app,
        ["build", "--sound", "no_client", "--language", "es", "--into", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [
        Path("es/no_client.wav")
    ]
    assert_asterisk_wav(tmp_path / "es" / "no_client.wav")


def test_the_build_of_every_sound_matches_the_committed_set(tmp_path: Path) -> None:
    needs_tools()
    written = build(tmp_path)
    assert len(written) == sum(len(texts) for texts in CATALOGUE.values())
    assert check(tmp_path) == []


def test_a_voice_espeak_ng_lacks_or_a_text_that_says_nothing_is_an_error(tmp_path: Path) -> None:
    needs_tools()
    tools = require_tools()
    with pytest.raises(LocutionError, match=r"espeak-ng -v zz failed for x\.wav: .*does not exist"):
        synthesise("hola", "zz", tmp_path / "x.wav", tools)
    with pytest.raises(LocutionError, match=r"y\.wav came out 0\.00 s long"):
        synthesise("", "en", tmp_path / "y.wav", tools)
    assert list(tmp_path.iterdir()) == []  # nothing half-made is left behind


def test_without_espeak_ng_and_sox_the_build_names_their_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocutionError, match="apt-get install espeak-ng sox"):
        build(tmp_path, ["no_client"])
    assert list(tmp_path.iterdir()) == []
