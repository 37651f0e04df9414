"""The control API for testers: JSON under ``/_sim``, no credentials.

=======  ==================================  =================================================
POST     /_sim/calls                         place a call (body: :class:`CallRequest`) → 201
GET      /_sim/channels[/{id}]               channels with what the far end sees
POST     /_sim/channels/{id}/dtmf            the far end presses digits (:class:`DtmfRequest`)
POST     /_sim/channels/{id}/hangup          the far end hangs up (:class:`HangupRequest`)
GET      /_sim/channels/{id}/wait?timeout=S  returns once the channel is gone (or timeout)
GET|PUT  /_sim/endpoints[/{name}]            how endpoints answer (``_default`` for all)
DELETE   /_sim/endpoints/{name}              back to the default
PUT      /_sim/media                         how long a medium plays (:class:`MediaRequest`)
GET      /_sim/bridges, /_sim/recordings     bridges; live and stored recordings
GET      /_sim/requests?since=N              the log of ARI requests received
GET      /_sim/events?since=N&channel=ID     the log of events emitted
GET      /_sim/apps                          applications with an events websocket
POST     /_sim/reset                         forget everything (calls, logs, behaviours)
=======  ==================================  =================================================

Errors are ``{"message": …}`` with 400 (bad body), 404 (unknown channel) or 409 (the
application is not connected).
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from callcontrol.simulator import causes
from callcontrol.simulator.calls import CallSpec, hang_up_later, place_call, press_keys
from callcontrol.simulator.control_models import (
    BehaviourRequest,
    CallRequest,
    DtmfRequest,
    HangupRequest,
    MediaRequest,
    channel_view,
    mentions,
)
from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.server import SIMULATOR, Simulator

M = TypeVar("M", bound=BaseModel)


def _sim(request: web.Request) -> Simulator:
    return request.app[SIMULATOR]


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate_json(await request.text() or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RequestError(400, f"{where}: {first['msg']}") from None


def _since(request: web.Request) -> int:
    try:
        return int(request.query.get("since", "0"))
    except ValueError:
        raise RequestError(400, "since must be an integer") from None


@web.middleware
async def control_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except RequestError as exc:
        return web.json_response({"message": exc.message}, status=exc.status)
    return response


async def place(request: web.Request) -> web.Response:
    body = await _body(request, CallRequest)
    channel = place_call(_sim(request).asterisk, body.to_spec())
    return web.json_response(channel_view(channel), status=201)


async def channels(request: web.Request) -> web.Response:
    return web.json_response([channel_view(c) for c in _sim(request).asterisk.channels.values()])


async def channel(request: web.Request) -> web.Response:
    found = _sim(request).asterisk.channel(request.match_info["id"])
    return web.json_response(channel_view(found))


async def dtmf(request: web.Request) -> web.Response:
    asterisk = _sim(request).asterisk
    found = asterisk.channel(request.match_info["id"])
    press_keys(asterisk, found, (await _body(request, DtmfRequest)).to_dtmf())
    return web.json_response({"scheduled": True}, status=202)


async def hangup(request: web.Request) -> web.Response:
    asterisk = _sim(request).asterisk
    found = asterisk.channel(request.match_info["id"])
    body = await _body(request, HangupRequest)
    hang_up_later(asterisk, found, body.after, body.cause_code())
    return web.json_response({"scheduled": True}, status=202)


async def wait(request: web.Request) -> web.Response:
    """Block until the channel is destroyed (no polling: it awaits the channel's event)."""
    asterisk = _sim(request).asterisk
    channel_id = request.match_info["id"]
    try:
        timeout = float(request.query.get("timeout", "30"))
    except ValueError:
        raise RequestError(400, "timeout must be a number") from None
    live = asterisk.channels.get(channel_id)
    if live is not None:
        try:
            await asyncio.wait_for(live.gone.wait(), timeout)
        except TimeoutError:
            return web.json_response({"id": channel_id, "gone": False})
    if channel_id not in asterisk.ended:
        raise RequestError(404, "Channel not found")
    cause = asterisk.ended[channel_id]
    return web.json_response(
        {"id": channel_id, "gone": True, "cause": cause, "cause_txt": causes.cause_text(cause)}
    )


async def endpoints(request: web.Request) -> web.Response:
    config = _sim(request).config
    return web.json_response(
        {
            "_default": config.default_behaviour.to_json(),
            **{name: b.to_json() for name, b in config.behaviours.items()},
        }
    )


async def set_endpoint(request: web.Request) -> web.Response:
    config, name = _sim(request).config, request.match_info["name"]
    behaviour = (await _body(request, BehaviourRequest)).to_behaviour()
    if name == "_default":
        config.default_behaviour = behaviour
    else:
        config.behaviours[name] = behaviour
    return web.json_response({name: behaviour.to_json()})


async def forget_endpoint(request: web.Request) -> web.Response:
    _sim(request).config.behaviours.pop(request.match_info["name"], None)
    return web.Response(status=204)


async def media(request: web.Request) -> web.Response:
    config, body = _sim(request).config, await _body(request, MediaRequest)
    if body.media is None:
        config.playback_seconds = body.seconds
    else:
        config.media_seconds[body.media] = body.seconds
    return web.json_response({"default": config.playback_seconds, **config.media_seconds})


async def bridges(request: web.Request) -> web.Response:
    found = _sim(request).asterisk.bridges.bridges.values()
    return web.json_response([{**bridge.to_json(), "apps": bridge.apps} for bridge in found])


async def recordings(request: web.Request) -> web.Response:
    recordings_ = _sim(request).asterisk.recordings
    live = [recording.to_json() for recording in recordings_.live_recordings.values()]
    return web.json_response({"live": live, "stored": recordings_.stored()})


async def requests(request: web.Request) -> web.Response:
    since = _since(request)
    return web.json_response([row for row in _sim(request).requests if row["sequence"] > since])


async def events(request: web.Request) -> web.Response:
    since, about = _since(request), request.query.get("channel")
    rows = [
        row
        for row in _sim(request).hub.log
        if row["sequence"] > since and (about is None or mentions(row, about))
    ]
    return web.json_response(rows)


async def apps(request: web.Request) -> web.Response:
    return web.json_response(sorted(_sim(request).hub.connections))


async def reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return web.Response(status=204)


def add_control_routes(app: web.Application) -> None:
    app.middlewares.append(control_errors)
    router = app.router
    router.add_post("/_sim/calls", place)
    router.add_get("/_sim/channels", channels)
    router.add_get("/_sim/channels/{id}", channel)
    router.add_post("/_sim/channels/{id}/dtmf", dtmf)
    router.add_post("/_sim/channels/{id}/hangup", hangup)
    router.add_get("/_sim/channels/{id}/wait", wait)
    router.add_get("/_sim/endpoints", endpoints)
    router.add_put("/_sim/endpoints/{name}", set_endpoint)
    router.add_delete("/_sim/endpoints/{name}", forget_endpoint)
    router.add_put("/_sim/media", media)
    router.add_get("/_sim/bridges", bridges)
    router.add_get("/_sim/recordings", recordings)
    router.add_get("/_sim/requests", requests)
    router.add_get("/_sim/events", events)
    router.add_get("/_sim/apps", apps)
    router.add_post("/_sim/reset", reset)


__all__ = ["CallSpec", "add_control_routes"]
