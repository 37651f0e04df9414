"""Edge mode on the Asterisk side (issue 13): the settings, the rendered ``edge`` endpoint
and ``[from-edge]``, the X-CC-* headers believed only from a trusted proxy, and every leg
dialled through the edge with its relay set, on the ARI front and the FastAGI front (the
simulated Asterisk and a stand-in for Asterisk's AGI client; the demo platform in SQLite).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from callcontrol import handback
from callcontrol.asterisk.render import Paths, RenderError, RenderOptions, load_context, render
from callcontrol.cli import app
from callcontrol.config import checked_mode, load_config
from callcontrol.edge import EdgeError, EdgeLeg, edge_leg, sip_host
from callcontrol.fastagi import Q850
from callcontrol.simulator import Simulator
from callcontrol.simulator.client import ControlClient
from callcontrol.source import Arrival, arrival, edge_host, edge_value
from dialplan.call import CallRequest
from dialplan.decisions import Dial, Reject
from dialplan.errors import ConfigError
from dialplan.pipeline import Pipeline
from dialplan.reasons import Reason
from models.directory import SqlDirectory
from models.platform import MediaRelaySet
from models.provisioning import DEMO_DATASET
from tests.test_fastagi import serving, told
from tests.test_service import CONFIG, Running, start_link, until

pytest_plugins = ["tests.test_service"]

EDGE_IP = "127.0.0.2"
EDGE = replace(CONFIG, mode="edge", edge_address=f"{EDGE_IP}:5060", trusted_proxies=EDGE_IP)
ACME_DOMAIN = "acme-north.iberia-voice.example.es"


def edge_args(
    terminal: str = "", carrier: str = "", peer: str = f"{EDGE_IP}:5060", *forwarded: str
) -> list[str]:
    """The arguments [from-edge] hands the app (see callcontrol.source)."""
    return ["edge", peer, edge_value(terminal), edge_value(carrier), *forwarded]


# ---- settings


def test_edge_mode_needs_the_edge_address_inside_trusted_proxies() -> None:
    env = {"CALLCONTROL_MODE": "edge"}
    with pytest.raises(ConfigError, match="needs edge_address"):
        load_config(environ=env)
    with pytest.raises(ConfigError, match=r"127\.0\.0\.2 is not in trusted_proxies"):
        load_config(environ=env | {"CALLCONTROL_EDGE_ADDRESS": "127.0.0.2:5060"})
    with pytest.raises(ConfigError, match="is not IP:PORT"):
        load_config(environ=env | {"CALLCONTROL_EDGE_ADDRESS": "edge.example:5060"})
    with pytest.raises(ConfigError, match="mode must be direct or edge"):
        load_config(environ={"CALLCONTROL_MODE": "proxy"})
    config = load_config(
        environ=env
        | {
            "CALLCONTROL_EDGE_ADDRESS": "127.0.0.2:5060",
            "CALLCONTROL_TRUSTED_PROXIES": "127.0.0.0/24",
        }
    )
    assert (config.mode, config.edge_address) == ("edge", "127.0.0.2:5060")
    assert load_config(environ={}).mode == "direct"  # the default: nothing changes
    assert checked_mode(EDGE) is EDGE


def test_an_edge_address_is_an_ip_and_a_port() -> None:
    assert str(edge_host("127.0.0.2:5060")) == "127.0.0.2"
    assert str(edge_host("[2001:db8::2]:5060")) == "2001:db8::2"
    for bad in ("127.0.0.2", "2001:db8::2:5060", "127.0.0.2:0", "127.0.0.2:99999", ":5060"):
        assert edge_host(bad) is None, bad


def test_a_bad_mode_stops_the_command_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["asterisk", "render", str(tmp_path / "conf")],
        env={"CALLCONTROL_MODE": "edge", "CALLCONTROL_DATABASE_URL": "sqlite:///x.db"},
    )
    assert result.exit_code != 0
    assert "mode edge needs edge_address" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---- what the edge's headers are believed to say


def test_the_edge_names_the_terminal_only_from_a_trusted_proxy() -> None:
    trusted = arrival(edge_args("acme-north-ana"), "edge", EDGE_IP)
    assert trusted == Arrival("terminal", "acme-north-ana", EDGE_IP)
    carrier = arrival(edge_args(carrier="carrier-uk"), "edge", EDGE_IP)
    assert (carrier.origin, carrier.endpoint, carrier.unidentified) == (
        "carrier",
        "carrier-uk",
        None,
    )
    forged = arrival(edge_args("acme-north-ana", peer="198.51.100.9:5060"), "edge", EDGE_IP)
    assert (forged.origin, forged.endpoint, forged.source_ip) == (None, "edge", "198.51.100.9")
    assert forged.unidentified == (
        "edge call from 198.51.100.9, not a trusted proxy: its X-CC-Terminal and"
        " X-CC-Carrier headers are not believed"
    )


def test_the_source_of_an_edge_call_is_its_forwarded_for() -> None:
    # The edge's X-Forwarded-For, spread over the arguments after the two X-CC values.
    came = arrival(
        edge_args("acme-north-ana", "", f"{EDGE_IP}:5060", "203.0.113.7"), "edge", EDGE_IP
    )
    assert came.source_ip == "203.0.113.7"
    assert arrival(edge_args("acme-north-ana"), "edge", EDGE_IP).source_ip == EDGE_IP


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (edge_args(), "names no caller"),
        (edge_args("acme-north-ana", "carrier-uk"), "names both"),
        (["edge", f"{EDGE_IP}:5060", "not base64!", ""], "is not what [from-edge] passes"),
        (["edge", f"{EDGE_IP}:5060", "YWxpY2U=", ""], "is not what [from-edge] passes"),  # no ":"
        (["edge"], "not a trusted proxy"),
    ],
)
def test_an_edge_call_that_names_nobody_is_unidentified(args: list[str], why: str) -> None:
    came = arrival(args, "edge", EDGE_IP)
    assert came.origin is None
    assert why in (came.unidentified or "")


def test_a_direct_call_is_read_as_before() -> None:
    came = arrival(["terminal", "192.0.2.7:5060"], "acme-north-ana", EDGE_IP)
    assert came == Arrival("terminal", "acme-north-ana", "192.0.2.7")
    # X-CC-* arguments mean nothing outside [from-edge]: no origin "edge", no belief.
    assert arrival([], "x", "").origin is None


async def test_an_untrusted_edge_call_is_no_client_with_its_reason(
    demo_engine: AsyncEngine,
) -> None:
    pipeline = Pipeline(SqlDirectory(demo_engine))
    for args, expected in (
        (edge_args("acme-north-ana"), "dial"),
        (edge_args("acme-north-ana", peer="127.0.0.9:5060"), "reject"),
    ):
        came = arrival(args, "edge", EDGE_IP)
        request = CallRequest(
            call_id="t",
            endpoint=came.endpoint,
            dialled="102",
            at=datetime.now(UTC),
            source_ip=came.source_ip,
            origin=came.origin,
            unidentified=came.unidentified,
        )
        result = await pipeline.run(request)
        assert result.decision.kind == expected
    assert isinstance(result.decision, Reject)
    assert result.decision.reason is Reason.NO_CLIENT
    assert "127.0.0.9, not a trusted proxy" in result.trace[0].summary


# ---- legs through the edge


async def relay_set(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as connection:
        found = await connection.scalar(select(MediaRelaySet.id).where(MediaRelaySet.name == name))
    assert found is not None
    return int(found)


async def test_a_terminal_leg_goes_to_its_sip_domain_with_its_clients_relay_set(
    demo_engine: AsyncEngine,
) -> None:
    directory = SqlDirectory(demo_engine)
    dial = Dial("acme-north-bruno", "terminal", "102")
    leg = await edge_leg(directory, None, dial)
    eu_west = await relay_set(demo_engine, "eu-west")
    assert leg == EdgeLeg(f"sip:acme-north-bruno@{ACME_DOMAIN}", eu_west)
    assert handback.dial_string(dial, leg) == f"PJSIP/edge/sip:acme-north-bruno@{ACME_DOMAIN}"
    assert handback.dial_string(dial) == "PJSIP/acme-north-bruno"  # direct: unchanged


async def test_a_carrier_leg_goes_to_the_carriers_address_with_the_callers_set(
    demo_engine: AsyncEngine,
) -> None:
    directory = SqlDirectory(demo_engine)
    thames = await directory.terminal("thames-george")
    acme = await directory.terminal("acme-north-ana")
    assert thames is not None
    assert acme is not None
    dial = Dial("carrier-uk", "carrier", "+442079460123")
    leg = await edge_leg(directory, thames.client, dial)
    assert leg == EdgeLeg("sip:+442079460123@192.0.2.60:5080", 0)  # thames: the default set
    eu_west = await edge_leg(directory, acme.client, dial)
    assert eu_west.relay_set == await relay_set(demo_engine, "eu-west")
    with pytest.raises(EdgeError, match="no longer configured"):
        await edge_leg(directory, None, Dial("gone", "carrier", "+1"))
    with pytest.raises(EdgeError, match="cannot be a SIP user"):
        await edge_leg(directory, None, Dial("carrier-uk", "carrier", "1;x=y"))
    assert sip_host("2001:db8::5") == "[2001:db8::5]"
    assert sip_host("bad host") is None


def test_a_dial_through_the_edge_packs_its_relay_set() -> None:
    dial = Dial("acme-north-bruno", "terminal", "102", diversion="+34910000000")
    leg = EdgeLeg(f"sip:acme-north-bruno@{ACME_DOMAIN}", 7)
    value = handback.pack(dial, 30, edge=leg, no_relay="callcontrol/service_unavailable")
    assert value.count(".") == len(handback.EDGE_FIELDS)
    unpacked = handback.unpack(value)
    assert unpacked["CC_DIAL"] == f"PJSIP/edge/sip:acme-north-bruno@{ACME_DOMAIN}"
    assert unpacked["CC_RELAY_SET"] == "7"
    # What the caller hears when the edge has no media relay for the leg: the dialplan's
    # ${CUT(CC,.,11)} (CUT counts from 1, the action first).
    assert unpacked["CC_NO_RELAY"] == "callcontrol/service_unavailable"
    sound = base64.b64decode(value.split(".")[10]).decode()
    assert sound == "callcontrol/service_unavailable"
    assert unpacked["CC_DIVERSION"] == "<tel:+34910000000>;reason=unconditional"
    direct = handback.unpack(handback.pack(dial, 30))
    assert "CC_RELAY_SET" not in direct  # direct mode: the CC of before, field for field


# ---- rendering


async def edge_files(engine: AsyncEngine, **changes: object) -> dict[str, str]:
    options = RenderOptions(
        paths=Paths.for_instance(PurePosixPath("/srv/cc/edge"), "/mods"),
        mode="edge",
        edge_address=f"{EDGE_IP}:5060",
    )
    return render(await load_context(engine, replace(options, **changes)))  # type: ignore[arg-type]


async def test_edge_mode_renders_one_edge_endpoint_and_no_terminal(
    demo_engine: AsyncEngine,
) -> None:
    pjsip = (await edge_files(demo_engine))["pjsip.conf"]
    assert "acme-north-ana" not in pjsip
    assert "carrier-uk" not in pjsip
    assert "type = auth" not in pjsip.split("static-bench")[0]
    assert "\n[edge]\ntype = endpoint\n" in pjsip
    assert "context = from-edge\n" in pjsip
    assert f"outbound_proxy = sip:{EDGE_IP}:5060\\;lr\n" in pjsip
    assert f"\n[edge]\ntype = aor\ncontact = sip:{EDGE_IP}:5060\n" in pjsip
    assert f"\n[edge]\ntype = identify\nendpoint = edge\nmatch = {EDGE_IP}/32\n" in pjsip
    wider = (await edge_files(demo_engine, edge_match=("127.0.0.0/29", "::1")))["pjsip.conf"]
    assert "match = 127.0.0.0/29,::1/128\n" in wider


async def test_from_edge_hands_both_fronts_the_edges_headers(demo_engine: AsyncEngine) -> None:
    arguments = (
        "edge,${CHANNEL(pjsip,remote_addr)},${BASE64_ENCODE(:${PJSIP_HEADER(read,X-CC-Terminal)})},"
        "${BASE64_ENCODE(:${PJSIP_HEADER(read,X-CC-Carrier)})},"
        "${PJSIP_HEADER(read,X-Forwarded-For)}"
    )
    stasis = (await edge_files(demo_engine))["extensions.conf"]
    assert "[from-terminal]" not in stasis
    assert "[from-carrier]" not in stasis
    assert f"[from-edge]\nexten => _[0-9*#+]!,1,Stasis(callcontrol,{arguments})\n" in stasis
    agi = (await edge_files(demo_engine, fastagi="127.0.0.1:4573"))["extensions.conf"]
    assert f"AGI(agi://127.0.0.1:4573/decide,{arguments})\n" in agi
    assert f" same => n,Stasis(callcontrol,{arguments})\n" in agi
    for text in (stasis, agi):
        assert "b(callcontrol-edge^s^1(${CUT(CC,.,10)})))\n" in text
        assert "b(callcontrol-edge^s^1(${CUT(CC,.,10)},${BASE64_DECODE(${CUT(CC,.,7)})})" in text
        assert "Set(PJSIP_HEADER(add,X-CC-Relay-Set)=${ARG1})" in text


async def test_edge_rendering_refuses_what_it_cannot_write(demo_engine: AsyncEngine) -> None:
    with pytest.raises(ConfigError, match="is not IP:PORT"):
        await edge_files(demo_engine, edge_address="edge.example:5060")
    with pytest.raises(ConfigError, match="is not an address or CIDR"):
        await edge_files(demo_engine, edge_match=("127.0.0.1/40",))
    with pytest.raises(RenderError, match="control character"):
        await edge_files(demo_engine, edge_match=("127.0.0.1\n[x]",))
    with pytest.raises(ConfigError, match="for direct mode"):
        await edge_files(demo_engine, contacts={"acme-north-ana": "sip:a@127.0.0.1"})
    with pytest.raises(ConfigError, match="mode must be direct or edge"):
        await edge_files(demo_engine, mode="other")


# ---- the ARI front against the simulated Asterisk


@pytest.fixture
async def edge_service(sim: Simulator, demo_engine: AsyncEngine) -> AsyncIterator[Running]:
    running = await start_link(sim, demo_engine, EDGE)
    yield running
    await running.stop()


async def edge_legs(control: ControlClient) -> list[dict[str, object]]:
    return [c for c in await control.channels() if c["endpoint"].startswith("PJSIP/edge/")]


async def test_an_edge_call_from_a_trusted_address_rings_the_terminal_through_the_edge(
    edge_service: Running, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    # acme-north may record: the app dials the leg itself, header set on the new channel.
    call = await control.call("edge", "102", args=edge_args("acme-north-ana"))

    async def dialled() -> bool:  # the leg, once the app has set it up and dialled it
        return any(leg["variables"] for leg in await edge_legs(control))

    await until(dialled)
    [leg] = await edge_legs(control)
    assert leg["endpoint"] == f"PJSIP/edge/sip:acme-north-bruno@{ACME_DOMAIN}"
    eu_west = str(await relay_set(demo_engine, "eu-west"))
    assert leg["variables"] == {"PJSIP_HEADER(add,X-CC-Relay-Set)": eu_west}
    await control.hang_up(call["id"], after=0.2)
    outcome = await edge_service.outcome(call["id"])
    assert (outcome.client, outcome.decision) == ("acme-north", "dial terminal acme-north-bruno")


async def test_a_handed_back_edge_call_packs_the_edge_uri_and_relay_set(
    edge_service: Running, control: ControlClient
) -> None:
    # thames-consulting records nothing: the dialplan dials it, CC says what.
    call = await control.call("edge", "02079460123", args=edge_args("thames-george"))

    async def handed_back() -> bool:
        return "CC" in (await control.channel(call["id"]))["variables"]

    await until(handed_back)
    packed = handback.unpack((await control.channel(call["id"]))["variables"]["CC"])
    assert packed["CC_DIAL"] == "PJSIP/edge/sip:+442079460123@192.0.2.60:5080"
    assert packed["CC_RELAY_SET"] == "0"
    await control.hang_up(call["id"], after=0.2)
    outcome = await edge_service.outcome(call["id"])
    assert (outcome.client, outcome.decision) == ("thames-consulting", "dial carrier carrier-uk")


async def test_an_edge_call_from_an_untrusted_address_is_no_client(
    edge_service: Running, control: ControlClient
) -> None:
    call = await control.call(
        "edge", "102", args=edge_args("acme-north-ana", peer="127.0.0.9:5060")
    )
    outcome = await edge_service.outcome(call["id"])
    assert (outcome.decision, outcome.reason, outcome.client) == ("reject", "no_client", None)
    assert await edge_legs(control) == []  # nothing was dialled for it


async def test_a_leg_the_app_dials_itself_carries_the_relay_set_header(
    sim: Simulator, control: ControlClient, demo_engine: AsyncEngine
) -> None:
    running = await start_link(sim, demo_engine, replace(EDGE, hand_back=False))
    try:
        call = await control.call("edge", "02079460123", args=edge_args("thames-george"))

        async def dialled() -> bool:  # the leg, once the app has set it up
            return any(leg["variables"] for leg in await edge_legs(control))

        await until(dialled)
        [leg] = await edge_legs(control)
        assert leg["endpoint"] == "PJSIP/edge/sip:+442079460123@192.0.2.60:5080"
        assert leg["variables"]["PJSIP_HEADER(add,X-CC-Relay-Set)"] == "0"
        await control.hang_up(call["id"])
        outcome = await running.outcome(call["id"])
        assert outcome.client == "thames-consulting"
    finally:
        await running.stop()


# ---- the FastAGI front


async def test_the_fastagi_front_believes_the_edge_only_from_a_trusted_address(
    demo_engine: AsyncEngine, tmp_path: Path
) -> None:
    overrides = {"mode": "edge", "edge_address": f"{EDGE_IP}:5060", "trusted_proxies": EDGE_IP}
    async with serving(demo_engine, tmp_path, **overrides) as front:
        asterisk = front.asterisk

        def edge_call(call_id: str, *args: str) -> bytes:
            values = {f"agi_arg_{n}": value for n, value in enumerate(args, start=1)}
            return asterisk.call(call_id, "edge", "02079460123", **values)

        trusted = told(await asterisk.send(edge_call("as-agi-1.1", *edge_args("thames-george"))))
        assert trusted["CC_ACTION"] == "dial"
        assert trusted["CC_DIAL"] == "PJSIP/edge/sip:+442079460123@192.0.2.60:5080"
        assert trusted["CC_RELAY_SET"] == "0"
        forged = told(
            await asterisk.send(
                edge_call("as-agi-1.2", *edge_args("thames-george", peer="127.0.0.9:5060"))
            )
        )
        assert forged["CC_ACTION"] == "reject"
        assert forged["CC_CAUSE"] == str(Q850[Reason.NO_CLIENT.cause("outbound").ari])
        assert await asterisk.end("as-agi-1.2", "reject", "", "", "21", "") == []
        await until(lambda: len(front.outcomes) == 1)
        [outcome] = front.outcomes
        assert (outcome.decision, outcome.reason) == ("reject", "no_client")


# ---- explain


@pytest.fixture(scope="module")
def explain_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('explain') / 'demo.db'}"
    for args in (("db", "upgrade"), ("provision", str(DEMO_DATASET))):
        result = CliRunner().invoke(app, [*args, "--database-url", url])
        assert result.exit_code == 0, result.output
    return url


def explain(url: str, *args: str, trusted: str = EDGE_IP) -> tuple[int, str]:
    env = {"CALLCONTROL_TRUSTED_PROXIES": trusted, "CALLCONTROL_CONFIG": "/dev/null"}
    result = CliRunner().invoke(app, ["explain", "--database-url", url, *args], env=env)
    return result.exit_code, result.output


def test_explain_takes_the_edges_facts(explain_db: str) -> None:
    peer = ("--edge-peer", f"{EDGE_IP}:5060")
    code, out = explain(explain_db, "--edge-terminal", "acme-north-ana", "--to", "102", *peer)
    assert code == 0, out
    assert "identify" in out
    assert "decision: dial terminal acme-north-bruno" in out
    code, out = explain(
        explain_db, "--edge-carrier", "carrier-uk", "--to", "+442079460100", "--json", *peer
    )
    assert code == 0, out
    assert '"client": "thames-consulting"' in out
    # From an address that is not a trusted proxy, the edge's word is worth nothing.
    code, out = explain(
        explain_db, "--edge-terminal", "acme-north-ana", "--to", "102", "--edge-peer", "10.9.9.9"
    )
    assert code == 0, out
    assert "edge call from 10.9.9.9, not a trusted proxy" in out
    assert "decision: reject no_client" in out


def test_explain_needs_one_caller(explain_db: str) -> None:
    code, out = explain(explain_db, "--to", "102")
    assert code != 0
    assert "give one of --from, --edge-terminal and --edge-carrier" in out
    code, out = explain(explain_db, "--from", "acme-north-ana", "--edge-carrier", "x", "--to", "1")
    assert code != 0
    code, out = explain(explain_db, "--edge-terminal", "acme-north-ana", "--to", "102")
    assert code != 0
    assert "--edge-peer" in out


def test_asterisk_render_in_edge_mode_says_what_it_wrote(explain_db: str, tmp_path: Path) -> None:
    env = {
        "CALLCONTROL_CONFIG": "/dev/null",
        "CALLCONTROL_MODE": "edge",
        "CALLCONTROL_EDGE_ADDRESS": f"{EDGE_IP}:5070",
        "CALLCONTROL_TRUSTED_PROXIES": EDGE_IP,
        "CALLCONTROL_DATABASE_URL": explain_db,
    }
    result = CliRunner().invoke(app, ["asterisk", "render", str(tmp_path / "conf")], env=env)
    assert result.exit_code == 0, result.output
    assert f"wrote the edge endpoint (legs to {EDGE_IP}:5070)" in result.output
    pjsip = (tmp_path / "conf" / "pjsip.conf").read_text()
    assert f"outbound_proxy = sip:{EDGE_IP}:5070\\;lr" in pjsip
