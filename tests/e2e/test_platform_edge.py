"""Issue 13's acceptance on the whole platform (``platform up`` in edge mode): real Kamailio
as the edge, one real rtpengine per media relay set, two real Asterisk sandboxes each with
its own ``callcontrol run``, one scratch PostgreSQL database. Terminals and the carrier are
our UDP SIP agents (callcontrol/platform/agent.py). One platform serves the whole module.

Addresses (loopback): the edge 127.0.0.2, servers 127.0.0.11/12, rtpengines 127.0.0.21/22
(``platform up``'s own plan); the carrier 127.0.0.31; terminals 127.0.0.41-51 (a wrong
password from 127.0.0.48, so no other source is ever banned)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.platform.agent import Agent, Message, agent, sdp
from callcontrol.platform.demo import Counter
from callcontrol.platform.kamailio import dispatcher_list
from callcontrol.platform.platform import PlatformSpec, Running, drain, health_probe, stop, up
from callcontrol.platform.processes import Daemon, wait_gone
from models.db import create_engine, execute_autocommit
from models.provisioning import load_text
from tests.conftest import SERVERS, ServerDatabase, unavailable
from tests.e2e.platforms import EDGE, SERVERS_AT, platform_spec, require_platform
from tests.e2e.rtp import RtpCounter, rtp_counter
from tests.test_kamailio import free_udp_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CARRIER_HOST = "127.0.0.31"
SLOT_LEASE = 10.0
"""Seconds a dead server's calls still count for max calls (the services' slot lease)."""
PROBE_INTERVAL = 2
"""Seconds between the edge's OPTIONS probes of each server (``platform up``'s edge)."""
EDGE_TIMEOUT = 5
"""Seconds the edge waits for a server's answer to an INVITE before the next server."""
WRONG_HOST = "127.0.0.48"
RR_DOMAIN = "rr.edge.example.net"
RR_DDI = "+34910000500"
HASH_DOMAIN = "hash.edge.example.net"
CAPPED_DOMAIN, CAPPED_DDI = "capped.edge.example.net", "+34910000700"
NORTH_DOMAIN, SOUTH_DOMAIN = "north.edge.example.net", "south.edge.example.net"
PASSWORDS = {
    "rr-rita": "rita-secret-1",
    "hash-hugo": "hugo-secret-2",
    "north-nora": "nora-secret-3",
    "south-sam": "sam-secret-4",
    "capped-cora": "cora-secret-5",
}

DATASET = """
currencies:
  - {code: EUR, name: Euro, symbol: "€"}
application_servers:
  - {name: as-1, address: 192.0.2.11, stasis_app: callcontrol-as1}
  - {name: as-2, address: 192.0.2.12, stasis_app: callcontrol-as2}
media_relay_sets:
  - {name: set-a, description: relays of set a}
  - {name: set-b, description: relays of set b}
brands:
  - name: edge-brand
    default_language: es
    default_timezone: Europe/Madrid
    default_currency: EUR
    default_country: ES
    features: [friends]
    corporations: [acme]
    carriers:
      - {name: telco, endpoint: carrier-telco, host: CARRIER_HOST, port: CARRIER_PORT}
    outbound_routes:
      - {carrier: telco, prefix: "", priority: 0}
clients:
  - name: rr-client
    brand: edge-brand
    sip_domain: RR_DOMAIN
    distribute_method: rr
    media_relay_set: set-a
    users:
      - {name: rita}
    terminals:
      - {name: rr-rita, password: rita-secret-1, user: rita}
    extensions:
      - {number: "100", user: rita}
    ddis:
      - {e164: "RR_DDI", user: rita, carrier: telco}
  - name: hash-client
    brand: edge-brand
    sip_domain: hash.edge.example.net
    distribute_method: hash
    max_calls: 1
    media_relay_set: set-b
    users:
      - {name: hugo}
    terminals:
      - {name: hash-hugo, password: hugo-secret-2, user: hugo}
    extensions:
      - {number: "200", user: hugo}
    outgoing_ddi: "+34910000600"
    ddis:
      - {e164: "+34910000600", user: hugo, carrier: telco}
  - name: capped
    brand: edge-brand
    sip_domain: capped.edge.example.net
    distribute_method: rr
    max_calls: 1
    media_relay_set: set-a
    users:
      - {name: cora}
    terminals:
      - {name: capped-cora, password: cora-secret-5, user: cora}
    extensions:
      - {number: "500", user: cora}
    ddis:
      - {e164: "CAPPED_DDI", user: cora, carrier: telco}
  - name: north
    brand: edge-brand
    sip_domain: NORTH_DOMAIN
    corporation: acme
    features: [friends]
    distribute_method: static
    application_server: as-1
    media_relay_set: set-a
    users:
      - {name: nora}
    terminals:
      - {name: north-nora, password: nora-secret-3, user: nora}
    extensions:
      - {number: "301", user: nora}
  - name: south
    brand: edge-brand
    sip_domain: SOUTH_DOMAIN
    corporation: acme
    features: [friends]
    distribute_method: static
    application_server: as-2
    media_relay_set: set-b
    users:
      - {name: sam}
    terminals:
      - {name: south-sam, password: sam-secret-4, user: sam}
    extensions:
      - {number: "401", user: sam}
"""


