"""The edge (``callcontrol asterisk kamailio --mode edge``) as a real Kamailio on loopback
over a real PostgreSQL: terminals register with digest authentication against their
client's SIP domain, a source that keeps failing is banned, calls from terminals and
carriers reach an application server (a stand-in UDP agent in the dispatcher view) with
the edge's own X-CC-* headers, and a server reaches a registered terminal through the
edge. No Asterisk is needed; one Kamailio serves the whole module.

Addresses: the edge on 127.0.0.1, the stand-in server on 127.0.0.2, a carrier on
127.0.0.3, terminals on 127.0.0.1 (a banned source on 127.0.0.9, so the ban touches no
other test)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.asterisk.kamailio import RELOAD_DRAIN, EdgeOptions, load_edge, render_edge
from callcontrol.platform.agent import Agent, Message, agent, sdp
from models.db import create_engine, execute_autocommit
from models.platform import ApplicationServer, MediaRelay, MediaRelaySet
from models.provisioning.passwords import sip_ha1
from models.routing import Carrier
from models.tenants import Brand, Client, Currency, Ddi, Terminal
from tests.conftest import SERVERS, ServerDatabase, unavailable
from tests.ports import free_port
from tests.test_kamailio import free_udp_port, kamailio_binary

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE_HOST, SERVER_HOST, CARRIER_HOST = "127.0.0.1", "127.0.0.2", "127.0.0.3"
RELAY_HOST = "127.0.0.4"
"""The rtpengine of set ``eu`` (north's); set ``dead`` (south's) names one that never runs."""
WRONG_HOST, BANNED_HOST = "127.0.0.8", "127.0.0.9"
"""Sources of failed logins, so that no other test's source is ever banned."""
DOMAIN = "north.edge.example.net"
OTHER_DOMAIN = "south.edge.example.net"
PASSWORDS = {
    "north-ana": "ana-secret-1",
    "north-bob": "bob-secret-2",
    "north-eve": "eve-secret-3",
    "north-dan": "dan-secret-5",
    "north-fay": "fay-secret-6",
}
"""North's terminals; each test registers its own (a contact outlives its test's socket)."""
DDI = "+34910000777"


@dataclass
class Platform:
    engine: AsyncEngine
    edge: tuple[str, int]
    server_port: int
    ctl_socket: Path
    log: Path
    relay_ports: range
    """The RTP ports of the live rtpengine."""
    relay_cli: int
    """Its command port (``list numsessions``)."""

    async def relay_sessions(self) -> int:
        """How many calls the live rtpengine holds now."""
        reader, writer = await asyncio.open_connection(RELAY_HOST, self.relay_cli)
        try:
            writer.write(b"list numsessions\n")
            await writer.drain()
            output = (await asyncio.wait_for(reader.read(), 10)).decode()
        finally:
            writer.close()
            await writer.wait_closed()
        line = next(x for x in output.splitlines() if x.startswith("Current sessions total:"))
        return int(line.rsplit(":", 1)[1])

    async def kamcmd(self, *command: str) -> str:
        process = await asyncio.create_subprocess_exec(
            shutil.which("kamcmd") or "/usr/sbin/kamcmd",
            "-s",
            f"unix:{self.ctl_socket}",
            *command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 20)
        text = output.decode()
        assert process.returncode == 0, text
        assert not text.startswith("error"), f"{command}: {text}"
        return text


