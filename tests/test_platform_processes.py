"""The platform's pieces without the platform: the supervisor with harmless daemons (Python
one-liners), bencode, the specs' checks, kamcmd's output parsed, the CLI's bad input."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.cli import app
from callcontrol.platform import bencode, rtpengine
from callcontrol.platform.kamailio import EdgeSpec, parse_dispatcher_list, with_ctl
from callcontrol.platform.platform import (
    Layout,
    PlatformSpec,
    direct_server,
    mark_drained,
    place_relays,
    place_servers,
    service_daemon,
)
from callcontrol.platform.processes import (
    Daemon,
    PlatformError,
    Supervisor,
    command_line,
)
from callcontrol.platform.rtpengine import RelaySpec
from models.db import create_engine
from models.migrate import upgrade_async
from models.platform import ApplicationServer, MediaRelaySet
from tests.ports import free_port
from tests.test_service import demo_engine

__all__ = ["demo_engine"]

PYTHON = sys.executable


def touching(path: Path, then: str = "import time; time.sleep(60)") -> tuple[str, ...]:
    """A daemon that writes ``path`` once it "serves", then runs ``then``."""
    return (PYTHON, "-c", f"import pathlib; pathlib.Path({str(path)!r}).write_text('ok'); {then}")


def exists(path: Path) -> str | None:
    return None if path.exists() else f"{path.name} not written"


def alive(pid: int) -> bool:
    return command_line(pid) is not None


# ---- the supervisor -------------------------------------------------------------------------


def test_a_daemon_is_started_recorded_probed_and_stopped_by_its_pid(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path / "run")
    ready = tmp_path / "ready"
    daemon = Daemon("sleeper", touching(ready))
    recorded = supervisor.start(daemon, lambda: exists(ready), timeout=20, stop_timeout=5)
    assert ready.read_text() == "ok"
    state = json.loads((tmp_path / "run" / "sleeper.json").read_text())
    assert (state["pid"], state["argv"]) == (recorded.pid, list(daemon.argv))
    assert os.getpgid(recorded.pid) == recorded.pid  # its own session: our Ctrl-C skips it
    assert supervisor.status("sleeper").running
    assert supervisor.names() == ["sleeper"]
    # Another supervisor on the same folder (`platform down` in another process) stops it.
    assert Supervisor(tmp_path / "run").stop("sleeper", timeout=5)
    assert not alive(recorded.pid)
    assert not (tmp_path / "run" / "sleeper.json").exists()
    assert not supervisor.status("sleeper").running
    assert supervisor.stop("sleeper") is False  # reaps our child, says it was not running


def test_the_environment_reaches_the_daemon_and_is_never_written(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    out = tmp_path / "seen"
    script = f"import os, pathlib; pathlib.Path({str(out)!r}).write_text(os.environ['SECRET'])"
    daemon = Daemon(
        "env", (PYTHON, "-c", f"{script}; import time; time.sleep(60)"), {"SECRET": "s3cr3t"}
    )
    supervisor.start(daemon, lambda: exists(out), timeout=20, stop_timeout=5)
    try:
        assert out.read_text() == "s3cr3t"
        assert "s3cr3t" not in (tmp_path / "env.json").read_text()
    finally:
        supervisor.stop("env", timeout=5)


def test_a_daemon_that_dies_while_starting_says_why_from_its_log(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    argv = (PYTHON, "-c", "import sys; print('ERROR: port 5060 is taken'); sys.exit(3)")
    with pytest.raises(PlatformError, match=r"dies exited with 3 while starting: ERROR: port 5060"):
        supervisor.start(Daemon("dies", argv), lambda: "never", timeout=20, stop_timeout=5)
    assert supervisor.names() == []


def test_a_daemon_that_never_answers_is_stopped_after_the_timeout(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    never = tmp_path / "never"
    with pytest.raises(
        PlatformError, match=r"mute did not answer within 1 s \(never not written\)"
    ):
        supervisor.start(
            Daemon("mute", (PYTHON, "-c", "import time; time.sleep(60)")),
            lambda: exists(never),
            timeout=1,
            stop_timeout=5,
        )
    assert supervisor.names() == []


def test_sigterm_ignored_means_sigkill_and_forked_children_go_with_the_daemon(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(tmp_path)
    child_pid = tmp_path / "child"
    script = (
        "import signal, subprocess, sys, time, pathlib\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"child = subprocess.Popen([{PYTHON!r}, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
        f"pathlib.Path({str(child_pid)!r}).write_text(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    recorded = supervisor.start(
        Daemon("stubborn", (PYTHON, "-c", script)), lambda: exists(child_pid), 20, 5
    )
    child = int(child_pid.read_text())
    started = time.monotonic()
    assert supervisor.stop("stubborn", timeout=1)
    assert time.monotonic() - started < 10
    assert not alive(recorded.pid)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_a_reused_pid_is_not_ours_and_is_never_signalled(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    # A state file naming this very test process, with another command line.
    (tmp_path / "old.json").write_text(
        json.dumps(
            {"name": "old", "pid": os.getpid(), "argv": ["rtpengine"], "log": "", "started_at": 0}
        )
    )
    assert not supervisor.running("old")
    assert supervisor.stop("old") is False  # and we are still here
    assert not (tmp_path / "old.json").exists()


def test_a_running_daemon_is_not_started_twice(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    ready = tmp_path / "ready"
    daemon = Daemon("once", touching(ready))
    recorded = supervisor.start(daemon, lambda: exists(ready), 20, 5)
    try:
        with pytest.raises(
            PlatformError, match=f"once is already running \\(pid {recorded.pid}\\)"
        ):
            supervisor.start(daemon, lambda: None, 20, 5)
    finally:
        assert supervisor.stop_all(timeout=5) == ["once"]


@pytest.mark.parametrize("name", ["", "../etc", "a b", "-x", "x" * 65])
def test_a_daemon_name_that_cannot_name_a_file_is_refused(name: str) -> None:
    with pytest.raises(PlatformError, match="letters, digits, - and _ only"):
        Daemon(name, ("true",))


def test_a_missing_program_is_one_error(tmp_path: Path) -> None:
    supervisor = Supervisor(tmp_path)
    with pytest.raises(PlatformError, match="ghost: cannot run /nonexistent/ghostd"):
        supervisor.start(Daemon("ghost", ("/nonexistent/ghostd",)), lambda: None, 5, 5)


# ---- bencode --------------------------------------------------------------------------------


def test_bencode_round_trips_what_the_ng_protocol_sends() -> None:
    value = {
        "command": "offer",
        "call-id": "abc@host",
        "flags": ["trust-address", "symmetric"],
        "ports": [-1, 0, 30000],
        "sdp": b"v=0\r\n",
        "nested": {"z": 1, "a": {"list": []}},
    }
    encoded = bencode.encode(value)
    assert encoded.startswith(b"d7:call-id8:abc@host7:command5:offer")  # keys sorted
    assert bencode.decode(encoded) == {
        b"command": b"offer",
        b"call-id": b"abc@host",
        b"flags": [b"trust-address", b"symmetric"],
        b"ports": [-1, 0, 30000],
        b"sdp": b"v=0\r\n",
        b"nested": {b"a": {b"list": []}, b"z": 1},
    }
    assert bencode.decode(b"d6:result4:ponge") == {b"result": b"pong"}
    assert bencode.encode("é") == b"2:\xc3\xa9"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i12",
        b"i-0e",
        b"i03e",
        b"ie",
        b"5:abc",
        b"01:a",
        b"l",
        b"d1:a",
        b"di1ei2ee",
        b"x",
        b"i1ei2e",
        b"l" * 40 + b"e" * 40,
    ],
)
def test_bencode_refuses_what_is_malformed(data: bytes) -> None:
    with pytest.raises(bencode.BencodeError):
        bencode.decode(data)


@pytest.mark.parametrize("value", [True, 1.5, None, {"a": object()}])
def test_bencode_refuses_what_it_cannot_hold(value: object) -> None:
    with pytest.raises(bencode.BencodeError):
        bencode.encode(value)  # type: ignore[arg-type]


# ---- the specs ------------------------------------------------------------------------------


def test_rtpengine_runs_in_user_space_on_its_own_address_and_ports() -> None:
    spec = RelaySpec("rtpengine-1", "127.0.0.21", 30000, 30999, 2223, 2224)
    argv = spec.argv("/usr/bin/rtpengine")
    assert argv[:5] == (
        "/usr/bin/rtpengine",
        "--config-file=none",
        "--table=-1",
        "--foreground",
        "--log-stderr",
    )
    assert "--listen-ng=127.0.0.21:2223" in argv
    assert "--port-min=30000" in argv
    assert "--port-max=30999" in argv
    assert spec.control_url == "udp:127.0.0.21:2223"


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        (("r", "localhost", 30000, 30999), "'localhost' is not an IPv4 address"),
        (("r", "127.0.0.21", 30000, 30001), "hold no call"),
        (("r", "127.0.0.21", 80, 30001), "port 80 is not in 1024-65535"),
        (("r", "127.0.0.21", 30000, 30999, 2223, 2223), "ng and CLI ports must differ"),
    ],
)
def test_a_bad_rtpengine_spec_is_refused(arguments: tuple[object, ...], error: str) -> None:
    with pytest.raises(PlatformError, match=error):
        RelaySpec(*arguments)  # type: ignore[arg-type]


def test_the_platform_places_servers_relays_and_the_edge_on_loopback(tmp_path: Path) -> None:
    spec = PlatformSpec("postgresql://db/cc", servers=3, run_dir=tmp_path)
    assert [spec.server_address(i) for i in (1, 2, 3)] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
    first, second = spec.relay(1), spec.relay(2)
    assert (first.address, first.port_min, first.port_max) == ("127.0.0.21", 30000, 30999)
    assert (second.address, second.port_min) == ("127.0.0.22", 31000)
    edge = spec.edge()
    assert (edge.listen_host, edge.listen_port, edge.ctl_socket) == (
        "127.0.0.2",
        5060,
        tmp_path.resolve() / "kamailio.ctl",
    )
    with pytest.raises(PlatformError, match="servers 10: from 1 to 9"):
        PlatformSpec("postgresql://db/cc", servers=10)


def test_an_edge_spec_checks_its_address_and_socket(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="'edge' is not an IP address"):
        EdgeSpec(tmp_path, "edge", 5060, tmp_path / "ctl")
    with pytest.raises(PlatformError, match="at most 100 characters"):
        EdgeSpec(tmp_path, "127.0.0.2", 5060, tmp_path / ("x" * 120))


def test_with_ctl_loads_the_ctl_module_once_after_the_other_modules(tmp_path: Path) -> None:
    config = 'loadmodule "tm.so"\nloadmodule "sl.so"\nmodparam("tm", "x", 1)\n'
    added = with_ctl(config, tmp_path / "ctl")
    assert added.splitlines()[2:4] == [
        'loadmodule "ctl.so"',
        f'modparam("ctl", "binrpc", "unix:{tmp_path / "ctl"}")',
    ]
    assert with_ctl(added, tmp_path / "other") == added
    with pytest.raises(PlatformError, match="loads no module"):
        with_ctl("request_route {}\n", tmp_path / "ctl")


DISPATCHER_LIST = """{
\tNRSETS: 1
\tRECORDS: {
\t\tSET: {
\t\t\tID: 1
\t\t\tTARGETS: {
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.12:5060
\t\t\t\t\tFLAGS: DX
\t\t\t\t\tPRIORITY: 0
\t\t\t\t\tATTRS: {
\t\t\t\t\t\tBODY: name=as-2;weight=1
\t\t\t\t\t\tDUID: <null string>
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.11:5060
\t\t\t\t\tFLAGS: AP
\t\t\t\t\tPRIORITY: 0
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def test_the_dispatcher_view_is_read_from_kamcmd_output() -> None:
    found = parse_dispatcher_list(DISPATCHER_LIST)
    assert [(d.set_id, d.uri, d.flags, d.name, d.state) for d in found] == [
        (1, "sip:127.0.0.12:5060", "DX", "as-2", "disabled"),
        (1, "sip:127.0.0.11:5060", "AP", "", "active"),
    ]
    assert parse_dispatcher_list("{\n}\n") == []


# ---- drain's one statement ----------------------------------------------------------------------


async def test_drain_marks_the_server_in_the_database_and_names_a_stranger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                ApplicationServer.__table__.insert().values(name="as-1", address="127.0.0.11")
            )
        assert await mark_drained(engine, "as-1", True) == "127.0.0.11"
        async with engine.connect() as connection:
            drained = await connection.execute(text("SELECT drained FROM application_servers"))
            assert drained.scalar_one() == 1
        assert await mark_drained(engine, "as-1", False) == "127.0.0.11"
        with pytest.raises(PlatformError, match="no application server is named 'as-9'"):
            await mark_drained(engine, "as-9", True)
        async with engine.connect() as connection:
            names = (await connection.execute(select(ApplicationServer.name))).scalars().all()
        assert names == ["as-1"]
    finally:
        await engine.dispose()


# ---- the command line ---------------------------------------------------------------------------


def test_platform_commands_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    env = {"CALLCONTROL_DATABASE_URL": url}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    cases = [
        (["platform", "up", "--servers", "0"], "servers 0: from 1 to 9"),
        (["platform", "up", "--timeout", "0"], "--timeout 0: must be more than 0 seconds"),
        (["platform", "up"], "an SQLite file cannot be shared"),
        (["platform", "drain", "ghost", "--run-dir", str(tmp_path)], "'ghost'"),
        (["platform", "undrain", "ghost", "--run-dir", str(tmp_path)], "'ghost'"),
    ]
    for arguments, error in cases:
        result = runner.invoke(app, arguments, env=env)
        assert result.exit_code == 1, (arguments, result.output)
        assert result.stderr.startswith("error: "), arguments
        assert error in result.stderr, (arguments, result.stderr)
        assert result.stderr.count("\n") == 1, result.stderr


def test_status_and_down_without_a_platform_say_so(tmp_path: Path) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["platform", "status", "--run-dir", str(tmp_path)])
    assert (status.exit_code, status.stdout) == (
        3,
        f"no platform in {tmp_path}: `callcontrol platform up` starts one\n",
    )
    down = runner.invoke(app, ["platform", "down", "--run-dir", str(tmp_path)])
    assert (down.exit_code, down.stdout) == (0, "nothing was running\n")


# ---- placing the servers and relays -------------------------------------------------------------


async def test_up_places_the_first_servers_by_name_on_loopback(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    said: list[str] = []
    spec = PlatformSpec("postgresql://db/cc", servers=1, run_dir=tmp_path)
    [place] = await place_servers(demo_engine, spec, said.append)
    assert (place.name, place.network.address, place.sandbox, place.service) == (
        "as-1",
        "127.0.0.11",
        "platform-as-1",
        "service-as-1",
    )
    assert len(place.ari.password) == 32  # made for this up, never stored
    assert place.ari.password not in repr(place)
    assert said == [
        "note: 1 application servers not started (--servers)",
        "note: application server as-1 moved from 192.0.2.11 to 127.0.0.11",
    ]
    daemon = service_daemon(place, spec)
    assert daemon.argv[1:] == ("-m", "callcontrol", "run", "--app", place.app)
    assert daemon.environment is not None
    assert daemon.environment["CALLCONTROL_TRUSTED_PROXIES"] == "127.0.0.2"
    assert daemon.environment["CALLCONTROL_ARI_PASSWORD"] == place.ari.password
    settings = direct_server(place)
    assert (settings.name, settings.server, settings.network) == (
        "platform-as-1",
        "as-1",
        place.network,
    )
    relays = await place_relays(demo_engine, spec)
    assert [(r.set_id, r.spec.address) for r in relays] == [(1, "127.0.0.21"), (2, "127.0.0.22")]
    with pytest.raises(PlatformError, match="has 2 application servers, not 3"):
        await place_servers(demo_engine, PlatformSpec("postgresql://db/cc", servers=3), said.append)


async def test_a_server_name_that_cannot_name_a_sandbox_is_refused(
    demo_engine: AsyncEngine,
) -> None:
    async with demo_engine.begin() as connection:
        await connection.execute(
            update(ApplicationServer).where(ApplicationServer.name == "as-1").values(name="a s")
        )
        for index in range(10):
            await connection.execute(MediaRelaySet.__table__.insert().values(name=f"extra-{index}"))
    spec = PlatformSpec("postgresql://db/cc", servers=2)
    with pytest.raises(PlatformError, match="'a s': its name must be letters"):
        await place_servers(demo_engine, spec, lambda _: None)
    with pytest.raises(PlatformError, match="12 media relay sets: the platform runs at most 9"):
        await place_relays(demo_engine, spec)


def test_status_of_a_platform_whose_parts_are_gone_says_each_is_down(tmp_path: Path) -> None:
    Layout(
        servers=[
            {
                "name": "as-1",
                "sandbox": "platform-as-1",
                "service": "service-as-1",
                "address": "127.0.0.11",
            }
        ],
        relays=[
            {
                "name": "rtpengine-1",
                "set_id": 0,
                "address": "127.0.0.21",
                "control_url": "udp:127.0.0.21:2223",
            }
        ],
        edge={
            "name": "kamailio",
            "address": "127.0.0.2:5060",
            "ctl_socket": str(tmp_path / "ctl"),
        },
        cache=str(tmp_path / "cache"),
    ).write(tmp_path)
    result = CliRunner().invoke(app, ["platform", "status", "--run-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "rtpengine  rtpengine-1              127.0.0.21         down",
        "edge       kamailio                 127.0.0.2:5060     down",
        "asterisk   platform-as-1            127.0.0.11         down",
        "service    service-as-1             127.0.0.11         down",
        "dispatcher: unknown (the edge is not running)",
    ]
    down = CliRunner().invoke(app, ["platform", "down", "--run-dir", str(tmp_path)])
    assert (down.exit_code, down.stdout) == (0, "nothing was running\n")
    assert not (tmp_path / "platform.json").exists()


def test_drain_from_the_command_line_without_a_running_edge(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cc.db'}"
    env = {"CALLCONTROL_DATABASE_URL": url}
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:
            columns = connection.execute(text("PRAGMA table_info(application_servers)"))
            if "drained" not in {row[1] for row in columns}:  # until migration 0009
                connection.execute(
                    text("ALTER TABLE application_servers ADD COLUMN drained BOOLEAN DEFAULT 0")
                )
            connection.execute(
                ApplicationServer.__table__.insert().values(name="as-1", address="127.0.0.11")
            )
    finally:
        engine.dispose()
    drained = runner.invoke(app, ["platform", "drain", "as-1", "--run-dir", str(tmp_path)], env=env)
    assert (drained.exit_code, drained.stdout) == (0, "as-1 drained; the edge is not running\n")
    back = runner.invoke(app, ["platform", "undrain", "as-1", "--run-dir", str(tmp_path)], env=env)
    assert (back.exit_code, back.stdout) == (0, "as-1 undrained; the edge is not running\n")


def test_a_platform_spec_refuses_relay_ranges_that_do_not_fit() -> None:
    with pytest.raises(PlatformError, match="relay_ports 4000: from 4 to 3500"):
        PlatformSpec("postgresql://db/cc", relay_ports=4000)


# ---- the ng protocol against a fake rtpengine ---------------------------------------------------


class FakeNg:
    """A UDP ng port answering each command as ``answers`` says (bytes after the cookie, or
    a callable of the cookie giving the whole datagrams to send back)."""

    def __init__(self, answers: dict[bytes, list[bytes]]) -> None:
        self.answers = answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.serve)

    def serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            cookie, _, body = data.partition(b" ")
            request = bencode.decode(body)
            assert isinstance(request, dict)
            command = request[b"command"]
            assert isinstance(command, bytes)
            for reply in self.answers.get(command, []):
                self.sock.sendto(reply.replace(b"COOKIE", cookie), peer)

    def __enter__(self) -> RelaySpec:
        self.thread.start()
        return RelaySpec("fake", "127.0.0.1", 30000, 30099, self.port, self.port + 1)

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def test_ng_answers_are_matched_by_cookie_and_refusals_say_why() -> None:
    answers = {
        b"ping": [b"stale d6:result4:ponge", b"COOKIE d6:result4:ponge"],
        b"offer": [b"COOKIE d6:result5:error12:error-reason13:Unknown codece"],
        b"list": [b"COOKIE d5:callsl2:c12:c2e6:result2:oke"],
        b"query": [b"COOKIE not bencode"],
        b"delete": [b"COOKIE le"],
    }
    with FakeNg(answers) as spec:
        assert rtpengine.ping(spec)
        with pytest.raises(PlatformError, match="fake: offer refused: Unknown codec"):
            rtpengine.offer(spec, "c1", "t1", "v=0")
        assert rtpengine.calls(spec) == ["c1", "c2"]
        with pytest.raises(PlatformError, match="fake: bad answer"):
            rtpengine.query(spec, "c1")
        with pytest.raises(PlatformError, match="fake: the answer is not a dictionary"):
            rtpengine.delete(spec, "c1", "t1")
        with pytest.raises(PlatformError, match=r"did not answer within 0\.3 s"):
            rtpengine.command(spec, {"command": "statistics"}, timeout=0.3)


def test_an_offer_answered_without_sdp_is_an_error() -> None:
    with (
        FakeNg({b"offer": [b"COOKIE d6:result2:oke"]}) as spec,
        pytest.raises(PlatformError, match="the offer's answer holds no SDP"),
    ):
        rtpengine.offer(spec, "c1", "t1", "v=0")


def test_nothing_on_the_ng_port_is_no_pong() -> None:
    port = free_port()
    spec = RelaySpec("gone", "127.0.0.1", 30000, 30099, port, port + 1)
    assert not rtpengine.ping(spec, timeout=0.5)