@dataclass
class Platform:
    engine: AsyncEngine
    spec: PlatformSpec
    running: Running
    carrier_port: int
    """Where the carrier takes the platform's outbound legs (its row's port)."""

    @property
    def edge(self) -> tuple[str, int]:
        return EDGE, self.spec.sip_port

    def log(self, part: str) -> str:
        """What a part (``service-as-1``, ``kamailio``, ``rtpengine-1``) wrote."""
        texts = []
        for path in sorted(self.spec.folder.rglob(f"{part}*.log")):
            texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)


def dataset(carrier_port: int) -> str:
    return (
        DATASET.replace("CARRIER_HOST", CARRIER_HOST)
        .replace("CARRIER_PORT", str(carrier_port))
        .replace("RR_DOMAIN", RR_DOMAIN)
        .replace("NORTH_DOMAIN", NORTH_DOMAIN)
        .replace("SOUTH_DOMAIN", SOUTH_DOMAIN)
        .replace("RR_DDI", RR_DDI)
        .replace("CAPPED_DDI", CAPPED_DDI)
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    require_platform()
    database = ServerDatabase("postgresql", SERVERS["postgresql"])
    try:
        await database.create()
    except Exception as exc:  # any failure to reach or prepare the server
        unavailable("PostgreSQL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    engine = create_engine(database.url)
    folder = tmp_path_factory.mktemp("platform") / "run"
    spec = platform_spec(database.url, folder, slot_lease=SLOT_LEASE, slot_heartbeat=3.0)
    running: Running | None = None
    try:
        carrier_port = free_udp_port(CARRIER_HOST)
        await load_text(engine, dataset(carrier_port))
        running = await up(engine, spec, echo=lambda line: None)
        yield Platform(engine, spec, running, carrier_port)
    finally:
        await asyncio.to_thread(stop, spec.folder, 10.0, running)
        await engine.dispose()
        await execute_autocommit(database.server_url, f"DROP DATABASE IF EXISTS {database.name}")


async def register(
    terminal: Agent, platform: Platform, user: str, domain: str, password: str | None = None
) -> tuple[int, int]:
    """(challenge status, final status) of one REGISTER at the edge (by default with
    ``user``'s own password)."""
    password = PASSWORDS[user] if password is None else password
    challenge, final = await terminal.register(platform.edge, user, domain, password, within=15)
    return challenge.status, final.status


async def unregister(terminal: Agent, platform: Platform, user: str, domain: str) -> None:
    """Remove the terminal's contact (so a later test's calls do not fork to a closed socket)."""
    _, final = await terminal.register(
        platform.edge, user, domain, PASSWORDS[user], expires=0, within=15
    )
    assert final.status == 200, final.first


async def terminal_call(
    terminal: Agent,
    platform: Platform,
    user: str,
    domain: str,
    number: str,
    media_port: int,
    headers: tuple[str, ...] = (),
) -> Message | None:
    """One INVITE from ``user``'s terminal (its password, its address in the SDP) to
    ``number`` through the edge; its final answer (None when none came within 30 s)."""
    with contextlib.suppress(TimeoutError):
        _, final = await terminal.invite(
            platform.edge,
            user,
            domain,
            PASSWORDS[user],
            number,
            headers=headers,
            body=sdp(terminal.address[0], media_port),
            within=30,
        )
        return final
    return None


async def carrier_call(
    carrier: Agent,
    platform: Platform,
    ddi: str,
    media_port: int,
    within: float = 30.0,
    caller: str = "+34600555666",
) -> Message | None:
    """One INVITE from the carrier to ``ddi`` through the edge; its final answer (None when
    none came ``within`` seconds)."""
    with contextlib.suppress(TimeoutError):
        return await carrier.call_in(
            platform.edge, ddi, caller, media_port=media_port, within=within
        )
    return None


async def capped_live_call(
    cora: Agent, carrier: Agent, platform: Platform, media_port: int, caller: str
) -> tuple[Message, str]:
    """Cora (capped, max calls 1) registers and answers the carrier's call to her DDI:
    (the carrier's 200, already acknowledged; the name of the server that took it)."""
    assert await register(cora, platform, "capped-cora", CAPPED_DOMAIN) == (401, 200)
    live = await carrier_call(carrier, platform, CAPPED_DDI, media_port, caller=caller)
    assert live is not None
    assert live.status == 200, live.first
    await carrier.in_dialog(platform.edge, "ACK", live)
    (busy,) = via_servers(cora.requests("INVITE")[-1])
    return live, "as-1" if busy == SERVERS_AT[0] else "as-2"


async def wait_for(found: list[Message], count: int, within: float) -> None:
    """Until ``found`` (a live list) holds ``count`` messages, at most ``within`` seconds."""
    for _ in range(int(within * 10)):
        if len(found) >= count:
            return
        await asyncio.sleep(0.1)


def via_servers(message: Message) -> set[str]:
    """The application servers a request passed (their addresses in its Via headers)."""
    vias = " ".join(message.all("via"))
    return {address for address in SERVERS_AT if f"{address}:" in vias}


async def test_wrong_password_gets_401_at_the_edge_and_no_server_sees_it(
    platform: Platform,
) -> None:
    counter = Counter(
        {server["name"]: server["address"] for server in platform.running.layout.servers},
        platform.spec.health_port,
    )
    await counter.start()
    async with agent(WRONG_HOST) as terminal:
        challenge, final = await register(
            terminal, platform, "rr-rita", RR_DOMAIN, "not-the-password"
        )
        assert challenge == 401
        assert final in (401, 403)
        # An INVITE with a wrong password is refused at the edge too.
        first, second = await terminal.invite(
            platform.edge,
            "rr-rita",
            RR_DOMAIN,
            "not-the-password",
            "100",
            body=sdp(WRONG_HOST, 40000),
            within=15,
        )
        assert first.status in (401, 407)
        assert second.status in (401, 403, 407)
    for server in ("as-1", "as-2"):
        assert "rr-rita" not in platform.log(f"service-{server}")
        assert WRONG_HOST not in platform.log(f"service-{server}")
    # No server decided, counted or wrote a call for it.
    assert await counter.counted(within=3) is None
    async with platform.engine.connect() as connection:
        written = await connection.scalar(
            text("SELECT count(*) FROM billable_calls WHERE caller LIKE '%rita%'")
        )
    assert written == 0


async def test_rr_terminal_registered_once_gets_calls_from_either_server(
    platform: Platform,
) -> None:
    async with (
        agent("127.0.0.41", **{"INVITE": "486 Busy Here"}) as rita,
        agent(CARRIER_HOST) as carrier,
    ):
        assert await register(rita, platform, "rr-rita", RR_DOMAIN) == (401, 200)
        answers = []
        for _ in range(4):
            answer = await carrier_call(carrier, platform, RR_DDI, 40010, caller="+34600111222")
            if answer is not None:
                answers.append(answer)
        invites = rita.requests("INVITE")
        assert invites, f"answers {[a.status for a in answers]}\n{platform.log('kamailio')[-3000:]}"
        await unregister(rita, platform, "rr-rita", RR_DOMAIN)
        seen = set().union(*(via_servers(invite) for invite in invites))
        assert seen == set(SERVERS_AT), [invite.all("via") for invite in invites]
        # The servers' legs come with no header of ours, no Route the edge preloaded.
        for invite in invites:
            assert not [line for line in invite.all("x-cc-relay-set")]
            assert not invite.all("route")


async def cdr_of(platform: Platform, caller: str, within: float = 30.0) -> Row[Any] | None:
    """The CDR of the call from ``caller`` once its server wrote it (each service flushes
    its spool every few seconds), at most ``within`` seconds."""
    for _ in range(int(within * 2)):
        async with platform.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT direction, caller, ddi, server, answer_time FROM billable_calls"
                        " WHERE caller = :caller"
                    ),
                    {"caller": caller},
                )
            ).first()
        if row is not None:
            return row
        await asyncio.sleep(0.5)
    return None


