"""The Kamailio dispatcher rendered from the demo platform: its files as text, then a real
Kamailio relaying SIP from the tests' terminals and carriers to two stand-in application
servers on loopback, which answer busy and note who reached them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol.asterisk.kamailio import (
    Dispatch,
    KamailioOptions,
    RenderError,
    load_dispatch,
    parse_listen,
    render_kamailio,
)
from callcontrol.cli import app
from models.db import create_engine
from models.migrate import upgrade_async
from models.platform import ApplicationServer
from tests.conftest import unavailable
from tests.ports import free_port, free_port_on
from tests.test_service import demo_engine

__all__ = ["demo_engine"]

SERVERS = {"as-1": "127.0.0.2", "as-2": "127.0.0.3"}


@pytest.fixture
async def platform(demo_engine: AsyncEngine) -> AsyncEngine:
    """The demo platform with its two application servers on loopback addresses."""
    async with demo_engine.begin() as connection:
        for name, address in SERVERS.items():
            await connection.execute(
                update(ApplicationServer)
                .where(ApplicationServer.name == name)
                .values(address=address)
            )
    return demo_engine


# ---- the files ------------------------------------------------------------------------------


async def test_the_files_name_every_server_and_route_every_terminal_and_ddi(
    platform: AsyncEngine, tmp_path: Path
) -> None:
    options = KamailioOptions(listen="127.0.0.1:5099", server_port=5070)
    dispatch = await load_dispatch(platform, options, tmp_path)
    files = render_kamailio(dispatch)
    servers = [line for line in files["dispatcher.list"].splitlines() if line[:1] != "#"]
    assert servers == ["1 sip:127.0.0.2:5070 0 0 name=as-1", "1 sip:127.0.0.3:5070 0 0 name=as-2"]
    routes = {
        name: (route.client, route.method, route.server)
        for name, route in dispatch.terminals.items()
    }
    assert routes["acme-north-ana"] == ("acme-north", "hash", None)
    assert routes["thames-george"] == ("thames-consulting", "rr", None)
    assert routes["hudson-jorge"] == ("hudson-dental", "static", "sip:127.0.0.3:5070")
    # A carrier's call is known by its DDI, written with and without "+".
    assert dispatch.ddis["+12025550100"] == dispatch.ddis["12025550100"]
    assert dispatch.ddis["12025550100"].client == "hudson-dental"
    config = files["kamailio.cfg"]
    assert "listen=udp:127.0.0.1:5099" in config
    assert f'"list_file", "{tmp_path / "dispatcher.list"}"' in config
    assert 'case "hudson-jorge":' in config
    assert 'case "+34910000100":' in config
    assert 'remove_hf("X-Forwarded-For");' in config


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (KamailioOptions(listen="localhost:5060"), "listen address 'localhost:5060'"),
        (KamailioOptions(listen="127.0.0.1"), "listen address '127.0.0.1'"),
        (KamailioOptions(listen="127.0.0.1:0"), "listen address '127.0.0.1:0'"),
        (KamailioOptions(source_header='X-Real"IP'), "source header 'X-Real\"IP'"),
    ],
)
async def test_bad_options_are_refused_before_anything_is_written(
    platform: AsyncEngine, tmp_path: Path, options: KamailioOptions, error: str
) -> None:
    with pytest.raises(RenderError, match=error.replace("(", r"\(")):
        await load_dispatch(platform, options, tmp_path)


async def test_a_server_address_that_is_not_an_ip_is_refused(
    platform: AsyncEngine, tmp_path: Path
) -> None:
    async with platform.begin() as connection:
        await connection.execute(
            update(ApplicationServer)
            .where(ApplicationServer.name == "as-2")
            .values(address="as2.example.net")
        )
    with pytest.raises(RenderError, match=r"'as2\.example\.net' is not an IP address"):
        await load_dispatch(platform, KamailioOptions(), tmp_path)


async def test_a_platform_without_application_servers_has_nothing_to_dispatch(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        with pytest.raises(RenderError, match="no application servers in the database"):
            await load_dispatch(engine, KamailioOptions(), tmp_path)
    finally:
        await engine.dispose()


def test_listen_takes_ipv6_in_brackets() -> None:
    assert parse_listen("[::1]:5060") == ("::1", 5060)


def test_the_command_writes_both_files_or_says_why_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    runner = CliRunner()
    env = {"CALLCONTROL_DATABASE_URL": url}
    assert runner.invoke(app, ["db", "upgrade"], env=env).exit_code == 0
    demo = Path(__file__).resolve().parents[1] / "models" / "provisioning" / "demo.yaml"
    assert runner.invoke(app, ["provision", str(demo)], env=env).exit_code == 0
    out = tmp_path / "kamailio"
    result = runner.invoke(app, ["asterisk", "kamailio", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"wrote 2 application servers, 11 terminals and 8 DDIs into {out}\n")
    assert sorted(path.name for path in out.iterdir()) == ["dispatcher.list", "kamailio.cfg"]
    bad = runner.invoke(
        app, ["asterisk", "kamailio", str(tmp_path / "bad"), "--listen", "nowhere"], env=env
    )
    assert (bad.exit_code, bad.stderr) == (
        1,
        "error: listen address 'nowhere' is not ADDRESS:PORT\n",
    )
    assert not (tmp_path / "bad").exists()


# ---- a real Kamailio ------------------------------------------------------------------------


def kamailio_binary() -> str:
    found = shutil.which("kamailio") or next(
        (path for path in ("/usr/sbin/kamailio",) if os.access(path, os.X_OK)), None
    )
    if found is None:
        unavailable("Kamailio", "apt-get install kamailio")
    assert found is not None
    return found


async def test_real_kamailio_accepts_the_rendered_configuration(
    platform: AsyncEngine, tmp_path: Path
) -> None:
    binary = kamailio_binary()
    dispatch = await load_dispatch(platform, KamailioOptions(listen="127.0.0.1:5099"), tmp_path)
    for name, text in render_kamailio(dispatch).items():
        (tmp_path / name).write_text(text)
    check = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        "-f",
        str(tmp_path / "kamailio.cfg"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(check.communicate(), 30)
    assert check.returncode == 0, output.decode()
    assert b"config file ok" in output


def free_udp_port(*hosts: str) -> int:
    """A UDP port free on every one of ``hosts`` (and given out once, see tests.ports)."""
    return free_port_on(socket.SOCK_DGRAM, *hosts)


def parse(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """A SIP message's first line and its headers, in order."""
    head = data.decode(errors="replace").split("\r\n\r\n", 1)[0].split("\r\n")
    headers = []
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return head[0], headers