async def _seed(engine: AsyncEngine, server_port: int, ng_port: int, dead_port: int) -> None:
    async with engine.begin() as connection:
        sets = {}
        for name, port in (("eu", ng_port), ("dead", dead_port)):
            sets[name] = (
                await connection.execute(
                    insert(MediaRelaySet)
                    .values(name=name, description="")
                    .returning(MediaRelaySet.id)
                )
            ).scalar_one()
            await connection.execute(
                insert(MediaRelay).values(
                    media_relay_set_id=sets[name], control_url=f"udp:{RELAY_HOST}:{port}"
                )
            )
        await connection.execute(insert(Currency).values(code="EUR", name="Euro", symbol="€"))
        brand = (
            await connection.execute(
                insert(Brand).values(name="edge-brand", default_currency="EUR").returning(Brand.id)
            )
        ).scalar_one()
        server = (
            await connection.execute(
                insert(ApplicationServer)
                .values(name="as-1", address=SERVER_HOST, sip_port=server_port)
                .returning(ApplicationServer.id)
            )
        ).scalar_one()
        clients = {}
        for name, domain, method, relays in (
            ("north", DOMAIN, "hash", "eu"),
            ("south", OTHER_DOMAIN, "static", "dead"),
        ):
            clients[name] = (
                await connection.execute(
                    insert(Client)
                    .values(
                        brand_id=brand,
                        name=name,
                        sip_domain=domain,
                        language="es",
                        timezone="Europe/Madrid",
                        currency="EUR",
                        country="ES",
                        distribute_method=method,
                        application_server_id=server,
                        media_relay_set_id=sets[relays],
                    )
                    .returning(Client.id)
                )
            ).scalar_one()
        for name, password in PASSWORDS.items():
            await connection.execute(
                insert(Terminal).values(
                    client_id=clients["north"], name=name, ha1=sip_ha1(name, DOMAIN, password)
                )
            )
        await connection.execute(
            insert(Terminal).values(
                client_id=clients["south"],
                name="south-sam",
                ha1=sip_ha1("south-sam", OTHER_DOMAIN, "sam-secret-4"),
            )
        )
        await connection.execute(insert(Ddi).values(client_id=clients["north"], e164=DDI))
        await connection.execute(
            insert(Carrier).values(
                brand_id=brand, name="Telco X", endpoint="telco-x", host=CARRIER_HOST, port=5060
            )
        )