async def test_carrier_call_reaches_the_terminal_identified_by_the_edge_header(
    platform: Platform,
) -> None:
    async with (
        agent("127.0.0.42", **{"INVITE": "200 OK"}) as rita,
        agent(CARRIER_HOST) as carrier,
    ):
        assert await register(rita, platform, "rr-rita", RR_DOMAIN) == (401, 200)
        answer = await carrier_call(carrier, platform, RR_DDI, 40020, caller="+34600333444")
        assert rita.requests("INVITE"), platform.log("kamailio")[-3000:]
        assert answer is not None
        assert answer.status == 200, answer.first
        await carrier.in_dialog(platform.edge, "ACK", answer)
        await asyncio.sleep(1)
        bye = await carrier.in_dialog(platform.edge, "BYE", answer, within=15)
        assert bye is not None
        assert bye.status == 200
        await unregister(rita, platform, "rr-rita", RR_DOMAIN)
    # The server took it as the carrier's call to the DDI: an inbound CDR, answered.
    row = await cdr_of(platform, "+34600333444")
    assert row is not None
    assert row.direction == "inbound"
    assert row.ddi == RR_DDI.lstrip("+")
    assert row.server in ("as-1", "as-2")
    assert row.answer_time is not None


async def test_forged_headers_from_a_terminal_are_stripped(platform: Platform) -> None:
    """Hugo (hash-client) names himself the carrier and Rita in our headers, dialling
    Rita's DDI: believed, the server would ring Rita as the carrier's inbound call; stripped,
    it is Hugo's own outbound call, which leaves through the edge to the carrier."""
    async with (
        agent("127.0.0.43", **{"INVITE": "486 Busy Here"}) as rita,
        agent("127.0.0.44", **{"INVITE": "486 Busy Here"}) as hugo,
        agent(CARRIER_HOST, platform.carrier_port, **{"INVITE": "486 Busy Here"}) as carrier,
    ):
        assert await register(rita, platform, "rr-rita", RR_DOMAIN) == (401, 200)
        forged = ("X-CC-Carrier: carrier-telco", "X-CC-Terminal: rr-rita")
        await terminal_call(hugo, platform, "hash-hugo", HASH_DOMAIN, RR_DDI, 40030, forged)
        await wait_for(carrier.received, 1, 10)
        invites = carrier.requests("INVITE")
        assert invites, "\n".join(
            platform.log(part)[-1500:] for part in ("service-as-1", "service-as-2", "kamailio")
        )
        assert not rita.requests("INVITE")
        await unregister(rita, platform, "rr-rita", RR_DOMAIN)
        # The leg out names Hugo's client's number, and carries nothing of ours.
        for invite in invites:
            assert RR_DDI.lstrip("+") in invite.first
            assert not [name for name, _ in invite.headers if name.startswith("x-cc-")]


