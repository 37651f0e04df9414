"""Asterisk configuration rendered from the database, and the sandbox's pieces that need no
Asterisk: what an operator gets from `callcontrol asterisk render` and `sandbox status`."""

from __future__ import annotations

import configparser
import os
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.asterisk import chroot, sandbox
from callcontrol.asterisk.render import (
    BENCH_REALM,
    FILES,
    MODULES,
    AmiUser,
    Network,
    Paths,
    RenderError,
    RenderOptions,
    conf_value,
    load_context,
    render,
)
from callcontrol.asterisk.shacrypt import verify
from callcontrol.cli import app
from dialplan.errors import ConfigError, NotFound
from models import Carrier, Client, Terminal
from models.provisioning import DEMO_DATASET, load_file
from models.provisioning.passwords import sip_ha1
from models.provisioning.syntax import read_yaml

OPTIONS = RenderOptions(paths=Paths.for_instance(PurePosixPath("/srv/callcontrol/t"), "/mods"))


def sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """(name, options) of every section, in order; PJSIP reuses names across types."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = line.split(";", 1)[0].strip() if not line.startswith("exten") else line
        if line.startswith("[") and line.endswith("]"):
            found.append((line[1:-1], {}))
        elif "=" in line and found and not line.startswith(("exten", "same")):
            key, value = (part.strip() for part in line.split("=", 1))
            found[-1][1][key] = value
    return found


def of_type(text: str, kind: str) -> dict[str, dict[str, str]]:
    return {name: opts for name, opts in sections(text) if opts.get("type") == kind}


def demo_passwords() -> dict[str, tuple[str, str]]:
    """Each demo terminal's (SIP domain, clear password), as the document gives them."""
    document = read_yaml(DEMO_DATASET.read_text(encoding="utf-8"))
    return {
        terminal["name"]: (client["sip_domain"], terminal["password"])
        for client in document["clients"]
        for terminal in client.get("terminals") or []
    }


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


