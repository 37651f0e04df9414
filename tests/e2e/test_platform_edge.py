"""Issue 13's acceptance on the whole platform (``platform up`` in edge mode): real Kamailio
as the edge, one real rtpengine per media relay set, two real Asterisk sandboxes each with
its own ``callcontrol run``, one scratch PostgreSQL database. Terminals and the carrier are
our UDP SIP agents (tests/e2e/edge_sip.py). One platform serves the whole module.

Addresses (loopback): the edge 127.0.0.2, servers 127.0.0.11/12, rtpengines 127.0.0.21/22
(``platform up``'s own plan); the carrier 127.0.0.31; terminals 127.0.0.41-49 (a wrong
password from 127.0.0.48, so no other source is ever banned)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from callcontrol.platform.platform import PlatformSpec, Running, stop, up
from models.db import create_engine, execute_autocommit
from models.provisioning import load_text
from tests.conftest import SERVERS, ServerDatabase, unavailable
from tests.e2e.edge_sip import Agent, Message, agent, sdp
from tests.ports import free_port
from tests.test_kamailio import free_udp_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

EDGE, SERVERS_AT, RELAYS_AT = (
    "127.0.0.2",
    ("127.0.0.11", "127.0.0.12"),
    ("127.0.0.21", "127.0.0.22"),
)
CARRIER_HOST = "127.0.0.31"
WRONG_HOST = "127.0.0.48"
RR_DOMAIN = "rr.edge.example.net"
RR_DDI = "+34910000500"
PASSWORDS = {"rr-rita": "rita-secret-1", "hash-hugo": "hugo-secret-2"}

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
      - {name: telco, endpoint: carrier-telco, host: CARRIER_HOST, port: 5060}
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
    media_relay_set: set-b
    users:
      - {name: hugo}
    terminals:
      - {name: hash-hugo, password: hugo-secret-2, user: hugo}
    extensions:
      - {number: "200", user: hugo}
"""


@dataclass
class Platform:
    engine: AsyncEngine
    spec: PlatformSpec
    running: Running

    @property
    def edge(self) -> tuple[str, int]:
        return EDGE, self.spec.sip_port

    def log(self, part: str) -> str:
        """What a part (``service-as-1``, ``kamailio``, ``rtpengine-1``) wrote."""
        texts = []
        for path in sorted(self.spec.folder.rglob(f"{part}*.log")):
            texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)


def free_tcp_port(*hosts: str) -> int:
    for _ in range(50):
        port = free_port(socket.SOCK_STREAM, hosts[0])
        try:
            for host in hosts[1:]:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
                    other.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no TCP port free on every host")


def dataset() -> str:
    return (
        DATASET.replace("CARRIER_HOST", CARRIER_HOST)
        .replace("RR_DOMAIN", RR_DOMAIN)
        .replace("RR_DDI", RR_DDI)
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    for program, package in (("kamailio", "kamailio"), ("rtpengine", "rtpengine-daemon")):
        if shutil.which(program) is None and not os.access(f"/usr/sbin/{program}", os.X_OK):
            unavailable(program, f"apt-get install {package}")
    if os.geteuid() != 0:
        unavailable("root", "the Asterisk sandboxes need root")
    database = ServerDatabase("postgresql", SERVERS["postgresql"])
    try:
        await database.create()
    except Exception as exc:  # any failure to reach or prepare the server
        unavailable("PostgreSQL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    engine = create_engine(database.url)
    folder = tmp_path_factory.mktemp("platform") / "run"
    addresses = (EDGE, *SERVERS_AT, *RELAYS_AT)
    spec = PlatformSpec(
        database.url,
        servers=2,
        run_dir=folder,
        sip_port=free_udp_port(*addresses),
        http_port=free_tcp_port(*addresses),
        health_port=free_tcp_port(*addresses),
        ng_port=free_udp_port(*addresses),
        cli_port=free_tcp_port(*addresses),
        relay_ports=100,
        start_timeout=180.0,
    )
    running: Running | None = None
    try:
        await load_text(engine, dataset())
        running = await up(engine, spec, echo=lambda line: None)
        yield Platform(engine, spec, running)
    finally:
        await asyncio.to_thread(stop, spec.folder, 10.0, running)
        await engine.dispose()
        await execute_autocommit(database.server_url, f"DROP DATABASE IF EXISTS {database.name}")


async def register(
    terminal: Agent, platform: Platform, user: str, password: str, domain: str
) -> tuple[int, int]:
    """(challenge status, final status) of one REGISTER at the edge."""
    challenge, final = await terminal.authenticated(
        platform.edge,
        "REGISTER",
        f"sip:{domain}",
        user=user,
        domain=domain,
        password=password,
        to_uri=f"sip:{user}@{domain}",
        headers=("Expires: 300",),
        within=15,
    )
    return challenge.status, final.status


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
    async with agent(WRONG_HOST) as terminal:
        challenge, final = await register(
            terminal, platform, "rr-rita", "not-the-password", RR_DOMAIN
        )
        assert challenge == 401
        assert final in (401, 403)
        # An INVITE with a wrong password is refused at the edge too.
        first, second = await terminal.authenticated(
            platform.edge,
            "INVITE",
            f"sip:100@{RR_DOMAIN}",
            user="rr-rita",
            domain=RR_DOMAIN,
            password="not-the-password",
            to_uri=f"sip:100@{RR_DOMAIN}",
            body=sdp(WRONG_HOST, 40000),
            within=15,
        )
        assert first.status in (401, 407)
        assert second.status in (401, 403, 407)
    for server in ("as-1", "as-2"):
        assert "rr-rita" not in platform.log(f"service-{server}")
        assert WRONG_HOST not in platform.log(f"service-{server}")


async def test_rr_terminal_registered_once_gets_calls_from_either_server(
    platform: Platform,
) -> None:
    async with (
        agent("127.0.0.41", **{"INVITE": "486 Busy Here"}) as rita,
        agent(CARRIER_HOST) as carrier,
    ):
        assert await register(rita, platform, "rr-rita", PASSWORDS["rr-rita"], RR_DOMAIN) == (
            401,
            200,
        )
        answers = []
        for _ in range(4):
            with contextlib.suppress(TimeoutError):
                answers.append(
                    await carrier.request(
                        platform.edge,
                        "INVITE",
                        f"sip:{RR_DDI}@{EDGE}:{platform.spec.sip_port}",
                        from_uri=f"sip:+34600111222@{CARRIER_HOST}",
                        to_uri=f"sip:{RR_DDI}@{EDGE}",
                        body=sdp(CARRIER_HOST, 40010),
                        within=30,
                    )
                )
        invites = rita.requests("INVITE")
        assert invites, f"answers {[a.status for a in answers]}\n{platform.log('kamailio')[-3000:]}"
        seen = set().union(*(via_servers(invite) for invite in invites))
        assert seen == set(SERVERS_AT), [invite.all("via") for invite in invites]
        # The servers' legs come with no header of ours, no Route the edge preloaded.
        for invite in invites:
            assert not [line for line in invite.all("x-cc-relay-set")]
            assert not invite.all("route")