def media_of(body: str) -> tuple[str, int]:
    """(address, port) of an SDP's audio."""
    address = re.search(r"^c=IN IP4 (\S+)", body, re.MULTILINE)
    port = re.search(r"^m=audio (\d+)", body, re.MULTILINE)
    assert address is not None, body
    assert port is not None, body
    return address.group(1), int(port.group(1))


def rtp_packet(sequence: int, ssrc: int) -> bytes:
    """One PCMU packet of 20 ms (silence)."""
    header = bytes([0x80, 0x00]) + sequence.to_bytes(2, "big")
    header += (sequence * 160).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
    return header + b"\xff" * 160


async def talk(sender: RtpCounter, to: tuple[str, int], ssrc: int, seconds: float) -> None:
    """Send ``seconds`` of RTP from ``sender``'s socket (symmetric RTP) to ``to``."""
    assert sender.transport is not None
    for sequence in range(int(seconds / 0.02)):
        sender.transport.sendto(rtp_packet(sequence, ssrc), to)
        await asyncio.sleep(0.02)


async def test_inter_vpbx_call_across_servers_and_relay_sets_carries_media_both_ways(
    platform: Platform,
) -> None:
    set_a, set_b = platform.spec.relay(1), platform.spec.relay(2)
    async with (
        rtp_counter("127.0.0.45") as nora_rtp,
        rtp_counter("127.0.0.46") as sam_rtp,
        agent("127.0.0.45", **{"INVITE": "486 Busy Here"}) as nora,
        agent("127.0.0.46", **{"INVITE": "200 OK"}) as sam,
    ):
        sam.media_port = sam_rtp.port
        assert await register(sam, platform, "south-sam", SOUTH_DOMAIN) == (401, 200)
        answer = await terminal_call(
            nora, platform, "north-nora", NORTH_DOMAIN, "401", nora_rtp.port
        )
        assert answer is not None
        assert answer.status == 200, answer.first
        await nora.in_dialog(platform.edge, "ACK", answer)
        invites = sam.requests("INVITE")
        assert invites
        # North's call is handled by its server (as-1), which reaches Sam through the edge.
        assert via_servers(invites[-1]) == {SERVERS_AT[0]}
        # Each leg is anchored by its own set's rtpengine: Nora's by set a, Sam's by set b.
        nora_sees = media_of(answer.body)
        sam_sees = media_of(invites[-1].body)
        assert nora_sees[0] == set_a.address
        assert set_a.port_min <= nora_sees[1] <= set_a.port_max
        assert sam_sees[0] == set_b.address
        assert set_b.port_min <= sam_sees[1] <= set_b.port_max
        await asyncio.gather(
            talk(nora_rtp, nora_sees, 0x1111, 3.0), talk(sam_rtp, sam_sees, 0x2222, 3.0)
        )
        await sam_rtp.until_packets(20, within=10)
        await nora_rtp.until_packets(20, within=10)
        # Both parties heard the other through their own relay.
        assert {source[0] for source in nora_rtp.stats.sources} == {set_a.address}
        assert {source[0] for source in sam_rtp.stats.sources} == {set_b.address}
        bye = await nora.in_dialog(platform.edge, "BYE", answer, within=15)
        assert bye is not None
        assert bye.status == 200
        await unregister(sam, platform, "south-sam", SOUTH_DOMAIN)