async def test_the_demo_renders_an_endpoint_per_terminal_and_carrier(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    context = await load_context(engine, OPTIONS)
    files = render(context)
    assert set(files) == set(FILES)

    endpoints = of_type(files["pjsip.conf"], "endpoint")
    auths = of_type(files["pjsip.conf"], "auth")
    aors = of_type(files["pjsip.conf"], "aor")
    identifies = of_type(files["pjsip.conf"], "identify")
    terminals = {t.name: t for t in context.terminals}
    assert len(terminals) == 11
    assert {"acme-north-ana", "hudson-front-desk", "seine-noah"} <= set(terminals)
    for name in terminals:
        assert endpoints[name]["context"] == "from-terminal"
        assert endpoints[name]["auth"] == name
        assert auths[name]["username"] == name
        assert name in aors
    passwords = demo_passwords()
    assert set(passwords) == set(terminals)
    for name, (domain, password) in passwords.items():  # the digest only, with its realm
        assert auths[name] == {
            "type": "auth",
            "auth_type": "digest",
            "username": name,
            "realm": domain,
            "password_digest": f"md5:{sip_ha1(name, domain, password)}",
        }
        for text in files.values():
            assert password not in text
    assert auths["acme-north-ana"]["realm"] == "acme-north.iberia-voice.example.es"
    assert endpoints["acme-north-carla"]["allow"] == "alaw"  # opus is not loaded
    assert any("opus" in note for note in context.notes)

    assert {"carrier-telco-es", "carrier-uk"} <= set(endpoints)
    assert endpoints["carrier-uk"]["context"] == "from-carrier"
    assert endpoints["carrier-uk"]["send_pai"] == "yes"
    assert aors["carrier-uk"]["contact"] == "sip:192.0.2.60:5080"
    assert identifies["carrier-uk"]["endpoint"] == "carrier-uk"
    assert identifies["carrier-uk"]["match"] == "192.0.2.60:5080"

    for name, opts in endpoints.items():  # the two traps of the notes, on every endpoint
        assert opts["media_address"] == "127.0.0.1", name
        assert opts["bind_rtp_to_media_address"] == "yes", name
        assert opts["rtp_symmetric"] == "yes", name
        assert opts["direct_media"] == "no", name


async def test_every_call_enters_the_stasis_app_and_falls_back_to_503(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    files = render(await load_context(engine, RenderOptions(OPTIONS.paths, server="as-2")))
    dialplan = files["extensions.conf"]
    for origin in ("terminal", "carrier"):
        block = dialplan.split(f"[from-{origin}]")[1].split("\n\n")[0]
        assert f"Stasis(callcontrol-as2,{origin},${{CHANNEL(pjsip,remote_addr)}})" in block
        assert block.index("Stasis(") < block.index("Progress()") < block.index("Playback(")
        assert "Playback(ss-noservice,noanswer)" in block
        assert "Hangup(34)" in block  # congestion: SIP 503
        assert "Answer" not in block
    bench = dialplan.split("[static-bench]")[1]
    assert "Dial(PJSIP/${EXTEN}@carrier-telco-es,30)" in bench
    assert "Stasis" not in bench


async def test_ami_is_off_unless_the_bench_asks_and_then_only_dialled_fastagi_ends_use_it(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    plain = render(
        await load_context(engine, RenderOptions(OPTIONS.paths, fastagi="127.0.0.1:4573"))
    )
    assert dict(sections(plain["manager.conf"]))["general"] == {"enabled": "no"}
    assert "UserEvent" not in plain["extensions.conf"]
    assert "CC_END_VIA" not in plain["extensions.conf"]
    assert " same => n(dial),Set(CC_END=agi)" in plain["extensions.conf"]
    login = AmiUser(5039, "bench", "s3cret")
    options = RenderOptions(OPTIONS.paths, fastagi="127.0.0.1:4573", manager=login)
    files = render(await load_context(engine, options))
    manager = dict(sections(files["manager.conf"]))
    assert manager["general"] == {"enabled": "yes", "bindaddr": "127.0.0.1", "port": "5039"}
    assert manager["bench"] == {"secret": "s3cret", "read": "user", "write": "call"}
    assert "load = app_userevent.so" in files["modules.conf"]
    dialplan = files["extensions.conf"]
    assert "CC_END_VIA = agi" in dialplan.split("[globals]")[1].split("[")[0]
    assert " same => n(dial),Set(CC_END=${CC_END_VIA})" in dialplan
    ends = dialplan.split("\n[callcontrol-dial]\n")[1].split("exten => h,")[1].split("\n\n")[0]
    # AGI, or AMI: the same five facts, the call named by its id.
    assert 'GotoIf($["${CC_END}" = "ami"]?ami)' in ends
    assert (
        ends.index("(agi),AGI(")
        < ends.index("Hangup()", ends.index("(agi)"))
        < ends.index(
            "(ami),UserEvent(CallControlEnd,Call: ${UNIQUEID},Status: ${DIALSTATUS},"
            "Answered: ${ANSWEREDTIME_MS},Cause: ${HANGUPCAUSE},By: ${CC_BY})"
        )
    )
    for bad in (AmiUser(0), AmiUser(5039, "be nch"), AmiUser(5039, "bench", "a\nb")):
        with pytest.raises((RenderError, ConfigError)):
            await load_context(engine, RenderOptions(OPTIONS.paths, manager=bad))


async def test_a_trusted_proxy_header_is_passed_to_the_app_only_when_configured(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    proxied = RenderOptions(OPTIONS.paths, source_header="X-Forwarded-For")
    dialplan = render(await load_context(engine, proxied))["extensions.conf"]
    assert (
        "Stasis(callcontrol,terminal,${CHANNEL(pjsip,remote_addr)},"
        "${PJSIP_HEADER(read,X-Forwarded-For)})"
    ) in dialplan
    with pytest.raises(RenderError, match="header 'X-Bad Header'"):
        await load_context(engine, RenderOptions(OPTIONS.paths, source_header="X-Bad Header"))


async def test_the_rest_of_the_files_come_from_the_options(engine: AsyncEngine) -> None:
    options = RenderOptions(
        paths=OPTIONS.paths,
        network=Network("127.0.0.2", 5070, 8090, 20000, 20999),
        bench_password="bench-secret",
    )
    files = render(await load_context(engine, options))
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(files["asterisk.conf"].replace("=>", "="))
    assert parser["directories"]["astetcdir"] == "/srv/callcontrol/t"
    assert parser["directories"]["astrundir"] == "/srv/callcontrol/t/run"
    assert parser["directories"]["astmoddir"] == "/mods"
    assert "bindaddr = 127.0.0.2" in files["http.conf"]
    assert "bindport = 8090" in files["http.conf"]
    assert "rtpstart = 20000" in files["rtp.conf"]
    assert "rtpend = 20999" in files["rtp.conf"]
    assert "bind = 127.0.0.2:5070" in files["pjsip.conf"]
    (user,) = [opts for name, opts in sections(files["ari.conf"]) if name == "callcontrol"]
    assert user["password_format"] == "crypt"
    assert user["password"].startswith("$6$")
    assert verify("callcontrol", user["password"])
    assert of_type(files["pjsip.conf"], "auth")["static-bench"] == {
        "type": "auth",
        "auth_type": "digest",
        "username": "static-bench",
        "realm": BENCH_REALM,
        "password_digest": f"md5:{sip_ha1('static-bench', BENCH_REALM, 'bench-secret')}",
    }
    assert "bench-secret" not in files["pjsip.conf"]
    assert "autoload = no" in files["modules.conf"]
    loads = [ln for ln in files["modules.conf"].splitlines() if ln.startswith("load = ")]
    assert loads == [f"load = {module}" for module in MODULES]
    assert "Hangup(34)" in files["extensions.conf"].split("[static-bench]")[1]  # no carrier


async def test_a_stored_digest_or_realm_cannot_open_a_new_section(engine: AsyncEngine) -> None:
    await load_file(engine, DEMO_DATASET)
    ana = Terminal.name == "acme-north-ana"
    async with engine.begin() as connection:
        await connection.execute(update(Terminal).where(ana).values(ha1="x\n[evil]\ntype=aor"))
    with pytest.raises(RenderError, match="acme-north-ana: its stored digest is not 32"):
        await load_context(engine, OPTIONS)
    async with engine.begin() as connection:
        await connection.execute(update(Terminal).where(ana).values(ha1="0" * 32))
        await connection.execute(
            update(Client)
            .where(Client.name == "acme-north")
            .values(sip_domain='evil"\n[x]\ntype=endpoint')
        )
    with pytest.raises(RenderError, match=r"acme-north-ana: SIP domain .* is not a DNS name"):
        await load_context(engine, OPTIONS)


async def test_bad_names_and_unknown_references_are_refused(engine: AsyncEngine) -> None:
    await load_file(engine, DEMO_DATASET)
    with pytest.raises(NotFound, match="no application server named 'nope'"):
        await load_context(engine, RenderOptions(OPTIONS.paths, server="nope"))
    with pytest.raises(NotFound, match="no terminal named 'ghost'"):
        await load_context(engine, RenderOptions(OPTIONS.paths, contacts={"ghost": "sip:x@h"}))
    with pytest.raises(RenderError, match="not a SIP URI"):
        await load_context(
            engine, RenderOptions(OPTIONS.paths, contacts={"acme-north-ana": "sip:a b"})
        )
    with pytest.raises(NotFound, match="no carrier endpoint named 'nope'"):
        await load_context(engine, RenderOptions(OPTIONS.paths, bench_carrier="nope"))
    async with engine.begin() as connection:
        await connection.execute(
            update(Carrier).where(Carrier.endpoint == "carrier-uk").values(endpoint="bad]name")
        )
    with pytest.raises(RenderError, match="PJSIP section name"):
        await load_context(engine, OPTIONS)


def test_values_are_checked_before_they_reach_a_file() -> None:
    assert conf_value("a;b") == r"a\;b"
    with pytest.raises(RenderError):
        conf_value("tab\there")
    with pytest.raises(ConfigError, match="not an IP address"):
        Network("localhost")
    with pytest.raises(ConfigError, match="not a port"):
        Network(sip_port=70000)
    with pytest.raises(ConfigError, match="empty"):
        Network(rtp_start=10000, rtp_end=10001)


def test_render_writes_every_file_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert cli("db", "upgrade", "--database-url", url)[0] == 0
    assert cli("provision", str(DEMO_DATASET), "--database-url", url)[0] == 0
    code, out, err = cli(
        "asterisk", "render", str(tmp_path / "conf"), "--database-url", url, "--sip-port", "5070"
    )
    assert code == 0, err
    assert "11 terminals and 2 carriers" in out
    assert sorted(p.name for p in (tmp_path / "conf").iterdir()) == sorted(FILES)
    assert "bind = 127.0.0.1:5070" in (tmp_path / "conf" / "pjsip.conf").read_text()
    # The ARI user and the app are the service's own settings unless given here.
    environment = {"CALLCONTROL_ARI_PASSWORD": "from-env", "CALLCONTROL_APP": "cc-env"}
    code, _, err = cli("asterisk", "render", str(tmp_path / "env"), "--database-url", url,
                       env=environment)  # fmt: skip
    assert code == 0, err
    ari = (tmp_path / "env" / "ari.conf").read_text()
    assert "from-env" not in ari
    (crypted,) = [line[11:] for line in ari.splitlines() if line.startswith("password = ")]
    assert verify("from-env", crypted)
    # Rendering again keeps the hash that still verifies; another password gets a new one.
    code, _, err = cli("asterisk", "render", str(tmp_path / "env"), "--database-url", url,
                       env=environment)  # fmt: skip
    assert (tmp_path / "env" / "ari.conf").read_text() == ari
    code, _, err = cli("asterisk", "render", str(tmp_path / "env"), "--database-url", url,
                       env={**environment, "CALLCONTROL_ARI_PASSWORD": "other"})  # fmt: skip
    assert code == 0, err
    again = (tmp_path / "env" / "ari.conf").read_text()
    assert again != ari
    assert verify("other", again.split("password = ")[1].split()[0])
    dialplan = (tmp_path / "env" / "extensions.conf").read_text()
    assert "Stasis(cc-env,terminal,${CHANNEL(pjsip,remote_addr)})" in dialplan
    # Behind trusted proxies the app also gets the header they set.
    proxied = {
        "CALLCONTROL_TRUSTED_PROXIES": "192.0.2.10",
        "CALLCONTROL_SOURCE_HEADER": "X-Real-IP",
    }
    code, _, err = cli("asterisk", "render", str(tmp_path / "px"), "--database-url", url,
                       env=proxied)  # fmt: skip
    assert code == 0, err
    assert ",${PJSIP_HEADER(read,X-Real-IP)})" in (tmp_path / "px" / "extensions.conf").read_text()
    code, _, err = cli("asterisk", "render", str(tmp_path / "x"), "--database-url", url,
                       "--address", "not-an-ip")  # fmt: skip
    assert code == 1
    assert err.strip() == "error: address 'not-an-ip' is not an IP address"


def test_the_debian_mirror_comes_from_the_apt_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(chroot.MIRROR_ENV, raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian/\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert chroot.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64] http://other.example/debian sid main\n"
    )
    assert chroot.debian_mirror(tmp_path) == "http://other.example/debian"
    (tmp_path / "sources.list").write_text("# nothing\n")
    with pytest.raises(chroot.SandboxError, match=chroot.MIRROR_ENV):
        chroot.debian_mirror(tmp_path)
    monkeypatch.setenv(chroot.MIRROR_ENV, "http://env.example/debian")
    assert chroot.debian_mirror(tmp_path) == "http://env.example/debian"


def test_the_chroot_is_cached_by_its_package_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(chroot.CACHE_ENV, str(tmp_path))
    assert chroot.cache_dir() == tmp_path
    assert chroot.chroot_key() != chroot.chroot_key(packages=("asterisk",))
    root = chroot.chroot_path(tmp_path)
    assert not chroot.is_complete(root)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/asterisk").touch()
    (root / "usr/share/asterisk").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/asterisk/modules").mkdir(parents=True)
    assert chroot.ensure_chroot() == root  # complete: no build, no root needed
    assert chroot.modules_dir(root) == "/usr/lib/x86_64-linux-gnu/asterisk/modules"


def test_sandbox_status_of_an_instance_that_never_ran(tmp_path: Path) -> None:
    code, out, _ = cli(
        "asterisk", "sandbox", "status", "--name", "nobody", "--cache", str(tmp_path)
    )
    assert (code, out.strip()) == (3, "sandbox nobody: not running")
    assert not sandbox.instance("nobody", tmp_path).running()
    code, _, err = cli("asterisk", "sandbox", "status", "--name", "../x", "--cache", str(tmp_path))
    assert code == 1
    assert "instance name" in err


def test_the_sandbox_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # an ordinary user
    for command in (["up"], ["down"], ["rx", "core show uptime"]):
        code, _, err = cli("asterisk", "sandbox", *command, "--cache", str(tmp_path))
        assert code == 1
        assert err.strip() == (
            "error: the Asterisk sandbox needs root (it builds and enters a chroot): run it as root"
        )


async def test_an_application_servers_asterisk_names_its_channels_after_it(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    named = render(await load_context(engine, RenderOptions(OPTIONS.paths, server="as-2")))
    plain = render(await load_context(engine, OPTIONS))
    assert "\nsystemname = as-2\n" in named["asterisk.conf"]
    assert "systemname" not in plain["asterisk.conf"]


async def test_registered_terminals_are_qualified_and_static_contacts_are_not(
    engine: AsyncEngine,
) -> None:
    await load_file(engine, DEMO_DATASET)
    options = replace(OPTIONS, contacts={"acme-north-bruno": "sip:bruno@127.0.0.1:5099"})
    aors = of_type(render(await load_context(engine, options))["pjsip.conf"], "aor")
    # a phone that died without unregistering is noticed within a minute and skipped
    assert aors["acme-north-ana"]["qualify_frequency"] == "30"
    assert aors["acme-north-ana"]["qualify_timeout"] == "3"
    assert aors["acme-north-ana"]["remove_unavailable"] == "yes"
    assert "qualify_frequency" not in aors["acme-north-bruno"]  # a test's SIPp callee
    assert "qualify_frequency" not in aors["carrier-uk"]
    fast = of_type(
        render(await load_context(engine, replace(OPTIONS, qualify_frequency=2)))["pjsip.conf"],
        "aor",
    )
    assert (
        fast["acme-north-ana"]["qualify_frequency"],
        fast["acme-north-ana"]["qualify_timeout"],
    ) == (
        "2",
        "1.0",
    )
    off = of_type(
        render(await load_context(engine, replace(OPTIONS, qualify_frequency=0)))["pjsip.conf"],
        "aor",
    )
    assert "qualify_frequency" not in off["acme-north-ana"]