def header(headers: list[tuple[str, str]], name: str) -> str:
    return next((value for key, value in headers if key == name), "")


def user_of(value: str) -> str:
    """The user of a From/To header value or a URI."""
    return value.split("sip:", 1)[1].split("@", 1)[0]


@dataclass
class StandIn(asyncio.DatagramProtocol):
    """An application server's SIP port: OPTIONS gets 200, INVITE gets 486 and is noted."""

    name: str
    invites: list[tuple[str, str, str]] = field(default_factory=list)
    """(From user, Request-URI user, the proxy's source header) of every INVITE."""
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first, headers = parse(data)
        method = first.split(" ", 1)[0]
        if method == "INVITE":
            forwarded = [value for key, value in headers if key == "x-forwarded-for"]
            self.invites.append(
                (user_of(header(headers, "from")), user_of(first), ",".join(forwarded))
            )
            self.reply(headers, addr, "486 Busy Here")
        elif method == "OPTIONS":
            self.reply(headers, addr, "200 OK")

    def reply(self, headers: list[tuple[str, str]], addr: tuple[str, int], status: str) -> None:
        lines = [f"SIP/2.0 {status}"]
        lines += [f"Via: {value}" for key, value in headers if key == "via"]
        lines += [f"From: {header(headers, 'from')}"]
        lines += [f"To: {header(headers, 'to')};tag={self.name}"]
        lines += [f"Call-ID: {header(headers, 'call-id')}", f"CSeq: {header(headers, 'cseq')}"]
        lines += ["Content-Length: 0", "", ""]
        assert self.transport is not None
        self.transport.sendto("\r\n".join(lines).encode(), addr)