async def stop(process: asyncio.subprocess.Process) -> None:
    """Stop a process we started (its own session), by its id."""
    if process.returncode is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def start_rtpengine(
    folder: Path, ng_port: int, cli_port: int, ports: range
) -> asyncio.subprocess.Process:
    """One rtpengine in user space on RELAY_HOST; returns once it says it started."""
    binary = shutil.which("rtpengine") or "/usr/bin/rtpengine"
    if not os.access(binary, os.X_OK):
        unavailable("rtpengine", "apt-get install --no-install-recommends rtpengine-daemon")
    log = folder / "rtpengine.log"
    log.touch()
    process = await asyncio.create_subprocess_shell(
        f"exec {binary} --config-file=none --table=-1 --foreground --log-stderr"
        f" --interface={RELAY_HOST} --listen-ng={RELAY_HOST}:{ng_port}"
        f" --listen-cli={RELAY_HOST}:{cli_port} --delete-delay=0"
        f" --port-min={ports.start} --port-max={ports.stop - 1} > {log} 2>&1",
        start_new_session=True,
    )
    try:
        for _ in range(400):
            if process.returncode is not None or "Startup complete" in log.read_text():
                break
            await asyncio.sleep(0.05)
        assert process.returncode is None, log.read_text()
        assert "Startup complete" in log.read_text(), log.read_text()
    except BaseException:
        await stop(process)
        raise
    return process


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    binary = kamailio_binary()
    database = ServerDatabase("postgresql", SERVERS["postgresql"])
    try:
        await database.create()
    except Exception as exc:  # any failure to reach or prepare the server
        unavailable("PostgreSQL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    engine = create_engine(database.url)
    folder = tmp_path_factory.mktemp("edge")
    process: asyncio.subprocess.Process | None = None
    relay: asyncio.subprocess.Process | None = None
    try:
        server_port = free_udp_port(SERVER_HOST, CARRIER_HOST)
        ng_port, dead_port = free_udp_port(RELAY_HOST), free_udp_port(RELAY_HOST)
        rtp = free_udp_port(RELAY_HOST) // 2 * 2
        relay_ports = range(rtp, rtp + 40)
        cli_port = free_port(socket.SOCK_STREAM, RELAY_HOST)
        relay = await start_rtpengine(folder, ng_port, cli_port, relay_ports)
        await _seed(engine, server_port, ng_port, dead_port)
        edge = (EDGE_HOST, free_udp_port(EDGE_HOST))
        ctl = folder / "kamailio.ctl"
        options = EdgeOptions(
            listen=f"{edge[0]}:{edge[1]}", ctl_socket=str(ctl), probe_interval=30, timeout_ms=3000
        )
        for name, content in render_edge(await load_edge(engine, options)).items():
            (folder / name).write_text(content)
        log = folder / "kamailio.log"
        process = await asyncio.create_subprocess_shell(
            f"exec {binary} -f {folder / 'kamailio.cfg'} -DD -E -m 64 -M 8 > {log} 2>&1",
            start_new_session=True,
            env={**os.environ, "TZ": "UTC"},
        )
        async with agent(EDGE_HOST) as probe:
            for _ in range(120):
                assert process.returncode is None, log.read_text()
                with contextlib.suppress(TimeoutError):
                    answer = await probe.request(
                        edge,
                        "OPTIONS",
                        f"sip:{edge[0]}:{edge[1]}",
                        from_uri="sip:probe@example.net",
                        to_uri=f"sip:{edge[0]}",
                        within=0.5,
                    )
                    if answer.status == 200:
                        break
            else:
                pytest.fail(f"the edge never answered:\n{log.read_text()}")
        yield Platform(engine, edge, server_port, ctl, log, relay_ports, cli_port)
    finally:
        for running in (process, relay):
            if running is not None:
                await stop(running)
        await engine.dispose()
        await execute_autocommit(database.server_url, f"DROP DATABASE IF EXISTS {database.name}")


@contextlib.asynccontextmanager
async def server(platform: Platform, **answer: str) -> AsyncIterator[Agent]:
    async with agent(SERVER_HOST, platform.server_port, **answer) as stand_in:
        yield stand_in


async def register(
    terminal: Agent, platform: Platform, user: str, password: str, domain: str = DOMAIN
) -> tuple[int, int, str]:
    """(challenge status, final status, the challenge's header) of one REGISTER."""
    challenge, final = await terminal.register(platform.edge, user, domain, password)
    return challenge.status, final.status, challenge.header("www-authenticate")


async def locations(platform: Platform, user: str) -> list[tuple[str, str]]:
    async with platform.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT domain, contact FROM location WHERE username = :user"), {"user": user}
        )
        return [(row.domain, row.contact) for row in rows]


async def test_a_terminal_registers_with_its_clients_domain_as_realm(platform: Platform) -> None:
    async with agent(EDGE_HOST) as terminal:
        challenge, final, header = await register(
            terminal, platform, "north-ana", PASSWORDS["north-ana"]
        )
        assert (challenge, final) == (401, 200)
        assert f'realm="{DOMAIN}"' in header
        host, port = terminal.address
        assert await locations(platform, "north-ana") == [(DOMAIN, f"sip:north-ana@{host}:{port}")]


async def test_a_wrong_password_is_refused_and_no_server_sees_anything(
    platform: Platform,
) -> None:
    async with server(platform) as stand_in, agent(WRONG_HOST) as terminal:
        _, final, _ = await register(terminal, platform, "north-bob", "not-bobs")
        assert final in (401, 403)
        assert await locations(platform, "north-bob") == []
        # A call with the wrong password is challenged again, never relayed.
        _, answer = await terminal.invite(
            platform.edge,
            "north-bob",
            DOMAIN,
            "not-bobs",
            "600123123",
        )
        assert answer.status in (401, 403, 407)
        # Another client's terminal cannot log in under this domain either.
        _, final, _ = await register(terminal, platform, "south-sam", "sam-secret-4")
        assert final in (401, 403)
        await asyncio.sleep(0.5)  # anything relayed would have arrived by now
        assert [m.method for m in stand_in.received if m.method != "OPTIONS"] == []


