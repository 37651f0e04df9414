"""The simulator's api-docs: Swagger 1.1 as Asterisk serves it, rendered from our tables.

``GET /ari/api-docs/resources.json`` lists the resources; each
``GET /ari/api-docs/<resource>.json`` declares its operations and models. ``basePath``
is built from the request's Host header, so a client that connected to
``127.0.0.1:PORT`` is sent back to the same address (aioswagger11 applies its
credentials only to URLs on the host it was given).
"""

from __future__ import annotations

from typing import Any

from callcontrol.simulator.spec import RESOURCES, Operation, Param
from callcontrol.simulator.spec_channels import CHANNEL_OPERATIONS
from callcontrol.simulator.spec_models import MODELS
from callcontrol.simulator.spec_resources import OTHER_OPERATIONS

Json = dict[str, Any]

OPERATIONS: tuple[Operation, ...] = CHANNEL_OPERATIONS + OTHER_OPERATIONS
API_VERSION = "10.0.0"
"""The ARI version of Asterisk 22."""
SWAGGER_VERSION = "1.1"
"""aioswagger11 accepts only "1.1", the version Asterisk declares."""


def resource_listing(base_path: str) -> Json:
    return {
        "_comment": "The subset of ARI served by callcontrol's simulated Asterisk.",
        "apiVersion": API_VERSION,
        "swaggerVersion": SWAGGER_VERSION,
        "basePath": base_path,
        "apis": [
            {"path": f"/api-docs/{name}.{{format}}", "description": description}
            for name, description in RESOURCES.items()
        ],
    }


def api_declaration(resource: str, base_path: str) -> Json | None:
    """The declaration of ``resource``, or None if we do not serve it."""
    if resource not in RESOURCES:
        return None
    apis: dict[str, list[Json]] = {}
    for operation in OPERATIONS:
        if operation.resource == resource:
            apis.setdefault(operation.path, []).append(_operation(operation))
    return {
        "apiVersion": API_VERSION,
        "swaggerVersion": SWAGGER_VERSION,
        "basePath": base_path,
        "resourcePath": f"/api-docs/{resource}.{{format}}",
        "requiresAuthentication": True,
        "apis": [
            {"path": path, "description": operations[0]["summary"], "operations": operations}
            for path, operations in apis.items()
        ],
        "models": MODELS.get(resource, {}),
    }


def _operation(operation: Operation) -> Json:
    body: Json = {
        "httpMethod": operation.method,
        "summary": operation.summary,
        "nickname": operation.nickname,
        "responseClass": operation.response,
        "parameters": [_parameter(param) for param in operation.params],
        "errorResponses": [{"code": code, "reason": why} for code, why in operation.errors],
    }
    if operation.websocket:
        body["upgrade"] = "websocket"
        body["websocketProtocol"] = "ari"
    return body


def _parameter(param: Param) -> Json:
    body: Json = {
        "name": param.name,
        "description": param.description,
        "paramType": param.param_type,
        "required": param.required,
        "allowMultiple": param.multiple,
        "dataType": param.data_type,
    }
    if param.default is not None:
        body["defaultValue"] = param.default
    if param.values:
        body["allowableValues"] = {"valueType": "LIST", "values": list(param.values)}
    return body