async def test_a_drained_server_takes_no_new_call_while_its_live_call_finishes(
    platform: Platform,
) -> None:
    names = dict(zip(SERVERS_AT, ("as-1", "as-2"), strict=True))
    folder, port = platform.spec.folder, platform.spec.sip_port
    async with (
        agent("127.0.0.47", **{"INVITE": "200 OK"}) as rita,
        agent(CARRIER_HOST) as carrier,
    ):
        assert await register(rita, platform, "rr-rita", RR_DOMAIN) == (401, 200)
        live = await carrier_call(carrier, platform, RR_DDI, 40040)
        assert live is not None
        assert live.status == 200, live.first
        await carrier.in_dialog(platform.edge, "ACK", live)
        (busy,) = via_servers(rita.requests("INVITE")[-1])
        (other,) = set(SERVERS_AT) - {busy}
        line = await drain(platform.engine, folder, names[busy], True, port)
        assert "drained" in line
        try:
            rita.answer["INVITE"] = "486 Busy Here"
            before = len(rita.requests("INVITE"))
            for _ in range(3):
                await carrier_call(carrier, platform, RR_DDI, 40050)
            new = rita.requests("INVITE")[before:]
            assert len(new) == 3
            assert all(via_servers(invite) == {other} for invite in new)
            # The live call on the drained server still finishes normally.
            bye = await carrier.in_dialog(platform.edge, "BYE", live, within=15)
            assert bye is not None
            assert bye.status == 200
        finally:
            line = await drain(platform.engine, folder, names[busy], False, port)
        assert "undrained" in line
        before = len(rita.requests("INVITE"))
        for _ in range(4):
            await carrier_call(carrier, platform, RR_DDI, 40060)
        seen = set().union(*(via_servers(i) for i in rita.requests("INVITE")[before:]))
        assert busy in seen
        await unregister(rita, platform, "rr-rita", RR_DOMAIN)