async def test_a_source_failing_five_times_is_banned_even_with_the_right_password(
    platform: Platform,
) -> None:
    async with agent(BANNED_HOST) as terminal:
        for _ in range(5):
            _, final, _ = await register(terminal, platform, "north-eve", "wrong")
            assert final == 401
        with pytest.raises(TimeoutError):  # dropped silently
            await register(terminal, platform, "north-eve", PASSWORDS["north-eve"])
        assert await locations(platform, "north-eve") == []
        # The operator lifts the ban; the right password works again.
        await platform.kamcmd("htable.delete", "banned", BANNED_HOST)
        _, final, _ = await register(terminal, platform, "north-eve", PASSWORDS["north-eve"])
        assert final == 200


async def test_a_terminals_call_reaches_the_server_named_by_the_edge_only(
    platform: Platform,
) -> None:
    async with server(platform) as stand_in, agent(EDGE_HOST) as terminal:
        _, answer = await terminal.invite(
            platform.edge,
            "north-ana",
            DOMAIN,
            PASSWORDS["north-ana"],
            "600123123",
            headers=("X-CC-Terminal: north-bob", "X-CC-Carrier: telco-x"),
        )
        assert answer.status == 486  # the stand-in's answer, relayed back
        (invite,) = stand_in.requests("INVITE")
        assert invite.all("x-cc-terminal") == ["north-ana"]
        assert invite.all("x-cc-carrier") == []
        assert invite.all("x-forwarded-for") == [EDGE_HOST]
        assert invite.first.startswith("INVITE sip:600123123@")


async def test_a_carriers_call_to_a_ddi_names_the_carrier(platform: Platform) -> None:
    async with server(platform) as stand_in, agent(CARRIER_HOST) as carrier:
        answer = await carrier.request(
            platform.edge,
            "INVITE",
            f"sip:{DDI}@{platform.edge[0]}",
            from_uri="sip:+34600000001@telco.example.net",
            to_uri=f"sip:{DDI}@{platform.edge[0]}",
            headers=("X-CC-Terminal: north-ana",),
        )
        assert answer.status == 486
        (invite,) = stand_in.requests("INVITE")
        assert invite.all("x-cc-carrier") == ["telco-x"]
        assert invite.all("x-cc-terminal") == []
        unknown = await carrier.request(
            platform.edge,
            "INVITE",
            f"sip:34910000000@{platform.edge[0]}",
            from_uri="sip:+34600000001@telco.example.net",
            to_uri=f"sip:34910000000@{platform.edge[0]}",
        )
        assert unknown.status == 404


async def test_a_server_reaches_a_registered_terminal_through_the_edge(
    platform: Platform,
) -> None:
    async with server(platform) as stand_in, agent(EDGE_HOST, INVITE="486 Busy Here") as phone:
        assert (await register(phone, platform, "north-bob", PASSWORDS["north-bob"]))[1] == 200
        answer = await stand_in.request(
            platform.edge,
            "INVITE",
            f"sip:north-bob@{DOMAIN}",
            from_uri="sip:+34600000001@as-1.example.net",
            to_uri=f"sip:north-bob@{DOMAIN}",
            headers=("X-CC-Relay-Set: 0", "X-CC-Terminal: leaks"),
        )
        assert answer.status == 486
        (invite,) = phone.requests("INVITE")
        host, port = phone.address
        assert invite.first == f"INVITE sip:north-bob@{host}:{port} SIP/2.0"
        assert [name for name, _ in invite.headers if name.startswith("x-cc-")] == []
        # A terminal of a client domain that is not registered, or that does not exist.
        for user, status in (("south-sam", 404), ("north-eve-2", 404)):
            missing = await stand_in.request(
                platform.edge,
                "INVITE",
                f"sip:{user}@{DOMAIN}",
                from_uri="sip:+34600000001@as-1.example.net",
                to_uri=f"sip:{user}@{DOMAIN}",
            )
            assert missing.status == status
        unregistered = await stand_in.request(
            platform.edge,
            "INVITE",
            f"sip:south-sam@{OTHER_DOMAIN}",
            from_uri="sip:+34600000001@as-1.example.net",
            to_uri=f"sip:south-sam@{OTHER_DOMAIN}",
        )
        assert unregistered.status == 480
        # Nothing is relayed back to the edge itself; a server's keepalive is answered.
        edge_uri = f"sip:{platform.edge[0]}:{platform.edge[1]}"
        for method, uri, status in (
            ("INVITE", f"sip:600123123@{platform.edge[0]}:{platform.edge[1]}", 404),
            ("OPTIONS", edge_uri, 200),
        ):
            answer = await stand_in.request(
                platform.edge,
                method,
                uri,
                from_uri="sip:as-1@as-1.example.net",
                to_uri=uri,
            )
            assert answer.status == status