class Caller(asyncio.DatagramProtocol):
    """A terminal or carrier on 127.0.0.1 sending INVITEs through the proxy."""

    def __init__(self) -> None:
        self.finals: dict[str, asyncio.Future[int]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        first, headers = parse(data)
        status = int(first.split(" ")[1]) if first.startswith("SIP/2.0 ") else 0
        waiter = self.finals.get(header(headers, "call-id"))
        if status >= 200 and waiter is not None and not waiter.done():
            waiter.set_result(status)

    async def invite(
        self, proxy: tuple[str, int], user: str, to: str, *extra: str, within: float = 10.0
    ) -> int:
        """Send an INVITE from ``user`` to ``to``; its final status."""
        assert self.transport is not None
        port = self.transport.get_extra_info("sockname")[1]
        call_id = secrets.token_hex(8)
        lines = [
            f"INVITE sip:{to}@{proxy[0]}:{proxy[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{user}@example.net>;tag={secrets.token_hex(4)}",
            f"To: <sip:{to}@example.net>",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:{user}@127.0.0.1:{port}>",
            *extra,
            "Content-Length: 0",
            "",
            "",
        ]
        final = self.finals[call_id] = asyncio.get_running_loop().create_future()
        self.transport.sendto("\r\n".join(lines).encode(), proxy)
        try:
            return await asyncio.wait_for(final, within)
        finally:
            del self.finals[call_id]


@dataclass
class Proxied:
    proxy: tuple[str, int]
    servers: dict[str, StandIn]
    caller: Caller
    stand_ins: dict[str, asyncio.DatagramTransport]

    def landed(self) -> dict[str, list[str]]:
        """Who reached each server so far (From users), by server."""
        return {name: [invite[0] for invite in s.invites] for name, s in self.servers.items()}


@contextlib.asynccontextmanager
async def kamailio_running(dispatch: Dispatch, folder: Path) -> AsyncIterator[tuple[str, int]]:
    """A real Kamailio on ``dispatch``'s files, written into ``folder``; yields its address
    once it answers (a request of nobody gets its 404), and stops it after."""
    binary = kamailio_binary()
    for name, text in render_kamailio(dispatch).items():
        (folder / name).write_text(text)
    log = folder / "kamailio.log"
    process = await asyncio.create_subprocess_shell(
        f"exec {binary} -f {folder / 'kamailio.cfg'} -DD -E -m 32 -M 8 > {log} 2>&1",
        start_new_session=True,
    )
    loop = asyncio.get_running_loop()
    transport, caller = await loop.create_datagram_endpoint(
        Caller, local_addr=("127.0.0.1", free_port())
    )
    proxy = (dispatch.listen_host, dispatch.listen_port)
    try:
        for _ in range(100):
            if process.returncode is not None:
                break
            with contextlib.suppress(TimeoutError):
                if await caller.invite(proxy, "nobody", "nowhere", within=0.5) == 404:
                    break
        assert process.returncode is None, log.read_text()
        transport.close()
        yield proxy
    finally:
        transport.close()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()


@pytest.fixture
async def proxied(platform: AsyncEngine, tmp_path: Path) -> AsyncIterator[Proxied]:
    loop = asyncio.get_running_loop()
    server_port = free_udp_port(*SERVERS.values())
    servers: dict[str, StandIn] = {}
    transports: dict[str, asyncio.DatagramTransport] = {}
    for name, address in SERVERS.items():
        transport, protocol = await loop.create_datagram_endpoint(
            lambda name=name: StandIn(name), local_addr=(address, server_port)
        )
        servers[name], transports[name] = protocol, transport
    options = KamailioOptions(
        listen=f"127.0.0.1:{free_udp_port('127.0.0.1')}",
        server_port=server_port,
        probe_interval=1,
        timeout_ms=2000,  # ample for a stand-in on a loaded machine; the failover waits it
    )
    dispatch = await load_dispatch(platform, options, tmp_path)
    transport, caller = await loop.create_datagram_endpoint(
        Caller, local_addr=("127.0.0.1", free_port())
    )
    try:
        async with kamailio_running(dispatch, tmp_path) as proxy:
            yield Proxied(proxy, servers, caller, transports)
    finally:
        transport.close()
        for stand_in in transports.values():
            stand_in.close()


async def test_each_client_reaches_the_servers_its_distribution_says(proxied: Proxied) -> None:
    call = proxied.caller.invite
    for _ in range(4):
        assert await call(proxied.proxy, "acme-north-ana", "600123123") == 486  # hash
        assert await call(proxied.proxy, "thames-george", "02079460123") == 486  # rr
        assert await call(proxied.proxy, "hudson-jorge", "2025550123") == 486  # static as-2
    landed = proxied.landed()
    hashed = {name for name, users in landed.items() if "acme-north-ana" in users}
    assert len(hashed) == 1  # every call of a hash client on one server
    assert landed["as-1"].count("thames-george") == landed["as-2"].count("thames-george") == 2
    assert landed["as-2"].count("hudson-jorge") == 4
    assert "hudson-jorge" not in landed["as-1"]
    # A carrier's call for a DDI of the static client, with or without "+", reaches as-2.
    assert await call(proxied.proxy, "telco-us", "+12025550100") == 486
    assert await call(proxied.proxy, "telco-us", "12025550100") == 486
    assert [invite[1] for invite in proxied.servers["as-2"].invites[-2:]] == [
        "+12025550100",
        "12025550100",
    ]
    # Nobody's call is refused by the proxy itself.
    assert await call(proxied.proxy, "mallory", "34999999999") == 404
    assert sum(len(users) for users in proxied.landed().values()) == 14


async def test_the_servers_learn_the_callers_address_from_the_proxy_alone(
    proxied: Proxied,
) -> None:
    forged = "X-Forwarded-For: 203.0.113.9"
    assert await proxied.caller.invite(proxied.proxy, "hudson-jorge", "2025550123", forged) == 486
    [(user, _, forwarded)] = proxied.servers["as-2"].invites
    assert (user, forwarded) == ("hudson-jorge", "127.0.0.1")


async def test_a_hash_client_moves_to_a_live_server_when_its_own_stops_answering(
    proxied: Proxied,
) -> None:
    call = proxied.caller.invite
    assert await call(proxied.proxy, "acme-north-ana", "600123123") == 486
    [home] = [name for name, users in proxied.landed().items() if users]
    [other] = [name for name in SERVERS if name != home]
    proxied.stand_ins[home].close()
    # The call that finds its server silent goes on to the other after the 2 s timeout;
    # the calls after it go there straight away.
    for _ in range(3):
        assert await call(proxied.proxy, "acme-north-ana", "600123123") == 486
    assert proxied.landed()[other] == ["acme-north-ana"] * 3