async def test_max_calls_count_the_calls_of_both_servers(platform: Platform) -> None:
    """Capped (rr, max calls 1): a live call on one server; the next calls, whichever
    server takes them, are refused while it lasts."""
    async with (
        agent("127.0.0.50", **{"INVITE": "200 OK"}) as cora,
        agent(CARRIER_HOST) as carrier,
    ):
        live, busy_name = await capped_live_call(cora, carrier, platform, 40080, "+34600700000")
        refused_on = set()
        for attempt in range(1, 4):
            caller = f"+3460070000{attempt}"
            answer = await carrier_call(carrier, platform, CAPPED_DDI, 40090, caller=caller)
            assert answer is not None
            assert answer.status >= 400, answer.first
            row = await cdr_of(platform, caller)
            assert row is not None
            assert row.answer_time is None
            refused_on.add(row.server)
        assert len(cora.requests("INVITE")) == 1
        # The other server refused too: it counted the call live on the first.
        assert refused_on - {busy_name}, refused_on
        bye = await carrier.in_dialog(platform.edge, "BYE", live, within=15)
        assert bye is not None
        assert bye.status == 200
        await unregister(cora, platform, "capped-cora", CAPPED_DOMAIN)


async def slots_of(platform: Platform, server: str) -> list[str]:
    """The call ids of the slots ``server`` holds in the shared database."""
    async with platform.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT call_id FROM active_call_slots WHERE server = :server"),
            {"server": server},
        )
        return [row.call_id for row in rows]


def kill_service(platform: Platform, name: str) -> Daemon:
    """SIGKILL the server's ``callcontrol run`` (no graceful stop: its slots stay in the
    database); the daemon that starts it again as ``up`` did (same command line,
    environment and folder, read from the running process)."""
    supervisor = platform.running.supervisor
    service = f"service-{name}"
    recorded = supervisor.recorded(service)
    assert recorded is not None
    assert supervisor.running(service)
    environ = Path(f"/proc/{recorded.pid}/environ").read_bytes().split(b"\0")
    environment = dict(entry.decode().split("=", 1) for entry in environ if b"=" in entry)
    folder = Path(os.readlink(f"/proc/{recorded.pid}/cwd"))
    os.killpg(recorded.pid, signal.SIGKILL)
    assert wait_gone(recorded.pid, None, 10.0)
    supervisor.stop(service, 10.0)  # dead already: reaped, its state file gone
    return Daemon(service, tuple(recorded.argv), environment, cwd=folder)


