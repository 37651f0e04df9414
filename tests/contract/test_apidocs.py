"""Every operation the simulated Asterisk declares exists in the real Asterisk 22's api-docs,
at the same path and HTTP method, with the same nickname, and with parameters Asterisk has too
(ours may be fewer), each required exactly when Asterisk requires it and passed the same way
(path, query or body).

Both sides are read as a client reads them: ``GET /ari/api-docs/resources.json``, then each
resource's declaration, from a running simulator and from the sandbox.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcontrol.simulator import Simulator, SimulatorConfig
from tests.e2e.sandboxes import AsteriskHandle

pytest_plugins = ["tests.e2e.fixtures"]

Json = dict[str, Any]
Operations = dict[tuple[str, str], Json]
"""(path, HTTP method) → the operation's declaration."""


async def api_docs(base_url: str, user: str, password: str) -> Operations:
    """Every operation declared under ``base_url`` (ending in ``/ari``)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    operations: Operations = {}
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Basic {token}"}, timeout=aiohttp.ClientTimeout(total=15)
    ) as http:

        async def get(path: str) -> Json:
            async with http.get(f"{base_url}{path}") as response:
                response.raise_for_status()
                body: Json = await response.json(content_type=None)
                return body

        listing = await get("/api-docs/resources.json")
        for resource in listing["apis"]:
            path = str(resource["path"]).replace("{format}", "json")
            for api in (await get(path))["apis"]:
                for operation in api.get("operations", []):
                    operations[(str(api["path"]), str(operation["httpMethod"]))] = operation
    return operations


def differences(ours: Operations, theirs: Operations) -> list[str]:
    """What in our declarations Asterisk does not declare the same way, one line each."""
    found: list[str] = []
    for (path, method), operation in sorted(ours.items()):
        where = f"{method} {path}"
        real = theirs.get((path, method))
        if real is None:
            found.append(f"{where}: not in Asterisk's api-docs")
            continue
        if operation["nickname"] != real["nickname"]:
            found.append(f"{where}: nickname {operation['nickname']!r} != {real['nickname']!r}")
        real_params = {str(p["name"]): p for p in real.get("parameters", [])}
        our_params = {str(p["name"]): p for p in operation.get("parameters", [])}
        for name, param in our_params.items():
            other = real_params.get(name)
            if other is None:
                found.append(f"{where}: parameter {name!r} unknown to Asterisk")
                continue
            if bool(param.get("required")) != bool(other.get("required")):
                found.append(
                    f"{where}: parameter {name!r} required {param.get('required')!r}, "
                    f"Asterisk says {other.get('required')!r}"
                )
            if param.get("paramType") != other.get("paramType"):
                found.append(
                    f"{where}: parameter {name!r} paramType {param.get('paramType')!r}, "
                    f"Asterisk says {other.get('paramType')!r}"
                )
        for name, other in real_params.items():
            if other.get("required") and name not in our_params:
                found.append(f"{where}: Asterisk requires {name!r}, we do not declare it")
    return found


def test_differences_are_found() -> None:
    ours: Operations = {
        ("/channels/{channelId}", "DELETE"): {
            "nickname": "hangup",
            "parameters": [
                {"name": "channelId", "paramType": "path", "required": True},
                {"name": "reason", "paramType": "query", "required": True},
                {"name": "why", "paramType": "query", "required": False},
            ],
        },
        ("/nowhere", "GET"): {"nickname": "nothing", "parameters": []},
    }
    theirs: Operations = {
        ("/channels/{channelId}", "DELETE"): {
            "nickname": "hangup",
            "parameters": [
                {"name": "channelId", "paramType": "path", "required": True},
                {"name": "reason", "paramType": "body", "required": False},
                {"name": "reason_code", "paramType": "query", "required": False},
            ],
        },
    }
    assert differences(ours, theirs) == [
        "DELETE /channels/{channelId}: parameter 'reason' required True, Asterisk says False",
        "DELETE /channels/{channelId}: parameter 'reason' paramType 'query', Asterisk says 'body'",
        "DELETE /channels/{channelId}: parameter 'why' unknown to Asterisk",
        "GET /nowhere: not in Asterisk's api-docs",
    ]
    assert differences(theirs, theirs) == []


@pytest.mark.e2e
async def test_every_operation_the_simulator_declares_is_asterisks(
    asterisk: AsteriskHandle, tmp_path: Path
) -> None:
    config = SimulatorConfig(
        port=0, user="docs", password="docs-secret", recordings_dir=tmp_path / "recordings"
    )
    async with Simulator(config) as sim:
        ours = await api_docs(f"{sim.url}ari", config.user, config.password)
    theirs = await api_docs(asterisk.ari_url, asterisk.ari_user, asterisk.ari_password)
    assert len(ours) >= 20  # the subset the service and the console use
    assert differences(ours, theirs) == []
