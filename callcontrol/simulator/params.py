"""A request's parameters, parsed and checked against its operation's declaration.

Like Asterisk: parameters come from the path, the query string, or a JSON body (whose
keys other than the declared body parameters count as query parameters); a multiple
parameter may be repeated or comma separated; booleans read as Asterisk's ``ast_true``;
a missing required parameter, a malformed number or a value outside the allowed list is
400. Parameters nobody declared are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callcontrol.simulator.engine import RequestError
from callcontrol.simulator.spec import Operation, Param

TRUE = frozenset({"yes", "true", "y", "t", "1", "on"})


class Args:
    """Typed access to parsed parameters (None = not given and no default)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def text(self, name: str) -> str:
        value = self.values.get(name)
        assert isinstance(value, str), f"{name} is declared required"
        return value

    def optional(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if isinstance(value, str) and value != "" else None

    def number(self, name: str, default: int = 0) -> int:
        value = self.values.get(name)
        return value if isinstance(value, int) else default

    def flag(self, name: str) -> bool:
        return bool(self.values.get(name))

    def many(self, name: str) -> list[str]:
        value = self.values.get(name)
        return list(value) if isinstance(value, list) else []

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.values.get(name)
        return dict(value) if isinstance(value, dict) else {}


def parse(
    operation: Operation,
    path: Mapping[str, str],
    query: Mapping[str, list[str]],
    body: Mapping[str, Any],
) -> Args:
    """Parse the parameters of one request to ``operation``."""
    values: dict[str, Any] = {}
    for param in operation.params:
        raw = _raw(param, path, query, body)
        if raw is None:
            if param.required:
                raise RequestError(400, f"Missing required parameter: {param.name}")
            if param.default is not None:
                values[param.name] = param.default
            continue
        values[param.name] = _convert(param, raw)
    return Args(values)


def _raw(
    param: Param, path: Mapping[str, str], query: Mapping[str, list[str]], body: Mapping[str, Any]
) -> Any:
    if param.param_type == "path":
        return path.get(param.name)
    if param.param_type == "body":
        # As Asterisk: a body parameter of type object is the whole body (the event
        # filter); others are a key of it (an originate's ``variables``).
        return (body or None) if param.data_type == "object" else body.get(param.name)
    if param.name in query:
        return query[param.name]
    if param.name in body:
        value = body[param.name]
        return value if isinstance(value, list) else [value]
    return None


def _convert(param: Param, raw: Any) -> Any:
    if param.param_type == "path":
        return raw
    if param.param_type == "body":
        if not isinstance(raw, dict):
            raise RequestError(400, f"{param.name} must be a JSON object")
        return raw
    items = [str(item).lower() if isinstance(item, bool) else str(item) for item in raw]
    if param.multiple:
        parts = [part.strip() for item in items for part in item.split(",") if part.strip()]
        if param.required and not parts:
            raise RequestError(400, f"Missing required parameter: {param.name}")
        for part in parts:
            _check_allowed(param, part)
        return parts
    value = items[-1]
    if param.data_type in ("int", "long"):
        try:
            return int(value)
        except ValueError:
            raise RequestError(400, f"{param.name} must be an integer") from None
    if param.data_type == "boolean":
        return value.strip().lower() in TRUE
    _check_allowed(param, value)
    return value


def _check_allowed(param: Param, value: str) -> None:
    if param.values and value not in param.values:
        raise RequestError(400, f"Invalid value for {param.name}: {value}")