def restart_service(platform: Platform, daemon: Daemon) -> None:
    """Start ``daemon`` again unless it runs; returns once its /health answers."""
    assert daemon.environment is not None
    if platform.running.supervisor.running(daemon.name):
        return
    probe = health_probe(daemon.environment["CALLCONTROL_HEALTH_HOST"], platform.spec.health_port)
    platform.running.supervisor.start(daemon, probe, 60.0, 10.0)


async def test_a_restarted_servers_slots_are_freed_by_its_reconcile_not_its_lease(
    platform: Platform,
) -> None:
    """Capped (max calls 1): a call up on one server; that server's service is killed, the
    call hung up meanwhile, its slot left behind (its lease made to last an hour, so only
    the reconcile can free it). Once the service is back, the slot is gone and the client's
    next call is admitted."""
    async with (
        agent("127.0.0.51", **{"INVITE": "200 OK"}) as cora,
        agent(CARRIER_HOST) as carrier,
    ):
        await no_live_slots(platform)  # the previous test's call is released
        live, name = await capped_live_call(cora, carrier, platform, 40100, "+34600710000")
        held = await slots_of(platform, name)
        assert len(held) == 1
        async with platform.engine.begin() as connection:
            await connection.execute(
                text(
                    "UPDATE active_call_slots SET lease_until = now() + interval '1 hour'"
                    " WHERE server = :server"
                ),
                {"server": name},
            )
        cora.answer["INVITE"] = "486 Busy Here"
        daemon = await asyncio.to_thread(kill_service, platform, name)
        try:
            # The call ends while no service watches: its Asterisk answers the BYE.
            bye = await carrier.in_dialog(platform.edge, "BYE", live, within=15)
            assert bye is not None
            assert bye.status == 200
            assert await slots_of(platform, name) == held  # nobody freed it
            await asyncio.to_thread(restart_service, platform, daemon)
            for _ in range(100):  # reconcile runs as the service connects to ARI
                if not await slots_of(platform, name):
                    break
                await asyncio.sleep(0.1)
            assert await slots_of(platform, name) == []
            # Max calls 1 admits the next call: it rings Cora (who is busy).
            before = len(cora.requests("INVITE"))
            answer = await carrier_call(carrier, platform, CAPPED_DDI, 40110, caller="+34600710001")
            assert answer is not None
            assert answer.status == 486, answer.first
            assert len(cora.requests("INVITE")) == before + 1
        finally:
            await asyncio.to_thread(restart_service, platform, daemon)  # for the next test
            await unregister(cora, platform, "capped-cora", CAPPED_DOMAIN)


