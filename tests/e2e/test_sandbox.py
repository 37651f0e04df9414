"""The sandbox Asterisk itself: it comes up, ARI answers, and with no app connected a call is
refused the way the rendered dialplan promises (early media, then 503, never an answer)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from callcontrol.asterisk import sandbox
from callcontrol.asterisk.render import AriUser, Network
from models.db import create_engine
from models.provisioning.passwords import sip_ha1
from tests.e2e.sandboxes import AsteriskHandle, free_port
from tests.e2e.sipp import Sipp

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.fixtures"]


def ari_get(asterisk: AsteriskHandle, path: str) -> Any:
    request = urllib.request.Request(f"{asterisk.ari_url}{path}")
    token = base64.b64encode(f"{asterisk.ari_user}:{asterisk.ari_password}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def test_the_sandbox_comes_up_and_ari_answers(asterisk: AsteriskHandle) -> None:
    info = ari_get(asterisk, "/asterisk/info")
    assert info["system"]["version"].startswith("22.")
    resources = ari_get(asterisk, "/api-docs/resources.json")
    paths = {api["path"] for api in resources["apis"]}
    assert "/api-docs/channels.{format}" in paths
    assert asterisk.instance.status().running


def test_the_rendered_endpoints_are_loaded(asterisk: AsteriskHandle) -> None:
    endpoints = asterisk.rx("pjsip show endpoints")
    for name in ("e2e-alice", "e2e-bob", "e2e-carol", "e2e-ghost", "carrier-e2e", "static-bench"):
        assert name in endpoints
    assert "callcontrol-e2e" in asterisk.rx("dialplan show from-terminal")


def test_without_the_app_a_terminal_call_gets_early_media_then_503(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> None:
    caller = sipp("terminal_unavailable.xml")
    result = caller.run(
        asterisk.sip_target,
        service="600123123",
        user="e2e-alice",
        password="alice-e2e-secret",
        timeout=30,
    )
    asterisk.hang_up_all()
    statuses = result.received_statuses()
    assert result.returncode == 0, result.describe()
    assert (result.successful, result.failed) == (1, 0), result.describe()
    assert 401 in statuses  # it had to authenticate with its terminal password
    assert 183 in statuses
    assert 503 in statuses
    assert statuses.index(183) < statuses.index(503)
    assert 200 not in statuses
    final = next(m for m in result.messages if m.status == 503)
    assert final.header("Reason") == "Q.850;cause=34"


def test_without_the_app_a_carrier_call_gets_503_too(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> None:
    # The carrier is identified by address and port: SIPp must call from the carrier's port.
    carrier = sipp("carrier_unavailable.xml", asterisk.carrier_port)
    result = carrier.run(asterisk.sip_target, service="+34910000100", timeout=30)
    asterisk.hang_up_all()
    statuses = result.received_statuses()
    assert result.returncode == 0, result.describe()
    assert 401 not in statuses  # identified by address, no challenge
    assert statuses.index(183) < statuses.index(503)
    assert 200 not in statuses


def test_the_static_bench_context_dials_the_carrier_and_bridges(
    asterisk: AsteriskHandle, sipp: Callable[..., Sipp]
) -> None:
    carrier = sipp("uas_answer.xml", asterisk.carrier_port)
    callee = carrier.start(calls=1, timeout=30)
    try:
        caller = sipp("terminal_answered.xml").run(
            asterisk.sip_target,
            service="34910555123",
            user="static-bench",
            password="static-bench",
            hold_ms=500,
            timeout=30,
        )
    finally:
        answered = carrier.finish(callee, timeout=30)
        asterisk.hang_up_all()
    assert (caller.returncode, caller.successful) == (0, 1), caller.describe()
    assert (answered.returncode, answered.successful) == (0, 1), answered.describe()
    invite = next(m for m in answered.messages if m.first_line.startswith("INVITE"))
    assert invite.first_line.startswith("INVITE sip:34910555123@127.0.0.1:")


def test_a_second_instance_runs_beside_the_first(asterisk: AsteriskHandle) -> None:
    settings = sandbox.SandboxSettings(
        name=f"second-{os.getpid()}",
        network=Network("127.0.0.1", free_port(), free_port(socket.SOCK_STREAM), 35000, 35999),
        ari=AriUser("second", "second-secret"),
    )

    async def start() -> tuple[sandbox.Instance, sandbox.State]:
        engine = create_engine(asterisk.database_url)
        try:
            return await sandbox.up(engine, settings)
        finally:
            await engine.dispose()

    second, state = asyncio.run(start())
    try:
        assert state.pid != asterisk.state.pid
        assert second.status().running
        assert "e2e-alice" in second.rx("pjsip show endpoints")
    finally:
        assert second.stop(settings.stop_timeout)
        shutil.rmtree(second.folder, ignore_errors=True)
    assert not second.status().running
    assert asterisk.instance.status().running
    with pytest.raises(sandbox.SandboxError, match="not running"):
        second.rx("core show uptime")


def test_the_terminals_digests_and_the_crypted_ari_password_load_without_a_warning(
    asterisk: AsteriskHandle,
) -> None:
    auth = asterisk.rx("pjsip show auth e2e-alice")
    fields = dict(
        (part.strip() for part in line.split(":", 1)) for line in auth.splitlines() if " : " in line
    )
    digest = sip_ha1("e2e-alice", "e2e.example.net", "alice-e2e-secret")
    assert (fields["auth_type"], fields["realm"]) == ("digest", "e2e.example.net")
    assert fields["password_digest"].lower() == f"md5:{digest}"
    assert fields["password"] == ""
    # Loading the configuration (up to "Asterisk Ready.") warns about nothing.
    log = asterisk.instance.console_log.read_text(errors="replace").split("Asterisk Ready.")[0]
    assert [line for line in log.splitlines() if "WARNING[" in line or "ERROR[" in line] == []
