"""aioari against the simulated Asterisk: api-docs, authentication, operations, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aioari
import aiohttp
import pytest
from aiohttp import web_exceptions

from callcontrol.ari_ import Ari
from callcontrol.errors import ChannelGone
from callcontrol.simulator import Simulator
from callcontrol.simulator.apidocs import OPERATIONS
from callcontrol.simulator.client import ControlClient
from tests.simulator_helpers import APP, PASSWORD, USER, AppSocket, Rest, subject, until

pytest_plugins = ["tests.simulator_fixtures"]


@pytest.fixture
async def ari(sim: Simulator) -> AsyncIterator[Any]:
    client = await aioari.connect(sim.url, USER, PASSWORD)
    yield client
    await client.close()


async def test_aioari_connects_and_hears_stasis_start_of_a_control_call(
    sim: Simulator, ari: Any, control: ControlClient
) -> None:
    started: asyncio.Queue[Any] = asyncio.Queue()
    ari.on_channel_event("StasisStart", lambda objects, event: started.put_nowait((objects, event)))
    running = asyncio.create_task(ari.run(apps=APP))

    async def connected() -> bool:
        return APP in await control.apps()

    await until(connected)
    placed = await control.call("alice", "1002", source_ip="192.0.2.7")
    objects, event = await asyncio.wait_for(started.get(), 5)
    channel = objects["channel"]
    assert channel.id == placed["id"]
    assert event["args"] == ["terminal", "192.0.2.7:5060"]  # as the rendered dialplan passes
    remote = await channel.getChannelVar(variable="CHANNEL(pjsip,remote_addr)")
    assert remote == {"value": "192.0.2.7:5060"}
    await channel.answer()
    assert (await ari.channels.get(channelId=channel.id)).json["state"] == "Up"
    await channel.hangup()
    with pytest.raises(web_exceptions.HTTPNotFound):
        await channel.answer()
    await ari.close()
    await asyncio.wait_for(running, 5)


def _param(loaded: dict[str, Any]) -> tuple[str, str, str, bool]:
    return (loaded["name"], loaded["paramType"], loaded["dataType"], loaded["required"])


async def test_aioari_sees_exactly_the_declared_operations_and_parameters(ari: Any) -> None:
    seen = {
        f"{name}.{nickname}": (
            operation.json["httpMethod"],
            operation.uri.split("/ari", 1)[1],
            [_param(p) for p in operation.json["parameters"]],
        )
        for name, resource in ari.swagger.resources.items()
        for nickname, operation in resource.operations.items()
    }
    declared = {
        operation.key: (
            operation.method,
            operation.path,
            [(p.name, p.param_type, p.data_type, p.required) for p in operation.params],
        )
        for operation in OPERATIONS
    }
    assert seen == declared


SAMPLES: dict[str, Any] = {
    "endpoint": "PJSIP/bob",
    "app": APP,
    "media": "sound:hello",
    "format": "wav",
    "name": "sample",
    "type": "mixing",
    "variables": {"X_SAMPLE": "1"},
    "only": "build",
    "value": "1",
    "variable": "X_SAMPLE",
}


def _sample(operation: str, name: str, data_type: str, values: tuple[str, ...]) -> Any:
    if name.endswith("Id"):
        return f"{operation}-{name}"  # a fresh id for each operation that creates
    if name in SAMPLES:
        return SAMPLES[name]
    if values:
        return values[0]
    return {"int": 1, "long": 1, "boolean": "true"}.get(data_type, f"sample-{name}")


async def test_every_declared_operation_is_served_with_every_declared_parameter(ari: Any) -> None:
    for operation in OPERATIONS:
        if operation.websocket:
            continue
        params = {
            param.name: _sample(operation.key, param.name, param.data_type, param.values)
            for param in operation.params
            if param.name != "reason_code"  # not together with reason
        }
        call = getattr(getattr(ari, operation.resource), operation.nickname)
        try:
            await call(**params)
        except web_exceptions.HTTPError as exc:
            # 404 for the sample ids is expected; an unknown route or a refused
            # parameter is not
            if exc.status_code != 404 or "Resource not found" in exc.text:
                pytest.fail(f"{operation.key}: {exc.status_code} {exc.text}")


async def test_credentials_are_required_everywhere_under_ari(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    docs = f"{sim.url}ari/api-docs/resources.json"
    async with session.get(docs) as refused:
        assert refused.status == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert (await refused.json())["message"] == "Authentication required"
    async with session.get(f"{sim.url}ari/channels", params={"api_key": f"{USER}:wrong"}) as r:
        assert r.status == 401
    async with session.get(docs, headers={"Authorization": "Basic !!!"}) as r:
        assert r.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as handshake:
        await session.ws_connect(f"{sim.url}ari/events", params={"app": APP})
    assert handshake.value.status == 401
    async with session.get(docs, params={"api_key": f"{USER}:{PASSWORD}"}) as r:
        assert r.status == 200


async def test_base_path_follows_the_host_the_client_used(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    headers = {"Host": f"localhost:{sim.port}"}
    params = {"api_key": f"{USER}:{PASSWORD}"}
    async with session.get(
        f"{sim.url}ari/api-docs/channels.json", headers=headers, params=params
    ) as response:
        declaration = await response.json()
    assert declaration["basePath"] == f"http://localhost:{sim.port}/ari"
    assert declaration["swaggerVersion"] == "1.1"
    assert {"Channel", "CallerID", "DialplanCEP"} <= declaration["models"].keys()
    async with session.get(f"{sim.url}ari/api-docs/sounds.json", params=params) as missing:
        assert missing.status == 404


async def test_unknown_paths_methods_and_missing_parameters_are_refused_like_asterisk(
    rest: Rest,
) -> None:
    assert await rest("GET", "/nowhere") == (404, {"message": "Resource not found"})
    assert await rest("PUT", "/channels") == (405, {"message": "Invalid method"})
    status, body = await rest("POST", "/channels/create", endpoint="PJSIP/bob")
    assert (status, body["message"]) == (400, "Missing required parameter: app")
    assert (await rest("POST", "/channels/x/dial", timeout="soon"))[0] == 400
    assert (await rest("DELETE", "/channels/x", reason="vanished"))[0] == 400
    assert await rest("GET", "/channels/gone") == (404, {"message": "Channel not found"})
    assert (await rest("GET", "/bridges/gone"))[0] == 404
    assert (await rest("POST", "/recordings/live/gone/stop"))[0] == 404


async def test_asterisk_info_answers_the_sections_asked_for(rest: Rest) -> None:
    status, info = await rest("GET", "/asterisk/info")
    assert status == 200
    assert info.keys() == {"build", "system", "config", "status"}
    status, info = await rest("GET", "/asterisk/info", only="system,config")
    assert info.keys() == {"system", "config"}
    assert info["config"]["default_language"] == "en"


async def test_a_second_socket_for_the_same_app_replaces_the_first(
    sim: Simulator, app: AppSocket, session: aiohttp.ClientSession, control: ControlClient
) -> None:
    newer = await AppSocket.connect(session, sim.url)
    replaced = await app.next("ApplicationReplaced")
    assert replaced["application"] == APP
    channel = await control.call("alice", "1")
    await newer.next("StasisStart", channel["id"])
    await newer.close()


def _real_operations() -> dict[str, tuple[str, dict[str, Any]]]:
    """Asterisk's own api-docs from the sandbox's cached chroot (skip when not built)."""
    from callcontrol.asterisk.chroot import cache_dir, chroot_path

    folder = chroot_path(cache_dir()) / "usr/share/asterisk/rest-api"
    if not (folder / "channels.json").is_file():
        pytest.skip("the Asterisk sandbox chroot is not built: `callcontrol asterisk sandbox up`")
    found = {}
    for path in folder.glob("*.json"):
        declaration = json.loads(path.read_text())
        for api in declaration.get("apis", []):
            for operation in api.get("operations", []):
                found[f"{path.stem}.{operation['nickname']}"] = (api["path"], operation)
    return found


def _shape(param: dict[str, Any]) -> tuple[object, ...]:
    values = (param.get("allowableValues") or {}).get("values", [])
    return (
        param["paramType"],
        param["dataType"],
        param.get("required", False),
        param.get("allowMultiple", False),
        param.get("defaultValue"),
        list(values),
    )


def test_every_declared_operation_matches_the_real_asterisks_api_docs() -> None:
    real = _real_operations()
    for operation in OPERATIONS:
        assert operation.key in real, operation.key
        path, theirs = real[operation.key]
        assert (path, theirs["httpMethod"]) == (operation.path, operation.method)
        assert theirs["responseClass"] == operation.response, operation.key
        ours = {
            param.name: (
                param.param_type, param.data_type, param.required, param.multiple,
                param.default, list(param.values),
            )
            for param in operation.params
        }  # fmt: skip
        assert {p["name"]: _shape(p) for p in theirs.get("parameters", [])} == ours, operation.key
        codes = sorted(error["code"] for error in theirs.get("errorResponses", []))
        assert codes == sorted(code for code, _ in operation.errors), operation.key


async def test_an_application_is_sent_only_the_event_types_its_filter_allows(
    sim: Simulator, app: AppSocket, control: ControlClient
) -> None:
    client = await Ari.connect(sim.url, USER, PASSWORD)
    try:
        with pytest.raises(ChannelGone, match="Application not found"):  # no websocket yet
            await client.filter_events("nobody", ("StasisStart",))
        assert await client.filter_events(APP, ("StasisStart", "ChannelHangupRequest"))
        first = str((await control.call("alice", "1002"))["id"])
        await app.next("StasisStart", first)
        await control.hang_up(first)
        await app.next("ChannelHangupRequest", first)
        # The socket keeps the order: once a later call's StasisStart is here, whatever
        # was sent about the first call is here too.
        second = str((await control.call("alice", "1002"))["id"])
        await app.next("StasisStart", second)
    finally:
        await client.close()
    built = [event["type"] for event in sim.hub.log if subject(event) == first]
    assert built == ["StasisStart", "ChannelHangupRequest", "StasisEnd"]  # built…
    sent = [event["type"] for event in app.history if subject(event) == first]
    assert sent == ["StasisStart", "ChannelHangupRequest"]  # …but not written


async def test_an_event_filter_disallows_lists_and_clears_as_asterisks_does(
    sim: Simulator, app: AppSocket, session: aiohttp.ClientSession, rest: Rest
) -> None:
    async def put(name: str, body: object) -> tuple[int, Any]:
        async with session.put(
            f"{rest.url}/applications/{name}/eventFilter", json=body, headers=rest.headers
        ) as reply:
            return reply.status, await reply.json()

    disallowed = {"disallowed": [{"type": "ChannelVarset"}]}
    status, answer = await put(APP, disallowed)
    assert (status, answer["name"], answer["events_disallowed"]) == (
        200,
        APP,
        [{"type": "ChannelVarset"}],
    )
    assert not sim.hub.filters[APP].allows("ChannelVarset")
    assert sim.hub.filters[APP].allows("StasisStart")  # nothing listed as allowed: all else
    assert await put(APP, {"allowed": ["StasisStart"]}) == (
        400,
        {"message": "Invalid format definition"},
    )
    assert sim.hub.filters[APP] is not None  # a refused filter changes nothing
    status, answer = await put(APP, {})
    assert (status, answer["events_allowed"], answer["events_disallowed"]) == (200, [], [])
    assert APP not in sim.hub.filters  # an empty filter: every event again
    assert await put("nobody", disallowed) == (404, {"message": "Application not found"})