async def test_a_drained_server_takes_no_new_call_but_still_reaches_terminals(
    platform: Platform,
) -> None:
    async with (
        server(platform) as stand_in,
        agent(EDGE_HOST) as terminal,
        agent(EDGE_HOST) as phone,
    ):
        assert (await register(phone, platform, "north-fay", PASSWORDS["north-fay"]))[1] == 200
        async with platform.engine.begin() as connection:
            await connection.execute(update(ApplicationServer).values(drained=True))
        try:
            for command in RELOAD_DRAIN:
                await platform.kamcmd(*command.split())
            states = await platform.kamcmd("dispatcher.list")
            assert "FLAGS: DX" in states, states
            # A static client of the drained server, and a hash client with no other server.
            for user, domain, password in (
                ("south-sam", OTHER_DOMAIN, "sam-secret-4"),
                ("north-ana", DOMAIN, PASSWORDS["north-ana"]),
            ):
                _, answer = await terminal.invite(
                    platform.edge,
                    user,
                    domain,
                    password,
                    "600123123",
                )
                assert answer.status == 503
            # Still trusted: its leg to a registered terminal passes.
            leg = await stand_in.request(
                platform.edge,
                "INVITE",
                f"sip:north-fay@{DOMAIN}",
                from_uri="sip:+34600000001@as-1.example.net",
                to_uri=f"sip:north-fay@{DOMAIN}",
            )
            assert leg.status == 486
            assert len(phone.requests("INVITE")) == 1
        finally:
            async with platform.engine.begin() as connection:
                await connection.execute(update(ApplicationServer).values(drained=False))
            await asyncio.sleep(1.1)  # the dispatcher takes one reload a second
            for command in RELOAD_DRAIN:
                await platform.kamcmd(*command.split())
        assert stand_in.requests("INVITE") == []
        assert "FLAGS: AP" in await platform.kamcmd("dispatcher.list")


def media_of(body: str) -> tuple[str, int]:
    """(connection address, audio port) of an SDP body."""
    address = next(line[9:] for line in body.splitlines() if line.startswith("c=IN IP4 "))
    port = next(int(line.split()[1]) for line in body.splitlines() if line.startswith("m=audio"))
    return address, port


async def test_the_media_of_a_call_is_anchored_on_the_rtpengine_of_the_callers_set(
    platform: Platform,
) -> None:
    async with server(platform) as stand_in, agent(EDGE_HOST) as terminal:
        _, answer = await terminal.invite(
            platform.edge,
            "north-ana",
            DOMAIN,
            PASSWORDS["north-ana"],
            "600123123",
            body=sdp("127.0.0.1", 30000),
        )
        assert answer.status == 486
        (invite,) = stand_in.requests("INVITE")
        address, port = media_of(invite.body)
        assert address == RELAY_HOST
        assert port in platform.relay_ports