async def test_hash_calls_stay_on_one_server_and_fail_over_when_it_dies(
    platform: Platform,
) -> None:
    """Last in the module: it stops one server (its Asterisk and its service). Hash-client
    (max calls 1) has a live call there: the other server counts it until its lease ends,
    then takes Hugo's calls."""
    async with (
        agent("127.0.0.49", **{"INVITE": "486 Busy Here"}) as hugo,
        agent(CARRIER_HOST, platform.carrier_port, **{"INVITE": "486 Busy Here"}) as carrier,
    ):

        async def call(number: str) -> Message | None:
            return await terminal_call(hugo, platform, "hash-hugo", HASH_DOMAIN, number, 40070)

        for n in range(3):
            await call(f"3491122200{n}")
            await no_live_slots(platform)
        legs = carrier.requests("INVITE")
        assert len(legs) == 3
        (first,) = set().union(*(via_servers(leg) for leg in legs))
        (second,) = set(SERVERS_AT) - {first}
        name = "as-1" if first == SERVERS_AT[0] else "as-2"
        other = "as-2" if name == "as-1" else "as-1"
        # A live call on the first server, then that server dies with it.
        carrier.answer["INVITE"] = "200 OK"
        live = await call("34911222100")
        assert live is not None
        assert live.status == 200, live.first
        await hugo.in_dialog(platform.edge, "ACK", live)
        carrier.answer["INVITE"] = "486 Busy Here"
        supervisor = platform.running.supervisor
        assert await asyncio.to_thread(supervisor.stop, f"service-{name}", 10.0)
        assert await asyncio.to_thread(platform.running.sandboxes[f"platform-{name}"].stop, 10.0)
        died_at = time.monotonic()
        # Its live call's slot counts until the lease its last heartbeat gave it, a
        # heartbeat (3 s) or less before the service stopped: read when that is.
        remaining = await lease_left(platform, name)
        assert 0 < remaining <= SLOT_LEASE, remaining
        free_at = died_at + remaining
        landed_at = None
        reasons: list[str] = []
        handled: list[str] = []
        for n in range(40):
            number = f"349112223{n:02d}"
            before = len(carrier.requests("INVITE"))
            await call(number)
            if n == 0:
                # The first call's INVITE to the dead server timed out (fr_timer) and went
                # on to the other one, which marked the dead one out for every call after.
                answered_after = time.monotonic() - died_at
                await until_marked_inactive(platform, first, within=PROBE_INTERVAL)
            new = carrier.requests("INVITE")[before:]
            if new and via_servers(new[-1]) == {second}:
                landed_at = time.monotonic()
                handled.append(other)
                break
            refused = await cdr_by_callee(platform, number, within=8)
            if refused is not None:
                handled.append(str(refused.server))
            if refused is not None and refused.server == other:
                reasons.append(str(refused.outcome_reason))
            await asyncio.sleep(0.5)
        assert landed_at is not None, "no call failed over"
        # The first call after the death already went to the other server, and every one since.
        assert answered_after < EDGE_TIMEOUT + 5, answered_after
        assert set(handled) == {other}, handled
        # The other server counted the dead server's live call (max calls 1) …
        assert any("max_calls" in reason for reason in reasons), reasons
        # … until its lease ended; the edge stopped sending calls to the dead server at once.
        assert landed_at >= free_at - 1, (landed_at - died_at, remaining)
        assert landed_at < free_at + 30, (landed_at - died_at, remaining)
        before = len(carrier.requests("INVITE"))
        for n in range(2):
            await no_live_slots(platform)
            await call(f"3491122240{n}")
        new = carrier.requests("INVITE")[before:]
        assert len(new) == 2
        assert all(via_servers(leg) == {second} for leg in new)


async def lease_left(platform: Platform, server: str) -> float:
    """Seconds until the last of ``server``'s slots in the shared database expires (its
    leases are naive UTC, as the column stores them)."""
    async with platform.engine.connect() as connection:
        until = await connection.scalar(
            text("SELECT max(lease_until) FROM active_call_slots WHERE server = :server"),
            {"server": server},
        )
    assert until is not None, f"{server} holds no slot"
    return (until.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()


async def until_marked_inactive(platform: Platform, address: str, within: float) -> None:
    """Wait until the edge's dispatcher holds the server at ``address`` out (inactive, or
    trying), at most ``within`` seconds."""
    ctl = Path(platform.running.layout.edge["ctl_socket"])
    flags = ""
    for _ in range(int(within / 0.25) + 1):
        listed = await asyncio.to_thread(dispatcher_list, ctl)
        flags = next((d.flags for d in listed if f"{address}:" in d.uri), "")
        if flags[:1] in ("I", "T"):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"{address} still {flags or 'unlisted'} after {within} s")


async def cdr_by_callee(platform: Platform, callee: str, within: float = 8.0) -> Row[Any] | None:
    """The CDR of the call to ``callee``, once written (at most ``within`` seconds)."""
    for _ in range(int(within * 2)):
        async with platform.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT server, outcome_reason FROM billable_calls"
                        " WHERE callee IN (:bare, :plus)"
                    ),
                    {"bare": callee, "plus": f"+{callee}"},
                )
            ).first()
        if row is not None:
            return row
        await asyncio.sleep(0.5)
    return None


async def no_live_slots(platform: Platform, within: float = 10.0) -> None:
    """Until every call's slot was released (a call's slot goes just after its end)."""
    for _ in range(int(within * 10)):
        async with platform.engine.connect() as connection:
            if not await connection.scalar(text("SELECT count(*) FROM active_call_slots")):
                return
        await asyncio.sleep(0.1)
