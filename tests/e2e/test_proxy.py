"""Calls relayed by the rendered Kamailio dispatcher to the real Asterisk sandbox (DESIGN
§3.11, §3.3): the terminal authenticates through the proxy, the call goes out, and the
source filter judges the caller's address as the proxy wrote it, not the proxy's own.

Kamailio listens on 127.0.0.3, the service trusts that address (``trusted_proxies``), and
e2e-guarded-client (frank) authorizes only 127.0.0.1: from there frank's call is dialled;
from 127.0.0.2 it is refused with ``ip_not_allowed``, although Asterisk saw both calls come
from the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from callcontrol.asterisk.kamailio import KamailioOptions, load_dispatch
from models.db import create_engine
from tests.e2e.harness import (
    AriRest,
    LiveLink,
    finish_sipp,
    link_config,
    no_channel_left,
    run_sipp,
    serving,
)
from tests.e2e.sandboxes import AsteriskHandle
from tests.e2e.sipp import Sipp
from tests.e2e.test_source_filter import (
    AUTHORIZED,
    E164,
    ELSEWHERE,
    FRANK,
    FRANK_DDI,
    NATIONAL,
    final_status,
    host_of,
    ok,
    received,
    sipp_from,
    terminal_sources,
    user_of,
)
from tests.test_kamailio import free_udp_port, kamailio_running

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]
__all__ = ["sipp_from"]

PROXY = "127.0.0.3"
"""Kamailio's address: the only peer whose X-Forwarded-For the service believes."""


@pytest.fixture
async def proxy(asterisk: AsteriskHandle, tmp_path: Path) -> AsyncIterator[str]:
    """The dispatcher rendered from the sandbox's database (its one application server is
    the sandbox), running on 127.0.0.3; yields ``address:port`` for SIPp."""
    options = KamailioOptions(
        listen=f"{PROXY}:{free_udp_port(PROXY)}",
        server_port=asterisk.sip_port,
        probe_interval=1,
        timeout_ms=5000,
    )
    engine = create_engine(asterisk.database_url)
    try:
        dispatch = await load_dispatch(engine, options, tmp_path)
    finally:
        await engine.dispose()
    async with kamailio_running(dispatch, tmp_path) as (host, port):
        yield f"{host}:{port}"


@pytest.fixture
async def behind_proxy(asterisk: AsteriskHandle, rest: AriRest) -> AsyncIterator[LiveLink]:
    """The service, trusting the proxy's header."""
    config = link_config(asterisk, trusted_proxies=PROXY, source_header="X-Forwarded-For")
    async with serving(asterisk, rest, LiveLink(config)) as live:
        yield live


async def test_a_call_through_the_proxy_goes_out_with_the_callers_own_address(
    asterisk: AsteriskHandle,
    sipp: Callable[..., Sipp],
    sipp_from: Callable[[str, str], Sipp],
    proxy: str,
    behind_proxy: LiveLink,
    rest: AriRest,
) -> None:
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    ringing = carrier.start(calls=1, timeout=20)
    caller = await run_sipp(
        sipp_from("terminal_answered.xml", AUTHORIZED),
        proxy,
        service=NATIONAL,
        hold_ms=500,
        timeout=20,
        **FRANK,
    )
    answered = await finish_sipp(carrier, ringing)
    ok(caller)
    ok(answered)
    assert final_status(caller) == 200
    # Asterisk took the call from the proxy; the service judged the address the proxy wrote.
    [source] = terminal_sources(behind_proxy)
    assert host_of(source) == PROXY, source
    [invite, *_] = received(answered, "INVITE")
    assert invite.first_line.startswith(f"INVITE sip:{E164}@127.0.0.1:"), invite.text
    assert user_of(invite.header("From")) == FRANK_DDI, invite.text
    outcome = await behind_proxy.outcome()
    assert (outcome.decision, outcome.result, outcome.answered) == (
        "dial carrier carrier-e2e",
        "answered, caller hung up",
        True,
    )
    await no_channel_left(asterisk, rest)


async def test_a_call_through_the_proxy_from_elsewhere_is_refused_by_its_address(
    asterisk: AsteriskHandle,
    sipp_from: Callable[[str, str], Sipp],
    proxy: str,
    behind_proxy: LiveLink,
    rest: AriRest,
) -> None:
    caller = await run_sipp(
        sipp_from("terminal_refused.xml", ELSEWHERE), proxy, service=NATIONAL, timeout=20, **FRANK
    )
    ok(caller)
    assert final_status(caller) == 403, caller.describe()
    [source] = terminal_sources(behind_proxy)
    assert host_of(source) == PROXY, source  # what Asterisk saw; the filter judged 127.0.0.2
    outcome = await behind_proxy.outcome()
    assert (outcome.decision, outcome.reason) == ("reject", "ip_not_allowed")
    await no_channel_left(asterisk, rest)