async def server_leg_to_dan(
    platform: Platform, relay_set: str, media_port: int
) -> tuple[Message, list[Message]]:
    """A server's leg to north-dan (registered here) anchored on the set named
    ``relay_set``: the edge's answer, and the INVITEs north-dan got."""
    async with platform.engine.connect() as connection:
        found = select(MediaRelaySet.id).where(MediaRelaySet.name == relay_set)
        set_id = await connection.scalar(found)
    async with server(platform) as stand_in, agent(EDGE_HOST) as phone:
        assert (await register(phone, platform, "north-dan", PASSWORDS["north-dan"]))[1] == 200
        answer = await stand_in.request(
            platform.edge,
            "INVITE",
            f"sip:north-dan@{DOMAIN}",
            from_uri="sip:+34600000001@as-1.example.net",
            to_uri=f"sip:north-dan@{DOMAIN}",
            headers=(f"X-CC-Relay-Set: {set_id}",),
            body=sdp(SERVER_HOST, media_port),
        )
        return answer, phone.requests("INVITE")


async def test_a_leg_from_a_server_is_anchored_on_the_set_it_names(platform: Platform) -> None:
    answer, invites = await server_leg_to_dan(platform, "eu", 31000)
    assert answer.status == 486
    (invite,) = invites
    address, port = media_of(invite.body)
    assert address == RELAY_HOST
    assert port in platform.relay_ports


async def test_a_set_without_a_live_rtpengine_refuses_the_call_with_503(
    platform: Platform,
) -> None:
    async with server(platform) as stand_in, agent(EDGE_HOST) as terminal:
        _, answer = await terminal.invite(
            platform.edge,
            "south-sam",
            OTHER_DOMAIN,
            "sam-secret-4",
            "600123123",
            body=sdp("127.0.0.1", 30002),
        )
        assert answer.status == 503
        assert stand_in.requests("INVITE") == []


async def test_a_servers_leg_in_a_set_without_a_live_rtpengine_gets_488(
    platform: Platform,
) -> None:
    # The server tells it from a callee's failure (Asterisk reads 488 as cause 58) and plays
    # its caller service_unavailable; the terminal is never rung without media.
    answer, invites = await server_leg_to_dan(platform, "dead", 31002)
    assert answer.first == "SIP/2.0 488 Media Relay Unavailable", answer.first
    assert invites == []


async def test_an_answered_call_is_relayed_in_its_set_until_its_bye(platform: Platform) -> None:
    async with (
        server(platform, INVITE="200 OK") as stand_in,
        agent(EDGE_HOST) as terminal,
    ):
        before = await platform.relay_sessions()
        assert before == 0  # the calls refused in the tests before left nothing behind
        _, answer = await terminal.invite(
            platform.edge,
            "north-ana",
            DOMAIN,
            PASSWORDS["north-ana"],
            "600123124",
            body=sdp("127.0.0.1", 30004),
        )
        assert answer.status == 200
        # Both offers and the answer go through the set's rtpengine.
        address, port = media_of(answer.body)
        assert address == RELAY_HOST
        assert port in platform.relay_ports
        assert await platform.relay_sessions() == before + 1
        async with platform.engine.connect() as connection:
            eu = await connection.scalar(select(MediaRelaySet.id).where(MediaRelaySet.name == "eu"))
        assert f";cc_set={eu}" in answer.header("record-route")
        await terminal.in_dialog(platform.edge, "ACK", answer)
        bye = await terminal.in_dialog(platform.edge, "BYE", answer)
        assert bye is not None
        assert bye.status == 200
        assert [m.method for m in stand_in.received if m.method in ("ACK", "BYE")] == [
            "ACK",
            "BYE",
        ]
        # The BYE found the call in the set the Record-Route named, and ended it there.
        for _ in range(50):
            if await platform.relay_sessions() == before:
                break
            await asyncio.sleep(0.1)
        assert await platform.relay_sessions() == before
