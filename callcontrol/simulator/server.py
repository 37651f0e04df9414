"""The simulated Asterisk's HTTP server: ARI under ``/ari`` and the control API under
``/_sim``, on one aiohttp application.

Under ``/ari`` every request needs the ARI credentials (HTTP Basic or
``?api_key=user:password``; 401 otherwise), errors are ``{"message": …}`` with Asterisk's
status codes, and every request is logged (method, path, operation, parameters, status)
for the contract suite to compare with a real Asterisk. ``/_sim`` is for testers on the
same machine and takes no credentials.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from callcontrol.simulator import apidocs
from callcontrol.simulator.engine import Asterisk, RequestError
from callcontrol.simulator.events import Connection, EventHub
from callcontrol.simulator.handlers import Handler, handlers
from callcontrol.simulator.model import FileBody, Json
from callcontrol.simulator.params import parse
from callcontrol.simulator.settings import SimulatorConfig
from callcontrol.simulator.spec import Operation

SIMULATOR: web.AppKey[Simulator] = web.AppKey("simulator")
RequestHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Simulator:
    """A simulated Asterisk on ``config.host:config.port`` (port 0 takes a free one).

    Use as ``async with Simulator(config) as sim:``; ``sim.url`` is the base URL to give
    aioari, ``sim.asterisk`` the engine, ``sim.requests`` the ARI request log."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.hub = EventHub(self.config.asterisk_id, self.config.event_log_limit)
        self.asterisk = Asterisk(self.config, self.hub)
        self.requests: deque[Json] = deque(maxlen=self.config.request_log_limit)
        self.request_sequence = 0
        self.initial_behaviours = dict(self.config.behaviours)
        self.initial_default = self.config.default_behaviour
        self.app = build_app(self)
        self._runner: web.AppRunner | None = None
        self.port = self.config.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close every events websocket, forget every call, stop serving."""
        self.hub.close_all()
        self.asterisk.reset()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def reset(self) -> None:
        """Back to the state at start: no calls, empty logs, configured behaviours."""
        self.asterisk.reset()
        self.hub.log.clear()
        self.requests.clear()
        self.config.behaviours = dict(self.initial_behaviours)
        self.config.default_behaviour = self.initial_default

    def authorised(self, request: web.Request) -> bool:
        expected = f"{self.config.user}:{self.config.password}"
        if request.query.get("api_key") == expected:
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            return base64.b64decode(token, validate=True).decode() == expected
        except (binascii.Error, UnicodeDecodeError):
            return False

    def log_request(
        self, request: web.Request, operation: str | None, body: Json, status: int
    ) -> None:
        params: dict[str, Any] = {}
        for key in request.query:
            if key != "api_key":
                values = request.query.getall(key)
                params[key] = values[0] if len(values) == 1 else values
        params.update(body)
        self.request_sequence += 1
        self.requests.append(
            {
                "sequence": self.request_sequence,
                "method": request.method,
                "path": request.path,
                "operation": operation,
                "params": params,
                "status": status,
            }
        )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


@web.middleware
async def ari_middleware(request: web.Request, handler: RequestHandler) -> web.StreamResponse:
    """Authenticate ARI requests, and answer unknown paths and methods as Asterisk does.
    Operations log themselves (with their name and parameters); this logs the rest."""
    if not request.path.startswith("/ari/"):
        return await handler(request)
    sim = request.app[SIMULATOR]
    if not sim.authorised(request):
        response = _error(401, "Authentication required")
        response.headers["WWW-Authenticate"] = 'Basic realm="Asterisk REST Interface"'
    else:
        try:
            return await handler(request)
        except RequestError as exc:
            response = _error(exc.status, exc.message)
        except web.HTTPMethodNotAllowed:
            response = _error(405, "Invalid method")
        except web.HTTPNotFound:
            response = _error(404, "Resource not found")
    sim.log_request(request, None, {}, response.status)
    return response


async def _json_body(request: web.Request) -> Json:
    if not request.can_read_body:
        return {}
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestError(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise RequestError(400, "The body must be a JSON object")
    return body


def _query(request: web.Request) -> dict[str, list[str]]:
    return {key: request.query.getall(key) for key in request.query}


def _operation_route(operation: Operation, implementation: Handler) -> RequestHandler:
    async def handle(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIMULATOR]
        body: Json = {}
        try:
            body = await _json_body(request)
            args = parse(operation, request.match_info, _query(request), body)
            result = implementation(sim.asterisk, args)
            if result is None:
                response = web.Response(status=204)
            elif isinstance(result, FileBody):
                response = web.Response(body=result.data, content_type=result.content_type)
            else:
                response = web.json_response(result, status=201 if operation.created else 200)
        except RequestError as exc:
            response = _error(exc.status, exc.message)
        sim.log_request(request, operation.key, body, response.status)
        return response

    return handle


def _events_route(operation: Operation) -> RequestHandler:
    async def handle(request: web.Request) -> web.StreamResponse:
        sim = request.app[SIMULATOR]
        socket = web.WebSocketResponse()
        try:
            args = parse(operation, request.match_info, _query(request), {})
            if not socket.can_prepare(request).ok:
                raise RequestError(400, "Expected a WebSocket upgrade")
        except RequestError as exc:
            sim.log_request(request, operation.key, {}, exc.status)
            return _error(exc.status, exc.message)
        connection = Connection(args.many("app"), socket)
        # Registered before the upgrade completes, so a client that sees the socket open
        # can place a call at once; events queue until the writer starts.
        sim.hub.connect(connection)
        try:
            await socket.prepare(request)
            sim.log_request(request, operation.key, {}, 101)
            writer = asyncio.create_task(connection.write())
            async for _ in socket:
                pass  # ARI clients send nothing we act on
        finally:
            sim.hub.disconnect(connection)
        await writer
        return socket

    return handle


async def _resources(request: web.Request) -> web.Response:
    return web.json_response(apidocs.resource_listing(_base_path(request)))


async def _declaration(request: web.Request) -> web.Response:
    name = request.match_info["file"].removesuffix(".json")
    declaration = apidocs.api_declaration(name, _base_path(request))
    if declaration is None:
        raise RequestError(404, "Resource not found")
    return web.json_response(declaration)


def _base_path(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/ari"


def build_app(sim: Simulator) -> web.Application:
    """The aiohttp application: api-docs, one route per declared operation, the events
    websocket, and the control API."""
    from callcontrol.simulator.control import add_control_routes

    app = web.Application(middlewares=[ari_middleware])
    app[SIMULATOR] = sim
    app.router.add_get("/ari/api-docs/resources.json", _resources)
    app.router.add_get("/ari/api-docs/{file}", _declaration)
    implementations = handlers()
    for operation in apidocs.OPERATIONS:
        if operation.resource == "applications" and not sim.config.event_filters:
            continue  # an older Asterisk: the path is unknown
        route = (
            _events_route(operation)
            if operation.websocket
            else _operation_route(operation, implementations[operation.key])
        )
        app.router.add_route(operation.method, f"/ari{operation.path}", route)
    add_control_routes(app)
    return app
